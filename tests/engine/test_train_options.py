"""Trainer options: gradient accumulation, mixed precision, EMA, mixup/cutmix, layer decay, clipping."""
import math

import pytest
from safetensors.torch import load_file

from uniconvnet.checkpoints import load_checkpoint_file
from uniconvnet.engine import make_train_config, train

pytestmark = pytest.mark.usefixtures('one_thread')


def run(tmp_path, name, **overrides):
    cfg = make_train_config(**{'image_size': 8, 'epochs': 1, 'limit_val_batches': 2, 'output': str(tmp_path / name),
                               **overrides})
    return train(cfg)['history']


def test_accumulation_equals_one_large_batch(tmp_path):
    # the whole validation split for both (validation batches are twice the training batch)
    big = run(tmp_path, 'big', batch_size=16, limit_train_batches=1, no_aug=True, limit_val_batches=None)
    accumulated = run(tmp_path, 'acc', batch_size=8, accum_steps=2, limit_train_batches=2, no_aug=True,
                      limit_val_batches=None)
    # the two micro-batches are exactly the large batch (the sampler's order does not depend on the batch size)
    assert accumulated[0]['train_loss'] == pytest.approx(big[0]['train_loss'], rel=1e-5)
    assert accumulated[0]['val_loss'] == pytest.approx(big[0]['val_loss'], rel=1e-3)


# bf16 at 32 px: with 1x1 feature maps PyTorch's CPU bf16 convolution returns wrong weight gradients (docs/training.md).
# fp16 without accumulation: the grad scaler skips its first two updates (scale 65536 -> 16384) by design.
@pytest.mark.parametrize('amp, size, accum', [('fp16', 8, 1), ('bf16', 32, 2)])
def test_mixed_precision_with_ema_mixup_layer_decay_and_clipping(tmp_path, capsys, amp, size, accum):
    history = run(tmp_path, amp, image_size=size, batch_size=8, accum_steps=accum, limit_train_batches=4, amp=amp,
                  mixup=0.8, cutmix=1.0, ema_decay=0.9, layer_decay=0.8, clip_grad=1.0, channels_last=True)
    assert 'update skipped' not in capsys.readouterr().out
    row = history[0]
    assert math.isfinite(row['train_loss']) and 0 < row['train_loss'] < 5
    assert {'val_top1_ema', 'val_top5_ema', 'val_loss_ema'} <= set(row)
    out = tmp_path / amp
    ema, weights = load_file(out / 'model_ema.safetensors'), load_file(out / 'model.safetensors')
    assert set(ema) == set(weights) and any((ema[k] != weights[k]).any() for k in weights)
    state = load_checkpoint_file(out / 'last.pt')
    assert state['step'] == 4 // accum and (state['scaler'] is not None) == (amp == 'fp16')
    assert state['config']['amp'] == amp

"""Bad input to train / eval / predict: one clear line and exit code 2, never a traceback; the NaN guard."""
import json
import math
from pathlib import Path

import pytest
import timm
import torch
from timm.data import ImageNetInfo
from torch.utils.data import Dataset

from uniconvnet.cli.main import main as cli_main
from uniconvnet.data import (DigitsDataset, ImageFolderDataset, Preprocessing, build_loader, build_transform,
                             export_digits_folder)
from uniconvnet.data.loader import ShardSampler
from uniconvnet.engine import ClassificationTask, DistributedContext, Trainer, TrainingDiverged, make_train_config

TINY = ['--image-size', '8', '--batch-size', '4', '--epochs', '1', '--limit-train-batches', '1']


pytestmark = pytest.mark.usefixtures('one_thread')


def fails(capsys, *args) -> str:
    """Run the CLI in-process; it must exit 2 with one line on stderr. Returns that line."""
    assert cli_main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    return err


@pytest.fixture(scope='module')
def digits_folder(tmp_path_factory) -> Path:
    return export_digits_folder(tmp_path_factory.mktemp('data') / 'digits', per_class=2)


def test_data_folder_errors(tmp_path, capsys):
    assert 'data folder not found' in fails(capsys, 'train', '--data', tmp_path / 'nowhere')
    (tmp_path / 'flat' / 'train').mkdir(parents=True)
    DigitsDataset('val').image(0).save(tmp_path / 'flat' / 'train' / 'a.png')
    err = fails(capsys, 'train', '--data', tmp_path / 'flat')
    assert 'no class subfolders' in err and 'found 1 images directly in it' in err and 'CLASS_NAME' in err
    (tmp_path / 'gap' / 'train' / 'cat').mkdir(parents=True)
    (tmp_path / 'gap' / 'train' / 'dog').mkdir(parents=True)
    DigitsDataset('val').image(0).save(tmp_path / 'gap' / 'train' / 'cat' / 'a.png')
    (tmp_path / 'gap' / 'val').mkdir()
    err = fails(capsys, 'train', '--data', tmp_path / 'gap')
    assert 'class folder' in err and 'dog is empty' in err
    (tmp_path / 'noval' / 'train' / 'cat').mkdir(parents=True)
    DigitsDataset('val').image(0).save(tmp_path / 'noval' / 'train' / 'cat' / 'a.png')
    assert 'no val folder' in fails(capsys, 'train', '--data', tmp_path / 'noval')


def test_val_class_missing_from_train(digits_folder, tmp_path):
    (digits_folder / 'val' / 'extra').mkdir(exist_ok=True)
    DigitsDataset('val').image(0).save(digits_folder / 'val' / 'extra' / 'x.png')
    try:
        with pytest.raises(ValueError, match='classes that the training folder does not have: extra'):
            ImageFolderDataset(digits_folder, 'val', classes=[str(i) for i in range(10)])
    finally:
        (digits_folder / 'val' / 'extra' / 'x.png').unlink()
        (digits_folder / 'val' / 'extra').rmdir()


def test_corrupt_image_stops_naming_the_file(digits_folder, tmp_path, capsys):
    broken = digits_folder / 'train' / '3' / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really an image' * 3)
    try:
        # a worker process reads it: the error still comes back as one line naming the file
        err = fails(capsys, 'train', '--data', digits_folder, '--recipe', 'digits', '--image-size', '8',
                    '--batch-size', '1', '--epochs', '1', '--workers', '1', '--output', tmp_path / 'run')
    finally:
        broken.unlink()
    assert f'cannot read image {broken}' in err and 'delete or replace the file' in err


def test_unknown_names_and_missing_resume(tmp_path, capsys):
    assert 'unknown recipe' in fails(capsys, 'train', '--recipe', 'imagenet')
    err = fails(capsys, 'train', '--model', 'uniconvnet_zz')
    assert 'unknown model' in err and 'uniconvnet_t' in err
    err = fails(capsys, 'train', '--resume', tmp_path / 'nope.pt', '--output', tmp_path / 'run')
    assert 'no such checkpoint' in err and '--resume auto' in err
    assert 'no such file' in fails(capsys, 'train', '--finetune', tmp_path / 'nope.pth')
    assert 'image not found' in fails(capsys, 'predict', tmp_path / 'x.png', '--checkpoint', tmp_path / 'c.pt')


def test_bad_values_name_the_flag_before_anything_is_built(tmp_path, capsys):
    # each of these failed with a traceback deep inside torch or timm, or named the wrong thing
    cases = [
        (('models', '--size', '0'), 'image size (--size) must be at least 1, got 0'),
        (('train', '--workers', '-1'), '--workers must be at least 0'),
        (('train', '--lr', '-1'), '--lr must be positive, got -1'),
        (('train', '--image-size', '0'), '--image-size must be at least 1, got 0'),
        (('train', '--device', 'gpu0', '--output', tmp_path / 'r'), '--device gpu0: not a device; use auto, cpu'),
        (('erf', '--device', 'gpu0', '--out', tmp_path / 'e'), '--device gpu0: not a device'),
        (('erf', '--panel-px', '0', '--out', tmp_path / 'e'), '--panel-px must be at least 1, got 0'),
        (('predict', tmp_path, '--checkpoint', tmp_path / 'c.pt'), 'is a folder: predict takes image files'),
        (('detect', 'train', '--backbone', 'resnet_zz', '--output', tmp_path / 'd'), "unknown model 'resnet_zz'"),
        (('detect', 'train', '--min-size', '0', '--output', tmp_path / 'd'), '--min-size must be at least 32'),
        (('detect', 'train', '--fpn-channels', '0', '--output', tmp_path / 'd'), '--fpn-channels must be at least 1'),
        (('detect', 'train', '--epochs', '0', '--output', tmp_path / 'd'), '--epochs must be at least 1, got 0'),
        (('segment', 'train', '--data', tmp_path / 'nowhere', '--output', tmp_path / 'd'), 'data folder not found'),
        (('detect', 'eval', '--checkpoint', tmp_path / 'nowhere'), 'checkpoint not found'),
    ]
    for args, message in cases:
        assert message in fails(capsys, *args), args
    assert not (tmp_path / 'd').exists() and not (tmp_path / 'e').exists()  # nothing written


def test_other_variant_and_class_count(tmp_path, capsys):
    p0 = tmp_path / 'p0.pth'
    torch.save({'model': timm.create_model('uniconvnet_p0', num_classes=10).state_dict()}, p0)
    err = fails(capsys, 'train', *TINY, '--finetune', p0, '--output', tmp_path / 'run')
    assert 'checkpoint is for uniconvnet_p0' in err
    a1000 = tmp_path / 'a1000.pth'
    torch.save({'model': timm.create_model('uniconvnet_a').state_dict()}, a1000)
    err = fails(capsys, 'eval', '--checkpoint', a1000)
    assert '1000-class head' in err and 'built-in digits has 10 classes' in err
    err = fails(capsys, 'eval', '--checkpoint', p0, '--model', 'uniconvnet_a')
    assert 'checkpoint is for uniconvnet_p0' in err
    # a 1000-class model predicts ImageNet names (the model is recognised from the weights)
    image = tmp_path / 'digit.png'
    DigitsDataset('val').image(0).save(image)
    assert cli_main(['predict', str(image), '--checkpoint', str(a1000), '--topk', '2', '--json']) == 0
    names = [name for name, _ in json.loads(capsys.readouterr().out)[str(image)]]
    imagenet = ImageNetInfo()
    known = {imagenet.index_to_description(i).split(',')[0] for i in range(1000)}
    assert len(names) == 2 and set(names) <= known


def test_finetune_reinitialises_head_then_resume_checks_class_count(official_a, digits_folder, tmp_path, capsys):
    official = tmp_path / 'uniconvnet_a_1k_224.pth'
    torch.save({'model': official_a['state_dict']}, official)  # the official key layout, 1000 classes
    out = tmp_path / 'ft'
    assert cli_main(['train', *map(str, TINY), '--finetune', str(official), '--output', str(out)]) == 0
    log = capsys.readouterr().out
    assert log.count('the head is re-initialised') == 1
    assert 'has a 1000-class head and the model has 10 classes' in log
    # an existing run is never overwritten by accident
    err = fails(capsys, 'train', *TINY, '--output', out)
    assert 'already holds a training run' in err and '--resume auto' in err
    # resuming the 10-class run on 2-class data: the checkpoint does not fit
    two = tmp_path / 'two'
    for split in ('train', 'val'):
        for c in ('0', '1'):
            (two / split / c).mkdir(parents=True)
            for i in range(2):
                DigitsDataset('val').image(i).save(two / split / c / f'{i}.png')
    err = fails(capsys, 'train', *TINY, '--data', two, '--recipe', 'digits', '--resume', out / 'last.pt',
                '--output', tmp_path / 'two-run')
    assert 'does not fit this model' in err and 'class count' in err


class _DigitsWithNaN(Dataset):
    """Digits at 8x8 where the images at ``bad`` indices are NaN (as from a broken decoder)."""

    def __init__(self, bad):
        self.base = DigitsDataset('train', build_transform(Preprocessing((3, 8, 8), 'bilinear', crop_pct=1.0)))
        self.bad = set(bad)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return (torch.full_like(x, math.nan) if i in self.bad else x), y


def _trainer(tmp_path, dataset, steps, max_bad_steps=3):
    cfg = make_train_config(image_size=8, batch_size=8, epochs=1, limit_train_batches=steps,
                            max_bad_steps=max_bad_steps, output=str(tmp_path))
    model = timm.create_model('uniconvnet_a', num_classes=10)
    pre = Preprocessing((3, 8, 8), 'bilinear', crop_pct=1.0)
    val = DigitsDataset('val', build_transform(pre))
    val.labels, val.images = val.labels[:16], val.images[:16]
    task = ClassificationTask('uniconvnet_a', [str(i) for i in range(10)], pre, smoothing=0.1)
    logs = []
    trainer = Trainer(cfg, model, task, build_loader(dataset, 8, is_training=True),
                      build_loader(val, 8, is_training=False), DistributedContext(), tmp_path, logs.append)
    return trainer, logs


def test_nan_guard_skips_a_bad_step(tmp_path):
    loader = build_loader(DigitsDataset('train'), 8, is_training=True)
    loader.sampler.set_epoch(0)
    first_batch = list(loader.sampler)[:8]  # the images of the first step
    trainer, logs = _trainer(tmp_path, _DigitsWithNaN(first_batch), steps=3)
    result = trainer.fit()
    skipped = [m for m in logs if 'update skipped' in m]
    assert len(skipped) == 1 and 'step 1' in skipped[0] and 'non-finite loss' in skipped[0]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert math.isfinite(result['history'][0]['train_loss']) and trainer.bad_steps == 0


def test_nan_guard_stops_after_n_bad_steps(tmp_path):
    trainer, logs = _trainer(tmp_path, _DigitsWithNaN(range(2000)), steps=10, max_bad_steps=3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match='3 updates in a row had a non-finite .*loss.*lower the learning rate'):
        trainer.fit()
    assert sum('update skipped' in m for m in logs) == 3
    torch.testing.assert_close(trainer.model.state_dict(), before, rtol=0, atol=0)  # no bad update applied


def test_shard_sampler_partitions_without_padding():
    data = list(range(11))
    shards = [list(ShardSampler(data, 3, r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == data and [len(s) for s in shards] == [4, 4, 3]

"""A tiny training run written against timm's own APIs only, the way timm's train.py and validate.py use them.

It does not import uniconvnet: ``python -m uniconvnet.timm tests/scripts/timm_train_tiny.py ...`` must register the
models for it (tests/test_timm_scripts.py). One epoch on an image folder, then validation of the model and its EMA;
prints one JSON line with what the test checks.
"""
import argparse
import json
import math
import sys

import torch
import timm
from timm.data import create_dataset, create_loader, resolve_data_config
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3, accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--data-dir', required=True)
    parser.add_argument('--model', default='uniconvnet_a')
    parser.add_argument('--img-size', type=int, default=16)
    parser.add_argument('--batch-size', type=int, default=6)
    parser.add_argument('--layer-decay', type=float, default=0.7)
    args = parser.parse_args()
    torch.manual_seed(0)

    train_set = create_dataset('', root=args.data_dir, split='train', is_training=True)
    val_set = create_dataset('', root=args.data_dir, split='validation')
    model = timm.create_model(args.model, num_classes=len(train_set.reader.class_to_idx), drop_path_rate=0.05)
    data_config = resolve_data_config({'input_size': (3, args.img_size, args.img_size)}, model=model)
    common = dict(input_size=data_config['input_size'], batch_size=args.batch_size, mean=data_config['mean'],
                  std=data_config['std'], interpolation=data_config['interpolation'], num_workers=0,
                  use_prefetcher=False, device=torch.device('cpu'))
    train_loader = create_loader(train_set, is_training=True, auto_augment='rand-m9-mstd0.5-inc1', re_prob=0.25,
                                 **common)
    val_loader = create_loader(val_set, is_training=False, crop_pct=data_config['crop_pct'], **common)
    optimizer = create_optimizer_v2(model, opt='adamw', lr=1e-3, weight_decay=0.05, layer_decay=args.layer_decay)
    ema = ModelEmaV3(model, decay=0.5)

    losses = []
    model.train()
    for images, targets in train_loader:
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        ema.update(model, step=len(losses))  # the update count, as train.py passes it

    def validate(net: torch.nn.Module) -> dict:
        net.eval()
        correct, seen = 0.0, 0
        with torch.no_grad():
            for images, targets in val_loader:
                top1, = accuracy(net(images), targets, topk=(1,))
                correct += top1.item() * len(targets) / 100
                seen += len(targets)
        return {'top1': 100 * correct / seen, 'images': seen}

    ema_differs = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                            ema.module.state_dict().values()))
    print(json.dumps({
        'model_class': type(model).__name__, 'uniconvnet_imported': 'uniconvnet' in sys.modules,
        'steps': len(losses), 'losses_finite': all(math.isfinite(v) for v in losses),
        'lr_scales': sorted({group['lr_scale'] for group in optimizer.param_groups}),
        'train_images': len(train_set), 'val': validate(model), 'val_ema': validate(ema.module),
        'ema_differs': ema_differs, 'argv': sys.argv,
    }))


if __name__ == '__main__':
    main()

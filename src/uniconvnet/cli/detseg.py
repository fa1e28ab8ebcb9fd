"""``uniconvnet detect train|eval`` and ``uniconvnet segment train|eval``: thin over the torchvision and smp
integrations' tasks (``integrations/torchvision/task.py``, ``integrations/smp/task.py``)."""
import argparse
import json
from typing import Any, Dict

from ..engine.config import TrainConfig
from ..integrations.torchvision.models import DETECTORS
from ..models import TRUNK_NORMS

# the trainer settings these commands expose, with detection/segmentation defaults
_TRAIN_DEFAULTS: Dict[str, Any] = dict(
    epochs=12, warmup_epochs=1.0, batch_size=8, lr=1e-3, weight_decay=0.05, clip_grad=10.0, ema_decay=0.0,
    mixup=0.0, cutmix=0.0, smoothing=0.0, auto_augment=None, reprob=0.0, workers=2, drop_path=0.0,
    hflip=None,  # 0.5 on user data; 0 on the built-in digits, which a mirror turns into other shapes
)
_TRAIN_FLAGS = ('data', 'output', 'resume', 'overwrite', 'epochs', 'warmup_epochs', 'batch_size', 'accum_steps',
                'lr', 'min_lr', 'weight_decay', 'clip_grad', 'drop_path', 'ema_decay', 'hflip', 'workers', 'device',
                'threads', 'amp', 'deterministic', 'seed', 'max_bad_steps', 'log_interval', 'limit_train_batches')


def _add_common(p: argparse.ArgumentParser, kind: str) -> None:
    fields = TrainConfig.field_names()
    for name in _TRAIN_FLAGS:
        f = fields[name]
        default = _TRAIN_DEFAULTS.get(name, f.default)
        flag = '--' + name.replace('_', '-')
        help_text = f.metadata.get('help', '')
        if name == 'data':
            help_text = (f'folder with train/ and val/ ({"images + annotations.json" if kind == "detect" else "images + masks"}); '
                         f'default: the built-in small-object dataset')
        if name == 'hflip':
            help_text = 'horizontal flip probability (default: 0.5; 0 on the built-in digits, not mirror-symmetric)'
        if isinstance(default, bool):
            p.add_argument(flag, action='store_true', help=help_text)
        else:
            typ = type(default) if default is not None else (float if name in ('lr', 'clip_grad', 'hflip') else str)
            if name in ('limit_train_batches', 'threads'):
                typ = int
            p.add_argument(flag, type=typ, default=default, choices=f.metadata.get('choices'), help=help_text)
    p.add_argument('--backbone', default='uniconvnet_a', help='UniConvNet variant of the backbone (any timm model with stride 4-32 levels works, e.g. resnet18)')
    p.add_argument('--backbone-weights', default=None, help='official or our classification checkpoint')
    p.add_argument('--num-classes', type=int, default=None, help='classes (default: from the data)')
    p.add_argument('--trunk-norm', choices=TRUNK_NORMS, default=None,
                   help="a UniConvNet backbone's stem and downsampling norms: layer (the paper's, default) or batch "
                        "(keeps small objects standing out when training from random weights; "
                        "docs/detection-segmentation.md)")


def _backbone_options(args: argparse.Namespace) -> Dict[str, Any]:
    return dict(backbone=args.backbone, backbone_weights=args.backbone_weights, num_classes=args.num_classes,
                trunk_norm=args.trunk_norm)


def _config(args: argparse.Namespace) -> TrainConfig:
    values = {k: getattr(args, k) for k in _TRAIN_FLAGS}
    if values['hflip'] is None:
        values['hflip'] = 0.5 if args.data else 0.0
    return TrainConfig(**{**_TRAIN_DEFAULTS, **values, 'model': args.backbone})


def _cmd_detect_train(args: argparse.Namespace) -> int:
    from ..integrations.torchvision import DetectionOptions, train_detection
    train_detection(_config(args), DetectionOptions(arch=args.arch, trainable_stages=args.trainable_stages,
                                                    min_size=args.min_size, fpn_channels=args.fpn_channels,
                                                    **_backbone_options(args)))
    return 0


def _cmd_segment_train(args: argparse.Namespace) -> int:
    from ..integrations.smp import SegmentationOptions, train_segmentation
    train_segmentation(_config(args), SegmentationOptions(**_backbone_options(args)))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.kind == 'detect':
        from ..integrations.torchvision import evaluate_detection as evaluate
    else:
        from ..integrations.smp import evaluate_segmentation as evaluate
    metrics = evaluate(args.checkpoint, args.data, batch_size=args.batch_size, device=args.device)
    print(json.dumps(metrics, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    for kind, title in (('detect', 'object detection (torchvision detectors, COCO AP)'),
                        ('segment', 'semantic segmentation (UperNet, mIoU)')):
        parser = sub.add_parser(kind, help=title)
        actions = parser.add_subparsers(dest='action', metavar='ACTION')
        actions.required = True
        train = actions.add_parser('train', help=f'train {title}')
        _add_common(train, kind)
        if kind == 'detect':
            train.add_argument('--arch', default='retinanet', choices=DETECTORS)
            train.add_argument('--trainable-stages', type=int, default=4, help='backbone stages that train (0-4)')
            train.add_argument('--min-size', type=int, default=128, help='detector input size')
            train.add_argument('--fpn-channels', type=int, default=256,
                               help="FPN and head width (torchvision's 256; smaller is much faster on small inputs)")
            train.set_defaults(func=_cmd_detect_train)
        else:
            train.set_defaults(func=_cmd_segment_train)
        ev = actions.add_parser('eval', help=f'evaluate a trained {kind} model on DATA/val')
        ev.add_argument('--checkpoint', required=True, help='output folder of the training run, or a checkpoint in it')
        ev.add_argument('--data', default=None, help='data folder (default: the built-in small-object dataset)')
        ev.add_argument('--batch-size', type=int, default=8)
        ev.add_argument('--device', default='auto')
        ev.set_defaults(func=_cmd_eval, kind=kind)

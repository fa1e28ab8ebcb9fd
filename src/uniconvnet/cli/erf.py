"""``uniconvnet erf``: effective receptive fields of UniConvNet and any timm models, side by side."""
import argparse
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..checkpoints import load_weights
from ..engine.distributed import resolve_device
from ..models import create_model


def _stage(value: str):
    """An int stage (1-based) or a submodule name."""
    return int(value) if value.lstrip('-').isdigit() else value


def _model_spec(spec: str, checkpoint: Optional[str] = None) -> Tuple[str, Optional[str]]:
    name, _, path = spec.partition('=')
    return name, (path or checkpoint)


def load_model(name: str, checkpoint: Optional[str] = None) -> nn.Module:
    """A model by timm name with random weights, or the weights of a local checkpoint (official UniConvNet
    ``.pth``, ours, or any state dict of that model), loaded by :func:`uniconvnet.checkpoints.load_weights`."""
    model = create_model(name)
    return model if checkpoint is None else load_weights(model, checkpoint)


def run(args: argparse.Namespace) -> int:
    from ..analysis.erf_report import erf_report
    from ..analysis.images import find_images
    if args.images is not None:
        find_images(args.images)  # an empty or missing folder fails before any model is built
    specs = [_model_spec(args.model, args.checkpoint)] + [_model_spec(s) for s in args.compare]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f'a model is listed twice: {names}')
    for flag, value in (('--size', args.size), ('--num-images', args.num_images), ('--panel-px', args.panel_px)):
        if value < 1:
            raise ValueError(f'{flag} must be at least 1, got {value}')
    device = resolve_device(args.device or 'cpu')  # an unknown or absent device fails before any model is built
    torch.manual_seed(args.seed)  # random weights are reproducible too
    models = {name: load_model(name, ckpt) for name, ckpt in specs}
    weights = {name: (Path(ckpt).name if ckpt else 'random init') for name, ckpt in specs}
    erf_report(models, args.out, images=args.images, size=args.size, num_images=args.num_images, seed=args.seed,
               stage=args.stage, stages=args.stages, weights=weights, batch_size=args.batch_size,
               grad_checkpointing=not args.no_grad_checkpointing, device=device,
               progress=not args.quiet, panel_px=args.panel_px)
    out = Path(args.out)
    written = ['erf.png'] + (['erf_stages.png'] if args.stages else []) + ['erf.json', 'erf.md', 'erf_maps.npz']
    print('wrote ' + ', '.join(str(out / f) for f in written))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'erf', help='effective receptive fields: heatmaps, area ratios and Gaussian-shape metrics',
        description='Measure the effective receptive field (RepLKNet protocol) of a model and others to compare, '
                    'and write erf.png, erf_stages.png, erf.json, erf.md and erf_maps.npz into --out. Models '
                    'without --checkpoint / NAME=PATH have random weights.')
    p.add_argument('--model', default='uniconvnet_t', help='model name (UniConvNet variant or any timm model)')
    p.add_argument('--checkpoint', help='weights for --model (official UniConvNet .pth, ours, or a state dict)')
    p.add_argument('--compare', nargs='*', default=[], metavar='NAME[=CHECKPOINT]',
                   help='models to compare, e.g. resnet101 convnext_tiny=convnext_tiny.pth')
    p.add_argument('--images', help='folder of images (default: photographs shipped with scikit-learn/matplotlib)')
    p.add_argument('--size', type=int, default=1024, help='square input size (default 1024, as in the paper)')
    p.add_argument('--num-images', type=int, default=50, help='images to average over (default 50)')
    p.add_argument('--seed', type=int, default=0, help='seed for random weights, image sampling and views (default 0)')
    p.add_argument('--stage', type=_stage, default=None,
                   help='map for erf.png: a stage number (1-4) or a submodule name (default: last stage)')
    p.add_argument('--stages', type=int, nargs='*', default=[1, 2, 3, 4],
                   help='stages for erf_stages.png (default 1 2 3 4; none to skip)')
    p.add_argument('--batch-size', type=int, default=1, help='images per forward pass (default 1)')
    p.add_argument('--device', default=None, help='e.g. cpu or cuda (default: cpu)')
    p.add_argument('--no-grad-checkpointing', action='store_true',
                   help='keep all activations (faster, much more memory at 1024x1024)')
    p.add_argument('--panel-px', type=int, default=320, help='side of each heatmap in the PNGs (default 320)')
    p.add_argument('--quiet', action='store_true', help='no progress output')
    p.add_argument('--out', required=True, help='output folder (created if missing)')
    p.set_defaults(func=run)

"""Detection and segmentation on the built-in small-object data: UniConvNet-A against a ResNet-18, same budget.

For every backbone (default: ``uniconvnet_a`` and timm's ``resnet18``, from random weights: none can be
downloaded here), one run of ``uniconvnet detect train`` (RetinaNet, FPN and head 64 wide: torchvision's 256 make
the head six times the backbone's cost at 128 px and leave too few updates for a CPU budget) and one of
``uniconvnet segment train`` (UperNet), with the same epochs, seed, batch, learning rate and input size, each
through the command line exactly as a user would type it. ``--pretrain`` first trains each backbone on the
built-in digits classification (``uniconvnet train --model BACKBONE``) and starts from those weights.
The data: 400 train / 100 val canvases of 128x128 px with 8-24 px digits (every
object is small by COCO's definition, area < 32x32). Reported: COCO AP, AP50, APs (pycocotools) of the last
epoch, mIoU and pixel accuracy, parameters, and the training wall time (evaluation included, pre-training not).

    PYTHONPATH=src python benchmarks/detseg_small_objects.py           # the README's table

Runs one after the other in this process; compare the times as ratios (the machine may be shared).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from uniconvnet.cli.main import main as cli_main


def last_metrics(output: Path) -> Dict[str, Any]:
    lines = (output / 'metrics.jsonl').read_text().splitlines()
    return json.loads(lines[-1])


def parameters(output: Path) -> float:
    from safetensors.torch import load_file
    return sum(t.numel() for t in load_file(str(output / 'model.safetensors')).values()) / 1e6


def cli(argv: List[str]) -> float:
    """Run ``uniconvnet ARGV`` in this process; minutes taken."""
    print('$ uniconvnet ' + ' '.join(argv), flush=True)
    start = time.perf_counter()
    if cli_main(argv) != 0:
        raise SystemExit(f'uniconvnet {" ".join(argv)} failed')
    return (time.perf_counter() - start) / 60


def pretrain(backbone: str, args: argparse.Namespace) -> Dict[str, Any]:
    """The built-in digits classification run whose weights the detection and segmentation runs start from."""
    output = Path(args.out) / f'digits-{backbone}'
    minutes = cli(['train', '--model', backbone, '--seed', str(args.seed), '--threads', str(args.threads),
                   '--output', str(output), '--overwrite'])
    return dict(kind='pretrain', backbone=backbone, minutes=minutes, weights=str(output / 'model.safetensors'),
                **last_metrics(output))


def run(kind: str, backbone: str, args: argparse.Namespace, weights: Optional[str]) -> Dict[str, Any]:
    output = Path(args.out) / f'{kind}-{backbone}'
    argv = [kind, 'train', '--backbone', backbone, '--epochs', str(args.epochs if kind == 'detect' else args.seg_epochs),
            '--seed', str(args.seed), '--threads', str(args.threads), '--workers', str(args.workers),
            '--output', str(output), '--overwrite']
    if kind == 'detect':
        argv += ['--arch', args.detector, '--fpn-channels', str(args.fpn_channels)]
    if weights:
        argv += ['--backbone-weights', weights]
    minutes = cli(argv)
    return dict(kind=kind, backbone=backbone, minutes=minutes, params_m=parameters(output), **last_metrics(output))


def table(rows: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    det = [r for r in rows if r['kind'] == 'detect']
    seg = [r for r in rows if r['kind'] == 'segment']
    pre = [r for r in rows if r['kind'] == 'pretrain']
    start = ('backbones pre-trained on the built-in digits (val top-1: ' +
             ', '.join(f"{r['backbone']} {r['val_top1']:.1f}% in {r['minutes']:.1f} min" for r in pre) + ')'
             if args.pretrain else 'backbones from random weights')
    out = [f'{args.detector} (FPN width {args.fpn_channels}), {args.epochs} epochs; UperNet, {args.seg_epochs} epochs; seed {args.seed}, '
           f'{args.threads} thread(s), torch {torch.__version__}; {start}', '']
    if det:
        out += [f'| {args.detector} backbone | AP | AP50 | AP75 | APs | params (M) | train + eval min |',
                '|---|---:|---:|---:|---:|---:|---:|']
        out += [f"| {r['backbone']} | {r['val_AP']:.3f} | {r['val_AP50']:.3f} | {r['val_AP75']:.3f} | "
                f"{r['val_APs']:.3f} | {r['params_m']:.2f} | {r['minutes']:.1f} |" for r in det]
        out.append('')
    if seg:
        out += ['| UperNet backbone | mIoU | pixel acc | params (M) | train + eval min |', '|---|---:|---:|---:|---:|']
        out += [f"| {r['backbone']} | {r['val_mIoU']:.3f} | {r['val_pixel_acc']:.3f} | {r['params_m']:.2f} | "
                f"{r['minutes']:.1f} |" for r in seg]
    return '\n'.join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backbones', nargs='+', default=['uniconvnet_a', 'resnet18'])
    p.add_argument('--detector', default='retinanet', choices=('retinanet', 'fasterrcnn'))
    p.add_argument('--epochs', type=int, default=24, help='detection epochs')
    p.add_argument('--fpn-channels', type=int, default=64, help='FPN and detection-head width')
    p.add_argument('--seg-epochs', type=int, default=12, help='segmentation epochs (0: skip segmentation)')
    p.add_argument('--skip-detection', action='store_true')
    p.add_argument('--pretrain', action='store_true',
                   help='start detection and segmentation from weights trained on the built-in digits first')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--out', default='runs/bench_detseg')
    p.add_argument('--json', help='also write the rows here')
    args = p.parse_args(argv)
    rows: List[Dict[str, Any]] = []
    weights: Dict[str, Optional[str]] = {b: None for b in args.backbones}
    if args.pretrain:
        for backbone in args.backbones:
            rows.append(pretrain(backbone, args))
            weights[backbone] = rows[-1]['weights']
    for kind in ('detect', 'segment'):
        if (kind == 'detect' and args.skip_detection) or (kind == 'segment' and args.seg_epochs == 0):
            continue
        for backbone in args.backbones:
            rows.append(run(kind, backbone, args, weights[backbone]))
            print(table(rows, args), flush=True)
    print('\n' + table(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

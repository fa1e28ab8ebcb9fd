"""Detection and segmentation on the built-in small-object data, through the command line as a user types it.

Settings (``--setting``):

  backbones   UniConvNet-A against a ResNet-18 (``--backbones``), same budget: one run of ``uniconvnet detect
              train`` (RetinaNet, FPN and head 64 wide: torchvision's 256 make the head six times the backbone's cost
              at 128 px and leave too few updates for a CPU budget) and one of ``uniconvnet segment train`` (UperNet),
              with the same epochs, seed, batch, learning rate and input size. ``--pretrain`` first trains each
              backbone on the built-in digits classification (``uniconvnet train --model BACKBONE``) and starts
              from those weights. Reported: COCO AP, AP50, APs (pycocotools) of the last epoch, mIoU and pixel
              accuracy, parameters, and the training wall time (evaluation included, pre-training not).
  trunk-norm  RetinaNet on UniConvNet-A from random weights with ``--trunk-norm layer`` (the paper's LayerNorms in
              the stem and downsampling layers) and ``--trunk-norm batch`` (BatchNorms there), over ``--seeds``:
              AP, AP50, APs per run and mean +- sd per trunk.

The data: 400 train / 100 val canvases of 128x128 px with 8-24 px digits (every object is small by COCO's
definition, area < 32x32). Runs are resumable: a finished run (same command) is reused, an interrupted one
continues from its ``last.pt``. Times are the trainer's per-epoch seconds (training and evaluation), summed over
the sessions of a run; runs go one after the other in this process (compare the times as ratios: the machine may
be shared). Tables go to ``benchmarks/results/detseg_small_objects.md`` (backbones) and
``detseg_trunk_norm.md`` (trunk-norm), with the rows as JSON beside them.

    PYTHONPATH=src python benchmarks/detseg_small_objects.py                         # the README's table
    PYTHONPATH=src python benchmarks/detseg_small_objects.py --setting trunk-norm --seeds 0 1 2
    PYTHONPATH=src python benchmarks/detseg_small_objects.py --smoke                 # every setting, tiny (CI)
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from uniconvnet.cli.main import main as cli_main

RESULTS = Path(__file__).resolve().parent / 'results'
RESULT_NAMES = {'backbones': 'detseg_small_objects', 'trunk-norm': 'detseg_trunk_norm'}


def history(output: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (output / 'metrics.jsonl').read_text().splitlines()]


def parameters(output: Path) -> float:
    from safetensors.torch import load_file
    return sum(t.numel() for t in load_file(str(output / 'model.safetensors')).values()) / 1e6


def cli(argv: List[str], output: Path) -> List[Dict[str, Any]]:
    """Run ``uniconvnet ARGV --output OUTPUT`` in this process unless the same command finished there already;
    an interrupted run of the same command resumes. Returns the run's per-epoch records."""
    done, started = output / 'bench-done.json', output / 'bench-started.json'
    if done.is_file() and json.loads(done.read_text()) == argv:
        return history(output)
    resume = started.is_file() and json.loads(started.read_text()) == argv and (output / 'last.pt').is_file()
    full = argv + ['--output', str(output)] + (['--resume', 'auto'] if resume else ['--overwrite'])
    print('$ uniconvnet ' + ' '.join(full), flush=True)
    output.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps(argv))
    if cli_main(full) != 0:
        raise SystemExit(f'uniconvnet {" ".join(full)} failed')
    done.write_text(json.dumps(argv))
    return history(output)


def summary_of(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The last epoch's metrics and the minutes of all epochs (training and evaluation)."""
    return dict(records[-1], minutes=sum(r['seconds'] for r in records) / 60)


def pretrain(backbone: str, args: argparse.Namespace) -> Dict[str, Any]:
    """The built-in digits classification run whose weights the detection and segmentation runs start from."""
    output = Path(args.out) / f'digits-{backbone}-seed{args.seeds[0]}'
    argv = ['train', '--model', backbone, '--seed', str(args.seeds[0]), '--threads', str(args.threads)]
    if args.smoke:
        argv += ['--epochs', '1', '--limit-train-batches', '2', '--image-size', '16']
    row = summary_of(cli(argv, output))
    return dict(kind='pretrain', backbone=backbone, weights=str(output / 'model.safetensors'), **row)


def run(kind: str, backbone: str, seed: int, args: argparse.Namespace, weights: Optional[str] = None,
        trunk_norm: Optional[str] = None) -> Dict[str, Any]:
    output = Path(args.out) / f'{kind}-{backbone}{f"-{trunk_norm}" if trunk_norm else ""}-seed{seed}'
    epochs = args.epochs if kind == 'detect' else args.seg_epochs
    argv = [kind, 'train', '--backbone', backbone, '--epochs', str(epochs), '--seed', str(seed), '--threads',
            str(args.threads), '--workers', str(args.workers)]
    if kind == 'detect':
        argv += ['--arch', args.detector, '--fpn-channels', str(args.fpn_channels), '--min-size', str(args.min_size)]
    if weights:
        argv += ['--backbone-weights', weights]
    if trunk_norm:
        argv += ['--trunk-norm', trunk_norm]
    if args.data:
        argv += ['--data', args.data]
    if args.smoke:
        argv += ['--limit-train-batches', '2', '--batch-size', '2']
    row = summary_of(cli(argv, output))
    return dict(kind=kind, backbone=backbone, seed=seed, trunk_norm=trunk_norm, params_m=parameters(output), **row)


def _mean_sd(values: List[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.3f} +- {sd:.3f}'


def backbones_table(rows: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    det = [r for r in rows if r['kind'] == 'detect']
    seg = [r for r in rows if r['kind'] == 'segment']
    pre = [r for r in rows if r['kind'] == 'pretrain']
    start = ('backbones pre-trained on the built-in digits (val top-1: ' +
             ', '.join(f"{r['backbone']} {r['val_top1']:.1f}% in {r['minutes']:.1f} min" for r in pre) + ')'
             if args.pretrain else 'backbones from random weights')
    out = [f'{args.detector} (FPN width {args.fpn_channels}), {args.epochs} epochs; UperNet, {args.seg_epochs} '
           f'epochs; seed {args.seeds[0]}, {args.threads} thread(s), torch {torch.__version__}; {start}', '']
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


def trunk_norm_table(rows: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    norms = [n for n in args.trunk_norms if any(r['trunk_norm'] == n for r in rows)]
    out = [f'{args.detector} (FPN width {args.fpn_channels}) on {args.backbones[0]} from random weights, '
           f'{args.epochs} epochs at {args.min_size} px, {args.threads} thread(s), torch {torch.__version__}; '
           f'--trunk-norm layer (the paper\'s LayerNorms in the stem and downsampling layers) against batch '
           f'(BatchNorms there); mean +- sd over seeds', '',
           '| trunk norm | seeds | AP | AP50 | APs | train + eval min per run |', '|---|---|---:|---:|---:|---:|']
    for norm in norms:
        mine = [r for r in rows if r['trunk_norm'] == norm]
        out.append(f'| {norm} | {" ".join(str(r["seed"]) for r in mine)} | {_mean_sd([r["val_AP"] for r in mine])} | '
                   f'{_mean_sd([r["val_AP50"] for r in mine])} | {_mean_sd([r["val_APs"] for r in mine])} | '
                   f'{statistics.mean(r["minutes"] for r in mine):.1f} |')
    out += ['', '| trunk norm | seed | AP | AP50 | AP75 | APs | AP at epoch ' +
            ' | AP at epoch '.join(str(e) for e in _curve_epochs(args.epochs)) + ' |',
            '|---|---:|---:|---:|---:|---:|' + '---:|' * len(_curve_epochs(args.epochs))]
    for r in rows:
        out.append(f"| {r['trunk_norm']} | {r['seed']} | {r['val_AP']:.3f} | {r['val_AP50']:.3f} | "
                   f"{r['val_AP75']:.3f} | {r['val_APs']:.3f} | " +
                   ' | '.join(f'{ap:.3f}' for ap in r['curve']) + ' |')
    return '\n'.join(out)


def _curve_epochs(epochs: int) -> List[int]:
    return sorted({max(1, epochs * k // 4) for k in (1, 2, 3)})


def run_setting(setting: str, args: argparse.Namespace) -> str:
    rows: List[Dict[str, Any]] = []
    if setting == 'trunk-norm':
        for seed in args.seeds:  # seed by seed: partial results stay balanced between the trunks
            for norm in args.trunk_norms:
                row = run('detect', args.backbones[0], seed, args, trunk_norm=norm)
                curve = history(Path(args.out) / f'detect-{args.backbones[0]}-{norm}-seed{seed}')
                row['curve'] = [curve[e - 1]['val_AP'] for e in _curve_epochs(args.epochs)]
                rows.append(row)
                print(trunk_norm_table(rows, args), flush=True)
        table = trunk_norm_table(rows, args)
    else:
        weights: Dict[str, Optional[str]] = {b: None for b in args.backbones}
        if args.pretrain:
            for backbone in args.backbones:
                rows.append(pretrain(backbone, args))
                weights[backbone] = rows[-1]['weights']
        for kind in ('detect', 'segment'):
            if (kind == 'detect' and args.skip_detection) or (kind == 'segment' and args.seg_epochs == 0):
                continue
            for backbone in args.backbones:
                rows.append(run(kind, backbone, args.seeds[0], args, weights[backbone]))
                print(backbones_table(rows, args), flush=True)
        table = backbones_table(rows, args)
    if not args.smoke:  # the smoke run writes nothing under benchmarks/results
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f'{RESULT_NAMES[setting]}.md').write_text(table + '\n')
        (RESULTS / f'{RESULT_NAMES[setting]}.json').write_text(json.dumps(rows, indent=2))
    return table


def _smoke_data(out: Path) -> str:
    """A tiny generated set (8 train / 4 val canvases of 64 px) for the smoke run."""
    from uniconvnet.data.small_objects import generate_small_objects
    root = out / 'data-smoke'
    generate_small_objects(root, num_train=8, num_val=4, image_size=64, size_range=(8, 16), max_objects=2)
    return str(root)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--setting', nargs='+', default=['backbones'], choices=list(RESULT_NAMES),
                   help='what to compare (default: backbones)')
    p.add_argument('--backbones', nargs='+', default=None,
                   help='backbones (default: uniconvnet_a resnet18; trunk-norm: uniconvnet_a)')
    p.add_argument('--detector', default='retinanet', choices=('retinanet', 'fasterrcnn'))
    p.add_argument('--epochs', type=int, default=24, help='detection epochs')
    p.add_argument('--fpn-channels', type=int, default=64, help='FPN and detection-head width')
    p.add_argument('--min-size', type=int, default=128, help='detector input size')
    p.add_argument('--seg-epochs', type=int, default=12, help='segmentation epochs (0: skip segmentation)')
    p.add_argument('--skip-detection', action='store_true')
    p.add_argument('--pretrain', action='store_true',
                   help='start detection and segmentation from weights trained on the built-in digits first')
    p.add_argument('--seeds', nargs='+', type=int, default=[0], help='seeds (backbones: the first one)')
    p.add_argument('--trunk-norms', nargs='+', default=['layer', 'batch'], choices=('layer', 'batch'))
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--data', default=None, help='data folder (default: the built-in small-object dataset)')
    p.add_argument('--out', default='runs/bench_detseg', help='runs folder (resumable)')
    p.add_argument('--smoke', action='store_true',
                   help='every setting on a tiny generated set, one epoch of two batches (CI: the script runs); '
                        'writes nothing under benchmarks/results')
    args = p.parse_args(argv)
    settings = list(RESULT_NAMES) if args.smoke else args.setting
    if args.smoke:
        args.out = str(Path(args.out) / 'smoke')
        args.epochs, args.seg_epochs, args.fpn_channels, args.min_size, args.threads = 1, 1, 16, 64, 1
        args.data = _smoke_data(Path(args.out))
    for setting in settings:
        defaults = ['uniconvnet_a'] if setting == 'trunk-norm' or args.smoke else ['uniconvnet_a', 'resnet18']
        setting_args = argparse.Namespace(**{**vars(args), 'backbones': args.backbones or defaults})
        print('\n' + run_setting(setting, setting_args), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

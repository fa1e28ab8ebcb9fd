#!/usr/bin/env python
"""Eager PyTorch on the CPU: UniConvNet against its fastest equally accurate peers, float32 and bfloat16 autocast.

    PYTHONPATH=src python benchmarks/eager_cpu.py [--threads 2] [--batch 1 8] [--runs 10] [--profile]
    PYTHONPATH=src python benchmarks/eager_cpu.py --branches [--batch 1 8] [--runs 15]
    PYTHONPATH=src python benchmarks/eager_cpu.py --smoke

Issue 20's eager column: UniConvNet-A, N0 and T, ``fuse()``d (the inference form), against the peers the issue
names (ConvNeXt-femto for A; EfficientViT-B2 and ConvNeXt-T for N0; EfficientViT-L1 for T), each peer through
``timm.utils.reparameterize_model``. Every model runs in float32 and under ``torch.autocast('cpu',
dtype=torch.bfloat16)`` (the context entered around each forward, as a user would), all (model, precision) pairs
in one interleaved loop per batch size (one forward of each in turn, every other round in reverse), so that load
from other processes slows all of them alike; ratios are medians over rounds of the ratio within a round. Random weights: the DCN offsets and mask and unit layer scales as in
``dcnv3_gpu.randomize_dcn_sampling``, so that every branch counts in the bfloat16 output difference, which is
reported as the largest absolute difference of the logits from float32 over the largest logit.

``--branches`` measures instead each branch of each stage's first block (RFA, DCN, MLP) in bfloat16 autocast against
float32, with the layers' autocast rules off: the evidence for their ``autocast_float32_below`` thresholds; writes
``results/eager_cpu_branches.md``.

``--profile`` adds, per model and precision, the top-level ATen calls of one forward at batch 1 and the ops with
the most time (PyTorch profiler). Writes ``benchmarks/results/eager_cpu.{md,json}`` (``--out``); ``--smoke`` runs
A and ConvNeXt-femto at 64x64 once (both tables) and writes nothing.
"""
import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import timm
import torch
from timm.utils import reparameterize_model

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3, ReceptiveFieldAggregator
from dcnv3_gpu import randomize_dcn_sampling

# variant -> (peers the issue compares it with, the target ratio variant / fastest of them)
TARGETS: Dict[str, Tuple[Tuple[str, ...], float]] = {
    'uniconvnet_a': (('convnext_femto',), 2.5),
    'uniconvnet_n0': (('efficientvit_b2', 'convnext_tiny'), 1.0),
    'uniconvnet_t': (('efficientvit_l1',), 1.0),
}
PRECISIONS = ('fp32', 'bf16')
RESULTS = Path(__file__).parent / 'results'


def build(name: str) -> torch.nn.Module:
    """A UniConvNet ``fuse()``d with every branch counting, or a peer reparameterized, in eval mode."""
    model = timm.create_model(name).eval()
    if hasattr(model, 'fuse'):
        torch.manual_seed(0)
        randomize_dcn_sampling(model, std=0.02, unit_layer_scales=True)
        return model.fuse()
    return reparameterize_model(model)


def forward(model: torch.nn.Module, images: torch.Tensor, precision: str) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'):
        return model(images)


def interleaved_times(runners: Dict[Tuple[str, str], Callable[[], object]], runs: int, warmup: int
                      ) -> Dict[Tuple[str, str], List[float]]:
    """Seconds of each runner per round: all called in turn, ``runs`` rounds after ``warmup``; every other round
    in reverse order, so that no runner always follows the same one."""
    times: Dict[Tuple[str, str], List[float]] = {key: [] for key in runners}
    keys = list(runners)
    for round_index in range(warmup + runs):
        for key in (keys if round_index % 2 == 0 else keys[::-1]):
            start = time.perf_counter()
            runners[key]()
            if round_index >= warmup:
                times[key].append(time.perf_counter() - start)
    return times


def paired_ratio(times: Dict[Tuple[str, str], List[float]], a: Tuple[str, str], b: Tuple[str, str]) -> float:
    """Median over rounds of a's time / b's time in the same round: a burst of load from another process
    slows both alike within a round, so this moves less than the ratio of medians."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def profile_forward(model: torch.nn.Module, size: int, precision: str) -> Dict[str, object]:
    """Top-level ATen calls of one batch-1 forward and the ops with the most time (inclusive, per forward)."""
    from torch.profiler import ProfilerActivity, profile
    images = torch.randn(1, 3, size, size)
    runs = 3
    forward(model, images, precision)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            forward(model, images, precision)
    calls: Counter = Counter()
    ms: Counter = Counter()
    for event in prof.events():
        if event.cpu_parent is None and event.name.startswith(('aten::', 'uniconvnet')):
            calls[event.name] += 1
            ms[event.name] += event.cpu_time_total / 1e3 / runs
    return dict(calls=round(sum(calls.values()) / runs), op_ms=sum(ms.values()),
                top=[(name, round(calls[name] / runs), t) for name, t in ms.most_common(8)])


def output_difference(model: torch.nn.Module, size: int) -> float:
    """Largest |bf16 autocast - float32| of the logits over the largest |logit|, on two random images."""
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    reference = forward(model, images, 'fp32')
    low = forward(model, images, 'bf16').float()
    return ((low - reference).abs().max() / reference.abs().max()).item()


BRANCHES = ('RFA', 'DCN', 'MLP')


def branch_ratios(name: str, batches: Sequence[int], size: int, runs: int, warmup: int) -> List[str]:
    """Table rows: bf16 autocast / float32 time of each branch of each stage's first block, paired within rounds,
    with the layers' ``autocast_float32_below`` rules off, so that the ratio is what bfloat16 itself costs or saves
    at that work (pixels x dim^2 multiply-adds): the evidence for the rules' thresholds."""
    model = build(name)
    rows = []
    for batch in batches:
        for index, stage in enumerate(model.stages):
            block = stage.blocks[0]
            side, dim = size // 2 ** (index + 2), block.rfa.dim
            x = torch.randn(batch, side, side, dim)
            saved = block.rfa.autocast_float32_below, block.dcn.autocast_float32_below
            block.rfa.autocast_float32_below = block.dcn.autocast_float32_below = 0
            runners = {}
            for branch in range(len(BRANCHES)):
                for precision in PRECISIONS:
                    runners[(BRANCHES[branch], precision)] = (
                        lambda b=branch, p=precision: _run_branch(block, b, x, p))
            times = interleaved_times(runners, runs, warmup)
            block.rfa.autocast_float32_below, block.dcn.autocast_float32_below = saved
            cells = [f'{paired_ratio(times, (b, "bf16"), (b, "fp32")):.2f}' for b in BRANCHES]
            rows.append(f'| `{name}` | {batch} | {index} | {batch * side * side * dim * dim / 1e6:.1f} M | '
                        + ' | '.join(cells) + ' |')
    return rows


def _run_branch(block: torch.nn.Module, branch: int, x: torch.Tensor, precision: str) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'):
        return block.branch(branch, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--variants', nargs='+', default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument('--batch', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--profile', action='store_true', help='top-level ATen calls and top ops per model')
    parser.add_argument('--branches', action='store_true',
                        help="instead: bf16 / fp32 time of each block branch per stage, the layers' rules off")
    parser.add_argument('--out', default=str(RESULTS / 'eager_cpu'), help='PATH: writes PATH.md and PATH.json')
    parser.add_argument('--smoke', action='store_true', help='A and ConvNeXt-femto at 64x64, once; writes nothing')
    args = parser.parse_args()
    if args.smoke:
        args.variants, args.batch, args.runs, args.warmup, args.size = ['uniconvnet_a'], [1], 1, 0, 64
    torch.set_num_threads(args.threads)
    if args.branches or args.smoke:  # the smoke mode runs both tables
        write_branch_table(args)
    if args.branches:
        return
    names = list(args.variants) + [p for v in args.variants for p in TARGETS[v][0]]
    models = {name: build(name) for name in dict.fromkeys(names)}

    latency: Dict[int, Dict[Tuple[str, str], float]] = {}
    times: Dict[int, Dict[Tuple[str, str], List[float]]] = {}
    for batch in args.batch:
        images = torch.randn(batch, 3, args.size, args.size)
        runners = {(name, precision): (lambda m=model, p=precision: forward(m, images, p))
                   for name, model in models.items() for precision in PRECISIONS}
        times[batch] = interleaved_times(runners, args.runs, args.warmup)
        latency[batch] = {key: statistics.median(t) * 1e3 for key, t in times[batch].items()}
        print(f'batch {batch}: ' + ', '.join(f'{n} {p} {ms:.1f}' for (n, p), ms in latency[batch].items()),
              flush=True)

    header = (f'{args.size}x{args.size}, {args.threads} threads, torch {torch.__version__}, timm {timm.__version__}; '
              f'{args.runs} rounds per batch size, each one forward of every (model, precision) in turn, in one '
              f'loop (every other round reversed); ms: medians; ratios: medians over rounds of the ratio within a '
              f'round. UniConvNet fuse()d, peers reparameterize_model()d; bf16 = torch.autocast("cpu", '
              f'dtype=torch.bfloat16) around each forward.')
    lines = ['# Eager PyTorch on the CPU (`benchmarks/eager_cpu.py`)', '', header, '',
             '| model | ' + ' | '.join(f'fp32 b{b} ms | bf16 b{b} ms | bf16 / fp32' for b in args.batch) + ' |',
             '|---|' + '---:|---:|---:|' * len(args.batch)]
    for name in models:
        cells = [f'{latency[b][(name, "fp32")]:.1f} | {latency[b][(name, "bf16")]:.1f} | '
                 f'{paired_ratio(times[b], (name, "bf16"), (name, "fp32")):.2f}' for b in args.batch]
        lines.append(f'| `{name}` | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Against the fastest of the named peers in the same precision (UniConvNet / peer; target in '
              'brackets):', '',
              '| variant | peers | ' + ' | '.join(f'{p} b{b}' for b in args.batch for p in PRECISIONS) + ' |',
              '|---|---|' + '---:|' * (len(args.batch) * len(PRECISIONS))]
    ratios = {}
    for variant in args.variants:
        peers, target = TARGETS[variant]
        cells = []
        for batch in args.batch:
            for precision in PRECISIONS:
                fastest = min(peers, key=lambda p: latency[batch][(p, precision)])
                ratio = paired_ratio(times[batch], (variant, precision), (fastest, precision))
                ratios[f'{variant} {precision} b{batch}'] = dict(peer=fastest, ratio=ratio, target=target)
                cells.append(f'{ratio:.2f}x vs {fastest} ({"met" if ratio <= target else "missed"}, <= {target})')
        lines.append(f'| {variant} | {", ".join(peers)} | ' + ' | '.join(cells) + ' |')
    differences = {v: output_difference(models[v], args.size) for v in args.variants}
    lines += ['', 'bf16 autocast output difference from float32 (max |logit difference| / max |logit|): '
              + ', '.join(f'{v} {d:.2e}' for v, d in differences.items())]
    profiles = {}
    if args.profile:
        lines += ['', 'Profile of one forward at batch 1 (top-level ATen calls; op time, inclusive, per forward):', '']
        for name, model in models.items():
            for precision in PRECISIONS:
                prof = profile_forward(model, args.size, precision)
                profiles[f'{name} {precision}'] = prof
                top = ', '.join(f'{op} {n}x {t:.1f} ms' for op, n, t in prof['top'])
                lines.append(f'- `{name}` {precision}: {prof["calls"]} calls, {prof["op_ms"]:.1f} ms; {top}')
    text = '\n'.join(lines) + '\n'
    print(text)
    if not args.smoke:
        out = Path(args.out)
        out.with_suffix('.md').write_text(text)
        report = dict(settings=vars(args), latency_ms={f'{n} {p} b{b}': ms for b, row in latency.items()
                                                     for (n, p), ms in row.items()},
                      ratios=ratios, bf16_difference=differences, profiles=profiles)
        out.with_suffix('.json').write_text(json.dumps(report, indent=2))


def write_branch_table(args: argparse.Namespace) -> None:
    """``--branches``: prints the table and writes it to PATH_branches.md (not with ``--smoke``)."""
    lines = ['# Block branches in bfloat16 autocast on the CPU (`benchmarks/eager_cpu.py --branches`)', '',
             f'{args.size}x{args.size} inputs, {args.threads} threads, torch {torch.__version__}; each branch of each '
             f"stage's first block (its norm and layer scale included, the layers' `autocast_float32_below` rules "
             f'off), float32 and bf16 autocast in one interleaved loop of {args.runs} rounds; bf16 time / float32 '
             f'time, medians over rounds of the ratio within a round. Work: pixels x dim^2 multiply-adds, the '
             f"measure the rules compare with their threshold (RFA: "
             f'{ReceptiveFieldAggregator.autocast_float32_below / 1e6:g} M, DCN: {DCNv3.autocast_float32_below / 1e6:g} M).',
             '', '| variant | batch | stage | work | ' + ' | '.join(BRANCHES) + ' |', '|---|---:|---:|---:|---:|---:|---:|']
    for name in args.variants:
        lines += branch_ratios(name, args.batch, args.size, args.runs, args.warmup)
        print(lines[-1], flush=True)
    text = '\n'.join(lines) + '\n'
    print(text)
    if not args.smoke:
        Path(f'{args.out}_branches.md').write_text(text)


if __name__ == '__main__':
    main()

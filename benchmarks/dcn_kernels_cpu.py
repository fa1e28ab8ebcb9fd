"""DCNv3 sampling kernels on the CPU, per call: numba kernels vs the gather core vs the grid_sample reference.

Every stage shape of UniConvNet-A (dims 24-192, group width 8), N0 (48-384, width 16) and T (64-512, width 16)
at 224x224 input (stages 56, 28, 14, 7 pixels), offsets of about two pixels: forward at batch 1 and 8, forward
+ backward (all three gradients) at batch 32 for A and 16 for N0 and T. Medians of interleaved runs, so that
load from other processes hits every core alike. Then a whole UniConvNet-A forward at batch 1, numba vs
gather, interleaved. Writes a markdown table to benchmarks/results/dcn_kernels_cpu.md.

Run: ``python benchmarks/dcn_kernels_cpu.py [--threads 2] [--threading-layer omp]``; ``--smoke``: one tiny stage
and a 32x32 model, once each, writing nothing.
"""
import argparse
import statistics
import time
from pathlib import Path

import numba
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import using_dcn_backend
from uniconvnet.ops import dcnv3_gather, dcnv3_numba, dcnv3_torch

VARIANTS = {'A': ((24, 48, 96, 192), 8, 32), 'N0': ((48, 96, 192, 384), 16, 16), 'T': ((64, 128, 256, 512), 16, 16)}
SIZES = (56, 28, 14, 7)
CORES = {'numba': dcnv3_numba, 'gather': dcnv3_gather, 'grid_sample': dcnv3_torch}
GEOMETRY = ((3, 3), (1, 1), (1, 1), (1, 1))


def interleaved_medians(functions, runs):
    """Median seconds of each function, the functions run in turn ``runs`` times after one warm-up each."""
    for fn in functions.values():
        fn()
    times = {name: [] for name in functions}
    for _ in range(runs):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def core_call(core, batch, size, channels, group, backward):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, size, size, channels, generator=generator)
    offset = torch.randn(batch, size, size, group * 18, generator=generator) * 2
    mask = torch.randn(batch, size, size, group * 9, generator=generator)
    if not backward:
        def run():
            with torch.no_grad():
                core(x, offset, mask, *GEOMETRY, group, 1.0)
        return run
    leaves = [t.requires_grad_() for t in (x, offset, mask)]

    def run():
        out = core(*leaves, *GEOMETRY, group, 1.0)
        out.backward(torch.ones_like(out))
    return run


def kernel_table(runs: int, variants=VARIANTS, sizes=SIZES):
    lines = ['| variant | stage (H, C, groups) | mode | batch | numba ms | gather ms | grid_sample ms | '
             'gather / numba | grid_sample / numba |', '|---|---|---|---:|---:|---:|---:|---:|---:|']
    for variant, (dims, width, train_batch) in variants.items():
        for size, channels in zip(sizes, dims):
            group = channels // width
            for mode, batch in (('forward', 1), ('forward', 8), ('fwd+bwd', train_batch)):
                backward = mode == 'fwd+bwd'
                fns = {name: core_call(core, batch, size, channels, group, backward) for name, core in CORES.items()}
                med = interleaved_medians(fns, max(3, runs // 3) if backward else runs)
                ms = {k: v * 1e3 for k, v in med.items()}
                line = (f'| {variant} | ({size}, {channels}, {group}) | {mode} | {batch} | {ms["numba"]:.3f} | '
                        f'{ms["gather"]:.3f} | {ms["grid_sample"]:.3f} | {ms["gather"] / ms["numba"]:.1f}x | '
                        f'{ms["grid_sample"] / ms["numba"]:.1f}x |')
                print(line, flush=True)
                lines.append(line)
    return lines


def whole_model(runs: int, size: int = 224):
    model = timm.create_model('uniconvnet_a').eval()
    x = torch.randn(1, 3, size, size)

    def forward_with(backend):
        def run():
            with torch.no_grad(), using_dcn_backend(model, backend):
                model(x)
        return run
    med = interleaved_medians({'numba': forward_with('numba'), 'gather': forward_with('gather')}, runs)
    return {k: v * 1e3 for k, v in med.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=15)
    parser.add_argument('--threading-layer', default=None, help="numba's threading layer (default: numba's choice)")
    parser.add_argument('--model-only', action='store_true', help='only the whole-model comparison')
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'dcn_kernels_cpu.md'))
    parser.add_argument('--smoke', action='store_true', help='one tiny stage and a 32x32 model; writes nothing')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.threading_layer:
        numba.config.THREADING_LAYER = args.threading_layer  # before the first parallel call
    dcnv3_numba(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 18), torch.zeros(1, 2, 2, 9), *GEOMETRY, 1, 1.0)
    header = (f'{args.threads} threads (torch and numba), float32, 224x224 input, offsets ~2 px, medians of '
              f'interleaved runs; numba {numba.__version__}, threading layer {numba.threading_layer()}, '
              f'torch {torch.__version__}')
    print(header)
    if args.smoke:
        kernel_table(1, {'A': ((24,), 8, 2)}, (8,))
        print(whole_model(1, size=32))
        return
    lines = [] if args.model_only else kernel_table(args.runs)
    model = whole_model(args.runs)
    summary = (f'Whole UniConvNet-A forward, batch 1: numba {model["numba"]:.1f} ms, gather {model["gather"]:.1f} ms '
               f'({model["gather"] / model["numba"]:.2f}x)')
    print(summary)
    if not args.model_only:
        text = '\n'.join(['# DCNv3 sampling kernels on the CPU (`benchmarks/dcn_kernels_cpu.py`)', '', header, '',
                          *lines, '', summary, ''])
        Path(args.out).write_text(text)


if __name__ == '__main__':
    main()

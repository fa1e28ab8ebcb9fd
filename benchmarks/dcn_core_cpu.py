"""DCNv3 sampling core on the CPU: the gather core against the grid_sample reference, at UniConvNet-T's shapes.

Forward, and forward + backward (all three gradients), per stage of UniConvNet-T at 224x224 (group width 16,
offsets of about two pixels), medians of interleaved runs. Run: ``python benchmarks/dcn_core_cpu.py [--threads 2]``.
"""
import argparse
import statistics
import time

import torch

from uniconvnet.ops import dcnv3_gather, dcnv3_torch

STAGES = ((56, 64), (28, 128), (14, 256), (7, 512))  # (resolution, channels) of UniConvNet-T's stages


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f'{args.threads} threads, float32, medians of {args.runs} runs (ms); speed-up = grid_sample / gather\n')
    print('| batch | stage (H, C) | forward: grid_sample | gather | speed-up | fwd+bwd: grid_sample | gather | speed-up |')
    print('|---:|---|---:|---:|---:|---:|---:|---:|')
    for batch in args.batch:
        for size, channels in STAGES:
            group = channels // 16
            x = torch.randn(batch, size, size, channels)
            offset = torch.randn(batch, size, size, group * 18) * 2
            mask = torch.randn(batch, size, size, group * 9)
            row = []
            for mode in ('forward', 'backward'):
                for core in (dcnv3_torch, dcnv3_gather):
                    if mode == 'forward':
                        def run(core=core):
                            with torch.no_grad():
                                core(x, offset, mask, (3, 3), (1, 1), (1, 1), (1, 1), group, 1.0)
                    else:
                        leaves = [t.clone().requires_grad_() for t in (x, offset, mask)]

                        def run(core=core, leaves=leaves):
                            out = core(*leaves, (3, 3), (1, 1), (1, 1), (1, 1), group, 1.0)
                            out.backward(torch.ones_like(out))
                    row.append(median_ms(run, args.runs))
            print(f'| {batch} | ({size}, {channels}) | {row[0]:.2f} | {row[1]:.2f} | {row[0] / row[1]:.1f}x | '
                  f'{row[2]:.1f} | {row[3]:.1f} | {row[2] / row[3]:.1f}x |', flush=True)


if __name__ == '__main__':
    main()

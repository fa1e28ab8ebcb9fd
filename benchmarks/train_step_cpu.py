"""Cost of one training step of UniConvNet-A on the CPU, by thread count and memory format.

Prints a Markdown table: CPU seconds and wall seconds per step (forward, backward, AdamW) at the built-in
digits configuration (batch 48 or 64, 16x16). Configurations run side by side in one session, interleaved,
so that a machine shared with other jobs affects them alike; the median of the timed steps is reported.

    python benchmarks/train_step_cpu.py [--batch 64] [--size 16] [--steps 6] [--rounds 2]
    python benchmarks/train_step_cpu.py --smoke     # one timed step of batch 4, one round: the script runs (CI)
"""
import argparse
import statistics
import time

import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)


def step_times(threads: int, channels_last: bool, batch: int, size: int, steps: int):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', num_classes=10)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cpu, wall = [], []
    for i in range(steps + 1):  # the first step (oneDNN set-up) is not timed
        c, w = time.process_time(), time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--size', type=int, default=16)
    parser.add_argument('--steps', type=int, default=6)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--smoke', action='store_true', help='one step of batch 4, one round (CI: the script runs)')
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.steps, args.rounds = 4, 1, 1
    configs = [(1, False), (1, True), (2, False), (2, True)]
    results = {c: [] for c in configs}
    for _ in range(args.rounds):
        for threads, cl in configs:
            results[(threads, cl)].append(step_times(threads, cl, args.batch, args.size, args.steps))
    print(f'UniConvNet-A training step, batch {args.batch}, {args.size}x{args.size}, torch {torch.__version__}')
    print('| threads | memory format | CPU s / step | wall s / step |')
    print('|---:|---|---:|---:|')
    for (threads, cl), runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f'| {threads} | {"channels_last" if cl else "contiguous"} | {cpu:.3f} | {wall:.3f} |')


if __name__ == '__main__':
    main()

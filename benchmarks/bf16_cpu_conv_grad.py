"""PyTorch's CPU bf16 convolution: weight-gradient error against float32, by input size.

A stride-2, padding-1, 3x3 convolution (UniConvNet's downsampling) on NxN inputs, under bf16 autocast. For 1x1
inputs the taps that see only padding should get a zero gradient; oneDNN's bf16 kernel returns garbage there.
Prints the worst relative error over random trials, per input size.

    python benchmarks/bf16_cpu_conv_grad.py [--trials 30]
    python benchmarks/bf16_cpu_conv_grad.py --smoke     # two trials at two sizes: the script runs (CI)
"""
import argparse

import torch
import torch.nn.functional as F


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--trials', type=int, default=30)
    parser.add_argument('--smoke', action='store_true', help='two trials at two sizes (CI: the script runs)')
    args = parser.parse_args()
    sizes = (1, 2) if args.smoke else (1, 2, 3, 4, 7, 14)
    if args.smoke:
        args.trials = 2
    torch.manual_seed(0)
    print(f'torch {torch.__version__}: bf16 conv weight gradient vs float32, 96x48x3x3, stride 2, padding 1')
    print('| input | worst relative error | trials with garbage (> 100%) |')
    print('|---:|---:|---:|')
    for size in sizes:
        worst, garbage = 0.0, 0
        for _ in range(args.trials):
            x = torch.randn(8, 48, size, size)
            w = torch.randn(96, 48, 3, 3, requires_grad=True)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                y = F.conv2d(x, w, stride=2, padding=1)
            grad_out = torch.randn(y.shape)
            (y.float() * grad_out).sum().backward()
            bf16_grad, w.grad = w.grad, None
            (F.conv2d(x, w, stride=2, padding=1) * grad_out).sum().backward()
            err = ((bf16_grad - w.grad).abs().max() / w.grad.abs().max()).item()
            worst, garbage = max(worst, err), garbage + (not err < 1.0)
        print(f'| {size}x{size} | {worst:.3g} | {garbage}/{args.trials} |')


if __name__ == '__main__':
    main()

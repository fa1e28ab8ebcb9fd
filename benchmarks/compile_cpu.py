#!/usr/bin/env python
"""torch.compile with Inductor (the default backend) of UniConvNet-A on the CPU: build time and agreement.

    PYTHONPATH=src python benchmarks/compile_cpu.py
    PYTHONPATH=src python benchmarks/compile_cpu.py --smoke   # a one-block-per-stage model with aot_eager (CI)

The tests compile with the ``aot_eager`` backend, because Inductor's C++ build of the whole model takes
minutes on 2 cores; this is the check with Inductor itself. Random offsets, masks and unit layer scales make
every branch count. Set TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 for a cold build. ``--smoke`` checks that the
script runs: a small model, the ``aot_eager`` backend (no C++ build).
"""
import argparse
import time

import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3


def randomize(model: torch.nn.Module, std: float = 0.2) -> None:
    """Offsets and masks away from zero (at init the samples sit on the grid and the mask is zero) and unit layer
    scales (1e-6 at init hides a branch from the output): every branch counts in the comparison."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DCNv3):
                module.offset.weight.normal_(std=std)
                module.mask.weight.normal_(std=std)
        for name, param in model.named_parameters():
            if name.endswith('gamma'):
                param.fill_(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--smoke', action='store_true', help='a small model with aot_eager: the script runs (CI)')
    args = parser.parse_args()
    torch.manual_seed(0)
    small = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)) if args.smoke else {}
    backend = 'aot_eager' if args.smoke else 'inductor'
    model = timm.create_model('uniconvnet_a', num_classes=10, **small).eval()
    randomize(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        started = time.perf_counter()
        out = torch.compile(model, backend=backend)(x)
        seconds = time.perf_counter() - started
    difference = (out - ref).abs().max().item()
    print(f'{backend}, uniconvnet_a{" (small)" if small else ""} 1x3x32x32 on the CPU: {seconds:.0f} s to the first '
          f'output; max abs difference from eager {difference:.2e} (outputs up to {ref.abs().max().item():.2f})')
    if not difference <= 1e-3 * max(ref.abs().max().item(), 1.0):
        raise SystemExit(f'the compiled model disagrees with eager by {difference:.2e}')


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""torch.compile with Inductor (the default backend) of UniConvNet-A on the CPU: build time and agreement.

    PYTHONPATH=src python benchmarks/compile_cpu.py

The tests compile with the ``aot_eager`` backend, because Inductor's C++ build of the whole model takes
minutes on 2 cores; this is the check with Inductor itself. Random offsets, masks and unit layer scales make
every branch count. Set TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 for a cold build.
"""
import time

import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from dcnv3_gpu import randomize_dcn_sampling


def main() -> None:
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', num_classes=10).eval()
    randomize_dcn_sampling(model, std=0.2, unit_layer_scales=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        started = time.perf_counter()
        out = torch.compile(model)(x)
        seconds = time.perf_counter() - started
    print(f'Inductor, uniconvnet_a 1x3x32x32 on the CPU: {seconds:.0f} s to the first output; max abs difference '
          f'from eager {(out - ref).abs().max().item():.2e} (outputs up to {ref.abs().max().item():.2f})')


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Compile the Triton DCNv3 kernels for a GPU without having one, and report registers and spills.

    PYTHONPATH=src python benchmarks/dcnv3_triton_registers.py            # sm_90 (H100/H200)
    PYTHONPATH=src python benchmarks/dcnv3_triton_registers.py --arch 80 --block-q 16,32,64

Triton lowers the kernels all the way to a cubin on the CPU (its own LLVM and the ptxas it ships), so this
checks what Triton's interpreter cannot: that the kernels compile for a real GPU. ``ptxas -v`` then gives
registers per thread and spills, the first thing to look at when choosing the tile size
(``dcnv3_triton._TILE_ELEMENTS``). No GPU is used; minutes on a loaded 2-core machine.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

# the compiled (not interpreted) kernels are wanted here
os.environ.pop('TRITON_INTERPRET', None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from uniconvnet.ops.dcn import triton_kernels as kernels  # noqa: E402
from uniconvnet.ops.dcn.triton_backend import _NUM_WARPS, _block_sizes  # noqa: E402

TRITON_TYPES = {'float32': 'fp32', 'bfloat16': 'bf16', 'float16': 'fp16'}


def kernel_signature(fn, dtype: str, constexprs: Dict[str, object]) -> Dict[str, str]:
    """Triton signature: tensors of ``dtype`` except the float32 input-gradient buffer, int32 scalars."""
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = 'constexpr'
        elif name == 'grad_input_ptr':
            signature[name] = '*fp32'
        elif name.endswith('_ptr'):
            signature[name] = '*' + TRITON_TYPES[dtype]
        elif name == 'offset_scale':
            signature[name] = 'fp32'
        else:
            signature[name] = 'i32'
    return signature


def ptxas_usage(ptx: str, arch: int) -> Dict[str, int]:
    """Registers and spill bytes reported by ``ptxas -v`` for one PTX module."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'ptxas')
    suffix = 'a' if arch >= 90 else ''
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'kernel.ptx')
        with open(path, 'w') as f:
            f.write(ptx)
        report = subprocess.run([ptxas, '-v', f'--gpu-name=sm_{arch}{suffix}', path, '-o', os.devnull],
                                capture_output=True, text=True, check=True)
    text = report.stdout + report.stderr
    registers = int(re.search(r'Used (\d+) registers', text).group(1))
    spill_stores = int(re.search(r'(\d+) bytes spill stores', text).group(1))
    spill_loads = int(re.search(r'(\d+) bytes spill loads', text).group(1))
    return dict(registers=registers, spill_stores=spill_stores, spill_loads=spill_loads)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', type=int, default=90, help='CUDA compute capability, e.g. 80, 90')
    parser.add_argument('--group-channels', default='16', help='comma-separated DCN group widths')
    parser.add_argument('--dtypes', default='float32,bfloat16')
    parser.add_argument('--block-q', default='', help='comma-separated pixels per program (default: built-in)')
    args = parser.parse_args(argv)
    target = GPUTarget('cuda', args.arch, 32)
    print(f'# Triton DCNv3 kernels compiled for sm_{args.arch} (triton {triton.__version__}, no GPU used)\n')
    print('| kernel | dtype | group width | pixels x channels per program | registers | spill bytes (st/ld) |')
    print('|---|---|---:|---|---:|---|')
    for group_channels in (int(c) for c in args.group_channels.split(',')):
        block_qs = [int(b) for b in args.block_q.split(',') if b.strip()] or [None]
        for block_q in block_qs:
            block_q, block_c = _block_sizes(group_channels, block_q)
            constexprs = dict(KERNEL_H=3, KERNEL_W=3, BLOCK_Q=block_q, BLOCK_C=block_c, WIDE_INDEX=False)
            for dtype in args.dtypes.split(','):
                for fn in (kernels.dcnv3_forward_kernel, kernels.dcnv3_backward_kernel):
                    compiled = triton.compile(ASTSource(fn=fn, signature=kernel_signature(fn, dtype, constexprs),
                                                        constexprs=constexprs), target=target,
                                              options=dict(num_warps=_NUM_WARPS))
                    usage = ptxas_usage(compiled.asm['ptx'], args.arch)
                    name = fn.__name__.replace('dcnv3_', '').replace('_kernel', '')
                    print(f"| {name} | {dtype} | {group_channels} | {block_q} x {block_c} | {usage['registers']} "
                          f"| {usage['spill_stores']}/{usage['spill_loads']} |", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

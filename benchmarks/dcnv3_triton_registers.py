#!/usr/bin/env python
"""Compile the Triton DCNv3 kernels for a GPU without having one, and report registers and spills.

    PYTHONPATH=src python benchmarks/dcnv3_triton_registers.py            # sm_90 (H100/H200)
    PYTHONPATH=src python benchmarks/dcnv3_triton_registers.py --arch 80 --tile-elements 256,512,1024 --baseline

Triton lowers the kernels all the way to a cubin on the CPU (its own LLVM and the ptxas it ships), so this
checks what Triton's interpreter cannot: that the kernels compile for a real GPU. ``ptxas -v`` then gives
registers per thread and spills, the first thing to look at when choosing the tile size
(``triton_backend.TritonConfig``), and the PTX shows how wide the global accesses are (``v4``: 16 bytes for
float32) and which atomics the input gradient uses. The kernels are compiled with the argument specialisation a
real launch gets (16-byte aligned tensors; integers that are multiples of 16 marked so), without which Triton
would give every thread one channel and the numbers would describe another kernel. No GPU is used; minutes on a
loaded 2-core machine.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

# the compiled (not interpreted) kernels are wanted here
os.environ.pop('TRITON_INTERPRET', None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from uniconvnet.ops.dcn import triton_kernels as kernels  # noqa: E402
from uniconvnet.ops.dcn.triton_backend import DEFAULT_CONFIG, TritonConfig  # noqa: E402

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


def launch_attributes(fn, divisible_by_16: Sequence[str]) -> Dict[Tuple[int], List[List[object]]]:
    """Triton's specialisation of a launch: pointers 16-byte aligned, the named integers multiples of 16."""
    names = [n for n in fn.arg_names if n.endswith('_ptr') or n in divisible_by_16]
    return {(fn.arg_names.index(n),): [['tt.divisibility', 16]] for n in names}


def global_accesses(ptx: str) -> str:
    """Counts of the global loads, stores and atomics in the PTX, e.g. ``ld.global.v4.b32 x4``."""
    found = Counter(re.findall(r'\b((?:ld|st|red|atom)\.global[.\w]*)', ptx))
    return ', '.join(f'{op} x{count}' for op, count in sorted(found.items()))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', type=int, default=90, help='CUDA compute capability, e.g. 80, 90')
    parser.add_argument('--group-channels', default='16', help='comma-separated DCN group widths')
    parser.add_argument('--dtypes', default='float32,bfloat16')
    parser.add_argument('--tile-elements', default='', help='comma-separated pixels x channels per program '
                                                            f'(default: {DEFAULT_CONFIG.tile_elements})')
    parser.add_argument('--num-warps', type=int, default=DEFAULT_CONFIG.num_warps)
    parser.add_argument('--smoke', action='store_true', help='the float32 forward kernel at the default tile only')
    parser.add_argument('--baseline', action='store_true',
                        help='also compile without vector channels and with acquire-release atomics')
    args = parser.parse_args(argv)
    if args.smoke:
        args.dtypes, args.group_channels, args.baseline = 'float32', '16', False
    target = GPUTarget('cuda', args.arch, 32)
    tiles = [int(t) for t in args.tile_elements.split(',') if t.strip()] or [DEFAULT_CONFIG.tile_elements]
    configs = [TritonConfig(tile, args.num_warps) for tile in tiles]
    if args.baseline:
        configs += [TritonConfig(tile, args.num_warps, vector_channels=False, relaxed_atomics=False) for tile in tiles]
    print(f'# Triton DCNv3 kernels compiled for sm_{args.arch} (triton {triton.__version__}, no GPU used)\n')
    print('| kernel | dtype | group width | pixels x channels per program | registers | spill bytes (st/ld) '
          '| vector channels, relaxed atomics | global accesses in the PTX |')
    print('|---|---|---:|---|---:|---|---|---|')
    for group_channels in (int(c) for c in args.group_channels.split(',')):
        for config in configs:
            block_q, block_c = config.block_sizes(group_channels)
            constexprs = dict(KERNEL_H=3, KERNEL_W=3, BLOCK_Q=block_q, BLOCK_C=block_c, WIDE_INDEX=False,
                              EVEN_C=config.vector_channels and group_channels == block_c)
            # num_queries of a 224x224 stage at batch 64 is a multiple of 16; so is a group width of 16 or 32
            divisible = ['num_queries'] + (['group_channels'] if group_channels % 16 == 0 else [])
            for dtype in args.dtypes.split(','):
                kernel_fns = (kernels.dcnv3_forward_kernel,) if args.smoke else (kernels.dcnv3_forward_kernel,
                                                                                 kernels.dcnv3_backward_kernel)
                for fn in kernel_fns:
                    fn_constexprs = dict(constexprs)
                    if 'ATOMIC_SEM' in fn.arg_names:
                        fn_constexprs['ATOMIC_SEM'] = 'relaxed' if config.relaxed_atomics else 'acq_rel'
                    source = ASTSource(fn=fn, signature=kernel_signature(fn, dtype, fn_constexprs),
                                       constexprs=fn_constexprs, attrs=launch_attributes(fn, divisible))
                    compiled = triton.compile(source, target=target, options=dict(num_warps=config.num_warps))
                    usage = ptxas_usage(compiled.asm['ptx'], args.arch)
                    name = fn.__name__.replace('dcnv3_', '').replace('_kernel', '')
                    flags = f"{'yes' if config.vector_channels else 'no'}, {'yes' if config.relaxed_atomics else 'no'}"
                    print(f"| {name} | {dtype} | {group_channels} | {block_q} x {block_c} | {usage['registers']} "
                          f"| {usage['spill_stores']}/{usage['spill_loads']} | {flags} "
                          f"| {global_accesses(compiled.asm['ptx'])} |", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

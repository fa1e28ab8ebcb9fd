"""The ``triton`` backend: the Triton DCNv3 kernels as the ``uniconvnet::dcnv3_sample`` custom operator; what
``auto`` picks for CUDA tensors.

The operator (and its backward, ``uniconvnet::dcnv3_sample_backward``) is registered with a fake
implementation and autograd (:func:`.customop.sampling_op`), so that ``torch.compile`` and ``torch.export`` see
it as one opaque node with known output shapes, and training works through it. Registering it needs no Triton;
the kernels (:mod:`.triton_kernels`) are imported on the first call, so ``import uniconvnet`` works without
Triton or a GPU.

The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter (slow, for testing):
``TRITON_INTERPRET=1`` in the environment before ``triton.language`` is first imported, which importing
``torch._dynamo`` or timm already does. Numbers match the PyTorch core up to float32 rounding of
the sampling positions; the official-parity path is the PyTorch core (backend ``torch``).
"""
import contextlib
from typing import Optional, Sequence, Tuple

import torch

from .customop import sampling_op
from .registry import Backend, register

__all__ = ['dcnv3_triton', 'triton_is_available']

OP_NAME = 'uniconvnet::dcnv3_sample'
BACKWARD_OP_NAME = 'uniconvnet::dcnv3_sample_backward'


# Filled on first use. Plain module state rather than functools caches, which torch.compile warns about when
# it traces the backend choice.
_triton_importable: Optional[bool] = None
_kernel_module = None


def triton_is_available() -> bool:
    """Whether the ``triton`` package imports (tried on the first CUDA call, never at ``import uniconvnet``)."""
    global _triton_importable
    if _triton_importable is None:
        try:
            import triton  # noqa: F401
            _triton_importable = True
        except ImportError:
            _triton_importable = False
    return _triton_importable


def _kernels():
    global _kernel_module
    if _kernel_module is None:
        from . import triton_kernels  # imports Triton: only here, on first use
        _kernel_module = triton_kernels
    return _kernel_module


def _triton_unavailable_reason(input: torch.Tensor) -> Optional[str]:
    """Why the Triton kernels cannot take ``input`` once its device and dtype are right (None when they can)."""
    if not triton_is_available():
        return 'Triton is not installed (pip install triton)'
    if input.device.type == 'cpu' and not _kernels().INTERPRETED:
        return ('the Triton kernels need CUDA tensors, got cpu tensors (TRITON_INTERPRET=1, set before Triton is '
                'imported, runs them on the CPU for testing)')
    return None


def _check_runnable(input: torch.Tensor) -> None:
    reason = BACKEND.why_not(input)
    if reason is not None:
        raise RuntimeError(f'{OP_NAME}: {reason}; use dcnv3(..., backend="torch") for these tensors')


# Elements per (pixels x channels) tile: 4 per thread with 4 warps. Larger tiles need many more registers
# (ptxas, sm_90, bfloat16 forward/backward: 80/126 at 512 elements, 145/192 at 1024), leaving fewer warps to
# hide the latency of the gathers (benchmarks/dcnv3_triton_registers.py); on a GPU, benchmarks/dcnv3_gpu.py
# --block-q measures the choice.
_TILE_ELEMENTS = 512
_NUM_WARPS = 4
# int32 element indices while every index fits, with a margin for the clamped out-of-image corners
_INT32_INDEX_LIMIT = 2 ** 31 - 2 ** 24


def _block_sizes(group_channels: int, block_q: Optional[int]) -> Tuple[int, int]:
    """(pixels, channels) per program: all of a group's channels, in a tile of about ``_TILE_ELEMENTS``."""
    block_c = max(2, 1 << (group_channels - 1).bit_length())
    if block_q is None:
        block_q = max(4, _TILE_ELEMENTS // block_c)
    return block_q, block_c


def _launch_arguments(input, offset, kernel_size, stride, padding, dilation, group, offset_scale, block_q):
    n, height, width, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    group_channels = channels // group
    block_q, block_c = _block_sizes(group_channels, block_q)
    num_queries = n * out_h * out_w
    grid = (-(-num_queries // block_q), group)
    scalars = (num_queries, height, width, out_h, out_w, group, group_channels,
               stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], float(offset_scale))
    largest = max(input.numel(), offset.numel(), num_queries * channels)
    meta = dict(KERNEL_H=kernel_size[0], KERNEL_W=kernel_size[1], BLOCK_Q=block_q, BLOCK_C=block_c,
                WIDE_INDEX=largest >= _INT32_INDEX_LIMIT, num_warps=_NUM_WARPS)
    return grid, scalars, meta


def _device_guard(tensor: torch.Tensor):
    # Triton launches on the current CUDA device; make it the tensors' device
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def dcnv3_forward_triton(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale,
                         block_q: Optional[int] = None) -> torch.Tensor:
    """Launch the forward kernel (no autograd). ``block_q`` overrides the pixels per program (tuning)."""
    _check_runnable(input)
    input, offset, mask = input.contiguous(), offset.contiguous(), mask.contiguous()
    out = input.new_empty((input.shape[0], offset.shape[1], offset.shape[2], input.shape[3]))
    if out.numel() == 0:
        return out
    grid, scalars, meta = _launch_arguments(input, offset, kernel_size, stride, padding, dilation, group,
                                            offset_scale, block_q)
    with _device_guard(input):
        _kernels().dcnv3_forward_kernel[grid](input, offset, mask, out, *scalars, **meta)
    return out


def dcnv3_backward_triton(grad_out, input, offset, mask, kernel_size, stride, padding, dilation, group,
                          offset_scale, block_q: Optional[int] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernel: gradients for input, offset and mask, in their dtypes."""
    _check_runnable(input)
    grad_out, input = grad_out.contiguous(), input.contiguous()
    offset, mask = offset.contiguous(), mask.contiguous()
    # input gradients are scattered with atomics: accumulate in float32 whatever the input dtype
    grad_input = torch.zeros(input.shape, dtype=torch.float32, device=input.device)
    grad_offset = torch.zeros_like(offset)
    grad_mask = torch.zeros_like(mask)
    if grad_out.numel() > 0:
        grid, scalars, meta = _launch_arguments(input, offset, kernel_size, stride, padding, dilation, group,
                                                offset_scale, block_q)
        with _device_guard(input):
            _kernels().dcnv3_backward_kernel[grid](grad_out, input, offset, mask, grad_input, grad_offset,
                                                   grad_mask, *scalars, **meta)
    return grad_input.to(input.dtype), grad_offset, grad_mask


def _backward(grad_out, input, offset, mask, residuals, kernel_size, stride, padding, dilation, group,
              offset_scale, needs_input_grad) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One kernel computes all three gradients, whichever are asked for."""
    return dcnv3_backward_triton(grad_out, input, offset, mask, kernel_size, stride, padding, dilation, group,
                                 offset_scale)


# the kernels load float32, float16 and bfloat16 and accumulate in float32 themselves: no cast before the op
dcnv3_sample = sampling_op(OP_NAME, BACKWARD_OP_NAME, dcnv3_forward_triton, _backward,
                           cast_to_sampling_dtype=False)


def dcnv3_triton(
        input: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        group: int,
        offset_scale: float,
) -> torch.Tensor:
    """The Triton backend of :func:`uniconvnet.ops.dcnv3`: the custom operator, differentiable."""
    return dcnv3_sample(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)


BACKEND = register(Backend(
    name='triton',
    forward=dcnv3_triton,
    description='Triton kernels (CPU tensors only under TRITON_INTERPRET=1, for tests)',
    devices=('cuda',),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    requires=_triton_unavailable_reason,
    auto_devices=('cuda',),
    interpreted_devices=('cpu',),
    reference_locations=False,  # the kernels compute sampling positions in their own order, in float32
    custom_op=dcnv3_sample,
))

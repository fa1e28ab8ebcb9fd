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
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

from .customop import sampling_op
from .registry import Backend, register

__all__ = ['DEFAULT_CONFIG', 'TritonConfig', 'dcnv3_triton', 'triton_is_available']

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


# int32 element indices while every index fits, with a margin for the clamped out-of-image corners
_INT32_INDEX_LIMIT = 2 ** 31 - 2 ** 24


@dataclass(frozen=True)
class TritonConfig:
    """How the Triton kernels are launched. Every config computes the same numbers (up to the order in which the
    input gradient's atomic adds land); they differ in speed only, which ``benchmarks/dcnv3_gpu.py`` measures.

    Args:
        tile_elements: pixels x channels per program: ``tile_elements // BLOCK_C`` pixels (at least 4) with all
            channels of one group (``BLOCK_C``: the group width rounded up to a power of two). Larger tiles need
            more registers per thread (``benchmarks/dcnv3_triton_registers.py``), leaving fewer warps in flight to
            hide the latency of the gathers.
        num_warps: warps per program.
        vector_channels: compile the group width in as a constant where it is a power of two (the kernels'
            ``EVEN_C``): each thread then loads a vector of channels and computes its pixel's sampling position
            once for all of them (DCNv4's lesson). False: the width is a run-time value, and a width Triton cannot
            prove a multiple of 16 (UniConvNet-A's 8) gets one channel per thread.
        relaxed_atomics: scatter the input gradient with relaxed atomics instead of Triton's default
            acquire-release ones, which order memory around every add; nothing reads the buffer before the kernel
            ends, so relaxed suffices.
    """
    tile_elements: int = 512
    num_warps: int = 4
    vector_channels: bool = True
    relaxed_atomics: bool = True

    def block_sizes(self, group_channels: int) -> Tuple[int, int]:
        """(pixels, channels) per program for groups of ``group_channels`` channels."""
        block_c = max(2, 1 << (group_channels - 1).bit_length())
        return max(4, self.tile_elements // block_c), block_c


# What the custom op launches: the one place to change after measuring on a GPU (benchmarks/dcnv3_gpu.py times
# the alternatives side by side and prints which config was fastest).
DEFAULT_CONFIG = TritonConfig()


def _launch_arguments(input, offset, kernel_size, stride, padding, dilation, group, offset_scale,
                      config: TritonConfig):
    n, height, width, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    group_channels = channels // group
    block_q, block_c = config.block_sizes(group_channels)
    num_queries = n * out_h * out_w
    grid = (-(-num_queries // block_q), group)
    scalars = (num_queries, height, width, out_h, out_w, group, group_channels,
               stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], float(offset_scale))
    largest = max(input.numel(), offset.numel(), num_queries * channels)
    meta = dict(KERNEL_H=kernel_size[0], KERNEL_W=kernel_size[1], BLOCK_Q=block_q, BLOCK_C=block_c,
                WIDE_INDEX=largest >= _INT32_INDEX_LIMIT,
                EVEN_C=config.vector_channels and group_channels == block_c, num_warps=config.num_warps)
    return grid, scalars, meta


def _device_guard(tensor: torch.Tensor):
    # Triton launches on the current CUDA device; make it the tensors' device
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def dcnv3_forward_triton(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale,
                         config: Optional[TritonConfig] = None) -> torch.Tensor:
    """Launch the forward kernel (no autograd) with ``config`` (None: :data:`DEFAULT_CONFIG`)."""
    _check_runnable(input)
    input, offset, mask = input.contiguous(), offset.contiguous(), mask.contiguous()
    out = input.new_empty((input.shape[0], offset.shape[1], offset.shape[2], input.shape[3]))
    if out.numel() == 0:
        return out
    grid, scalars, meta = _launch_arguments(input, offset, kernel_size, stride, padding, dilation, group,
                                            offset_scale, config or DEFAULT_CONFIG)
    with _device_guard(input):
        _kernels().dcnv3_forward_kernel[grid](input, offset, mask, out, *scalars, **meta)
    return out


def dcnv3_backward_triton(grad_out, input, offset, mask, kernel_size, stride, padding, dilation, group,
                          offset_scale, config: Optional[TritonConfig] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernel: gradients for input, offset and mask, in their dtypes (``config`` as above)."""
    _check_runnable(input)
    grad_out, input = grad_out.contiguous(), input.contiguous()
    offset, mask = offset.contiguous(), mask.contiguous()
    # input gradients are scattered with atomics: accumulate in float32 whatever the input dtype
    grad_input = torch.zeros(input.shape, dtype=torch.float32, device=input.device)
    grad_offset = torch.zeros_like(offset)
    grad_mask = torch.zeros_like(mask)
    if grad_out.numel() > 0:
        config = config or DEFAULT_CONFIG
        grid, scalars, meta = _launch_arguments(input, offset, kernel_size, stride, padding, dilation, group,
                                                offset_scale, config)
        with _device_guard(input):
            _kernels().dcnv3_backward_kernel[grid](grad_out, input, offset, mask, grad_input, grad_offset,
                                                   grad_mask, *scalars, **meta,
                                                   ATOMIC_SEM='relaxed' if config.relaxed_atomics else 'acq_rel')
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

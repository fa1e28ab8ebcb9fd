"""DCNv3 sampling core for CPUs as numba kernels: forward and backward, compiled on first use, cached on disk.

The kernels (:mod:`.dcnv3_numba_kernels`) walk the channels-last input directly: for each output pixel, group
and kernel point they compute the sampling coordinate, then add the four bilinear corners times the mask into
the output row; the backward recomputes the coordinates and, per (image, group), accumulates the gradients of
the input (a race-free scatter), the offsets and the mask. Nothing but the inputs is saved for the backward.

numba is optional (``pip install uniconvnet[numba]``): it is imported on the first call, never at
``import uniconvnet``; where it is missing or fails to import, :func:`numba_unavailable_reason` says so and the
dispatcher uses the gather core (:mod:`.dcnv3_cpu`). The kernels run on ``torch.get_num_threads()`` threads
(at most numba's own limit, ``NUMBA_NUM_THREADS``) in numba's default threading layer.

Sampling coordinates are bit for bit the reference's (:func:`.dcnv3_torch.sampling_locations`, then
``grid_sample``'s un-normalisation); the first use checks that against PyTorch on this machine. Only the
order of the weighted sums differs from the reference. Half and bfloat16 inputs are sampled in float32.
"""
import functools
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .gather_backend import unnormalize
from .geometry import kernel_grid_locations, sampling_dtype, sampling_locations

__all__ = ['dcnv3_numba', 'numba_unavailable_reason']

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Filled on the first call: the kernel module, or why it cannot run; and the rounding of the last
# coordinate step that matches this machine's PyTorch. Plain module state, read by traced code.
_kernel_module = None
_unavailable: Optional[str] = None
_fused_rounding = True


def _grid(out_h: int, out_w: int, padded_h: int, padded_w: int, kernel_size: Sequence[int],
          stride: Sequence[int], dilation: Sequence[int], group: int, offset_scale: float, dtype: torch.dtype
          ) -> Tuple[np.ndarray, np.ndarray]:
    """The reference's kernel grid locations, flat ``(Wo, G, P)`` and ``(Ho, G, P)``, as numpy arrays."""
    return _grid_cached(out_h, out_w, padded_h, padded_w, tuple(kernel_size), tuple(stride), tuple(dilation),
                        group, float(offset_scale), dtype)


@functools.lru_cache(maxsize=64)  # a model has a handful of geometries; computing one costs ~10 small ops
def _grid_cached(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation, group, offset_scale, dtype):
    base_x, base_y = kernel_grid_locations(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation,
                                           offset_scale, dtype, torch.device('cpu'))
    # repeated per group: the kernels then read the grid at the sample's own flat position
    return (base_x.expand(1, 1, out_w, group, -1).contiguous().view(-1).numpy(),
            base_y.expand(1, out_h, 1, group, -1).contiguous().view(-1).numpy())


def _coordinates_match(kernels, fused: bool) -> bool:
    """Whether the kernels' sampling coordinates equal PyTorch's, bit for bit, on a fixed random probe."""
    generator = torch.Generator().manual_seed(0)
    kernel_size, stride, dilation, group, offset_scale = (3, 3), (2, 1), (2, 1), 2, 0.7
    out_h, out_w, padded_h, padded_w = 11, 13, 25, 17
    for spread in (1.0, 40.0):
        offset = torch.randn(1, out_h, out_w, group * 18, generator=generator) * spread
        loc_x, loc_y = sampling_locations(offset, padded_h, padded_w, kernel_size, stride, dilation, group,
                                          offset_scale)
        base_x, base_y = _grid(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation, group,
                               offset_scale, offset.dtype)
        xs, ys = kernels.sampling_coordinates(offset.reshape(-1).numpy(), base_x, base_y,
                                              kernels.constants(offset_scale, padded_h, padded_w, np.float32),
                                              out_h, out_w, group, 9, fused)
        if not (np.array_equal(xs, unnormalize(loc_x, padded_w).reshape(-1).numpy())
                and np.array_equal(ys, unnormalize(loc_y, padded_h).reshape(-1).numpy())):
            return False
    return True


@torch.compiler.assume_constant_result  # traced code reads the answer; the import runs once, eagerly
def _kernels_unavailable() -> Optional[str]:
    """Why the kernels cannot run in this process (numba missing, or coordinates off), None when they can."""
    global _kernel_module, _unavailable, _fused_rounding
    if _kernel_module is None and _unavailable is None:
        try:
            from . import numba_kernels as kernels  # imports numba: only here, on first use
        except Exception as error:  # ImportError, or a numba built for another numpy failing at import
            _unavailable = f'numba does not import ({type(error).__name__}: {error}); pip install numba'
            return _unavailable
        for fused in (True, False):  # PyTorch's CPU kernels fuse the un-normalisation's multiply-add or not
            if _coordinates_match(kernels, fused):
                _kernel_module, _fused_rounding = kernels, fused
                return None
        _unavailable = "the numba kernels' sampling coordinates differ from PyTorch's on this machine"
    return _unavailable


def numba_unavailable_reason(input: torch.Tensor) -> Optional[str]:
    """Why the numba kernels cannot take ``input`` (None when they can): CPU tensors, float dtypes, numba."""
    if input.device.type != 'cpu':
        return f'the numba kernels take CPU tensors, got {input.device.type}'
    if input.dtype not in _SUPPORTED_DTYPES:
        return f'the numba kernels take float32, float64, float16 and bfloat16, got {input.dtype}'
    return _kernels_unavailable()


def _run(kernel, *args) -> None:
    """Run a parallel kernel on as many threads as PyTorch uses (capped by numba's pool), then restore."""
    numba = _kernel_module.numba
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        kernel(*args)
    finally:
        numba.set_num_threads(previous)


def _geometry(input, offset, kernel_size, stride, padding, dilation, group, offset_scale):
    """Kernel grid and constants (numpy arrays), and the sizes of input, padded input and output."""
    n, height, width, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    base_x, base_y = _grid(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation, group, offset_scale,
                           input.dtype)
    consts = _kernel_module.constants(offset_scale, padded_h, padded_w, base_x.dtype)
    return (base_x, base_y, consts), (n, height, width, out_h, out_w, channels // group,
                                      kernel_size[0] * kernel_size[1])


def _flat(tensor: torch.Tensor) -> np.ndarray:
    return tensor.contiguous().view(-1).numpy()


def _check_runnable(input: torch.Tensor) -> None:
    reason = numba_unavailable_reason(input)
    if reason is not None:
        raise RuntimeError(f'uniconvnet::dcnv3_numba: {reason}; use dcnv3(..., backend="cpu") for these tensors')


# Two torch.library custom ops, forward and backward, with shape-only fake versions and the backward as the
# forward's autograd formula: torch.compile and torch.export see one opaque call.

@torch.library.custom_op('uniconvnet::dcnv3_numba_forward', mutates_args=())
def _forward_op(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: List[int],
                stride: List[int], padding: List[int], dilation: List[int], group: int,
                offset_scale: float) -> torch.Tensor:
    """DCNv3 sampling of float32 or float64 tensors (shapes unchecked: :func:`uniconvnet.ops.dcnv3` checks)."""
    _check_runnable(input)
    out = input.new_empty(input.shape[0], offset.shape[1], offset.shape[2], input.shape[3])
    if out.numel() == 0:
        return out
    arrays, (n, _, _, out_h, out_w, group_channels, num_points) = _geometry(
        input, offset, kernel_size, stride, padding, dilation, group, offset_scale)
    ring = _kernel_module.RING
    table = F.pad(input, (0, 0, padding[1] + ring, padding[1] + ring, padding[0] + ring, padding[0] + ring))
    _run(_kernel_module.forward, _flat(table), _flat(offset), _flat(mask), *arrays, out.view(-1).numpy(), n,
         out_h, out_w, group, group_channels, num_points, table.shape[1], table.shape[2], _fused_rounding)
    return out


@_forward_op.register_fake
def _forward_fake(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale):
    return input.new_empty(input.shape[0], offset.shape[1], offset.shape[2], input.shape[3])


@torch.library.custom_op('uniconvnet::dcnv3_numba_backward', mutates_args=())
def _backward_op(grad_out: torch.Tensor, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                 kernel_size: List[int], stride: List[int], padding: List[int], dilation: List[int], group: int,
                 offset_scale: float, needs_input_grad: List[bool]
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of input, offset and mask (empty where ``needs_input_grad`` is False)."""
    _check_runnable(input)
    need_input, need_offset, need_mask = needs_input_grad
    need_offset_mask = need_offset or need_mask
    grad_input = torch.zeros_like(input) if need_input else input.new_empty(0)
    grad_offset = torch.zeros_like(offset) if need_offset_mask else offset.new_empty(0)
    grad_mask = torch.zeros_like(mask) if need_offset_mask else mask.new_empty(0)
    if grad_out.numel() > 0 and (need_input or need_offset_mask):
        arrays, (n, height, width, out_h, out_w, group_channels, num_points) = _geometry(
            input, offset, kernel_size, stride, padding, dilation, group, offset_scale)
        _run(_kernel_module.backward, _flat(grad_out), _flat(input), _flat(offset), _flat(mask), *arrays,
             grad_input.view(-1).numpy(), grad_offset.view(-1).numpy(), grad_mask.view(-1).numpy(), n, height,
             width, out_h, out_w, group, group_channels, num_points, padding[0], padding[1], _fused_rounding,
             need_input, need_offset_mask)
    # outputs of an op may not alias each other: fresh empty tensors for gradients not asked for
    return grad_input, grad_offset if need_offset else offset.new_empty(0), \
        grad_mask if need_mask else mask.new_empty(0)


@_backward_op.register_fake
def _backward_fake(grad_out, input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale,
                   needs_input_grad):
    shapes = (input.shape, offset.shape, mask.shape)
    return tuple(input.new_empty(shape if needed else (0,)) for shape, needed in zip(shapes, needs_input_grad))


def _setup_context(ctx, inputs, output):
    input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale = inputs
    ctx.save_for_backward(input, offset, mask)
    ctx.geometry = (kernel_size, stride, padding, dilation, group, offset_scale)


def _backward(ctx, grad_out):
    input, offset, mask = ctx.saved_tensors
    needed = list(ctx.needs_input_grad[:3])
    grads = _backward_op(grad_out.contiguous(), input, offset, mask, *ctx.geometry, needed)
    return tuple(g if need else None for g, need in zip(grads, needed)) + (None,) * 6


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def dcnv3_numba(
        input: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        padding: Tuple[int, int],
        dilation: Tuple[int, int],
        group: int,
        offset_scale: float,
) -> torch.Tensor:
    """DCNv3 sampling with the numba kernels; same arguments and result as :func:`.dcnv3_torch.dcnv3_torch`.

    Half and bfloat16 inputs are sampled in float32, as in the reference. Not twice differentiable.
    """
    compute_dtype = sampling_dtype(input.dtype)
    out = _forward_op(input.to(compute_dtype).contiguous(), offset.to(compute_dtype).contiguous(),
                      mask.to(compute_dtype).contiguous(), list(kernel_size), list(stride), list(padding),
                      list(dilation), group, float(offset_scale))
    return out.to(input.dtype)

"""One way to turn a backend's forward and backward kernels into a differentiable ``torch.library`` custom op.

:func:`sampling_op` registers two custom ops, forward and backward, with shape-only fake implementations and the
backward as the forward's autograd formula: ``torch.compile`` and ``torch.export`` then see one opaque node with
known output shapes (no graph break, nothing traced inside), eager mode runs the kernels, and training works
through it. It also applies the sampling dtype (:func:`.geometry.sampling_dtype`) where the kernels need it.

The kernels' contract, in the arguments of :data:`.registry.DCNForward` (``kernel_size, stride, padding,
dilation`` as lists, ``group`` an int, ``offset_scale`` a float), with contiguous tensors:

* ``forward(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)`` returns the output,
  or ``(output, *residuals)``: tensors computed in the forward that the backward reads instead of recomputing;
* ``backward(grad_out, input, offset, mask, residuals, kernel_size, stride, padding, dilation, group,
  offset_scale, needs_input_grad)`` returns the gradients of input, offset and mask. ``offset`` is None where
  the backend does not save it; a gradient not asked for in ``needs_input_grad`` may be anything (it is
  replaced by an empty tensor), so kernels may skip it.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .geometry import sampling_dtype

__all__ = ['SamplingOp', 'sampling_op']

_GEOMETRY_SCHEMA = 'int[] kernel_size, int[] stride, int[] padding, int[] dilation, int group, float offset_scale'


class SamplingOp:
    """A backend's DCNv3 sampling as a custom op pair; call it with the arguments of :data:`.registry.DCNForward`.

    Attributes:
        name: the forward op's name, ``'namespace::op'`` (``namespace.op.default`` in a graph).
        forward_op, backward_op: the registered custom ops (for ``torch.library.opcheck`` and graph inspection).
        num_residuals: tensors the forward op returns after the output, for the backward op.
        saves_offset: whether the backward op takes the offsets (else None in their place).
    """

    def __init__(self, name: str, forward_op, backward_op, num_residuals: int, saves_offset: bool,
                 cast_to_sampling_dtype: bool):
        self.name = name
        self.forward_op = forward_op
        self.backward_op = backward_op
        self.num_residuals = num_residuals
        self.saves_offset = saves_offset
        self._cast = cast_to_sampling_dtype

    def __call__(self, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: Sequence[int],
                 stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], group: int,
                 offset_scale: float) -> torch.Tensor:
        dtype = input.dtype
        if self._cast:  # half and bfloat16 are sampled in float32, the result converted back
            compute_dtype = sampling_dtype(dtype)
            input, offset, mask = input.to(compute_dtype), offset.to(compute_dtype), mask.to(compute_dtype)
        out = self.forward_op(input.contiguous(), offset.contiguous(), mask.contiguous(), list(kernel_size),
                              list(stride), list(padding), list(dilation), int(group), float(offset_scale))
        if self.num_residuals:
            out = out[0]
        return out.to(dtype)


def _output_fake(input: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    return input.new_empty((input.shape[0], offset.shape[1], offset.shape[2], input.shape[3]))


def sampling_op(
        name: str,
        backward_name: str,
        forward: Callable[..., object],
        backward: Callable[..., Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        num_residuals: int = 0,
        residuals_fake: Optional[Callable[..., Tuple[torch.Tensor, ...]]] = None,
        saves_offset: bool = True,
        cast_to_sampling_dtype: bool = True,
) -> SamplingOp:
    """Register ``forward`` and ``backward`` (see the module docstring) as the custom ops ``name`` and
    ``backward_name`` (``'namespace::op'``) and return the callable backend.

    Args:
        num_residuals: how many tensors ``forward`` returns after the output.
        residuals_fake: ``(input, offset, mask, kernel_size, ...)`` -> empty tensors with the residuals' shapes
            and dtypes (what ``torch.compile`` and ``torch.export`` trace with); needed with residuals.
        saves_offset: whether the backward reads the offsets (kept alive for it: memory in training).
        cast_to_sampling_dtype: sample half and bfloat16 inputs in float32 (kernels that load any of these
            dtypes and accumulate in float32 themselves pass False).
    """
    if num_residuals and residuals_fake is None:
        raise ValueError(f'{name}: a forward with residuals needs residuals_fake (their shapes for tracing)')
    outputs = 'Tensor' if num_residuals == 0 else f'({", ".join(["Tensor"] * (num_residuals + 1))})'
    forward_op = torch.library.custom_op(
        name, forward, mutates_args=(),
        schema=f'(Tensor input, Tensor offset, Tensor mask, {_GEOMETRY_SCHEMA}) -> {outputs}')

    @forward_op.register_fake
    def _forward_fake(input, offset, mask, *geometry):
        out = _output_fake(input, offset)
        return (out,) + tuple(residuals_fake(input, offset, mask, *geometry)) if num_residuals else out

    def _backward(grad_out, input, offset, mask, residuals, kernel_size, stride, padding, dilation, group,
                  offset_scale, needs_input_grad):
        grads = backward(grad_out, input, offset, mask, residuals, kernel_size, stride, padding, dilation, group,
                         offset_scale, needs_input_grad)
        # outputs of an op may not alias each other: a fresh empty tensor for each gradient not asked for
        return tuple(g if needed else input.new_empty(0) for g, needed in zip(grads, needs_input_grad))

    backward_op = torch.library.custom_op(
        backward_name, _backward, mutates_args=(),
        schema=f'(Tensor grad_out, Tensor input, Tensor? offset, Tensor mask, Tensor[] residuals, '
               f'{_GEOMETRY_SCHEMA}, bool[] needs_input_grad) -> (Tensor, Tensor, Tensor)')

    @backward_op.register_fake
    def _backward_fake(grad_out, input, offset, mask, residuals, kernel_size, stride, padding, dilation, group,
                       offset_scale, needs_input_grad):
        offset_like = offset if offset is not None else mask.new_empty((*mask.shape[:3], mask.shape[3] * 2))
        return tuple(like.new_empty(like.shape if needed else (0,))
                     for like, needed in zip((input, offset_like, mask), needs_input_grad))

    def _setup_context(ctx, inputs, output):
        input, offset, mask, *geometry = inputs
        residuals = list(output[1:]) if num_residuals else []
        ctx.save_for_backward(input, offset if saves_offset else None, mask, *residuals)
        ctx.geometry = geometry

    def _autograd_backward(ctx, grad_out, *_):
        input, offset, mask, *residuals = ctx.saved_tensors
        needed: List[bool] = list(ctx.needs_input_grad[:3])
        grads = backward_op(grad_out.contiguous(), input, offset, mask, residuals, *ctx.geometry, needed)
        return tuple(g if need else None for g, need in zip(grads, needed)) + (None,) * len(ctx.geometry)

    forward_op.register_autograd(_autograd_backward, setup_context=_setup_context)
    return SamplingOp(name, forward_op, backward_op, num_residuals, saves_offset, cast_to_sampling_dtype)

"""Folding per-channel affine maps into adjacent linear layers, for inference.

Both folds are exact in real arithmetic; in float32 they move results by rounding only. Biases are created where a
layer had none.
"""
from typing import Optional, Union

import torch
import torch.nn as nn

__all__ = ['fold_input_affine_', 'fold_output_scale_', 'without_affine']

Projection = Union[nn.Linear, nn.Conv2d]


def _bias_of(layer: Projection) -> torch.Tensor:
    if layer.bias is None:
        layer.bias = nn.Parameter(layer.weight.new_zeros(layer.weight.shape[0]))
    return layer.bias


@torch.no_grad()
def fold_input_affine_(layer: Projection, scale: Optional[torch.Tensor], shift: Optional[torch.Tensor]) -> None:
    """Make ``layer(x)`` compute what ``layer(x * scale + shift)`` did; in place.

    ``layer`` is a linear layer or a 1x1 convolution (no groups): a per-channel affine map of its input moves
    into its weights (columns times ``scale``) and bias (plus ``W @ shift``).
    """
    if isinstance(layer, nn.Conv2d) and (layer.kernel_size != (1, 1) or layer.groups != 1):
        raise ValueError(f'only 1x1 convolutions without groups take an input affine map exactly, got {layer}')
    weight = layer.weight.view(layer.weight.shape[0], -1)
    if shift is not None:
        _bias_of(layer).add_(weight @ shift.to(weight.dtype))
    if scale is not None:
        weight.mul_(scale.to(weight.dtype))


@torch.no_grad()
def fold_output_scale_(layer: Projection, scale: torch.Tensor) -> None:
    """Make ``layer(x)`` compute what ``layer(x) * scale`` (per output channel) did; in place."""
    scale = scale.to(layer.weight.dtype)
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    if layer.bias is not None:
        layer.bias.mul_(scale)


def without_affine(norm: nn.LayerNorm) -> nn.LayerNorm:
    """A copy of a LayerNorm (or subclass taking ``eps`` and ``affine``) that only normalises.

    The copy still multiplies by a weight of ones, a non-persistent buffer (neither a parameter nor in the state
    dict): PyTorch's CPU LayerNorm without a weight runs a slower loop, 1.4-2.9x the time of the same norm with
    one at UniConvNet's widths (batch 1 and 8, float32); multiplying by one is exact.
    """
    if type(norm) is nn.LayerNorm:
        plain = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)
    else:
        plain = type(norm)(norm.normalized_shape[0], eps=norm.eps, affine=False)
    del plain.weight  # the None parameter slot, replaced by the buffer
    plain.register_buffer('weight', torch.ones(norm.normalized_shape, device=norm.weight.device,
                                               dtype=norm.weight.dtype), persistent=False)
    return plain

"""The ``torch`` backend: the pure-PyTorch DCNv3 sampling core, ``F.grid_sample`` on the zero-padded input.

Any device and dtype, no compiled code, plain ATen ops: what TorchScript, FX and ONNX export see. The reference
every other backend is tested against; it is itself tested against the outputs of the official code
(``tests/models/test_parity.py``).
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from .geometry import sampling_dtype, sampling_grid
from .registry import Backend, register

__all__ = ['dcnv3_torch']


def dcnv3_torch(
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
    """DCNv3 sampling with ``F.grid_sample`` on the zero-padded input.

    Args:
        input: ``(N, H, W, C)`` values, ``C = group * group_channels``.
        offset: ``(N, H_out, W_out, group * P * 2)`` offsets in pixels, ``P = kernel_h * kernel_w``.
        mask: ``(N, H_out, W_out, group * P)`` weights, used as they are (UniConvNet applies no softmax).

    Returns:
        ``(N, H_out, W_out, C)`` in the dtype of ``input``. Half and bfloat16 inputs are sampled in float32:
        sampling coordinates need more precision than their mantissa has.
    """
    n, _, _, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    group_channels = channels // group
    num_points = kernel_size[0] * kernel_size[1]
    compute_dtype = sampling_dtype(input.dtype)

    value = F.pad(input.to(compute_dtype), [0, 0, padding[1], padding[1], padding[0], padding[0]])
    padded_h, padded_w = value.shape[1], value.shape[2]
    grid = sampling_grid(offset.to(compute_dtype), padded_h, padded_w, kernel_size, stride, dilation, group,
                         offset_scale)
    grid = grid.permute(0, 3, 1, 2, 4, 5).reshape(n * group, out_h * out_w, num_points, 2)
    value = value.reshape(n, padded_h * padded_w, group, group_channels)
    value = value.permute(0, 2, 3, 1).reshape(n * group, group_channels, padded_h, padded_w)
    sampled = F.grid_sample(value, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    weight = mask.to(compute_dtype).reshape(n, out_h * out_w, group, num_points)
    weight = weight.permute(0, 2, 1, 3).reshape(n * group, 1, out_h * out_w, num_points)
    out = (sampled * weight).sum(-1)  # (N * group, group_channels, L)
    out = out.reshape(n, channels, out_h * out_w).transpose(1, 2).reshape(n, out_h, out_w, channels)
    return out.to(input.dtype)


register(Backend(
    name='torch',
    forward=dcnv3_torch,
    description='the reference: F.grid_sample, plain ATen ops (TorchScript, FX, ONNX)',
))

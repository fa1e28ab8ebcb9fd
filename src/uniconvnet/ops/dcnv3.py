"""The one entry point for DCNv3 sampling. Every caller uses :func:`dcnv3`; backends sit behind it."""
import os
from typing import Tuple

import torch
from timm.layers import register_notrace_function

from .dcnv3_cpu import dcnv3_cpu
from .dcnv3_torch import dcnv3_output_size, dcnv3_torch


def _select_backend(input: torch.Tensor) -> str:
    """``'cpu'`` (the gather core, :mod:`.dcnv3_cpu`) for CPU tensors, else ``'torch'`` (the reference core).

    ``UNICONVNET_DCN_BACKEND=torch`` forces the reference everywhere; ONNX export always takes it (GridSample).
    """
    if os.environ.get('UNICONVNET_DCN_BACKEND', 'auto') == 'torch' or torch.onnx.is_in_onnx_export():
        return 'torch'
    return 'cpu' if input.device.type == 'cpu' else 'torch'


@register_notrace_function  # FX treats the core as one call: its shape arithmetic is not traceable
def dcnv3(
        input: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        kernel_size: Tuple[int, int] = (3, 3),
        stride: Tuple[int, int] = (1, 1),
        padding: Tuple[int, int] = (1, 1),
        dilation: Tuple[int, int] = (1, 1),
        group: int = 1,
        offset_scale: float = 1.0,
) -> torch.Tensor:
    """Deformable sampling of DCNv3 with a raw (un-normalised) modulation mask.

    For every output pixel, group and kernel point, the input is sampled bilinearly at the regular kernel
    position plus a learned offset (zeros outside the image), weighted by the mask, and summed over points.

    Args:
        input: ``(N, H, W, C)``.
        offset: ``(N, H_out, W_out, group * kh * kw * 2)``, ``(dx, dy)`` pairs in pixels.
        mask: ``(N, H_out, W_out, group * kh * kw)``.
        kernel_size, stride, padding, dilation: as for a convolution, ``(h, w)``.
        group: number of groups sharing offsets; ``C`` must be divisible by it.
        offset_scale: scale applied to the kernel grid and the offsets.

    Returns:
        ``(N, H_out, W_out, C)``.
    """
    if input.dim() != 4 or offset.dim() != 4 or mask.dim() != 4:
        raise ValueError(f'dcnv3 expects 4-D NHWC tensors, got input {list(input.shape)}, '
                         f'offset {list(offset.shape)}, mask {list(mask.shape)}')
    n, height, width, channels = input.shape
    if channels % group != 0:
        raise ValueError(f'dcnv3: {channels} channels are not divisible by group={group}')
    num_points = kernel_size[0] * kernel_size[1]
    out_h, out_w = dcnv3_output_size(height, width, kernel_size, stride, padding, dilation)
    if offset.shape[0] != n or offset.shape[1] != out_h or offset.shape[2] != out_w \
            or offset.shape[3] != group * num_points * 2:
        raise ValueError(f'dcnv3: offset must be {[n, out_h, out_w, group * num_points * 2]}, '
                         f'got {list(offset.shape)}')
    if mask.shape[0] != n or mask.shape[1] != out_h or mask.shape[2] != out_w \
            or mask.shape[3] != group * num_points:
        raise ValueError(f'dcnv3: mask must be {[n, out_h, out_w, group * num_points]}, got {list(mask.shape)}')
    if not torch.jit.is_scripting():  # TorchScript cannot compile the autograd.Function of the CPU core
        if _select_backend(input) == 'cpu':
            return dcnv3_cpu(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)
    return dcnv3_torch(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)

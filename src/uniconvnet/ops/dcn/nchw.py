"""DCNv3 sampling on NCHW tensors, in the layout of ONNX's ``DeformConv``, for deployment graphs.

UniConvNet's DCNv3 sampling is a depthwise deformable convolution with all-ones weights: for every output pixel,
offset group ``g`` and kernel point ``(ky, kx)``, channel ``c`` of group ``g`` is sampled bilinearly at
``(oh * stride - pad + ky * dilation + dy, ow * stride - pad + kx * dilation + dx)`` (zeros outside the image),
weighted by the raw mask and summed over the kernel points. That is exactly ONNX ``DeformConv`` (opset 19) with
``weight = ones(C, 1, kh, kw)``, ``group = C``, ``offset_group = G`` and the mask input; only the order of the
offset and mask rows differs from :func:`uniconvnet.ops.dcnv3`'s (kernel points x-major with ``(dx, dy)`` pairs there,
row-major with ``(dy, dx)`` pairs here), which a deployment graph absorbs into the rows of the projections that
produce them (:func:`deform_conv_rows`). ``offset_scale`` (1.0 in UniConvNet) has no counterpart: it is folded
into those projections too, so these functions take offsets already scaled.

Two ways of running it, both for export and both runnable in eager mode:

* :func:`dcnv3_deform_conv` becomes one ``DeformConv`` node in ONNX (onnxruntime runs it; OpenVINO's ONNX reader
  does not, and :mod:`uniconvnet.export` converts it to OpenVINO's own ``DeformableConvolution``). In eager mode
  it runs :func:`uniconvnet.ops.dcnv3` on the rearranged inputs.
* :func:`dcnv3_grid_sample` is made of standard operators only (one ``GridSample``, its grid as one multiply-add
  on the offsets, the mask-weighted sum): the fallback for runtimes without ``DeformConv``. Its offsets hold
  ``(dx, dy)`` pairs, the order of ``GridSample``'s grid.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import dcnv3
from .geometry import kernel_window_pixels

__all__ = ['DEFORM_CONV_OPSET', 'dcnv3_deform_conv', 'dcnv3_grid_sample', 'deform_conv_rows', 'kernel_grid_base']

DEFORM_CONV_OPSET = 19  # the first ONNX opset with DeformConv


def deform_conv_rows(kernel_size: Tuple[int, int], group: int, pair: str = 'yx') -> Tuple[torch.Tensor, torch.Tensor]:
    """Which row of DCNv3's offset and mask projections each row of the deployment layout takes.

    DCNv3 orders a group's kernel points x-major (``p = kx * kh + ky``) with ``(dx, dy)`` pairs; the deployment
    layout orders them row-major (``ky * kw + kx``) with ``(dy, dx)`` pairs for ``pair='yx'`` (``DeformConv``) or
    ``(dx, dy)`` pairs for ``pair='xy'`` (``GridSample``). Returns ``(offset_rows, mask_rows)``: index tensors
    such that ``weight[offset_rows]`` is the offset projection in the deployment layout.
    """
    if pair not in ('yx', 'xy'):
        raise ValueError(f"pair must be 'yx' (DeformConv) or 'xy' (GridSample), got {pair!r}")
    kernel_h, kernel_w = kernel_size
    points = kernel_h * kernel_w
    offset_rows, mask_rows = [], []
    for g in range(group):
        for ky in range(kernel_h):
            for kx in range(kernel_w):
                p = g * points + kx * kernel_h + ky  # DCNv3's row of this point
                mask_rows.append(p)
                offset_rows += [2 * p + 1, 2 * p] if pair == 'yx' else [2 * p, 2 * p + 1]
    return torch.tensor(offset_rows), torch.tensor(mask_rows)


def _to_dcnv3_layout(offset: torch.Tensor, mask: torch.Tensor, kernel_size: Tuple[int, int],
                     group: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """NCHW offsets and mask in DeformConv's row order as NHWC tensors in :func:`uniconvnet.ops.dcnv3`'s order."""
    kernel_h, kernel_w = kernel_size
    n, _, out_h, out_w = offset.shape
    # (N, G, ky, kx, (dy, dx), H, W) -> (N, H, W, G, kx, ky, (dx, dy))
    offset = offset.reshape(n, group, kernel_h, kernel_w, 2, out_h, out_w).permute(0, 5, 6, 1, 3, 2, 4).flip(-1)
    mask = mask.reshape(n, group, kernel_h, kernel_w, out_h, out_w).permute(0, 4, 5, 1, 3, 2)
    return offset.reshape(n, out_h, out_w, -1), mask.reshape(n, out_h, out_w, -1)


class _DeformConvSampling(torch.autograd.Function):
    """Eager: :func:`uniconvnet.ops.dcnv3` on the rearranged inputs. ONNX: one ``DeformConv`` with all-ones weights."""

    @staticmethod
    def forward(ctx, value, offset, mask, kernel_size, stride, padding, dilation, group, channels):
        offset, mask = _to_dcnv3_layout(offset, mask, kernel_size, group)
        out = dcnv3(value.permute(0, 2, 3, 1), offset, mask, kernel_size, stride, padding, dilation, group)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def symbolic(g, value, offset, mask, kernel_size, stride, padding, dilation, group, channels):
        weight = g.op('Constant', value_t=torch.ones(channels, 1, *kernel_size))
        no_bias = g.op('prim::Constant')  # an omitted optional input
        no_bias.setType(torch._C.NoneType.get())
        return g.op('DeformConv', value, weight, offset, no_bias, mask, group_i=channels, offset_group_i=group,
                    kernel_shape_i=list(kernel_size), strides_i=list(stride), dilations_i=list(dilation),
                    pads_i=[padding[0], padding[1], padding[0], padding[1]])


def dcnv3_deform_conv(
        value: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        kernel_size: Tuple[int, int] = (3, 3),
        stride: Tuple[int, int] = (1, 1),
        padding: Tuple[int, int] = (1, 1),
        dilation: Tuple[int, int] = (1, 1),
        group: int = 1,
) -> torch.Tensor:
    """DCNv3 sampling (``offset_scale`` 1) in ``DeformConv``'s layout; one ``DeformConv`` node in ONNX.

    Args:
        value: ``(N, C, H, W)``.
        offset: ``(N, group * kh * kw * 2, H_out, W_out)``, rows ``(g, ky, kx, (dy, dx))``, in pixels.
        mask: ``(N, group * kh * kw, H_out, W_out)``, rows ``(g, ky, kx)``, used as they are.

    Returns:
        ``(N, C, H_out, W_out)``.
    """
    return _DeformConvSampling.apply(value, offset, mask, tuple(kernel_size), tuple(stride), tuple(padding),
                                     tuple(dilation), group, int(value.shape[1]))


def _size_tensor(size: int, dtype: torch.dtype, device: Optional[torch.device]) -> torch.Tensor:
    return torch.full((), size, dtype=dtype, device=device)


def kernel_grid_base(height: int, width: int, out_h: int, out_w: int, kernel_size: Tuple[int, int],
                     stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int],
                     dtype: torch.dtype = torch.float32,
                     device: Optional[torch.device] = None) -> torch.Tensor:
    """``GridSample`` coordinates of the regular kernel grid, ``(1, kh * kw, H_out * W_out, 2)`` as ``(x, y)``.

    Kernel points row-major; ``-1`` and ``1`` are the outer edges of the (unpadded) ``height x width`` input,
    ``GridSample``'s convention with ``align_corners=0``. ``height``, ``width``, ``out_h`` and ``out_w`` may be
    traced sizes (dynamic-size export) or plain integers (fixed size: the base is a constant).
    """
    centre_y, centre_x, point_y, point_x = kernel_window_pixels(out_h, out_w, kernel_size, stride, dilation, dtype,
                                                                device, x_major=False)
    # pixels of the padded input to GridSample's [-1, 1] over the unpadded one: (pixel - padding) * 2 / size - 1;
    # the sizes as tensors, so that traced sizes stay dynamic in an export
    scale_y, scale_x = 2.0 / _size_tensor(height, dtype, device), 2.0 / _size_tensor(width, dtype, device)
    y = (centre_y.view(1, -1, 1) + point_y.view(-1, 1, 1) - padding[0]) * scale_y - 1
    x = (centre_x.view(1, 1, -1) + point_x.view(-1, 1, 1) - padding[1]) * scale_x - 1
    points = kernel_size[0] * kernel_size[1]
    shape = (points, out_h, out_w)
    return torch.stack((x.expand(shape), y.expand(shape)), dim=-1).reshape(1, points, -1, 2)


def dcnv3_grid_sample(
        value: torch.Tensor,
        offset: torch.Tensor,
        mask: torch.Tensor,
        kernel_size: Tuple[int, int] = (3, 3),
        stride: Tuple[int, int] = (1, 1),
        padding: Tuple[int, int] = (1, 1),
        dilation: Tuple[int, int] = (1, 1),
        group: int = 1,
        fixed_size: bool = False,
) -> torch.Tensor:
    """DCNv3 sampling (``offset_scale`` 1) with ``F.grid_sample``: standard ONNX operators only.

    Args:
        value: ``(N, C, H, W)``.
        offset: ``(N, group * kh * kw * 2, H_out, W_out)``, rows ``(g, ky, kx, (dx, dy))``, in pixels.
        mask: ``(N, group * kh * kw, H_out, W_out)``, rows ``(g, ky, kx)``.
        fixed_size: read the sizes as Python numbers: in a traced export they become constants and the kernel
            grid one constant tensor; else the graph computes them from the input (a dynamic-size export).

    Returns:
        ``(N, C, H_out, W_out)``. The zero padding of DCNv3 is ``GridSample``'s zero padding of the unpadded
        input: the same samples, no padded copy.
    """
    channels, height, width = value.shape[1:]
    out_h, out_w = offset.shape[2:]
    if fixed_size:
        channels, height, width, out_h, out_w = int(channels), int(height), int(width), int(out_h), int(out_w)
    points = kernel_size[0] * kernel_size[1]
    base = kernel_grid_base(height, width, out_h, out_w, kernel_size, stride, padding, dilation, value.dtype,
                            value.device)
    # pixels to GridSample's [-1, 1]: 2 / size per coordinate
    scale = 2.0 / torch.stack((_size_tensor(width, value.dtype, value.device),
                               _size_tensor(height, value.dtype, value.device)))
    # (N, G * P * 2, H, W) -> (N * G, P, H * W, 2): the (dx, dy) pairs last, as the grid wants them; the batch
    # as -1, so that it stays dynamic
    grid = offset.reshape(-1, points, 2, out_h * out_w).transpose(2, 3) * scale + base
    sampled = F.grid_sample(value.reshape(-1, channels // group, height, width), grid, mode='bilinear',
                            padding_mode='zeros', align_corners=False)  # (N * G, C / G, P, H * W)
    weighted = sampled * mask.reshape(-1, 1, points, out_h * out_w)
    return weighted.sum(2).reshape(-1, channels, out_h, out_w)

"""DCNv3 sampling geometry shared by every backend: output size, kernel grid, sampling locations and their
``grid_sample`` and pixel coordinates, and the dtype sampling runs in.

Every backend computes its sampling coordinates with these functions (or, in compiled kernels, with the same
arithmetic, checked bit for bit against them), so that all backends sample the same points as the reference core
and the official code. Plain ATen ops: TorchScript compiles them.
"""
from typing import Tuple

import torch

__all__ = ['dcnv3_output_size', 'kernel_grid_locations', 'kernel_window_pixels', 'sampling_dtype', 'sampling_grid', 'sampling_locations',
           'unnormalize']


def sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype every backend samples in: float32 for half and bfloat16 inputs (sampling coordinates need more
    precision than their mantissa has), else the input's own."""
    return torch.float32 if dtype == torch.float16 or dtype == torch.bfloat16 else dtype


def dcnv3_output_size(height: int, width: int, kernel_size: Tuple[int, int], stride: Tuple[int, int],
                      padding: Tuple[int, int], dilation: Tuple[int, int]) -> Tuple[int, int]:
    """Spatial size of the DCNv3 output, the same formula as a regular convolution."""
    out_h = (height + 2 * padding[0] - (dilation[0] * (kernel_size[0] - 1) + 1)) // stride[0] + 1
    out_w = (width + 2 * padding[1] - (dilation[1] * (kernel_size[1] - 1) + 1)) // stride[1] + 1
    return out_h, out_w


def kernel_window_pixels(
        out_h: int,
        out_w: int,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        dilation: Tuple[int, int],
        dtype: torch.dtype,
        device: torch.device,
        x_major: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The regular sampling window in pixels of the zero-padded input, pixel centres at half-integers.

    Returns ``(centre_y, centre_x, point_y, point_x)``: each output pixel's window centre (``(H_out,)`` and
    ``(W_out,)``) and the kernel points around it (``(P,)`` each), ordered x-major (``p = kx * kh + ky``, DCNv3's
    order) or, with ``x_major=False``, row-major (``p = ky * kw + kx``, ``DeformConv``'s). Every value is a whole or
    half-integer, so sums of them are exact and every caller gets the same coordinates whatever its order of
    additions; the sizes may be traced (dynamic-size export).
    """
    kernel_h, kernel_w = kernel_size
    half_h, half_w = (dilation[0] * (kernel_h - 1)) // 2, (dilation[1] * (kernel_w - 1)) // 2
    centre_y = torch.arange(out_h, dtype=dtype, device=device) * stride[0] + (half_h + 0.5)
    centre_x = torch.arange(out_w, dtype=dtype, device=device) * stride[1] + (half_w + 0.5)
    point_y = torch.arange(kernel_h, dtype=dtype, device=device) * dilation[0] - half_h
    point_x = torch.arange(kernel_w, dtype=dtype, device=device) * dilation[1] - half_w
    if x_major:
        return centre_y, centre_x, point_y.repeat(kernel_w), point_x.repeat_interleave(kernel_h)
    return centre_y, centre_x, point_y.repeat_interleave(kernel_w), point_x.repeat(kernel_h)


def kernel_grid_locations(
        out_h: int,
        out_w: int,
        padded_height: int,
        padded_width: int,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        dilation: Tuple[int, int],
        offset_scale: float,
        dtype: torch.dtype,
        device: torch.device,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sampling locations before the offsets: ``x`` shaped ``(1, 1, W_out, 1, P)``, ``y`` ``(1, H_out, 1, 1, P)``.

    The regular kernel grid (scaled by ``offset_scale``) around each output pixel's window centre, as fractions
    of the padded input, with :func:`sampling_locations`' point order and arithmetic.
    """
    num_points = kernel_size[0] * kernel_size[1]
    centre_y, centre_x, point_y, point_x = kernel_window_pixels(out_h, out_w, kernel_size, stride, dilation, dtype,
                                                                device)
    # the official code's order: centre and points divided by the padded size first, then the points scaled
    ref_y, ref_x = centre_y / padded_height, centre_x / padded_width
    point_y, point_x = point_y / padded_height, point_x / padded_width
    base_x = ref_x.view(1, 1, out_w, 1, 1) + point_x.view(1, 1, 1, 1, num_points) * offset_scale
    base_y = ref_y.view(1, out_h, 1, 1, 1) + point_y.view(1, 1, 1, 1, num_points) * offset_scale
    return base_x, base_y


def sampling_locations(
        offset: torch.Tensor,
        padded_height: int,
        padded_width: int,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        dilation: Tuple[int, int],
        group: int,
        offset_scale: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sampling locations ``(x, y)``, each ``(N, H_out, W_out, group, P)``, as fractions of the padded input.

    ``0`` and ``1`` are the outer edges of the zero-padded input. The arithmetic follows the official code step by
    step (reference point, plus scaled kernel grid, plus offset divided by the padded size): in float32 another,
    equivalent order moves the model's stage outputs by about 1e-4. Kernel points are ordered x-major
    (``p = ix * kernel_h + iy``) and ``offset`` holds ``(dx, dy)`` pairs in pixels for ``(group, P)`` in its last
    dimension.
    """
    n, out_h, out_w, _ = offset.shape
    base_x, base_y = kernel_grid_locations(out_h, out_w, padded_height, padded_width, kernel_size, stride,
                                           dilation, offset_scale, offset.dtype, offset.device)
    offset = offset.reshape(n, out_h, out_w, group, kernel_size[0] * kernel_size[1], 2)
    offset_x, offset_y = offset[..., 0], offset[..., 1]
    if offset_scale != 1.0:  # multiplying by 1 changes no bit: skip the pass
        offset_x, offset_y = offset_x * offset_scale, offset_y * offset_scale
    return base_x + offset_x / padded_width, base_y + offset_y / padded_height


def sampling_grid(
        offset: torch.Tensor,
        padded_height: int,
        padded_width: int,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        dilation: Tuple[int, int],
        group: int,
        offset_scale: float,
) -> torch.Tensor:
    """``grid_sample`` coordinates of every sample, shape ``(N, H_out, W_out, group, P, 2)`` as ``(x, y)``.

    :func:`sampling_locations` mapped to ``grid_sample``'s range (``-1`` and ``1`` are the padded input's edges).
    """
    loc_x, loc_y = sampling_locations(offset, padded_height, padded_width, kernel_size, stride, dilation, group,
                                      offset_scale)
    return torch.stack((loc_x, loc_y), dim=-1) * 2 - 1


def unnormalize(loc: torch.Tensor, size: int) -> torch.Tensor:
    """``grid_sample``'s pixel coordinate (``align_corners=False``) of a location given as a fraction of ``size``.

    grid_sample maps ``g = 2 * loc - 1`` to ``(g + 1) * (size / 2) - 0.5`` with a fused multiply-add in its
    vectorised CPU kernel; ``addcmul`` runs through the same vectorised arithmetic, so the two agree bit for bit
    (``tests/ops/test_dcn_gather.py`` checks it).
    """
    grid = loc * 2 - 1
    return torch.addcmul(grid.new_full((), -0.5), grid + 1, grid.new_full((), size / 2))

"""The ``gather`` backend: DCNv3 sampling for CPUs as gathers on channels-last rows, pure PyTorch, forward and
backward. Formerly called ``cpu`` (that name still selects it, with a deprecation warning).

The reference core (:mod:`.torch_backend`) reshapes the input to ``(N * group, C / group, H, W)`` for
``grid_sample`` and materialises every sampled value before the mask-weighted sum. This core keeps the input
channels-last, as a table of rows ``(N * H * W * group, C / group)``, and treats the sampling as a sparse matrix
``S`` with ``4 * P`` entries per output row: the four bilinear corners of each of the ``P`` kernel points, each
bilinear weight times the mask. Corner ``c`` of a sample whose top-left corner is table row ``r`` is row
``r + shift[c]`` (one pixel right, one down, or both), so every step below runs once per corner on a shifted view
of the table, with the same ``(rows, P)`` index::

    output                 S @ table                  F.embedding_bag: gather rows, weighted sum, no copies
    grad of S's entries    grad_out[r] . table[c]     torch.sparse.sampled_addmm
    grad of offset, mask   closed form from S's entries
    grad of the input      S^T @ grad_out             the samples sorted by top-left row, then F.embedding_bag
                                                      over grad_out: a scatter-add turned into gathers

Corners outside the image read a zero ring around the padded input instead of being masked: the top-left corner
is clamped to ``[-2, size]``, so that both corners of a clamped pair land on zeros.

Sampling coordinates are bit for bit those of the reference: the official location arithmetic
(:func:`.geometry.sampling_locations`), then ``grid_sample``'s own un-normalisation. Only the order of the
weighted sum (and of the mask product) differs, so outputs differ from the reference by float rounding.
"""
import warnings
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from .customop import sampling_op
from .geometry import sampling_locations, unnormalize
from .registry import Backend, register

__all__ = ['dcnv3_gather']

_RING = 2  # zero pixels around the padded input: clamped corners read zeros there


def _sample_corners(
        offset: torch.Tensor,
        height: int,
        width: int,
        kernel_size: Tuple[int, int],
        stride: Tuple[int, int],
        padding: Tuple[int, int],
        dilation: Tuple[int, int],
        group: int,
        offset_scale: float,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Table row of every sample's top-left corner and its fractional position, each ``(N, Ho, Wo, G, P)``."""
    n = offset.shape[0]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    table_h, table_w = padded_h + 2 * _RING, padded_w + 2 * _RING
    loc_x, loc_y = sampling_locations(offset, padded_h, padded_w, kernel_size, stride, dilation, group,
                                      offset_scale)
    x = unnormalize(loc_x, padded_w)
    y = unnormalize(loc_y, padded_h)
    x0, y0 = x.floor(), y.floor()
    frac_x, frac_y = x - x0, y - y0
    index_dtype = _index_dtype(n, table_h, table_w, group)
    col = (x0.clamp_(-_RING, padded_w).nan_to_num_(-_RING) + _RING).to(index_dtype)
    row = (y0.clamp_(-_RING, padded_h).nan_to_num_(-_RING) + _RING).to(index_dtype)
    image = torch.arange(n, dtype=index_dtype, device=offset.device).view(n, 1, 1, 1, 1) * table_h
    groups = torch.arange(group, dtype=index_dtype, device=offset.device).view(1, 1, 1, group, 1)
    corner = ((image + row) * table_w + col) * group + groups
    return corner, frac_x, frac_y


def _corner_weights(frac_x: torch.Tensor, frac_y: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
    """Bilinear weight times mask of the corners (nw, ne, sw, se) of every sample, each ``(N, Ho, Wo, G, P)``."""
    rest_x = 1 - frac_x
    upper, lower = (1 - frac_y) * mask, frac_y * mask
    return [upper * rest_x, upper * frac_x, lower * rest_x, lower * frac_x]


def _corner_shifts(table_w: int, group: int) -> Tuple[int, int, int, int]:
    """Row distance from a top-left corner to the (nw, ne, sw, se) corners in the ``(N, H, W, G)`` row order."""
    return 0, group, table_w * group, (table_w + 1) * group


def _pad_table(input: torch.Tensor, padding: Tuple[int, int]) -> torch.Tensor:
    pad_h, pad_w = padding[0] + _RING, padding[1] + _RING
    return F.pad(input, (0, 0, pad_w, pad_w, pad_h, pad_h))


def _sampled_dots(corner: torch.Tensor, grad_rows: torch.Tensor, table_rows: torch.Tensor,
                  shifts: Tuple[int, ...]) -> List[torch.Tensor]:
    """Per corner ``c``: ``grad_rows[i] . table_rows[corner[i, k] + shifts[c]]``, each shaped like ``corner``."""
    num_rows, num_points = grad_rows.shape[0], corner.shape[-1]
    index = corner.reshape(-1)
    crow = torch.arange(0, index.numel() + 1, num_points, dtype=index.dtype, device=index.device)
    values = grad_rows.new_zeros(index.numel())  # ignored with beta=0, but must not hold NaNs
    dots = []
    with warnings.catch_warnings():  # "sparse CSR support is in beta": sampled_addmm is all we use
        warnings.simplefilter('ignore', UserWarning)
        for shift in shifts:
            rows = table_rows[shift:]
            pattern = torch.sparse_csr_tensor(crow, index, values, (num_rows, rows.shape[0]), check_invariants=False)
            dots.append(torch.sparse.sampled_addmm(pattern, grad_rows, rows.t(), beta=0.0).values().view(corner.shape))
    return dots


def _scatter_corners(corner: torch.Tensor, weights: List[torch.Tensor], grad_rows: torch.Tensor,
                     num_table_rows: int) -> List[torch.Tensor]:
    """``S^T @ grad_rows`` per corner, indexed by top-left row: each ``(table rows, C / G)``.

    The scatter-add becomes gathers: sorted by top-left row, the samples form one bag per table row of an
    ``F.embedding_bag`` over ``grad_rows``, once per corner with that corner's weights.
    """
    num_points = corner.shape[-1]
    sorted_corner, order = torch.sort(corner.reshape(-1))
    counts = torch.bincount(sorted_corner, minlength=num_table_rows)
    starts = torch.cumsum(counts, 0) - counts
    source_row = torch.div(order, num_points, rounding_mode='floor')
    return [F.embedding_bag(source_row, grad_rows, starts, mode='sum',
                            per_sample_weights=w.reshape(-1).index_select(0, order)) for w in weights]


def _index_dtype(n: int, table_h: int, table_w: int, group: int) -> torch.dtype:
    return torch.int32 if n * table_h * table_w * group < 2 ** 31 - 1 else torch.int64


# The kernels of the custom ops (customop.sampling_op): the forward returns, after the output, what the backward
# reads instead of recomputing: top-left corner rows and fractional positions of the samples.

def _forward(
        input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: List[int], stride: List[int],
        padding: List[int], dilation: List[int], group: int, offset_scale: float,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output, and what the backward needs: top-left corner rows and fractional positions of the samples."""
    n, height, width, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    num_points = kernel_size[0] * kernel_size[1]
    group_channels = channels // group
    table = _pad_table(input, padding)
    table_rows = table.view(-1, group_channels)
    corner, frac_x, frac_y = _sample_corners(offset, height, width, kernel_size, stride, padding, dilation,
                                             group, offset_scale)
    index = corner.view(-1, num_points)
    out = None
    weights = _corner_weights(frac_x, frac_y, mask.reshape(corner.shape))
    for shift, weight in zip(_corner_shifts(table.shape[2], group), weights):
        part = F.embedding_bag(index, table_rows[shift:], mode='sum', per_sample_weights=weight.view(index.shape))
        out = part if out is None else out.add_(part)
    return out.view(n, out_h, out_w, channels), corner, frac_x, frac_y


def _residuals_fake(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale):
    n, height, width, _ = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    table_h, table_w = height + 2 * (padding[0] + _RING), width + 2 * (padding[1] + _RING)
    points = (n, out_h, out_w, group, kernel_size[0] * kernel_size[1])
    return (offset.new_empty(points, dtype=_index_dtype(n, table_h, table_w, group)),
            offset.new_empty(points), offset.new_empty(points))


def _backward(
        grad_out: torch.Tensor, input: torch.Tensor, offset: Optional[torch.Tensor], mask: torch.Tensor,
        residuals: List[torch.Tensor], kernel_size: List[int], stride: List[int], padding: List[int],
        dilation: List[int], group: int, offset_scale: float, needs_input_grad: List[bool],
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of input, offset and mask (None where ``needs_input_grad`` is False). ``offset`` is not saved:
    None."""
    corner, frac_x, frac_y = residuals
    n, height, width, channels = input.shape
    group_channels = channels // group
    grad_rows = grad_out.reshape(-1, group_channels)
    table = _pad_table(input, padding)
    table_h, table_w = table.shape[1], table.shape[2]
    shifts = _corner_shifts(table_w, group)
    mask = mask.reshape(corner.shape)
    grad_input = grad_offset = grad_mask = None

    if needs_input_grad[1] or needs_input_grad[2]:
        d_nw, d_ne, d_sw, d_se = _sampled_dots(corner, grad_rows, table.view(-1, group_channels), shifts)
        rest_x, rest_y = 1 - frac_x, 1 - frac_y
        if needs_input_grad[2]:
            grad_mask = (d_nw * rest_x + d_ne * frac_x) * rest_y + (d_sw * rest_x + d_se * frac_x) * frac_y
            grad_mask = grad_mask.reshape(*grad_mask.shape[:3], -1)
        if needs_input_grad[1]:
            # d x / d offset_x = offset_scale: the un-normalised coordinate is ref + point + offset * scale
            grad_x = (rest_y * (d_ne - d_nw) + frac_y * (d_se - d_sw)) * mask
            grad_y = (rest_x * (d_sw - d_nw) + frac_x * (d_se - d_ne)) * mask
            grad_offset = torch.stack((grad_x, grad_y), dim=-1)
            if offset_scale != 1.0:
                grad_offset = grad_offset * offset_scale
            grad_offset = grad_offset.reshape(*grad_offset.shape[:3], -1)

    if needs_input_grad[0]:
        per_corner = _scatter_corners(corner, _corner_weights(frac_x, frac_y, mask), grad_rows,
                                      n * table_h * table_w * group)
        # the table row of corner (dy, dx) of top-left r is r + (dy, dx): read each corner's sums shifted back
        top, left = padding[0] + _RING, padding[1] + _RING
        rows, cols = slice(top, top + height), slice(left, left + width)
        rows_above, cols_left = slice(top - 1, top - 1 + height), slice(left - 1, left - 1 + width)
        nw, ne, sw, se = (p.view(n, table_h, table_w, group, group_channels) for p in per_corner)
        grad_input = nw[:, rows, cols] + ne[:, rows, cols_left] + sw[:, rows_above, cols] \
            + se[:, rows_above, cols_left]
        grad_input = grad_input.reshape(n, height, width, channels)
    return grad_input, grad_offset, grad_mask


_OP = sampling_op('uniconvnet::dcnv3_gather_forward', 'uniconvnet::dcnv3_gather_backward', _forward,
                  _backward, num_residuals=3, residuals_fake=_residuals_fake, saves_offset=False)


def dcnv3_gather(
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
    """DCNv3 sampling as gathers over channels-last rows; same arguments and result as
    :func:`.torch_backend.dcnv3_torch`.

    Half and bfloat16 inputs are sampled in float32, as in the reference. Not twice differentiable.
    """
    return _OP(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)


register(Backend(
    name='gather',
    forward=dcnv3_gather,
    description='gathers over channels-last rows, plain PyTorch: the CPU core without numba',
    devices=('cpu',),
    dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    auto_devices=('cpu',),
    aliases=('cpu',),
    custom_op=_OP,
))

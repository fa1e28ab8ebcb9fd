"""Numba kernels of the DCNv3 sampling core for CPUs: forward, and backward for input, offset and mask.

Imports numba: only :mod:`.numba_backend` imports this module, on the first call. Arrays are flat and
contiguous: input ``(N, H, W, C)``, offset ``(N, Ho, Wo, G, P, 2)``, mask and per-sample results
``(N, Ho, Wo, G, P)``. Every kernel recomputes the sampling coordinates from the offsets (a few flops per sample)
instead of reading them from memory.

Sampling coordinates are bit for bit the reference's: ``base + offset * scale / size`` (``base`` is the
kernel grid, computed by PyTorch with the reference's own code), then ``grid_sample``'s un-normalisation
``(2 * location - 1 + 1) * (size / 2) - 0.5``, each step rounded in the input's precision as PyTorch rounds
it. PyTorch's vectorised CPU kernels fuse the last multiply-add on most machines; ``fused`` selects that,
and :func:`sampling_coordinates` lets the caller check which rounding this machine's PyTorch uses.
"""
import numba
import numpy as np
from numba import prange
from numba.extending import intrinsic

__all__ = ['backward', 'forward', 'sampling_coordinates']


def _jit(parallel: bool = False, inline: str = 'never'):
    """``numba.njit`` with numba's on-disk cache where it finds a writable cache folder, without it elsewhere.

    numba caches next to this file, else in the user's cache folder (``NUMBA_CACHE_DIR`` or ``~/.cache``);
    where neither is writable it refuses ``cache=True`` with a RuntimeError: then every process compiles.
    """
    def decorate(function):
        try:
            return numba.njit(cache=True, parallel=parallel, inline=inline, error_model='numpy')(function)
        except RuntimeError:
            return numba.njit(parallel=parallel, inline=inline, error_model='numpy')(function)
    return decorate


@intrinsic
def _fused_multiply_add(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's fma), as PyTorch's vectorised ``grid_sample`` un-normalises."""
    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


# Layout of the ``constants`` array (in the input's float type, so that all arithmetic stays in that type)
_SCALE, _WIDTH, _HEIGHT, _HALF_WIDTH, _HALF_HEIGHT, _ONE, _TWO, _HALF = range(8)


def constants(offset_scale: float, padded_height: int, padded_width: int, dtype) -> np.ndarray:
    """The ``constants`` array the kernels take: offset scale, padded sizes and their halves, 1, 2 and 0.5."""
    return np.array([offset_scale, padded_width, padded_height, padded_width / 2, padded_height / 2, 1, 2, 0.5],
                    dtype=dtype)


# Helpers take scalars only and are inlined by numba: arrays passed to a function, even an inlined one, cost a
# reference-count update each, which made the first version of the forward kernel 3x slower.

@_jit(inline='always')
def _pixel_coordinate(offset, base, consts_scale, size, half_size, one, two, half, fused):
    """Pixel coordinate in the padded input of one sample along one axis (``grid_sample``'s ``x`` or ``y``)."""
    grid = (base + offset * consts_scale / size) * two - one
    if fused:
        return _fused_multiply_add(grid + one, half_size, -half)
    return (grid + one) * half_size - half


@_jit()
def sampling_coordinates(offset, base_x, base_y, consts, out_h, out_w, group, num_points, fused):
    """``(x, y)`` of every sample, each flat ``(N, Ho, Wo, G, P)``: what the kernels compute, for checking."""
    scale, width, height = consts[_SCALE], consts[_WIDTH], consts[_HEIGHT]
    half_width, half_height, one, two, half = consts[_HALF_WIDTH], consts[_HALF_HEIGHT], consts[_ONE], \
        consts[_TWO], consts[_HALF]
    num_samples = offset.size // 2
    xs = np.empty(num_samples, dtype=offset.dtype)
    ys = np.empty(num_samples, dtype=offset.dtype)
    samples = group * num_points
    for sample in range(num_samples):
        pixel = sample // samples
        xs[sample] = _pixel_coordinate(offset[2 * sample], base_x[(pixel % out_w) * samples + sample % samples],
                                       scale, width, half_width, one, two, half, fused)
        ys[sample] = _pixel_coordinate(offset[2 * sample + 1],
                                       base_y[((pixel // out_w) % out_h) * samples + sample % samples], scale,
                                       height, half_height, one, two, half, fused)
    return xs, ys


@_jit(inline='always')
def _top_left_corner(x, y, height, width, pad_h, pad_w):
    """Row and column of the top-left corner in the unpadded input, and whether any corner is inside it.

    Tested in floating point before any conversion, so that far-away (huge, infinite, NaN) samples never
    reach an integer cast.
    """
    column = np.floor(x) - pad_w
    row = np.floor(y) - pad_h
    if column >= -1 and column < width and row >= -1 and row < height:
        return int(row), int(column), True
    return 0, 0, False


@_jit(parallel=True)
def backward(grad_out, value, offset, mask, base_x, base_y, consts, grad_value, grad_offset, grad_mask, n,
             height, width, out_h, out_w, group, group_channels, num_points, pad_h, pad_w, fused, need_value,
             need_offset_mask):
    """Gradients of :func:`forward`, accumulated into the zero-filled ``grad_value``, ``grad_offset``, ``grad_mask``.

    Parallel over (image, group): every task owns its slice of all three gradients, so the scatter of the
    input gradient needs neither atomics nor per-thread copies.
    """
    channels = group * group_channels
    row_stride = width * channels
    scale, padded_w, padded_h = consts[_SCALE], consts[_WIDTH], consts[_HEIGHT]
    half_w, half_h, one, two, half = consts[_HALF_WIDTH], consts[_HALF_HEIGHT], consts[_ONE], consts[_TWO], \
        consts[_HALF]
    zero = one - one
    pixels_per_image = out_h * out_w
    for task in prange(n * group):
        image = task // group
        g = task % group
        image_start = image * height * row_stride + g * group_channels
        for pixel_in_image in range(pixels_per_image):
            pixel = image * pixels_per_image + pixel_in_image
            column_out = pixel_in_image % out_w
            row_out = pixel_in_image // out_w
            grad_start = np.uint64(pixel * channels + g * group_channels)
            for point in range(num_points):
                sample = (pixel * group + g) * num_points + point
                x = _pixel_coordinate(offset[2 * sample], base_x[(column_out * group + g) * num_points + point],
                                      scale, padded_w, half_w, one, two, half, fused)
                y = _pixel_coordinate(offset[2 * sample + 1], base_y[(row_out * group + g) * num_points + point],
                                      scale, padded_h, half_h, one, two, half, fused)
                row, column, inside = _top_left_corner(x, y, height, width, pad_h, pad_w)
                if not inside:
                    continue
                frac_x = x - np.floor(x)
                frac_y = y - np.floor(y)
                rest_x, rest_y = one - frac_x, one - frac_y
                weight = mask[sample]
                # corners (nw, ne, sw, se): start in value, bilinear weight, inside the input or not
                nw = image_start + row * row_stride + column * channels
                has_w, has_e = column >= 0, column + 1 < width
                has_n, has_s = row >= 0, row + 1 < height
                dot_nw = dot_ne = dot_sw = dot_se = zero
                for corner in range(4):
                    south, east = corner >= 2, corner % 2 == 1
                    if not ((has_s if south else has_n) and (has_e if east else has_w)):
                        continue
                    start = np.uint64(nw + (row_stride if south else 0) + (channels if east else 0))
                    bilinear = (frac_y if south else rest_y) * (frac_x if east else rest_x)
                    dot = zero
                    if need_offset_mask:
                        for c in range(np.uint64(group_channels)):
                            dot += grad_out[grad_start + c] * value[start + c]
                    if need_value:
                        scatter = bilinear * weight
                        for c in range(np.uint64(group_channels)):
                            grad_value[start + c] += scatter * grad_out[grad_start + c]
                    if corner == 0:
                        dot_nw = dot
                    elif corner == 1:
                        dot_ne = dot
                    elif corner == 2:
                        dot_sw = dot
                    else:
                        dot_se = dot
                if need_offset_mask:
                    grad_mask[sample] = ((dot_nw * rest_x + dot_ne * frac_x) * rest_y
                                         + (dot_sw * rest_x + dot_se * frac_x) * frac_y)
                    # d x / d offset_x = offset_scale: the pixel coordinate is base + offset * scale - 0.5
                    grad_offset[2 * sample] = (rest_y * (dot_ne - dot_nw) + frac_y * (dot_se - dot_sw)) * weight * scale
                    grad_offset[2 * sample + 1] = ((rest_x * (dot_sw - dot_nw) + frac_x * (dot_se - dot_ne))
                                                   * weight * scale)


RING = 2  # zero pixels around the padded input in the table the forward reads


@_jit(parallel=True)
def forward(table, offset, mask, base_x, base_y, consts, out, n, out_h, out_w, group, group_channels,
            num_points, table_h, table_w, fused):
    """``out[pixel, g, :] = sum_p mask * bilinear(input[image, :, :, g, :], x, y)``; parallel over output rows.

    ``table`` is the zero-padded input with ``RING`` more zero pixels on every side, ``(N, Hp + 4, Wp + 4, C)``,
    of ``table_h`` by ``table_w`` pixels. A top-left corner outside the padded input is clamped into the ring, so
    that all four corners read zeros there and no sample needs a branch. Per output row, phase 1 computes the
    corner index and the four weights of every sample in one flat loop (which LLVM vectorises), phase 2 adds
    the weighted corner rows.
    """
    channels = group * group_channels
    samples = group * num_points
    scale, padded_w, padded_h = consts[_SCALE], consts[_WIDTH], consts[_HEIGHT]
    half_w, half_h, one, two, half = consts[_HALF_WIDTH], consts[_HALF_HEIGHT], consts[_ONE], consts[_TWO], \
        consts[_HALF]
    row_stride = np.uint64(table_w * channels)
    col_stride = np.uint64(channels)
    low_w, high_w = -RING * one, padded_w
    low_h, high_h = -RING * one, padded_h
    for task in prange(n * out_h):
        image = task // out_h
        row_out = task % out_h
        start = task * out_w * samples
        # phase 1, vectorised over (Wo, G, P): corner index and the four weights of every sample
        count = out_w * samples
        index = np.empty(count, dtype=np.int64)
        w_nw = np.empty(count, dtype=offset.dtype)
        w_ne = np.empty(count, dtype=offset.dtype)
        w_sw = np.empty(count, dtype=offset.dtype)
        w_se = np.empty(count, dtype=offset.dtype)
        base_y_full = np.empty(count, dtype=offset.dtype)
        # views starting at this row: indices from 0 let LLVM drop numba's negative-index handling and vectorise
        offset_row = offset[2 * start:2 * (start + count)]
        mask_row = mask[start:start + count]
        base_y_row = base_y[row_out * samples:(row_out + 1) * samples]
        image_start = image * table_h + RING
        for j in range(out_w):  # the row's kernel-grid y, repeated per output column: one flat loop below
            base_y_full[j * samples:(j + 1) * samples] = base_y_row
        for k in range(count):
            x = _pixel_coordinate(offset_row[2 * k], base_x[k], scale, padded_w, half_w, one, two, half, fused)
            y = _pixel_coordinate(offset_row[2 * k + 1], base_y_full[k], scale, padded_h, half_h, one, two, half,
                                  fused)
            x0 = np.floor(x)
            y0 = np.floor(y)
            frac_x = x - x0
            frac_y = y - y0
            x0 = x0 if x0 >= low_w else low_w  # NaN goes to the ring too
            x0 = x0 if x0 <= high_w else high_w
            y0 = y0 if y0 >= low_h else low_h
            y0 = y0 if y0 <= high_h else high_h
            index[k] = ((image_start + np.int64(y0)) * table_w + np.int64(x0) + RING) * channels
            m = mask_row[k]
            upper = (one - frac_y) * m
            lower = frac_y * m
            w_nw[k] = upper * (one - frac_x)
            w_ne[k] = upper * frac_x
            w_sw[k] = lower * (one - frac_x)
            w_se[k] = lower * frac_x
        # phase 2: sample by sample, the four corners' channel rows, weighted, into the output row
        out_row = out[task * out_w * channels:(task + 1) * out_w * channels]
        out_row[:] = 0
        k = 0
        slot = np.uint64(0)
        for j in range(out_w):
            for g in range(group):
                group_start = g * group_channels
                for point in range(num_points):
                    nw = np.uint64(index[k] + group_start)
                    ne = nw + col_stride
                    sw = nw + row_stride
                    se = sw + col_stride
                    a, b, c_, d = w_nw[k], w_ne[k], w_sw[k], w_se[k]
                    for c in range(np.uint64(group_channels)):
                        out_row[slot + c] += (a * table[nw + c] + b * table[ne + c] + c_ * table[sw + c]
                                              + d * table[se + c])
                    k += 1
                slot += np.uint64(group_channels)

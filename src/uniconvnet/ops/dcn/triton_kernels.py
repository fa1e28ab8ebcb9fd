"""Triton kernels of the DCNv3 sampling core. Imported only on first use: this module imports Triton.

Conventions are those of :func:`uniconvnet.ops.dcn.torch_backend.dcnv3_torch`: NHWC tensors, ``C = group * Cg``,
kernel points ordered x-major (``p = ix * kernel_h + iy``), offsets as ``(dx, dy)`` pairs in pixels, zeros
outside the image, the raw mask as the weight of each point. Every value is converted to float32 on load and
accumulated in float32.

Each program handles ``BLOCK_Q`` output pixels of one group, with all ``Cg`` channels of that group in one
``(BLOCK_Q, BLOCK_C)`` tile: a group's channels are contiguous in memory, so each bilinear corner is one
contiguous read per pixel, and the reductions over channels that the offset and mask gradients need stay
inside the program (no atomics for them). Only the input gradient is scattered, with float32 atomics.

Two compile-time switches (set by :class:`uniconvnet.ops.dcn.triton_backend.TritonConfig`) change speed, not results:
  * ``EVEN_C``: the group width is exactly ``BLOCK_C`` (a power of two), used as a constant. Every channel index is
    then a known multiple of it, so Triton loads and stores a vector of channels per thread (up to 16 bytes), and each
    thread computes a pixel's sampling position and loads its offsets and mask once for all its channels
    (DCNv4's lesson). Without it, a group width that Triton cannot prove a multiple of 16 (UniConvNet-A's 8)
    gets one channel per thread, and every thread of a pixel repeats that pixel's loads and arithmetic.
  * ``ATOMIC_SEM``: the memory order of the input-gradient atomics. ``'relaxed'`` suffices, as nothing reads
    the buffer until the kernel ends; ``'acq_rel'`` is Triton's default.
"""
import triton
import triton.language as tl

# Sample positions are clamped to this box before the integer conversion, so that huge (or infinite) offsets
# cannot overflow int32; anything clamped is outside the image and contributes zero anyway.
_CLAMP_MARGIN = tl.constexpr(2.0)


@triton.jit
def _tile_indices(num_queries, height, width, out_h, out_w, group, group_channels, KERNEL_H: tl.constexpr,
                  KERNEL_W: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, WIDE_INDEX: tl.constexpr,
                  EVEN_C: tl.constexpr):
    """This program's output pixels ``q`` (one group ``g``, channels ``c``) and the element indices derived."""
    if EVEN_C:  # the group width as a constant: every index below is a known multiple of it (vector accesses)
        group_channels = BLOCK_C
    g = tl.program_id(1)
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    if WIDE_INDEX:  # int64 element indices only for tensors past int32 range: int32 needs fewer registers
        q = q.to(tl.int64)
    q_ok = q < num_queries
    col = q % out_w
    row = (q // out_w) % out_h
    batch = q // (out_w * out_h)
    c = tl.arange(0, BLOCK_C)
    if EVEN_C:  # no channel is masked: the mask is constant along the channels, as vector accesses need
        tile_ok = tl.broadcast_to(q_ok[:, None], (BLOCK_Q, BLOCK_C))
    else:
        tile_ok = q_ok[:, None] & (c < group_channels)[None, :]
    channels = group * group_channels
    # [BLOCK_Q, BLOCK_C] index of channel c of this group at pixel (0, 0) of each pixel's image
    image_base = (batch * height * width * channels + g * group_channels)[:, None] + c[None, :]
    # index of this pixel's and group's first kernel point in the mask (twice that in the offsets)
    point_base = (q * group + g) * (KERNEL_H * KERNEL_W)
    out_index = (q * channels + g * group_channels)[:, None] + c[None, :]
    return q_ok, col, row, tile_ok, channels, image_base, point_base, out_index


@triton.jit
def _point_corners(input_ptr, offset_ptr, mask_ptr, p, q_ok, col, row, tile_ok, channels, image_base, point_base,
                   height, width, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, offset_scale,
                   KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr):
    """Kernel point ``p`` of every pixel in the tile: mask weight, bilinear sample, fractions and four corners.

    The position is the arithmetic of the PyTorch core written in input pixels (pixel centres at integers):
    kernel-window centre, plus the scaled regular grid, plus the scaled offset, minus the padding. Corners
    outside the image read as zero. Returns the corner index (top-left) and in-image masks for the scatter.
    """
    ix = p // KERNEL_H  # x-major point order
    iy = p % KERNEL_H
    dx = tl.load(offset_ptr + (point_base + p) * 2, mask=q_ok, other=0.0).to(tl.float32)
    dy = tl.load(offset_ptr + (point_base + p) * 2 + 1, mask=q_ok, other=0.0).to(tl.float32)
    weight = tl.load(mask_ptr + point_base + p, mask=q_ok, other=0.0).to(tl.float32)
    half_h = (dil_h * (KERNEL_H - 1)) // 2
    half_w = (dil_w * (KERNEL_W - 1)) // 2
    x = (col * stride_w + half_w - pad_w).to(tl.float32) + ((ix * dil_w - half_w) * offset_scale) + dx * offset_scale
    y = (row * stride_h + half_h - pad_h).to(tl.float32) + ((iy * dil_h - half_h) * offset_scale) + dy * offset_scale

    x0f = tl.floor(x)
    y0f = tl.floor(y)
    lx = x - x0f
    ly = y - y0f
    # in-image flags in float arithmetic, before any integer conversion (see _CLAMP_MARGIN)
    in_x0 = (x0f >= 0) & (x0f <= width - 1)
    in_x1 = (x0f >= -1) & (x0f <= width - 2)
    in_y0 = (y0f >= 0) & (y0f <= height - 1)
    in_y1 = (y0f >= -1) & (y0f <= height - 2)
    x0 = tl.minimum(tl.maximum(x0f, -_CLAMP_MARGIN), width + _CLAMP_MARGIN).to(tl.int32)
    y0 = tl.minimum(tl.maximum(y0f, -_CLAMP_MARGIN), height + _CLAMP_MARGIN).to(tl.int32)

    ok00 = tile_ok & (in_y0 & in_x0)[:, None]
    ok01 = tile_ok & (in_y0 & in_x1)[:, None]
    ok10 = tile_ok & (in_y1 & in_x0)[:, None]
    ok11 = tile_ok & (in_y1 & in_x1)[:, None]
    corner = image_base + ((y0 * width + x0).to(image_base.dtype) * channels)[:, None]
    v00 = tl.load(input_ptr + corner, mask=ok00, other=0.0).to(tl.float32)
    v01 = tl.load(input_ptr + corner + channels, mask=ok01, other=0.0).to(tl.float32)
    v10 = tl.load(input_ptr + corner + width * channels, mask=ok10, other=0.0).to(tl.float32)
    v11 = tl.load(input_ptr + corner + (width + 1) * channels, mask=ok11, other=0.0).to(tl.float32)
    sampled = ((1.0 - ly) * (1.0 - lx))[:, None] * v00 + ((1.0 - ly) * lx)[:, None] * v01 \
        + (ly * (1.0 - lx))[:, None] * v10 + (ly * lx)[:, None] * v11
    return weight, sampled, lx, ly, corner, ok00, ok01, ok10, ok11, v00, v01, v10, v11


@triton.jit
def dcnv3_forward_kernel(
        input_ptr, offset_ptr, mask_ptr, out_ptr,
        num_queries, height, width, out_h, out_w, group, group_channels,
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, offset_scale,
        KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
        WIDE_INDEX: tl.constexpr, EVEN_C: tl.constexpr,
):
    """out[n, ho, wo, g*Cg + c] = sum_p mask[n, ho, wo, g, p] * bilinear(input[n, :, :, g*Cg + c], pos_p)."""
    q_ok, col, row, tile_ok, channels, image_base, point_base, out_index = _tile_indices(
        num_queries, height, width, out_h, out_w, group, group_channels, KERNEL_H, KERNEL_W, BLOCK_Q, BLOCK_C,
        WIDE_INDEX, EVEN_C)
    acc = tl.zeros((BLOCK_Q, BLOCK_C), dtype=tl.float32)
    # a loop, not static_range: unrolling the points lets the compiler hoist every load and spill registers
    for p in range(KERNEL_H * KERNEL_W):
        weight, sampled, lx, ly, corner, ok00, ok01, ok10, ok11, v00, v01, v10, v11 = _point_corners(
            input_ptr, offset_ptr, mask_ptr, p, q_ok, col, row, tile_ok, channels, image_base, point_base,
            height, width, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, offset_scale, KERNEL_H, KERNEL_W)
        acc += weight[:, None] * sampled
    tl.store(out_ptr + out_index, acc.to(out_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def dcnv3_backward_kernel(
        grad_out_ptr, input_ptr, offset_ptr, mask_ptr,
        grad_input_ptr, grad_offset_ptr, grad_mask_ptr,
        num_queries, height, width, out_h, out_w, group, group_channels,
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, offset_scale,
        KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
        WIDE_INDEX: tl.constexpr, EVEN_C: tl.constexpr, ATOMIC_SEM: tl.constexpr,
):
    """Gradients of the forward above; ``grad_input_ptr`` is a zeroed float32 buffer (scattered with atomics).

    With s = bilinear sample and go = grad_out, per point p:
      grad_mask[p]   = sum_c go * s
      grad_offset[p] = mask[p] * offset_scale * sum_c go * ds/d(x, y)
      grad_input    += mask[p] * go * (bilinear weight of each corner), at the four corners
    """
    q_ok, col, row, tile_ok, channels, image_base, point_base, out_index = _tile_indices(
        num_queries, height, width, out_h, out_w, group, group_channels, KERNEL_H, KERNEL_W, BLOCK_Q, BLOCK_C,
        WIDE_INDEX, EVEN_C)
    grad_out = tl.load(grad_out_ptr + out_index, mask=tile_ok, other=0.0).to(tl.float32)
    for p in range(KERNEL_H * KERNEL_W):
        weight, sampled, lx, ly, corner, ok00, ok01, ok10, ok11, v00, v01, v10, v11 = _point_corners(
            input_ptr, offset_ptr, mask_ptr, p, q_ok, col, row, tile_ok, channels, image_base, point_base,
            height, width, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, offset_scale, KERNEL_H, KERNEL_W)
        hx = 1.0 - lx
        hy = 1.0 - ly
        tl.store(grad_mask_ptr + point_base + p,
                 tl.sum(grad_out * sampled, axis=1).to(grad_mask_ptr.dtype.element_ty), mask=q_ok)

        d_dx = hy[:, None] * (v01 - v00) + ly[:, None] * (v11 - v10)
        d_dy = hx[:, None] * (v10 - v00) + lx[:, None] * (v11 - v01)
        scale = weight * offset_scale
        tl.store(grad_offset_ptr + (point_base + p) * 2,
                 (scale * tl.sum(grad_out * d_dx, axis=1)).to(grad_offset_ptr.dtype.element_ty), mask=q_ok)
        tl.store(grad_offset_ptr + (point_base + p) * 2 + 1,
                 (scale * tl.sum(grad_out * d_dy, axis=1)).to(grad_offset_ptr.dtype.element_ty), mask=q_ok)

        weighted = grad_out * weight[:, None]
        tl.atomic_add(grad_input_ptr + corner, weighted * (hy * hx)[:, None], mask=ok00, sem=ATOMIC_SEM)
        tl.atomic_add(grad_input_ptr + corner + channels, weighted * (hy * lx)[:, None], mask=ok01, sem=ATOMIC_SEM)
        tl.atomic_add(grad_input_ptr + corner + width * channels, weighted * (ly * hx)[:, None], mask=ok10,
                      sem=ATOMIC_SEM)
        tl.atomic_add(grad_input_ptr + corner + (width + 1) * channels, weighted * (ly * lx)[:, None], mask=ok11,
                      sem=ATOMIC_SEM)


# True when TRITON_INTERPRET was on when Triton decorated the kernels: they then run on the CPU through
# Triton's interpreter. Read from the kernel itself, which works across Triton versions.
INTERPRETED = type(dcnv3_forward_kernel).__name__ == 'InterpretedFunction'

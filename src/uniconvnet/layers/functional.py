"""Channels-last building blocks of the UniConvNet layers, and autograd functions that keep less for backward.

Training memory is mostly what autograd keeps for the backward pass. Where an element-wise op sits between two
tensors that are kept anyway, the functions here keep its input and recompute it in the backward pass (one
element-wise op) instead of keeping its output too:

    gelu_linear(h, W, b)          F.linear(GELU(h), W, b)         keeps h, not GELU(h)
    product_linear(a, b, W, c)    F.linear(a * b, W, c)           keeps a and b, not a * b
    depthwise_channels_last(x, W, b, gelu_first=True)             keeps x, not GELU(x)

Each takes the plain ops where no gradient is needed, under TorchScript, and under FX symbolic tracing; results
are the plain ops' to float rounding (``tests/layers/test_layers.py``). Under autocast the backward computes in
the dtype the forward's products ran in, as autocast's own backward does, and returns each gradient in its input's
dtype.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function

__all__ = ['block_diagonal', 'depthwise_channels_last', 'gelu_linear', 'is_fx_symbolic_tracing', 'leaves_cpu_autocast',
           'pointwise_channels_last', 'product_linear', 'scale_rows']

# torch >= 2.5 separates symbolic tracing from torch.export (is_fx_tracing is true for both, with a warning);
# looked up once here, not on every call
is_fx_symbolic_tracing = getattr(torch.fx._symbolic_trace, 'is_fx_symbolic_tracing',
                                 torch.fx._symbolic_trace.is_fx_tracing)


def leaves_cpu_autocast(x: torch.Tensor, work: int, float32_below: int) -> bool:
    """Whether a layer's forward of ``x`` turns CPU autocast off: autocast is on for the CPU, ``x`` is on the CPU,
    and the layer's matrix-product ``work`` (multiply-adds) is below ``float32_below``. Below that, bfloat16's costs
    per call (casts, oneDNN's set-up) outweigh its faster arithmetic. Symbolic tracing records the plain path."""
    # the size test last: under symbolic tracing ``work`` is a proxy, which cannot decide a branch
    return (not is_fx_symbolic_tracing() and torch.is_autocast_enabled('cpu') and x.device.type == 'cpu'
            and work < float32_below)


def _needs_autograd(*tensors: torch.Tensor) -> bool:
    """Whether a call builds an autograd graph: then the memory-lean function runs, else the plain ops.

    A tracer that does not know timm's notrace list (torchvision's feature extractor reaches these inside a
    module's forward) must not branch on proxies: under FX symbolic tracing the traced graph is the plain ops.
    """
    return not is_fx_symbolic_tracing() and torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _gelu_nchw_view(x: torch.Tensor) -> torch.Tensor:
    """GELU of an NCHW view of channels-last memory, computed on the NHWC view: GELU's vectorised and scalar code
    paths round differently, and the official-parity margin is small enough for that to matter."""
    return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def scale_rows(weight: torch.Tensor, bias: Optional[torch.Tensor],
               scale: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``weight`` and ``bias`` of a layer whose output is multiplied by ``scale`` per channel (unchanged if None).

    A layer scale taken into the weights keeps nothing output-sized for its gradient, and saves a pass.
    """
    if scale is None:
        return weight, bias
    weight = weight * scale.reshape([-1] + [1] * (weight.dim() - 1))
    return weight, (bias * scale if bias is not None else None)


def pointwise_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A 1x1 convolution's ``weight`` and ``bias`` applied to an NHWC tensor: a matrix product over channels."""
    return F.linear(x, weight.flatten(1), bias)


class _GeluLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias):
        ctx.save_for_backward(hidden, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(hidden), weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight = ctx.saved_tensors
        dtype = grad_out.dtype  # the dtype the forward's matrix product ran in
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_hidden = torch.ops.aten.gelu_backward(grad_out @ weight.to(dtype), hidden).to(hidden.dtype)
        if ctx.needs_input_grad[1]:
            activated = F.gelu(hidden).to(dtype)  # recomputed
            grad_weight = (_rows(grad_out).t() @ _rows(activated)).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = _rows(grad_out).sum(0).to(weight.dtype)
        return grad_hidden, grad_weight, grad_bias


@register_notrace_function  # FX keeps it one call: its branch on requires_grad is not traceable
def gelu_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(F.gelu(hidden), weight, bias)``, keeping ``hidden`` but not its GELU for the backward pass."""
    if not torch.jit.is_scripting():  # TorchScript compiles only the plain ops
        if _needs_autograd(hidden, weight):
            return _GeluLinear.apply(hidden, weight, bias)
    return F.linear(F.gelu(hidden), weight, bias)


class _ProductLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, weight, bias):
        ctx.save_for_backward(a, b, weight)
        ctx.has_bias = bias is not None
        return F.linear(a * b, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        a, b, weight = ctx.saved_tensors
        dtype = grad_out.dtype
        grad_a = grad_b = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_product = grad_out @ weight.to(dtype)
            if ctx.needs_input_grad[0]:
                grad_a = (grad_product * b.to(dtype)).to(a.dtype)
            if ctx.needs_input_grad[1]:
                grad_b = (grad_product * a.to(dtype)).to(b.dtype)
        if ctx.needs_input_grad[2]:
            product = (a * b).to(dtype)  # recomputed
            grad_weight = (_rows(grad_out).t() @ _rows(product)).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = _rows(grad_out).sum(0).to(weight.dtype)
        return grad_a, grad_b, grad_weight, grad_bias


@register_notrace_function  # FX keeps it one call: its branch on requires_grad is not traceable
def product_linear(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(a * b, weight, bias)``, keeping ``a`` and ``b`` but not their product for the backward pass."""
    if not torch.jit.is_scripting():  # TorchScript compiles only the plain ops
        if _needs_autograd(a, b, weight):
            return _ProductLinear.apply(a, b, weight, bias)
    return F.linear(a * b, weight, bias)


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise convolution (stride 1, 'same' padding, odd kernel), optionally of ``GELU(x)``, keeping ``x``.

    oneDNN computes the weight gradient of a large depthwise kernel at a few GMAC/s. Here it is one more
    depthwise convolution: the padded input of every (image, channel) convolved with that plane's output
    gradient as the kernel gives the k x k gradient of the plane's weights, summed over images. The input
    gradient is the convolution of the output gradient with the flipped kernel.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, gelu_first):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.gelu_first = gelu_first
        return F.conv2d(_gelu_nchw_view(x) if gelu_first else x, weight, bias, padding=weight.shape[-1] // 2,
                        groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        channels, kernel = weight.shape[0], weight.shape[-1]
        pad = kernel // 2
        grad_x = grad_weight = grad_bias = None
        dtype = grad_out.dtype  # the dtype the forward's convolution ran in
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad_out, weight.to(dtype).flip(-1, -2), padding=pad, groups=channels)
            if ctx.gelu_first:
                grad_x = torch.ops.aten.gelu_backward(grad_x, x.to(dtype))
            grad_x = grad_x.to(x.dtype)
        if ctx.needs_input_grad[1]:
            n, _, height, width = x.shape
            planes = (_gelu_nchw_view(x) if ctx.gelu_first else x).to(dtype).reshape(1, n * channels, height, width)
            kernels = grad_out.reshape(n * channels, 1, height, width)
            grad_weight = F.conv2d(planes, kernels, padding=pad, groups=n * channels)
            grad_weight = grad_weight.view(n, channels, kernel, kernel).sum(0).unsqueeze(1).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum((0, 2, 3)).to(weight.dtype)
        return grad_x, grad_weight, grad_bias, None


@register_notrace_function  # FX keeps it one call: its branch on requires_grad is not traceable
def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   gelu_first: bool = False) -> torch.Tensor:
    """``F.conv2d(GELU(x) if gelu_first else x, weight, bias, padding=k // 2, groups=C)`` for an odd k.

    With gradients, through :class:`_DepthwiseConv` where it saves time (k >= 7: the weight gradient) or memory
    (``gelu_first``: ``GELU(x)`` is not kept).
    """
    if not torch.jit.is_scripting():  # TorchScript compiles only the plain ops
        if _needs_autograd(x, weight) and (gelu_first or weight.shape[-1] >= 7):  # no shape test under FX
            return _DepthwiseConv.apply(x, weight, bias, gelu_first)
    x = _gelu_nchw_view(x) if gelu_first else x
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])


def depthwise_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                            gelu_first: bool = False) -> torch.Tensor:
    """:func:`depthwise_conv` of an NHWC tensor, through the NCHW view of its memory (no copies)."""
    return depthwise_conv(x.permute(0, 3, 1, 2), weight, bias, gelu_first).permute(0, 2, 3, 1)


def block_diagonal(blocks: List[torch.Tensor]) -> torch.Tensor:
    """``torch.block_diag`` of square matrices, written with padding and concatenation, which ONNX export knows."""
    total = sum(b.shape[1] for b in blocks)
    rows: List[torch.Tensor] = []
    start = 0
    for b in blocks:
        rows.append(F.pad(b, (start, total - start - b.shape[1])))
        start += b.shape[1]
    return torch.cat(rows)

"""UniConvNet's DCNv3 layer: InternImage's deformable convolution, modified.

Differences from InternImage's ``DCNv3``, as in the official UniConvNet code:
  * the offset/mask branch is a plain depthwise conv (no LayerNorm, no GELU after it);
  * the mask is used raw (no softmax over the kernel points).
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._deprecation import warn_deprecated
from ..ops import dcnv3
from ..ops.dcn import check_backend_name
from .checks import check_layout
from .functional import leaves_cpu_autocast, scale_rows

__all__ = ['DCNv3', 'dcn_backend', 'set_dcn_backend', 'using_dcn_backend']


class DCNv3(nn.Module):
    """Deformable convolution v3 over a channels-last ``(N, H, W, C)`` tensor.

    Args:
        channels: input and output channels; must be divisible by ``group``.
        kernel_size: sampling kernel (``kernel_size x kernel_size`` points per group).
        stride, pad, dilation: as for a convolution.
        group: groups; each group of ``channels // group`` channels shares offsets and mask.
        offset_scale: scale of the kernel grid and offsets.
        dw_kernel_size: kernel of the depthwise conv feeding the offset/mask heads (default ``kernel_size``).
        backend: the sampling backend: ``'auto'`` or a registered name (``uniconvnet.ops.backend_names()``,
            described by ``uniconvnet.ops.describe_backends()``); None: the user's default
            (``UNICONVNET_DCN_BACKEND``, else ``'auto'``). An attribute: change it with :func:`set_dcn_backend`
            or, for a block of code, :func:`using_dcn_backend`.
    """

    backend: Optional[str]

    # Under CPU autocast a DCNv3 whose projections do fewer multiply-adds than this (pixels x channels^2, the same
    # for every stage of a variant) computes in float32. On a 2-core AVX512-BF16 CPU at batch 1 the DCN branches of
    # A (1.8 M) ran 1.03-1.15x the float32 time in bfloat16, those of N0 (7.2 M) and T (12.8 M) 0.72-0.98x
    # (`benchmarks/eager_cpu.py --branches`). An attribute: 0 follows autocast always.
    autocast_float32_below: int = 4_000_000

    def __init__(
            self,
            channels: int = 64,
            kernel_size: int = 3,
            stride: int = 1,
            pad: int = 1,
            dilation: int = 1,
            group: int = 4,
            offset_scale: float = 1.0,
            dw_kernel_size: Optional[int] = None,
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if group < 1 or channels % group != 0:
            raise ValueError(f'DCNv3: channels={channels} is not divisible by group={group}; '
                             f'choose a group count that divides the channels (group width = channels // group)')
        dw_kernel_size = kernel_size if dw_kernel_size is None else dw_kernel_size
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.pad = pad
        self.dilation = dilation
        self.group = group
        self.group_channels = channels // group
        self.offset_scale = offset_scale
        self.backend = check_backend_name(backend)
        num_points = kernel_size * kernel_size

        self.dw_conv = nn.Conv2d(channels, channels, dw_kernel_size, padding=(dw_kernel_size - 1) // 2,
                                 groups=channels, **dd)
        self.offset = nn.Linear(channels, group * num_points * 2, **dd)
        self.mask = nn.Linear(channels, group * num_points, **dd)
        self.input_proj = nn.Linear(channels, channels, **dd)
        self.output_proj = nn.Linear(channels, channels, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets and mask start at zero; projections are Xavier-uniform with zero bias (as upstream)."""
        for m in (self.offset, self.mask):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        for m in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, output_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: ``(N, H, W, C)``. ``output_scale``: a per-channel scale of the output (a layer scale after this
        layer), applied to the output projection's weights, so that the output need not be kept for its gradient.

        Under CPU autocast, a layer with less projection work than :attr:`autocast_float32_below` computes in its
        weights' dtype with autocast off and returns the input's dtype.
        """
        x = check_layout('DCNv3', x, self.channels, channels_last=True)
        if not torch.jit.is_scripting():  # TorchScript: no autocast
            if self.leaves_autocast(x):
                with torch.autocast('cpu', enabled=False):
                    return self.deform(x.to(self.input_proj.weight.dtype), output_scale).to(x.dtype)
        return self.deform(x, output_scale)

    def leaves_autocast(self, x: torch.Tensor) -> bool:
        """Whether a forward of ``x`` runs with CPU autocast off: it is on, and the work (pixels x ``channels``^2
        multiply-adds) is below :attr:`autocast_float32_below`."""
        return leaves_cpu_autocast(x, x.numel() * self.channels, self.autocast_float32_below)

    def deform(self, x: torch.Tensor, output_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The layer on ``x`` in the current precision settings; :meth:`forward` without its checks and its
        autocast rule."""
        value = self.input_proj(x)
        query = self.dw_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = dcnv3(
            value, self.offset(query), self.mask(query),
            kernel_size=(self.kernel_size, self.kernel_size),
            stride=(self.stride, self.stride),
            padding=(self.pad, self.pad),
            dilation=(self.dilation, self.dilation),
            group=self.group,
            offset_scale=self.offset_scale,
            backend=self.backend,
        )
        return F.linear(out, *scale_rows(self.output_proj.weight, self.output_proj.bias, output_scale))

    def extra_repr(self) -> str:
        backend = '' if self.backend is None else f', backend={self.backend!r}'
        return f'channels={self.channels}, kernel_size={self.kernel_size}, group={self.group}{backend}'


def set_dcn_backend(module: nn.Module, backend: Optional[str]) -> nn.Module:
    """Set the sampling backend of every :class:`DCNv3` layer in ``module`` (None: the user's default).

    Returns ``module``. Works for any model holding DCNv3 layers (a UniConvNet, a detector built on one).
    """
    backend = check_backend_name(backend)
    for layer in module.modules():
        if isinstance(layer, DCNv3):
            layer.backend = backend
    return module


@contextmanager
def using_dcn_backend(module: nn.Module, backend: Optional[str]) -> Iterator[nn.Module]:
    """Run a block of code with every DCNv3 layer of ``module`` on ``backend``; each layer's own setting after.

    Example: ``with using_dcn_backend(model, 'torch'): torch.onnx.export(model, ...)``.
    """
    previous: Dict[DCNv3, Optional[str]] = {m: m.backend for m in module.modules() if isinstance(m, DCNv3)}
    set_dcn_backend(module, backend)
    try:
        yield module
    finally:
        for layer, name in previous.items():
            layer.backend = name


def dcn_backend(module: nn.Module, backend: Optional[str]):
    """Deprecated name of :func:`using_dcn_backend` (``dcn_backend`` is also the model's keyword argument)."""
    warn_deprecated('uniconvnet.layers.dcn_backend', 'uniconvnet.layers.using_dcn_backend')
    return using_dcn_backend(module, backend)

"""The one entry point for DCNv3 sampling. Every caller uses :func:`dcnv3`; backends sit behind it.

Backends (``BACKENDS``):
  * ``torch``: the pure-PyTorch core (:mod:`.dcnv3_torch`), plain ATen ops. Any device and dtype; the
    reference the official-parity tests check; what TorchScript, FX and ONNX export see.
  * ``cpu``: the gather core for CPU tensors (:mod:`.dcnv3_cpu`), two ``torch.library`` custom ops (forward,
    backward); faster than ``torch`` on CPUs and equal to it up to float rounding.
  * ``numba``: numba kernels for CPU tensors (:mod:`.dcnv3_numba`, optional extra ``numba``), two
    ``torch.library`` custom ops compiled on first use; several times faster than ``cpu``. Where numba is
    missing, ``auto`` uses ``cpu``.
  * ``triton``: the Triton kernels as the ``uniconvnet::dcnv3_sample`` custom op (:mod:`.dcnv3_triton`),
    for CUDA tensors; ``torch.compile`` and ``torch.export`` keep it as one node.
  * ``export``: the ``torch`` core with its arithmetic arranged for OpenVINO (:mod:`.dcnv3_export`), plain ATen
    ops; what OpenVINO export uses. Any device and dtype; equal to ``torch`` up to float rounding.

Choice, first that applies: the ``backend`` argument (what a :class:`~uniconvnet.layers.DCNv3` layer passes:
its ``backend`` attribute, set with ``model.set_dcn_backend(...)`` or :func:`~uniconvnet.layers.dcn_backend`),
the user's default from the ``UNICONVNET_DCN_BACKEND`` environment variable (``auto``, ``torch``, ``cpu``,
``numba`` or ``triton``; read once, when this module is imported; library code never writes it), ``auto``.
``auto`` tries by device (``AUTO_BACKENDS_BY_DEVICE``: ``numba``, then ``cpu`` where the optional numba extra is
missing, for CPU tensors; ``triton`` for CUDA ones), then ``torch``; during ONNX export it always picks ``torch``
(plain operators). A backend asked for by name that cannot run raises;
one chosen by ``auto`` or the environment variable falls back to ``torch`` and says so in one log line, once
per reason.
"""
import logging
import os
from typing import Callable, Dict, Optional, Set, Tuple

import torch
from timm.layers import register_notrace_function

from .gather_backend import dcnv3_cpu
from .export_backend import dcnv3_export
from .numba_backend import dcnv3_numba, numba_unavailable_reason
from .geometry import dcnv3_output_size, dcnv3_torch
from .triton_backend import dcnv3_triton, triton_unavailable_reason

__all__ = ['BACKENDS', 'BACKEND_ENV_VAR', 'DEFAULT_BACKEND', 'check_backend_name', 'dcnv3', 'select_backend']

_logger = logging.getLogger(__name__)

BACKEND_ENV_VAR = 'UNICONVNET_DCN_BACKEND'
# The user's process-wide default, read once at import. None when the variable is unset or empty.
DEFAULT_BACKEND: Optional[str] = os.environ.get(BACKEND_ENV_VAR, '').strip().lower() or None


def _always_runs(input: torch.Tensor) -> Optional[str]:
    return None


def _cpu_unavailable_reason(input: torch.Tensor) -> Optional[str]:
    return None if input.device.type == 'cpu' else f'the cpu backend takes CPU tensors, got {input.device.type}'


# name -> (implementation, why it cannot take an input tensor or None). Implementations take the arguments
# of dcnv3 below, all positional, without the backend.
BACKENDS: Dict[str, Tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], Optional[str]]]] = {
    'torch': (dcnv3_torch, _always_runs),
    'cpu': (dcnv3_cpu, _cpu_unavailable_reason),
    'numba': (dcnv3_numba, numba_unavailable_reason),
    'triton': (dcnv3_triton, triton_unavailable_reason),
    'export': (dcnv3_export, _always_runs),
}
# what 'auto' tries on each device type, in order; then (and on every other device type) 'torch'
AUTO_BACKENDS_BY_DEVICE: Dict[str, Tuple[str, ...]] = {'cuda': ('triton',), 'cpu': ('numba', 'cpu')}

_reported_fallbacks: Set[Tuple[str, str]] = set()


def check_backend_name(backend: Optional[str], source: str = 'backend argument') -> Optional[str]:
    """``backend`` normalised (lower case; ``None`` stays ``None``), or a ValueError naming ``source``."""
    if backend is None:
        return None
    name = backend.strip().lower() or 'auto'
    if name != 'auto' and name not in BACKENDS:
        raise ValueError(f'unknown DCNv3 backend {backend!r} in the {source}; choose one of: auto, '
                         f'{", ".join(BACKENDS)}')
    return name


def _report_fallback(name: str, reason: str) -> None:
    if (name, reason) not in _reported_fallbacks:
        _reported_fallbacks.add((name, reason))
        _logger.warning('uniconvnet: DCNv3 falls back from %s to the PyTorch core: %s', name, reason)


def select_backend(input: torch.Tensor, backend: Optional[str] = None) -> str:
    """Name of the backend :func:`dcnv3` uses for ``input`` (its device and dtype); see the module docstring."""
    if backend is None:
        requested = check_backend_name(DEFAULT_BACKEND, f'{BACKEND_ENV_VAR} environment variable') or 'auto'
        forced = False  # the user's default falls back where it cannot run
    else:
        requested = check_backend_name(backend)
        forced = requested != 'auto'
    if requested == 'auto':
        if torch.onnx.is_in_onnx_export():
            return 'torch'  # ONNX needs plain operators (GridSample); custom ops would need plugins
        candidates = AUTO_BACKENDS_BY_DEVICE.get(input.device.type, ())
    else:
        candidates = (requested,)
    for name in candidates:
        reason = BACKENDS[name][1](input)
        if reason is None:
            return name
        if forced:
            raise ValueError(f'DCNv3 backend {name!r} cannot run here: {reason}. Use backend="torch" or "auto"')
    if candidates:
        _report_fallback(name, reason)
    return 'torch'


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
        backend: Optional[str] = None,
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
        backend: ``'auto'`` or a name in :data:`BACKENDS`; None: the user's default (``UNICONVNET_DCN_BACKEND``,
            else ``'auto'``).

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
    if torch.jit.is_scripting():  # TorchScript compiles only this branch: the plain-op core
        return dcnv3_torch(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)
    implementation = BACKENDS[select_backend(input, backend)][0]
    return implementation(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)

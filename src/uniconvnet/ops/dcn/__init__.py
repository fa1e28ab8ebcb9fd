"""DCNv3 sampling: the one entry point, :func:`dcnv3`, and the registry of backends behind it.

Every caller uses :func:`dcnv3` (``uniconvnet.ops.dcnv3``). The backends are :class:`Backend` objects in a
registry (:mod:`.registry`), one module each (``<name>_backend.py``, with a kernels module where it has one),
registering itself when imported by the import lines below; :func:`dcnv3` and :func:`select_backend` read only
the registry. :func:`describe_backends` lists them with what they take; :func:`backend_names` gives their names.
The reference, ``torch``, comes first; the backend formerly called ``cpu`` is ``gather``.

Shared pieces: :mod:`.geometry` (sampling positions, output size, sampling dtype) and :mod:`.customop` (a
backend's kernels as a differentiable ``torch.library`` custom op). Adding a backend is one module that calls
:func:`register` and one import line below; the conformance tests (``tests/ops/test_dcn_conformance.py``) then
check it against the reference.

Deployment forms are not backends: :mod:`.nchw` holds the same sampling on NCHW tensors in the layout of ONNX's
``DeformConv`` (and a ``GridSample`` fallback), which :mod:`uniconvnet.deploy` builds export graphs from; its
tests prove the mapping against :func:`dcnv3`.

The package is ``dcn``, not ``dcnv3``: ``uniconvnet.ops.dcnv3`` is the sampling function.

Choice, first that applies: the ``backend`` argument (what a :class:`~uniconvnet.layers.DCNv3` layer passes: its
``backend`` attribute, set with ``model.set_dcn_backend(...)`` or :func:`~uniconvnet.layers.using_dcn_backend`),
the user's default from the ``UNICONVNET_DCN_BACKEND`` environment variable (read once, when this package is
imported; library code never writes it), ``auto``. ``auto`` tries the backends of the input's device type
(:func:`auto_order`), then the reference; during ONNX export it always picks the reference (plain operators).
A backend asked for by name that cannot run raises; one chosen by ``auto`` or the environment variable falls back
to the reference and says so in one log line, once per reason.
"""
import logging
import os
from typing import Optional, Set, Tuple

import torch
from timm.layers import register_notrace_function

from .geometry import dcnv3_output_size
from .registry import (BACKENDS, REFERENCE_BACKEND, Backend, DCNForward, auto_order, backend_names,
                       check_backend_name, describe_backends, get_backend, register)
from .torch_backend import dcnv3_torch

# The built-in backends after the reference, each registering itself on import: the order of these lines is the
# registration order, in which names are listed and auto tries the backends of a device.
from . import numba_backend  # noqa: E402,F401  (isort: skip)
from . import gather_backend  # noqa: E402,F401  (isort: skip)
from . import triton_backend  # noqa: E402,F401  (isort: skip)
from . import export_backend  # noqa: E402,F401  (isort: skip)

__all__ = ['BACKENDS', 'BACKEND_ENV_VAR', 'DEFAULT_BACKEND', 'REFERENCE_BACKEND', 'Backend', 'DCNForward',
           'auto_order', 'backend_names', 'check_backend_name', 'dcnv3', 'describe_backends', 'get_backend',
           'register', 'select_backend']

_logger = logging.getLogger(__name__)

BACKEND_ENV_VAR = 'UNICONVNET_DCN_BACKEND'
# The user's process-wide default, read once at import. None when the variable is unset or empty.
DEFAULT_BACKEND: Optional[str] = os.environ.get(BACKEND_ENV_VAR, '').strip().lower() or None

_reported_fallbacks: Set[Tuple[str, str]] = set()


def _report_fallback(name: str, reason: str) -> None:
    if (name, reason) not in _reported_fallbacks:
        _reported_fallbacks.add((name, reason))
        _logger.warning('uniconvnet: DCNv3 falls back from %s to the PyTorch core: %s', name, reason)


def select_backend(input: torch.Tensor, backend: Optional[str] = None) -> str:
    """Name of the backend :func:`dcnv3` uses for ``input`` (its device and dtype); see the package docstring."""
    if backend is None:
        requested = check_backend_name(DEFAULT_BACKEND, f'{BACKEND_ENV_VAR} environment variable') or 'auto'
        forced = False  # the user's default falls back where it cannot run
    else:
        requested = check_backend_name(backend)
        forced = requested != 'auto'
    if requested == 'auto':
        if torch.onnx.is_in_onnx_export():
            return REFERENCE_BACKEND  # ONNX needs plain operators (GridSample); custom ops would need plugins
        candidates = auto_order(input.device.type)
    else:
        candidates = (requested,)
    for name in candidates:
        reason = BACKENDS[name].why_not(input)
        if reason is None:
            return name
        if forced:
            raise ValueError(f'DCNv3 backend {name!r} cannot run here: {reason}. '
                             f'Use backend="{REFERENCE_BACKEND}" or "auto"')
    if candidates:
        _report_fallback(name, reason)
    return REFERENCE_BACKEND


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
        backend: ``'auto'`` or a registered backend (:func:`backend_names`); None: the user's default
            (``UNICONVNET_DCN_BACKEND``, else ``'auto'``).

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
    forward = BACKENDS[select_backend(input, backend)].forward
    return forward(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)

"""The registry of DCNv3 sampling backends: what each one is, where it runs, and in which order ``auto`` tries them.

A backend is one :class:`Backend` object, registered once by its own module with :func:`register`. Everything
that lists or checks backends (the dispatcher, its error messages, the layers' and models' argument checks,
command-line choices, the conformance tests) reads this registry; nothing keeps a list of its own.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple
from types import MappingProxyType

import torch

from ..._deprecation import warn_deprecated
from .customop import SamplingOp

__all__ = ['BACKENDS', 'REFERENCE_BACKEND', 'Backend', 'DCNForward', 'auto_order', 'backend_names',
           'check_backend_name', 'describe_backends', 'get_backend', 'register']

# What every backend's forward takes, all positional and already checked by uniconvnet.ops.dcnv3:
# (input (N, H, W, C), offset (N, Ho, Wo, G * P * 2), mask (N, Ho, Wo, G * P), kernel_size, stride, padding,
#  dilation (each (h, w)), group, offset_scale) -> output (N, Ho, Wo, C) in the input's dtype.
DCNForward = Callable[..., torch.Tensor]

# The plain-PyTorch core: the reference every backend is tested against, the fallback where no other backend can
# run, and what TorchScript compiles.
REFERENCE_BACKEND = 'torch'


@dataclass(frozen=True)
class Backend:
    """One DCNv3 sampling backend.

    Args:
        name: lower-case name users pass (``backend='numba'``, ``UNICONVNET_DCN_BACKEND=numba``).
        forward: the sampling, with the arguments of :data:`DCNForward`.
        description: one line for users: what it is and what it needs.
        devices: device types (``'cpu'``, ``'cuda'``, ...) whose tensors it takes; None: any.
        dtypes: dtypes it takes; None: any.
        requires: what else it needs, checked after devices and dtypes: a function of the input returning why
            it cannot run (an optional package missing, say), or None when it can.
        auto_devices: device types on which ``auto`` tries it. On each device ``auto`` tries backends in
            registration order, then :data:`REFERENCE_BACKEND`.
        interpreted_devices: device types it also takes through an interpreter, for tests only (Triton's
            ``TRITON_INTERPRET=1`` on the CPU): slow, never tried by ``auto``; ``requires`` says whether the
            interpreter is on.
        differentiable: whether its forward has a backward (gradients of input, offset and mask).
        reference_locations: whether it samples at the reference's locations bit for bit (the official code's
            arithmetic), so that its float32 outputs differ from the reference's only by the order of the sums
            and a whole model stays within the official-parity tolerance. False for arithmetic reordered for
            speed: float32 stage outputs then move by about 1e-4; float64 shows it is the same function.
        aliases: deprecated names that still select it, with a warning naming ``name``.
        custom_op: the :class:`.customop.SamplingOp` behind ``forward``, where it is one: its ops are what
            ``torch.compile`` and ``torch.export`` graphs show, and what the tests check with ``opcheck``.
    """

    name: str
    forward: DCNForward
    description: str
    devices: Optional[Tuple[str, ...]] = None
    dtypes: Optional[Tuple[torch.dtype, ...]] = None
    requires: Optional[Callable[[torch.Tensor], Optional[str]]] = None
    auto_devices: Tuple[str, ...] = ()
    interpreted_devices: Tuple[str, ...] = ()
    differentiable: bool = True
    reference_locations: bool = True
    aliases: Tuple[str, ...] = ()
    custom_op: Optional[SamplingOp] = None

    def why_not(self, input: torch.Tensor) -> Optional[str]:
        """Why this backend cannot take ``input`` (its device and dtype), in words; None when it can."""
        if self.dtypes is not None and input.dtype not in self.dtypes:
            names = ', '.join(str(dtype).replace('torch.', '') for dtype in self.dtypes)
            return f'the {self.name} backend takes {names} tensors, got {str(input.dtype).replace("torch.", "")}'
        device = input.device.type
        if self.devices is not None and device not in self.devices + self.interpreted_devices:
            return f'the {self.name} backend takes {" or ".join(self.devices)} tensors, got {device} tensors'
        return None if self.requires is None else self.requires(input)


_registry: Dict[str, Backend] = {}
_aliases: Dict[str, str] = {}

BACKENDS: Mapping[str, Backend] = MappingProxyType(_registry)
"""Every registered backend by name, in registration order (a read-only view of the registry)."""


def register(backend: Backend) -> Backend:
    """Add ``backend`` to the registry and return it. Names and aliases are unique and lower case."""
    for name in (backend.name,) + backend.aliases:
        if name != name.strip().lower() or name in ('', 'auto'):
            raise ValueError(f'DCNv3 backend name {name!r}: use a lower-case word other than auto')
        if name in _registry or name in _aliases:
            raise ValueError(f'DCNv3 backend name {name!r} is already registered')
    _registry[backend.name] = backend
    _aliases.update((alias, backend.name) for alias in backend.aliases)
    return backend


def backend_names() -> Tuple[str, ...]:
    """Names of the registered backends, in registration order (without ``'auto'`` and deprecated aliases)."""
    return tuple(_registry)


def auto_order(device_type: str) -> Tuple[str, ...]:
    """The backends ``auto`` tries for tensors on ``device_type``, in order, before the reference core."""
    return tuple(name for name, backend in _registry.items() if device_type in backend.auto_devices)


def check_backend_name(backend: Optional[str], source: str = 'backend argument') -> Optional[str]:
    """``backend`` as a registered name or ``'auto'`` (lower case, spaces stripped; None stays None).

    A deprecated alias gives its backend's name and a warning, once per process; an unknown name a ValueError
    that names ``source`` (where the name came from) and every choice.
    """
    if backend is None:
        return None
    name = backend.strip().lower() or 'auto'
    if name in _aliases:
        warn_deprecated(f'the DCNv3 backend name {name!r}', f'{_aliases[name]!r}')
        return _aliases[name]
    if name != 'auto' and name not in _registry:
        raise ValueError(f'unknown DCNv3 backend {backend!r} in the {source}; choose one of: '
                         f'{", ".join(("auto",) + backend_names())}')
    return name


def get_backend(name: str) -> Backend:
    """The registered :class:`Backend` called ``name`` (or a deprecated alias of it)."""
    resolved = check_backend_name(name)
    if resolved == 'auto':
        raise ValueError("'auto' is a choice among backends, not a backend: use uniconvnet.ops.select_backend")
    return _registry[resolved]


def describe_backends() -> str:
    """One line per registered backend: name, devices and dtypes it takes, description. For docs and ``--help``."""
    def listed(values) -> str:
        return 'any' if values is None else ', '.join(str(v).replace('torch.', '') for v in values)
    rows = [(b.name, listed(b.devices), listed(b.dtypes), b.description) for b in _registry.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return '\n'.join(f'{name:<{widths[0]}}  {devices:<{widths[1]}}  {dtypes:<{widths[2]}}  {text}'
                     for name, devices, dtypes, text in rows)

"""The ``numba`` backend: DCNv3 sampling for CPUs as numba kernels, forward and backward, compiled on first use and
cached on disk; what ``auto`` picks for CPU tensors.

The kernels (:mod:`.numba_kernels`) walk the channels-last input directly: for each output pixel, group and kernel
point they compute the sampling coordinate, then add the four bilinear corners times the mask into the output
row; the backward recomputes the coordinates and, per (image, group), accumulates the gradients of the input (a
race-free scatter), the offsets and the mask. Nothing but the inputs is saved for the backward.

numba is optional (``pip install uniconvnet[numba]``): it is imported on the first call, never at
``import uniconvnet``; where it is missing or fails to import, the backend says why and ``auto`` uses the
``gather`` backend.

Threads: the kernels run on ``torch.get_num_threads()`` threads (at most numba's own limit,
``NUMBA_NUM_THREADS``), set for each call in numba's thread-local mask and restored after it. Every thread count
of the process is left as the caller set it: numba's OpenMP threading layer, when it starts (once per process,
on first use), sets the calling thread's OpenMP thread count to ``NUMBA_NUM_THREADS`` and the process's
OpenMP max-active-levels; PyTorch shares that OpenMP runtime, and its intra-op thread count is the calling
thread's OpenMP count. So this module starts numba's layer itself, once, and puts both settings back
(:func:`_start_numba_threads`).

Sampling coordinates are bit for bit the reference's (:func:`.geometry.sampling_locations`, then
:func:`.geometry.unnormalize`); the first use checks that against PyTorch on this machine. Only the order of the
weighted sums differs from the reference. Half and bfloat16 inputs are sampled in float32.
"""
import ctypes
import functools
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .customop import sampling_op
from .geometry import kernel_grid_locations, sampling_locations, unnormalize
from .registry import Backend, register

__all__ = ['dcnv3_numba']

# Filled on the first call: the kernel module, or why it cannot run; and the rounding of the last
# coordinate step that matches this machine's PyTorch. Plain module state, read by traced code.
_kernel_module = None
_unavailable: Optional[str] = None
_fused_rounding = True
_first_use = threading.Lock()


def _grid(out_h: int, out_w: int, padded_h: int, padded_w: int, kernel_size: Sequence[int],
          stride: Sequence[int], dilation: Sequence[int], group: int, offset_scale: float, dtype: torch.dtype
          ) -> Tuple[np.ndarray, np.ndarray]:
    """The reference's kernel grid locations, flat ``(Wo, G, P)`` and ``(Ho, G, P)``, as numpy arrays."""
    return _grid_cached(out_h, out_w, padded_h, padded_w, tuple(kernel_size), tuple(stride), tuple(dilation),
                        group, float(offset_scale), dtype)


@functools.lru_cache(maxsize=64)  # a model has a handful of geometries; computing one costs ~10 small ops
def _grid_cached(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation, group, offset_scale, dtype):
    base_x, base_y = kernel_grid_locations(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation,
                                           offset_scale, dtype, torch.device('cpu'))
    # repeated per group: the kernels then read the grid at the sample's own flat position
    return (base_x.expand(1, 1, out_w, group, -1).contiguous().view(-1).numpy(),
            base_y.expand(1, out_h, 1, group, -1).contiguous().view(-1).numpy())


def _coordinates_match(kernels, fused: bool) -> bool:
    """Whether the kernels' sampling coordinates equal PyTorch's, bit for bit, on a fixed random probe."""
    generator = torch.Generator().manual_seed(0)
    kernel_size, stride, dilation, group, offset_scale = (3, 3), (2, 1), (2, 1), 2, 0.7
    out_h, out_w, padded_h, padded_w = 11, 13, 25, 17
    for spread in (1.0, 40.0):
        offset = torch.randn(1, out_h, out_w, group * 18, generator=generator) * spread
        loc_x, loc_y = sampling_locations(offset, padded_h, padded_w, kernel_size, stride, dilation, group,
                                          offset_scale)
        base_x, base_y = _grid(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation, group,
                               offset_scale, offset.dtype)
        xs, ys = kernels.sampling_coordinates(offset.reshape(-1).numpy(), base_x, base_y,
                                              kernels.constants(offset_scale, padded_h, padded_w, np.float32),
                                              out_h, out_w, group, 9, fused)
        if not (np.array_equal(xs, unnormalize(loc_x, padded_w).reshape(-1).numpy())
                and np.array_equal(ys, unnormalize(loc_y, padded_h).reshape(-1).numpy())):
            return False
    return True


def _openmp_runtime() -> Optional[ctypes.CDLL]:
    """The OpenMP runtime in the process's global symbol scope (where numba's OpenMP layer finds it: PyTorch's),
    or None where there is none or it cannot be reached (Windows)."""
    try:
        runtime = ctypes.CDLL(None)
        runtime.omp_get_max_threads, runtime.omp_get_max_active_levels  # noqa: B018  (both exist?)
    except (AttributeError, OSError, TypeError):
        return None
    return runtime


def _start_numba_threads(numba) -> None:
    """Start numba's threading layer now, leaving every OpenMP and PyTorch thread setting as it was.

    numba starts its layer once per process, on first use; the OpenMP layer then calls
    ``omp_set_num_threads(NUMBA_NUM_THREADS)`` on the calling thread and raises the process's
    max-active-levels. Both calls reach the OpenMP runtime PyTorch loaded, whose thread count on the calling
    thread is PyTorch's intra-op thread count: after one forward pass, ``torch.get_num_threads()`` would read
    numba's default instead of the caller's setting. Other layers (tbb, workqueue) touch no OpenMP setting.
    """
    openmp = _openmp_runtime()
    threads = torch.get_num_threads()
    before = None if openmp is None else (openmp.omp_get_max_threads(), openmp.omp_get_max_active_levels())
    numba.get_num_threads()  # starts the threading layer (a no-op once started)
    if openmp is not None and (openmp.omp_get_max_threads(), openmp.omp_get_max_active_levels()) != before:
        openmp.omp_set_num_threads(before[0])
        openmp.omp_set_max_active_levels(before[1])
    if torch.get_num_threads() != threads:  # an OpenMP runtime not reachable above
        torch.set_num_threads(threads)


@torch.compiler.assume_constant_result  # traced code reads the answer; the import runs once, eagerly
def _kernels_unavailable() -> Optional[str]:
    """Why the kernels cannot run in this process (numba missing, or coordinates off), None when they can."""
    global _kernel_module, _unavailable, _fused_rounding
    with _first_use:
        if _kernel_module is None and _unavailable is None:
            try:
                from . import numba_kernels as kernels  # imports numba: only here, on first use
            except Exception as error:  # ImportError, or a numba built for another numpy failing at import
                _unavailable = f'numba does not import ({type(error).__name__}: {error}); pip install numba'
                return _unavailable
            _start_numba_threads(kernels.numba)
            for fused in (True, False):  # PyTorch's CPU kernels fuse the un-normalisation's multiply-add or not
                if _coordinates_match(kernels, fused):
                    _kernel_module, _fused_rounding = kernels, fused
                    return None
            _unavailable = "the numba kernels' sampling coordinates differ from PyTorch's on this machine"
    return _unavailable


def _numba_unavailable_reason(input: torch.Tensor) -> Optional[str]:
    return _kernels_unavailable()


def _run(kernel, *args) -> None:
    """Run a parallel kernel on the caller's thread budget: as many threads as PyTorch uses, at most numba's
    pool. numba's thread count is a thread-local mask (it touches no OpenMP setting): set, then restored."""
    numba = _kernel_module.numba
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        kernel(*args)
    finally:
        numba.set_num_threads(previous)


def _geometry(input, offset, kernel_size, stride, padding, dilation, group, offset_scale):
    """Kernel grid and constants (numpy arrays), and the sizes of input, padded input and output."""
    n, height, width, channels = input.shape
    out_h, out_w = offset.shape[1], offset.shape[2]
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    base_x, base_y = _grid(out_h, out_w, padded_h, padded_w, kernel_size, stride, dilation, group, offset_scale,
                           input.dtype)
    consts = _kernel_module.constants(offset_scale, padded_h, padded_w, base_x.dtype)
    return (base_x, base_y, consts), (n, height, width, out_h, out_w, channels // group,
                                      kernel_size[0] * kernel_size[1])


def _flat(tensor: torch.Tensor) -> np.ndarray:
    return tensor.contiguous().view(-1).numpy()


def _check_runnable(input: torch.Tensor) -> None:
    reason = BACKEND.why_not(input)
    if reason is not None:
        raise RuntimeError(f'uniconvnet::dcnv3_numba: {reason}; use dcnv3(..., backend="gather") for these tensors')


# The kernels of the custom ops (customop.sampling_op). Shapes are unchecked: uniconvnet.ops.dcnv3 checks them.

def _forward(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: List[int],
             stride: List[int], padding: List[int], dilation: List[int], group: int,
             offset_scale: float) -> torch.Tensor:
    _check_runnable(input)
    out = input.new_empty(input.shape[0], offset.shape[1], offset.shape[2], input.shape[3])
    if out.numel() == 0:
        return out
    arrays, (n, _, _, out_h, out_w, group_channels, num_points) = _geometry(
        input, offset, kernel_size, stride, padding, dilation, group, offset_scale)
    ring = _kernel_module.RING
    table = F.pad(input, (0, 0, padding[1] + ring, padding[1] + ring, padding[0] + ring, padding[0] + ring))
    _run(_kernel_module.forward, _flat(table), _flat(offset), _flat(mask), *arrays, out.view(-1).numpy(), n,
         out_h, out_w, group, group_channels, num_points, table.shape[1], table.shape[2], _fused_rounding)
    return out


def _backward(grad_out: torch.Tensor, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
              residuals: List[torch.Tensor], kernel_size: List[int], stride: List[int], padding: List[int],
              dilation: List[int], group: int, offset_scale: float, needs_input_grad: List[bool]
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of input, offset and mask; the kernel computes the input's only where it is asked for, and the
    offset's and mask's together."""
    _check_runnable(input)
    need_input, need_offset, need_mask = needs_input_grad
    need_offset_mask = need_offset or need_mask
    grad_input = torch.zeros_like(input) if need_input else input.new_empty(0)
    grad_offset = torch.zeros_like(offset) if need_offset_mask else offset.new_empty(0)
    grad_mask = torch.zeros_like(mask) if need_offset_mask else mask.new_empty(0)
    if grad_out.numel() > 0 and (need_input or need_offset_mask):
        arrays, (n, height, width, out_h, out_w, group_channels, num_points) = _geometry(
            input, offset, kernel_size, stride, padding, dilation, group, offset_scale)
        _run(_kernel_module.backward, _flat(grad_out), _flat(input), _flat(offset), _flat(mask), *arrays,
             grad_input.view(-1).numpy(), grad_offset.view(-1).numpy(), grad_mask.view(-1).numpy(), n, height,
             width, out_h, out_w, group, group_channels, num_points, padding[0], padding[1], _fused_rounding,
             need_input, need_offset_mask)
    return grad_input, grad_offset, grad_mask


_OP = sampling_op('uniconvnet::dcnv3_numba_forward', 'uniconvnet::dcnv3_numba_backward', _forward, _backward)


def dcnv3_numba(
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
    """DCNv3 sampling with the numba kernels; same arguments and result as :func:`.torch_backend.dcnv3_torch`.

    Half and bfloat16 inputs are sampled in float32, as in the reference. Not twice differentiable.
    """
    return _OP(input, offset, mask, kernel_size, stride, padding, dilation, group, offset_scale)


BACKEND = register(Backend(
    name='numba',
    forward=dcnv3_numba,
    description='numba kernels (extra numba, compiled on first use): the fastest CPU core',
    devices=('cpu',),
    dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    requires=_numba_unavailable_reason,
    auto_devices=('cpu',),
    custom_op=_OP,
))

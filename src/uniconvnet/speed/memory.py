"""Memory: this process's resident size and its peak, and the peak memory of a training step.

The one place that reads the kernel's counters (Linux ``/proc/self/status``: ``VmRSS`` now, ``VmHWM`` the peak;
``ru_maxrss`` elsewhere) and resets the peak (``/proc/self/clear_refs``). The ERF report, the benchmark and the
frontier tools and ``benchmarks/train_memory_cpu.py`` all measure through it.
"""
import multiprocessing
import re
import resource
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import torch

from .spec import ModelSpec, train_step_runner

__all__ = ['peak_rss_mb', 'reset_peak_rss', 'rss_mb', 'train_peak_memory_mb']

_STATUS = Path('/proc/self/status')


def _status_mb(field: str) -> Optional[float]:
    try:
        match = re.search(rf'^{field}:\s+(\d+)', _STATUS.read_text(), re.MULTILINE)
    except OSError:  # not Linux
        return None
    return int(match.group(1)) / 1024 if match else None


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux ``VmRSS``; the peak where that is not available)."""
    now = _status_mb('VmRSS')
    return peak_rss_mb() if now is None else now


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (since the last :func:`reset_peak_rss`), in MiB."""
    peak = _status_mb('VmHWM')
    if peak is not None:
        return peak
    kilobytes_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kilobytes_or_bytes / 1024 / (1024 if sys.platform == 'darwin' else 1)


def reset_peak_rss() -> None:
    """Make the peak resident size the current one (Linux), so that :func:`peak_rss_mb` measures from here."""
    try:
        Path('/proc/self/clear_refs').write_text('5')
    except OSError as e:
        raise OSError(f'cannot reset the peak resident size ({e}): peak memory of a step needs Linux') from None


def _train_peak_memory_worker(spec: ModelSpec, batch: int, image_size: int, threads: Optional[int],
                              device: str) -> float:
    if threads:
        torch.set_num_threads(threads)  # this worker process is ours alone
    if device == 'cuda':
        step = train_step_runner(spec.build(train=True, device=device), batch, image_size, device)
        step()  # gradients and optimizer state now exist
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated() / 2 ** 20
    start = rss_mb()
    step = train_step_runner(spec.build(train=True), batch, image_size)
    step()
    reset_peak_rss()
    step()
    return peak_rss_mb() - start


def train_peak_memory_mb(spec: ModelSpec, batch: int, image_size: int, threads: Optional[int] = None,
                         device: str = 'cpu') -> float:
    """Peak memory of a training step (MB), measured in a fresh process.

    On the CPU: resident memory at the peak of the second step, above the process's size before the model was
    built: weights, gradients, AdamW state, activations and allocator slack (Linux only: it resets the kernel's
    peak-RSS counter). On CUDA: the peak of ``torch.cuda.max_memory_allocated`` during the second step.
    """
    # a process pool whose worker may die (killed for memory) raises BrokenProcessPool instead of hanging
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
        return pool.submit(_train_peak_memory_worker, spec, batch, image_size, threads, device).result()

"""The host process's settings, kept as the caller set them.

Library code runs inside someone else's process: PyTorch's intra-op thread count, numba's thread count and the
environment belong to the caller. Some libraries we call change them (ultralytics writes ``OMP_NUM_THREADS`` and
other variables when imported, and sets PyTorch's thread count when it selects a CPU device), and a command with a
``--threads`` option sets PyTorch's count for its run. :func:`kept_host_settings` restores all of them on the way
out; :func:`torch_threads` sets PyTorch's count for a block and restores it.
"""
import contextlib
import os
import sys
from typing import Dict, Iterator, Optional

import torch

__all__ = ['check_threads', 'host_settings', 'kept_host_settings', 'torch_threads']


def check_threads(threads: Optional[int]) -> None:
    """``--threads``: at least 1, or None for torch's default (0 is an error, not a silent default)."""
    if threads is not None and threads < 1:
        raise ValueError(f'--threads must be at least 1, got {threads} (leave it out for torch\'s default, one thread '
                         f'per core)')


def host_settings() -> Dict[str, object]:
    """The settings :func:`kept_host_settings` restores: PyTorch's and (once imported) numba's thread counts and a
    copy of the environment."""
    settings: Dict[str, object] = {'torch threads': torch.get_num_threads(), 'environment': dict(os.environ)}
    numba = sys.modules.get('numba')
    if numba is not None and getattr(numba, 'get_num_threads', None) is not None:
        settings['numba threads'] = numba.get_num_threads()
    return settings


def _restore(settings: Dict[str, object]) -> None:
    if torch.get_num_threads() != settings['torch threads']:
        torch.set_num_threads(settings['torch threads'])
    if 'numba threads' in settings:
        numba = sys.modules['numba']
        if numba.get_num_threads() != settings['numba threads']:
            numba.set_num_threads(settings['numba threads'])
    environment = settings['environment']
    for name in [name for name in os.environ if name not in environment]:
        del os.environ[name]
    for name, value in environment.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@contextlib.contextmanager
def kept_host_settings() -> Iterator[None]:
    """Whatever the block does to PyTorch's or numba's thread count or to the environment is undone after it."""
    settings = host_settings()
    try:
        yield
    finally:
        _restore(settings)


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[int]:
    """PyTorch's intra-op thread count set to ``threads`` (None: left as it is) inside the block, restored after;
    yields the count in use. ``threads`` below 1 is refused (:func:`check_threads`)."""
    check_threads(threads)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)

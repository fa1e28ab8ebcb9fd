"""Deprecated names: one warning per old name and process, naming the new one.

A leaf module (it imports nothing of ours), so that every layer of the package can use it.
"""
import warnings
from typing import Set

__all__ = ['warn_deprecated']

_warned: Set[str] = set()


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn once per process (a ``FutureWarning``, shown by default) that ``old`` is deprecated: use ``new``.

    ``stacklevel`` 3 points at the caller of the function that calls this one. The caller's warning filters
    decide what is shown; nothing here changes them.
    """
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(f'{old} is deprecated: use {new}', FutureWarning, stacklevel=stacklevel)

"""Old names kept for one release: moved modules (the old module name becomes the new module itself) and renamed
functions and option values (a warning once, naming the new one)."""
import importlib
import sys
import warnings
from typing import Set

__all__ = ['moved_module', 'warn_deprecated']

_warned: Set[str] = set()


def moved_module(old: str, new: str) -> None:
    """Make ``import old`` give module ``new`` (the same object: every name, private ones too) and say so once.

    Called at the top of the old module's file, which holds nothing else. The warning points at the importer's line.
    """
    # stacklevel 3: past this function and the old module's body; the import machinery's frames are skipped
    warnings.warn(f'{old} moved to {new}; the old name will be removed in the next release', DeprecationWarning,
                  stacklevel=3)
    sys.modules[old] = importlib.import_module(new)


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """Say once per process that ``old`` is deprecated and ``new`` replaces it.

    A ``FutureWarning``: shown by default, also where the old name is a value (a backend name from a config or the
    environment) that the library checks deep inside, where a ``DeprecationWarning`` would be hidden.
    ``stacklevel`` 3 points at the caller of the function that calls this one. Filters stay as the caller set them.
    """
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(f'{old} is deprecated: use {new}', FutureWarning, stacklevel=stacklevel)

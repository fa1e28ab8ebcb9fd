"""Old import paths kept for one release after a move: the old module name becomes the new module itself."""
import importlib
import sys
import warnings

__all__ = ['moved_module']


def moved_module(old: str, new: str) -> None:
    """Make ``import old`` give module ``new`` (the same object: every name, private ones too) and say so once.

    Called at the top of the old module's file, which holds nothing else. The warning points at the importer's line.
    """
    # stacklevel 3: past this function and the old module's body; the import machinery's frames are skipped
    warnings.warn(f'{old} moved to {new}; the old name will be removed in the next release', DeprecationWarning,
                  stacklevel=3)
    sys.modules[old] = importlib.import_module(new)

"""Deprecated: moved to :mod:`uniconvnet.speed.complexity` (this name goes in the next release)."""
from .._deprecation import moved_module

moved_module(__name__, 'uniconvnet.speed.complexity')

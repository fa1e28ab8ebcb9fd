"""Moved to :mod:`uniconvnet.engine.classification` (evaluating and predicting are classification's, beside its
training)."""
from .._deprecation import moved_module

moved_module(__name__, 'uniconvnet.engine.classification')

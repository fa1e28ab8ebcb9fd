"""Moved to :mod:`uniconvnet.engine.classification` (evaluating and predicting are classification's, beside its
training); this module keeps the old import path working."""
from .classification import evaluate_checkpoint, predict

__all__ = ['evaluate_checkpoint', 'predict']

"""Semantic segmentation with segmentation_models_pytorch (optional extra ``detseg``): the UperNet builder
(``models``) and the segmentation task behind ``uniconvnet segment train|eval`` (``task``).

smp is imported when the builder runs, not on import.
"""
from .models import upernet_uniconvnet
from .task import SegmentationOptions, SegmentationTask, evaluate_segmentation, train_segmentation

__all__ = ['SegmentationOptions', 'SegmentationTask', 'evaluate_segmentation', 'train_segmentation',
           'upernet_uniconvnet']

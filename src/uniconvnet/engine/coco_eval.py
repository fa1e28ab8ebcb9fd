"""Moved to :mod:`uniconvnet.evaluation.coco`; kept until ``integrations.ultralytics`` imports it from there."""
from ..evaluation.coco import COCO_METRICS, coco_evaluate

__all__ = ['COCO_METRICS', 'coco_evaluate']

"""Task metrics shared by the engine and the integrations: COCO AP (pycocotools) and segmentation IoU.

It sits beside ``engine`` and ``integrations`` and imports neither, so both can use it without a cycle.
"""
from .coco import COCO_METRICS, coco_evaluate
from .segmentation import ConfusionMatrix

__all__ = ['COCO_METRICS', 'ConfusionMatrix', 'coco_evaluate']

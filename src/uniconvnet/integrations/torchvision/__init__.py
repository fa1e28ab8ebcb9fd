"""torchvision detection with UniConvNet backbones (optional extra ``detseg``): the FPN backbone and detector
builders (``models``), and the detection task behind ``uniconvnet detect train|eval`` (``task``).

torchvision is imported when a builder or the task runs, not on import.
"""
from .models import (DETECTORS, UniConvNetFPN, fasterrcnn_uniconvnet_fpn, maskrcnn_uniconvnet_fpn,
                     retinanet_uniconvnet_fpn, uniconvnet_fpn_backbone, uniconvnet_fpn_detector)
from .task import DetectionOptions, DetectionTask, build_detector, evaluate_detection, train_detection

__all__ = ['DETECTORS', 'DetectionOptions', 'DetectionTask', 'UniConvNetFPN', 'build_detector', 'evaluate_detection',
           'fasterrcnn_uniconvnet_fpn', 'maskrcnn_uniconvnet_fpn', 'retinanet_uniconvnet_fpn', 'train_detection',
           'uniconvnet_fpn_backbone', 'uniconvnet_fpn_detector']

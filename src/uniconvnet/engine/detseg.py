"""Moved: detection is :mod:`uniconvnet.integrations.torchvision`, segmentation :mod:`uniconvnet.integrations.smp`,
and what both share :mod:`uniconvnet.engine.dense`. This module keeps the old names importable.

Nothing in the package imports it (it would point the engine up at the integrations).
"""
import warnings

from ..integrations.smp.task import SegmentationTask, evaluate_segmentation, train_segmentation
from ..integrations.torchvision.models import DETECTORS
from ..integrations.torchvision.task import DetectionOptions as DetSegOptions
from ..integrations.torchvision.task import DetectionTask, build_detector, evaluate_detection, train_detection

# stacklevel 2: the importer's line (the import machinery's frames are skipped)
warnings.warn('uniconvnet.engine.detseg moved to uniconvnet.integrations.torchvision (detection) and '
              'uniconvnet.integrations.smp (segmentation); the old name will be removed in the next release',
              DeprecationWarning, stacklevel=2)

__all__ = ['DetectionTask', 'SegmentationTask', 'DetSegOptions', 'train_detection', 'train_segmentation',
           'evaluate_detection', 'evaluate_segmentation', 'build_detector', 'DETECTORS']

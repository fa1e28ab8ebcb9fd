"""Moved to :mod:`uniconvnet.integrations.ultralytics.task` (training and evaluation); this module keeps the old
import path working."""
from .task import (BUILTIN_IMGSZ, DEFAULT_DATA_ROOT, builtin_data, evaluate, load_model, to_coco_results, train,
                   training_recipe, val)

__all__ = ['BUILTIN_IMGSZ', 'DEFAULT_DATA_ROOT', 'builtin_data', 'evaluate', 'load_model', 'to_coco_results', 'train',
           'training_recipe', 'val']

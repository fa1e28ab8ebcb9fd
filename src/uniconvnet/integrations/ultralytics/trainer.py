"""``DetectionTrainer``: ultralytics' detection trainer that registers our blocks before it builds a model.

Why a trainer class: ultralytics' multi-GPU (DDP) training runs the trainer again in fresh processes, started from
a generated script that imports the trainer's class by its module (8.4: unpickles it with the model; 8.3:
``from MODULE import CLASS``, then builds the model from its YAML). A fresh process never ran the user's
``register()``; with this class the import brings our blocks (and their safe-loading entries), and every path
on which a trainer builds a model from a YAML (``get_model``: a new run, a resume, a DDP worker) registers the
parser extension first. :func:`uniconvnet.integrations.ultralytics.train` uses it; with ultralytics' own API
pass ``trainer=DetectionTrainer`` to ``YOLO.train``.
"""
from typing import Any

from ultralytics.models.yolo import detect

from .parser import register

__all__ = ['DetectionTrainer']


class DetectionTrainer(detect.DetectionTrainer):
    """ultralytics' ``DetectionTrainer`` whose models may hold ``RFABlock``, ``C3k2RFA`` and
    ``UniConvNetBackbone`` layers, in this process and in DDP workers alike."""

    def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True):
        register()
        return super().get_model(cfg=cfg, weights=weights, verbose=verbose)

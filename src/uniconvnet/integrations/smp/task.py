"""Semantic segmentation training and evaluation with smp's UperNet (``uniconvnet segment train|eval``).

Runs on the classification trainer's machinery like detection (see :mod:`uniconvnet.integrations.torchvision.task`).

Data layout (what :func:`~uniconvnet.data.small_objects.generate_small_objects` writes, and what ``--data DIR``
expects)::

    DIR/{train,val}/images/*.png|jpg     DIR/{train,val}/masks/<stem>.png (class ids)     DIR/classes.json
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data.detection import SegmentationFolderDataset
from ...engine.config import TrainConfig
from ...engine.dense import DenseOptions, EvalParts, evaluate_run, train_dense
from ...engine.run import RunParts
from ...engine.trainer import Task
from ...evaluation import ConfusionMatrix
from .models import upernet_uniconvnet

__all__ = ['SegmentationOptions', 'SegmentationTask', 'train_segmentation', 'evaluate_segmentation']

DECODER_CHANNELS = 128  # UperNet's width here (smp's default 256 costs more than the backbone on small inputs)


@dataclass
class SegmentationOptions(DenseOptions):
    """What segmentation adds to :class:`~uniconvnet.engine.TrainConfig` (the backbone, the class count)."""
    arch: str = 'upernet'


class SegmentationTask(Task):
    """Per-pixel cross-entropy; validation accumulates a confusion matrix (summed over processes)."""
    name = 'segmentation'
    main_metric = 'val_mIoU'

    def __init__(self, num_classes: int, class_names: List[str], meta: Dict[str, Any], ignore_index: int = 255):
        self.num_classes, self.class_names, self.meta, self.ignore_index = num_classes, class_names, meta, ignore_index
        self.sum_keys = tuple(f'cm{i}' for i in range(num_classes * num_classes))

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, masks = batch
        return F.cross_entropy(model(images).float(), masks, ignore_index=self.ignore_index)

    def evaluation_sums(self, model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
        images, masks = batch
        cm = ConfusionMatrix(self.num_classes, self.ignore_index)
        cm.update(masks.cpu(), model(images).argmax(1).cpu())
        return {k: v for k, v in zip(self.sum_keys, cm.matrix.flatten().double())}

    def summarize(self, sums: Dict[str, float]) -> Dict[str, float]:
        cm = ConfusionMatrix(self.num_classes, self.ignore_index)
        cm.matrix = torch.tensor([sums[k] for k in self.sum_keys], dtype=torch.float64).reshape(
            self.num_classes, self.num_classes).round().long()
        res = cm.compute()
        out = {'val_mIoU': res['mIoU'], 'val_pixel_acc': res['pixel_accuracy']}
        out.update({f'val_IoU_{name}': (v if v == v else float('nan'))
                    for name, v in zip(self.class_names, res['per_class_iou'])})
        return out

    def metadata(self) -> Dict[str, Any]:
        return dict(self.meta, label_names=self.class_names)


def train_segmentation(cfg: TrainConfig, opts: DenseOptions) -> Dict[str, Any]:
    """Train UperNet (``uniconvnet segment train``); mIoU and per-class IoU on the val split every epoch."""

    def build_parts(root: Path, log: Callable[[str], None]) -> RunParts:
        names_file = root / 'classes.json'
        names = json.loads(names_file.read_text()) if names_file.is_file() else None
        num_classes = opts.num_classes or (len(names) if names else None)
        if num_classes is None:
            raise ValueError(f'--num-classes is needed: {names_file} (a JSON list of class names, background '
                             f'first) does not exist')
        train_set = SegmentationFolderDataset(root / 'train' / 'images', root / 'train' / 'masks', num_classes,
                                              hflip=cfg.hflip > 0)
        val_set = SegmentationFolderDataset(root / 'val' / 'images', root / 'val' / 'masks', num_classes)
        model = upernet_uniconvnet(num_classes, opts.backbone, opts.backbone_weights, DECODER_CHANNELS,
                                   drop_path_rate=cfg.drop_path or 0.0, trunk_norm=opts.trunk_norm)
        meta = dict(task=SegmentationTask.name, arch=opts.arch, backbone=opts.backbone, trunk_norm=opts.trunk_norm,
                    num_classes=num_classes)
        task = SegmentationTask(num_classes, names or [str(i) for i in range(num_classes)], meta)
        return RunParts(model, task, train_set, val_set)

    return train_dense(cfg, opts, SegmentationTask.name, build_parts)


def _build_for_eval(meta: Dict[str, Any], root: Path) -> EvalParts:
    val_set = SegmentationFolderDataset(root / 'val' / 'images', root / 'val' / 'masks', meta['num_classes'])
    model = upernet_uniconvnet(meta['num_classes'], meta['backbone'], decoder_channels=DECODER_CHANNELS,
                               trunk_norm=meta.get('trunk_norm'))
    return model, SegmentationTask(meta['num_classes'], meta['label_names'], meta), val_set, None


def evaluate_segmentation(checkpoint: str, data: Optional[str] = None, batch_size: int = 8,
                          device: str = 'auto') -> Dict[str, float]:
    """mIoU, pixel accuracy and per-class IoU on ``DATA/val`` (``uniconvnet segment eval``)."""
    return evaluate_run(checkpoint, SegmentationTask.name, _build_for_eval, data, batch_size, device)

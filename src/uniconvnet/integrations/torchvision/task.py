"""Detection training and evaluation with torchvision detectors (``uniconvnet detect train|eval``).

The task plugs into :class:`~uniconvnet.engine.trainer.Trainer` through the :class:`~uniconvnet.engine.Task`
interface and runs through :func:`~uniconvnet.engine.run.run_training`, like classification, so it shares its
checkpointing (atomic ``last.pt``/``best.pt``, ``--resume``, Ctrl-C), progress, mixed precision, EMA, gradient
accumulation and clipping, NaN guard and ``torchrun`` support.

Data layout (what :func:`~uniconvnet.data.small_objects.generate_small_objects` writes, and what ``--data DIR``
expects)::

    DIR/{train,val}/images/*.png|jpg     DIR/{train,val}/annotations.json   (COCO)
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from ...data.detection import CocoDetectionDataset, detection_collate
from ...engine.config import TrainConfig
from ...engine.dense import DenseOptions, EvalParts, evaluate_run, train_dense
from ...engine.run import RunParts
from ...engine.trainer import Task
from ...evaluation import coco_evaluate
from .models import DETECTORS, uniconvnet_fpn_detector

__all__ = ['DetectionOptions', 'DetectionTask', 'build_detector', 'train_detection', 'evaluate_detection']


@dataclass
class DetectionOptions(DenseOptions):
    """What detection adds to :class:`~uniconvnet.engine.TrainConfig`."""
    arch: str = 'retinanet'                  # retinanet | fasterrcnn | maskrcnn
    trainable_stages: int = 4
    min_size: int = 128                      # detector input size (shorter side)
    fpn_channels: int = 256                  # FPN and detection-head width (torchvision's 256 by default)


def _gather(items: List[Any]) -> List[Any]:
    if dist.is_available() and dist.is_initialized():
        gathered: List[List[Any]] = [None] * dist.get_world_size()  # type: ignore[list-item]
        dist.all_gather_object(gathered, items)
        return [x for part in gathered for x in part]
    return items


class DetectionTask(Task):
    """torchvision detectors: the model returns its loss dict in train mode and detections in eval mode."""
    name = 'detection'
    main_metric = 'val_AP'
    sum_keys = ('count',)

    def __init__(self, coco_gt: Dict[str, Any], class_names: List[str], meta: Dict[str, Any]):
        self.coco_gt, self.class_names, self.meta = coco_gt, class_names, meta
        self.categories = [c['id'] for c in coco_gt['categories']]
        self._results: List[Dict[str, Any]] = []

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, targets = batch
        losses = model(images, targets)
        return sum(losses.values())

    def evaluation_sums(self, model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
        images, targets = batch
        for out, target in zip(model(images), targets):
            boxes = out['boxes'].float().cpu()
            for box, score, label in zip(boxes, out['scores'].float().cpu(), out['labels'].cpu()):
                x1, y1, x2, y2 = box.tolist()
                self._results.append({'image_id': int(target['image_id']), 'category_id':
                                      self.categories[int(label) - 1], 'bbox': [x1, y1, x2 - x1, y2 - y1],
                                      'score': float(score)})
        return {'count': torch.tensor(float(len(images)))}

    def summarize(self, sums: Dict[str, float]) -> Dict[str, float]:
        results, self._results = _gather(self._results), []
        return {f'val_{k}': v for k, v in coco_evaluate(self.coco_gt, results).items()}

    def metadata(self) -> Dict[str, Any]:
        return dict(self.meta, label_names=self.class_names)


def build_detector(opts: DetectionOptions, num_classes: int, drop_path: float = 0.0) -> nn.Module:
    """A torchvision detector on a UniConvNet FPN; anchors sized for ``min_size`` inputs."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    if opts.arch not in DETECTORS:
        raise ValueError(f'unknown detector {opts.arch!r}; choose one of {", ".join(DETECTORS)}')
    common = dict(backbone_name=opts.backbone, backbone_weights=opts.backbone_weights,
                  trainable_stages=opts.trainable_stages, drop_path_rate=drop_path, fpn_channels=opts.fpn_channels,
                  trunk_norm=opts.trunk_norm, min_size=opts.min_size, max_size=opts.min_size)
    if opts.arch == 'retinanet':
        # levels at strides 8..128: anchors from 8 px, three scales per octave
        sizes = tuple((s, int(s * 1.26), int(s * 1.59)) for s in (8, 16, 32, 64, 128))
        return uniconvnet_fpn_detector('retinanet', num_classes, anchor_generator=AnchorGenerator(
            sizes, ((0.5, 1.0, 2.0),) * 5), **common)
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    # proposals and sampled RoIs sized for small inputs with tens of objects, not COCO's 800 px images: the
    # defaults (2000 proposals, 512 RoIs per image) make the box head most of a CPU step
    return uniconvnet_fpn_detector(opts.arch, num_classes, rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=1000,
                                   rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500,
                                   rpn_post_nms_top_n_test=300, box_batch_size_per_image=128, **common)


def _check_options(opts: DetectionOptions) -> None:
    """The detection options (the backbone's are checked with the trainer's settings)."""
    if opts.arch not in DETECTORS:
        raise ValueError(f'unknown detector {opts.arch!r}; choose one of {", ".join(DETECTORS)}')
    if not 0 <= opts.trainable_stages <= 4:
        raise ValueError(f'--trainable-stages must be between 0 and 4, got {opts.trainable_stages}')
    if opts.min_size < 32:
        raise ValueError(f'--min-size must be at least 32 (the backbone\'s last stage has stride 32), got '
                         f'{opts.min_size}')
    if opts.fpn_channels < 1:
        raise ValueError(f'--fpn-channels must be at least 1, got {opts.fpn_channels}')


def _meta(opts: DetectionOptions, num_classes: int) -> Dict[str, Any]:
    """What ``config.json`` records, enough to rebuild the detector for evaluation."""
    return dict(task=DetectionTask.name, arch=opts.arch, backbone=opts.backbone, min_size=opts.min_size,
                fpn_channels=opts.fpn_channels, trunk_norm=opts.trunk_norm, num_classes=num_classes)


def train_detection(cfg: TrainConfig, opts: DetectionOptions) -> Dict[str, Any]:
    """Train a detector (``uniconvnet detect train``); COCO AP on the val split every epoch."""
    _check_options(opts)

    def build_parts(root: Path, log: Callable[[str], None]) -> RunParts:
        train_set = CocoDetectionDataset(root / 'train' / 'images', root / 'train' / 'annotations.json',
                                         with_masks=opts.arch == 'maskrcnn', hflip=cfg.hflip > 0)
        val_set = CocoDetectionDataset(root / 'val' / 'images', root / 'val' / 'annotations.json',
                                       with_masks=opts.arch == 'maskrcnn')
        num_classes = (opts.num_classes or len(train_set.class_names)) + 1  # + background
        model = build_detector(opts, num_classes, cfg.drop_path or 0.0)
        task = DetectionTask(json.loads((root / 'val' / 'annotations.json').read_text()), train_set.class_names,
                             _meta(opts, num_classes))
        return RunParts(model, task, train_set, val_set, collate_fn=detection_collate)

    return train_dense(cfg, opts, 'detection', build_parts)


def _build_for_eval(meta: Dict[str, Any], root: Path) -> EvalParts:
    opts = DetectionOptions(arch=meta['arch'], backbone=meta['backbone'], min_size=meta['min_size'],
                            fpn_channels=meta.get('fpn_channels', 256), trunk_norm=meta.get('trunk_norm'))
    val_set = CocoDetectionDataset(root / 'val' / 'images', root / 'val' / 'annotations.json')
    task = DetectionTask(json.loads((root / 'val' / 'annotations.json').read_text()), meta['label_names'], meta)
    return build_detector(opts, meta['num_classes']), task, val_set, detection_collate


def evaluate_detection(checkpoint: str, data: Optional[str] = None, batch_size: int = 8,
                       device: str = 'auto') -> Dict[str, float]:
    """COCO AP, AP50, AP75, APs, APm, APl of a trained detector on ``DATA/val`` (``uniconvnet detect eval``)."""
    return evaluate_run(checkpoint, DetectionTask.name, _build_for_eval, data, batch_size, device)

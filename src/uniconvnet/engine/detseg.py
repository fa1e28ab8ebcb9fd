"""Detection and segmentation training on the classification trainer's machinery.

Both tasks plug into :class:`~uniconvnet.engine.trainer.Trainer` through the :class:`Task` interface and are set up
by :func:`~uniconvnet.engine.run.run_training`, like classification, so they share its checkpointing (atomic
``last.pt``/``best.pt``, ``--resume``, Ctrl-C), progress, mixed precision, EMA, gradient accumulation and clipping,
NaN guard and ``torchrun`` support: one piece of code, not a copy.

Data layout (what ``generate_small_objects`` writes, and what ``--data DIR`` expects)::

    DIR/{train,val}/images/*.png|jpg     DIR/{train,val}/annotations.json   (detection, COCO)
                                         DIR/{train,val}/masks/<stem>.png   (segmentation, class ids)
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoints import load_weights
from ..data.detection import CocoDetectionDataset, SegmentationFolderDataset, detection_collate
from ..data.loader import build_loader
from ..evaluation import ConfusionMatrix, coco_evaluate
from ..models import check_model_name
from .config import TrainConfig
from .distributed import DistributedContext, init_distributed
from .run import RunParts, check_settings, run_training
from .trainer import Task

__all__ = ['DetectionTask', 'SegmentationTask', 'DetSegOptions', 'train_detection', 'train_segmentation',
           'evaluate_detection', 'evaluate_segmentation', 'build_detector', 'DETECTORS']

DETECTORS = ('retinanet', 'fasterrcnn', 'maskrcnn')
DEFAULT_DATA = Path('runs') / 'data' / 'small_objects'


@dataclass
class DetSegOptions:
    """What detection/segmentation adds to :class:`TrainConfig`."""
    arch: str = 'retinanet'                  # retinanet | fasterrcnn | maskrcnn (detection); upernet (segmentation)
    backbone: str = 'uniconvnet_a'
    backbone_weights: Optional[str] = None
    trainable_stages: int = 4
    min_size: int = 128                      # detector input size (shorter side)
    fpn_channels: int = 256                  # FPN and detection-head width (torchvision's 256 by default)
    num_classes: Optional[int] = None        # default: from the data (+1 background for segmentation masks)


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


def build_detector(opts: DetSegOptions, num_classes: int, drop_path: float = 0.0) -> nn.Module:
    """A torchvision detector on a UniConvNet FPN; anchors sized for ``min_size`` inputs."""
    from ..integrations import torchvision as tv
    if opts.arch not in DETECTORS:
        raise ValueError(f'unknown detector {opts.arch!r}; choose one of {", ".join(DETECTORS)}')
    common = dict(num_classes=num_classes, backbone_name=opts.backbone, backbone_weights=opts.backbone_weights,
                  trainable_stages=opts.trainable_stages, drop_path_rate=drop_path, fpn_channels=opts.fpn_channels,
                  min_size=opts.min_size, max_size=opts.min_size)
    if opts.arch == 'retinanet':
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        # levels at strides 8..128: anchors from 8 px, three scales per octave
        sizes = tuple((s, int(s * 1.26), int(s * 1.59)) for s in (8, 16, 32, 64, 128))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
        return tv.retinanet_uniconvnet_fpn(anchor_generator=anchors, **common)
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    builder = tv.fasterrcnn_uniconvnet_fpn if opts.arch == 'fasterrcnn' else tv.maskrcnn_uniconvnet_fpn
    # proposals and sampled RoIs sized for small inputs with tens of objects, not COCO's 800 px images: the
    # defaults (2000 proposals, 512 RoIs per image) make the box head most of a CPU step
    return builder(rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
                   rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300, box_batch_size_per_image=128,
                   **common)


def _check_options(opts: DetSegOptions, data: Optional[str]) -> None:
    """The detection/segmentation options, checked before anything is built or written."""
    check_model_name(opts.backbone)
    if opts.arch not in DETECTORS + ('upernet',):
        raise ValueError(f'unknown architecture {opts.arch!r}; choose one of {", ".join(DETECTORS)} (detection) '
                         f'or upernet (segmentation)')
    if not 0 <= opts.trainable_stages <= 4:
        raise ValueError(f'--trainable-stages must be between 0 and 4, got {opts.trainable_stages}')
    if opts.min_size < 32:
        raise ValueError(f'--min-size must be at least 32 (the backbone\'s last stage has stride 32), got '
                         f'{opts.min_size}')
    if opts.fpn_channels < 1:
        raise ValueError(f'--fpn-channels must be at least 1, got {opts.fpn_channels}')
    if opts.num_classes is not None and opts.num_classes < 1:
        raise ValueError(f'--num-classes must be at least 1, got {opts.num_classes}')
    if opts.backbone_weights is not None and not Path(opts.backbone_weights).is_file():
        raise FileNotFoundError(f'--backbone-weights {opts.backbone_weights}: no such file')
    if data and not Path(data).is_dir():
        raise FileNotFoundError(f'data folder not found: {data}')


def _data_dirs(data: Optional[str], log) -> Path:
    if data:
        return Path(data)
    from ..data.small_objects import generate_small_objects
    generate_small_objects(DEFAULT_DATA)
    log(f'no --data: using the built-in small-object dataset in {DEFAULT_DATA}')
    return DEFAULT_DATA


def _detection_parts(cfg: TrainConfig, opts: DetSegOptions, root: Path, meta: Dict[str, Any]) -> RunParts:
    train_set = CocoDetectionDataset(root / 'train' / 'images', root / 'train' / 'annotations.json',
                                     with_masks=opts.arch == 'maskrcnn', hflip=cfg.hflip > 0)
    val_set = CocoDetectionDataset(root / 'val' / 'images', root / 'val' / 'annotations.json',
                                   with_masks=opts.arch == 'maskrcnn')
    num_classes = (opts.num_classes or len(train_set.class_names)) + 1  # + background
    model = build_detector(opts, num_classes, cfg.drop_path or 0.0)
    task = DetectionTask(json.loads((root / 'val' / 'annotations.json').read_text()), train_set.class_names,
                         dict(meta, num_classes=num_classes))
    return RunParts(model, task, train_set, val_set, collate_fn=detection_collate)


def _segmentation_parts(cfg: TrainConfig, opts: DetSegOptions, root: Path, meta: Dict[str, Any]) -> RunParts:
    from ..integrations.smp import upernet_uniconvnet
    names_file = root / 'classes.json'
    names = json.loads(names_file.read_text()) if names_file.is_file() else None
    num_classes = opts.num_classes or (len(names) if names else None)
    if num_classes is None:
        raise ValueError(f'--num-classes is needed: {names_file} (a JSON list of class names, background '
                         f'first) does not exist')
    train_set = SegmentationFolderDataset(root / 'train' / 'images', root / 'train' / 'masks', num_classes,
                                          hflip=cfg.hflip > 0)
    val_set = SegmentationFolderDataset(root / 'val' / 'images', root / 'val' / 'masks', num_classes)
    model = upernet_uniconvnet(num_classes, opts.backbone, opts.backbone_weights, decoder_channels=128,
                               drop_path_rate=cfg.drop_path or 0.0)
    task = SegmentationTask(num_classes, names or [str(i) for i in range(num_classes)],
                            dict(meta, num_classes=num_classes))
    return RunParts(model, task, train_set, val_set)


def _run(cfg: TrainConfig, opts: DetSegOptions, kind: str) -> Dict[str, Any]:
    check_settings(cfg)
    _check_options(opts, cfg.data)
    meta = dict(task=kind, arch=opts.arch, backbone=opts.backbone, min_size=opts.min_size,
                fpn_channels=opts.fpn_channels)
    build_parts = _detection_parts if kind == 'detection' else _segmentation_parts

    def setup(ctx: DistributedContext, log: Callable[[str], None]) -> RunParts:
        parts = build_parts(cfg, opts, _data_dirs(cfg.data, log), meta)
        parts.describe = lambda trainer: [
            f'{kind}: {opts.arch} on {opts.backbone}, {parts.task.meta["num_classes"]} classes, '
            f'{len(parts.train_set)} train / {len(parts.val_set)} val images; {trainer.lr_note}']
        return parts

    return run_training(cfg, Path(cfg.output or Path('runs') / f'{kind}-{opts.arch}-{opts.backbone}'), setup)


def train_detection(cfg: TrainConfig, opts: DetSegOptions) -> Dict[str, Any]:
    """Train a detector (``uniconvnet detect train``); COCO AP on the val split every epoch."""
    return _run(cfg, opts, 'detection')


def train_segmentation(cfg: TrainConfig, opts: DetSegOptions) -> Dict[str, Any]:
    """Train UperNet (``uniconvnet segment train``); mIoU and per-class IoU on the val split every epoch."""
    return _run(cfg, opts, 'segmentation')


def _load_for_eval(checkpoint: str):
    """The run's ``config.json`` and weights file: ``model.safetensors`` of a folder, or ``best.pt``/``last.pt``."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f'checkpoint not found: {checkpoint} (pass the output folder of `uniconvnet '
                                f'detect/segment train` or a checkpoint inside it)')
    folder = path if path.is_dir() else path.parent
    weights = folder / 'model.safetensors' if path.is_dir() else path
    config = folder / 'config.json'
    if not config.is_file():
        raise FileNotFoundError(f'{config} not found: pass the output folder of `uniconvnet detect/segment train` '
                                f'or a checkpoint inside it')
    return json.loads(config.read_text()), weights


def _evaluate(checkpoint: str, data: Optional[str], kind: str, batch_size: int, device: str) -> Dict[str, float]:
    from .trainer import evaluate_task
    if data and not Path(data).is_dir():
        raise FileNotFoundError(f'data folder not found: {data}')
    meta, weights = _load_for_eval(checkpoint)
    if meta.get('task') != kind:
        raise ValueError(f'{checkpoint} holds a {meta.get("task")} model, not a {kind} model')
    ctx = init_distributed(device)
    try:
        root = _data_dirs(data, print)
        opts = DetSegOptions(arch=meta['arch'], backbone=meta['backbone'], min_size=meta['min_size'],
                             fpn_channels=meta.get('fpn_channels', 256))
        names = meta['label_names']
        if kind == 'detection':
            val_set = CocoDetectionDataset(root / 'val' / 'images', root / 'val' / 'annotations.json')
            model = build_detector(opts, meta['num_classes'])
            task: Task = DetectionTask(json.loads((root / 'val' / 'annotations.json').read_text()), names, meta)
            collate = detection_collate
        else:
            from ..integrations.smp import upernet_uniconvnet
            val_set = SegmentationFolderDataset(root / 'val' / 'images', root / 'val' / 'masks', meta['num_classes'])
            model = upernet_uniconvnet(meta['num_classes'], opts.backbone, decoder_channels=128)
            task = SegmentationTask(meta['num_classes'], names, meta)
            collate = None
        load_weights(model, weights, source=f'{weights} (a {meta["arch"]} on {meta["backbone"]})')
        loader = build_loader(val_set, batch_size, is_training=False, collate_fn=collate,
                              world_size=ctx.world_size, rank=ctx.rank)
        return evaluate_task(task, model.to(ctx.device), loader, ctx)
    finally:
        ctx.close()


def evaluate_detection(checkpoint: str, data: Optional[str] = None, batch_size: int = 8,
                       device: str = 'auto') -> Dict[str, float]:
    """COCO AP, AP50, AP75, APs, APm, APl of a trained detector on ``DATA/val`` (``uniconvnet detect eval``)."""
    return _evaluate(checkpoint, data, 'detection', batch_size, device)


def evaluate_segmentation(checkpoint: str, data: Optional[str] = None, batch_size: int = 8,
                          device: str = 'auto') -> Dict[str, float]:
    """mIoU, pixel accuracy and per-class IoU on ``DATA/val`` (``uniconvnet segment eval``)."""
    return _evaluate(checkpoint, data, 'segmentation', batch_size, device)

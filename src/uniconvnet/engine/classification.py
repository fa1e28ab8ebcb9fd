"""Image classification: the task, the data, fine-tuning, :func:`train` (``uniconvnet train``), and, for a trained
checkpoint, :func:`evaluate_checkpoint` (``uniconvnet eval``) and :func:`predict` (``uniconvnet predict``)."""
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from PIL import Image
from torch.utils.data import Dataset

from ..checkpoints import load_weights
from ..data import (DIGITS_CLASSES, Augmentation, DigitsDataset, ImageFolderDataset, Preprocessing, build_loader,
                    build_transform, open_data_source)
from ..data.folder import CorruptImageError, find_split_folder, scan_class_folders
from ..models import check_model_name, create_model, is_uniconvnet
from ..models.uniconvnet import BRANCHES
from ..ops.dcn import check_backend_name
from .artifacts import load_trained_model, readable_class_names, write_model_config
from .config import TrainConfig
from .distributed import DistributedContext, resolve_device
from .model_card import classification_model_card
from ..host import torch_threads
from .run import RunParts, check_settings, run_training
from .trainer import Task, Trainer, evaluate_task

__all__ = ['ClassificationTask', 'augmentation_of', 'build_classification_model', 'build_datasets',
           'evaluate_checkpoint', 'load_finetune_weights', 'predict', 'train', 'uniconvnet_options']


class ClassificationTask(Task):
    """Cross-entropy training (with mixup/cutmix and label smoothing), top-1/top-5 validation."""
    name = 'classification'
    main_metric = 'val_top1'
    sum_keys = ('loss', 'top1', 'top5', 'count')

    def __init__(self, model_name: str, class_names: List[str], preprocessing: Preprocessing, mixup: float = 0.0,
                 cutmix: float = 0.0, mixup_prob: float = 1.0, mixup_switch_prob: float = 0.5,
                 smoothing: float = 0.0, tag: str = ''):
        self.model_name, self.class_names, self.preprocessing, self.tag = model_name, class_names, preprocessing, tag
        num_classes = len(class_names)
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            self.mixup = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=mixup_prob,
                               switch_prob=mixup_switch_prob, label_smoothing=smoothing, num_classes=num_classes)
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, targets = batch
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        return self.criterion(model(images), targets)

    def evaluation_sums(self, model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
        images, targets = batch
        logits = model(images).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(targets[:, None])
        return {'loss': F.cross_entropy(logits, targets, reduction='sum'), 'top1': top[:, 0].sum(),
                'top5': top.any(dim=1).sum(), 'count': torch.tensor(len(targets), device=logits.device)}

    def summarize(self, sums: Dict[str, float]) -> Dict[str, float]:
        n = max(sums['count'], 1.0)
        return {'val_loss': sums['loss'] / n, 'val_top1': 100.0 * sums['top1'] / n,
                'val_top5': 100.0 * sums['top5'] / n}

    def metadata(self) -> Dict[str, Any]:
        return {'architecture': self.model_name, 'label_names': list(self.class_names),
                'preprocessing': self.preprocessing.as_dict(), 'tag': self.tag}

    def write_config(self, model: nn.Module, path: Path) -> Path:
        """timm's ``config.json``: the output folder loads with ``timm.create_model('local-dir:...')``."""
        return write_model_config(model, path, self.metadata())

    def model_card(self, trainer: Trainer) -> Optional[str]:
        """The Hub model card: variant, data, recipe, results, curves, how to load with timm and transformers."""
        return classification_model_card(trainer, self.model_name, self.tag, self.class_names,
                                         list(self.preprocessing.input_size))


def build_datasets(data: Optional[str]) -> Tuple[Dataset, Dataset, List[str], str]:
    """``(train, val, class names, data name)``: the built-in digits when ``data`` is None, else a folder."""
    if data is None:
        return DigitsDataset('train'), DigitsDataset('val'), list(DIGITS_CLASSES), 'digits'
    train_set = ImageFolderDataset(data, 'train')
    val_set = ImageFolderDataset(data, 'val', classes=train_set.classes)
    return train_set, val_set, train_set.classes, Path(data).resolve().name


def augmentation_of(cfg: TrainConfig) -> Augmentation:
    """The training augmentation ``cfg`` asks for (its recipe's values and the user's flags)."""
    return Augmentation(scale=(cfg.scale_min, 1.0), hflip=cfg.hflip, color_jitter=cfg.color_jitter,
                        auto_augment=cfg.auto_augment, re_prob=cfg.reprob, no_aug=cfg.no_aug)


def load_finetune_weights(model: nn.Module, path: str, log: Callable[[str], None] = print) -> nn.Module:
    """Load weights to fine-tune from (official ``.pth`` or ours); a head of another class count is dropped.

    A checkpoint of another variant fails with a message naming the variant it is for.
    """
    load_weights(model, path, reset_head=True, source=f'--finetune {path}', log=log)
    log(f'fine-tuning from {path}')
    return model


def uniconvnet_options(cfg: TrainConfig) -> Dict[str, Any]:
    """The run's options of a UniConvNet model (``recompute``, ``dcn_backend``) as model keyword arguments, checked:
    one ValueError naming the flag and the values it takes."""
    if not is_uniconvnet(cfg.model):
        given = [flag for flag, value in (('--recompute', cfg.recompute), ('--dcn-backend', cfg.dcn_backend)) if value]
        if given:
            raise ValueError(f'{" and ".join(given)}: options of UniConvNet models, not of {cfg.model}')
        return {}
    recompute = tuple(name.strip() for name in cfg.recompute.split(',') if name.strip())
    unknown = [name for name in recompute if name not in BRANCHES]
    if unknown:
        raise ValueError(f'--recompute {cfg.recompute!r}: unknown branch {unknown[0]!r}; give a comma-separated list '
                         f'from {", ".join(BRANCHES)} (e.g. --recompute rfa,dcn)')
    dcn_backend = check_backend_name(cfg.dcn_backend, '--dcn-backend flag')  # the registry's names and aliases
    return dict(head_init_scale=cfg.head_init_scale, recompute=recompute, dcn_backend=dcn_backend)


def build_classification_model(cfg: TrainConfig, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
    """The model to train: ``cfg.model`` with the run's head, drop path and head init (and a UniConvNet's
    recomputation and DCN backend); fine-tune weights."""
    kwargs: Dict[str, Any] = dict(num_classes=num_classes, drop_path_rate=cfg.drop_path or 0.0,
                                  **uniconvnet_options(cfg))
    model = create_model(cfg.model, **kwargs)
    if cfg.finetune:
        load_finetune_weights(model, cfg.finetune, log)
    return model


def _check_config(cfg: TrainConfig) -> None:
    check_model_name(cfg.model)
    check_settings(cfg)
    uniconvnet_options(cfg)
    if cfg.image_size is not None and cfg.image_size < 1:
        raise ValueError(f'--image-size must be at least 1, got {cfg.image_size}')
    if (cfg.mixup > 0 or cfg.cutmix > 0) and cfg.batch_size % 2:
        raise ValueError(f'mixup/cutmix need an even --batch-size, got {cfg.batch_size} (or set --mixup 0 --cutmix 0)')
    if cfg.finetune and not Path(cfg.finetune).is_file():
        raise FileNotFoundError(f'--finetune {cfg.finetune}: no such file')


def train(cfg: TrainConfig) -> Dict[str, Any]:
    """Train (or fine-tune, or resume) a classifier as ``cfg`` says; what ``uniconvnet train`` runs.

    Works in one process or under ``torchrun`` (one process per GPU, or gloo on CPUs). Returns the per-epoch
    history, the best ``val_top1`` and the output folder.
    """
    _check_config(cfg)
    # shards and Hugging Face datasets: metadata now, the datasets once the process group is up (setup)
    source = open_data_source(cfg.data) if cfg.data else None
    if source is None:
        folder_sets = build_datasets(cfg.data)
        class_names, data_name = folder_sets[2], folder_sets[3]
    else:
        class_names, data_name = source.class_names, source.name
    num_classes = len(class_names)
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise ValueError(f'--num-classes {cfg.num_classes} (recipe {cfg.recipe}) but the data has '
                         f'{num_classes} classes; pass --num-classes {num_classes} or use data with '
                         f'{cfg.num_classes} classes')

    def setup(ctx: DistributedContext, log: Callable[[str], None]) -> RunParts:
        if source is None:
            train_set, val_set = folder_sets[:2]
        else:
            train_set, val_set = source.datasets(ctx.world_size, ctx.rank, cfg.batch_size, cfg.workers, cfg.seed,
                                                 log)
        model = build_classification_model(cfg, num_classes, log)
        pre = Preprocessing.from_model(model, image_size=cfg.image_size, crop_pct=cfg.crop_pct,
                                       interpolation=cfg.interpolation)
        train_set.transform = build_transform(pre, is_training=True, aug=augmentation_of(cfg))
        val_set.transform = build_transform(pre, is_training=False)
        task = ClassificationTask(cfg.model, class_names, pre, cfg.mixup, cfg.cutmix, cfg.mixup_prob,
                                  cfg.mixup_switch_prob, cfg.smoothing, tag=data_name)
        if cfg.amp == 'bf16' and ctx.device.type == 'cpu' and min(pre.input_size[1:]) < 32:
            log('warning: bf16 on CPU with inputs under 32x32 gives 1x1 feature maps, for which PyTorch\'s bf16 '
                'convolution computes wrong weight gradients (docs/training.md, known issues); use --amp fp16 or none')
        params = sum(p.numel() for p in model.parameters())
        per_process = ' per process and epoch (streamed)' if source is not None and source.streams else ''

        def describe(trainer: Trainer) -> List[str]:
            return [
                f'{cfg.model} ({params / 1e6:.2f}M parameters), {num_classes} classes, data {data_name}: '
                f'{len(train_set)} train / {len(val_set)} val images{per_process} at '
                f'{pre.input_size[1]}x{pre.input_size[2]}',
                f'recipe {cfg.recipe}: {cfg.epochs} epochs ({cfg.warmup_epochs:g} warm-up), {cfg.opt}, weight decay '
                f'{cfg.weight_decay:g}, layer decay {cfg.layer_decay}, drop path {cfg.drop_path or 0:g}, mixup '
                f'{cfg.mixup:g}, cutmix {cfg.cutmix:g}, smoothing {cfg.smoothing:g}, EMA {cfg.ema_decay:g}, '
                f'auto-augment {cfg.auto_augment or "off"}, random erasing {cfg.reprob:g}',
                f'{trainer.lr_note}; {trainer.updates_per_epoch} updates per epoch on {ctx.device} x {ctx.world_size}'
            ] + ([f'recomputed in the backward pass: {cfg.recompute or "nothing"}; DCNv3 backend '
                  f'{cfg.dcn_backend or "the default"}'] if cfg.recompute or cfg.dcn_backend else [])

        # no gradients to keep: twice the batch fits, and halves the per-step overhead of validation
        return RunParts(model, task, train_set, val_set, val_batch_size=2 * cfg.batch_size, describe=describe)

    output = Path(cfg.output or Path('runs') / f'{cfg.model.split(".", 1)[0]}-{data_name}')
    return run_training(cfg, output, setup)


def _val_dataset(data: Optional[str], class_names: List[str], num_classes: int):
    """The validation split, with class indices that agree with the checkpoint's head."""
    if data is None:
        dataset = DigitsDataset('val')
        folder_classes, where = dataset.classes, 'the built-in digits'
    else:
        folder_classes, where = scan_class_folders(find_split_folder(data, 'val')), f'{data}/val'
    if set(folder_classes) <= set(class_names):
        classes = class_names  # same names as in training: map by name
    elif len(folder_classes) == num_classes:
        classes = folder_classes  # e.g. ImageNet synset folders for an official checkpoint: sorted order
    else:
        raise ValueError(f'the checkpoint has a {num_classes}-class head but {where} has {len(folder_classes)} '
                         f'classes ({", ".join(folder_classes[:5])}...); evaluate it on data with its classes')
    if data is None:
        if classes != dataset.classes:
            raise ValueError(f'the checkpoint\'s classes {classes[:10]} are not the digits 0-9')
        return dataset
    return ImageFolderDataset(data, 'val', classes=classes)


@torch.no_grad()
def evaluate_checkpoint(checkpoint: Union[str, Path], model: Optional[str] = None, data: Optional[str] = None,
                        batch_size: int = 64, workers: int = 0, device: str = 'auto',
                        image_size: Optional[int] = None, crop_pct: Optional[float] = None,
                        interpolation: Optional[str] = None, threads: Optional[int] = None) -> Dict[str, float]:
    """Top-1, top-5 (%), mean loss and images/s of a checkpoint on a validation split.

    Preprocessing comes from the checkpoint's ``config.json`` (ours) or the model's pretrained cfg, unless
    ``image_size``, ``crop_pct`` or ``interpolation`` say otherwise. Without ``data``: the built-in digits.
    ``threads`` sets torch's CPU threads for the evaluation (default: as they are; restored after it).
    """
    with torch_threads(threads):
        net, info = load_trained_model(checkpoint, model)
        pre = info.preprocessing.replace(image_size=image_size, crop_pct=crop_pct, interpolation=interpolation)
        dataset = _val_dataset(data, info.class_names, info.num_classes)
        dataset.transform = build_transform(pre, is_training=False)
        loader = build_loader(dataset, batch_size, is_training=False, num_workers=workers)
        ctx = DistributedContext(device=resolve_device(device))
        net.to(ctx.device)
        task = ClassificationTask(info.architecture, info.class_names, pre)
        start = time.perf_counter()
        metrics = evaluate_task(task, net, loader, ctx)
        seconds = time.perf_counter() - start
        return {'top1': metrics['val_top1'], 'top5': metrics['val_top5'], 'loss': metrics['val_loss'],
                'images': len(dataset), 'images_per_s': len(dataset) / seconds}


@torch.no_grad()
def predict(images: Sequence[Union[str, Path]], checkpoint: Union[str, Path], model: Optional[str] = None,
            topk: int = 5, device: str = 'auto', threads: Optional[int] = None) -> List[List[Tuple[str, float]]]:
    """For each image file, the ``topk`` (class name, probability) pairs, most likely first."""
    with torch_threads(threads):
        if topk < 1:
            raise ValueError(f'--topk must be at least 1, got {topk}')
        for path in images:
            if Path(path).is_dir():
                raise ValueError(f'{path} is a folder: predict takes image files (e.g. {Path(path) / "*.jpg"}); '
                                 f'`uniconvnet eval --data` scores a folder of labelled images')
            if not Path(path).is_file():
                raise FileNotFoundError(f'image not found: {path}')
        net, info = load_trained_model(checkpoint, model)
        dev = resolve_device(device)
        net.to(dev)
        transform = build_transform(info.preprocessing, is_training=False)
        names = readable_class_names(info.class_names)
        results = []
        for path in images:
            try:
                with Image.open(path) as img:
                    x = transform(img.convert('RGB')).unsqueeze(0).to(dev)
            except (OSError, ValueError) as e:
                raise CorruptImageError(f'cannot read image {path} ({type(e).__name__}: {e})') from e
            probs = net(x).float().softmax(dim=1)[0]
            values, indices = probs.topk(min(topk, probs.numel()))
            results.append([(names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())])
        return results

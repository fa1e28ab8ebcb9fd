"""Evaluate a checkpoint on a validation set, and predict the classes of image files."""
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image

from ..data import DigitsDataset, ImageFolderDataset, build_loader, build_transform
from ..data.folder import CorruptImageError, find_split_folder, scan_class_folders
from .artifacts import load_trained_model, readable_class_names
from .classification import ClassificationTask
from .distributed import DistributedContext, resolve_device
from .trainer import evaluate_task

__all__ = ['evaluate_checkpoint', 'predict']


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
    ``threads`` sets torch's CPU threads (default: torch's).
    """
    if threads:
        torch.set_num_threads(threads)
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
    if threads:
        torch.set_num_threads(threads)
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

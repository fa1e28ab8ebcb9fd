"""Datasets for detection (COCO json + image folder) and semantic segmentation (image and mask folders).

Bad data is handled at the boundary, and nothing is dropped silently:
  * a COCO json naming images that are not in the folder: error, with the count and the first names;
  * boxes reaching outside the image: clipped to it, counted; boxes of zero width or height (after clipping):
    dropped, counted; the counts are logged once when the dataset is built and kept in ``.report``;
  * segmentation masks with class ids outside ``[0, num_classes)`` (other than ``ignore_index``): error naming
    the file and the ids.
"""
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ['CocoDetectionDataset', 'SegmentationFolderDataset', 'detection_collate']

_logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


def _load_rgb(path: Path) -> torch.Tensor:
    from PIL import Image
    with Image.open(path) as img:
        return torch.from_numpy(np.asarray(img.convert('RGB'), dtype=np.uint8).copy()).permute(2, 0, 1)


class CocoDetectionDataset(Dataset):
    """Images with boxes (and instance masks) from a COCO json, as torchvision detection targets.

    Each item is ``(image, target)``: a float image in [0, 1] (C, H, W) and a dict with ``boxes`` (x1, y1, x2,
    y2), ``labels`` (COCO category ids mapped to 1..K in the json's order), ``image_id`` and, with
    ``with_masks``, ``masks`` (K, H, W) uint8.
    """

    def __init__(self, images: Union[str, Path], annotations: Union[str, Path], with_masks: bool = False,
                 hflip: bool = False):
        self.images_dir, ann_path = Path(images), Path(annotations)
        if not ann_path.is_file():
            raise FileNotFoundError(f'COCO annotation file not found: {ann_path}')
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f'image folder not found: {self.images_dir}')
        coco = json.loads(ann_path.read_text())
        for key in ('images', 'annotations', 'categories'):
            if key not in coco:
                raise ValueError(f'{ann_path} is not a COCO detection file: it has no "{key}" list')
        self.categories = [c['id'] for c in coco['categories']]
        self.class_names = [c['name'] for c in coco['categories']]
        self.label_of = {cat_id: i + 1 for i, cat_id in enumerate(self.categories)}
        self.images: List[Dict[str, Any]] = coco['images']
        missing = [im['file_name'] for im in self.images if not (self.images_dir / im['file_name']).is_file()]
        if missing:
            raise FileNotFoundError(f'{ann_path} names {len(missing)} images that are not in {self.images_dir}, '
                                    f'e.g. {missing[:3]}; fix the json or the folder')
        sizes = {im['id']: (im['height'], im['width']) for im in self.images}
        self.annotations: Dict[int, List[Dict[str, Any]]] = {im['id']: [] for im in self.images}
        self.report = dict(clipped=0, zero_size=0, unknown_category=0, unknown_image=0, kept=0)
        for ann in coco['annotations']:
            if ann['image_id'] not in sizes:
                self.report['unknown_image'] += 1
                continue
            if ann['category_id'] not in self.label_of:
                self.report['unknown_category'] += 1
                continue
            h, w = sizes[ann['image_id']]
            x, y, bw, bh = ann['bbox']
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
            if (x1, y1, x2, y2) != (x, y, x + bw, y + bh):
                self.report['clipped'] += 1
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                self.report['zero_size'] += 1
                continue
            self.annotations[ann['image_id']].append(dict(ann, box=[x1, y1, x2, y2]))
            self.report['kept'] += 1
        dropped = {k: v for k, v in self.report.items() if k != 'kept' and v}
        if dropped:
            _logger.warning('%s: kept %d boxes; %s', ann_path, self.report['kept'],
                            ', '.join(f'{v} {k.replace("_", " ")}' + (' (clipped to the image)' if k == 'clipped'
                                                                      else ' (dropped)') for k, v in dropped.items()))
        self.with_masks = with_masks
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        info = self.images[index]
        image = _load_rgb(self.images_dir / info['file_name']).float() / 255
        anns = self.annotations[info['id']]
        boxes = torch.tensor([a['box'] for a in anns], dtype=torch.float32).reshape(-1, 4)
        target = dict(boxes=boxes, labels=torch.tensor([self.label_of[a['category_id']] for a in anns],
                                                       dtype=torch.int64),
                      image_id=torch.tensor(info['id']))
        if self.with_masks:
            from pycocotools import mask as mask_utils
            h, w = image.shape[-2:]
            masks = []
            for a in anns:
                seg = a['segmentation']
                if isinstance(seg, list):  # polygons
                    seg = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                elif isinstance(seg.get('counts'), list):  # uncompressed RLE
                    seg = mask_utils.frPyObjects(seg, h, w)
                masks.append(torch.from_numpy(mask_utils.decode(seg)))
            target['masks'] = torch.stack(masks) if masks else torch.zeros((0, h, w), dtype=torch.uint8)
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
            w = image.shape[-1]
            target['boxes'] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            if 'masks' in target:
                target['masks'] = target['masks'].flip(-1)
        return image, target


def detection_collate(batch):
    """Detection batches are lists: images differ in size and targets in length."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class SegmentationFolderDataset(Dataset):
    """Pairs ``IMAGES/<stem>.<ext>`` with ``MASKS/<stem>.png`` (class id per pixel).

    Returns a float image in [0, 1] (C, H, W) and a long mask (H, W).
    """

    def __init__(self, images: Union[str, Path], masks: Union[str, Path], num_classes: int,
                 ignore_index: int = 255, hflip: bool = False, check: bool = True):
        self.images_dir, self.masks_dir = Path(images), Path(masks)
        for folder in (self.images_dir, self.masks_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f'folder not found: {folder}')
        self.images = sorted(p for p in self.images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.images:
            raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {self.images_dir}')
        without = [p.name for p in self.images if not (self.masks_dir / f'{p.stem}.png').is_file()]
        if without:
            raise FileNotFoundError(f'{len(without)} images have no mask {self.masks_dir}/<name>.png, '
                                    f'e.g. {without[:3]}')
        self.num_classes, self.ignore_index, self.hflip = num_classes, ignore_index, hflip
        if check:
            for p in self.images:
                self._mask(p)

    def _mask(self, image_path: Path) -> torch.Tensor:
        from PIL import Image
        path = self.masks_dir / f'{image_path.stem}.png'
        with Image.open(path) as m:
            mask = torch.from_numpy(np.asarray(m, dtype=np.int64).copy())
        bad = torch.unique(mask[(mask >= self.num_classes) & (mask != self.ignore_index)])
        if bad.numel():
            raise ValueError(f'mask {path} has class ids {bad.tolist()} outside 0..{self.num_classes - 1} '
                             f'(ignore index {self.ignore_index}); fix the mask or raise num_classes')
        return mask

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        path = self.images[index]
        image, mask = _load_rgb(path).float() / 255, self._mask(path)
        if self.hflip and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask

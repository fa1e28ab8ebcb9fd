"""A built-in small-object dataset, generated from real images that ship with scikit-learn.

The 1,797 handwritten-digit scans of ``sklearn.datasets.load_digits`` (8x8, 17 grey levels) are upsampled to
8-24 px and pasted, in random colours, onto 128x128 textured canvases. Every object gets a box, an instance
mask (the digit's strokes) and a class (the digit), and each canvas a semantic mask. Written as

    ROOT/{train,val}/images/NNNNN.png
    ROOT/{train,val}/annotations.json     COCO detection + instance segmentation (RLE), categories "0".."9"
    ROOT/{train,val}/masks/NNNNN.png      semantic masks: 0 background, 1 + digit for the strokes
    ROOT/classes.json                     the semantic class names, background first

Digits of the validation canvases are never used in training canvases (a seeded split of the scans).
Everything is deterministic for a given seed. By COCO's definition every object here is small (< 32x32).
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from ..io import atomic_save_image, atomic_write_text

__all__ = ['SmallObjectSplit', 'generate_small_objects', 'CLASS_NAMES']

CLASS_NAMES = [str(d) for d in range(10)]


@dataclass
class SmallObjectSplit:
    images: Path
    annotations: Path
    masks: Path


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth low-frequency colour noise plus a little grain: enough texture that boxes are not trivial."""
    coarse = rng.uniform(0.15, 0.55, size=(4, 4, 3))
    from PIL import Image
    up = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                    dtype=np.float32) / 255
    return np.clip(up + rng.normal(0, 0.03, size=up.shape), 0, 1)


def _render(digit: np.ndarray, side: int) -> np.ndarray:
    """An 8x8 scan (0..16) as a ``side`` x ``side`` alpha map in [0, 1]."""
    from PIL import Image
    img = Image.fromarray((digit / 16.0 * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255


def _place(rng: np.random.Generator, taken: List[Tuple[int, int, int, int]], side: int, size: int):
    for _ in range(50):
        x, y = int(rng.integers(0, size - side)), int(rng.integers(0, size - side))
        if all(x + side + 2 <= a or a + c + 2 <= x or y + side + 2 <= b or b + c + 2 <= y for a, b, c, _ in taken):
            return x, y
    return None


def _write_split(root: Path, digits: np.ndarray, labels: np.ndarray, num_images: int, image_size: int,
                 size_range: Tuple[int, int], max_objects: int, rng: np.random.Generator) -> SmallObjectSplit:
    from PIL import Image
    from pycocotools import mask as mask_utils

    images_dir, masks_dir = root / 'images', root / 'masks'
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    coco: Dict[str, list] = {
        'images': [], 'annotations': [],
        'categories': [{'id': i + 1, 'name': name, 'supercategory': 'digit'} for i, name in enumerate(CLASS_NAMES)],
    }
    ann_id = 1
    for image_id in range(1, num_images + 1):
        canvas = _background(rng, image_size)
        semantic = np.zeros((image_size, image_size), dtype=np.uint8)
        taken: List[Tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            side = int(rng.integers(size_range[0], size_range[1] + 1))
            spot = _place(rng, taken, side, image_size)
            if spot is None:
                continue
            x, y = spot
            index = int(rng.integers(0, len(digits)))
            alpha = _render(digits[index], side)
            strokes = alpha > 0.35
            if strokes.sum() < 4:
                continue
            colour = rng.uniform(0.65, 1.0, size=3) if rng.random() < 0.5 else rng.uniform(0.0, 0.1, size=3)
            region = canvas[y:y + side, x:x + side]
            canvas[y:y + side, x:x + side] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
            instance = np.zeros((image_size, image_size), dtype=np.uint8)
            instance[y:y + side, x:x + side] = strokes
            label = int(labels[index])
            semantic[instance > 0] = label + 1
            ys, xs = np.nonzero(instance)
            box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            rle = mask_utils.encode(np.asfortranarray(instance))
            rle['counts'] = rle['counts'].decode('ascii')
            coco['annotations'].append({
                'id': ann_id, 'image_id': image_id, 'category_id': label + 1, 'bbox': box,
                'area': float(instance.sum()), 'iscrowd': 0, 'segmentation': rle,
            })
            taken.append((x, y, side, label))
            ann_id += 1
        name = f'{image_id:05d}.png'
        atomic_save_image(Image.fromarray((canvas * 255).round().astype(np.uint8)), images_dir / name)
        atomic_save_image(Image.fromarray(semantic), masks_dir / name)
        coco['images'].append({'id': image_id, 'file_name': name, 'width': image_size, 'height': image_size})
    ann_path = root / 'annotations.json'
    atomic_write_text(ann_path, json.dumps(coco))
    return SmallObjectSplit(images_dir, ann_path, masks_dir)


def generate_small_objects(
        root: Union[str, Path],
        num_train: int = 400,
        num_val: int = 100,
        image_size: int = 128,
        size_range: Tuple[int, int] = (8, 24),
        max_objects: int = 6,
        seed: int = 0,
) -> Dict[str, SmallObjectSplit]:
    """Write the dataset under ``root`` (reusing it when it is already there with the same settings)."""
    from sklearn.datasets import load_digits

    root = Path(root)
    settings = dict(num_train=num_train, num_val=num_val, image_size=image_size, size_range=list(size_range),
                    max_objects=max_objects, seed=seed)
    stamp = root / 'settings.json'
    splits = {s: SmallObjectSplit(root / s / 'images', root / s / 'annotations.json', root / s / 'masks')
              for s in ('train', 'val')}
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return splits
    if not 4 <= size_range[0] <= size_range[1] < image_size:
        raise ValueError(f'size_range {size_range} must satisfy 4 <= min <= max < image_size={image_size}')
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    cut = int(0.8 * len(order))
    train_idx, val_idx = order[:cut], order[cut:]
    images = digits.images
    _write_split(root / 'train', images[train_idx], digits.target[train_idx], num_train, image_size, size_range,
                 max_objects, rng)
    _write_split(root / 'val', images[val_idx], digits.target[val_idx], num_val, image_size, size_range,
                 max_objects, rng)
    # class names for segmentation masks: id 0 is the background, 1 + digit the strokes
    atomic_write_text(root / 'classes.json', json.dumps(['background'] + CLASS_NAMES))
    atomic_write_text(stamp, json.dumps(settings))  # last: a folder without it is regenerated
    return splits

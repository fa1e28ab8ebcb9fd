"""The built-in dataset: scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes, no download).

Images are served as 8x8 RGB PIL images (the grey level replicated), so they go through the same timm
transforms as photos from a folder; the transform upsamples them to the training size. The train/val split
is fixed: stratified by class, seeded, 20% validation (1,437 train and 360 val images).
"""
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..io import atomic_save_image

__all__ = ['DIGITS_CLASSES', 'DigitsDataset', 'export_digits_folder']

DIGITS_CLASSES: List[str] = [str(i) for i in range(10)]
_SPLIT_SEED = 0
_VAL_FRACTION = 0.2


def _load_split(split: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 8, 8), labels int64 (N,))`` of one split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    if split not in ('train', 'val'):
        raise ValueError(f"digits split must be 'train' or 'val', got {split!r}")
    digits = load_digits()
    # scans are 0..16 grey levels: stretch to 0..255 so they look like ordinary 8-bit images
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=_VAL_FRACTION, random_state=_SPLIT_SEED, stratify=labels)
    idx = np.sort(train_idx if split == 'train' else val_idx)
    return images[idx], labels[idx]


class DigitsDataset(Dataset):
    """One split ('train' or 'val') of the digits, as ``(transform(PIL RGB image), label)`` pairs."""

    def __init__(self, split: str = 'train', transform: Optional[Callable] = None):
        self.split = split
        self.images, self.labels = _load_split(split)
        self.transform = transform
        self.classes = list(DIGITS_CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert('RGB')

    def __getitem__(self, index: int):
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])


def export_digits_folder(root: Union[str, Path], splits: Tuple[str, ...] = ('train', 'val'),
                         per_class: Optional[int] = None) -> Path:
    """Write the digits as an ImageNet-style folder (``root/train/3/0042.png`` ...) and return ``root``.

    ``per_class`` keeps only the first N images of each class (handy for small demos and tests).
    """
    root = Path(root)
    for split in splits:
        ds = DigitsDataset(split)
        counts = {c: 0 for c in DIGITS_CLASSES}
        for i in range(len(ds)):
            name = DIGITS_CLASSES[int(ds.labels[i])]
            if per_class is not None and counts[name] >= per_class:
                continue
            counts[name] += 1
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            atomic_save_image(ds.image(i), folder / f'{i:04d}.png')
    return root

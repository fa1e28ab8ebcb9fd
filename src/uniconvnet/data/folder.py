"""ImageNet-style folders: ``DIR/train/CLASS/*.jpg`` and ``DIR/val/CLASS/*.jpg``, through timm's dataset factory.

The layout is checked before anything is loaded, so that a wrong path or a badly laid out folder fails at once
with a message that names the folder and the fix (timm alone would silently drop an empty class and shift
every class index after it).

Corrupt images: training stops at the first file that cannot be decoded, naming it (:class:`CorruptImageError`).
We do not skip such files: skipping changes the dataset silently (timm substitutes the next sample) and a
corrupt file usually means a broken copy that the user wants to know about. Delete or replace the file and
resume with ``--resume auto``.
"""
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from PIL import Image
from timm.data import create_dataset
from timm.data.readers.img_extensions import get_img_extensions
from timm.utils.misc import natural_key
from torch.utils.data import Dataset

__all__ = ['CorruptImageError', 'ImageFolderDataset', 'find_split_folder', 'scan_class_folders']

_SPLIT_NAMES = {'train': ('train',), 'val': ('val', 'validation')}


class CorruptImageError(ValueError):
    """An image file that cannot be decoded. The message names the file."""


def _image_extensions() -> Sequence[str]:
    return get_img_extensions()


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in _image_extensions()


def _has_image(folder: Path) -> bool:
    """True as soon as one image is found below ``folder`` (stops early: cheap even for big classes)."""
    for _root, _dirs, files in os.walk(folder, followlinks=True):
        if any(_is_image(f) for f in files):
            return True
    return False


def find_split_folder(root: Union[str, Path], split: str) -> Path:
    """``root/train`` for 'train', ``root/val`` (or ``root/validation``) for 'val'; a clear error if absent."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f'data folder not found: {root} (expected {root}/train/CLASS/*.jpg and '
                                f'{root}/val/CLASS/*.jpg)')
    if not root.is_dir():
        raise FileNotFoundError(f'data path is not a folder: {root} (expected a folder with train/ and val/ inside)')
    for name in _SPLIT_NAMES[split]:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f'no {split} folder in {root}: expected {root}/{_SPLIT_NAMES[split][0]}/CLASS/*.jpg '
                            f'(found: {", ".join(sorted(p.name for p in root.iterdir())) or "nothing"})')


def scan_class_folders(split_dir: Union[str, Path]) -> List[str]:
    """Class names (sub-folder names, natural order) of ``split_dir``, after checking each holds an image."""
    split_dir = Path(split_dir)
    entries = [e for e in os.scandir(split_dir) if not e.name.startswith('.')]
    classes = sorted((e.name for e in entries if e.is_dir()), key=natural_key)
    if not classes:
        loose = sum(1 for e in entries if e.is_file() and _is_image(e.name))
        found = f'found {loose} images directly in it' if loose else 'it has no sub-folders'
        raise ValueError(f'no class subfolders in {split_dir} ({found}): put each class in its own folder, '
                         f'{split_dir}/CLASS_NAME/image.jpg')
    for name in classes:
        if not _has_image(split_dir / name):
            raise ValueError(f'class folder {split_dir / name} is empty (no {", ".join(_image_extensions())} '
                             f'files): add images to it or remove it')
    return classes


class ImageFolderDataset(Dataset):
    """One split of an ImageNet-style folder, as ``(transform(PIL RGB image), class index)`` pairs.

    Files and labels come from timm's folder reader (``timm.data.create_dataset``); class indices follow
    ``classes`` (by default the split's own sub-folders), so train and val agree on them.
    """

    def __init__(self, root: Union[str, Path], split: str = 'train', classes: Optional[Sequence[str]] = None,
                 transform: Optional[Callable] = None):
        self.root = find_split_folder(root, split)
        found = scan_class_folders(self.root)
        if classes is None:
            classes = found
        else:
            unknown = sorted(set(found) - set(classes), key=natural_key)
            if unknown:
                raise ValueError(f'{self.root} has classes that the training folder does not have: '
                                 f'{", ".join(unknown[:10])}; every {split} class must also be a train class')
        self.classes: List[str] = list(classes)
        class_to_idx: Dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        timm_dataset = create_dataset('', root=str(self.root), split=split, search_split=False,
                                      class_map=class_to_idx)
        self.samples = [(str(path), int(target)) for path, target in timm_dataset.reader.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        path = self.samples[index][0]
        try:
            with Image.open(path) as img:
                return img.convert('RGB')  # decodes the pixels: a truncated file fails here, not later
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise CorruptImageError(f'cannot read image {path} ({type(e).__name__}: {e}); delete or replace '
                                    f'the file and run again') from e

    def __getitem__(self, index: int):
        img = self.load_image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.samples[index][1]

"""Photographs for analysis: a folder of images, or real photographs that ship inside installed packages.

Nothing is downloaded. The packaged photographs are scikit-learn's two sample images (``china.jpg``,
``flower.jpg``, from ``sklearn.datasets``) and matplotlib's ``grace_hopper.jpg`` (its ``sample_data``), each
used when its package is installed. Three photographs are too few for a 50-image average, so when more images
are asked for than photographs exist, the extra ones are *views*: seeded random crops (30-100% of the area,
aspect 3:4 to 4:3) with random horizontal flips, resized like the rest. Every image is resized to a square with
bicubic interpolation, as RepLKNet's ERF protocol does (``Resize((1024, 1024))``, aspect ratio not kept).
"""
import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ['IMAGE_EXTENSIONS', 'NamedImage', 'find_images', 'load_images', 'packaged_photographs']

IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')


@dataclass
class NamedImage:
    """One image ready for a model: ``pixels`` is ``uint8`` ``(3, H, W)``, ``name`` says where it came from."""
    name: str
    pixels: torch.Tensor


def packaged_photographs() -> List[Path]:
    """Paths of the real photographs shipped by installed packages (scikit-learn, matplotlib); may be empty."""
    paths: List[Path] = []
    try:
        import sklearn.datasets
        folder = Path(sklearn.datasets.__file__).parent / 'images'
        paths += [folder / n for n in ('china.jpg', 'flower.jpg') if (folder / n).is_file()]
    except ImportError:
        pass
    try:
        import matplotlib
        photo = Path(matplotlib.get_data_path()) / 'sample_data' / 'grace_hopper.jpg'
        if photo.is_file():
            paths.append(photo)
    except ImportError:
        pass
    return paths


def find_images(folder: Union[str, Path]) -> List[Path]:
    """Image files under ``folder`` (recursively, so an ImageNet-style ``val/<class>/*.JPEG`` tree works), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'image folder not found: {folder}')
    files = sorted(p for p in folder.rglob('*') if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f'no images in {folder} (looked for {", ".join(IMAGE_EXTENSIONS)}, recursively); '
                                f'point to a folder of photographs, or leave the folder out to use the packaged ones')
    return files


def _open_rgb(path: Path):
    from PIL import Image
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except Exception as e:  # PIL raises several error types for broken or unsupported files
        raise ValueError(f'cannot read image {path}: {e}; remove it from the folder or convert it') from e


def _to_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def _random_view(img, rng: random.Random):
    """A seeded random crop (30-100% of the area, aspect 3:4 to 4:3), flipped half of the time."""
    from PIL import Image
    width, height = img.size
    for _ in range(10):
        area = width * height * rng.uniform(0.3, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            img = img.crop((left, top, left + w, top + h))
            break
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def load_images(
        source: Optional[Union[str, Path]] = None,
        size: Union[int, Sequence[int]] = 1024,
        num_images: int = 50,
        seed: int = 0,
) -> List[NamedImage]:
    """Load ``num_images`` images resized to ``size`` (an int for a square, or ``(height, width)``).

    Args:
        source: a folder (searched recursively; when it holds more than ``num_images`` images, a seeded random
            sample is taken, as RepLKNet samples ImageNet's validation set), or None for the packaged
            photographs, extended with seeded random views when ``num_images`` exceeds their number.
        size: output size; bicubic resize without keeping the aspect ratio.
        num_images: how many images to return (a folder with fewer returns all it has).
        seed: seed of the sampling and of the views.
    """
    from PIL import Image
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if num_images < 1:
        raise ValueError(f'num_images must be at least 1, got {num_images}')
    if height < 1 or width < 1:
        raise ValueError(f'image size must be positive, got {size}')
    rng = random.Random(seed)
    if source is not None:
        files = find_images(source)
        if len(files) > num_images:
            files = sorted(rng.sample(files, num_images))
        root = Path(source)
        items = [(str(f.relative_to(root)), _open_rgb(f)) for f in files]
    else:
        photos = packaged_photographs()
        if not photos:
            raise FileNotFoundError('no images given and no packaged photographs found (they ship with '
                                    'scikit-learn and matplotlib): pip install scikit-learn, or pass a folder '
                                    'of images')
        originals = [(p.name, _open_rgb(p)) for p in photos]
        items = []
        for i in range(num_images):
            name, img = originals[i % len(originals)]
            view = i // len(originals)
            items.append((name, img) if view == 0 else (f'{name}#view{view}', _random_view(img, rng)))
    return [NamedImage(name, _to_tensor(img.resize((width, height), Image.Resampling.BICUBIC)))
            for name, img in items]

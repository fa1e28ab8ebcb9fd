"""Plain and sliced prediction: annotated images and a COCO results file.

Sliced prediction runs the detector on overlapping tiles of the image at their native resolution, through SAHI
(optional extra ``sahi``, imported only when slicing): for images much larger than the training size, where
resizing the whole image to the model's input size would shrink small objects below what it can see.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError
from ultralytics import YOLO
from ultralytics.utils.plotting import Annotator, colors

from ...host import kept_host_settings
from ...io import atomic_save_image, atomic_write_text
from .task import load_model

__all__ = ['Detection', 'IMAGE_SUFFIXES', 'check_slicing', 'list_images', 'predict', 'predict_image', 'read_image']

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


@dataclass
class Detection:
    """One box in image pixels: ``xyxy`` corners, class index (0-based, as the model's ``names``), score."""
    xyxy: Sequence[float]
    cls: int
    score: float


def list_images(source: Union[str, Path]) -> List[Path]:
    """An image file, or the images of a folder (sorted); a one-line error when there is none."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f'prediction source not found: {path}')
    if path.is_file():
        return [path]
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f'{path} holds no image ({", ".join(IMAGE_SUFFIXES)})')
    return images


# ultralytics patches PIL.Image.open to retry an unidentified file with the HEIF plugin, which it then tries to
# import: without pi-heif installed, a file that is no image ends in ImportError instead of UnidentifiedImageError
_NOT_AN_IMAGE = (UnidentifiedImageError, OSError, ImportError)


def _unreadable(path: Path, error: Exception) -> ValueError:
    reason = 'not an image file' if isinstance(error, ImportError) else f'{error.__class__.__name__}: {error}'
    return ValueError(f'cannot read image {path}: {reason}')


def image_size(path: Path) -> Tuple[int, int]:
    """``(height, width)`` from the file's header (nothing decoded); a one-line error when it is no image."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except _NOT_AN_IMAGE as e:
        raise _unreadable(path, e) from None


def read_image(path: Path) -> np.ndarray:
    """The image as an RGB uint8 array; a one-line error naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert('RGB'))
    except _NOT_AN_IMAGE as e:
        raise _unreadable(path, e) from None


def check_overlap(overlap: float) -> None:
    """The overlap of neighbouring slices is a fraction of a slice, in [0, 1)."""
    if not 0 <= overlap < 1:
        raise ValueError(f'overlap {overlap} is outside [0, 1): it is the fraction of a slice shared with the next, '
                         f'e.g. 0.2')


def check_slicing(slice_size: int, overlap: float, height: int, width: int, name: str = 'the image') -> None:
    """A slice must fit in the image and the overlap ratio must be in [0, 1)."""
    check_overlap(overlap)
    if slice_size < 32:
        raise ValueError(f'slice {slice_size} is too small: use at least 32 px (the model\'s largest stride)')
    if slice_size > min(height, width):
        raise ValueError(f'slice {slice_size} is larger than {name} ({width}x{height}): use a slice of at most '
                         f'{min(height, width)} px, or predict without slicing')


def _plain(yolo: YOLO, image: np.ndarray, imgsz: Optional[int], conf: float, device: str) -> List[Detection]:
    kwargs: Dict[str, Any] = dict(conf=conf, device=device, verbose=False)
    if imgsz:
        kwargs['imgsz'] = imgsz
    boxes = yolo.predict(image[:, :, ::-1], **kwargs)[0].boxes  # ultralytics takes arrays as BGR
    return [Detection(b.tolist(), int(c), float(s)) for b, c, s in zip(boxes.xyxy, boxes.cls, boxes.conf)]


def _sliced(yolo: YOLO, image: np.ndarray, slice_size: int, overlap: float, conf: float,
            device: str) -> List[Detection]:
    try:
        from sahi import AutoDetectionModel
        from sahi.predict import get_sliced_prediction
    except ImportError:
        raise ImportError('sliced prediction needs SAHI: pip install "uniconvnet[sahi]" (or pip install sahi)') \
            from None
    # SAHI's wrapper of an ultralytics YOLO object: each slice predicted at its own size (no resizing)
    model = AutoDetectionModel.from_pretrained(model_type='ultralytics', model=yolo, confidence_threshold=conf,
                                               device=device, image_size=slice_size)
    result = get_sliced_prediction(image, model, slice_height=slice_size, slice_width=slice_size,
                                   overlap_height_ratio=overlap, overlap_width_ratio=overlap,
                                   perform_standard_pred=False, verbose=0)
    return [Detection(p.bbox.to_xyxy(), int(p.category.id), float(p.score.value))
            for p in result.object_prediction_list]


def predict_image(yolo: YOLO, image: np.ndarray, slice_size: Optional[int] = None, overlap: float = 0.2,
                  imgsz: Optional[int] = None, conf: float = 0.25, device: str = 'cpu') -> List[Detection]:
    """Detections on one RGB image: plain (the whole image at ``imgsz``, default the training size), or sliced
    into ``slice_size`` squares overlapping by ``overlap`` and merged (SAHI)."""
    if slice_size:
        check_slicing(slice_size, overlap, *image.shape[:2])
        return _sliced(yolo, image, slice_size, overlap, conf, device)
    return _plain(yolo, image, imgsz, conf, device)


def _annotate(image: np.ndarray, detections: List[Detection], names: Dict[int, str]) -> Image.Image:
    annotator = Annotator(image.copy(), line_width=1, pil=False)
    for d in detections:
        annotator.box_label(d.xyxy, f'{names.get(d.cls, d.cls)} {d.score:.2f}', color=colors(d.cls, True))
    return Image.fromarray(annotator.result())


@kept_host_settings()
def predict(source: Union[str, Path], weights: Union[str, Path], out: Union[str, Path] = 'runs/yolo/predict',
            slice_size: Optional[int] = None, overlap: float = 0.2, imgsz: Optional[int] = None,
            conf: float = 0.25, device: str = 'cpu', save_images: bool = True) -> Path:
    """Predict an image or a folder of images; returns the COCO results file written in ``out``.

    Writes ``out/predictions.json`` (COCO results: ``image_id`` = position in the sorted source, ``file_name``,
    ``category_id`` = class + 1, ``bbox`` = ``[x, y, w, h]`` in pixels, ``score``) and, with ``save_images``,
    one annotated copy of each image in ``out``.

    Args:
        source: an image file or a folder of images.
        weights: a trained ``.pt``.
        slice_size: predict overlapping ``slice_size`` squares at native resolution (SAHI) instead of the whole
            image resized to ``imgsz``.
        overlap: fraction of a slice shared with its neighbour, in [0, 1).
        imgsz: input size of plain prediction (default: the size the weights were trained at).
        conf: lowest score kept.
    """
    check_overlap(overlap)
    if not Path(weights).is_file():
        raise FileNotFoundError(f'weights not found: {weights} (a trained .pt, e.g. runs/yolo/NAME/weights/best.pt)')
    images = list_images(source)
    sizes = [image_size(path) for path in images]  # every file an image, every slice fitting: before any work
    if slice_size:
        for path, (height, width) in zip(images, sizes):
            check_slicing(slice_size, overlap, height, width, name=str(path))
    out = Path(out)
    if save_images and any(out.resolve() == path.parent.resolve() for path in images):
        raise ValueError(f'output folder {out} is the source folder: the annotated images would replace the '
                         f'originals; choose another --out')
    yolo = load_model(weights)
    out.mkdir(parents=True, exist_ok=True)
    results: List[Dict[str, Any]] = []
    for image_id, path in enumerate(images):
        array = read_image(path)
        detections = predict_image(yolo, array, slice_size, overlap, imgsz, conf, device)
        for d in detections:
            x1, y1, x2, y2 = d.xyxy
            results.append({'image_id': image_id, 'file_name': path.name, 'category_id': d.cls + 1,
                            'bbox': [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                            'score': round(d.score, 5)})
        if save_images:
            atomic_save_image(_annotate(array, detections, yolo.names), out / f'{path.stem}.png')
    return atomic_write_text(out / 'predictions.json', json.dumps(results))

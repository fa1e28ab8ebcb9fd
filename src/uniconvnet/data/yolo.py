"""COCO boxes as YOLO-format labels, and the built-in small-object dataset as a YOLO dataset.

YOLO trainers (ultralytics) read ``.../images/NAME.png`` with ``.../labels/NAME.txt`` beside it, one line per
object: ``class cx cy w h``, all four normalised to the image size, classes counted from 0. The images are not
copied: the labels go next to the ``images`` folders the generator wrote.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Union

from ..io import atomic_write_text

__all__ = ['coco_to_yolo_labels', 'small_objects_yolo']


def coco_to_yolo_labels(annotations: Union[str, Path], labels_dir: Union[str, Path]) -> List[str]:
    """Write one YOLO label file per image of a COCO detection json; returns the class names (index = class).

    Classes are the json's categories in their listed order. Every image gets a file, empty when it has no
    object (a YOLO trainer reads an empty file as a background image).
    """
    ann_path = Path(annotations)
    if not ann_path.is_file():
        raise FileNotFoundError(f'COCO annotation file not found: {ann_path}')
    coco = json.loads(ann_path.read_text())
    for key in ('images', 'annotations', 'categories'):
        if key not in coco:
            raise ValueError(f'{ann_path} is not a COCO detection file: it has no "{key}" list')
    class_of = {c['id']: i for i, c in enumerate(coco['categories'])}
    lines: Dict[int, List[str]] = {im['id']: [] for im in coco['images']}
    sizes = {im['id']: (im['width'], im['height']) for im in coco['images']}
    for ann in coco['annotations']:
        if ann.get('iscrowd', 0):
            continue  # YOLO labels have no notion of crowd regions
        width, height = sizes[ann['image_id']]
        x, y, w, h = ann['bbox']
        lines[ann['image_id']].append(
            f'{class_of[ann["category_id"]]} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} '
            f'{w / width:.6f} {h / height:.6f}')
    out = Path(labels_dir)
    out.mkdir(parents=True, exist_ok=True)
    for im in coco['images']:
        text = '\n'.join(lines[im['id']])
        atomic_write_text(out / Path(im['file_name']).with_suffix('.txt').name, text + '\n' if text else '')
    return [c['name'] for c in coco['categories']]


def small_objects_yolo(root: Union[str, Path], **generate_kwargs: Any) -> Path:
    """The built-in small-object dataset (``generate_small_objects``) in YOLO format; returns its data YAML.

    Writes ``ROOT/{train,val}/labels/*.txt`` and ``ROOT/data.yaml`` (``path``, ``train``, ``val``, ``names``)
    next to what the generator writes; the COCO jsons stay, for COCO-style evaluation of YOLO predictions.
    Keyword arguments go to :func:`uniconvnet.data.small_objects.generate_small_objects`.
    """
    from .small_objects import generate_small_objects

    root = Path(root).resolve()
    splits = generate_small_objects(root, **generate_kwargs)
    data_yaml = root / 'data.yaml'
    if data_yaml.is_file() and data_yaml.stat().st_mtime >= (root / 'settings.json').stat().st_mtime:
        return data_yaml  # labels written after the images they describe: up to date
    names: List[str] = []
    for split in splits.values():
        names = coco_to_yolo_labels(split.annotations, split.images.parent / 'labels')
    # JSON is valid YAML: no YAML writer needed, and paths with odd characters stay quoted
    atomic_write_text(data_yaml, json.dumps({
        'path': str(root), 'train': 'train/images', 'val': 'val/images',
        'names': names,
    }, indent=2) + '\n')
    return data_yaml

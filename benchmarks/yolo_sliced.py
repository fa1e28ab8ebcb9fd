"""Large images, small objects: plain vs sliced (SAHI) prediction from the same weights.

Weights trained on the built-in 128 px canvases (digits of 8-24 px; e.g. the seed-0 runs of
``benchmarks/yolo_small_objects.py``) predict generated 1024 x 1024 canvases holding digits of the same 8-24 px
(written once under ``--data-root``), three ways:

  plain @train size   the whole image resized to the training size (ultralytics' default for these weights):
                      objects shrink 8x, below what the model can see
  plain @1024         the whole image at its native size in one pass (the model is convolutional; memory and
                      latency grow with the image)
  sliced S            overlapping S x S tiles at native size (``uniconvnet yolo predict --slice S``), merged by SAHI

and reports, against the canvases' COCO ground truth: recall at IoU 0.5 (of the boxes above the score threshold
``--conf``, 0.05) and COCO AP / AP50 (pycocotools; predictions down to score 0.001), and seconds per image.

    PYTHONPATH=src python benchmarks/yolo_sliced.py --weights runs/bench_yolo_small_objects/standard/yolo11n/seed0/weights/last.pt ...
    PYTHONPATH=src python benchmarks/yolo_sliced.py --smoke   # untrained weights, one 256 px canvas (CI)
"""
import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault('YOLO_OFFLINE', '1')

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results' / 'yolo_sliced'
DEFAULT_RUNS = Path('runs/bench_yolo_small_objects/standard')


def large_canvases(root: Path, count: int, size: int = 1024) -> Path:
    """``count`` generated canvases of ``size`` px with 8-24 px digits (about one per 128 x 128 px area x 4)."""
    from uniconvnet.data.small_objects import generate_small_objects
    splits = generate_small_objects(root, num_train=1, num_val=count, image_size=size, size_range=(8, 24),
                                    max_objects=(size // 128) ** 2 * 4, seed=1)
    return splits['val'].annotations


def recall_at_50(gt: Dict[str, Any], detections: List[Dict[str, Any]], conf: float) -> float:
    """Fraction of ground-truth boxes matched (IoU >= 0.5, same class) by a detection scoring >= ``conf``."""
    from torchvision.ops import box_iou

    def xyxy(b):
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    found = total = 0
    for image in gt['images']:
        truth = [a for a in gt['annotations'] if a['image_id'] == image['id']]
        preds = [d for d in detections if d['image_id'] == image['id'] and d['score'] >= conf]
        total += len(truth)
        if not truth or not preds:
            continue
        iou = box_iou(torch.tensor([xyxy(a['bbox']) for a in truth]), torch.tensor([xyxy(d['bbox']) for d in preds]))
        same = torch.tensor([[a['category_id'] == d['category_id'] for d in preds] for a in truth])
        found += int(((iou >= 0.5) & same).any(1).sum())
    return found / max(total, 1)


def evaluate(weights: Path, annotations: Path, modes: List[str], conf: float) -> List[Dict[str, Any]]:
    from PIL import Image

    from uniconvnet.evaluation import coco_evaluate
    from uniconvnet.integrations import ultralytics as uyolo
    from uniconvnet.integrations.ultralytics.predict import predict_image

    gt = json.loads(annotations.read_text())
    yolo = uyolo.load_model(weights)
    train_size = int(yolo.overrides.get('imgsz', 128))
    rows = []
    for mode in modes:
        detections: List[Dict[str, Any]] = []
        start = time.perf_counter()
        for image in gt['images']:
            array = np.asarray(Image.open(annotations.parent / 'images' / image['file_name']).convert('RGB'))
            if mode.startswith('sliced'):
                found = predict_image(yolo, array, slice_size=int(mode.split()[1]), overlap=0.2, conf=0.001)
            else:
                size = train_size if mode == 'plain @train size' else array.shape[0]
                found = predict_image(yolo, array, imgsz=size, conf=0.001)
            for d in found:
                x1, y1, x2, y2 = d.xyxy
                detections.append({'image_id': image['id'], 'category_id': d.cls + 1,
                                   'bbox': [x1, y1, x2 - x1, y2 - y1], 'score': d.score})
        seconds = (time.perf_counter() - start) / len(gt['images'])
        coco = coco_evaluate(gt, detections)
        rows.append(dict(weights=str(weights), mode=mode, recall50=recall_at_50(gt, detections, conf),
                         AP=coco['AP'], AP50=coco['AP50'], seconds_per_image=seconds))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def untrained_weights(folder: Path) -> Path:
    """A ``.pt`` of yolo11n with RFA blocks in its neck, random weights: what the smoke run predicts with."""
    from uniconvnet.integrations import ultralytics as uyolo
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'yolo11n-rfa-neck-untrained.pt'
    uyolo.load_model('yolo11n-rfa-neck.yaml').save(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', nargs='+', type=Path, default=[DEFAULT_RUNS / 'yolo11n' / 'seed0' / 'weights' /
                        'last.pt', DEFAULT_RUNS / 'yolo11n-uniconvnet-a' / 'seed0' / 'weights' / 'last.pt'])
    parser.add_argument('--images', type=int, default=8, help='1024 px canvases (default 8)')
    parser.add_argument('--data-root', type=Path, default=Path('runs/bench_yolo_sliced/data'))
    parser.add_argument('--slices', nargs='+', type=int, default=[128, 256])
    parser.add_argument('--conf', type=float, default=0.05, help='score threshold of the recall (default 0.05)')
    parser.add_argument('--smoke', action='store_true', help='untrained weights on one 256 px canvas, 128 px slices '
                        '(CI: the script runs); writes nothing under benchmarks/results')
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = 256 if args.smoke else 1024
    if args.smoke:
        args.data_root = args.data_root.parent / 'smoke'
        args.images, args.slices, args.weights = 1, [128], [untrained_weights(args.data_root)]
    annotations = large_canvases(args.data_root, args.images, size)
    modes = ['plain @train size', f'plain @{size}'] + [f'sliced {s}' for s in args.slices]
    rows = [row for w in args.weights for row in evaluate(w, annotations, modes, args.conf)]
    gt = json.loads(annotations.read_text())
    lines = [f'{len(gt["images"])} generated canvases of {size} px, {len(gt["annotations"])} digits of 8-24 px; '
             f'recall: IoU >= 0.5 and score >= {args.conf}; slices overlap by 0.2; CPU, 1 thread', '',
             '| weights | prediction | recall@0.5 | AP | AP50 | s / image |', '|---|---|---:|---:|---:|---:|']
    for r in rows:
        name = Path(r['weights']).parts[-4] if len(Path(r['weights']).parts) >= 4 else r['weights']
        lines.append(f'| {name} | {r["mode"]} | {r["recall50"]:.3f} | {r["AP"]:.3f} | {r["AP50"]:.3f} | '
                     f'{r["seconds_per_image"]:.1f} |')
    table = '\n'.join(lines)
    print(table)
    if args.smoke:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix('.md').write_text(table + '\n')
    RESULTS.with_suffix('.json').write_text(json.dumps(rows, indent=1))


if __name__ == '__main__':
    main()

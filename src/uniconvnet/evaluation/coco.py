"""COCO box (and mask) evaluation with pycocotools, returning the six standard numbers."""
import contextlib
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Union

__all__ = ['coco_evaluate', 'COCO_METRICS']

COCO_METRICS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def coco_evaluate(ground_truth: Union[str, Path, Dict[str, Any]], detections: List[Dict[str, Any]],
                  iou_type: str = 'bbox') -> Dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl (0-1; -1 where the set has no object of that size).

    Args:
        ground_truth: a COCO json file or its parsed dict.
        detections: COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (plus
            ``"segmentation"`` RLE for ``iou_type="segm"``).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict = json.loads(Path(ground_truth).read_text()) if not isinstance(ground_truth, dict) else ground_truth
    gt_dict = dict(gt_dict)
    gt_dict.setdefault('info', {})
    gt_dict.setdefault('licenses', [])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        if not detections:
            return {k: 0.0 for k in COCO_METRICS}
        dt = gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: float(v) for k, v in zip(COCO_METRICS, evaluator.stats[:6])}

"""Semantic segmentation metrics from a confusion matrix."""
from typing import Dict, List

import torch

__all__ = ['ConfusionMatrix']


class ConfusionMatrix:
    """Accumulates ``(target, prediction)`` pairs; gives mIoU, per-class IoU and pixel accuracy.

    Pixels equal to ``ignore_index`` in the target are not counted. A class that never appears in targets or
    predictions has no IoU (NaN) and is left out of the mean.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        keep = target != self.ignore_index
        t, p = target[keep].long().flatten(), prediction[keep].long().flatten()
        self.matrix += torch.bincount(t * self.num_classes + p, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes).cpu()

    def iou(self) -> List[float]:
        m = self.matrix.double()
        inter = m.diag()
        union = m.sum(0) + m.sum(1) - inter
        return (inter / union).tolist()  # NaN where union is 0

    def compute(self) -> Dict[str, object]:
        ious = self.iou()
        valid = [v for v in ious if v == v]
        total = self.matrix.sum().item()
        return dict(mIoU=sum(valid) / len(valid) if valid else 0.0, per_class_iou=ious,
                    pixel_accuracy=self.matrix.diag().sum().item() / total if total else 0.0)

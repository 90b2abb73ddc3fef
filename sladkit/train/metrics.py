"""Evaluation metrics: top-1 accuracy, mean IoU, and linear CKA (teacher-student feature alignment).

Linear CKA (Kornblith et al., ICML 2019): for centred features X (n, d1) and Y (n, d2),
CKA = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F); 1 means the two representations agree up to rotation and scale.
"""

from __future__ import annotations

import torch

from sladkit.train.losses import IGNORE_INDEX


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two feature matrices with the same number of rows (samples)."""
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"CKA needs the same number (>= 2) of samples, got {x.shape[0]} and {y.shape[0]}")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = (y.T @ x).norm() ** 2
    norm = (x.T @ x).norm() * (y.T @ y).norm()
    return float(cross / norm) if norm > 0 else 0.0


class ConfusionMatrix:
    """Accumulates a (classes x classes) confusion matrix; rows are targets, columns predictions."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        pred = logits.argmax(dim=1).flatten()
        target = target.flatten()
        keep = target != IGNORE_INDEX
        index = target[keep] * self.num_classes + pred[keep]
        self.matrix += torch.bincount(index.cpu(), minlength=self.num_classes**2).view_as(self.matrix)

    def accuracy(self) -> float:
        """Top-1 accuracy in percent."""
        total = self.matrix.sum()
        return float(100.0 * self.matrix.diag().sum() / total) if total else 0.0

    def mean_iou(self) -> float:
        """Mean IoU in percent over the classes present in targets or predictions."""
        tp = self.matrix.diag().double()
        union = self.matrix.sum(0).double() + self.matrix.sum(1).double() - tp
        present = union > 0
        return float(100.0 * (tp[present] / union[present]).mean()) if present.any() else 0.0

    def value(self, task: str) -> float:
        return self.accuracy() if task == "cls" else self.mean_iou()


def metric_name(task: str) -> str:
    return "acc" if task == "cls" else "miou"

"""Task metrics on numpy arrays, shared by export's accuracy gate and the runtime (no torch, no onnx)."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255


def task_metric(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """Top-1 accuracy (classification, pred (N,)) or mean IoU (segmentation, pred (N, H, W)), in percent.

    Label 255 is ignored; mIoU averages over the classes present in targets or predictions.
    """
    keep = target != IGNORE_INDEX
    if pred.ndim == 1:
        return float(100.0 * (pred[keep] == target[keep]).mean())
    p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    matrix = np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(100.0 * (tp[union > 0] / union[union > 0]).mean()) if (union > 0).any() else 0.0

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


def wilson_interval(successes: int, total: int, *, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion, in percent (95 % for the default z).

    Unlike the normal approximation it stays inside 0..100 and is not empty at 0 or `total` successes
    (E. B. Wilson, "Probable inference, the law of succession, and statistical inference", JASA 1927).
    """
    if total <= 0:
        return 0.0, 100.0
    p = successes / total
    denominator = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denominator
    return float(100 * max(0.0, centre - half)), float(100 * min(1.0, centre + half))


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows the true class, columns the predicted one.

    Images (classification) or pixels (segmentation); targets equal to 255 are left out.
    """
    keep = target != IGNORE_INDEX
    t, p = np.asarray(target)[keep].astype(np.int64), np.asarray(pred)[keep].astype(np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix, in percent; NaN for a class neither true nor predicted."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, 100.0 * tp / union, np.nan)

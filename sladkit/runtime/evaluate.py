"""`sladkit eval`: accuracy (classification) or mIoU (segmentation) of any artifact on a labelled dataset.

`evaluate` gives the headline number (what `profile --data` records); `evaluate_report` adds what a user
acts on: per-class accuracy or IoU, the confusion matrix, top-5 accuracy with more than 5 classes, the split
and the image count (`sladkit.runtime.eval_report` prints, plots and writes it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sladkit.bundle import ACCURACY_BATCH
from sladkit.config import EvalConfig
from sladkit.data.images import load_mask
from sladkit.data.transforms import eval_size
from sladkit.errors import DataError
from sladkit.metrics import IGNORE_INDEX, confusion_matrix, per_class_iou, wilson_interval
from sladkit.runtime.datasets import labelled_images, split_name
from sladkit.runtime.model import RuntimeModel

TOP_K = 5


def eval_mask(transforms: dict, mask, num_classes: int) -> np.ndarray:
    """A mask through the eval geometry of its image: nearest resize of the shorter side, centre crop.

    Raises:
        DataError: an unreadable mask, one that is not single-channel 8-bit, or a value that is neither a class
            index of the model (0..num_classes - 1) nor 255 (ignore).
    """
    is_file = isinstance(mask, (str, Path))
    array = load_mask(mask) if is_file else np.asarray(mask, dtype=np.uint8)
    values = np.unique(array)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if len(bad):
        raise DataError(
            f"mask {mask if is_file else '(an array)'} has value {int(bad[0])}, but the model has {num_classes} "
            f"classes (values 0..{num_classes - 1}, 255 = ignore); fix the mask, or evaluate a model trained "
            "on these classes"
        )
    pil = Image.fromarray(array)
    new_size = eval_size(transforms, *pil.size)
    if new_size != pil.size:
        pil = pil.resize(new_size, resample=Image.NEAREST)
    crop = transforms["eval"]["center_crop"]
    top, left = int(round((new_size[1] - crop) / 2.0)), int(round((new_size[0] - crop) / 2.0))
    return np.asarray(pil, dtype=np.int64)[top : top + crop, left : left + crop]


def evaluate(
    model: RuntimeModel, data: str, *, batch: int = ACCURACY_BATCH, limit: int | None = None
) -> dict:
    """{"metric": "acc"|"miou", "value": percent, "images": n, "data", "split"} of `model` on `data`, with
    `ci95` (the 95 % Wilson interval, classification) and `top5` (classification with more than 5 classes)."""
    report = evaluate_report(model, data, batch=batch, limit=limit)
    return {k: v for k, v in report.items() if k not in ("per_class", "confusion_matrix", "labels")}


def evaluate_report(
    model: RuntimeModel, data: str, *, batch: int = ACCURACY_BATCH, limit: int | None = None
) -> dict:
    """`evaluate`'s numbers plus `labels`, `per_class` and `confusion_matrix` (rows true, columns predicted;
    images for classification, pixels for segmentation)."""
    EvalConfig(batch=batch, limit=limit)  # refuses out-of-range numbers
    num_classes = len(model.labels)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    top_k_hits, images = 0, 0
    pending: list = []

    def flush():
        nonlocal matrix, top_k_hits, images
        logits = model.infer(model.preprocess([image for image, _ in pending]))
        if model.task == "seg":
            targets = np.stack([eval_mask(model.artifact.transforms, t, num_classes) for _, t in pending])
        else:
            targets = np.asarray([int(t) for _, t in pending])
            if num_classes > TOP_K:
                top = np.argpartition(-logits, TOP_K - 1, axis=1)[:, :TOP_K]
                top_k_hits += int((top == targets[:, None]).any(axis=1).sum())
        matrix += confusion_matrix(logits.argmax(axis=1), targets, num_classes)
        images += len(pending)
        pending.clear()

    for pair in labelled_images(data, model.artifact, limit=limit):
        pending.append(pair)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    report = {
        "metric": "acc" if model.task == "cls" else "miou",
        "images": images,
        "data": data,
        "split": split_name(data),
        "labels": list(model.labels),
    }
    if model.task == "cls":
        correct, per_class_total = int(np.trace(matrix)), matrix.sum(axis=1)
        report["value"] = round(100.0 * correct / max(images, 1), 4)
        report["ci95"] = [round(v, 4) for v in wilson_interval(correct, images)]
        if num_classes > TOP_K:
            report[f"top{TOP_K}"] = round(100.0 * top_k_hits / max(images, 1), 4)
        report["per_class"] = [
            {
                "index": c,
                "label": model.labels[c],
                "images": int(per_class_total[c]),
                "correct": int(matrix[c, c]),
                "acc": round(100.0 * matrix[c, c] / per_class_total[c], 4) if per_class_total[c] else None,
            }
            for c in range(num_classes)
        ]
    else:
        iou = per_class_iou(matrix)
        present = ~np.isnan(iou)
        report["value"] = round(float(iou[present].mean()), 4) if present.any() else 0.0
        report["pixels"] = int(matrix.sum())
        report["per_class"] = [
            {
                "index": c,
                "label": model.labels[c],
                "pixels": int(matrix[c].sum()),
                "iou": None if np.isnan(iou[c]) else round(float(iou[c]), 4),
            }
            for c in range(num_classes)
        ]
    report["confusion_matrix"] = matrix.tolist()
    order = ["metric", "value", "ci95", f"top{TOP_K}", "images", "pixels", "data", "split"]
    return {k: report[k] for k in order if k in report} | {k: v for k, v in report.items() if k not in order}

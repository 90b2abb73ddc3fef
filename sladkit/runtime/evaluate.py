"""`sladkit eval`: accuracy (classification) or mIoU (segmentation) of any artifact on a labelled dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sladkit.config import EvalConfig
from sladkit.data.images import load_mask
from sladkit.data.transforms import eval_size
from sladkit.errors import DataError
from sladkit.metrics import IGNORE_INDEX, task_metric
from sladkit.runtime.datasets import labelled_images
from sladkit.runtime.model import RuntimeModel


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


def evaluate(model: RuntimeModel, data: str, *, batch: int = 32, limit: int | None = None) -> dict:
    """{"metric": "acc"|"miou", "value": percent, "images": n} of `model` on `data`."""
    EvalConfig(batch=batch, limit=limit)  # refuses out-of-range numbers
    predictions, targets = [], []
    pending: list = []

    def flush():
        logits = model.infer(model.preprocess([image for image, _ in pending]))
        predictions.extend(logits.argmax(axis=1))
        for _, target in pending:
            targets.append(
                eval_mask(model.artifact.transforms, target, len(model.labels))
                if model.task == "seg"
                else int(target)
            )
        pending.clear()

    for pair in labelled_images(data, model.artifact, limit=limit):
        pending.append(pair)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    value = task_metric(np.stack(predictions), np.stack(targets), len(model.labels))
    return {
        "metric": "acc" if model.task == "cls" else "miou",
        "value": round(value, 4),
        "images": len(targets),
        "data": data,
    }

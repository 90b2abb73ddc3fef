"""`sladkit eval`: accuracy (classification) or mIoU (segmentation) of any artifact on a labelled dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sladkit.data.transforms import eval_size
from sladkit.metrics import task_metric
from sladkit.runtime.datasets import labelled_images
from sladkit.runtime.model import RuntimeModel


def eval_mask(transforms: dict, mask) -> np.ndarray:
    """A mask through the eval geometry of its image: nearest resize of the shorter side, centre crop."""
    pil = (
        Image.open(mask)
        if isinstance(mask, (str, Path))
        else Image.fromarray(np.asarray(mask, dtype=np.uint8))
    )
    new_size = eval_size(transforms, *pil.size)
    if new_size != pil.size:
        pil = pil.resize(new_size, resample=Image.NEAREST)
    crop = transforms["eval"]["center_crop"]
    top, left = int(round((new_size[1] - crop) / 2.0)), int(round((new_size[0] - crop) / 2.0))
    return np.asarray(pil, dtype=np.int64)[top : top + crop, left : left + crop]


def evaluate(model: RuntimeModel, data: str, *, batch: int = 32, limit: int | None = None) -> dict:
    """{"metric": "acc"|"miou", "value": percent, "images": n} of `model` on `data`."""
    predictions, targets = [], []
    pending: list = []

    def flush():
        logits = model.infer(model.preprocess([image for image, _ in pending]))
        predictions.extend(logits.argmax(axis=1))
        for _, target in pending:
            targets.append(
                eval_mask(model.artifact.transforms, target) if model.task == "seg" else int(target)
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

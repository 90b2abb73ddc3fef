"""`sladkit predict`: one JSON line per image (`docs/design.md`, "Prediction output", the schema `sladkit-infer`
prints too); segmentation masks and overlays as PNGs with `--out`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from sladkit.config import PredictConfig
from sladkit.runtime.model import RuntimeModel, check_images


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class (class 0 black), (classes, 3) uint8."""
    rng = np.random.default_rng(12345)
    colours = rng.integers(40, 256, size=(max(num_classes, 1), 3), dtype=np.uint8)
    colours[0] = 0
    return colours


def predict_images(
    model: RuntimeModel, images: list[str], *, top_k: int = 5, out: str | None = None, batch: int = 16
) -> Iterator[str]:
    """One JSON line per image; segmentation masks also written to `out` (mask + overlay PNG)."""
    PredictConfig(top_k=top_k, batch=batch)  # refuses out-of-range numbers before `out` is created
    check_images(images)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    colours = palette(len(model.labels))
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        crops = [model.crop(path) for path in chunk]
        for path, crop, prediction in zip(chunk, crops, model.predict(chunk, top_k=top_k), strict=True):
            record = {"image": str(path), **prediction.to_dict(model.labels)}
            if prediction.mask is not None and out is not None:
                stem = Path(path).stem
                mask_path, overlay_path = Path(out) / f"{stem}.mask.png", Path(out) / f"{stem}.overlay.png"
                Image.fromarray(prediction.mask.astype(np.uint8)).save(mask_path)
                overlay = (0.5 * crop + 0.5 * colours[prediction.mask]).astype(np.uint8)
                Image.fromarray(overlay).save(overlay_path)
                record["mask"]["file"], record["overlay"] = str(mask_path), str(overlay_path)
            yield json.dumps(record)

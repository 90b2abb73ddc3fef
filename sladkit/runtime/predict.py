"""`sladkit predict`: one JSON line per image (`docs/design.md`, "Prediction output", the schema `sladkit-infer`
prints too); with `--out`, every image annotated (`sladkit.runtime.annotate`) and segmentation masks as PNGs.

Inputs may be files, folders (their images, not their subfolders') and glob patterns (`**` for any depth).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from sladkit.config import PredictConfig
from sladkit.data._files import IMAGE_EXTENSIONS, is_image_file, list_images
from sladkit.data.images import as_rgb
from sladkit.errors import DataError
from sladkit.runtime.annotate import annotate_classification, annotate_segmentation, palette
from sladkit.runtime.model import RuntimeModel, check_images

__all__ = ["expand_images", "palette", "predict_images"]

GLOB_CHARACTERS = frozenset("*?[")


def expand_images(inputs: list[str]) -> list[str]:
    """Files as given; a folder stands for its image files, a pattern for the image files it matches (sorted).

    A path that does not exist and is no pattern is kept, so that reading it names it.

    Raises:
        DataError: a folder without images, or a pattern that matches none.
    """
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    images = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_dir():
            found = list_images(path, recursive=False)
            if not found:
                raise DataError(
                    f"folder {path} holds no images ({extensions}); for subfolders too pass '{path}/**/*'"
                )
            images += [str(p) for p in found]
        elif not path.exists() and GLOB_CHARACTERS & set(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if is_image_file(Path(p)))
            if not found:
                raise DataError(f"no image file matches {item!r} (images: {extensions})")
            images += found
        else:
            images.append(item)
    return images


def _unique_stem(path: str, used: dict[str, int]) -> str:
    """The file's stem, with -2, -3, ... for later images of the same stem (say from two folders)."""
    stem = Path(path).stem
    used[stem] = used.get(stem, 0) + 1
    return stem if used[stem] == 1 else f"{stem}-{used[stem]}"


def predict_images(
    model: RuntimeModel, images: list[str], *, top_k: int = 5, out: str | None = None, batch: int = 16
) -> Iterator[str]:
    """One JSON line per image; with `out`, `<stem>.overlay.png` for every image (the prediction on the
    original image, with a legend) and `<stem>.mask.png` for segmentation (class indices, the model's crop)."""
    PredictConfig(top_k=top_k, batch=batch)  # refuses out-of-range numbers before `out` is created
    check_images(images)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    transforms, used = model.artifact.transforms, {}
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        originals = [as_rgb(path) for path in chunk]  # decoded once, for the model and the annotation
        for path, original, prediction in zip(
            chunk, originals, model.predict(originals, top_k=top_k), strict=True
        ):
            record = {"image": str(path), **prediction.to_dict(model.labels)}
            if out is not None:
                stem = _unique_stem(str(path), used)
                overlay_path = Path(out) / f"{stem}.overlay.png"
                if prediction.mask is None:
                    annotate_classification(original, prediction.labels, prediction.scores, transforms).save(
                        overlay_path
                    )
                else:
                    mask_path = Path(out) / f"{stem}.mask.png"
                    Image.fromarray(prediction.mask.astype("uint8")).save(mask_path)
                    annotate_segmentation(original, prediction.mask, model.labels, transforms).save(
                        overlay_path
                    )
                    record["mask"]["file"] = str(mask_path)
                record["overlay"] = str(overlay_path)
            yield json.dumps(record)

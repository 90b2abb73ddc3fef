"""Labelled images for `sladkit eval` and `profile --data`, read without torch.

Layouts (as in training): classification `DIR/val/<class>/*` (or `DIR/<class>/*`); segmentation
`DIR/val/images/*` + `DIR/val/masks/*.png` (or `DIR/images` + `DIR/masks`), 255 = ignore. `synthetic` renders
the training run's validation scenes again (this one needs sladkit[train]).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from sladkit.data._files import list_images
from sladkit.errors import DataError
from sladkit.runtime.artifacts import Artifact


def labelled_images(
    data: str, artifact: Artifact, *, limit: int | None = None
) -> Iterator[tuple[object, object]]:
    """(image, label or mask) pairs; images are paths or uint8 arrays."""
    if data == "synthetic":
        yield from _synthetic(artifact, limit)
        return
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"--data {data} is not a folder; pass a labelled image folder or 'synthetic'")
    split = root / "val" if (root / "val").is_dir() else root
    pairs = _classification(split, artifact) if artifact.task == "cls" else _segmentation(split)
    if not pairs:
        raise DataError(
            f"no labelled images found in {split}; expected the training layouts (see the README)"
        )
    pairs = pairs[:limit]
    if artifact.task == "seg":
        for image, mask in pairs:
            _check_same_size(image, mask)
    yield from pairs


def split_name(data: str) -> str:
    """Which images `labelled_images(data, ...)` reads: the folder (DIR/val or DIR), or the synthetic split."""
    if data == "synthetic":
        return "synthetic validation scenes of the run"
    root = Path(data)
    return str(root / "val" if (root / "val").is_dir() else root)


def _classification(split: Path, artifact: Artifact) -> list[tuple[Path, int]]:
    index = {label: i for i, label in enumerate(artifact.labels)}
    pairs = []
    for folder in sorted(p for p in split.iterdir() if p.is_dir()):
        if folder.name not in index:
            raise DataError(
                f"class folder {folder} is not one of the model's labels ({', '.join(artifact.labels[:5])}, ...)"
            )
        pairs += [(path, index[folder.name]) for path in list_images(folder, recursive=True)]
    return pairs


def _segmentation(split: Path) -> list[tuple[Path, Path]]:
    images, masks = split / "images", split / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DataError(f"{split} has no images/ and masks/ folders (segmentation layout)")
    pairs = []
    for path in list_images(images, recursive=False):
        mask = masks / f"{path.stem}.png"
        if not mask.is_file():
            raise DataError(f"mask {mask} is missing for image {path.name}")
        pairs.append((path, mask))
    return pairs


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, or None when unreadable (decoding reports that later)."""
    try:
        with Image.open(path) as opened:
            return opened.size
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        return None


def _check_same_size(image: Path, mask: Path) -> None:
    image_size, mask_size = _header_size(image), _header_size(mask)
    if image_size and mask_size and image_size != mask_size:
        raise DataError(
            f"mask {mask} is {mask_size[0]}x{mask_size[1]} but its image {image.name} is "
            f"{image_size[0]}x{image_size[1]} (WxH); give each image a mask of its own size"
        )


def _synthetic(artifact: Artifact, limit: int | None) -> Iterator[tuple[object, object]]:
    from sladkit.data.synthetic import VAL_SPLIT, render_classification, render_segmentation

    data = artifact.manifest.get("source", {}).get("data", {})
    count = min(limit or data.get("synthetic_val", 500), data.get("synthetic_val", 500))
    render = render_classification if artifact.task == "cls" else render_segmentation
    images, targets = render(
        count, seed=data.get("seed", 0), split=VAL_SPLIT, size=artifact.transforms["eval"]["resize"]
    )
    yield from zip(images, targets, strict=True)

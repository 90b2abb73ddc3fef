"""Finding, checking and splitting image files for the folder datasets."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from sladkit.data.images import ImageReadError, load_rgb
from sladkit.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

T = TypeVar("T")
R = TypeVar("R")


def is_image_file(path: Path) -> bool:
    """True for a visible file with one of IMAGE_EXTENSIONS (any case)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, *, recursive: bool) -> list[Path]:
    """Image files in `folder` (and its subfolders when `recursive`), sorted by path."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_file(p))


def list_subfolders(folder: Path) -> list[str]:
    """Names of the visible subfolders of `folder`, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def parallel_map(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`[function(x) for x in items]` on a thread pool (PIL decoding releases the GIL), order kept."""
    items = list(items)
    if len(items) < 32:
        return [function(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(function, items))


def probe_image(path: Path) -> tuple[tuple[int, int] | None, str]:
    """Decode an image as training will; returns ((width, height), "") or (None, the reason it failed)."""
    try:
        return load_rgb(path).size, ""
    except ImageReadError as e:
        return None, e.reason


def report_unreadable(unreadable: list[tuple[Path, str]], *, root: Path, strict: bool) -> list[str]:
    """Fail (strict) or warn once about unreadable images; returns their paths as strings."""
    if not unreadable:
        return []
    path, reason = unreadable[0]
    count = f"{len(unreadable)} unreadable image(s) in {root}"
    if strict:
        raise DataError(
            f"cannot read image {path} ({reason}); {count}; "
            "replace or delete the file(s), or drop strict to skip them"
        )
    warnings.warn(
        f"skipped {count} (first: {path}: {reason}); pass strict=True to stop on them", stacklevel=3
    )
    return [str(p) for p, _ in unreadable]


def check_val_fraction(val_fraction: float, total: int, n_val: int, where: Path) -> None:
    """DataError when a split from `total` images leaves no image for val."""
    if n_val < 1:
        raise DataError(
            f"splitting {total} image(s) of {where} with val_fraction={val_fraction} leaves no image for "
            "val; add images, raise val_fraction, or provide a val/ folder"
        )


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of range(n): (train indices, val indices), each sorted; val has
    round(n * val_fraction) items, at most n - 1."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(int(np.floor(n * val_fraction + 0.5)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def stratified_split(targets: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split keeping class proportions: each class gives round(n_c * val_fraction) images to val
    (at most n_c - 1, so every class keeps a training image). Returns sorted (train, val) indices."""
    rng = np.random.default_rng(seed)
    targets_array = np.asarray(targets)
    train: list[int] = []
    val: list[int] = []
    for label in np.unique(targets_array):
        members = np.flatnonzero(targets_array == label)
        members = members[rng.permutation(len(members))]
        n_val = min(int(np.floor(len(members) * val_fraction + 0.5)), len(members) - 1)
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return sorted(train), sorted(val)

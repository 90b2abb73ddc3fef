"""Fixtures for the data tests: transform configs and tiny image folders written with PIL."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sladkit.data import transform_config


@pytest.fixture
def cfg32():
    """Transform config for 32 px inputs, no eval crop margin."""
    return transform_config(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def write_image(path: Path, size=(20, 16), seed=0, mode="RGB") -> Path:
    """A random image of `size` (W, H) at `path`, format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def write_mask(path: Path, size=(20, 16), num_classes=3, seed=0, mode="L", value=None) -> Path:
    """A random mask of `size` (W, H) with values < num_classes, and one 255 pixel; `value` forces one
    pixel to that value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.random.default_rng(seed).integers(0, num_classes, (size[1], size[0]), dtype=np.uint8)
    values[0, 0] = 255
    if value is not None:
        values[1, 1] = value
    image = Image.fromarray(values)
    if mode == "P":
        image = image.convert("P")
        image.putpalette([c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)])
    elif mode != "L":
        image = image.convert(mode)
    image.save(path)
    return path


@pytest.fixture
def files():
    """The file writers above, for tests: `files.image(path, ...)`, `files.mask(path, ...)`."""
    return SimpleNamespace(image=write_image, mask=write_mask)


@pytest.fixture
def make_cls_folder(tmp_path):
    """`make(classes={"cat": 4, ...}, val={"cat": 2, ...} | None)` -> root of an ImageFolder dataset."""

    def make(classes=None, val=None, ext=".png", root=None):
        root = root or tmp_path / "cls"
        for split, counts in (("train", classes or {"cat": 5, "dog": 5}), ("val", val)):
            for k, (name, count) in enumerate((counts or {}).items()):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    write_image(root / split / name / f"{name}{i}{ext}", seed=100 * k + i)
        return root

    return make


@pytest.fixture
def make_seg_folder(tmp_path):
    """`make(train=6, val=2 | 0, classes=["bg", ...] | None, num_classes=3)` -> root of a seg dataset."""

    def make(train=6, val=0, classes=None, num_classes=3, root=None):
        root = root or tmp_path / "seg"
        for split, count in (("train", train), ("val", val)):
            for i in range(count):
                write_image(root / split / "images" / f"img{i}.jpg", seed=i)
                write_mask(root / split / "masks" / f"img{i}.png", num_classes=num_classes, seed=i)
        if classes is not None:
            (root / "classes.txt").write_text("\n".join(classes) + "\n")
        return root

    return make

"""The built-in synthetic dataset (`data="synthetic"`): procedurally drawn shapes, no download needed.

Classification: one object per image; the class is shape x texture (5 x 3 = 15 classes, named like
"circle-striped"). Everything else is a nuisance that never carries the class: object and texture colours
(uniform in the RGB cube), background colour and gradient, position, scale (circumradius 25-42 % of the
side), rotation, 2-5 distractor lines/blobs of random colour, stripe/checker period and orientation, and
Gaussian pixel noise (sigma 0-10 levels). Colour alone is therefore useless (the mean colour of an image
predicts its class at chance level) while a small CNN learns the task quickly.

Segmentation: 1-3 objects per image (circumradius 14-26 %, later objects drawn over earlier ones, texture
and colour random), the same background and clutter. Mask classes are "background" (0, clutter included)
and the five shapes (1-5). Pixels on an anti-aliased boundary whose sub-samples have no strict majority
label are 255 (ignore).

Scenes are rendered once, at the eval transform's `resize` size, into uint8 arrays; image `i` of a split
is a pure function of `(task, seed, split, i)`, so the same seed gives identical pixels, a larger split
extends a smaller one, and train and val (different `split`) never share a scene. The module needs numpy
only (the torch-free runtime renders its `--data synthetic` scenes with it); `SyntheticDataset` is a
map-style dataset that torch's DataLoader takes without subclassing torch's `Dataset`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sladkit.data import _scenes
from sladkit.data._scenes import SHAPES, TEXTURES

if TYPE_CHECKING:
    import torch

CLS_LABELS = [f"{shape}-{texture}" for shape in SHAPES for texture in TEXTURES]
SEG_LABELS = ["background", *SHAPES]
CLS_RADIUS = (0.25, 0.42)
SEG_RADIUS = (0.14, 0.26)
SEG_OBJECTS = (1, 3)  # inclusive range of objects per segmentation scene
TRAIN_SPLIT, VAL_SPLIT = 0, 1
TASK_KEYS = {"cls": 0, "seg": 1}


def synthetic_labels(task: str) -> list[str]:
    """Class names of the synthetic dataset for `task` ("cls" or "seg")."""
    return list(CLS_LABELS if task == "cls" else SEG_LABELS)


def _scene_rng(task: str, seed: int, split: int, index: int) -> np.random.Generator:
    # Keyed by task too, so classification and segmentation scenes differ for the same seed.
    return np.random.default_rng([TASK_KEYS[task], seed, split, index])


def render_classification(num: int, *, seed: int, split: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render classification scenes.

    Args:
        num: number of images.
        seed: dataset seed.
        split: TRAIN_SPLIT or VAL_SPLIT (any int gives an independent set of scenes).
        size: side of the square images in pixels.

    Returns:
        images (N, S, S, 3) uint8 and targets (N,) int64; classes are balanced (image i has class
        i mod 15).
    """
    images = np.empty((num, size, size, 3), dtype=np.uint8)
    targets = np.arange(num, dtype=np.int64) % len(CLS_LABELS)
    for i in range(num):
        rng = _scene_rng("cls", seed, split, i)
        shape, texture = divmod(int(targets[i]), len(TEXTURES))
        canvas, background = _scenes.draw_background(rng, size)
        canvas = _scenes.draw_clutter(rng, canvas, size)
        spec = _scenes.random_object(rng, shape, texture, CLS_RADIUS)
        _scenes.paint_object(rng, canvas, spec, size, background)
        images[i] = _scenes.finish(rng, canvas, size)
    return images, targets


def render_segmentation(num: int, *, seed: int, split: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render segmentation scenes.

    Args:
        num: number of images.
        seed: dataset seed.
        split: TRAIN_SPLIT or VAL_SPLIT (any int gives an independent set of scenes).
        size: side of the square images in pixels.

    Returns:
        images (N, S, S, 3) uint8 and masks (N, S, S) uint8 with values in 0..5 (indices into
        SEG_LABELS) or 255 on ambiguous boundary pixels.
    """
    images = np.empty((num, size, size, 3), dtype=np.uint8)
    masks = np.empty((num, size, size), dtype=np.uint8)
    side = size * _scenes.SUPERSAMPLE
    for i in range(num):
        rng = _scene_rng("seg", seed, split, i)
        canvas, background = _scenes.draw_background(rng, size)
        canvas = _scenes.draw_clutter(rng, canvas, size)
        labels = np.zeros((side, side), dtype=np.uint8)  # (W, W) supersampled label map
        for _ in range(int(rng.integers(SEG_OBJECTS[0], SEG_OBJECTS[1] + 1))):
            shape, texture = int(rng.integers(len(SHAPES))), int(rng.integers(len(TEXTURES)))
            spec = _scenes.random_object(rng, shape, texture, SEG_RADIUS)
            silhouette = _scenes.paint_object(rng, canvas, spec, size, background)
            labels[silhouette] = shape + 1
        images[i] = _scenes.finish(rng, canvas, size)
        masks[i] = _scenes.downsample_labels(labels, size)
    return images, masks


class SyntheticDataset:
    """Pre-rendered synthetic scenes with a transform applied on access.

    Items are `(image, label)` for classification (image (3, S, S) float32, label int) and
    `(image, mask)` for segmentation (mask (S, S) int64, 255 = ignore).
    """

    def __init__(self, task: str, images: np.ndarray, targets: np.ndarray, transform) -> None:
        self.task = task
        self.images = images  # (N, R, R, 3) uint8
        self.targets = targets  # (N,) int64 for cls, (N, R, R) uint8 for seg
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        if self.task == "cls":
            image, _ = self.transform(self.images[index], None)
            return image, int(self.targets[index])
        return self.transform(self.images[index], self.targets[index])


def create_synthetic_datasets(
    *, task: str, render_size: int, train_transform, eval_transform, seed: int, num_train: int, num_val: int
) -> tuple[SyntheticDataset, SyntheticDataset]:
    """Render the train and val splits (different scene seeds) and wrap them as datasets."""
    render = render_classification if task == "cls" else render_segmentation
    train = render(num_train, seed=seed, split=TRAIN_SPLIT, size=render_size)
    val = render(num_val, seed=seed, split=VAL_SPLIT, size=render_size)
    return SyntheticDataset(task, *train, train_transform), SyntheticDataset(task, *val, eval_transform)

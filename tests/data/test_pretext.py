"""sladkit.data.pretext: determinism, class count and balance, shapes, hue labels, datasets."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from sladkit.data import transform_config
from sladkit.data.pretext import (
    HUES,
    NUM_CLASSES,
    TRAIN_SPLIT,
    VAL_SPLIT,
    _grey,
    _main_colour,
    create_pretext_datasets,
    pretext_labels,
    render_pretext,
    split_label,
)
from sladkit.data.synthetic import render_classification


def test_same_seed_same_pixels():
    a_images, a_targets = render_pretext(20, seed=3, split=TRAIN_SPLIT, size=32)
    b_images, b_targets = render_pretext(20, seed=3, split=TRAIN_SPLIT, size=32)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_targets, b_targets)
    prefix, _ = render_pretext(5, seed=3, split=TRAIN_SPLIT, size=32)
    assert np.array_equal(prefix, a_images[:5])  # image i depends only on (seed, split, i)
    other, _ = render_pretext(20, seed=4, split=TRAIN_SPLIT, size=32)
    assert not np.array_equal(other, a_images)


def test_splits_and_downstream_scenes_differ():
    train, _ = render_pretext(100, seed=0, split=TRAIN_SPLIT, size=32)
    val, _ = render_pretext(100, seed=0, split=VAL_SPLIT, size=32)
    downstream, _ = render_classification(100, seed=0, split=TRAIN_SPLIT, size=32)
    train_hashes = {image.tobytes() for image in train}
    assert len(train_hashes) == len(train)
    assert not any(image.tobytes() in train_hashes for image in [*val, *downstream])


@pytest.mark.parametrize("size", [32, 48])
def test_shapes_and_balanced_labels(size):
    images, targets = render_pretext(2 * NUM_CLASSES, seed=0, split=TRAIN_SPLIT, size=size)
    assert images.shape == (2 * NUM_CLASSES, size, size, 3) and images.dtype == np.uint8
    assert targets.dtype == np.int64
    assert np.array_equal(np.bincount(targets, minlength=NUM_CLASSES), np.full(NUM_CLASSES, 2))


def test_labels():
    labels = pretext_labels()
    assert len(labels) == len(set(labels)) == NUM_CLASSES >= 30
    for label, name in enumerate(labels):
        shape, texture, hue = split_label(label)
        assert name.endswith(f"-{HUES[hue]}")
    assert labels[0] == "circle-solid-red"


@pytest.mark.parametrize("hue", range(len(HUES)))
def test_object_colours(hue):
    """The main colour lies in the central part of its hue bucket; the texture's second colour is grey."""
    rng = np.random.default_rng(hue)
    for _ in range(50):
        background = rng.uniform(0, 255, 3).astype(np.float32)
        main = _main_colour(rng, hue, background)
        h, s, _ = colorsys.rgb_to_hsv(*(main / 255.0))
        offset = (h * len(HUES) - hue + len(HUES) / 2) % len(HUES) - len(HUES) / 2  # in bucket widths
        assert abs(offset) <= 1 / 6 + 1e-4 and s >= 0.6 - 1e-4
        grey = _grey(rng, main)
        assert grey[0] == grey[1] == grey[2] and 0 <= grey[0] <= 255


def test_datasets_apply_transforms():
    cfg = transform_config(image_size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    train, val = create_pretext_datasets(transforms=cfg, seed=0, num_train=8, num_val=4)
    assert (len(train), len(val)) == (8, 4)
    image, label = val[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 1
    again, _ = val[1]
    assert torch.equal(image, again)  # eval transform is deterministic
    torch.manual_seed(0)
    augmented, label = train[0]
    assert augmented.shape == (3, 32, 32) and label == 0

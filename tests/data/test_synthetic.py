"""sladkit.data.synthetic: determinism, labels, masks, colour is a nuisance, and the task is learnable."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from sladkit.data.synthetic import (
    CLS_LABELS,
    SEG_LABELS,
    TRAIN_SPLIT,
    VAL_SPLIT,
    render_classification,
    render_segmentation,
    synthetic_labels,
)

RENDER = {"cls": render_classification, "seg": render_segmentation}


@pytest.fixture(scope="module")
def cls_data():
    """1500 train and 300 val classification scenes at 32 px."""
    train = render_classification(1500, seed=0, split=TRAIN_SPLIT, size=32)
    val = render_classification(300, seed=0, split=VAL_SPLIT, size=32)
    return train, val


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_same_seed_same_pixels(task):
    a_images, a_targets = RENDER[task](20, seed=3, split=TRAIN_SPLIT, size=32)
    b_images, b_targets = RENDER[task](20, seed=3, split=TRAIN_SPLIT, size=32)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_targets, b_targets)
    prefix, _ = RENDER[task](5, seed=3, split=TRAIN_SPLIT, size=32)
    assert np.array_equal(prefix, a_images[:5])  # image i depends only on (seed, split, i)
    other, _ = RENDER[task](20, seed=4, split=TRAIN_SPLIT, size=32)
    assert not np.array_equal(other, a_images)


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_train_and_val_do_not_overlap(task):
    train, _ = RENDER[task](200, seed=0, split=TRAIN_SPLIT, size=32)
    val, _ = RENDER[task](100, seed=0, split=VAL_SPLIT, size=32)
    train_hashes = {image.tobytes() for image in train}
    assert len(train_hashes) == len(train)
    assert not any(image.tobytes() in train_hashes for image in val)


def test_labels():
    assert synthetic_labels("cls") == CLS_LABELS
    assert len(CLS_LABELS) == len(set(CLS_LABELS)) >= 10
    assert "circle-striped" in CLS_LABELS
    assert all(len(name.split("-")) == 2 for name in CLS_LABELS)
    assert SEG_LABELS[0] == "background" and len(SEG_LABELS) >= 5
    assert synthetic_labels("seg") == SEG_LABELS


def test_classification_arrays(cls_data):
    (images, targets), _ = cls_data
    assert images.shape == (1500, 32, 32, 3) and images.dtype == np.uint8
    assert targets.dtype == np.int64
    assert np.bincount(targets).tolist() == [100] * len(CLS_LABELS)  # balanced


def test_segmentation_masks():
    images, masks = render_segmentation(200, seed=0, split=TRAIN_SPLIT, size=32)
    assert images.shape == (200, 32, 32, 3) and masks.shape == (200, 32, 32) and masks.dtype == np.uint8
    values = set(np.unique(masks).tolist())
    assert values <= set(range(len(SEG_LABELS))) | {255}
    assert set(range(len(SEG_LABELS))) <= values  # background and every shape occur
    ignored = (masks == 255).mean()
    assert 0 < ignored < 0.05  # only anti-aliased boundary pixels are ignored
    assert ((masks > 0) & (masks < 255)).mean() > 0.05


def test_segmentation_masks_follow_the_objects():
    # Background pixels are much closer to their image's border colour than object pixels are.
    images, masks = render_segmentation(50, seed=1, split=TRAIN_SPLIT, size=32)
    images = images.astype(np.float32)
    far_from_background = []
    for image, mask in zip(images, masks, strict=True):
        background = np.median(image[mask == 0], axis=0)
        distance = np.linalg.norm(image - background, axis=-1)  # (S, S)
        objects = (mask > 0) & (mask < 255)
        if objects.any():
            far_from_background.append(np.median(distance[objects]) > 2 * np.median(distance[mask == 0]))
    assert np.mean(far_from_background) > 0.9


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("task", ["cls", "seg"])
def test_other_render_sizes(task, size):
    images, targets = RENDER[task](3, seed=0, split=TRAIN_SPLIT, size=size)
    assert images.shape == (3, size, size, 3)
    if task == "seg":
        assert targets.shape == (3, size, size)


def test_rendering_is_fast():
    start = time.perf_counter()
    render_classification(500, seed=0, split=TRAIN_SPLIT, size=32)
    assert time.perf_counter() - start < 4.0  # ~0.4 s on one core; 2500 images take ~2 s


def _mean_colour(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1, 3).astype(np.float64).mean(1)  # (N, 3)


def _colour_histogram(images: np.ndarray) -> np.ndarray:
    """Fraction of pixels in each of 4 x 4 x 4 RGB bins: (N, 64). Blind to where the colours are."""
    bins = (images // 64).astype(np.int64)
    index = (bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]).reshape(len(images), -1)  # (N, S*S)
    return np.stack([np.bincount(row, minlength=64) for row in index]) / index.shape[1]


@pytest.mark.parametrize("features", [_mean_colour, _colour_histogram])
def test_colour_alone_is_at_chance(cls_data, features):
    # Nearest class centroid on colour features. If the object colour leaked the class, the histogram
    # version would score ~0.5 (checked by hand); the mean colour is diluted by the background.
    (train, train_y), (val, val_y) = cls_data
    train_features, val_features = features(train), features(val)
    centroids = np.stack([train_features[train_y == k].mean(0) for k in range(len(CLS_LABELS))])
    predicted = ((val_features[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    chance = 1 / len(CLS_LABELS)
    assert abs((predicted == val_y).mean() - chance) < 0.06


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


@pytest.fixture
def one_thread():
    """Run torch on one thread: as fast for these tiny convolutions, and robust on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_tiny_cnn_learns_the_task(cls_data, one_thread):
    (train, train_y), (val, val_y) = cls_data

    def prep(images):  # (N, S, S, 3) uint8 -> (N, 3, S, S) float
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25

    x, y, vx, vy = prep(train), torch.from_numpy(train_y), prep(val), torch.from_numpy(val_y)
    torch.manual_seed(0)
    model = nn.Sequential(
        _block(3, 16), nn.MaxPool2d(2), _block(16, 32), nn.MaxPool2d(2), _block(32, 64), nn.MaxPool2d(2),
        _block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(CLS_LABELS)),
    )  # fmt: skip
    epochs, batch = 12, 50
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 5e-3, total_steps=epochs * len(x) // batch)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x)).split(batch):
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(vx).argmax(1) == vy).float().mean().item()
    assert accuracy > 0.35  # chance is 1/15 ~ 0.07; typically ~0.6 after ~4 s

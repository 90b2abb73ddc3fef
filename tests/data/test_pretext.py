"""sladkit.data.pretext: determinism, label space, families, dense targets, and not the downstream task."""

from __future__ import annotations

import pytest
import torch

from sladkit.data.pretext import (
    BACKGROUND,
    FAMILIES,
    FAMILY_CLASSES,
    IGNORE,
    NUM_CLASSES,
    OFFSETS,
    PretextGenerator,
    batch_generator,
    family_of,
    pretext_labels,
)
from sladkit.data.synthetic import synthetic_labels


@pytest.fixture(scope="module")
def gen():
    return PretextGenerator(32, 8)


@pytest.fixture(scope="module")
def batch(gen):
    return gen.batch(256, batch_generator(0, 0, "cpu"))


def test_batches_are_pure_functions_of_seed_and_step(gen):
    a = gen.batch(24, batch_generator(3, 7, "cpu"))
    b = gen.batch(24, batch_generator(3, 7, "cpu"))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.patch_labels, b.patch_labels)
    for other in (batch_generator(3, 8, "cpu"), batch_generator(4, 7, "cpu")):
        assert not torch.equal(gen.batch(24, other).images, a.images)


def test_shapes_ranges_and_label_space(batch):
    assert batch.images.shape == (256, 3, 32, 32) and batch.images.dtype == torch.float32
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.labels.dtype == torch.int64 and batch.labels.min() >= 0 and batch.labels.max() < NUM_CLASSES
    assert batch.patch_labels.shape == (256, 4, 4)
    values = set(batch.patch_labels.unique().tolist())
    assert BACKGROUND in values and IGNORE in values and len(values) > 50
    # a patch is labelled with its image's class, the background, or ignored
    same = batch.patch_labels == batch.labels[:, None, None]
    assert ((batch.patch_labels == BACKGROUND) | (batch.patch_labels == IGNORE) | same).all()


def test_labels_and_families():
    names = pretext_labels()
    assert len(names) == len(set(names)) == NUM_CLASSES == sum(FAMILY_CLASSES.values())
    for family in FAMILIES:
        first = OFFSETS[family]
        assert names[first].startswith(family)
        assert names[first + FAMILY_CLASSES[family] - 1].startswith(family)
        assert (
            family_of(torch.tensor([first, first + FAMILY_CLASSES[family] - 1])).tolist()
            == [FAMILIES.index(family)] * 2
        )


def test_every_family_and_most_classes_are_drawn(batch):
    families = family_of(batch.labels).bincount(minlength=len(FAMILIES))
    assert (families > 8).all()
    assert len(batch.labels.unique()) > 0.7 * NUM_CLASSES


def test_images_are_not_constant_and_differ(batch):
    assert (batch.images.flatten(1).std(1) > 0.01).all()
    flat = batch.images.flatten(1)
    assert len({tuple(row[:64].tolist()) for row in flat}) == len(flat)


def test_texture_images_are_all_foreground(batch):
    texture = family_of(batch.labels) == FAMILIES.index("texture")
    assert (batch.patch_labels[texture] == batch.labels[texture, None, None]).all()


def test_not_a_relabelling_of_the_downstream_task():
    """No pretext class is a downstream class (shape x texture of one object)."""
    names = set(pretext_labels())
    downstream = synthetic_labels("cls")
    assert not names & set(downstream)
    assert not any(name.removeprefix("shape-") in downstream for name in names)


def test_patch_must_divide_size():
    with pytest.raises(ValueError, match="does not divide"):
        PretextGenerator(30, 8)


def test_other_sizes(gen):
    big = PretextGenerator(64, 16).batch(16, batch_generator(0, 0, "cpu"))
    assert big.images.shape == (16, 3, 64, 64) and big.patch_labels.shape == (16, 4, 4)

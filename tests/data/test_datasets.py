"""create_datasets on the synthetic data: items, DataLoader workers, reproducibility, options."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from sladkit.data import SYNTHETIC, DatasetSplits, create_datasets, transform_config
from sladkit.errors import ConfigError

CFG = transform_config(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=0.8)


@pytest.fixture(scope="module")
def splits():
    """Small synthetic splits of both tasks."""
    return {
        task: create_datasets(task=task, data=SYNTHETIC, transforms=CFG, synthetic_train=64, synthetic_val=32)
        for task in ("cls", "seg")
    }


def test_splits_describe_the_data(splits):
    cls, seg = splits["cls"], splits["seg"]
    assert isinstance(cls, DatasetSplits)
    assert (cls.task, cls.source, cls.skipped) == ("cls", "synthetic", [])
    assert len(cls.train) == 64 and len(cls.val) == 32
    assert len(cls.labels) >= 10 and seg.labels[0] == "background" and len(seg.labels) >= 5
    assert cls.train.images.shape[1:] == (40, 40, 3)  # rendered at the eval resize size int(32 / 0.8)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("task", ["cls", "seg"])
def test_batches_through_a_dataloader(splits, task, workers):
    data = splits[task]
    for dataset in (data.train, data.val):
        loader = DataLoader(dataset, batch_size=16, num_workers=workers, shuffle=True)
        images, targets = next(iter(loader))
        assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
        assert targets.dtype == torch.int64
        if task == "cls":
            assert targets.shape == (16,)
            assert targets.min() >= 0 and targets.max() < len(data.labels)
        else:
            assert targets.shape == (16, 32, 32)
            valid = targets[targets != 255]
            assert valid.min() >= 0 and valid.max() < len(data.labels)


def test_single_items(splits):
    image, label = splits["cls"].train[0]
    assert type(label) is int and image.shape == (3, 32, 32)
    image, mask = splits["seg"].val[0]
    assert mask.shape == (32, 32) and mask.dtype == torch.int64


def test_eval_items_are_deterministic(splits):
    val = splits["cls"].val
    torch.manual_seed(0)
    first = val[3][0]
    torch.manual_seed(1)
    assert torch.equal(first, val[3][0])


@pytest.mark.parametrize("workers", [0, 2])
def test_seeding_torch_repeats_an_epoch(splits, workers):
    loader = DataLoader(splits["seg"].train, batch_size=16, num_workers=workers, shuffle=True)

    def epoch():
        torch.manual_seed(7)
        return [batch for batch in loader]

    first, second = epoch(), epoch()
    for (a_images, a_masks), (b_images, b_masks) in zip(first, second, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_masks, b_masks)
    torch.manual_seed(8)
    other = next(iter(loader))
    assert not torch.equal(other[0], first[0][0])


def test_datasets_pickle(splits):
    for task in ("cls", "seg"):
        dataset = pickle.loads(pickle.dumps(splits[task].train))
        assert len(dataset) == 64 and dataset[0][0].shape == (3, 32, 32)


def test_same_seed_same_synthetic_pixels():
    kwargs = dict(task="cls", data=SYNTHETIC, transforms=CFG, synthetic_train=8, synthetic_val=8)
    a, b = create_datasets(seed=1, **kwargs), create_datasets(seed=1, **kwargs)
    assert (a.train.images == b.train.images).all() and (a.val.images == b.val.images).all()
    assert not (create_datasets(seed=2, **kwargs).train.images == a.train.images).all()


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"task": "det"}, "unknown task 'det'"),
        ({"val_fraction": 0.0}, "val_fraction=0.0"),
        ({"val_fraction": 1.0}, "val_fraction=1.0"),
        ({"val_fraction": -0.5}, "0 < val_fraction < 1"),
        ({"seed": -1}, "seed=-1"),
        ({"synthetic_train": 0}, "synthetic_train=0"),
        ({"transforms": {"image_size": 32}}, "transform config lacks"),
    ],
)
def test_bad_options_raise_config_error(changes, words):
    kwargs = dict(task="cls", data=SYNTHETIC, transforms=CFG, synthetic_train=4, synthetic_val=4) | changes
    with pytest.raises(ConfigError, match=words):
        create_datasets(**kwargs)

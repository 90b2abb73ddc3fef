"""`create_datasets`: the one entry point from a `data` argument to train and val datasets.

`data` is either `SYNTHETIC` (the built-in procedurally drawn dataset, `synthetic.py`) or a folder
(`folders.py` describes the layouts). Items are `(image, label)` for classification and `(image, mask)`
for segmentation, ready for a DataLoader with default collation and any number of workers. Training
augmentations draw from torch's global RNG, so seeding torch at the start of an epoch makes it repeat.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from sladkit.data.folders import create_classification_folders, create_segmentation_folders
from sladkit.data.synthetic import create_synthetic_datasets, synthetic_labels
from sladkit.data.transforms import TASKS, check_transform_config, create_transforms
from sladkit.errors import ConfigError

SYNTHETIC = "synthetic"


@dataclass
class DatasetSplits:
    """The train and val datasets of one task and where they came from.

    Attributes:
        task: "cls" (items `(image (3, S, S) float32, label int)`) or "seg" (items
            `(image (3, S, S) float32, mask (S, S) int64)`, 255 = ignore).
        train: training dataset, with the random train transform.
        val: validation dataset, with the deterministic eval transform.
        labels: class names, index = label; for synthetic segmentation index 0 is "background".
        source: "synthetic" or the resolved absolute folder path.
        skipped: paths of unreadable images that were left out (empty when none).
    """

    task: str
    train: Dataset
    val: Dataset
    labels: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)


def _check_options(
    task: str, val_fraction: float, seed: int, synthetic_train: int, synthetic_val: int
) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not 0 < val_fraction < 1:
        raise ConfigError(
            f"val_fraction={val_fraction} is out of range; expected 0 < val_fraction < 1, e.g. 0.2"
        )
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is invalid; expected a non-negative integer")
    for name, value in (("synthetic_train", synthetic_train), ("synthetic_val", synthetic_val)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} is invalid; expected a positive number of images")


def create_datasets(
    *,
    task: str,
    data: str | os.PathLike,
    transforms: dict[str, Any],
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    synthetic_train: int = 2000,
    synthetic_val: int = 500,
    augment: bool = True,
) -> DatasetSplits:
    """Create the train and val datasets.

    Args:
        task: "cls" (classification) or "seg" (semantic segmentation).
        data: `SYNTHETIC` ("synthetic") or a dataset folder (layouts in `sladkit.data.folders`).
        transforms: the transform config from `transform_config`; the synthetic scenes are rendered at its
            eval resize size.
        val_fraction: fraction of train used for val when a folder has no val/ split, in (0, 1).
        seed: seed of the synthetic scenes and of the train/val split.
        strict: raise a DataError on an unreadable image instead of skipping it with a warning.
        synthetic_train: number of synthetic training images.
        synthetic_val: number of synthetic validation images.
        augment: apply the random train transform to train (False: the eval transform, e.g. to calibrate).

    Returns:
        The DatasetSplits.

    Raises:
        ConfigError: an invalid option.
        DataError: a missing, malformed or inconsistent dataset folder.
    """
    _check_options(task, val_fraction, seed, synthetic_train, synthetic_val)
    check_transform_config(transforms)
    train_transform = create_transforms(transforms, train=augment, task=task)
    eval_transform = create_transforms(transforms, train=False, task=task)

    if str(data) == SYNTHETIC:
        train, val = create_synthetic_datasets(
            task=task,
            render_size=transforms["eval"]["resize"],
            train_transform=train_transform,
            eval_transform=eval_transform,
            seed=seed,
            num_train=synthetic_train,
            num_val=synthetic_val,
        )
        return DatasetSplits(task, train, val, synthetic_labels(task), SYNTHETIC, [])

    root = Path(data).expanduser().resolve()
    create = create_classification_folders if task == "cls" else create_segmentation_folders
    train, val, labels, skipped = create(
        root,
        train_transform=train_transform,
        eval_transform=eval_transform,
        val_fraction=val_fraction,
        seed=seed,
        strict=strict,
    )
    return DatasetSplits(task, train, val, labels, str(root), skipped)

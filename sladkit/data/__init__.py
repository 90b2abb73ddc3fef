"""Datasets and transforms: the built-in synthetic dataset, image folders, segmentation folders.

`create_datasets(task=..., data=..., transforms=transform_config(...))` returns the train and val splits
of either the synthetic dataset (`data="synthetic"`) or a folder on disk. The public names are loaded
lazily so that `sladkit.data.transforms` (whose eval preprocessing the torch-free runtime reuses) can be
imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sladkit.data.datasets import SYNTHETIC, DatasetSplits, create_datasets
    from sladkit.data.transforms import create_transforms, transform_config

__all__ = ["SYNTHETIC", "DatasetSplits", "create_datasets", "create_transforms", "transform_config"]

_HOMES = {
    "SYNTHETIC": "sladkit.data.datasets",
    "DatasetSplits": "sladkit.data.datasets",
    "create_datasets": "sladkit.data.datasets",
    "create_transforms": "sladkit.data.transforms",
    "transform_config": "sladkit.data.transforms",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'sladkit.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

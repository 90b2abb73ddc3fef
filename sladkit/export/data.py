"""Images for export's checks and calibration, preprocessed exactly as the run's config.json says."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sladkit.data import create_datasets
from sladkit.data.images import ImageReadError, load_rgb
from sladkit.data.transforms import preprocess_eval
from sladkit.errors import DataError

MIN_CALIB_IMAGES = 8


def _splits(run_config: dict, *, augment: bool):
    train = run_config["train"]
    return create_datasets(
        task=run_config["task"],
        data=run_config["data"]["source"],
        transforms=run_config["transforms"],
        val_fraction=train["val_fraction"],
        seed=train["seed"],
        strict=False,
        synthetic_train=train["synthetic_train"],
        synthetic_val=train["synthetic_val"],
        augment=augment,
    )


def _stack(dataset, indices) -> tuple[np.ndarray, np.ndarray]:
    items = [dataset[int(i)] for i in indices]
    images = np.stack([np.asarray(image, dtype=np.float32) for image, _ in items])
    targets = np.stack([np.asarray(target) for _, target in items])
    return images, targets


def validation_arrays(run_config: dict, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's validation images (N, 3, S, S) float32, normalised, and their labels or masks."""
    val = _splits(run_config, augment=False).val
    return _stack(val, range(min(limit, len(val))))


def calibration_array(
    run_config: dict, calib_data: str | None, count: int, *, seed: int = 0
) -> tuple[np.ndarray, str]:
    """`count` calibration images (N, 3, S, S): a seeded sample of the run's training data, or of a folder.

    Returns:
        The images and a description of where they came from.
    """
    rng = np.random.default_rng(seed)
    if calib_data is None:
        train = _splits(run_config, augment=False).train
        indices = rng.permutation(len(train))[:count]
        return _stack(train, indices)[0], f"{run_config['data']['source']} (train split)"

    from sladkit.data._files import list_images

    folder = Path(calib_data)
    if not folder.is_dir():
        raise DataError(
            f"calibration folder {folder} does not exist; pass a folder of images to --calib-data"
        )
    paths = list_images(folder, recursive=True)
    if not paths:
        raise DataError(
            f"calibration folder {folder} holds no images (.jpg, .png, ...); point --calib-data at images"
        )
    paths = [paths[i] for i in rng.permutation(len(paths))[:count]]
    images, unreadable = [], []
    for path in paths:
        try:
            images.append(preprocess_eval(run_config["transforms"], load_rgb(path)))
        except ImageReadError as e:
            unreadable.append(e)
    skipped = (
        f"{len(unreadable)} unreadable, first {unreadable[0].path}: {unreadable[0].reason}"
        if unreadable
        else ""
    )
    if len(images) < MIN_CALIB_IMAGES:
        detail = f" ({skipped})" if skipped else ""
        raise DataError(
            f"calibration folder {folder} has {len(images)} readable images{detail}; at least {MIN_CALIB_IMAGES} "
            "are needed (a few hundred are better)"
        )
    if skipped:
        warnings.warn(
            f"calibration skipped images of {folder} ({skipped}); replace or remove them", stacklevel=2
        )
    return np.stack(images), str(folder.resolve())

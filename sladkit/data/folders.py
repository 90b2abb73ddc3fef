"""Datasets read from folders on disk: image classification and semantic segmentation.

Classification (ImageFolder layout)::

    DIR/train/<class>/*.jpg        one subfolder per class (subfolders inside it are searched too)
    DIR/val/<class>/*.jpg          optional; the same classes as train

Segmentation::

    DIR/train/images/*.jpg         any of IMAGE_EXTENSIONS
    DIR/train/masks/*.png          same stem as its image; pixel value = class index, 255 = ignore
    DIR/val/images, DIR/val/masks  optional
    DIR/classes.txt                optional, one class name per line (index 0 first)

Without `val/`, a seeded `val_fraction` of train becomes val (stratified by class for classification).
Classes are the sorted class folder names (classification) or the lines of classes.txt, else
`class0..classK` with K the largest mask value other than 255, each of 0..K found in some mask
(segmentation). Every image is opened and
decoded once when the dataset is built; unreadable ones are skipped with a warning (or, with `strict`,
raise a DataError). Masks are always read and checked (size, mode, values); a bad mask is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sladkit.data._files import (
    IMAGE_EXTENSIONS,
    check_val_fraction,
    list_images,
    list_subfolders,
    parallel_map,
    probe_image,
    report_unreadable,
    split_indices,
    stratified_split,
)
from sladkit.data.images import load_mask, load_rgb
from sladkit.errors import DataError

CLS_LAYOUT = "DIR/train/<class>/<image> (optionally DIR/val/<class>/<image>)"
SEG_LAYOUT = (
    "DIR/train/images/<name>.jpg with DIR/train/masks/<name>.png "
    "(optionally DIR/val/images, DIR/val/masks and DIR/classes.txt)"
)
IGNORE_INDEX = 255


class ImageFolderDataset(Dataset):
    """Classification images on disk; items are `(image (3, S, S) float32, label int)`."""

    def __init__(self, paths: list[str], targets: list[int], transform) -> None:
        self.paths = paths
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        tensor, _ = self.transform(load_rgb(self.paths[index]), None)
        return tensor, self.targets[index]


class SegmentationFolderDataset(Dataset):
    """Images and masks on disk; items are `(image (3, S, S) float32, mask (S, S) int64)`."""

    def __init__(self, image_paths: list[str], mask_paths: list[str], transform) -> None:
        self.image_paths = image_paths
        self.mask_paths = mask_paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(load_rgb(self.image_paths[index]), load_mask(self.mask_paths[index]))


def _check_root(root: Path, task: str) -> None:
    layout = CLS_LAYOUT if task == "cls" else SEG_LAYOUT
    if not root.exists():
        raise DataError(
            f"data folder {root} does not exist; expected 'synthetic' or a folder laid out as {layout}"
        )
    if not root.is_dir():
        raise DataError(f"data path {root} is a file; expected 'synthetic' or a folder laid out as {layout}")
    entries = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DataError(f"data folder {root} is empty; expected the layout {layout}")
    if not (root / "train").is_dir():
        found = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise DataError(
            f"data folder {root} has no train/ folder (found: {found}); expected the layout {layout}"
        )


def _class_images(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        found = list_images(split_dir / name, recursive=True)
        if not found:
            raise DataError(
                f"class folder {split_dir / name} has no images; expected files ending in "
                f"{' '.join(IMAGE_EXTENSIONS)}; add images or remove the folder"
            )
        paths += found
        targets += [index] * len(found)
    return paths, targets


def _classification_classes(root: Path) -> list[str]:
    train = root / "train"
    classes = list_subfolders(train)
    if set(classes) >= {"images", "masks"}:
        raise DataError(
            f"{train} holds images/ and masks/, a segmentation layout; use task='seg', or for classification "
            f"lay it out as {CLS_LAYOUT}"
        )
    if len(classes) < 2:
        loose = len(list_images(train, recursive=False))
        found = f"{len(classes)} class folder(s)" + (f" and {loose} loose image(s)" if loose else "")
        raise DataError(f"{train} has {found}; expected at least 2 class folders: {CLS_LAYOUT}")
    val = root / "val"
    if val.is_dir() and list_subfolders(val) != classes:
        missing = sorted(set(classes) - set(list_subfolders(val)))
        extra = sorted(set(list_subfolders(val)) - set(classes))
        raise DataError(
            f"{val} has other classes than {train} (missing in val: {missing or 'none'}; "
            f"not in train: {extra or 'none'}); expected the same class folders in both"
        )
    return classes


def create_classification_folders(
    root: Path, *, train_transform, eval_transform, val_fraction: float, seed: int, strict: bool
) -> tuple[ImageFolderDataset, ImageFolderDataset, list[str], list[str]]:
    """Build train and val datasets from an ImageFolder-style directory.

    Returns:
        (train dataset, val dataset, class names, skipped unreadable image paths).
    """
    _check_root(root, "cls")
    classes = _classification_classes(root)
    splits = {"train": _class_images(root / "train", classes)}
    if (root / "val").is_dir():
        splits["val"] = _class_images(root / "val", classes)

    unreadable: list[tuple[Path, str]] = []
    for name, (paths, targets) in splits.items():
        probes = parallel_map(probe_image, paths)
        unreadable += [(p, reason) for p, (size, reason) in zip(paths, probes, strict=True) if size is None]
        keep = [i for i, (size, _) in enumerate(probes) if size is not None]
        splits[name] = ([paths[i] for i in keep], [targets[i] for i in keep])
    skipped = report_unreadable(unreadable, root=root, strict=strict)
    for name, (_, targets) in splits.items():
        for index in sorted(set(range(len(classes))) - set(targets)):
            raise DataError(
                f"class folder {root / name / classes[index]} has no readable images; "
                "replace the broken files or remove the folder"
            )

    if "val" in splits:
        (train_paths, train_targets), (val_paths, val_targets) = splits["train"], splits["val"]
    else:
        paths, targets = splits["train"]
        train_idx, val_idx = stratified_split(targets, val_fraction, seed)
        check_val_fraction(val_fraction, len(paths), len(val_idx), root / "train")
        train_paths, train_targets = [paths[i] for i in train_idx], [targets[i] for i in train_idx]
        val_paths, val_targets = [paths[i] for i in val_idx], [targets[i] for i in val_idx]
    train = ImageFolderDataset([str(p) for p in train_paths], train_targets, train_transform)
    val = ImageFolderDataset([str(p) for p in val_paths], val_targets, eval_transform)
    return train, val, classes, skipped


def _pair_masks(split_dir: Path) -> tuple[list[Path], list[Path]]:
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist; expected the segmentation layout {SEG_LAYOUT}")
    images = list_images(images_dir, recursive=False)
    if not images:
        raise DataError(f"{images_dir} has no images; expected files ending in {' '.join(IMAGE_EXTENSIONS)}")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise DataError(
                f"{images_dir} has two images named {path.stem!r} ({stems[path.stem].name}, {path.name}); "
                "expected unique names, since a mask is matched by name"
            )
        stems[path.stem] = path
    masks = {p.stem: p for p in masks_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    missing = [stem for stem in stems if stem not in masks]
    if missing:
        raise DataError(
            f"no mask for image {stems[missing[0]].name} (expected {masks_dir / (missing[0] + '.png')}); "
            f"{len(missing)} image(s) lack a mask; add the masks or remove those images"
        )
    return images, [masks[p.stem] for p in images]


def _read_mask(path: Path) -> tuple[tuple[int, int], set[int]]:
    """Decode a mask; returns ((width, height), its values other than IGNORE_INDEX)."""
    array = load_mask(path)
    values = np.unique(array)
    values = values[values != IGNORE_INDEX]
    return (array.shape[1], array.shape[0]), {int(v) for v in values}


def _read_classes_txt(root: Path) -> list[str] | None:
    path = root / "classes.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError(f"{path} lists {len(names)} class(es); expected one name per line, at least 2")
    return names


def create_segmentation_folders(
    root: Path, *, train_transform, eval_transform, val_fraction: float, seed: int, strict: bool
) -> tuple[SegmentationFolderDataset, SegmentationFolderDataset, list[str], list[str]]:
    """Build train and val datasets from an images/ + masks/ directory.

    Returns:
        (train dataset, val dataset, class names, skipped unreadable image paths).
    """
    _check_root(root, "seg")
    classes = _read_classes_txt(root)
    splits = {
        name: _pair_masks(root / name)
        for name in ("train", "val")
        if name == "train" or (root / name).is_dir()
    }

    unreadable: list[tuple[Path, str]] = []
    largest, largest_mask, seen = -1, None, set()
    for name, (images, masks) in splits.items():
        probes = parallel_map(probe_image, images)
        mask_infos = parallel_map(_read_mask, masks)
        keep = []
        for i, ((size, reason), (mask_size, mask_values)) in enumerate(zip(probes, mask_infos, strict=True)):
            mask_max = max(mask_values, default=-1)
            if classes is not None and mask_max >= len(classes):
                raise DataError(
                    f"mask {masks[i]} has value {mask_max}, but {root / 'classes.txt'} lists {len(classes)} "
                    f"classes (values 0..{len(classes) - 1}, 255 = ignore); fix the mask or add class names"
                )
            if mask_max > largest:
                largest, largest_mask = mask_max, masks[i]
            seen |= mask_values
            if size is None:
                unreadable.append((images[i], reason))
                continue
            if mask_size != size:
                raise DataError(
                    f"mask {masks[i]} is {mask_size[0]}x{mask_size[1]} but its image {images[i].name} is "
                    f"{size[0]}x{size[1]} (WxH); expected a mask of the same size as its image"
                )
            keep.append(i)
        splits[name] = ([images[i] for i in keep], [masks[i] for i in keep])
    skipped = report_unreadable(unreadable, root=root, strict=strict)
    for name, (images, _) in splits.items():
        if not images:
            raise DataError(f"{root / name / 'images'} has no readable images; replace the broken files")

    if classes is None:
        if largest < 1:
            raise DataError(
                f"the masks under {root} only hold class 0 (and 255 = ignore); expected at least 2 classes, "
                "with pixel values as class indices"
            )
        absent = [v for v in range(largest + 1) if v not in seen]
        if absent:  # e.g. a stray 254 would make 255 classes, most of them never seen
            raise DataError(
                f"mask {largest_mask} has value {largest}, but {len(absent)} value(s) below it (e.g. {absent[0]}) "
                f"occur in no mask, and without {root / 'classes.txt'} the classes are 0..{largest}; set stray "
                "pixels to 255 (ignore) or a real class, or list the class names in classes.txt"
            )
        classes = [f"class{i}" for i in range(largest + 1)]

    if "val" in splits:
        train_pairs, val_pairs = splits["train"], splits["val"]
    else:
        images, masks = splits["train"]
        train_idx, val_idx = split_indices(len(images), val_fraction, seed)
        check_val_fraction(val_fraction, len(images), len(val_idx), root / "train")
        train_pairs = ([images[i] for i in train_idx], [masks[i] for i in train_idx])
        val_pairs = ([images[i] for i in val_idx], [masks[i] for i in val_idx])
    train = SegmentationFolderDataset(*_as_str(train_pairs), train_transform)
    val = SegmentationFolderDataset(*_as_str(val_pairs), eval_transform)
    return train, val, classes, skipped


def _as_str(pairs: tuple[list[Path], list[Path]]) -> tuple[list[str], list[str]]:
    return [str(p) for p in pairs[0]], [str(p) for p in pairs[1]]

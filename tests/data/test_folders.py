"""sladkit.data.folders: classification and segmentation folders, splits, bad input, unreadable images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sladkit.data import create_datasets
from sladkit.errors import ConfigError, DataError


def _create(root, cfg, task="cls", **kwargs):
    return create_datasets(task=task, data=str(root), transforms=cfg, **kwargs)


def _corrupt(path: Path) -> Path:
    """Keep the first half of a valid file: a truncated image."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# Classification ---------------------------------------------------------------------------------------


def test_classification_with_val_folder(make_cls_folder, cfg32):
    root = make_cls_folder(classes={"dog": 3, "cat": 4, "emu": 2}, val={"dog": 1, "cat": 2, "emu": 1})
    data = _create(root, cfg32)
    assert data.labels == ["cat", "dog", "emu"]  # sorted folder names
    assert data.source == str(root.resolve()) and Path(data.source).is_absolute()
    assert (len(data.train), len(data.val), data.skipped) == (9, 4, [])
    assert sorted(data.val.targets) == [0, 0, 1, 2]
    images, labels = next(iter(DataLoader(data.train, batch_size=9, num_workers=2)))
    assert images.shape == (9, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == [0] * 4 + [1] * 3 + [2] * 2


def test_extensions_are_case_insensitive_and_others_ignored(tmp_path, files, cfg32):
    root = tmp_path / "mixed"
    for i, ext in enumerate([".JPG", ".jpeg", ".png", ".bmp", ".webp", ".TIF", ".tiff"]):
        files.image(root / "train" / ("a" if i % 2 else "b") / f"x{i}{ext}", seed=i)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    files.image(root / "train" / "a" / "nested" / "deep.png")  # class folders are searched recursively
    data = _create(root, cfg32, val_fraction=0.3)
    assert len(data.train) + len(data.val) == 8
    assert not any(p.endswith(".txt") for p in data.train.paths + data.val.paths)


def test_split_is_seeded_and_stratified(make_cls_folder, cfg32):
    root = make_cls_folder(classes={"a": 10, "b": 10, "c": 10})
    first, again, other = (_create(root, cfg32, seed=seed, val_fraction=0.2) for seed in (0, 0, 1))
    assert first.val.paths == again.val.paths and first.train.paths == again.train.paths
    assert first.val.paths != other.val.paths
    assert sorted(first.val.targets) == [0, 0, 1, 1, 2, 2]  # 2 of 10 from each class
    assert not set(first.val.paths) & set(first.train.paths)
    assert len(first.train) + len(first.val) == 30


# Segmentation ---------------------------------------------------------------------------------------


def test_segmentation_with_classes_txt_and_val(make_seg_folder, cfg32):
    root = make_seg_folder(train=4, val=2, classes=["bg", "road", "car", "tree"])
    data = _create(root, cfg32, task="seg")
    assert data.labels == ["bg", "road", "car", "tree"]
    assert (len(data.train), len(data.val)) == (4, 2)
    images, masks = next(iter(DataLoader(data.val, batch_size=2, num_workers=0)))
    assert images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0, 1, 2, 255}


def test_segmentation_classes_inferred_and_mask_values_kept(make_seg_folder, files):
    root = make_seg_folder(train=5, num_classes=4)
    files.mask(root / "train" / "masks" / "img0.png", num_classes=4, mode="P")  # palette masks hold indices
    cfg = {"image_size": 16, "mean": [0, 0, 0], "std": [1, 1, 1], "interpolation": "bicubic"}
    cfg |= {"train": {"random_resized_crop": {"scale": [1, 1], "ratio": [1, 1]}, "hflip": 0.0}}
    cfg |= {"eval": {"resize": 16, "center_crop": 16}}  # 20x16 images: only a 2 px horizontal crop
    data = _create(root, cfg, task="seg", val_fraction=0.4)
    assert data.labels == ["class0", "class1", "class2", "class3"]
    assert (len(data.train), len(data.val)) == (3, 2)
    image_path, mask_path = data.val.image_paths[0], data.val.mask_paths[0]
    assert Path(image_path).stem == Path(mask_path).stem
    _, mask = data.val[0]
    expected = np.asarray(Image.open(mask_path))[:, 2:18]
    assert np.array_equal(mask.numpy(), expected)


def test_segmentation_split_is_seeded(make_seg_folder, cfg32):
    root = make_seg_folder(train=10)
    a, b = (_create(root, cfg32, task="seg", seed=seed) for seed in (3, 3))
    c = _create(root, cfg32, task="seg", seed=4)
    assert a.val.image_paths == b.val.image_paths != c.val.image_paths
    assert len(a.val) == 2 and not set(a.val.image_paths) & set(a.train.image_paths)


# Bad input --------------------------------------------------------------------------------------------


def _empty(tmp_path, files):
    (tmp_path / "d").mkdir()
    return tmp_path / "d"


def _file(tmp_path, files):
    (tmp_path / "d.zip").write_bytes(b"zip")
    return tmp_path / "d.zip"


def _no_train(tmp_path, files):
    files.image(tmp_path / "d" / "cat" / "a.png")
    return tmp_path / "d"


def _empty_class(tmp_path, files):
    files.image(tmp_path / "d" / "train" / "cat" / "a.png")
    files.image(tmp_path / "d" / "train" / "dog" / "a.png")
    (tmp_path / "d" / "train" / "emu").mkdir()
    (tmp_path / "d" / "train" / "emu" / "readme.txt").write_text("x")
    return tmp_path / "d"


def _val_classes_differ(tmp_path, files):
    for split, names in (("train", ["cat", "dog", "emu"]), ("val", ["cat", "dog", "owl"])):
        for name in names:
            files.image(tmp_path / "d" / split / name / "a.png")
    return tmp_path / "d"


def _one_class(tmp_path, files):
    for i in range(3):
        files.image(tmp_path / "d" / "train" / "cat" / f"{i}.png")
    return tmp_path / "d"


def _seg_layout_as_cls(tmp_path, files):
    files.image(tmp_path / "d" / "train" / "images" / "a.png")
    files.mask(tmp_path / "d" / "train" / "masks" / "a.png")
    return tmp_path / "d"


def _too_few_for_val(tmp_path, files):
    for name in ("cat", "dog"):
        files.image(tmp_path / "d" / "train" / name / "a.png")
    return tmp_path / "d"


CLS_CASES = {
    "missing": (
        lambda t, files: t / "nope",
        r"data folder .*nope does not exist; expected 'synthetic' or .*train/<class>",
    ),
    "file": (_file, r"d\.zip is a file"),
    "empty": (_empty, r"data folder .*d is empty; expected the layout DIR/train/<class>"),
    "no_train": (_no_train, r"has no train/ folder \(found: cat\)"),
    "empty_class": (_empty_class, r"class folder .*train/emu has no images"),
    "val_classes": (_val_classes_differ, r"missing in val: \['emu'\]; not in train: \['owl'\]"),
    "one_class": (_one_class, r"has 1 class folder\(s\); expected at least 2"),
    "seg_layout": (_seg_layout_as_cls, r"segmentation layout; use task='seg'"),
    "too_few_for_val": (_too_few_for_val, r"splitting 2 image\(s\).*leaves no image for val"),
}


@pytest.mark.parametrize("case", list(CLS_CASES))
def test_bad_classification_folders(case, tmp_path, files, cfg32):
    make, message = CLS_CASES[case]
    with pytest.raises(DataError, match=message) as error:
        _create(make(tmp_path, files), cfg32)
    assert "\n" not in str(error.value)


def _seg(tmp_path, files, n=3, classes=None):
    root = tmp_path / "d"
    for i in range(n):
        files.image(root / "train" / "images" / f"im{i}.png", seed=i)
        files.mask(root / "train" / "masks" / f"im{i}.png", seed=i)
    if classes:
        (root / "classes.txt").write_text("\n".join(classes))
    return root


def _no_masks_folder(tmp_path, files):
    files.image(tmp_path / "d" / "train" / "images" / "a.png")
    return tmp_path / "d"


def _mask_missing(tmp_path, files):
    root = _seg(tmp_path, files)
    (root / "train" / "masks" / "im1.png").unlink()
    return root


def _mask_size(tmp_path, files):
    root = _seg(tmp_path, files)
    files.mask(root / "train" / "masks" / "im2.png", size=(10, 8))
    return root


def _mask_value(tmp_path, files):
    root = _seg(tmp_path, files, classes=["bg", "a", "b"])
    files.mask(root / "train" / "masks" / "im1.png", value=7)
    return root


def _mask_rgb(tmp_path, files):
    root = _seg(tmp_path, files)
    files.mask(root / "train" / "masks" / "im0.png", mode="RGB")
    return root


def _mask_corrupt(tmp_path, files):
    root = _seg(tmp_path, files)
    _corrupt(root / "train" / "masks" / "im1.png")
    return root


def _only_background(tmp_path, files):
    root = _seg(tmp_path, files)
    for i in range(3):
        Image.new("L", (20, 16), 0).save(root / "train" / "masks" / f"im{i}.png")
    return root


def _one_class_txt(tmp_path, files):
    return _seg(tmp_path, files, classes=["bg"])


def _duplicate_stem(tmp_path, files):
    root = _seg(tmp_path, files)
    files.image(root / "train" / "images" / "im0.jpg")
    return root


SEG_CASES = {
    "no_train": (_no_train, r"has no train/ folder.*expected the layout DIR/train/images"),
    "no_masks_folder": (_no_masks_folder, r"train/masks does not exist; expected the segmentation layout"),
    "mask_missing": (_mask_missing, r"no mask for image im1\.png \(expected .*masks/im1\.png\)"),
    "mask_size": (_mask_size, r"mask .*im2\.png is 10x8 but its image im2\.png is 20x16"),
    "mask_value": (_mask_value, r"mask .*im1\.png has value 7, but .*classes\.txt lists 3 classes"),
    "mask_rgb": (_mask_rgb, r"mask .*im0\.png has mode 'RGB'; expected a single-channel"),
    "mask_corrupt": (_mask_corrupt, r"cannot read mask .*im1\.png"),
    "only_background": (_only_background, r"only hold class 0"),
    "one_class_txt": (_one_class_txt, r"classes\.txt lists 1 class"),
    "duplicate_stem": (_duplicate_stem, r"two images named 'im0'"),
}


@pytest.mark.parametrize("case", list(SEG_CASES))
def test_bad_segmentation_folders(case, tmp_path, files, cfg32):
    make, message = SEG_CASES[case]
    with pytest.raises(DataError, match=message) as error:
        _create(make(tmp_path, files), cfg32, task="seg")
    assert "\n" not in str(error.value)


def test_val_fraction_and_task_are_config_errors(make_cls_folder, cfg32):
    root = make_cls_folder()
    with pytest.raises(ConfigError, match="val_fraction=1.5"):
        _create(root, cfg32, val_fraction=1.5)
    with pytest.raises(ConfigError, match="unknown task 'detection'"):
        _create(root, cfg32, task="detection")


# Unreadable images ------------------------------------------------------------------------------------


def test_corrupt_image_is_skipped_with_a_warning(make_cls_folder, cfg32):
    root = make_cls_folder(classes={"cat": 4, "dog": 4}, val={"cat": 2, "dog": 2})
    bad = _corrupt(root / "train" / "dog" / "dog2.png")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\).*dog2\.png.*strict=True"):
        data = _create(root, cfg32)
    assert data.skipped == [str(bad)]
    assert len(data.train) == 7 and str(bad) not in data.train.paths
    for i in range(len(data.train)):
        data.train[i]


def test_corrupt_image_with_strict_is_an_error(make_cls_folder, cfg32):
    root = make_cls_folder(classes={"cat": 4, "dog": 4}, val={"cat": 2, "dog": 2})
    _corrupt(root / "val" / "cat" / "cat1.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"cannot read image .*val/cat/cat1\.png"):
            _create(root, cfg32, strict=True)


def test_class_with_only_corrupt_images(make_cls_folder, cfg32):
    root = make_cls_folder(classes={"cat": 3, "dog": 1})
    _corrupt(root / "train" / "dog" / "dog0.png")
    with (
        pytest.raises(DataError, match=r"class folder .*dog has no readable images"),
        pytest.warns(UserWarning),
    ):
        _create(root, cfg32)


def test_corrupt_segmentation_image_is_skipped(make_seg_folder, cfg32):
    root = make_seg_folder(train=6, val=2)
    bad = _corrupt(root / "train" / "images" / "img3.jpg")
    with pytest.warns(UserWarning, match="img3.jpg"):
        data = _create(root, cfg32, task="seg")
    assert data.skipped == [str(bad)] and len(data.train) == 5
    with pytest.raises(DataError, match=r"cannot read image .*img3\.jpg"):
        _create(root, cfg32, task="seg", strict=True)

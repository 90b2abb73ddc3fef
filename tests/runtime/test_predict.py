"""sladkit/runtime/predict.py and annotate.py: folders and globs; annotated originals with a legend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sladkit.cli import cli
from sladkit.data.transforms import transform_config
from sladkit.errors import DataError
from sladkit.runtime.annotate import (
    BLEND,
    LEGEND_WIDTH,
    OUTSIDE,
    annotate_classification,
    annotate_segmentation,
    crop_box,
    palette,
    segmentation_legend,
)
from sladkit.runtime.predict import expand_images, predict_images

STEP = 30


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a/1.png", "a/2.jpg", "a/sub/3.png", "b/1.png"):
        _save(tmp_path / name, rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    return tmp_path


def test_folders_and_globs_expand_to_images(photos):
    a, b = photos / "a", photos / "b"
    assert expand_images([str(a)]) == [str(a / "1.png"), str(a / "2.jpg")]  # the folder's own images
    assert expand_images([f"{photos}/*/1.png"]) == [str(a / "1.png"), str(b / "1.png")]
    assert expand_images([f"{a}/**/*.png"]) == [str(a / "1.png"), str(a / "sub" / "3.png")]
    assert expand_images([str(b / "1.png"), str(a)]) == [str(b / "1.png"), str(a / "1.png"), str(a / "2.jpg")]
    assert expand_images([str(photos / "missing.png")]) == [
        str(photos / "missing.png")
    ]  # reading it says why


@pytest.mark.parametrize(
    "item, message",
    [("{root}/a/sub/empty", "holds no images"), ("{root}/*.gif", "no image file matches")],
)
def test_folders_and_globs_without_images_are_errors(photos, item, message):
    (photos / "a" / "sub" / "empty").mkdir()
    with pytest.raises(DataError, match=message):
        expand_images([item.format(root=photos)])


TRANSFORMS = transform_config(
    image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.5
)  # resize 16, crop 8


def test_crop_box_is_the_models_view_in_original_pixels():
    # 64 x 32 -> 32 x 16 (shorter side 16) -> centre 8 x 8 at left 12, top 4 -> x2 in the original
    assert crop_box(TRANSFORMS, 64, 32) == (24, 8, 40, 24)
    assert crop_box(TRANSFORMS, 16, 16) == (4, 4, 12, 12)


def test_segmentation_overlay_on_the_original_with_a_legend():
    original = Image.fromarray(np.full((256, 512, 3), 200, dtype=np.uint8))  # big enough not to be enlarged
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, 4:] = 2
    labels = ["background", "cat", "dog"]
    annotated = np.asarray(annotate_segmentation(original, mask, labels, TRANSFORMS))
    assert annotated.shape == (256, 512 + LEGEND_WIDTH, 3)
    left, top, right, bottom = crop_box(TRANSFORMS, 512, 256)  # (192, 64, 320, 192)
    dog = palette(3)[2]
    assert annotated[top + 5, right - 5].tolist() == np.round((1 - BLEND) * 200 + BLEND * dog).tolist()
    assert annotated[top + 5, left + 5].tolist() == [100, 100, 100]  # background: class 0 is black
    assert annotated[5, 5].tolist() == [round(200 * OUTSIDE)] * 3  # outside the crop: darkened
    legend = annotated[:, 512:].reshape(-1, 3)
    assert (legend == dog).all(axis=1).any()  # the dog's swatch
    assert segmentation_legend(mask, labels) == [(0, "background", 50.0), (2, "dog", 50.0)]


def test_classification_annotation_keeps_the_original():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    annotated = np.asarray(
        annotate_classification(Image.fromarray(pixels), ["cat", "dog"], [0.9, 0.1], TRANSFORMS)
    )
    assert annotated.shape == (300, 260 + LEGEND_WIDTH, 3)
    left, top, right, bottom = crop_box(TRANSFORMS, 260, 300)
    np.testing.assert_array_equal(
        annotated[top + 3 : bottom - 3, left + 3 : right - 3],
        pixels[top + 3 : bottom - 3, left + 3 : right - 3],
    )
    assert annotated[top, (left + right) // 2].tolist() == [255, 200, 0]  # the crop's outline


def test_small_images_are_enlarged_for_the_legend():
    small = Image.fromarray(np.zeros((40, 30, 3), dtype=np.uint8))
    annotated = annotate_classification(small, ["cat"], [1.0], TRANSFORMS)
    assert annotated.size == (30 * 9 + LEGEND_WIDTH, 40 * 9)  # a whole factor: 256 / 30 -> 9


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_predict_writes_an_overlay_per_image(fake_model, tmp_path, task):
    model = fake_model(task=task, classes=3)
    images = [
        _save(tmp_path / d / "x.png", np.full((12, 16, 3), STEP * i, dtype=np.uint8))
        for i, d in enumerate("pq")
    ]
    records = [
        json.loads(r)
        for r in predict_images(model, [str(p) for p in images], top_k=2, out=str(tmp_path / "out"))
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "overlay" in p.name) == [
        "x-2.overlay.png",
        "x.overlay.png",
    ]
    first = Image.open(tmp_path / "out" / "x.overlay.png")
    assert first.width > 16 * 16 and first.height >= 12 * 16  # the original (enlarged) and the legend
    assert records[1]["overlay"] == str(tmp_path / "out" / "x-2.overlay.png")  # the optional field
    if task == "cls":
        assert set(records[0]) == {"image", "task", "top", "overlay"}
        assert [t["label"] for t in records[1]["top"]] == ["class1", "class0"]
    else:
        assert np.asarray(Image.open(records[1]["mask"]["file"])).tolist() == np.ones((8, 8), int).tolist()


def test_cli_predict_takes_a_folder_and_a_glob(cpu_bundle, photos, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["predict", str(cpu_bundle), str(photos / "a"), f"{photos}/b/*.png", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["image"] for r in records] == [
        str(photos / "a" / "1.png"),
        str(photos / "a" / "2.jpg"),
        str(photos / "b" / "1.png"),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["1-2.overlay.png", "1.overlay.png", "2.overlay.png"]
    result = CliRunner().invoke(cli, ["predict", str(cpu_bundle), f"{photos}/*.gif"])
    assert result.exit_code != 0 and "no image file matches" in result.output

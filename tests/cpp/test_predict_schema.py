"""One prediction schema (docs/design.md, "Prediction output"): `sladkit predict` and the C++ `sladkit-infer`
print the same JSON lines for the same bundle and images: same keys, classes and indices, scores within 1e-4,
segmentation class counts and masks equal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sladkit.cli import cli

OPTIONAL = {"timing_ms", "overlay"}  # sladkit-infer's timing; Python's overlay PNG with --out


def check_schema(record: dict) -> None:
    """The documented contract of one record."""
    assert isinstance(record["image"], str) and record["task"] in ("cls", "seg")
    required = {"image", "task", "top"} if record["task"] == "cls" else {"image", "task", "mask", "classes"}
    assert required <= set(record) <= required | OPTIONAL, sorted(record)
    if record["task"] == "cls":
        assert record["top"] and all(set(p) == {"index", "label", "score"} for p in record["top"])
        assert all(isinstance(p["index"], int) and 0 <= p["score"] <= 1 for p in record["top"])
        assert [p["score"] for p in record["top"]] == sorted(
            (p["score"] for p in record["top"]), reverse=True
        )
    else:
        assert (
            {"height", "width", "coordinates"}
            <= set(record["mask"])
            <= {"height", "width", "coordinates", "file"}
        )
        assert record["mask"]["coordinates"] == "centre crop"
        assert [c["index"] for c in record["classes"]] == list(range(len(record["classes"])))
        assert all(set(c) == {"index", "label", "pixels"} for c in record["classes"])
        assert (
            sum(c["pixels"] for c in record["classes"]) == record["mask"]["height"] * record["mask"]["width"]
        )


def python_predict(bundle: Path, images: list[Path], *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["predict", str(bundle), *map(str, images), *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def cpp_predict(exe: Path, bundle: Path, images: list[Path], *args: str) -> list[dict]:
    result = subprocess.run(
        [str(exe), str(bundle), *map(str, images), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_same(python: dict, cpp: dict) -> None:
    check_schema(python)
    check_schema(cpp)
    strip = {"mask": {k: v for k, v in python.get("mask", {}).items() if k != "file"}}
    python = {k: v for k, v in python.items() if k not in OPTIONAL} | (strip if "mask" in python else {})
    strip = {"mask": {k: v for k, v in cpp.get("mask", {}).items() if k != "file"}}
    cpp = {k: v for k, v in cpp.items() if k not in OPTIONAL} | (strip if "mask" in cpp else {})
    if python["task"] == "cls":
        for key in ("index", "label"):
            assert [p[key] for p in python["top"]] == [p[key] for p in cpp["top"]]
        np.testing.assert_allclose(
            [p["score"] for p in cpp["top"]], [p["score"] for p in python["top"]], atol=1e-4
        )
        python, cpp = {**python, "top": None}, {**cpp, "top": None}
    assert python == cpp


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """PNGs (decoded identically by Pillow and stb_image) of sizes other than the model's.

    Sizes whose resize the C++ library reproduces bit for bit (test_cpp.py). Not (37, 91): Pillow 13 resizes it
    to 32 x 78 vertical pass first, cpp/src/preprocess.cpp horizontal pass first (up to 14 levels apart).
    """
    files = []
    for i, (width, height) in enumerate([(45, 37), (64, 64), (43, 37)]):
        pixels = np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)
        files.append(tmp_path / f"image{i}.png")
        Image.fromarray(pixels).save(files[-1])
    return files


@pytest.mark.parametrize("task", ["cls", "seg"])
@pytest.mark.parametrize("baked", [False, True], ids=["float", "baked"])
@pytest.mark.parametrize("top_k", ["3", "100"])  # 100: more than the classes, so all of them, in both
def test_python_and_cpp_print_the_same_records(infer_exe, bundles, images, task, baked, top_k):
    bundle = bundles[(task, baked)]
    python = python_predict(bundle, images, "--top-k", top_k)
    cpp = cpp_predict(infer_exe, bundle, images, "--top-k", top_k)
    assert [r["image"] for r in python] == [r["image"] for r in cpp] == [str(i) for i in images]
    for p, c in zip(python, cpp, strict=True):
        assert_same(p, c)
    if task == "cls" and top_k == "100":
        labels = json.loads((bundle / "manifest.json").read_text())["labels"]
        assert len(python[0]["top"]) == len(labels)


def test_segmentation_mask_files_are_equal(infer_exe, bundles, images, tmp_path):
    """Python's --out DIR and sladkit-infer's --save-mask write the same class-index PNG."""
    bundle = bundles[("seg", False)]
    [python] = python_predict(bundle, images[:1], "--out", str(tmp_path / "masks"))
    [cpp] = cpp_predict(infer_exe, bundle, images[:1], "--save-mask", str(tmp_path / "cpp.png"))
    assert_same(python, cpp)
    assert cpp["mask"]["file"] == str(tmp_path / "cpp.png") and Path(python["overlay"]).is_file()
    np.testing.assert_array_equal(
        np.asarray(Image.open(python["mask"]["file"])), np.asarray(Image.open(cpp["mask"]["file"]))
    )

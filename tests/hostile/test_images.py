"""Hostile image files: 16-bit PNGs, odd modes, decompression bombs, truncated files, bad segmentation masks.

One decoder (`sladkit.data.images`) serves training, export calibration and the runtime, so each table below
runs its cases through every path that reads images: the decoder itself, training data loading, calibration,
`RuntimeModel` and the `predict` / `eval` / `export` commands. A 16-bit image must give the 8-bit value of its
high byte (`v >> 8`, what Pillow does for 16-bit RGB PNGs and stb_image for all of them in the C++ library),
never white; every unreadable file must give one line naming it and how to fix it, and a non-zero exit.

The runtime cases run on tiny hand-built ONNX models with sladkit's metadata (no training); only the export
row uses the shared tiny run (`run_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import sladkit.runtime
from sladkit.cli import cli
from sladkit.data import create_datasets, transform_config
from sladkit.data.images import load_rgb, to_rgb
from sladkit.data.transforms import normalize_eval
from sladkit.errors import DataError
from sladkit.export.data import calibration_array

SIZE = 32  # images are written at the model's size, so no resampling blurs the values checked
CFG = transform_config(image_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
LABELS = ["bg", "cat", "dog"]


# Files ------------------------------------------------------------------------------------------------


# The PNG writer of tests/conftest.py (the `png_bytes` fixture), for the helpers below: the case tables
# call them where no fixture reaches, so `_png_writer` hands it to this module for every test.
_png = None


@pytest.fixture(autouse=True)
def _png_writer(png_bytes, monkeypatch):
    monkeypatch.setitem(globals(), "_png", png_bytes)


def write_png16(path: Path, pixel: tuple[int, ...]) -> Path:
    """A SIZE x SIZE 16-bit PNG of one colour: 1 value grey, 2 grey + alpha, 3 RGB, 4 RGBA (Pillow writes
    16-bit grey only)."""
    values = np.empty((SIZE, SIZE, len(pixel)), dtype=">u2")
    values[...] = pixel
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[len(pixel)]
    raw = b"".join(b"\x00" + row.tobytes() for row in values)  # filter type 0 per row
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png(SIZE, SIZE, 16, colour, raw))
    return path


def write_bomb(path: Path) -> Path:
    """A PNG declaring 20000 x 20000 pixels (400 M, over Pillow's 179 M limit) in a few bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png(20000, 20000, 8, 0, b""))
    return path


def write_truncated(path: Path, mode: str = "RGB") -> Path:
    """A SIZE x SIZE noise PNG (or JPEG) cut in the middle of its pixel data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(noise).convert(mode).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_rgb(path: Path, pixel: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE, SIZE), pixel).save(path)
    return path


def write_mask(path: Path, value: int = 1, mode: str = "L") -> Path:
    """A SIZE x SIZE mask of class 0 with a square of `value`, in `mode`."""
    values = np.zeros((SIZE, SIZE), dtype=np.uint8)
    values[8:16, 8:16] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).convert(mode).save(path)
    return path


def expected_input(pixel: tuple[int, int, int]) -> np.ndarray:
    """The normalised model input (3, SIZE, SIZE) of a one-colour 8-bit image."""
    return normalize_eval(CFG, np.full((SIZE, SIZE, 3), pixel, dtype=np.uint8))


def onnx_model(path: Path, task: str) -> Path:
    """A tiny ONNX model with sladkit's metadata: cls = mean colour -> Gemm -> (N, 3) logits;
    seg = 1x1 convolution -> (N, 3, SIZE, SIZE) logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    if task == "cls":
        weight = numpy_helper.from_array(rng.normal(size=(3, len(LABELS))).astype(np.float32), "w")
        nodes = [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ]
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)])
    else:
        weight = numpy_helper.from_array(rng.normal(size=(len(LABELS), 3, 1, 1)).astype(np.float32), "w")
        nodes = [helper.make_node("Conv", ["images", "w"], ["logits"])]
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS), SIZE, SIZE])
    graph = helper.make_graph(nodes, task, [images], [logits], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {"task": task, "labels": json.dumps(LABELS), "transforms": json.dumps(CFG)}
    metadata["preprocess_in_graph"] = "false"
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {task: onnx_model(root / f"{task}.onnx", task) for task in ("cls", "seg")}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# 16-bit and other modes -------------------------------------------------------------------------------

# (16-bit PNG pixel, its 8-bit RGB). 0x10FF tells the high byte (16) from rounding v / 257 (17).
PNG16 = {
    "grey": ((40000,), (156, 156, 156)),
    "grey-high-byte": ((0x10FF,), (16, 16, 16)),
    "grey-alpha": ((40000, 0), (156, 156, 156)),
    "rgb": ((0x10FF, 40000, 65535), (16, 156, 255)),
    "rgba": ((0x10FF, 40000, 65535, 0), (16, 156, 255)),
    "black-white": ((0, 65535, 255), (0, 255, 0)),
}


@pytest.mark.parametrize("case", list(PNG16))
def test_16_bit_pngs_are_scaled_not_clipped(case, tmp_path):
    pixel16, pixel8 = PNG16[case]
    image = load_rgb(write_png16(tmp_path / "image.png", pixel16))
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    assert np.array_equal(np.asarray(image), np.full((SIZE, SIZE, 3), pixel8, dtype=np.uint8))


def _mode(mode: str, values, dtype) -> Image.Image:
    if mode == "I;16B":  # Image.fromarray makes little-endian I;16 only
        return Image.frombytes(mode, (2, 2), np.full((2, 2), values, dtype=">u2").tobytes())
    return Image.fromarray(np.full((2, 2), values, dtype=dtype))


def _convert(mode: str) -> Image.Image:
    return Image.new("RGB", (2, 2), (200, 100, 50)).convert(mode)


# (PIL image, its 8-bit RGB)
MODES = {
    "I;16": (lambda: _mode("I;16", 40000, np.uint16), (156, 156, 156)),
    "I;16B": (lambda: _mode("I;16B", 40000, None), (156, 156, 156)),
    "I": (lambda: _mode("I", 40000, np.int32), (156, 156, 156)),
    "F": (lambda: _mode("F", 0.5, np.float32), (128, 128, 128)),
    "L": (lambda: _convert("L"), (124, 124, 124)),
    "LA": (lambda: _convert("LA"), (124, 124, 124)),
    "1": (lambda: Image.new("1", (2, 2), 1), (255, 255, 255)),
    "RGBA": (lambda: _convert("RGBA"), (200, 100, 50)),
    "P": (lambda: _convert("RGB").quantize(4), (200, 100, 50)),
    "CMYK": (lambda: _convert("CMYK"), (200, 100, 50)),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_becomes_8_bit_rgb(mode):
    make, pixel = MODES[mode]
    image = make()
    assert image.mode == mode
    assert np.array_equal(np.asarray(to_rgb(image)), np.full((2, 2, 3), pixel, dtype=np.uint8))


REFUSED_MODES = {
    "F-out-of-range": (lambda: _mode("F", 2.0, np.float32), r"values 2\.\.2; expected 0\.\.1"),
    "F-nan": (lambda: _mode("F", np.nan, np.float32), r"expected 0\.\.1"),
    "I-negative": (lambda: _mode("I", -1, np.int32), r"outside the 16-bit range 0\.\.65535"),
    "I-32-bit": (lambda: _mode("I", 70000, np.int32), r"outside the 16-bit range 0\.\.65535"),
}


@pytest.mark.parametrize("case", list(REFUSED_MODES))
def test_values_without_an_8_bit_meaning_are_refused(case):
    make, message = REFUSED_MODES[case]
    with pytest.raises(DataError, match=message) as error:
        to_rgb(make())
    assert "\n" not in str(error.value)


def _cls_folder(root: Path, write) -> Path:
    """train/{cat,dog} with three images each, written by `write(path, index)`."""
    for label in ("cat", "dog"):
        for i in range(3):
            write(root / "train" / label / f"{label}{i}.png", i)
    return root


def test_training_reads_16_bit_pngs_scaled(tmp_path):
    pixels = [PNG16["grey"], PNG16["rgb"], PNG16["rgba"]]
    root = _cls_folder(tmp_path / "data", lambda path, i: write_png16(path, pixels[i][0]))
    splits = create_datasets(task="cls", data=root, transforms=CFG, val_fraction=0.5, augment=False)
    for dataset in (splits.train, splits.val):
        for i, path in enumerate(dataset.paths):
            tensor, _ = dataset[i]
            expected = expected_input(pixels[int(Path(path).stem[-1])][1])
            np.testing.assert_allclose(tensor.numpy(), expected, rtol=0, atol=1e-6)


def test_calibration_reads_16_bit_pngs_scaled(tmp_path):
    folder = tmp_path / "calib"
    for i in range(8):
        write_png16(folder / f"{i}.png", PNG16["rgb"][0])
    images, _ = calibration_array({"transforms": CFG}, str(folder), 8)
    assert images.shape == (8, 3, SIZE, SIZE)
    np.testing.assert_allclose(images, np.stack([expected_input(PNG16["rgb"][1])] * 8), rtol=0, atol=1e-6)


def test_runtime_predicts_a_16_bit_png_as_its_8_bit_equal(models, tmp_path):
    image16 = write_png16(tmp_path / "deep.png", PNG16["rgb"][0])
    image8 = write_rgb(tmp_path / "flat.png", PNG16["rgb"][1])
    with sladkit.runtime.load(models["cls"]) as model:
        assert np.array_equal(model.crop(image16), np.full((SIZE, SIZE, 3), PNG16["rgb"][1], np.uint8))
        np.testing.assert_array_equal(model.preprocess([image16]), model.preprocess([image8]))
    outputs = []
    for image in (image16, image8):
        result = invoke("predict", models["cls"], image, "--top-k", "3")
        assert result.exit_code == 0, result.output
        outputs.append({k: v for k, v in json.loads(result.output).items() if k != "image"})
    assert outputs[0] == outputs[1]


# Unreadable images: one line, non-zero exit -----------------------------------------------------------

BOMB = "refused as a possible decompression bomb: Image size (400000000 pixels) exceeds limit of"
TRUNCATED = "(OSError: image file is truncated"
BAD_FILES = {  # (writer, what the line says)
    "bomb": (write_bomb, BOMB),
    "truncated-png": (write_truncated, TRUNCATED),
    "truncated-jpg": (lambda path: write_truncated(path.with_suffix(".jpg")), TRUNCATED),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_predict_refuses_in_one_line(case, models, tmp_path):
    write, message = BAD_FILES[case]
    path = write(tmp_path / "bad.png")
    assert_one_line_error(invoke("predict", models["cls"], path), f"cannot read image {path} ", message)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_eval_refuses_in_one_line(case, models, tmp_path):
    write, message = BAD_FILES[case]
    root = _cls_folder(tmp_path / "data", lambda path, i: write_rgb(path, (i, i, i)))
    path = write(root / "train" / "cat" / "bad.png")
    result = invoke("eval", models["cls"], "--data", root / "train")
    assert_one_line_error(result, f"cannot read image {path} ", message)


@pytest.mark.parametrize("strict", [False, True], ids=["skipped", "strict"])
def test_training_skips_or_refuses_a_bomb(strict, tmp_path):
    root = _cls_folder(tmp_path / "data", lambda path, i: write_rgb(path, (i, i, i)))
    bomb = write_bomb(root / "train" / "dog" / "bomb.png")
    if strict:
        with pytest.raises(DataError, match=r"cannot read image .*bomb\.png \(refused as a possible decomp"):
            create_datasets(task="cls", data=root, transforms=CFG, val_fraction=0.5, strict=True)
    else:
        with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\).*bomb\.png: refused as a"):
            splits = create_datasets(task="cls", data=root, transforms=CFG, val_fraction=0.5)
        assert splits.skipped == [str(bomb)]


def test_calibration_skips_a_bomb_with_a_warning_and_refuses_a_folder_of_them(tmp_path):
    folder = tmp_path / "calib"
    for i in range(8):
        write_rgb(folder / f"{i}.png", (i, i, i))
    bomb = write_bomb(folder / "bomb.png")
    with pytest.warns(
        UserWarning, match=rf"calibration skipped images of .*1 unreadable, first {bomb}: refused"
    ):
        images, _ = calibration_array({"transforms": CFG}, str(folder), 9)
    assert len(images) == 8
    only_bombs = tmp_path / "bombs"
    write_bomb(only_bombs / "bomb.png")
    with pytest.raises(DataError, match=r"has 0 readable images \(1 unreadable, first .*bomb\.png: refused"):
        calibration_array({"transforms": CFG}, str(only_bombs), 8)


def test_export_with_bomb_calibration_data_is_one_line(run_dir, tmp_path):
    bombs = tmp_path / "bombs"
    write_bomb(bombs / "bomb.png")
    result = invoke(
        "export", run_dir, "--calib-data", bombs, "--out", tmp_path / "bundle"
    )  # INT8 for TensorRT
    assert_one_line_error(result, f"calibration folder {bombs} has 0 readable images", BOMB)
    assert not (tmp_path / "bundle").exists()


# Segmentation eval: bad masks and images --------------------------------------------------------------

SEG_CASES = {  # (what to break: the image or the mask, writer, what the line says about the file)
    "mask-254": (
        "mask",
        lambda p: write_mask(p, value=254),
        "mask {} has value 254, but the model has 3 classes",
    ),
    "mask-rgb": (
        "mask",
        lambda p: write_mask(p, mode="RGB"),
        "mask {} has mode 'RGB'; expected a single-channel",
    ),
    "mask-16-bit": (
        "mask",
        lambda p: write_png16(p, (1,)),
        "mask {} has mode 'I;16'; expected a single-channel",
    ),
    "mask-truncated": ("mask", lambda p: write_truncated(p, mode="L"), "cannot read mask {} " + TRUNCATED),
    "mask-bomb": ("mask", write_bomb, "cannot read mask {} (" + BOMB),
    "image-truncated": ("image", write_truncated, "cannot read image {} " + TRUNCATED),
    "image-bomb": ("image", write_bomb, "cannot read image {} (" + BOMB),
}


@pytest.fixture
def seg_folder(tmp_path) -> Path:
    root = tmp_path / "seg"
    for i in range(3):
        write_rgb(root / "images" / f"im{i}.png", (10 * i, 20, 30))
        write_mask(root / "masks" / f"im{i}.png", value=1 + i % 2)
    return root


def test_seg_eval_of_good_masks_runs(models, seg_folder):
    result = invoke("eval", models["seg"], "--data", seg_folder)
    assert result.exit_code == 0, result.output
    assert "miou" in result.output and "on 3 images" in result.output


@pytest.mark.parametrize("case", list(SEG_CASES))
def test_seg_eval_refuses_in_one_line(case, models, seg_folder):
    which, write, message = SEG_CASES[case]
    path = write(seg_folder / f"{which}s" / "im1.png")
    assert_one_line_error(invoke("eval", models["seg"], "--data", seg_folder), message.format(path))

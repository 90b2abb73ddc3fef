"""The C++ library (cpp/) against the Python reference: same preprocessing, same outputs.

Each case runs `sladkit-infer` on an image written with PIL at a size other than the model's, so resize and
centre crop are exercised, and compares the model input it fed (--dump-input) with
`sladkit.data.transforms.preprocess_eval` and its output (--dump-logits) with ONNX Runtime's Python API on
that reference input.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sladkit.data.images import load_rgb
from sladkit.data.transforms import normalize_eval, resize_crop_eval

CPP_DIR = Path(__file__).resolve().parents[2] / "cpp"
ATOL = 1e-4


def run_logged(argv: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def transforms_cfg(manifest: dict) -> dict:
    """The transform config `preprocess_eval` takes, built from a bundle manifest's preprocessing."""
    p = manifest["preprocessing"]
    return {
        "image_size": p["center_crop"],
        "mean": p["mean"],
        "std": p["std"],
        "interpolation": p["interpolation"],
        "train": {"random_resized_crop": {"scale": [0.5, 1.0], "ratio": [0.75, 4 / 3]}, "hflip": 0.5},
        "eval": {"resize": p["resize"], "center_crop": p["center_crop"]},
    }


@functools.cache
def _session(model: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def reference(bundle: Path, image: np.ndarray, model: str = "model.onnx") -> tuple[np.ndarray, np.ndarray]:
    """(model input, logits) of the Python reference for a uint8 (H, W, 3) RGB image."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    cfg = transforms_cfg(manifest)
    crop = resize_crop_eval(cfg, image)  # (S, S, 3) uint8
    x = crop if manifest["preprocessing"]["in_graph"] else normalize_eval(cfg, crop)  # (3, S, S) float32
    return x, _session(bundle / model).run(None, {manifest["input"]["name"]: x[None]})[0]


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A random RGB image of size (W, H) saved at `path` (format from the suffix); returns PIL's decoding."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
    return np.asarray(Image.open(path).convert("RGB"))


def write_png16(path: Path, values: np.ndarray, png_bytes) -> None:
    """A 16-bit PNG of uint16 `values` (H, W, 1 grey or 3 RGB), by the `png_bytes` fixture's writer
    (tests/conftest.py); Pillow writes 16-bit grey only."""
    height, width, channels = values.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)  # filter type 0 per row
    path.write_bytes(png_bytes(width, height, 16, {1: 0, 3: 2}[channels], raw))


def logits_shape(bundle: Path, out: dict) -> tuple[int, ...]:
    """The output tensor's shape, from the bundle's class count and (seg) the mask size."""
    classes = len(json.loads((bundle / "manifest.json").read_text())["labels"])
    if out["task"] == "cls":
        return (1, classes)
    return (1, classes, out["mask"]["height"], out["mask"]["width"])


def infer(exe: Path, bundle: Path, image: Path, tmp_path: Path, *args: str) -> tuple[dict, np.ndarray, Path]:
    """Run sladkit-infer; returns (its JSON, the logits it dumped, the file holding the input it fed)."""
    logits, inputs = tmp_path / "logits.bin", tmp_path / "input.bin"
    argv = [
        str(exe),
        str(bundle),
        str(image),
        "--dump-logits",
        str(logits),
        "--dump-input",
        str(inputs),
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["image"] == str(image) and result.stdout.count("\n") == 1
    return out, np.fromfile(logits, np.float32).reshape(logits_shape(bundle, out)), inputs


def check_predictions(out: dict, logits: np.ndarray, labels: list[str]) -> None:
    """The JSON's predictions are those of `logits` (softmax top-k, or per-pixel argmax class counts)."""
    if out["task"] == "cls":
        z = logits[0].astype(np.float64)
        probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        order = np.argsort(-z, kind="stable")[: len(out["top"])]
        assert [p["index"] for p in out["top"]] == order.tolist()
        assert [p["label"] for p in out["top"]] == [labels[i] for i in order]
        np.testing.assert_allclose([p["score"] for p in out["top"]], probs[order], atol=1e-5)
    else:
        counts = np.bincount(logits[0].argmax(axis=0).ravel(), minlength=len(labels))
        assert [c["pixels"] for c in out["classes"]] == counts.tolist()
        assert [c["label"] for c in out["classes"]] == labels
        assert out["mask"] == {
            "height": logits.shape[2],
            "width": logits.shape[3],
            "coordinates": "centre crop",
        }


CASES = [  # (image (W, H), format, interpolation, resize override or None)
    pytest.param((45, 37), "png", "bicubic", None, id="45x37-bicubic"),
    pytest.param((64, 64), "png", "bicubic", None, id="64x64-bicubic"),
    # resized to 37 x 32: left = round(2.5) = 2, half to even
    pytest.param((43, 37), "png", "bilinear", None, id="43x37-bilinear-half-even"),
    pytest.param((64, 64), "png", "bilinear", 37, id="64x64-bilinear-resize37-half-even"),
    pytest.param((37, 91), "png", "bicubic", 40, id="37x91-bicubic-resize40"),
    pytest.param((45, 37), "png", "nearest", 36, id="45x37-nearest-resize36"),
]


@pytest.mark.parametrize("task", ["cls", "seg"])
@pytest.mark.parametrize("baked", [False, True], ids=["float", "baked"])
@pytest.mark.parametrize(("size", "fmt", "interpolation", "resize"), CASES)
def test_matches_python_reference(
    infer_exe, bundles, copy_bundle, tmp_path, task, baked, size, fmt, interpolation, resize
):
    source = bundles[(task, baked)]
    changes = {"interpolation": interpolation, **({"resize": resize} if resize else {})}
    bundle = copy_bundle(source, **changes)
    manifest = json.loads((bundle / "manifest.json").read_text())
    image = write_image(tmp_path / f"image.{fmt}", size, seed=size[0] * 1000 + size[1])

    out, logits, inputs = infer(infer_exe, bundle, tmp_path / f"image.{fmt}", tmp_path, "--top-k", "5")
    x_ref, logits_ref = reference(bundle, image)

    fed = np.fromfile(inputs, x_ref.dtype).reshape(x_ref.shape)
    if baked:
        np.testing.assert_array_equal(fed, x_ref)  # the uint8 crop, bit for bit
    else:
        np.testing.assert_allclose(fed, x_ref, rtol=0, atol=1e-6)
    assert logits.shape == logits_ref.shape
    np.testing.assert_allclose(logits, logits_ref, rtol=0, atol=ATOL)
    assert out["task"] == task
    check_predictions(out, logits, manifest["labels"])


@pytest.mark.parametrize("baked", [False, True], ids=["float", "baked"])
def test_jpeg_within_decoder_difference(infer_exe, bundles, tmp_path, baked):
    """stb_image and Pillow's libjpeg-turbo decode JPEGs a few levels apart; the rest stays exact."""
    bundle = bundles[("cls", baked)]
    image = write_image(tmp_path / "image.jpg", (45, 37), seed=7)
    out, logits, inputs = infer(infer_exe, bundle, tmp_path / "image.jpg", tmp_path)
    x_ref, _ = reference(bundle, image)
    fed = np.fromfile(inputs, x_ref.dtype).reshape(x_ref.shape)
    levels = np.abs(fed.astype(np.float64) - x_ref) * (1 if baked else 255 * 0.229)  # in 8-bit levels (ca.)
    assert levels.max() <= 6 and levels.mean() < 0.5, (levels.max(), levels.mean())
    # The model ran on exactly what was fed:
    manifest = json.loads((bundle / "manifest.json").read_text())
    expected = _session(bundle / "model.onnx").run(None, {manifest["input"]["name"]: fed[None]})[0]
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "rgb"])
def test_16_bit_png_matches_python(infer_exe, bundles, tmp_path, channels, png_bytes):
    """16-bit PNGs: stb_image and sladkit.data.images both keep the high byte (v >> 8), never clip to white."""
    bundle = bundles[("cls", True)]  # baked: the uint8 crop is compared bit for bit
    values = np.random.default_rng(channels).integers(0, 65536, (37, 45, channels), dtype=np.uint16)
    write_png16(tmp_path / "deep.png", values, png_bytes)
    image = np.asarray(load_rgb(tmp_path / "deep.png"))
    np.testing.assert_array_equal(image, np.broadcast_to(values >> 8, (37, 45, 3)).astype(np.uint8))
    _, logits, inputs = infer(infer_exe, bundle, tmp_path / "deep.png", tmp_path)
    x_ref, logits_ref = reference(bundle, image)
    np.testing.assert_array_equal(np.fromfile(inputs, x_ref.dtype).reshape(x_ref.shape), x_ref)
    np.testing.assert_allclose(logits, logits_ref, rtol=0, atol=ATOL)


def test_int8_model_and_save_mask(infer_exe, bundles, tmp_path):
    """--model picks another file of the bundle; --save-mask writes the argmax mask as an 8-bit PNG."""
    bundle = bundles[("seg", False)]
    image = write_image(tmp_path / "image.png", (45, 37), seed=3)
    mask_file = tmp_path / "mask.png"
    out, logits, _ = infer(
        infer_exe,
        bundle,
        tmp_path / "image.png",
        tmp_path,
        "--model",
        "model.int8-cpu.onnx",
        "--save-mask",
        str(mask_file),
    )
    _, logits_ref = reference(bundle, image, model="model.int8-cpu.onnx")
    assert out["mask"]["file"] == str(mask_file)
    np.testing.assert_allclose(logits, logits_ref, rtol=0, atol=ATOL)
    mask = Image.open(mask_file)
    assert mask.mode == "L" and mask.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(mask), logits[0].argmax(axis=0))


def _fails(exe: Path, *argv: str, code: int = 1) -> str:
    result = subprocess.run([str(exe), *map(str, argv)], capture_output=True, text=True, timeout=60)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no-bundle", "is not a folder"),
        ("no-manifest", "manifest.json not found"),
        ("schema", "has schema 'sladkit-bundle' version 2; this library reads 'sladkit-bundle' version 1"),
        ("no-image", "not found; expected an image file"),
        ("bad-image", "cannot read image"),
        ("bomb", "(refused as a possible decompression bomb: 20000x20000 = 400000000 pixels, over Pillow's"),
        ("no-model", "model.onnx is listed in"),
        ("backend", "backend 'tensorrt' is not compiled in; available: onnxruntime"),
        # The manifest's SHA-256s (Python's verify_bundle): every artifact but engines and engine.json.
        ("tampered", "model.onnx does not match its SHA-256 in"),
        ("swapped", "model.onnx does not match its SHA-256 in"),
        ("tampered-labels", "labels.txt does not match its SHA-256 in"),
        ("no-labels", "labels.txt is listed in"),
        ("no-artifacts", "field 'artifacts' is missing, empty or malformed"),
        ("unlisted-model", "copy.onnx is not listed in"),
        ("engine-on-onnxruntime", "model.fp16.engine is a TensorRT engine: pass --backend tensorrt"),
        ("onnx-on-tensorrt", "the tensorrt backend runs engines (.engine, .plan, .trt), not model.onnx"),
    ],
)
def test_errors_are_one_clear_line(infer_exe, bundles, copy_bundle, tmp_path, change, message, png_bytes):
    bundle = copy_bundle(bundles[("cls", False)])
    image = tmp_path / "image.png"
    write_image(image, (40, 30))
    args: list = [bundle, image]
    if change == "no-bundle":
        args[0] = tmp_path / "missing"
    elif change == "no-manifest":
        (bundle / "manifest.json").unlink()
    elif change == "schema":
        manifest = json.loads((bundle / "manifest.json").read_text())
        (bundle / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    elif change == "no-image":
        args[1] = tmp_path / "missing.png"
    elif change == "bad-image":
        args[1] = tmp_path / "text.png"
        args[1].write_text("not an image")
    elif change == "bomb":
        # A PNG declaring 400 M pixels in a few bytes: refused from its header, before decoding, as by Pillow.
        args[1] = tmp_path / "bomb.png"
        args[1].write_bytes(png_bytes(20000, 20000, 8, 0, b""))
    elif change == "no-model":
        (bundle / "model.onnx").unlink()
    elif change == "backend":
        args += ["--backend", "tensorrt"]
    elif change == "tampered":
        data = bytearray((bundle / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 1  # one bit, same size
        (bundle / "model.onnx").write_bytes(bytes(data))
    elif change == "swapped":  # another model of the bundle in its place: it ran and exited 0 before
        shutil.copyfile(bundle / "model.int8-cpu.onnx", bundle / "model.onnx")
    elif change == "tampered-labels":  # not a file sladkit-infer reads, but a file of the bundle
        (bundle / "labels.txt").write_text("dog\ncat\n")
    elif change == "no-labels":
        (bundle / "labels.txt").unlink()
    elif change == "no-artifacts":
        manifest = json.loads((bundle / "manifest.json").read_text())
        (bundle / "manifest.json").write_text(json.dumps({**manifest, "artifacts": []}))
    elif change == "unlisted-model":
        shutil.copyfile(bundle / "model.onnx", bundle / "copy.onnx")
        args += ["--model", "copy.onnx"]
    elif change == "engine-on-onnxruntime":
        (bundle / "model.fp16.engine").write_bytes(b"engine")
        args += ["--model", "model.fp16.engine"]
    elif change == "onnx-on-tensorrt":
        args += ["--backend", "tensorrt", "--model", "model.onnx"]
    stderr = _fails(infer_exe, *args)
    assert stderr.startswith("sladkit-infer: error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr


def test_usage_errors(infer_exe, bundles, tmp_path):
    assert "expected BUNDLE and at least one IMAGE" in _fails(infer_exe, bundles[("cls", False)], code=2)
    assert "unknown option --frobnicate" in _fails(infer_exe, "a", "b", "--frobnicate", code=2)
    # Python's wording: `sladkit predict --top-k 0` says "--top-k must be >= 1 (got 0)".
    assert "error: --top-k must be >= 1 (got 0)\n" in _fails(infer_exe, "a", "b", "--top-k", "0", code=2)
    assert "--top-k must be an integer (got 3x)" in _fails(infer_exe, "a", "b", "--top-k", "3x", code=2)
    assert "take one IMAGE, got 2" in _fails(infer_exe, "a", "b", "c", "--dump-input", "x", code=2)


def test_find_package_consumer(cpp_build, bundles, tmp_path):
    """The README's example: an app built against the installed library with find_package(sladkit)."""
    run_logged(["cmake", "--install", str(cpp_build)], "cmake --install")
    build = tmp_path / "example-build"
    run_logged(
        [
            "cmake",
            "-S",
            str(CPP_DIR / "examples"),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={cpp_build / 'prefix'}",
        ],
        "cmake configure of cpp/examples",
    )
    run_logged(["cmake", "--build", str(build), "-j", "2"], "cmake build of cpp/examples")
    bundle = bundles[("cls", True)]
    image = write_image(tmp_path / "image.png", (50, 40), seed=11)
    result = run_logged([str(build / "classify"), str(bundle), str(tmp_path / "image.png")], "classify")
    _, logits_ref = reference(bundle, image)
    z = logits_ref[0]
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert [int(line.split()[0]) for line in lines] == np.argsort(-z, kind="stable")[:3].tolist()

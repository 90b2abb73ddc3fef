"""sladkit.data.transforms: the config dict, eval geometry, joint image/mask augmentation, torch-free eval."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sladkit
from sladkit.data import create_transforms, transform_config
from sladkit.data.transforms import preprocess_eval
from sladkit.errors import ConfigError, DataError

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def test_config_is_json_and_explicit():
    cfg = transform_config(
        image_size=32, mean=MEAN, std=STD, crop_pct=0.875, crop_scale=(0.3, 1.0), hflip=0.25
    )
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["image_size"] == 32 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == list(MEAN) and cfg["std"] == list(STD)
    assert cfg["eval"] == {"resize": 36, "center_crop": 32}  # int(32 / 0.875)
    assert cfg["train"] == {
        "random_resized_crop": {"scale": [0.3, 1.0], "ratio": [0.75, 4 / 3]},
        "hflip": 0.25,
    }
    assert transform_config(image_size=224, mean=MEAN, std=STD, crop_pct=0.875)["eval"]["resize"] == 256


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"crop_pct": 0.0}, "crop_pct"),
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"image_size": 0}, "image_size"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"hflip": 2.0}, "hflip"),
        ({"crop_scale": (0.9, 0.5)}, "scale"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"mean": (0.5, 0.5)}, "mean"),
    ],
)
def test_bad_config_values(changes, words):
    kwargs = dict(image_size=32, mean=MEAN, std=STD) | changes
    with pytest.raises(ConfigError, match=words):
        transform_config(**kwargs)


def test_config_missing_key_is_config_error(cfg32):
    del cfg32["eval"]
    with pytest.raises(ConfigError, match="eval"):
        create_transforms(cfg32, train=False, task="cls")
    with pytest.raises(ConfigError, match="unknown task 'det'"):
        create_transforms(transform_config(image_size=32, mean=MEAN, std=STD), train=False, task="det")


def test_eval_output_and_normalisation(cfg32):
    transform = create_transforms(cfg32, train=False, task="cls")
    grey = np.full((40, 40, 3), 128, dtype=np.uint8)  # 128/255 ~ 0.502 -> (0.502 - 0.5) / 0.25
    image, mask = transform(grey)
    assert mask is None
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and type(image) is torch.Tensor
    assert torch.allclose(image, torch.full_like(image, (128 / 255 - 0.5) / 0.25), atol=1e-5)


def test_eval_is_deterministic_and_pil_equals_numpy(cfg32):
    transform = create_transforms(cfg32, train=False, task="cls")
    pixels = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    torch.manual_seed(0)
    first, _ = transform(pixels)
    torch.manual_seed(1)
    second, _ = transform(Image.fromarray(pixels))
    assert torch.equal(first, second)


def test_eval_resize_shorter_side_then_centre_crop():
    # Column x of a 64x32 (WxH) image has red = 4x. Nearest resize of the shorter side 32 -> 16 halves
    # it to 32x16 (column k samples source 2k + 1, pixel centres), then the 16 px centre crop starts at
    # left = 8: output column j shows source column 2(j + 8) + 1.
    cfg = transform_config(image_size=16, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[..., 0] = 4 * np.arange(64, dtype=np.uint8)
    image, _ = create_transforms(cfg, train=False, task="cls")(pixels)
    red = torch.round(image[0] * 255).to(torch.int64)  # (16, 16)
    expected = 4 * (2 * (torch.arange(16) + 8) + 1)
    assert torch.equal(red, expected.expand(16, 16))


@pytest.mark.parametrize("size", [(50, 70), (70, 50), (33, 33), (31, 90)])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_numpy_reference_matches_torch_eval(size, interpolation):
    cfg = transform_config(image_size=24, mean=MEAN, std=STD, interpolation=interpolation, crop_pct=0.875)
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    expected, _ = create_transforms(cfg, train=False, task="cls")(pixels)
    reference = preprocess_eval(cfg, pixels)
    assert reference.shape == (3, 24, 24) and reference.dtype == np.float32
    # bit for bit: a last-bit difference changes predictions of a dynamically quantized model, and export's
    # gate (torch pipeline) and eval/profile (this reference) must report one number
    np.testing.assert_array_equal(reference, expected.numpy())


def test_eval_preprocessing_needs_no_torch(cfg32):
    script = (
        "import json, sys, numpy as np\n"
        "from sladkit.data.transforms import preprocess_eval\n"
        f"cfg = json.loads({json.dumps(json.dumps(cfg32))})\n"
        "out = preprocess_eval(cfg, np.zeros((40, 50, 3), np.uint8))\n"
        "assert out.shape == (3, 32, 32), out.shape\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(sladkit.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_train_randomness_comes_from_torch_rng(cfg32):
    transform = create_transforms(cfg32, train=True, task="cls")
    pixels = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    torch.manual_seed(0)
    a = [transform(pixels)[0] for _ in range(3)]
    torch.manual_seed(0)
    b = [transform(pixels)[0] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])


def _coloured_mask_pair(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64x48 blocky mask with values 0..4 and 255, and an image painted with one colour per value."""
    rng = np.random.default_rng(seed)
    mask = np.kron(rng.integers(0, 5, (6, 8)), np.ones((8, 8), dtype=np.int64)).astype(np.uint8)  # (48, 64)
    mask[20:23, 5:40] = 255
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:5] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]]
    palette[255] = [255, 255, 255]
    return palette[mask], mask, palette


def test_train_applies_same_geometry_to_image_and_mask_exactly():
    # With nearest resampling for the image too, every output pixel's colour must be its mask's colour.
    cfg = transform_config(
        image_size=32, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest", crop_scale=(0.2, 1)
    )
    transform = create_transforms(cfg, train=True, task="seg")
    torch.manual_seed(0)
    for seed in range(20):
        pixels, mask, palette = _coloured_mask_pair(seed)
        image, out_mask = transform(pixels, Image.fromarray(mask))
        assert out_mask.shape == (32, 32) and out_mask.dtype == torch.int64
        colours = torch.round(image * 255).to(torch.uint8).permute(1, 2, 0).numpy()  # (32, 32, 3)
        np.testing.assert_array_equal(colours, palette[out_mask.numpy()])


def test_train_joint_geometry_with_bicubic_image():
    cfg = transform_config(image_size=32, mean=(0, 0, 0), std=(1, 1, 1), crop_scale=(0.2, 1))
    transform = create_transforms(cfg, train=True, task="seg")
    torch.manual_seed(1)
    checked = 0
    for seed in range(20):
        pixels, mask, palette = _coloured_mask_pair(seed)
        image, out_mask = transform(pixels, mask)
        colours = (image * 255).permute(1, 2, 0).numpy()
        m = out_mask.numpy()
        # Away from region borders the bicubic image must show the mask's colour.
        inner = np.zeros_like(m, dtype=bool)
        inner[2:-2, 2:-2] = True
        for dy in (-2, -1, 0, 1, 2):
            for dx in (-2, -1, 0, 1, 2):
                inner &= np.roll(m, (dy, dx), (0, 1)) == m
        assert np.abs(colours[inner] - palette[m[inner]]).max() < 40
        checked += inner.sum()
    assert checked > 20 * 32 * 32 * 0.05


def test_mask_values_survive_eval(cfg32):
    transform = create_transforms(cfg32, train=False, task="seg")
    mask = np.random.default_rng(3).integers(0, 7, (40, 40), dtype=np.uint8)
    mask[:5] = 255
    _, out = transform(np.zeros((40, 40, 3), np.uint8), mask)
    assert set(out.unique().tolist()) <= set(range(7)) | {255}
    assert (out == 255).any()


def test_transforms_pickle(cfg32):
    for train in (True, False):
        transform = pickle.loads(pickle.dumps(create_transforms(cfg32, train=train, task="seg")))
        image, mask = transform(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.uint8))
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


def test_bad_inputs_raise_data_error(cfg32):
    seg = create_transforms(cfg32, train=False, task="seg")
    with pytest.raises(DataError, match=r"mask of shape \(10, 10\).*40x40"):
        seg(np.zeros((40, 40, 3), np.uint8), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="expected a PIL image or a uint8"):
        seg(np.zeros((40, 40), np.float32))
    with pytest.raises(DataError, match="task='seg'"):
        create_transforms(cfg32, train=False, task="cls")(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40)))

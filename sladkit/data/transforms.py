"""Train and eval image transforms, described by one plain, JSON-serialisable dict.

`transform_config(...)` builds the dict; it is saved in the run's config.json, and export and the
torch-free runtime rebuild eval preprocessing from it alone (`preprocess_eval` below is the reference
implementation with numpy and PIL only; this module imports torch only inside `create_transforms`).

The dict::

    {
      "image_size": 32,                  # side of the square network input, pixels
      "mean": [0.485, 0.456, 0.406],     # per RGB channel, on pixel values scaled to 0..1
      "std": [0.229, 0.224, 0.225],
      "interpolation": "bicubic",        # image resampling: "nearest" | "bilinear" | "bicubic" (PIL filters)
      "train": {"random_resized_crop": {"scale": [0.5, 1.0], "ratio": [0.75, 1.3333]}, "hflip": 0.5},
      "eval": {"resize": 32, "center_crop": 32}
    }

Eval preprocessing, exactly (`eval.resize = int(image_size / crop_pct)`, `eval.center_crop = image_size`):

1. Decode to 8-bit RGB (`sladkit.data.images`: PIL's `.convert("RGB")`; 16-bit images by their high
   byte), size W x H.
2. Resize so the shorter side is `resize`: `short' = resize`, `long' = int(resize * long / short)`
   (truncated), with PIL `Image.resize((W', H'), resample=<interpolation>)` (PIL antialiases when
   downscaling). Skipped when (W', H') == (W, H).
3. Centre crop `center_crop` x `center_crop` at `top = int(round((H' - c) / 2))`,
   `left = int(round((W' - c) / 2))` (Python's round, half to even).
4. `x = pixel / 255` as float32, then `(x - mean) / std` per channel; output layout (3, S, S), RGB.

Train preprocessing: torchvision's RandomResizedCrop to `image_size` x `image_size` (crop area a uniform
fraction in `scale` of the image, log aspect ratio uniform in log `ratio`, 10 tries then a centre-crop
fallback), then a horizontal flip with probability `hflip`, then step 4. Its randomness comes from torch's
global RNG. Segmentation masks go through the same geometry with nearest-neighbour resampling aligned on
pixel centres (PIL's NEAREST; torch's "nearest-exact"), and stay integer class indices (255 = ignore).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from sladkit.data.images import as_rgb
from sladkit.errors import ConfigError, DataError

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
TASKS = ("cls", "seg")


def transform_config(
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    crop_pct: float = 1.0,
    crop_scale: Sequence[float] = (0.5, 1.0),
    crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
) -> dict[str, Any]:
    """Describe the train and eval transforms as a JSON-serialisable dict (format in the module docstring).

    Args:
        image_size: side of the square network input in pixels.
        mean: per-channel RGB mean on 0..1 pixel values (usually the teacher's pretraining mean).
        std: per-channel RGB standard deviation on 0..1 pixel values.
        interpolation: image resampling filter, one of "nearest", "bilinear", "bicubic".
        crop_pct: eval centre-crop fraction in (0, 1]; the shorter side is first resized to
            `int(image_size / crop_pct)`.
        crop_scale: (min, max) area fraction of the train RandomResizedCrop, within (0, 1].
        crop_ratio: (min, max) aspect ratio of the train RandomResizedCrop.
        hflip: probability of a horizontal flip during training, in [0, 1].

    Returns:
        The transform config dict.

    Raises:
        ConfigError: a value is out of range.
    """
    if not 0 < crop_pct <= 1:
        raise ConfigError(
            f"crop_pct={crop_pct} is out of range; expected 0 < crop_pct <= 1 (e.g. 0.875 or 1.0)"
        )
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ConfigError(f"image_size={image_size!r} is invalid; expected a positive integer such as 224")
    cfg = {
        "image_size": image_size,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "interpolation": interpolation,
        "train": {
            "random_resized_crop": {
                "scale": [float(v) for v in crop_scale],
                "ratio": [float(v) for v in crop_ratio],
            },
            "hflip": float(hflip),
        },
        "eval": {"resize": int(math.floor(image_size / crop_pct)), "center_crop": image_size},
    }
    check_transform_config(cfg)
    return cfg


def check_transform_config(cfg: dict[str, Any]) -> None:
    """Raise ConfigError naming a missing entry, or every out-of-range value, of a transform config."""
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"transform config is a {type(cfg).__name__}; expected the dict from transform_config()"
        )
    try:
        size, mean, std = cfg["image_size"], cfg["mean"], cfg["std"]
        interpolation = cfg["interpolation"]
        scale, ratio = (
            cfg["train"]["random_resized_crop"]["scale"],
            cfg["train"]["random_resized_crop"]["ratio"],
        )
        hflip, resize, crop = cfg["train"]["hflip"], cfg["eval"]["resize"], cfg["eval"]["center_crop"]
    except (KeyError, TypeError) as e:
        raise ConfigError(
            f"transform config lacks entry {e}; expected the keys written by transform_config() "
            "(image_size, mean, std, interpolation, train, eval)"
        ) from None
    try:
        problems = _config_problems(size, mean, std, interpolation, scale, ratio, hflip, resize, crop)
    except (TypeError, ValueError) as e:  # a string or list where a number belongs
        problems = [f"a value of the wrong type ({e})"]
    if problems:
        raise ConfigError(
            f"invalid transform config: {'; '.join(problems)}; rebuild it with transform_config()"
        )


def _config_problems(size, mean, std, interpolation, scale, ratio, hflip, resize, crop) -> list[str]:
    """Descriptions of the out-of-range values of a transform config (empty when it is valid)."""
    problems: list[str] = []
    if not isinstance(size, int) or size < 1:
        problems.append(f"image_size={size!r} (expected a positive integer)")
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, Sequence) or len(values) != 3:
            problems.append(f"{name}={values!r} (expected 3 numbers, one per RGB channel)")
    if not problems and min(std) <= 0:
        problems.append(f"std={std} (expected positive values)")
    if interpolation not in INTERPOLATIONS:
        problems.append(f"interpolation={interpolation!r} (expected one of {', '.join(INTERPOLATIONS)})")
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        problems.append(f"train scale={scale} (expected [min, max] with 0 < min <= max <= 1)")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        problems.append(f"train ratio={ratio} (expected [min, max] with 0 < min <= max)")
    if not 0 <= hflip <= 1:
        problems.append(f"train hflip={hflip} (expected a probability in [0, 1])")
    if not isinstance(crop, int) or not isinstance(resize, int) or not 1 <= crop <= resize:
        problems.append(
            f"eval resize={resize!r}, center_crop={crop!r} (expected integers, 1 <= center_crop <= resize)"
        )
    return problems


def eval_size(cfg: dict[str, Any], width: int, height: int) -> tuple[int, int]:
    """(W', H') of an image of size (width, height) after the eval shorter-side resize."""
    resize = cfg["eval"]["resize"]
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def preprocess_eval(cfg: dict[str, Any], image: Any) -> np.ndarray:
    """Eval preprocessing with numpy and PIL only (no torch): the reference for the runtime.

    Args:
        cfg: the transform config from `transform_config` (or a run's config.json).
        image: a PIL image (any mode, see `sladkit.data.images`), a uint8 (H, W, 3) RGB array or a file path.

    Returns:
        The normalised image (3, S, S) float32, equal to `create_transforms(cfg, train=False, ...)`'s.
    """
    return normalize_eval(cfg, resize_crop_eval(cfg, image))


def resize_crop_eval(cfg: dict[str, Any], image: Any) -> np.ndarray:
    """The eval resize and centre crop alone: a uint8 (S, S, 3) RGB array (what a baked model takes)."""
    check_transform_config(cfg)
    pil = as_rgb(image)
    new_size = eval_size(cfg, *pil.size)
    if new_size != pil.size:
        pil = pil.resize(new_size, resample=INTERPOLATIONS[cfg["interpolation"]])
    crop = cfg["eval"]["center_crop"]
    top, left = int(round((new_size[1] - crop) / 2.0)), int(round((new_size[0] - crop) / 2.0))
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8)[top : top + crop, left : left + crop])


def normalize_eval(cfg: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) RGB -> normalised float32 (3, S, S), bit for bit what the training pipeline computes.

    torchvision's `ToDtype(scale=True)` multiplies by float32(1 / 255), it does not divide by 255: the two
    differ in the last bit for some values (up to 7e-7 after normalisation), and ONNX Runtime's dynamic INT8
    model, whose activation ranges come from each batch, changed 5 of the demo's 500 predictions from that
    alone, so export's gate and `eval` reported 84.8 and 84.0 % for one model on the same images."""
    x = pixels.astype(np.float32) * np.float32(1 / 255)
    x = (x - np.asarray(cfg["mean"], dtype=np.float32)) / np.asarray(cfg["std"], dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, S, S)


class PairTransform:
    """Picklable `(image, mask | None) -> (image (3, S, S) float32, mask (S, S) int64 | None)`.

    The image is a PIL image or a uint8 (H, W, 3) array; the mask a PIL 'L'/'P' image or a uint8 (H, W)
    array of class indices. Geometry is applied jointly to both.
    """

    def __init__(self, pipeline: Any, task: str) -> None:
        self.pipeline = pipeline  # v2.Compose: geometry, then to float and normalise
        self.task = task

    def __call__(self, image: Any, mask: Any = None) -> tuple[Any, Any]:
        import torch
        from torchvision import tv_tensors

        pil = as_rgb(image)
        if mask is None:
            return self.pipeline(pil).as_subclass(torch.Tensor), None
        if self.task == "cls":
            raise DataError(
                "got a mask for a classification transform; expected task='seg' for (image, mask) pairs"
            )
        array = np.asarray(mask)
        if array.ndim != 2 or (array.shape[1], array.shape[0]) != pil.size:
            raise DataError(
                f"mask of shape {array.shape} does not match its image of size {pil.size[0]}x{pil.size[1]} "
                "(WxH); expected a single-channel (H, W) mask of the image's size"
            )
        out, out_mask = self.pipeline(pil, tv_tensors.Mask(torch.from_numpy(array.astype(np.uint8))))
        return out.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor).to(torch.int64)  # (S, S)

    def __repr__(self) -> str:
        return f"PairTransform(task={self.task!r}, pipeline={self.pipeline})"


def create_transforms(cfg: dict[str, Any], *, train: bool, task: str) -> PairTransform:
    """Build the train or eval transform described by a transform config.

    Args:
        cfg: the dict from `transform_config` (format in the module docstring).
        train: the random training augmentation if True, else the deterministic eval preprocessing.
        task: "cls" (image only) or "seg" (image and mask).

    Returns:
        A picklable callable `(image, mask_or_None) -> (image (3, S, S) float32 normalised,
        mask (S, S) int64 or None)`.

    Raises:
        ConfigError: unknown task or invalid config.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    check_transform_config(cfg)
    import torch
    from torchvision.transforms import v2

    from sladkit.data import _mask_aligned

    mode = v2.InterpolationMode(cfg["interpolation"])
    size = cfg["image_size"]
    if train:
        crop = cfg["train"]["random_resized_crop"]
        geometry = [
            _mask_aligned.RandomResizedCrop(
                size, scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"]), interpolation=mode
            ),
            v2.RandomHorizontalFlip(cfg["train"]["hflip"]),
        ]
    else:
        geometry = [
            _mask_aligned.Resize(cfg["eval"]["resize"], interpolation=mode),
            v2.CenterCrop(cfg["eval"]["center_crop"]),
        ]
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg["mean"], cfg["std"])]
    return PairTransform(v2.Compose([*geometry, *to_tensor]), task)

"""Decoding image and mask files: one way for training, export calibration and the runtime (numpy and PIL only).

Every image becomes 8-bit RGB, whatever its mode:

- `1`, `L`, `P`, `RGB`, `CMYK`, `YCbCr` and the alpha modes (`LA`, `PA`, `RGBA`): PIL's `convert("RGB")`;
  alpha is dropped (not composited), a palette is applied, `1` becomes 0/255.
- 16-bit grey (`I;16`, `I;16B`, `I;16L`, and `I`, which older Pillows use for 16-bit PNGs): the high byte,
  `v >> 8`. That is how PIL itself decodes 16-bit RGB(A) PNGs, and how stb_image decodes every 16-bit PNG in
  the C++ library, so all three agree to the bit. (`convert("RGB")` would clip every value above 255 to white.)
  `I` values outside 0..65535 are refused.
- `F` (32-bit float): values in 0..1 are scaled to 0..255 (rounded); other ranges are refused.

Files are fully decoded (a truncated file is an error, not a grey tail). Pillow's decompression-bomb limit is
kept: an image of more than `2 * PIL.Image.MAX_IMAGE_PIXELS` pixels (about 179 million by default) is refused.
Downscaling such a file is the fix (the network sees a few hundred pixels a side); Python code that trusts its
files may raise `PIL.Image.MAX_IMAGE_PIXELS` before calling sladkit.

Masks are single-channel 8-bit PNGs (mode `L` or `P`, the palette index being the class) whose values are class
indices, 255 = ignore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sladkit.errors import DataError

MASK_MODES = ("L", "P")


class ImageReadError(DataError):
    """An image or mask file that cannot be decoded; `reason` says why, without the file name."""

    def __init__(self, path: str | Path, reason: str, fix: str, *, kind: str = "image") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read {kind} {path} ({reason}); {fix}")


IMAGE_FIX = "replace the file (JPEG, PNG, BMP, WebP or TIFF), or remove it"
MASK_FIX = "replace it with a single-channel 8-bit PNG whose values are class indices (255 = ignore)"


def _decode(path: str | Path, *, kind: str) -> Image.Image:
    """Open and fully decode a file; errors become one ImageReadError naming the file."""
    fix = MASK_FIX if kind == "mask" else IMAGE_FIX
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except Image.DecompressionBombError as e:
        detail = str(e).split(", could be")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise ImageReadError(
            path,
            f"refused as a possible decompression bomb: {detail}",
            "downscale the file; Python code that trusts it may raise PIL.Image.MAX_IMAGE_PIXELS",
            kind=kind,
        ) from None
    except FileNotFoundError:
        raise ImageReadError(path, "no such file", "check the path", kind=kind) from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... on a corrupt file
        raise ImageReadError(path, f"{type(e).__name__}: {e}".strip().rstrip(":"), fix, kind=kind) from None


def to_rgb(image: Image.Image, *, source: str | Path = "<PIL image>") -> Image.Image:
    """A decoded PIL image of any mode as 8-bit RGB (the rules in the module docstring).

    Raises:
        ImageReadError naming `source` when the mode or its values have no 8-bit RGB meaning.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I"):  # 16-bit grey (I;16, I;16B, ...) or 32-bit integer
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(
                source,
                f"mode {mode} with values {values.min()}..{values.max()}, outside the 16-bit range 0..65535",
                "save it as an 8- or 16-bit image",
            )
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ImageReadError(
                source,
                f"32-bit float image with values {values.min():g}..{values.max():g}; expected 0..1",
                "scale it to 0..1, or save it as an 8- or 16-bit image",
            )
        return Image.fromarray(np.round(values * 255).astype(np.uint8)).convert("RGB")
    if mode in ("P", "PA"):  # through RGBA, so a palette with transparency converts without a warning
        image = image.convert("RGBA")
    try:
        return image.convert("RGB")
    except ValueError as e:  # e.g. LAB or HSV: no conversion to RGB in PIL
        raise ImageReadError(source, f"mode {mode}: {e}", "save it as an RGB or greyscale image") from None


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file to 8-bit RGB.

    Raises:
        ImageReadError (a DataError) naming the file and how to fix it: unreadable, truncated, a possible
        decompression bomb, or a mode without an 8-bit RGB meaning.
    """
    image = _decode(path, kind="image")
    return to_rgb(image, source=path)


def as_rgb(image: Any) -> Image.Image:
    """An 8-bit RGB PIL image from a file path, a PIL image (any mode) or a uint8 (H, W, 3) RGB array."""
    if isinstance(image, (str, Path)):
        return load_rgb(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise DataError(
            f"got an image of type {type(image).__name__} with dtype {array.dtype} and shape {array.shape}; "
            "expected a PIL image or a uint8 (H, W, 3) RGB array, or an image file path"
        )
    return Image.fromarray(array)


def load_mask(path: str | Path) -> np.ndarray:
    """Decode a segmentation mask file to its class indices, uint8 (H, W).

    Raises:
        DataError naming the file: unreadable, truncated (ImageReadError), or not a single-channel 8-bit image.
    """
    mask = _decode(path, kind="mask")
    if mask.mode not in MASK_MODES:
        raise DataError(
            f"mask {path} has mode {mask.mode!r}; expected a single-channel 8-bit PNG (mode 'L' or 'P') "
            "whose pixel values are class indices (255 = ignore)"
        )
    return np.asarray(mask)

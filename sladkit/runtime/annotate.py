"""Annotated images for `predict --out`: the prediction drawn on the original image, with a legend.

The model sees the eval centre crop of the resized image; `crop_box` maps that crop back to the original
image's pixels. Segmentation: the mask is scaled (nearest) into that box and blended with the image, the
part outside the box (which the model did not see) is darkened. Classification: the box is outlined and the
top-k classes and scores are listed. The legend is a panel to the right of the image. Images under
`MIN_SIDE` pixels a side are enlarged by a whole factor (nearest) so that the legend stays legible.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sladkit.data.transforms import eval_size

MIN_SIDE = 256
LEGEND_WIDTH = 240
LINE = 20  # legend line height, pixels
BLEND = 0.5  # weight of the class colour in the segmentation overlay
OUTSIDE = 0.4  # brightness kept outside the model's crop
BOX_COLOUR = (255, 200, 0)


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class (class 0 black), (classes, 3) uint8."""
    rng = np.random.default_rng(12345)
    colours = rng.integers(40, 256, size=(max(num_classes, 1), 3), dtype=np.uint8)
    colours[0] = 0
    return colours


def crop_box(transforms: dict, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in the original image's pixels of the centre crop the model sees."""
    new_width, new_height = eval_size(transforms, width, height)
    crop = transforms["eval"]["center_crop"]
    top, left = int(round((new_height - crop) / 2.0)), int(round((new_width - crop) / 2.0))
    sx, sy = width / new_width, height / new_height
    return (
        max(0, round(left * sx)),
        max(0, round(top * sy)),
        min(width, round((left + crop) * sx)),
        min(height, round((top + crop) * sy)),
    )


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def _enlarge(image: Image.Image) -> tuple[Image.Image, int]:
    factor = max(1, math.ceil(MIN_SIDE / min(image.size)))
    if factor == 1:
        return image, 1
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST), factor


def _with_legend(
    image: Image.Image, title: str, entries: list[tuple[tuple[int, int, int] | None, str, float | None]]
):
    """`image` with a panel on its right: a title, then one line per entry (colour swatch, text, score bar)."""
    height = max(image.height, LINE * (len(entries) + 3))
    canvas = Image.new("RGB", (image.width + LEGEND_WIDTH, height), (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw, font = ImageDraw.Draw(canvas), _font()
    x = image.width + 10
    draw.text((x, 8), title, fill=(0, 0, 0), font=font)
    for i, (colour, text, bar) in enumerate(entries):
        y = 8 + LINE * (i + 1) + 4
        text_x = x
        if colour is not None:
            draw.rectangle((x, y + 2, x + 14, y + 16), fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
            text_x = x + 22
        if bar is not None:  # a score in 0..1 as a grey bar under the text
            draw.rectangle(
                (text_x, y + 17, text_x + int(bar * (LEGEND_WIDTH - 40)), y + 18), fill=(120, 120, 120)
            )
        draw.text((text_x, y), text, fill=(0, 0, 0), font=font)
    return canvas


def segmentation_legend(mask: np.ndarray, labels: list[str]) -> list[tuple[int, str, float]]:
    """(class index, label, % of the crop's pixels) of every class in `mask`, the largest first."""
    counts = np.bincount(mask.ravel(), minlength=len(labels))
    present = [c for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    names = [labels[c] if c < len(labels) else str(c) for c in present]
    return [(int(c), n, round(100.0 * counts[c] / mask.size, 1)) for c, n in zip(present, names, strict=True)]


def annotate_segmentation(
    original: Image.Image, mask: np.ndarray, labels: list[str], transforms: dict
) -> Image.Image:
    """The original image with the class colours of `mask` (the model's crop) blended into the crop's box."""
    colours = palette(max(len(labels), int(mask.max()) + 1))
    image = np.asarray(original.convert("RGB"), dtype=np.float32)
    left, top, right, bottom = crop_box(transforms, original.width, original.height)
    scaled = np.asarray(
        Image.fromarray(mask.astype(np.uint8)).resize((right - left, bottom - top), Image.NEAREST)
    )
    out = image * OUTSIDE
    region = image[top:bottom, left:right]
    out[top:bottom, left:right] = (1 - BLEND) * region + BLEND * colours[scaled]
    annotated, factor = _enlarge(Image.fromarray(out.round().astype(np.uint8)))
    entries = [
        (tuple(colours[c]), f"{name}  {share:.1f} %", None)
        for c, name, share in segmentation_legend(mask, labels)
    ]
    entries.append((None, "darkened: outside the model's crop", None))
    return _with_legend(annotated, "segmentation (% of crop)", entries)


def annotate_classification(
    original: Image.Image, labels: list[str], scores: list[float], transforms: dict
) -> Image.Image:
    """The original image, the model's crop outlined, and the top-k classes with their scores."""
    annotated, factor = _enlarge(original.convert("RGB"))
    left, top, right, bottom = (v * factor for v in crop_box(transforms, original.width, original.height))
    ImageDraw.Draw(annotated).rectangle((left, top, right - 1, bottom - 1), outline=BOX_COLOUR, width=2)
    entries = [
        (None, f"{i + 1}. {name}  {score:.3f}", score)
        for i, (name, score) in enumerate(zip(labels, scores, strict=True))
    ]
    entries.append((BOX_COLOUR, "the model's crop", None))
    return _with_legend(annotated, "classification (top-k, softmax)", entries)

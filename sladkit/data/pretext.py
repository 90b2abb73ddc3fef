"""A synthetic *pretext* classification task for pretraining sladkit's tiny "foundation" ViT pair.

SLAD adapts frozen pretrained backbones; the built-in tiny pair (`sladkit_vit_192_p8`,
`sladkit_vit_96_p8`) gets its pretrained weights from this task (`tools/pretrain_tiny_pair.py`), standing
in for DINOv2-style pretraining. It is generic and deliberately not the downstream task
(`sladkit.data.synthetic`): the downstream label (shape x texture) treats colour as a nuisance, here the
object's colour is part of the label.

Scene: one object on a gradient background with 2-5 distractor lines/blobs and pixel noise, drawn with
the primitives of `sladkit.data._scenes`. Class = shape x texture x hue bucket (5 x 3 x HUES = 60
classes, named like "star-striped-blue"). The object's main colour is a saturated colour whose hue lies
in one of the HUES buckets (the central 2/3 of each bucket, so neighbouring buckets are never confused);
the texture's second colour is achromatic (grey, darker or lighter than the main colour), so the object
has exactly one hue. Nuisances: background colour and gradient, position, scale (circumradius 20-42 %
of the side), rotation, saturation and brightness of the main colour, stripe/checker period and
orientation, clutter, noise. Shape, texture and hue must all be recognised, which gives features for
shape and texture (what the downstream needs) plus colour.

Image `i` of a split is a pure function of `(seed, split, i)`; labels are balanced (image i has class
i mod NUM_CLASSES).
"""

from __future__ import annotations

import colorsys

import numpy as np

from sladkit.data import _scenes
from sladkit.data._scenes import SHAPES, TEXTURES

HUES = ("red", "yellow", "green", "cyan", "blue", "magenta")  # bucket k is centred on hue k / len(HUES)
HUE_SPREAD = 1 / 3  # fraction of a bucket's width the hue is drawn from, around its centre
SATURATION = (0.6, 1.0)
VALUE = (0.55, 1.0)
GREY_CONTRAST = 70.0  # min |grey level - main colour's luma| of a texture's second colour, 0..255 levels
RADIUS = (0.2, 0.42)
PRETEXT_LABELS = [f"{shape}-{texture}-{hue}" for shape in SHAPES for texture in TEXTURES for hue in HUES]
NUM_CLASSES = len(PRETEXT_LABELS)
TRAIN_SPLIT, VAL_SPLIT = 0, 1
_PRETEXT_KEY = 2  # keeps pretext scenes apart from synthetic.py's (keys 0 and 1) for the same seed


def pretext_labels() -> list[str]:
    """Class names of the pretext task, index = label."""
    return list(PRETEXT_LABELS)


def split_label(label: int) -> tuple[int, int, int]:
    """(shape, texture, hue) indices of a pretext label."""
    shape, rest = divmod(int(label), len(TEXTURES) * len(HUES))
    texture, hue = divmod(rest, len(HUES))
    return shape, texture, hue


def _main_colour(rng: np.random.Generator, hue: int, background: np.ndarray) -> np.ndarray:
    """A saturated RGB colour (3,) float32 in hue bucket `hue`, far enough from the background."""
    for _ in range(100):
        h = (hue + rng.uniform(-HUE_SPREAD / 2, HUE_SPREAD / 2)) / len(HUES) % 1.0
        rgb = np.array(colorsys.hsv_to_rgb(h, rng.uniform(*SATURATION), rng.uniform(*VALUE)), np.float32)
        colour = rgb * np.float32(255)
        if np.linalg.norm(colour - background) >= _scenes.MIN_COLOUR_DISTANCE:
            return colour
    return colour  # practically unreachable: a background is far from most colours of a hue


def _grey(rng: np.random.Generator, main: np.ndarray) -> np.ndarray:
    """An achromatic colour (3,) whose level differs from the main colour's luma by >= GREY_CONTRAST."""
    luma = float(main @ np.array([0.299, 0.587, 0.114], np.float32))
    low, high = (0.0, luma - GREY_CONTRAST), (luma + GREY_CONTRAST, 255.0)
    options = [r for r in (low, high) if r[1] > r[0]]
    span = options[int(rng.integers(len(options)))]
    return np.full(3, rng.uniform(*span), np.float32)


def render_pretext(num: int, *, seed: int, split: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render pretext scenes.

    Args:
        num: number of images.
        seed: dataset seed.
        split: TRAIN_SPLIT or VAL_SPLIT (any int gives an independent set of scenes).
        size: side of the square images in pixels.

    Returns:
        images (N, S, S, 3) uint8 and targets (N,) int64 in 0..NUM_CLASSES-1; image i has class
        i mod NUM_CLASSES.
    """
    images = np.empty((num, size, size, 3), dtype=np.uint8)
    targets = np.arange(num, dtype=np.int64) % NUM_CLASSES
    for i in range(num):
        rng = np.random.default_rng([_PRETEXT_KEY, seed, split, i])
        shape, texture, hue = split_label(targets[i])
        canvas, background = _scenes.draw_background(rng, size)
        canvas = _scenes.draw_clutter(rng, canvas, size)
        spec = _scenes.random_object(rng, shape, texture, RADIUS)
        mask = _scenes.object_mask(spec, size)  # (W, W) on the supersampled canvas
        pattern = _scenes.texture_pattern(rng, texture, size)
        main = _main_colour(rng, hue, background)
        canvas[mask & ~pattern] = main
        canvas[mask & pattern] = _grey(rng, main)
        images[i] = _scenes.finish(rng, canvas, size)
    return images, targets


def create_pretext_datasets(*, transforms: dict, seed: int, num_train: int, num_val: int):
    """Render the pretext train and val splits and wrap them as classification datasets.

    Args:
        transforms: a transform config from `sladkit.data.transform_config`; scenes are rendered at its
            eval `resize` size, the train split gets the random train transform, val the eval one.
        seed: dataset seed.
        num_train: training images.
        num_val: validation images.

    Returns:
        (train, val) datasets with items `(image (3, S, S) float32, label int)`.
    """
    from sladkit.data.synthetic import SyntheticDataset
    from sladkit.data.transforms import create_transforms

    size = transforms["eval"]["resize"]
    train = render_pretext(num_train, seed=seed, split=TRAIN_SPLIT, size=size)
    val = render_pretext(num_val, seed=seed, split=VAL_SPLIT, size=size)
    return (
        SyntheticDataset("cls", *train, create_transforms(transforms, train=True, task="cls")),
        SyntheticDataset("cls", *val, create_transforms(transforms, train=False, task="cls")),
    )

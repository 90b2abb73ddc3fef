"""Drawing primitives for the synthetic dataset: shapes, textures, colours, clutter and noise.

A scene is drawn on a canvas `SUPERSAMPLE` times larger than the output and box-averaged down, which
anti-aliases edges. All lengths are fractions of the output size, so the same seed gives the same scene
(up to resolution) at 32, 64 or 224 px. Only numpy and PIL are used; randomness comes from the
`numpy.random.Generator` passed in, so a scene is a pure function of its generator's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "star")
TEXTURES = ("solid", "striped", "checkered")
SUPERSAMPLE = 2
IGNORE_INDEX = 255

# Nuisance ranges (fractions of the output side unless stated).
BACKGROUND_GRADIENT = 40.0  # max per-channel difference across the background, in 0..255 levels
CLUTTER_COUNT = (2, 5)  # inclusive range of distractor lines/blobs per image
CLUTTER_LINE_LENGTH = (0.1, 0.35)
CLUTTER_BLOB_RADIUS = (0.02, 0.06)
TEXTURE_PERIOD = (0.14, 0.2)  # one stripe pair / two checker cells
NOISE_SIGMA = (0.0, 10.0)  # Gaussian pixel noise, in 0..255 levels
MIN_COLOUR_DISTANCE = 100.0  # Euclidean RGB distance between object, texture and background colours


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene: which shape and texture, where, how big, how rotated.

    Attributes:
        shape: index into SHAPES.
        texture: index into TEXTURES.
        center: (x, y) in fractions of the image side.
        radius: circumradius in fractions of the image side.
        angle: rotation in radians.
    """

    shape: int
    texture: int
    center: tuple[float, float]
    radius: float
    angle: float


def _unit_polygon(shape: str) -> np.ndarray | None:
    """Vertices (V, 2) of a shape with circumradius 1 centred at 0; None for the circle."""
    if shape == "circle":
        return None
    if shape == "square":
        angles = np.pi / 4 + np.arange(4) * np.pi / 2
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if shape == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if shape == "cross":
        w = 0.33  # half width of an arm
        return np.array(
            [
                [w, -1],
                [w, -w],
                [1, -w],
                [1, w],
                [w, w],
                [w, 1],
                [-w, 1],
                [-w, w],
                [-1, w],
                [-1, -w],
                [-w, -w],
                [-w, -1],
            ]
        )
    if shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    raise ValueError(f"unknown shape {shape!r}")


_POLYGONS = {name: _unit_polygon(name) for name in SHAPES}


@lru_cache(maxsize=8)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (side, side) in output-pixel units, x and y."""
    coords = (np.arange(side, dtype=np.float32) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coords, coords)


def random_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A uniform random RGB colour (3,) at least MIN_COLOUR_DISTANCE from every colour in `avoid`."""
    for _ in range(100):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if all(np.linalg.norm(colour - other) >= MIN_COLOUR_DISTANCE for other in avoid):
            return colour
    return colour  # practically unreachable: most of the RGB cube is far enough


def draw_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A linear-gradient background; returns the canvas (W, W, 3) float32 and its mean colour (3,)."""
    start = rng.uniform(0, 255, 3).astype(np.float32)
    end = np.clip(start + rng.uniform(-BACKGROUND_GRADIENT, BACKGROUND_GRADIENT, 3), 0, 255).astype(
        np.float32
    )
    theta = rng.uniform(0, 2 * np.pi)
    coords = (np.arange(size * SUPERSAMPLE, dtype=np.float32) + 0.5) / (SUPERSAMPLE * size)  # (W,) in 0..1
    # Position along the gradient direction, roughly 0..1: (W, W), separable in x and y.
    t = np.add.outer(coords * np.float32(math.sin(theta)), coords * np.float32(math.cos(theta)))
    np.clip((t + 1) / 2, 0, 1, out=t)
    canvas = np.multiply.outer(t, end - start)  # (W, W, 3)
    canvas += start
    return canvas, (start + end) / 2


def draw_clutter(rng: np.random.Generator, canvas: np.ndarray, size: int) -> np.ndarray:
    """Distractor lines and small blobs in random colours; returns the new canvas (W, W, 3) float32."""
    image = Image.fromarray(canvas.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    scale = size * SUPERSAMPLE
    for _ in range(int(rng.integers(CLUTTER_COUNT[0], CLUTTER_COUNT[1] + 1))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(0, 1, 2) * scale
        if rng.random() < 0.5:
            length = rng.uniform(*CLUTTER_LINE_LENGTH) * scale
            theta = rng.uniform(0, 2 * np.pi)
            end = (x0 + length * math.cos(theta), y0 + length * math.sin(theta))
            draw.line([(x0, y0), end], fill=colour, width=max(1, SUPERSAMPLE * size // 32))
        else:
            r = rng.uniform(*CLUTTER_BLOB_RADIUS) * scale
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    return np.asarray(image, dtype=np.float32)


def random_object(
    rng: np.random.Generator, shape: int, texture: int, radius_range: tuple[float, float]
) -> ObjectSpec:
    """Random placement of a given shape and texture, fully inside the image."""
    radius = float(rng.uniform(*radius_range))
    center = (float(rng.uniform(radius, 1 - radius)), float(rng.uniform(radius, 1 - radius)))
    return ObjectSpec(shape, texture, center, radius, float(rng.uniform(0, 2 * np.pi)))


def object_mask(spec: ObjectSpec, size: int) -> np.ndarray:
    """Boolean silhouette (W, W) of an object on the supersampled canvas."""
    side = size * SUPERSAMPLE
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    cx, cy, r = spec.center[0] * side, spec.center[1] * side, spec.radius * side
    polygon = _POLYGONS[SHAPES[spec.shape]]
    if polygon is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        c, s = math.cos(spec.angle), math.sin(spec.angle)
        rotated = polygon @ np.array([[c, s], [-s, c]], dtype=np.float64)  # (V, 2)
        draw.polygon([(cx + r * px, cy + r * py) for px, py in rotated], fill=255)
    return np.asarray(image) > 0


def texture_pattern(rng: np.random.Generator, texture: int, size: int) -> np.ndarray:
    """Boolean pattern (W, W): True where the texture's second colour goes (all False for solid)."""
    side = size * SUPERSAMPLE
    if TEXTURES[texture] == "solid":
        return np.zeros((side, side), dtype=bool)
    period = rng.uniform(*TEXTURE_PERIOD) * size  # output pixels
    theta = rng.uniform(0, np.pi)
    offset = rng.uniform(0, 1, 2)
    x, y = _grid(side)
    u = (x * math.cos(theta) + y * math.sin(theta)) / period + offset[0]  # (W, W)
    if TEXTURES[texture] == "striped":
        return (np.floor(2 * u) % 2).astype(bool)
    v = (-x * math.sin(theta) + y * math.cos(theta)) / period + offset[1]
    return ((np.floor(2 * u) + np.floor(2 * v)) % 2).astype(bool)


def paint_object(
    rng: np.random.Generator, canvas: np.ndarray, spec: ObjectSpec, size: int, background: np.ndarray
) -> np.ndarray:
    """Paint an object in place on the canvas (W, W, 3); returns its silhouette (W, W) bool."""
    mask = object_mask(spec, size)
    primary = random_colour(rng, [background])
    secondary = random_colour(rng, [background, primary])
    pattern = texture_pattern(rng, spec.texture, size)
    canvas[mask & ~pattern] = primary
    canvas[mask & pattern] = secondary
    return mask


def finish(rng: np.random.Generator, canvas: np.ndarray, size: int) -> np.ndarray:
    """Box-downsample the canvas (W, W, 3) to (S, S, 3), add Gaussian noise, round to uint8."""
    image = _box_sum(canvas) / np.float32(SUPERSAMPLE * SUPERSAMPLE)  # (S, S, 3)
    sigma = rng.uniform(*NOISE_SIGMA)
    image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def downsample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Supersampled label map (W, W) -> (S, S): the strict-majority label of each pixel, else IGNORE_INDEX.

    A pixel whose sub-samples have no label covering more than half of them lies on an anti-aliased
    boundary between two regions; it is marked IGNORE_INDEX.
    """
    out = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
    for value in np.unique(labels):
        votes = _box_sum((labels == value).astype(np.uint8))  # (S, S) sub-samples with this label
        out[votes * 2 > SUPERSAMPLE * SUPERSAMPLE] = value
    return out


def _box_sum(array: np.ndarray) -> np.ndarray:
    """Sum over SUPERSAMPLE x SUPERSAMPLE blocks: (W, W, ...) -> (S, S, ...); strided adds are faster
    than a reshaped reduction."""
    total = array[::SUPERSAMPLE, ::SUPERSAMPLE].copy()
    for dy in range(SUPERSAMPLE):
        for dx in range(SUPERSAMPLE):
            if dy or dx:
                total += array[dy::SUPERSAMPLE, dx::SUPERSAMPLE]
    return total

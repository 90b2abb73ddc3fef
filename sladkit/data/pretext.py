"""A broad procedural *pretext* task for pretraining sladkit's tiny "foundation" ViT pair.

SLAD adapts frozen pretrained backbones; the built-in tiny pair (`sladkit_vit_192_p8`,
`sladkit_vit_96_p8`) gets its pretrained weights from this task (`tools/pretrain_tiny_pair.py`), standing
in for DINOv2-style pretraining. It is a visual vocabulary of eight procedural *families*, each with its
own classes, none of them a downstream task of sladkit's (`sladkit.data.synthetic`, image folders):

| family | classes | what the label is |
|---|---|---|
| glyph | 64 | which of 64 fixed random stroke glyphs (1-3 quadratic Bezier strokes), under random affine warps, control-point jitter and stroke widths |
| shape | 10 | outline of one object (triangle ... crescent); its fill (plain, or any texture-family pattern) is a nuisance |
| fill | 8 | the fill of one object (plain, gratings of 4 orientations, checks, dots, rings); its outline is a nuisance |
| texture | 16 | a full-field pattern: gratings of 4 orientations x 2 periods, checks, dots, rings, spokes, zigzags, blobs |
| count | 6 | how many small objects (1-6) lie on a 3 x 3 jittered grid |
| layout | 9 | which cell of a 3 x 3 grid holds one object |
| occlusion | 6 | which of two overlapping objects (disc, square, triangle) is in front, and which behind |
| colour | 8 | the hue bucket of one object on a near-grey background |

Every image also has a dense target: each patch of the model's grid is labelled with the image's class
where the foreground covers most of it, "background" where it covers almost none of it, and ignored in
between (texture images are all foreground), so that patch tokens learn *where* things are as well.

Nuisances, drawn per image: background colour and gradient, foreground colours (kept apart from the
background), position, scale, rotation, thin clutter lines, blur from a lower resolution, greyscale
(not for the colour family) and pixel noise. Edges are anti-aliased analytically (a one-pixel ramp on a
signed distance), so nothing is supersampled.

Generation is batched torch code that runs on the device it is given (a CUDA GPU renders thousands of
images per millisecond-scale step; two CPU cores render a 128-image batch in about 20 ms), and draws
unlimited fresh samples: batch `k` of a stream is a pure function of `(seed, k)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FAMILIES = ("glyph", "shape", "fill", "texture", "count", "layout", "occlusion", "colour")
FAMILY_CLASSES = {
    "glyph": 64,
    "shape": 10,
    "fill": 8,
    "texture": 16,
    "count": 6,
    "layout": 9,
    "occlusion": 6,
    "colour": 8,
}
FAMILY_WEIGHTS = {
    "glyph": 0.2,
    "shape": 0.14,
    "fill": 0.14,
    "texture": 0.1,
    "count": 0.1,
    "layout": 0.1,
    "occlusion": 0.1,
    "colour": 0.12,
}
SHAPES = (
    "triangle",
    "square",
    "pentagon",
    "hexagon",
    "circle",
    "ellipse",
    "star",
    "cross",
    "ring",
    "crescent",
)
TEXTURES = (
    *(f"grating-{angle}-{period}" for period in ("wide", "narrow") for angle in (0, 45, 90, 135)),
    "checks-wide",
    "checks-narrow",
    "dots-wide",
    "dots-narrow",
    "rings",
    "spokes",
    "zigzag",
    "blobs",
)
FILLS = ("solid", "grating-0", "grating-45", "grating-90", "grating-135", "checks", "dots", "rings")
SOLIDS = ("disc", "square", "triangle")  # the objects of count, layout and occlusion
HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta")
GLYPH_SEED = 20261202  # the glyph prototypes are part of the task's definition, not of a run's seed
OFFSETS = {f: sum(FAMILY_CLASSES[g] for g in FAMILIES[:i]) for i, f in enumerate(FAMILIES)}  # first label
NUM_CLASSES = sum(FAMILY_CLASSES.values())  # 127; the dense target adds BACKGROUND
BACKGROUND = NUM_CLASSES
IGNORE = -100


def pretext_labels() -> list[str]:
    """Class names of the pretext task, index = label (e.g. `glyph-07`, `shape-star`, `count-3`)."""
    names = [f"glyph-{i:02d}" for i in range(FAMILY_CLASSES["glyph"])]
    names += [f"shape-{s}" for s in SHAPES] + [f"fill-{f}" for f in FILLS]
    names += [f"texture-{t}" for t in TEXTURES]
    names += [f"count-{k + 1}" for k in range(FAMILY_CLASSES["count"])]
    names += [f"layout-{r}{c}" for r in "tmb" for c in "lcr"]
    names += [f"occlusion-{f}-over-{b}" for f in SOLIDS for b in SOLIDS if b != f]
    names += [f"colour-{h}" for h in HUES]
    return names


def family_of(labels: torch.Tensor) -> torch.Tensor:
    """Family index (into FAMILIES) of each label."""
    bounds = torch.tensor([OFFSETS[f] for f in FAMILIES[1:]], device=labels.device)
    return torch.bucketize(labels, bounds, right=True)


@dataclass
class PretextBatch:
    """A batch of pretext images.

    Attributes:
        images: (B, 3, S, S) float32 in [0, 1].
        labels: (B,) int64 in 0..NUM_CLASSES-1.
        patch_labels: (B, S/p, S/p) int64: the image's label, BACKGROUND, or IGNORE.
    """

    images: torch.Tensor
    labels: torch.Tensor
    patch_labels: torch.Tensor


class PretextGenerator:
    """Renders pretext batches of `size` px images on `device`.

    Args:
        size: image side in pixels.
        patch: the model's patch size (for the dense target); must divide `size`.
        device: where to render.
    """

    def __init__(self, size: int = 32, patch: int = 8, device: str | torch.device = "cpu") -> None:
        if size % patch:
            raise ValueError(f"patch {patch} does not divide image size {size}")
        self.size, self.patch, self.device = size, patch, torch.device(device)
        axis = (torch.arange(size, dtype=torch.float32, device=self.device) + 0.5) / size * 2 - 1
        self.y, self.x = torch.meshgrid(axis, axis, indexing="ij")  # (S, S) each, in (-1, 1)
        self.pixel = 2.0 / size  # one pixel in these units
        self.glyphs = _glyph_prototypes(FAMILY_CLASSES["glyph"], self.device)  # (G, 3, 3, 2), (G, 3)
        self._render = {
            "glyph": self._glyph,
            "shape": self._shape,
            "fill": self._fill,
            "texture": self._texture,
            "count": self._count,
            "layout": self._layout,
            "occlusion": self._occlusion,
            "colour": self._colour,
        }

    # --- sampling helpers -------------------------------------------------------------------------
    def _u(self, g: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return torch.rand(*shape, generator=g, device=self.device) * (high - low) + low

    def _int(self, g: torch.Generator, high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), generator=g, device=self.device)

    def _alpha(self, sd: torch.Tensor) -> torch.Tensor:
        """Coverage of each pixel from a signed distance in image units (negative inside)."""
        return (0.5 - sd / self.pixel).clamp(0, 1)

    def _local(self, g: torch.Generator, n: int, center, radius, angle=None):
        """Per-image object coordinates: (x, y) (B, S, S) in units of the object's radius."""
        if angle is None:
            angle = self._u(g, n, low=-math.pi, high=math.pi)
        cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
        dx, dy = self.x - center[:, 0, None, None], self.y - center[:, 1, None, None]
        r = radius[:, None, None]
        return (dx * cos + dy * sin) / r, (-dx * sin + dy * cos) / r

    def _colours(self, g: torch.Generator, background: torch.Tensor, k: int = 1) -> torch.Tensor:
        """`k` foreground colours (B, k, 3) far from the background (B, 3): best of 6 random candidates."""
        n = background.shape[0]
        out = []
        for _ in range(k):
            cand = self._u(g, n, 6, 3)  # (B, 6, 3)
            dist = (cand - background[:, None]).norm(dim=-1)
            out.append(cand[torch.arange(n, device=self.device), dist.argmax(1)])
        return torch.stack(out, 1)

    def _solid_sd(self, kind: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Signed distance (object units) of a disc, square or triangle (kind 0, 1, 2) of circumradius 1."""
        k = kind[:, None, None]
        sd = torch.where(k == 0, _polygon_sd(x, y, 64), _polygon_sd(x, y, 4))
        return torch.where(k == 2, _polygon_sd(x, y, 3), sd)

    # --- families: each returns (alpha (B, S, S) or None, composite fn) -----------------------------
    def _glyph(self, g, n, bg):
        idx = self._int(g, FAMILY_CLASSES["glyph"], n)
        points, used = self.glyphs[0][idx], self.glyphs[1][idx]  # (B, 3, 3, 2), (B, 3)
        points = points + torch.randn(points.shape, generator=g, device=self.device) * 0.07
        angle = self._u(g, n, low=-0.35, high=0.35)
        scale = self._u(g, n, 1, low=0.55, high=0.9) * torch.stack(
            [self._u(g, n, low=0.85, high=1.15), self._u(g, n, low=0.85, high=1.15)], 1
        )
        shear = self._u(g, n, low=-0.25, high=0.25)
        shift = self._u(g, n, 2, low=-0.15, high=0.15)
        cos, sin = angle.cos(), angle.sin()
        px, py = points[..., 0] + shear[:, None, None] * points[..., 1], points[..., 1]
        px, py = px * scale[:, 0, None, None], py * scale[:, 1, None, None]
        qx = px * cos[:, None, None] - py * sin[:, None, None] + shift[:, 0, None, None]
        qy = px * sin[:, None, None] + py * cos[:, None, None] + shift[:, 1, None, None]
        t = torch.linspace(0, 1, 8, device=self.device)[:, None]  # quadratic Bezier samples
        w = torch.cat([(1 - t) ** 2, 2 * t * (1 - t), t**2], 1)  # (8, 3)
        cx, cy = qx @ w.T, qy @ w.T  # (B, 3 strokes, 8)
        a = torch.stack([cx[..., :-1], cy[..., :-1]], -1).flatten(1, 2)  # (B, 21, 2) segment starts
        b = torch.stack([cx[..., 1:], cy[..., 1:]], -1).flatten(1, 2)
        seg_used = used.repeat_interleave(7, 1)  # (B, 21)
        d = _segment_distance(self.x, self.y, a, b)  # (B, S, S, 21)
        d = torch.where(seg_used[:, None, None], d, torch.full_like(d, 10.0)).amin(-1)
        width = self._u(g, n, low=0.05, high=0.12)[:, None, None]
        alpha = self._alpha(d - width)
        return idx, self._paint(g, bg, alpha)

    def _shape(self, g, n, bg):
        idx = self._int(g, len(SHAPES), n)
        alpha = self._outline(g, idx, n)
        # the fill is a nuisance: plain, or any pattern of the texture family in two colours
        plain = self._u(g, n) < 0.5
        return idx, (alpha, self._filled(g, bg, n, self._int(g, len(TEXTURES), n), plain))

    def _fill(self, g, n, bg):
        idx = self._int(g, len(FILLS), n)
        alpha = self._outline(g, self._int(g, len(SHAPES), n), n)  # the outline is a nuisance
        grating = (idx - 1).clamp_min(0) + 4 * self._int(g, 2, n)  # TEXTURES: orientation, wide or narrow
        pattern = torch.where(idx <= 4, grating, torch.where(idx == 5, 8, 10) + self._int(g, 2, n))
        pattern = torch.where(idx == 7, 12, pattern)  # rings
        return idx, (alpha, self._filled(g, bg, n, pattern, idx == 0))

    def _filled(self, g, bg, n, pattern_idx, plain):
        """Fill images (B, 3, S, S): texture `pattern_idx` (into TEXTURES) in two colours, one colour where `plain`."""
        colours = self._colours(g, bg, 2)
        pattern = self._pattern(g, pattern_idx, n)
        pattern = torch.where(plain[:, None, None], torch.zeros_like(pattern), pattern)
        return (
            colours[:, 0, :, None, None] * (1 - pattern[:, None])
            + colours[:, 1, :, None, None] * pattern[:, None]
        )

    def _outline(self, g, idx, n):
        """Alpha (B, S, S) of shape `idx` (into SHAPES) at a random place, size and rotation."""
        center = self._u(g, n, 2, low=-0.3, high=0.3)
        radius = self._u(g, n, low=0.4, high=0.75)
        x, y = self._local(g, n, center, radius)
        rho, phi = (x**2 + y**2).sqrt(), torch.atan2(y, x)
        sds = [
            _polygon_sd(x, y, 3),
            _polygon_sd(x, y, 4),
            _polygon_sd(x, y, 5),
            _polygon_sd(x, y, 6),
            rho - 1,
            (x**2 + (y / 0.55) ** 2).sqrt() - 1,
            (rho - (0.45 + 0.55 * (2 * torch.frac(phi * 5 / (2 * math.pi) + 10.5) - 1).abs())) * 0.7,
            torch.minimum(
                torch.maximum(x.abs() - 1, y.abs() - 0.32), torch.maximum(x.abs() - 0.32, y.abs() - 1)
            ),
            (rho - 0.72).abs() - 0.28,
            torch.maximum(rho - 1, 0.8 - ((x - 0.45) ** 2 + y**2).sqrt()),
        ]
        sd = torch.stack(sds, 1)[torch.arange(n, device=self.device), idx]  # (B, S, S)
        return self._alpha(sd * radius[:, None, None])

    def _texture(self, g, n, bg):
        idx = self._int(g, len(TEXTURES), n)
        pattern = self._pattern(g, idx, n)
        colours = self._colours(g, bg, 1)[:, 0]
        fill = bg[:, :, None, None] * (1 - pattern[:, None]) + colours[:, :, None, None] * pattern[:, None]
        return idx, (torch.ones_like(pattern), fill)

    def _pattern(self, g, idx, n):
        """Texture `idx` (B,) as a (B, S, S) mix weight in [0, 1] (random phase, slight rotation)."""
        jitter = self._u(g, n, low=-0.15, high=0.15)
        orient = (idx % 4).float() * (math.pi / 4) + jitter
        period = torch.where(idx < 4, 0.55, 0.3)  # gratings: wide, narrow
        period = torch.where((idx >= 8) & (idx % 2 == 0), 0.6, torch.where(idx >= 8, 0.33, period))
        p = period[:, None, None]
        cos, sin = orient.cos()[:, None, None], orient.sin()[:, None, None]
        x, y = self.x * cos + self.y * sin, -self.x * sin + self.y * cos
        x = x + self._u(g, n, low=0, high=2)[:, None, None]
        y = y + self._u(g, n, low=0, high=2)[:, None, None]
        two_pi = 2 * math.pi
        rho = ((x - 1) ** 2 + (y - 1) ** 2).sqrt()  # rings and spokes centre inside the image
        cands = [
            torch.sin(two_pi * x / p),  # gratings (orientation from idx % 4)
            torch.sin(two_pi * x / p) * torch.sin(two_pi * y / p),  # checks
            (0.28 - (((x / p) % 1 - 0.5) ** 2 + ((y / p) % 1 - 0.5) ** 2).sqrt()) * 4,  # dots
            torch.sin(two_pi * rho / 0.32),
            torch.sin(8 * torch.atan2(y - 1, x - 1)),
            torch.sin(two_pi * (y + 0.12 * (2 * ((x / 0.3) % 1) - 1).abs()) / 0.3),
        ]
        blobs = F.interpolate(
            torch.randn(n, 1, 5, 5, generator=g, device=self.device),
            size=(self.size, self.size),
            mode="bicubic",
            align_corners=False,
        )[:, 0]
        kind = torch.where(idx < 8, 0, torch.where(idx < 10, 1, torch.where(idx < 12, 2, idx - 9)))
        stack = torch.stack([*cands, blobs], 1)
        value = stack[torch.arange(n, device=self.device), kind]
        return (value * 4 + 0.5).clamp(0, 1)

    def _count(self, g, n, bg):
        idx = self._int(g, FAMILY_CLASSES["count"], n)  # count - 1
        present = torch.rand(n, 9, generator=g, device=self.device).argsort(1).argsort(1) <= idx[:, None]
        alpha = torch.zeros(n, self.size, self.size, device=self.device)
        kind = self._int(g, len(SOLIDS), n)
        for cell in range(9):
            row, col = divmod(cell, 3)
            center = torch.tensor([(col - 1) * 0.62, (row - 1) * 0.62], device=self.device)
            center = center + self._u(g, n, 2, low=-0.1, high=0.1)
            radius = self._u(g, n, low=0.14, high=0.22)
            x, y = self._local(g, n, center, radius)
            a = self._alpha(self._solid_sd(kind, x, y) * radius[:, None, None])
            alpha = torch.where(present[:, cell, None, None], torch.maximum(alpha, a), alpha)
        return idx, self._paint(g, bg, alpha)

    def _layout(self, g, n, bg):
        idx = self._int(g, FAMILY_CLASSES["layout"], n)
        row, col = idx // 3, idx % 3
        center = torch.stack([(col - 1) * 0.6, (row - 1) * 0.6], 1).float()
        center = center + self._u(g, n, 2, low=-0.1, high=0.1)
        radius = self._u(g, n, low=0.18, high=0.3)
        x, y = self._local(g, n, center, radius)
        alpha = self._alpha(self._solid_sd(self._int(g, len(SOLIDS), n), x, y) * radius[:, None, None])
        return idx, self._paint(g, bg, alpha)

    def _occlusion(self, g, n, bg):
        idx = self._int(g, FAMILY_CLASSES["occlusion"], n)
        front = idx // 2
        back = (front + 1 + idx % 2) % 3  # the other two kinds, in order
        centre = self._u(g, n, 2, low=-0.15, high=0.15)
        angle = self._u(g, n, low=-math.pi, high=math.pi)
        offset = self._u(g, n, low=0.22, high=0.32)[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
        colours = self._colours(g, bg, 2)
        alphas = []
        for kind, c in ((back, centre + offset), (front, centre - offset)):
            radius = self._u(g, n, low=0.4, high=0.52)
            x, y = self._local(g, n, c, radius)
            alphas.append(self._alpha(self._solid_sd(kind, x, y) * radius[:, None, None]))
        a_back, a_front = alphas
        fill_back = colours[:, 0, :, None, None]
        fill_front = colours[:, 1, :, None, None]
        # composite back then front into one alpha and one fill
        alpha = 1 - (1 - a_back) * (1 - a_front)
        fill = (
            fill_front * a_front[:, None] + fill_back * (a_back * (1 - a_front))[:, None]
        ) / alpha.clamp_min(1e-6)[:, None]
        return idx, (alpha, fill)

    def _colour(self, g, n, bg):
        idx = self._int(g, len(HUES), n)
        hue = (idx.float() + self._u(g, n, low=-0.3, high=0.3)) / len(HUES)
        rgb = _hsv_to_rgb(hue, self._u(g, n, low=0.65, high=1.0), self._u(g, n, low=0.6, high=1.0))
        center = self._u(g, n, 2, low=-0.35, high=0.35)
        radius = self._u(g, n, low=0.3, high=0.6)
        x, y = self._local(g, n, center, radius)
        alpha = self._alpha(self._solid_sd(self._int(g, len(SOLIDS), n), x, y) * radius[:, None, None])
        return idx, (alpha, rgb[:, :, None, None].expand(n, 3, self.size, self.size))

    def _paint(self, g, bg, alpha):
        """(alpha, fill) with one foreground colour far from the background."""
        colour = self._colours(g, bg, 1)[:, 0]
        return alpha, colour[:, :, None, None].expand(-1, -1, self.size, self.size)

    # --- the batch ---------------------------------------------------------------------------------
    def background(self, g: torch.Generator, n: int, grey: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean colours (B, 3) and images (B, 3, S, S): a colour with a linear gradient."""
        base = self._u(g, n, 3)
        if grey:  # near-grey backgrounds for the colour family
            base = base.mean(1, keepdim=True) * 0.8 + 0.1 + self._u(g, n, 3, low=-0.05, high=0.05)
        angle = self._u(g, n, low=0, high=2 * math.pi)
        ramp = self.x * angle.cos()[:, None, None] + self.y * angle.sin()[:, None, None]  # (B, S, S)
        slope = self._u(g, n, 3, low=-0.12, high=0.12)
        return base, (base[:, :, None, None] + slope[:, :, None, None] * ramp[:, None]).clamp(0, 1)

    def _clutter(self, g, n) -> torch.Tensor:
        """Alpha (B, S, S) of 0-2 thin random lines."""
        a = self._u(g, n, 2, 2, low=-1, high=1)
        b = a + self._u(g, n, 2, 2, low=-0.6, high=0.6)
        d = _segment_distance(self.x, self.y, a, b).amin(-1)
        keep = (self._u(g, n) < 0.4)[:, None, None]
        return torch.where(keep, self._alpha(d - 0.02), torch.zeros_like(d))

    def batch(self, n: int, g: torch.Generator) -> PretextBatch:
        """`n` images, families drawn with FAMILY_WEIGHTS; `g` is a generator on this device."""
        weights = torch.tensor([FAMILY_WEIGHTS[f] for f in FAMILIES], device=self.device)
        family = torch.multinomial(weights, n, replacement=True, generator=g)
        images, labels, alphas = [], [], []
        for f_idx, name in enumerate(FAMILIES):
            count = int((family == f_idx).sum())
            if count == 0:
                continue
            bg_mean, bg = self.background(g, count, grey=name == "colour")
            if name != "texture":  # clutter behind the object
                clutter = self._clutter(g, count)[:, None]
                ink = self._colours(g, bg_mean, 1)[:, 0, :, None, None]
                bg = bg * (1 - clutter) + ink * clutter
            sub, (alpha, fill) = self._render[name](g, count, bg_mean)
            image = bg * (1 - alpha[:, None]) + fill * alpha[:, None]
            if name != "colour":  # greyscale would erase the colour label
                grey = (self._u(g, count) < 0.15)[:, None, None, None]
                image = torch.where(grey, image.mean(1, keepdim=True).expand_as(image), image)
            images.append(image)
            labels.append(sub + OFFSETS[name])
            alphas.append(alpha)
        image, label, alpha = torch.cat(images), torch.cat(labels), torch.cat(alphas)
        image = self._degrade(g, image)
        return PretextBatch(image, label, self._patch_labels(label, alpha))

    def _degrade(self, g: torch.Generator, image: torch.Tensor) -> torch.Tensor:
        """Blur from half (or, for a fifth of them, a quarter) the resolution for 20 % of images; noise."""
        n, s = image.shape[0], self.size
        low = F.interpolate(image, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        if s >= 16:
            low2 = F.interpolate(
                image, scale_factor=0.25, mode="bilinear", antialias=True, align_corners=False
            )
            low2 = F.interpolate(low2, size=low.shape[-2:], mode="bilinear", align_corners=False)
            low = torch.where((self._u(g, n) < 0.2)[:, None, None, None], low2, low)
        low = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
        blur = (self._u(g, n) < 0.2)[:, None, None, None]
        image = torch.where(blur, low, image)
        sigma = self._u(g, n, low=0, high=0.05)[:, None, None, None]
        noise = torch.randn(image.shape, generator=g, device=self.device) * sigma
        return (image + noise).clamp(0, 1)

    def _patch_labels(self, label: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        cover = F.avg_pool2d(alpha[:, None], self.patch)[:, 0]  # (B, S/p, S/p)
        out = torch.full_like(cover, IGNORE, dtype=torch.long)
        out = torch.where(cover >= 0.4, label[:, None, None].expand_as(out), out)
        return torch.where(cover <= 0.05, torch.full_like(out, BACKGROUND), out)


def batch_generator(seed: int, step: int, device: torch.device | str) -> torch.Generator:
    """The generator of batch `step` of stream `seed`: batches are pure functions of (seed, step)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return g


def _glyph_prototypes(num: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Control points (G, 3 strokes, 3 points, 2) in [-0.8, 0.8] and stroke masks (G, 3) of the glyphs."""
    g = torch.Generator().manual_seed(GLYPH_SEED)
    points = torch.rand(num, 3, 3, 2, generator=g) * 1.6 - 0.8
    strokes = torch.randint(1, 4, (num,), generator=g)
    used = torch.arange(3)[None] < strokes[:, None]
    return points.to(device), used.to(device)


def _polygon_sd(x: torch.Tensor, y: torch.Tensor, sides: int) -> torch.Tensor:
    """Signed distance (exact inside, close outside) of a regular polygon of circumradius 1, a vertex up."""
    k = 2 * math.pi / sides
    phi = torch.atan2(x, -y)  # 0 at the top vertex
    a = torch.remainder(phi, k) - k / 2
    return (x**2 + y**2).sqrt() * torch.cos(a) - math.cos(math.pi / sides)


def _segment_distance(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of every pixel (S, S) to each segment a->b (B, M, 2): (B, S, S, M)."""
    p = torch.stack([x, y], -1)[None, :, :, None]  # (1, S, S, 1, 2)
    a, b = a[:, None, None], b[:, None, None]  # (B, 1, 1, M, 2)
    ab = b - a
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-8)).clamp(0, 1)
    return (p - a - t[..., None] * ab).norm(dim=-1)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B,) hue in [0, 1) (wrapping), saturation, value -> (B, 3) RGB."""
    h6 = torch.remainder(h, 1.0)[:, None] * 6
    k = torch.remainder(torch.tensor([5.0, 3.0, 1.0], device=h.device) + h6, 6)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)

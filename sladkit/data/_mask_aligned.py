"""torchvision v2 resizing transforms that resample masks pixel-centre aligned with the image.

torchvision resamples a `tv_tensors.Mask` with torch's legacy "nearest" mode, which samples source pixel
`floor(i * scale)` and so is shifted by up to half a source pixel against PIL's (and torch's bicubic)
pixel-centre convention. These subclasses use "nearest-exact" (`floor((i + 0.5) * scale)`, the same as
PIL's NEAREST) for masks, so a resized mask stays on top of its resized image. Images are unchanged.
"""

from __future__ import annotations

from typing import Any

from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F


class RandomResizedCrop(v2.RandomResizedCrop):
    """`v2.RandomResizedCrop` whose masks are resampled with nearest-exact."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            cropped = F.crop(inpt, params["top"], params["left"], params["height"], params["width"])
            return F.resize(cropped, list(self.size), interpolation=InterpolationMode.NEAREST_EXACT)
        return super().transform(inpt, params)


class Resize(v2.Resize):
    """`v2.Resize` whose masks are resampled with nearest-exact."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return F.resize(
                inpt, self.size, interpolation=InterpolationMode.NEAREST_EXACT, max_size=self.max_size
            )
        return super().transform(inpt, params)

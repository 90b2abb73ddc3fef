"""Task heads on a timm ViT's final (normed) tokens, and the backbone + head model.

Classification: linear layer on `[CLS ‖ mean(patch tokens)]` (DINOv2 linear-eval style; `pool`).
Segmentation: patch tokens -> grid -> BatchNorm -> 1x1 conv to classes -> bilinear upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pool_tokens(tokens: torch.Tensor, num_prefix: int, pool: str) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C) or (B, 2C) pooled features."""
    cls = tokens[:, 0]
    avg = tokens[:, num_prefix:].mean(dim=1)
    if pool == "cls":
        return cls
    if pool == "avg":
        return avg
    return torch.cat([cls, avg], dim=-1)


class ClassificationHead(nn.Module):
    def __init__(self, width: int, num_classes: int, *, num_prefix: int, pool: str = "cls+avg") -> None:
        super().__init__()
        self.num_prefix = num_prefix
        self.pool = pool
        self.fc = nn.Linear(2 * width if pool == "cls+avg" else width, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, tokens: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        return self.fc(pool_tokens(tokens, self.num_prefix, self.pool))  # (B, classes)


class SegmentationHead(nn.Module):
    def __init__(self, width: int, num_classes: int, *, num_prefix: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.num_prefix = num_prefix
        self.grid = grid
        self.bn = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, tokens: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        patches = tokens[:, self.num_prefix :]  # (B, h*w, C)
        grid = patches.transpose(1, 2).unflatten(2, self.grid)  # (B, C, h, w)
        logits = self.conv(self.bn(grid))  # (B, classes, h, w)
        if out_size is not None:
            logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
        return logits


class TaskModel(nn.Module):
    """A timm ViT backbone with a task head: `forward(images) -> logits`."""

    def __init__(self, backbone: nn.Module, head: nn.Module, *, pool: str = "cls+avg") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pool = pool

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.forward_features(images)  # (B, N, C), final norm applied
        return self.head(tokens, out_size=images.shape[-2:])

    def forward_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and pooled features (for CKA)."""
        tokens = self.backbone.forward_features(images)
        pooled = pool_tokens(tokens, self.backbone.num_prefix_tokens, self.pool)
        return self.head(tokens, out_size=images.shape[-2:]), pooled


def create_head(
    task: str, width: int, num_classes: int, *, num_prefix: int, grid: tuple[int, int], pool: str
):
    if task == "cls":
        return ClassificationHead(width, num_classes, num_prefix=num_prefix, pool=pool)
    return SegmentationHead(width, num_classes, num_prefix=num_prefix, grid=grid)

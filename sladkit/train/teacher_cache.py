"""`--cache-teacher`: a frozen teacher's logits for every training image, computed once per stage.

Valid only where it changes nothing but the time: the teacher is frozen (the student stage of a two-stage
method: eval mode, no dropout, no gradient) and the training images are not augmented (`--no-augment`),
so the teacher would compute the same logits for an image in every epoch. Each process computes every
world_size-th image and the shards are all-gathered, so every process holds the whole cache (on the CPU).
Segmentation logits are kept at the patch-grid resolution and upsampled per batch as the head does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from sladkit.models.heads import TaskModel
from sladkit.train.batching import shard_indices
from sladkit.train.distributed import DistContext


@torch.no_grad()
def teacher_outputs(teacher: TaskModel, images: torch.Tensor) -> torch.Tensor:
    """Logits before any upsampling: (B, classes) or (B, classes, h, w) on the patch grid."""
    return teacher.head(teacher.backbone.forward_features(images), out_size=None)


def upsample_like(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Cached logits at the images' resolution (segmentation), exactly as the head upsamples."""
    if logits.dim() == 4:
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def compute_teacher_cache(
    teacher: TaskModel, dataset, ctx: DistContext, *, batch_size: int, workers: int, autocast
) -> torch.Tensor:
    """The teacher's logits for every image of `dataset` (index order), float32 on the CPU."""
    teacher.eval()
    n, world = len(dataset), ctx.world_size
    mine = shard_indices(n, rank=ctx.rank, world_size=world)
    loader = DataLoader(Subset(dataset, mine), batch_size=batch_size, shuffle=False, num_workers=workers)
    chunks = []
    for images, _ in loader:
        with autocast():
            chunks.append(teacher_outputs(teacher, images.to(ctx.device)).float())
    local = torch.cat(chunks)  # (len(mine), ...)
    if not ctx.distributed:
        return local.cpu()
    import torch.distributed as dist

    per_rank = -(-n // world)
    padded = local.new_zeros((per_rank, *local.shape[1:]))
    padded[: len(local)] = local
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    cache = torch.empty((n, *local.shape[1:]), dtype=local.dtype)
    for rank, part in enumerate(gathered):
        count = len(shard_indices(n, rank=rank, world_size=world))
        cache[rank::world] = part[:count].cpu()
    return cache

"""Evaluation during training: student and teacher metric on the validation split, and their linear CKA.

The loop (`sladkit.train.loop.Trainer.evaluate`) calls `evaluate_pair` before training and after every
epoch. Each process evaluates every world_size-th image (`sladkit.train.batching.shard_indices`);
confusion matrices and CKA sums are added up over the processes, so every rank gets the same numbers.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset

from sladkit.config import TrainConfig
from sladkit.models.pair import TeacherStudent
from sladkit.train.batching import shard_indices
from sladkit.train.distributed import DistContext
from sladkit.train.interrupt import ignore_sigint_in_worker
from sladkit.train.methods import Stage
from sladkit.train.metrics import CkaMoments, ConfusionMatrix, metric_name
from sladkit.train.precision import autocast
from sladkit.train.stages import student_mode


@torch.no_grad()
def evaluate_pair(
    pair: TeacherStudent,
    val_set,
    stage: Stage,
    config: TrainConfig,
    dist: DistContext,
    *,
    num_classes: int,
    batch_size: int,
) -> dict:
    """Student and teacher metric on the validation split, and linear CKA of their pooled features.

    Each process evaluates every world_size-th image, `batch_size` at a time; confusion matrices and CKA
    sums are added up over the processes. A model not trained in `stage` (the student during a teacher
    stage, the teacher of student-only) gets no metric; CKA is always measured.
    """
    metric, device = metric_name(config.task), dist.device
    pair.eval()
    dist.broadcast_buffers(pair)  # BatchNorm statistics: rank 0's, as in the checkpoint
    matrices = {role: ConfusionMatrix(num_classes) for role in ("teacher", "student")}
    cka = CkaMoments()
    for images, target in val_loader(val_set, dist, batch_size=batch_size, workers=config.workers):
        images, target = images.to(device), target.to(device)
        pooled = {}
        for role in ("teacher", "student"):
            with autocast(config.precision, device):
                logits, pooled[role] = getattr(pair, role).forward_with_features(images)
            matrices[role].update(logits, target)
        cka.update(pooled["teacher"].float(), pooled["student"].float())
    for m in matrices.values():
        dist.all_reduce_sum(m.matrix)
    cka.load_flat(dist.all_reduce_sum(cka.flat().to(device)))
    result = {f"{role}_{metric}": m.value(config.task) for role, m in matrices.items()}
    if stage.teacher == "none":
        result[f"teacher_{metric}"] = None
    if student_mode(stage, config) == "none":
        result[f"student_{metric}"] = None
    result["cka"] = cka.value()
    return result


def val_loader(val_set, dist: DistContext, *, batch_size: int, workers: int) -> DataLoader:
    """This process's shard of the validation split, in order."""
    mine = shard_indices(len(val_set), rank=dist.rank, world_size=dist.world_size)
    return DataLoader(
        Subset(val_set, mine),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=ignore_sigint_in_worker if workers else None,
    )

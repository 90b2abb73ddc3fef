"""Which images each process trains on, step by step: reproducible, resumable, layout-independent.

An epoch's order is one permutation of the training set, drawn from (seed, stage, epoch) by PyTorch's
`DistributedSampler`. Consecutive chunks of `global_batch` images of it are the optimizer steps; each
process takes every world_size-th image of a chunk (the sampler's shard), in `accumulate` micro-batches.
So the images of a step, and the mean loss over them, are the same for any number of processes or
accumulation steps, and a resumed epoch skips exactly the steps already done.

Augmentation draws from torch's global RNG, reseeded before every image from (epoch seed, image index):
an image gets the same crop and flip whichever process, loader worker or resumed run loads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, DistributedSampler

from sladkit.errors import ConfigError


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers, the same in every process (unlike Python's salted hash)."""
    digest = hashlib.blake2b(repr(values).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class BatchPlan:
    """How one epoch's images split into optimizer steps, processes and micro-batches."""

    global_batch: int  # images per optimizer step, all processes together
    micro_batch: int  # images per forward/backward pass of one process
    accumulate: int  # micro-batches per process and step
    world_size: int
    steps: int  # optimizer steps per epoch

    @property
    def per_process(self) -> int:
        return self.micro_batch * self.accumulate


def plan_batches(num_images: int, batch_size: int, *, world_size: int = 1, accumulate: int = 1) -> BatchPlan:
    """Steps of `batch_size` images (the last incomplete one dropped); a set smaller than one batch is one
    step of as many images as split evenly over the processes and accumulation steps."""
    split = world_size * accumulate
    global_batch = batch_size if num_images >= batch_size else num_images - num_images % split
    if global_batch == 0:
        raise ConfigError(
            f"the training set has {num_images} images, fewer than the {world_size} process(es) x "
            f"--accumulate {accumulate} that share each step; add images or lower --devices/--accumulate"
        )
    return BatchPlan(global_batch, global_batch // split, accumulate, world_size, num_images // global_batch)


def epoch_indices(
    num_images: int, plan: BatchPlan, *, seed: int, rank: int = 0, start_step: int = 0
) -> list[int]:
    """This process's images of one epoch in order, from step `start_step` on."""
    sampler = DistributedSampler(
        range(num_images), num_replicas=plan.world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    shard = list(sampler)  # every world_size-th image of the epoch's permutation
    return shard[start_step * plan.per_process : plan.steps * plan.per_process]


def shard_indices(num_images: int, *, rank: int, world_size: int) -> list[int]:
    """Every world_size-th image from `rank` (evaluation: each image once over all processes)."""
    return list(range(rank, num_images, world_size))


class SeededImages(Dataset):
    """`dataset[i]` as `(image, target, i)`, with torch's CPU RNG reseeded from (seed, i) first."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        torch.default_generator.manual_seed(mix_seed(self.seed, index))
        image, target = self.dataset[index]
        return image, target, index

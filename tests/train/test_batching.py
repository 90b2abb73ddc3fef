"""Batches, shards and seeds: a step's images do not depend on processes, accumulation or resuming."""

from __future__ import annotations

import pytest
import torch

from sladkit.errors import ConfigError
from sladkit.train.batching import SeededImages, epoch_indices, mix_seed, plan_batches, shard_indices


def _steps(num_images: int, batch: int, world: int, accumulate: int, start: int = 0) -> list[set[int]]:
    """The set of images of each optimizer step, over all processes."""
    plan = plan_batches(num_images, batch, world_size=world, accumulate=accumulate)
    shards = [epoch_indices(num_images, plan, seed=7, rank=r, start_step=start) for r in range(world)]
    per = plan.per_process
    return [set().union(*(s[i * per : (i + 1) * per] for s in shards)) for i in range(plan.steps - start)]


@pytest.mark.parametrize("world, accumulate", [(2, 1), (4, 1), (2, 2), (1, 4)])
def test_each_step_takes_the_same_images_whatever_the_split(world, accumulate):
    reference = _steps(100, 16, 1, 1)
    assert len(reference) == 6 and all(len(s) == 16 for s in reference)  # the last 4 images dropped
    assert _steps(100, 16, world, accumulate) == reference
    assert _steps(100, 16, world, accumulate, start=4) == reference[4:]  # a resumed epoch


def test_a_set_smaller_than_a_batch_is_one_even_step_and_too_few_images_are_refused():
    plan = plan_batches(10, 64, world_size=2, accumulate=2)
    assert (plan.global_batch, plan.micro_batch, plan.steps) == (8, 2, 1)
    with pytest.raises(ConfigError, match="fewer than the 4 process"):
        plan_batches(3, 64, world_size=4)


def test_epochs_shuffle_differently_and_evaluation_shards_cover_each_image_once():
    plan = plan_batches(50, 10)
    assert epoch_indices(50, plan, seed=1) != epoch_indices(50, plan, seed=2)
    shards = [shard_indices(11, rank=r, world_size=3) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


def test_augmentation_depends_on_the_image_and_epoch_only():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.rand(3), i

    images = SeededImages(Noisy(), seed=3)
    first = images[2][0]
    torch.manual_seed(123)  # whatever happened before in this process
    assert torch.equal(images[2][0], first) and images[2][2] == 2
    assert not torch.equal(images[1][0], first)
    assert not torch.equal(SeededImages(Noisy(), seed=4)[2][0], first)
    assert mix_seed(1, 2) == mix_seed(1, 2) != mix_seed(2, 1)

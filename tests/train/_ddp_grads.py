"""Run under torchrun with 2 gloo processes: a SLAD pair's gradients under DDP equal one process's.

Each process builds the same pair (same seed, LoRA B made non-zero so that A has gradients too), runs the
joint stage's forward passes through `StageForward` wrapped in DistributedDataParallel on its half of a
batch, and back-propagates the SLAD loss. Rank 0 also computes the gradients of the whole batch in one
process, without DDP, and writes the largest difference per parameter to the JSON file given as argv[1].
If DDP counted a shared parameter twice (once for the teacher, once for the student's view of it),
its gradient would be doubled.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sladkit.config import TrainConfig
from sladkit.models.pair import create_pair
from sladkit.train.losses import kd_loss, task_loss
from sladkit.train.methods import get_method
from sladkit.train.stages import StageForward, param_groups

TINY = {"depth": 2, "init_values": 1.0}


def build(config, stage):
    torch.manual_seed(0)
    pair = create_pair(
        config, num_classes=5, image_size=32, teacher_adapter=True, shared=True, student_ft=False
    )
    with torch.no_grad():
        for name, p in pair.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    pair.requires_grad_(False)
    for group in param_groups(pair, stage, config):
        for p in group["params"]:
            p.requires_grad_(True)
    return pair


def loss_of(model, images, target):
    teacher, student = model(images, torch.arange(len(images)))
    return (
        task_loss(student, target)
        + task_loss(teacher, target)
        + kd_loss(student, teacher.detach(), target, 2.0)
    )


def grads(pair):
    return {n: p.grad.clone() for n, p in pair.named_parameters() if p.requires_grad}


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    config = TrainConfig(
        pretrained=False, teacher_kwargs=TINY, student_kwargs=TINY, rank=4, targets="qkv,proj,fc1,fc2"
    )
    stage = get_method("slad").stages[0]
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 32, 32, generator=generator)
    target = torch.randint(0, 5, (8,), generator=generator)

    pair = build(config, stage)
    ddp = DistributedDataParallel(StageForward(pair, stage, "lora"))
    loss_of(ddp, images[rank::world], target[rank::world]).backward()  # DDP averages the two halves
    distributed = grads(pair)

    if rank == 0:
        alone = build(config, stage)
        loss_of(StageForward(alone, stage, "lora"), images, target).backward()
        expected = grads(alone)
        registered = [p for p in ddp.module.parameters() if p.requires_grad]
        result = {
            "registered": len(registered),
            "unique": len({id(p) for p in registered}),
            "trainable": len(expected),
            "shared": [n for n in expected if n.startswith("teacher.") and "lora_" in n],
            "scale": max(g.abs().max().item() for g in expected.values()),
            "diff": {n: (distributed[n] - g).abs().max().item() for n, g in expected.items()},
        }
        with open(out, "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

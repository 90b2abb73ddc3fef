"""What a stage of a method trains and runs: its parameter groups and its forward passes.

`StageForward` is the module DistributedDataParallel wraps: the stage's teacher and student forward
passes over the one `TeacherStudent` module, so that a parameter the student reads through a shared view
is registered, and its gradient all-reduced, once.
"""

from __future__ import annotations

import torch
from torch import nn

from sladkit.config import TrainConfig
from sladkit.models.pair import TeacherStudent
from sladkit.train.methods import Stage
from sladkit.train.teacher_cache import upsample_like


def student_mode(stage: Stage, config: TrainConfig) -> str:
    return config.student_adapt if stage.student == "adapt" else stage.student


def _lora_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for n, p in model.backbone.named_parameters() if ".lora_" in n]


def param_groups(pair: TeacherStudent, stage: Stage, config: TrainConfig) -> list[dict]:
    """AdamW groups of the parameters this stage trains (heads, adapters, fine-tuned backbones)."""
    groups = []
    for role, mode in (("teacher", stage.teacher), ("student", student_mode(stage, config))):
        model = getattr(pair, role)
        if mode == "lora":
            groups.append(
                {"name": f"{role}.adapters", "params": _lora_params(model), "lr": config.lr_adapter}
            )
        elif mode == "ft":
            params = list(model.backbone.parameters())
            groups.append({"name": f"{role}.backbone", "params": params, "lr": config.lr_backbone})
        if mode in ("lora", "ft", "probe"):
            groups.append(
                {"name": f"{role}.head", "params": list(model.head.parameters()), "lr": config.lr_head}
            )
    return [g for g in groups if g["params"]]


class StageForward(nn.Module):
    """One stage's forward passes over the pair, `(teacher logits, student logits)`: what DDP wraps.

    Both models live in this one module, so a parameter the student reads through a shared view is
    registered (and its gradient all-reduced) once. A model the stage does not run yields None.
    """

    def __init__(
        self, pair: TeacherStudent, stage: Stage, student: str, teacher_cache: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.pair = pair
        self.stage = stage
        self.student_mode = student
        self.teacher_cache = teacher_cache  # (images, classes[, h, w]) on the CPU; a plain attribute

    def forward(self, images: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return self.forward_teacher(images, index), self.forward_student(images)

    def forward_teacher(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor | None:
        teacher, mode = self.pair.teacher, self.stage.teacher
        if mode == "none":
            return None
        if mode == "frozen":
            if self.teacher_cache is not None:
                cached = self.teacher_cache[index.cpu()].to(images.device, non_blocking=True)
                return upsample_like(cached, images)
            with torch.no_grad():
                return teacher(images)
        if mode == "probe":
            with torch.no_grad():
                tokens = teacher.backbone.forward_features(images)
            return teacher.head(tokens, out_size=images.shape[-2:])
        return teacher(images)

    def forward_student(self, images: torch.Tensor) -> torch.Tensor | None:
        return self.pair.student(images) if self.student_mode != "none" else None

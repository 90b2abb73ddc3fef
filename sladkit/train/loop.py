"""The training loop: stages of a method, epochs, evaluation, checkpoints.

One training step reads top to bottom: teacher forward, student forward, losses, backward, step.
Every epoch starts from a seed derived from (seed, stage, epoch), so a run resumed from an
end-of-epoch checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from sladkit._atomic import atomic_write_text
from sladkit.config import TrainConfig
from sladkit.errors import TrainingError
from sladkit.models.pair import TeacherStudent
from sladkit.train import checkpoint as ckpt
from sladkit.train.losses import kd_loss, task_loss
from sladkit.train.methods import Method, Stage
from sladkit.train.metrics import ConfusionMatrix, linear_cka, metric_name


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    return (seed * 1_000_003 + stage * 10_007 + epoch) % (2**63)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def student_mode(stage: Stage, config: TrainConfig) -> str:
    return config.student_adapt if stage.student == "adapt" else stage.student


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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


@dataclass
class Progress:
    """Where a run stands; saved as a checkpoint's state.json."""

    stage_index: int = 0
    epoch: int = 0  # epochs completed in the current stage
    step: int = 0  # optimizer steps in the current stage
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Progress:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class Trainer:
    """Runs the stages of `method` on `pair`, writing metrics and checkpoints into `run_dir`."""

    def __init__(
        self,
        config: TrainConfig,
        method: Method,
        pair: TeacherStudent,
        train_set,
        val_set,
        num_classes: int,
        run_dir: Path,
        *,
        teacher_backbone_saved: bool,
    ) -> None:
        self.config = config
        self.method = method
        self.pair = pair
        self.train_set = train_set
        self.val_set = val_set
        self.num_classes = num_classes
        self.run_dir = run_dir
        self.teacher_backbone_saved = teacher_backbone_saved
        self.device = torch.device(_resolve_device(config.device))
        self.metric = metric_name(config.task)
        self.pair.to(self.device)

    # ---------------------------------------------------------------- stages and epochs
    def fit(self, progress: Progress) -> Progress:
        if progress.stage_index == 0 and progress.epoch == 0:
            first = self.method.stages[0]
            self.log_metrics(self.evaluate(first), progress, stage=first, extra={})
        while progress.stage_index < len(self.method.stages):
            stage = self.method.stages[progress.stage_index]
            epochs = self.stage_epochs(stage)
            optimizer = torch.optim.AdamW(
                param_groups(self.pair, stage, self.config), weight_decay=self.config.weight_decay
            )
            for group in optimizer.param_groups:
                group["base_lr"] = group["lr"]
            if progress.epoch > 0:
                ckpt.load_optimizer_state(self.run_dir / "checkpoints" / "last", optimizer)
            self.set_trainable(stage)
            while progress.epoch < epochs:
                started = time.perf_counter()
                train_stats = self.train_epoch(stage, optimizer, progress, epochs)
                metrics = self.evaluate(stage)
                progress.epoch += 1
                improved = self.track_best(stage, metrics, progress)
                progress.stage_seconds[stage.name] = (
                    progress.stage_seconds.get(stage.name, 0.0) + time.perf_counter() - started
                )
                self.log_metrics(metrics, progress, stage=stage, extra=train_stats)
                self.save(optimizer, progress, best=improved)
            progress.stage_index += 1
            progress.epoch = 0
            progress.step = 0
        return progress

    def stage_epochs(self, stage: Stage) -> int:
        if stage.name == "teacher" and self.config.teacher_epochs is not None:
            return self.config.teacher_epochs
        return self.config.epochs

    def set_trainable(self, stage: Stage) -> None:
        self.pair.requires_grad_(False)
        for group in param_groups(self.pair, stage, self.config):
            for p in group["params"]:
                p.requires_grad_(True)

    def set_modes(self, stage: Stage) -> None:
        teacher, student = self.pair.teacher, self.pair.student
        teacher.train(stage.teacher in ("lora", "ft"))
        if stage.teacher == "probe":
            teacher.head.train()
        student.train(student_mode(stage, self.config) != "none")

    def loader(self, dataset, *, shuffle: bool, seed: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        drop_last = shuffle and len(dataset) > self.config.batch_size
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.config.workers,
            generator=generator,
        )

    # ---------------------------------------------------------------- one epoch
    def train_epoch(self, stage: Stage, optimizer, progress: Progress, epochs: int) -> dict:
        seed = epoch_seed(self.config.seed, progress.stage_index, progress.epoch)
        seed_everything(seed)
        loader = self.loader(self.train_set, shuffle=True, seed=seed)
        total = epochs * len(loader)
        warmup = max(1, round(self.config.warmup_epochs * len(loader)))
        self.set_modes(stage)
        sums = {"loss": 0.0, "loss_student": 0.0, "loss_teacher": 0.0, "loss_kd": 0.0}
        images_seen, started = 0, time.perf_counter()
        bar = self.progress_bar(loader, stage, progress, epochs)
        for images, target in bar:
            images, target = images.to(self.device), target.to(self.device)
            factor = lr_factor(progress.step, total, warmup)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

            losses = self.step_losses(stage, images, target)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise self.non_finite_loss(loss, stage, progress)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            progress.step += 1
            progress.global_step += 1
            images_seen += images.shape[0]
            sums["loss"] += loss.item()
            for name, value in losses.items():
                sums[name] += value.item()
            rate = images_seen / (time.perf_counter() - started)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.0f}")
        steps = max(1, len(loader))
        stats = {k: v / steps for k, v in sums.items()}
        stats["lr"] = optimizer.param_groups[0]["lr"]
        stats["images_per_s"] = images_seen / (time.perf_counter() - started)
        return stats

    def step_losses(
        self, stage: Stage, images: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Teacher forward, student forward, the stage's loss terms (weighted)."""
        c = self.config
        teacher_logits = self.forward_teacher(stage, images)
        student_logits = self.pair.student(images) if student_mode(stage, c) != "none" else None
        losses = {}
        if stage.student_loss:
            losses["loss_student"] = c.lambda_s * task_loss(student_logits, target)
        if stage.teacher_loss:
            losses["loss_teacher"] = c.lambda_t * task_loss(teacher_logits, target)
        if stage.kd_loss:
            teacher_kd = teacher_logits if c.kd_into_teacher else teacher_logits.detach()
            losses["loss_kd"] = c.lambda_kd * kd_loss(student_logits, teacher_kd, target, c.temperature)
        return losses

    def non_finite_loss(self, loss: torch.Tensor, stage: Stage, progress: Progress) -> TrainingError:
        last = self.run_dir / "checkpoints" / "last"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        return TrainingError(
            f"the loss became {loss.item()} at step {progress.global_step + 1} (stage {stage.name}, "
            f"epoch {progress.epoch + 1}); {kept}; lower --lr-adapter/--lr-head/--lr-backbone and "
            "start again with --overwrite"
        )

    def forward_teacher(self, stage: Stage, images: torch.Tensor) -> torch.Tensor | None:
        teacher = self.pair.teacher
        if stage.teacher == "none":
            return None
        if stage.teacher == "frozen":
            with torch.no_grad():
                return teacher(images)
        if stage.teacher == "probe":
            with torch.no_grad():
                tokens = teacher.backbone.forward_features(images)
            return teacher.head(tokens, out_size=images.shape[-2:])
        return teacher(images)

    def progress_bar(self, loader, stage: Stage, progress: Progress, epochs: int):
        if not (self.config.progress and sys.stderr.isatty()):
            return loader
        from tqdm import tqdm

        desc = f"{stage.name} {progress.epoch + 1}/{epochs}"
        return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, stage: Stage) -> dict:
        """Student and teacher metric on the validation split, and linear CKA of their pooled features.

        A model not trained in `stage` (the student during a teacher stage, the teacher of student-only)
        gets no metric; CKA is always measured.
        """
        self.pair.eval()
        matrices = {role: ConfusionMatrix(self.num_classes) for role in ("teacher", "student")}
        features = {"teacher": [], "student": []}
        for images, target in self.loader(self.val_set, shuffle=False):
            images, target = images.to(self.device), target.to(self.device)
            for role in ("teacher", "student"):
                logits, pooled = getattr(self.pair, role).forward_with_features(images)
                matrices[role].update(logits, target)
                features[role].append(pooled.float().cpu())
        result = {f"{role}_{self.metric}": m.value(self.config.task) for role, m in matrices.items()}
        if stage.teacher == "none":
            result[f"teacher_{self.metric}"] = None
        if student_mode(stage, self.config) == "none":
            result[f"student_{self.metric}"] = None
        result["cka"] = linear_cka(torch.cat(features["teacher"]), torch.cat(features["student"]))
        return result

    def track_best(self, stage: Stage, metrics: dict, progress: Progress) -> bool:
        if student_mode(stage, self.config) == "none":
            return False
        value = metrics[f"student_{self.metric}"]
        if progress.best_metric is None or value > progress.best_metric:
            progress.best_metric = value
            progress.best_epoch = progress.epoch
            return True
        return False

    # ---------------------------------------------------------------- outputs
    def log_metrics(self, metrics: dict, progress: Progress, *, stage: Stage, extra: dict) -> None:
        record = {"stage": stage.name, "epoch": progress.epoch, "step": progress.global_step}
        record.update(extra)
        record.update(metrics)
        record["elapsed_s"] = round(sum(progress.stage_seconds.values()), 3)
        path = self.run_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        lines.append(json.dumps(record))
        atomic_write_text(path, "\n".join(lines) + "\n")
        if record["epoch"] > 0:
            print(format_record(record, self.metric, self.stage_epochs(stage)), file=sys.stderr)

    def save(self, optimizer, progress: Progress, *, best: bool) -> None:
        folder = self.run_dir / "checkpoints"
        state = vars(progress).copy()
        state["rng"] = {"scheme": "reseeded every epoch from (seed, stage, epoch)", "seed": self.config.seed}
        ckpt.save_checkpoint(
            folder / "last", self.pair, optimizer, state, teacher_backbone=self.teacher_backbone_saved
        )
        if best:
            ckpt.copy_checkpoint(folder / "last", folder / "best")


def format_record(record: dict, metric: str, epochs: int) -> str:
    def pct(key: str) -> str:
        value = record.get(key)
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{record['stage']} epoch {record['epoch']}/{epochs}  loss {record.get('loss', float('nan')):.3f}  "
        f"student {metric} {pct('student_' + metric)}  teacher {metric} {pct('teacher_' + metric)}  "
        f"CKA {record['cka']:.3f}  {record.get('images_per_s', 0):.0f} img/s"
    )


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(
            f"--device {device} asked for, but no CUDA GPU is available here; use --device cpu"
        )
    return device

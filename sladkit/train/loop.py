"""The training loop: stages of a method, epochs, steps, evaluation, checkpoints.

The validation pass itself is `sladkit.train.evaluation`; the metric records and the line printed after
every epoch, `sladkit.train.logs`.

One training step reads top to bottom: teacher forward, student forward, losses, backward, step. With
several processes the two forward passes run inside DistributedDataParallel (`stages.StageForward` is what it
wraps), which averages the gradients of every process's shard of the global batch; with `--accumulate`
each process splits its shard into micro-batches.

Reproducibility (`sladkit.train.batching`): an epoch's image order comes from (seed, stage, epoch), an
image's augmentation from (epoch seed, image index), a forward pass's dropout from (epoch seed, step,
micro-batch, rank). A run resumed from any checkpoint (an epoch end, or the step a stop signal finished,
`sladkit.train.interrupt`) therefore continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from sladkit.config import TrainConfig
from sladkit.errors import TrainingError
from sladkit.models.pair import TeacherStudent
from sladkit.run_folder import CHECKPOINTS, checkpoint_dir
from sladkit.train import checkpoint as ckpt
from sladkit.train.batching import SeededImages, epoch_indices, mix_seed, plan_batches
from sladkit.train.distributed import DistContext
from sladkit.train.evaluation import evaluate_pair
from sladkit.train.interrupt import StopSignals, TrainingInterrupted, ignore_sigint_in_worker
from sladkit.train.logs import TensorBoardLog, append_record, format_record
from sladkit.train.losses import kd_loss, task_loss
from sladkit.train.methods import Method, Stage
from sladkit.train.metrics import metric_name
from sladkit.train.precision import autocast, checkpoint_blocks, grad_scaler, half_frozen_base
from sladkit.train.stages import StageForward, param_groups, student_mode
from sladkit.train.teacher_cache import compute_teacher_cache

LOSS_TERMS = ("loss_student", "loss_teacher", "loss_kd")
RNG_SCHEME = (
    "order: DistributedSampler seeded from (seed, stage, epoch); augmentation: torch reseeded per image "
    "from (epoch seed, index); dropout: torch reseeded per micro-batch from (epoch seed, step, micro, rank)"
)


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    return (seed * 1_000_003 + stage * 10_007 + epoch) % (2**63)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def kd_factor(step: int, warmup: int) -> float:
    """The KD weight's linear ramp: (step + 1) / warmup over the first `warmup` steps, then 1."""
    return 1.0 if step >= warmup else (step + 1) / warmup


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Progress:
    """Where a run stands; saved as a checkpoint's state.json."""

    stage_index: int = 0
    epoch: int = 0  # epochs completed in the current stage
    step: int = 0  # optimizer steps in the current stage
    global_step: int = 0
    epoch_step: int = 0  # optimizer steps done in the current epoch (> 0 only in an interrupted epoch)
    epoch_sums: dict[str, float] = field(default_factory=dict)  # loss sums of those steps
    best_metric: float | None = None
    best_epoch: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Progress:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @property
    def fresh(self) -> bool:
        return self.global_step == 0 and self.stage_index == 0 and self.epoch == 0


class Trainer:
    """Runs the stages of `method` on `pair`; rank 0 writes metrics and checkpoints into `run_dir`."""

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
        dist: DistContext | None = None,
        stop: StopSignals | None = None,
        resume_state: dict | None = None,
    ) -> None:
        self.config = config
        self.method = method
        self.train_set = train_set
        self.val_set = val_set
        self.num_classes = num_classes
        self.run_dir = run_dir
        self.teacher_backbone_saved = teacher_backbone_saved
        self.dist = dist or DistContext(device=torch.device("cpu"))
        self.stop = stop or StopSignals()
        self.resume_state = resume_state or {}
        self.tensorboard = None  # TensorBoardLog, opened at the first record (--tensorboard)
        self.line_progress = config.progress and self.dist.is_main and not sys.stderr.isatty()
        self.device = self.dist.device
        self.metric = metric_name(config.task)
        self.plan = plan_batches(
            len(train_set), config.batch_size, world_size=self.dist.world_size, accumulate=config.accumulate
        )
        if config.activation_checkpointing:
            checkpoint_blocks(pair.teacher.backbone)
            checkpoint_blocks(pair.student.backbone)
        if self.dist.distributed and self.device.type == "cuda" and config.task == "seg":
            # The segmentation heads' BatchNorm sees the whole micro-step batch, as in one process.
            pair = nn.SyncBatchNorm.convert_sync_batchnorm(pair)
        self.pair = pair.to(self.device)
        self.teacher_cache: torch.Tensor | None = None

    def autocast(self):
        return autocast(self.config.precision, self.device)

    # ---------------------------------------------------------------- stages and epochs
    def fit(self, progress: Progress) -> Progress:
        if progress.fresh:
            first = self.method.stages[0]
            self.log_metrics(self.evaluate(first), progress, stage=first, extra={})
        while progress.stage_index < len(self.method.stages):
            stage = self.method.stages[progress.stage_index]
            epochs = self.stage_epochs(stage)
            self.set_trainable(stage)
            self.prepare_teacher(stage, progress)
            optimizer = torch.optim.AdamW(
                param_groups(self.pair, stage, self.config), weight_decay=self.config.weight_decay
            )
            for group in optimizer.param_groups:
                group["base_lr"] = group["lr"]
            scaler = grad_scaler(self.config.precision, self.device)
            if progress.epoch > 0 or progress.epoch_step > 0:
                ckpt.load_optimizer_state(checkpoint_dir(self.run_dir, "last"), optimizer)
                if self.resume_state.get("scaler"):
                    scaler.load_state_dict(self.resume_state["scaler"])
            model = self.wrap(
                StageForward(self.pair, stage, student_mode(stage, self.config), self.teacher_cache)
            )
            while progress.epoch < epochs:
                if self.stops_early(stage, progress):
                    break
                started = time.perf_counter()
                train_stats = self.train_epoch(stage, model, optimizer, scaler, progress, epochs)
                metrics = self.evaluate(stage)
                progress.epoch += 1
                progress.epoch_step, progress.epoch_sums = 0, {}
                improved = self.track_best(stage, metrics, progress)
                self.add_seconds(stage, progress, started)
                self.log_metrics(metrics, progress, stage=stage, extra=train_stats)
                self.save(optimizer, scaler, progress, best=improved)
                if self.dist.any(self.stop.requested):  # a signal during the evaluation: stop here
                    raise TrainingInterrupted(progress.global_step, quiet=not self.dist.is_main)
            del model  # its DDP hooks go with it; the next stage trains other parameters
            progress.stage_index += 1
            progress.epoch = 0
            progress.step = 0
            self.teacher_cache = None
        if self.tensorboard is not None:
            self.tensorboard.close()
        return progress

    def stage_epochs(self, stage: Stage) -> int:
        if stage.name == "teacher" and self.config.teacher_epochs is not None:
            return self.config.teacher_epochs
        if stage.name == "probe":
            return self.config.probe_epochs
        return self.config.epochs

    def set_trainable(self, stage: Stage) -> None:
        self.pair.requires_grad_(False)
        for group in param_groups(self.pair, stage, self.config):
            for p in group["params"]:
                p.requires_grad_(True)

    def prepare_teacher(self, stage: Stage, progress: Progress) -> None:
        """Half-precision frozen teacher base (mixed precision) and the teacher cache, where they apply.

        Building the cache counts in the stage's seconds, so timings with and without it compare fairly.
        """
        c = self.config
        if stage.teacher != "ft" and not self.teacher_backbone_saved:
            half_frozen_base(self.pair.teacher.backbone, c.precision)
        if c.cache_teacher and stage.teacher == "frozen":
            started = time.perf_counter()
            self.teacher_cache = compute_teacher_cache(
                self.pair.teacher,
                self.train_set,
                self.dist,
                batch_size=self.plan.per_process,
                workers=c.workers,
                autocast=self.autocast,
            )
            self.add_seconds(stage, progress, started)
            if self.dist.is_main:
                print(
                    f"cached the teacher's outputs for {len(self.train_set)} images in "
                    f"{time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                )

    def wrap(self, module: StageForward) -> nn.Module:
        """DistributedDataParallel over the parameters this stage trains (they all get gradients)."""
        if not self.dist.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        # The segmentation head's 1x1 conv gets its gradient in the transposed token layout; DDP copies
        # it into its bucket all the same and says so once per process. Nothing to act on.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def set_modes(self, stage: Stage) -> None:
        teacher, student = self.pair.teacher, self.pair.student
        teacher.train(stage.teacher in ("lora", "ft"))
        if stage.teacher == "probe":
            teacher.head.train()
        student.train(student_mode(stage, self.config) != "none")

    def add_seconds(self, stage: Stage, progress: Progress, started: float) -> None:
        seconds = progress.stage_seconds.get(stage.name, 0.0) + time.perf_counter() - started
        progress.stage_seconds[stage.name] = seconds

    # ---------------------------------------------------------------- one epoch
    def train_loader(self, seed: int, start_step: int) -> DataLoader:
        indices = epoch_indices(
            len(self.train_set), self.plan, seed=seed, rank=self.dist.rank, start_step=start_step
        )
        return DataLoader(
            SeededImages(self.train_set, seed),
            batch_size=self.plan.micro_batch,
            sampler=indices,
            num_workers=self.config.workers,
            worker_init_fn=ignore_sigint_in_worker if self.config.workers else None,
            pin_memory=self.device.type == "cuda",
        )

    def train_epoch(self, stage: Stage, model, optimizer, scaler, progress: Progress, epochs: int) -> dict:
        plan = self.plan
        seed = epoch_seed(self.config.seed, progress.stage_index, progress.epoch)
        loader = self.train_loader(seed, progress.epoch_step)
        total = epochs * plan.steps
        warmup = max(1, round(self.config.warmup_epochs * plan.steps))
        self.set_modes(stage)
        sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0) | progress.epoch_sums
        images_seen, started = 0, time.perf_counter()
        steps = self.progress_bar(_chunks(loader, plan.accumulate), stage, progress, epochs)
        for micro_batches in steps:
            factor = lr_factor(progress.step, total, warmup)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

            losses, stop = self.train_step(stage, model, optimizer, scaler, micro_batches, seed, progress)

            progress.step += 1
            progress.global_step += 1
            progress.epoch_step += 1
            images_seen += plan.global_batch
            for name, value in losses.items():
                sums[name] += value
            rate = images_seen / (time.perf_counter() - started)
            if hasattr(steps, "set_postfix"):
                steps.set_postfix(loss=f"{losses['loss']:.3f}", img_s=f"{rate:.0f}")
            elif self.line_progress and progress.epoch_step % self.config.log_every == 0:
                print(
                    f"{stage.name} epoch {progress.epoch + 1}/{epochs} step {progress.epoch_step}/{plan.steps}  "
                    f"loss {losses['loss']:.3f}  {rate:.0f} img/s",
                    file=sys.stderr,
                    flush=True,
                )
            if stop:
                self.interrupt(stage, optimizer, scaler, progress, sums, started)
        stats = {k: v / max(1, plan.steps) for k, v in sums.items()}
        stats["lr"] = optimizer.param_groups[0]["lr"]
        stats["images_per_s"] = images_seen / (time.perf_counter() - started)  # all processes together
        return stats

    def train_step(
        self, stage: Stage, model, optimizer, scaler, micro_batches, seed: int, progress: Progress
    ) -> tuple[dict[str, float], bool]:
        """One optimizer step over a global batch (this process's micro-batches of it).

        Returns the losses averaged over the global batch and whether a stop signal reached any rank.
        """
        optimizer.zero_grad(set_to_none=True)
        local = torch.zeros(2 + len(LOSS_TERMS), device=self.device)  # [non-finite, loss, terms...]
        for micro, (images, target, index) in enumerate(micro_batches):
            last = micro == len(micro_batches) - 1
            images, target = images.to(self.device), target.to(self.device)
            torch.manual_seed(mix_seed(seed, progress.epoch_step, micro, self.dist.rank))  # dropout
            with self.no_sync(model, last):
                with self.autocast():
                    teacher_logits, student_logits = model(images, index)  # teacher, student forward
                losses = self.stage_losses(
                    stage, teacher_logits, student_logits, target, kd_scale=self.kd_scale(progress)
                )
                loss = sum(losses.values())
                terms = [losses.get(t, loss.new_zeros(())) for t in LOSS_TERMS]
                local += torch.stack([(~torch.isfinite(loss)).float(), loss, *terms]).detach()
                if last:  # all ranks agree before the gradients are all-reduced
                    totals, stop = self.reduce_step(local)
                    if not math.isfinite(totals["loss"]):
                        raise self.non_finite_loss(totals["loss"], stage, progress)
                scaler.scale(loss / self.plan.accumulate).backward()
        scaler.step(optimizer)
        scaler.update()
        return totals, stop

    def reduce_step(self, local: torch.Tensor) -> tuple[dict[str, float], bool]:
        """Sum a step's [non-finite, losses...] over the ranks, with this rank's stop flag."""
        flags = torch.cat([local, local.new_tensor([float(self.stop.requested)])])
        values = self.dist.all_reduce_sum(flags).tolist()
        count = self.plan.world_size * self.plan.accumulate  # micro-batches of equal size per step
        totals = {name: v / count for name, v in zip(("loss", *LOSS_TERMS), values[1:-1], strict=True)}
        if values[0] > 0 and math.isfinite(totals["loss"]):
            totals["loss"] = math.nan
        return totals, values[-1] > 0

    def no_sync(self, model, last: bool):
        """Skip DDP's gradient all-reduce on all but the last micro-batch of a step."""
        if last or not hasattr(model, "no_sync"):
            return contextlib.nullcontext()
        return model.no_sync()

    def stage_losses(
        self,
        stage: Stage,
        teacher_logits: torch.Tensor | None,
        student_logits: torch.Tensor | None,
        target: torch.Tensor,
        kd_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """The stage's loss terms (weighted), in float32 whatever the autocast precision.

        `kd_scale` multiplies `lambda_kd` (the `--kd-warmup-epochs` ramp, `kd_scale()`).
        """
        c = self.config
        teacher_logits = None if teacher_logits is None else teacher_logits.float()
        student_logits = None if student_logits is None else student_logits.float()
        losses = {}
        if stage.student_loss:
            losses["loss_student"] = c.lambda_s * task_loss(student_logits, target)
        if stage.teacher_loss:
            losses["loss_teacher"] = c.lambda_t * task_loss(teacher_logits, target)
        if stage.kd_loss:
            teacher_kd = teacher_logits if c.kd_into_teacher else teacher_logits.detach()
            weight = c.lambda_kd * kd_scale
            losses["loss_kd"] = weight * kd_loss(student_logits, teacher_kd, target, c.temperature)
        return losses

    def kd_scale(self, progress: Progress) -> float:
        """Where the KD weight stands on its `--kd-warmup-epochs` ramp at this step of the stage."""
        if self.config.kd_warmup_epochs <= 0:
            return 1.0
        return kd_factor(progress.step, max(1, round(self.config.kd_warmup_epochs * self.plan.steps)))

    def non_finite_loss(self, value: float, stage: Stage, progress: Progress) -> TrainingError:
        last = checkpoint_dir(self.run_dir, "last")
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        return TrainingError(
            f"the loss became {value} at step {progress.global_step + 1} (stage {stage.name}, "
            f"epoch {progress.epoch + 1}); {kept}; lower --lr-adapter/--lr-head/--lr-backbone and "
            "start again with --overwrite"
        )

    def interrupt(self, stage: Stage, optimizer, scaler, progress: Progress, sums: dict, started: float):
        """Every rank got here after the same step: checkpoint mid-epoch, then stop."""
        progress.epoch_sums = dict(sums)
        self.add_seconds(stage, progress, started)
        self.save(optimizer, scaler, progress, best=False, interrupted=True)
        self.dist.barrier()  # no rank exits (and makes torchrun stop the others) before rank 0 has written
        raise TrainingInterrupted(progress.global_step, quiet=not self.dist.is_main)

    def progress_bar(self, steps, stage: Stage, progress: Progress, epochs: int):
        if not (self.config.progress and self.dist.is_main and sys.stderr.isatty()):
            return steps
        from tqdm import tqdm

        desc = f"{stage.name} {progress.epoch + 1}/{epochs}"
        return tqdm(
            steps, desc=desc, total=self.plan.steps - progress.epoch_step, leave=False, dynamic_ncols=True
        )

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, stage: Stage) -> dict:
        """The pair's metrics on the validation split (`sladkit.train.evaluation.evaluate_pair`)."""
        return evaluate_pair(
            self.pair,
            self.val_set,
            stage,
            self.config,
            self.dist,
            num_classes=self.num_classes,
            batch_size=self.plan.per_process,
        )

    def stops_early(self, stage: Stage, progress: Progress) -> bool:
        """--early-stop N: the student's metric has not improved for N epochs of this stage."""
        patience = self.config.early_stop
        if not patience or student_mode(stage, self.config) == "none" or progress.best_epoch is None:
            return False
        if progress.epoch - progress.best_epoch < patience:
            return False
        if self.dist.is_main:
            print(
                f"early stop: student {self.metric} has not improved for {patience} epochs (best "
                f"{progress.best_metric:.1f} at epoch {progress.best_epoch}); checkpoints/best holds it",
                file=sys.stderr,
            )
        return True

    def track_best(self, stage: Stage, metrics: dict, progress: Progress) -> bool:
        if student_mode(stage, self.config) == "none":
            return False
        value = metrics[f"student_{self.metric}"]
        if progress.best_metric is None or value > progress.best_metric:
            progress.best_metric = value
            progress.best_epoch = progress.epoch
            return True
        return False

    # ---------------------------------------------------------------- outputs (rank 0)
    def log_metrics(self, metrics: dict, progress: Progress, *, stage: Stage, extra: dict) -> None:
        if not self.dist.is_main:
            return
        record = {"stage": stage.name, "epoch": progress.epoch, "step": progress.global_step}
        record.update(extra)
        record.update(metrics)
        record["elapsed_s"] = round(sum(progress.stage_seconds.values()), 3)
        append_record(self.run_dir, record)
        if self.config.tensorboard:
            if self.tensorboard is None:  # a resumed run drops the events after its checkpoint
                self.tensorboard = TensorBoardLog(self.run_dir, purge_step=progress.global_step)
            self.tensorboard.add(record)
        if record["epoch"] > 0:
            print(format_record(record, self.metric, self.stage_epochs(stage)), file=sys.stderr)

    def save(self, optimizer, scaler, progress: Progress, *, best: bool, interrupted: bool = False) -> None:
        if not self.dist.is_main:
            return
        folder = self.run_dir / CHECKPOINTS
        state = vars(progress).copy()
        state["interrupted"] = interrupted
        state["scaler"] = scaler.state_dict()
        state["rng"] = {"scheme": RNG_SCHEME, "seed": self.config.seed}
        ckpt.save_checkpoint(
            folder / "last", self.pair, optimizer, state, teacher_backbone=self.teacher_backbone_saved
        )
        if best:
            ckpt.copy_checkpoint(folder / "last", folder / "best")


def _chunks(iterable, size: int):
    """Consecutive tuples of `size` items (the micro-batches of one optimizer step)."""
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield tuple(chunk)
            chunk = []

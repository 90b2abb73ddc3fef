"""`sladkit.train.run(config)`: check every input, then train, then write the run folder.

All validation (options, devices, data, model names, weights, the pair) happens before anything is
written, so bad input leaves the disk as it was. With several processes, every rank checks its inputs
and they agree before rank 0, the only writer, creates the run folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sladkit import __version__
from sladkit._atomic import atomic_write_text, remove_stale_temporaries
from sladkit._outdir import locked
from sladkit.config import TrainConfig, write_json
from sladkit.data import create_datasets, transform_config
from sladkit.errors import ConfigError, RunDirError, require
from sladkit.models.backbones import check_hub_weights, preprocess_config, uses_pretrained_weights
from sladkit.models.pair import create_pair
from sladkit.models.peft_format import save_peft_adapter
from sladkit.run_folder import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    LABELS_FILE,
    METRICS_FILE,
    checkpoint_dir,
)
from sladkit.train import checkpoint as ckpt
from sladkit.train.batching import plan_batches
from sladkit.train.distributed import (
    PeerFailure,
    check_devices,
    close_distributed,
    init_distributed,
    launch,
    launched_worker,
    needs_launch,
    report_failure,
    under_torchrun,
)
from sladkit.train.interrupt import StopSignals
from sladkit.train.loop import Progress, Trainer, seed_everything
from sladkit.train.methods import METHODS, Method, get_method
from sladkit.train.metrics import metric_name
from sladkit.train.rundir import check_out_dir, clear_for_overwrite, default_out, trim_metrics


@dataclass
class TrainResult:
    """What `run` returns; the same numbers are in the run folder."""

    run_dir: Path
    metric: str  # "acc" (top-1 %) or "miou" (%)
    student: float | None
    teacher: float | None
    best_student: float | None
    best_epoch: int | None
    cka_before: float | None
    cka_after: float | None
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        def pct(v):
            return "-" if v is None else f"{v:.1f}"

        stages = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in self.stage_seconds.items())
        return (
            f"done in {self.wall_seconds:.0f}s ({stages}): student {self.metric} {pct(self.student)} "
            f"(best {pct(self.best_student)} at epoch {self.best_epoch}), "
            f"teacher {self.metric} {pct(self.teacher)}, "
            f"CKA {self.cka_before:.3f} -> {self.cka_after:.3f}; run folder {self.run_dir}"
        )


def run(config: TrainConfig) -> TrainResult | None:
    """Train a teacher/student pair with `config.method` and write the run folder.

    With `config.devices > 1` or `config.nnodes > 1` this launches the processes through
    `torch.distributed.run` and waits for them; started by torchrun, it is one of those processes.

    Returns:
        TrainResult with the final student/teacher metric, the best student metric and CKA, in the
        process that wrote the run folder (rank 0, or node 0's launcher); None in the others.

    Raises:
        SladkitError (and subclasses) for bad input, before anything is written.
        TrainingInterrupted: SIGINT/SIGTERM stopped training after a checkpoint (`--resume` continues).
    """
    started = time.perf_counter()
    method = get_method(config.method)
    check_method_options(config, method)
    out = Path(config.out) if config.out else default_out(config)
    config = config.replace(out=str(out), **_absolute_inputs(config))
    with _run_lock(config, out):
        if needs_launch(config):
            check_out_dir(out, config)
            check_devices(config, processes=config.devices)
            return result_from_run_dir(out, config, started) if launch(config) else None
        return _run_here(config, method, out, started)


def _absolute_inputs(config: TrainConfig) -> dict:
    """The data folder and weight files as absolute paths: the run folder is read from anywhere."""
    paths = {"data": None if config.data == "synthetic" else config.data}
    paths.update(teacher_weights=config.teacher_weights, student_weights=config.student_weights)
    return {k: os.path.abspath(v) for k, v in paths.items() if v}


def _run_lock(config: TrainConfig, out: Path):
    """The run folder's lock, held by the one process that owns the run here (see `sladkit._outdir`).

    That is this process, or the launcher of `--devices N` (its workers do not lock), or rank 0 of a
    job torchrun started.
    """
    owner = (not under_torchrun() and config.node_rank == 0) or (
        under_torchrun() and not launched_worker() and os.environ.get("RANK") == "0"
    )
    return locked(out, "train") if owner else contextlib.nullcontext()


def _run_here(config: TrainConfig, method: Method, out: Path, started: float) -> TrainResult | None:
    ctx = None
    try:
        ctx = init_distributed(config)
        with StopSignals() as stop:
            return _train(config, method, out, ctx, stop, started)
    except BaseException as e:
        if under_torchrun():  # torchrun's error file tells the launcher which rank failed and why
            raise report_failure(e) from None
        raise
    finally:
        if ctx is not None:
            close_distributed(ctx)


def check_method_options(config: TrainConfig, method: Method) -> None:
    """Options that only some methods accept."""
    if config.student_adapt == "ft" and method.shared:
        raise ConfigError(
            f"--student-adapt ft does not apply to {method.name}: its student uses the shared LoRA"
        )
    if config.cache_teacher and not any(stage.teacher == "frozen" for stage in method.stages):
        frozen = ", ".join(m.name for m in METHODS.values() if any(s.teacher == "frozen" for s in m.stages))
        raise ConfigError(
            f"--cache-teacher needs a method whose teacher is frozen in a stage ({frozen}); {method.name} "
            "trains its teacher whenever it runs it"
        )


def _train(config: TrainConfig, method: Method, out: Path, ctx, stop, started: float) -> TrainResult | None:
    # Inputs: options, data, then models, on every rank; nothing is written until all ranks agree.
    try:
        inputs = _check_inputs(config, method, out)
        error = None
    except Exception as e:
        inputs, error = None, e
    failed = ctx.failed_ranks(error is not None) if ctx.distributed else []
    if error is not None:
        raise error
    if failed:
        raise PeerFailure(f"stopped because rank {failed[0]} refused its inputs")
    data, transforms, pair, teacher_saved = inputs

    # The run folder (rank 0 writes it).
    progress = Progress()
    last = checkpoint_dir(out, "last")
    state = ctx.main_first(lambda: ckpt.read_state(last)) if config.resume else None
    if state is not None:
        ckpt.load_model_state(last, pair)
        progress = Progress.from_dict(state)
        if ctx.is_main:
            trim_metrics(out, progress.global_step)
            for name in ("last", "best"):  # what a killed checkpoint write left (we hold the lock)
                remove_stale_temporaries(checkpoint_dir(out, name))
            within = f" + {progress.epoch_step} steps" if progress.epoch_step else ""
            print(
                f"resuming {out} from stage {progress.stage_index + 1}, epoch {progress.epoch}{within}",
                file=sys.stderr,
            )
    elif ctx.is_main:
        if config.overwrite:
            clear_for_overwrite(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
        write_json(out / CONFIG_FILE, resolved_config(config, data, transforms, pair, method, teacher_saved))
        atomic_write_text(out / LABELS_FILE, "".join(label + "\n" for label in data.labels))

    trainer = Trainer(
        config,
        method,
        pair,
        data.train,
        data.val,
        len(data.labels),
        out,
        teacher_backbone_saved=teacher_saved,
        dist=ctx,
        stop=stop,
        resume_state=state,
    )
    progress = trainer.fit(progress)

    if ctx.is_main:  # the adapters of the checkpoint `sladkit export` takes by default: best
        pair.cpu()
        best = checkpoint_dir(out, "best")
        source = "best" if (best / ckpt.STATE_FILE).is_file() else "last"
        if source == "best":
            ckpt.load_model_state(best, pair)
        for role in ("teacher", "student"):
            if getattr(pair.spec, f"{role}_adapter"):
                model = getattr(pair, role)
                save_peft_adapter(
                    model.backbone,
                    out / "adapters" / role,
                    base_model=getattr(config, role),
                    head=model.head,
                    checkpoint=source,
                )
    ctx.barrier()
    if not ctx.is_main:
        return None
    return _result(out, config, progress, time.perf_counter() - started)


def _check_inputs(config: TrainConfig, method: Method, out: Path):
    """Options, the output folder, data and models: (data, transforms, pair, teacher_saved) or an error."""
    saved_config = check_out_dir(out, config)  # with --resume, the run's config.json
    if config.tensorboard:
        require("tensorboard", "tensorboard")
    for role in ("teacher", "student"):  # before the data, which may take minutes to render or scan
        if config.pretrained and getattr(config, f"{role}_weights") is None:
            check_hub_weights(getattr(config, role), role)
    preprocess = preprocess_config(config.student)
    image_size = config.image_size or preprocess["image_size"]
    transforms = transform_config(
        image_size=image_size,
        mean=preprocess["mean"],
        std=preprocess["std"],
        interpolation=preprocess["interpolation"],
        crop_pct=preprocess["crop_pct"],
        crop_scale=(config.crop_scale, 1.0),
        hflip=config.hflip,
    )
    data = create_datasets(
        task=config.task,
        data=config.data,
        transforms=transforms,
        val_fraction=config.val_fraction,
        seed=config.seed,
        strict=config.strict,
        synthetic_train=config.synthetic_train,
        synthetic_val=config.synthetic_val,
        augment=config.augment,
    )
    if config.resume:  # the checkpoint's heads are the saved classes, in their order
        saved = saved_config["labels"]
        if data.labels != saved:
            raise RunDirError(
                f"cannot resume {out}: the data's classes ({len(data.labels)}: {', '.join(data.labels[:4])}"
                f"{', ...' if len(data.labels) > 4 else ''}) are not the run's ({len(saved)}: "
                f"{', '.join(saved[:4])}{', ...' if len(saved) > 4 else ''}); resume with the data it was "
                "trained on, or start a new run"
            )
    world = int(os.environ.get("WORLD_SIZE", "1")) if under_torchrun() else 1
    plan_batches(len(data.train), config.batch_size, world_size=world, accumulate=config.accumulate)
    if len(data.val) < max(2, world):
        raise ConfigError(
            f"the validation set has {len(data.val)} images; it needs at least {max(2, world)} "
            "(2, and one per process)"
        )
    seed_everything(config.seed)
    teacher_ft = any(stage.teacher == "ft" for stage in method.stages)
    pair = create_pair(
        config,
        num_classes=len(data.labels),
        image_size=image_size,
        teacher_adapter=method.teacher_adapter,
        shared=method.shared,
        student_ft=config.student_adapt == "ft" and not method.shared,
    )
    teacher_saved = teacher_ft or not uses_pretrained_weights(
        config.teacher, config.pretrained, config.teacher_weights
    )
    patch = pair.spec.student.patch_size
    if image_size % patch and os.environ.get("RANK", "0") == "0":  # one warning, from rank 0
        lower, upper = image_size // patch * patch, -(-image_size // patch) * patch
        print(
            f"warning: --image-size {image_size} is not a multiple of the patch size {patch}: the patch "
            f"embedding ignores the last {image_size - lower} pixel rows and columns; use {lower} or {upper}",
            file=sys.stderr,
        )
    return data, transforms, pair, teacher_saved


def resolved_config(config, data, transforms, pair, method, teacher_saved) -> dict:
    """config.json: everything a later stage needs to rebuild the models and the preprocessing."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sladkit_version": __version__,
        "torch_version": torch.__version__,
        "task": config.task,
        "metric": metric_name(config.task),
        "labels": data.labels,
        "num_classes": len(data.labels),
        "image_size": transforms["image_size"],
        "transforms": transforms,
        "data": {
            "source": data.source,
            "train_images": len(data.train),
            "val_images": len(data.val),
            "skipped_images": len(data.skipped),
        },
        "method": {
            "name": method.name,
            "stages": [vars(stage) for stage in method.stages],
        },
        "models": pair.spec.to_dict(),
        "checkpoint": {"teacher_backbone": teacher_saved},
        "train": config.to_dict(),
    }


def _result(out: Path, config: TrainConfig, progress: Progress, wall: float) -> TrainResult:
    return _summarise(out, config, vars(progress), wall)


def result_from_run_dir(out: Path, config: TrainConfig, started: float) -> TrainResult:
    """The TrainResult of a run its worker processes wrote (what the launcher returns)."""
    state = ckpt.read_state(checkpoint_dir(out, "last")) or {}
    return _summarise(out, config, state, time.perf_counter() - started)


def _summarise(out: Path, config: TrainConfig, progress: dict, wall: float) -> TrainResult:
    import json

    records = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines() if line]
    metric = metric_name(config.task)
    first, final = records[0], records[-1]
    stage_seconds = dict(progress.get("stage_seconds", {}))
    return TrainResult(
        run_dir=out,
        metric=metric,
        student=final.get(f"student_{metric}"),
        teacher=final.get(f"teacher_{metric}"),
        best_student=progress.get("best_metric"),
        best_epoch=progress.get("best_epoch"),
        cka_before=first.get("cka"),
        cka_after=final.get("cka"),
        wall_seconds=sum(stage_seconds.values()) if config.resume else wall,
        stage_seconds=stage_seconds,
    )

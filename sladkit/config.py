"""Typed configurations. Each field's help text is also its CLI help (`sladkit train --help`).

The resolved config is saved beside every artifact (`config.json` in a run folder), so a later stage can
rebuild exactly what an earlier one did. Fields in `RUNTIME_ONLY` change how a run executes but not
what it computes; they may differ when resuming. `PredictConfig`, `EvalConfig` and `ProfileConfig` hold the
runtime commands' settings (never saved).

Every numeric option declares its allowed `Range` where it is defined; `check_ranges` (called by each
config's `__post_init__`) refuses a value outside it, and NaN or infinity in any float option, before a
command writes anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sladkit.errors import ConfigError

TINY_TEACHER = "sladkit_vit_192_p8"
TINY_STUDENT = "sladkit_vit_96_p8"

Task = Literal["cls", "seg"]
Share = Literal["ab", "a", "b", "none"]
LayerMap = Literal["even", "first", "last"]
Pool = Literal["cls", "avg", "cls+avg"]
Precision = Literal["fp32", "bf16", "fp16"]
DistBackend = Literal["auto", "gloo", "nccl"]


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric option: `low`/`high` bounds (None: unbounded), open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # > low rather than >= low
    high_open: bool = False  # < high rather than <= high

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
PROBABILITY = Range(0, 1)


def _opt(default: Any, help: str, *, range: Range | None = None, **extra: Any) -> Any:
    """A dataclass field carrying its CLI help text and, for a number, its allowed range."""
    metadata = {"help": help, "range": range, **extra}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_ranges(config: Any) -> None:
    """Refuse a number outside its field's `Range`, and NaN or infinity in any float field.

    A tuple field (e.g. batch sizes) has each of its numbers checked. None means "not set" and passes.
    """
    for f in dataclasses.fields(config):
        value, allowed, flag = getattr(config, f.name), f.metadata.get("range"), option_flag(f)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                within = f" {allowed}" if allowed else ""
                raise ConfigError(f"{flag} must be a finite number{within} (got {v})")
            if allowed is None or v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{flag} must be a number {allowed} (got {v!r})")
            if v not in allowed:
                raise ConfigError(f"{flag} must be {allowed} (got {v})")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `sladkit train` needs. `sladkit.train.run(TrainConfig(...))` is the Python API."""

    # Task and data
    task: Task = _opt("cls", "Task: image classification (cls) or semantic segmentation (seg).")
    data: str = _opt(
        "synthetic",
        "'synthetic' (built-in) or a folder: DIR/{train,val}/<class>/* (cls), "
        "DIR/{train,val}/{images,masks}/* (seg).",
    )
    val_fraction: float = _opt(
        0.2, "Share of train/ held out for validation when DIR has no val/.", range=Range(0, 1, True, True)
    )
    strict: bool = _opt(False, "Fail on an unreadable image instead of skipping it with a warning.")
    synthetic_train: int = _opt(2000, "Training images of the synthetic dataset.", range=AT_LEAST_1)
    synthetic_val: int = _opt(500, "Validation images of the synthetic dataset.", range=AT_LEAST_1)
    image_size: int | None = _opt(None, "Input size in pixels (default: the models' own).", range=Range(8))
    crop_scale: float = _opt(
        0.8, "Smallest area fraction of the random resized crop (train).", range=Range(0, 1, low_open=True)
    )
    hflip: float = _opt(
        0.0,
        "Probability of a left-right flip of a training image (off by default: it changes digits and text; 0.5 suits most photos).",
        range=PROBABILITY,
    )
    augment: bool = _opt(
        True, "Random resized crop and flip on training images (--no-augment: the eval preprocessing)."
    )

    # Models
    teacher: str = _opt(TINY_TEACHER, "Teacher: a timm model name (e.g. vit_base_patch14_dinov2.lvd142m).")
    student: str = _opt(TINY_STUDENT, "Student: a timm model name of the teacher's family.")
    pretrained: bool = _opt(
        True,
        "Load pretrained weights: timm's (downloaded unless cached), or, for sladkit's tiny pair, the package's.",
    )
    teacher_weights: str | None = _opt(None, "Teacher weights file (.safetensors or a PyTorch state dict).")
    student_weights: str | None = _opt(None, "Student weights file (.safetensors or a PyTorch state dict).")
    teacher_kwargs: dict = _opt({}, "Extra timm create_model arguments for the teacher, as JSON.")
    student_kwargs: dict = _opt({}, "Extra timm create_model arguments for the student, as JSON.")
    pool: Pool = _opt("cls+avg", "Classification head input: CLS token, mean patch token, or both.")

    # Method and shared LoRA
    method: str = _opt("slad", "Training method; each is described under Methods below.")
    targets: str = _opt(
        "qkv,proj,fc1,fc2",
        "Comma-separated LoRA targets among qkv, proj, fc1, fc2 (qkv alone: the paper's placement).",
    )
    rank: int = _opt(8, "LoRA rank r.", range=AT_LEAST_1)
    alpha: float = _opt(16.0, "LoRA alpha (the update is scaled by alpha / r).", range=POSITIVE)
    lora_dropout: float = _opt(0.0, "Dropout on the LoRA branch input.", range=Range(0, 1, high_open=True))
    share: Share = _opt("ab", "Which LoRA factors the student shares with the teacher (slad).")
    layer_map: LayerMap = _opt("even", "Which teacher block each student block shares with.")
    student_adapt: Literal["lora", "ft"] = _opt(
        "lora", "Student adaptation in two-stage baselines: LoRA or full fine-tuning."
    )

    # Loss
    lambda_s: float = _opt(1.0, "Weight of the student task loss.", range=NON_NEGATIVE)
    lambda_t: float = _opt(1.0, "Weight of the teacher task loss.", range=NON_NEGATIVE)
    lambda_kd: float = _opt(1.0, "Weight of the KL distillation loss.", range=NON_NEGATIVE)
    temperature: float = _opt(
        1.0, "Distillation temperature T (the KD term is scaled by T^2).", range=POSITIVE
    )
    kd_into_teacher: bool = _opt(False, "Back-propagate the KD term into the teacher too.")
    kd_warmup_epochs: float = _opt(
        0.0,
        "Ramp the KD weight linearly from 0 to --lambda-kd over this many epochs of each stage that "
        "distils (0: full weight from the first step), so the student does not chase a teacher head "
        "that has not learnt the task yet.",
        range=NON_NEGATIVE,
    )

    # Optimisation
    epochs: int = _opt(8, "Epochs (per stage for two-stage methods).", range=AT_LEAST_1)
    teacher_epochs: int | None = _opt(
        None, "Epochs of a two-stage method's teacher stage (default: --epochs).", range=AT_LEAST_1
    )
    probe_epochs: int = _opt(
        1,
        "Epochs of slad-lp's first stage, where only the teacher's head trains (its backbone frozen), so that "
        "the joint stage's KL term starts from a teacher that predicts the task.",
        range=AT_LEAST_1,
    )
    batch_size: int = _opt(
        64,
        "Global batch per optimizer step, over all processes and --accumulate steps together.",
        range=AT_LEAST_1,
    )
    lr_head: float = _opt(1e-2, "Learning rate of the heads.", range=POSITIVE)
    lr_adapter: float = _opt(1e-2, "Learning rate of the LoRA adapters.", range=POSITIVE)
    lr_backbone: float = _opt(1e-4, "Learning rate of fully fine-tuned backbones.", range=POSITIVE)
    weight_decay: float = _opt(1e-4, "AdamW weight decay.", range=NON_NEGATIVE)
    warmup_epochs: float = _opt(
        1.0, "Linear warm-up length in epochs, then cosine decay.", range=NON_NEGATIVE
    )
    early_stop: int = _opt(
        0,
        "Stop a stage that trains the student once its validation metric has not improved for this many "
        "epochs (0: never); the best checkpoint is the one export takes.",
        range=NON_NEGATIVE,
    )
    seed: int = _opt(
        0, "Random seed (data split, initialisation, shuffling, augmentation).", range=Range(0, 2**32 - 1)
    )
    precision: Precision = _opt(
        "fp32", "Autocast precision: fp32, bf16 (GPUs and CPUs), fp16 (CUDA GPUs, with a GradScaler)."
    )

    # Runtime-only (may change on --resume)
    out: str | None = _opt(None, "Run folder (default: runs/<method>-<task>, numbered if taken).")
    workers: int = _opt(0, "Data loading worker processes.", range=NON_NEGATIVE)
    device: str = _opt("auto", "Device: auto, cpu, cuda, cuda:N.")
    resume: bool = _opt(False, "Continue the run in --out from its last checkpoint.")
    overwrite: bool = _opt(False, "Replace a run already in --out.")
    progress: bool = _opt(
        True, "Show a progress bar (in a terminal; elsewhere a line every --log-every steps)."
    )
    log_every: int = _opt(
        50, "Outside a terminal, print a progress line every this many steps.", range=AT_LEAST_1
    )
    tensorboard: bool = _opt(
        False,
        "Also write the metrics as TensorBoard events to RUN/tensorboard (needs: pip install tensorboard).",
    )
    accumulate: int = _opt(
        1,
        "Split each global batch into this many forward/backward passes per process (less memory).",
        range=AT_LEAST_1,
    )
    activation_checkpointing: bool = _opt(
        False, "Recompute the ViT blocks' activations in the backward pass (less memory, one more forward)."
    )
    cache_teacher: bool = _opt(
        False, "Compute a frozen teacher's outputs once and reuse them (two-stage methods, --no-augment)."
    )
    devices: int = _opt(
        1,
        "Processes on this node: GPUs (or CPU processes with --device cpu); >1 launches torchrun.",
        range=AT_LEAST_1,
    )
    nnodes: int = _opt(
        1, "Nodes (machines) of a multi-node run; start the same command on each.", range=AT_LEAST_1
    )
    node_rank: int = _opt(
        0, "This node's index among --nnodes (0 on the node at --master-addr).", range=NON_NEGATIVE
    )
    master_addr: str = _opt("127.0.0.1", "Address of node 0, reachable from every node (multi-node).")
    master_port: int = _opt(
        29500, "Free TCP port on node 0 for the rendezvous (multi-node).", range=Range(1, 65535)
    )
    dist_backend: DistBackend = _opt(
        "auto", "torch.distributed backend: nccl for CUDA GPUs, gloo for CPU processes (auto)."
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: choose one")
        if self.node_rank >= self.nnodes:
            raise ConfigError(f"--node-rank must be in [0, --nnodes={self.nnodes}) (got {self.node_rank})")
        split = self.devices * self.nnodes * self.accumulate
        if self.batch_size % split:
            raise ConfigError(
                f"--batch-size {self.batch_size} cannot be split evenly over {self.devices * self.nnodes} "
                f"process(es) x --accumulate {self.accumulate}; choose a multiple of {split}"
            )
        if self.cache_teacher and self.augment:
            raise ConfigError(
                "--cache-teacher needs --no-augment: with random crops and flips the teacher sees a new image "
                "every epoch, so its outputs cannot be reused"
            )
        bad = [t for t in self.target_list if t not in LORA_TARGETS]
        if bad or not self.target_list:
            raise ConfigError(
                f"unknown LoRA target(s) {bad or self.targets!r}: choose among {', '.join(LORA_TARGETS)}"
            )

    @property
    def target_list(self) -> list[str]:
        return [t.strip() for t in self.targets.split(",") if t.strip()]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# LoRA targets: timm ViT module name -> number of output blocks sliced independently (q, k, v for qkv).
LORA_TARGETS = {"qkv": 3, "proj": 1, "fc1": 1, "fc2": 1}

# Settings that change how a run executes, not what it computes (the global batch is --batch-size whatever
# the number of processes and accumulation steps, so these may change when resuming).
RUNTIME_ONLY = frozenset(
    {
        "out",
        "workers",
        "device",
        "resume",
        "overwrite",
        "progress",
        "log_every",
        "tensorboard",
        "accumulate",
        "activation_checkpointing",
        "cache_teacher",
        "devices",
        "nnodes",
        "node_rank",
        "master_addr",
        "master_port",
        "dist_backend",
    }
)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def option_flag(f: dataclasses.Field) -> str:
    """The CLI option of a config field: `--` + its name with dashes, unless its metadata names another."""
    return "--" + f.metadata.get("flag", _flag(f.name))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    from sladkit._atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class ExportConfig:
    """Everything `sladkit export` needs. `sladkit.export.run(ExportConfig(...))` is the Python API."""

    run_dir: str = _opt("", "The training run folder (`sladkit train --out`).")
    target: str = _opt(
        "jetson-orin",
        "Deployment target; each is described under Targets below.",
    )
    out: str | None = _opt(None, "Bundle folder (default: deploy/<run name>-<target>).")
    precision: Literal["fp32", "fp16", "int8", "fp8"] | None = _opt(
        None, "Precision (default: the best the target supports)."
    )
    model: Literal["student", "teacher"] = _opt("student", "Which model of the run to export.")
    checkpoint: Literal["best", "last"] = _opt("best", "Which checkpoint of the run to export.")
    calib_data: str | None = _opt(None, "Calibration images folder (default: the run's training data).")
    calib_images: int = _opt(512, "Number of calibration images.", range=Range(8))
    calib_method: Literal["auto", "entropy", "minmax", "percentile"] = _opt(
        "auto", "INT8 calibration method (auto: each method tried, the one closest to FP32 kept)."
    )
    quantizer: Literal["sladkit", "modelopt"] = _opt(
        "sladkit",
        "Who places the Q/DQ nodes of the TensorRT INT8 model (model.int8.onnx): sladkit's own quantizer, or "
        "NVIDIA ModelOpt (pip install 'sladkit[modelopt]') fed with sladkit's calibration; TensorRT targets "
        "at --precision int8 only.",
    )
    cpu_int8_form: Literal["auto", "static", "dynamic", "openvino"] = _opt(
        "auto",
        "Form of the CPU INT8 model (model.int8-cpu.onnx; --target cpu --precision int8 only): static (U8S8 "
        "Q/DQ from the calibration, for ONNX Runtime; an image gets the same output in any batch; a plain Q/DQ "
        "model other runtimes read), dynamic (ONNX Runtime's dynamic quantization: activation ranges from each "
        "batch, no calibration), openvino (S8S8 Q/DQ from the calibration, run by OpenVINO: pip install "
        "'sladkit[openvino]'), or auto: build every form whose runtime is installed, put each through the "
        "accuracy gate, time each against FP32 on this machine (a few seconds) and keep the fastest (static "
        "unless another is more than 5 % faster); the manifest records the times and the runtime.",
    )
    max_accuracy_drop: float = _opt(
        1.0, "Largest INT8 accuracy (or mIoU) drop against FP32, in points (negative: INT8 must gain)."
    )
    min_agreement: float = _opt(
        90.0,
        "Least share of validation images (pixels for segmentation) on which INT8 and FP32 predict the same "
        "class, in percent.",
        range=Range(0, 100),
    )
    eval_images: int = _opt(
        1000, "Validation images used by the accuracy checks (at most).", range=AT_LEAST_1
    )
    batch: str = _opt("1,1,8", "TensorRT optimisation profile batch sizes MIN,OPT,MAX.")
    workspace_mb: int | None = _opt(
        None, "TensorRT builder workspace cap in MiB (default: the target's).", range=AT_LEAST_1
    )
    dla_core: int | None = _opt(
        None, "Build for this DLA core (implicit INT8 with the calibration cache).", range=NON_NEGATIVE
    )
    build_engine: Literal["auto", "always", "never"] = _opt("auto", "Build the TensorRT engine here.")
    bake_preprocess: bool = _opt(False, "Model input is uint8 NHWC RGB, normalisation inside the graph.")
    overwrite: bool = _opt(False, "Replace an existing bundle folder.")

    def __post_init__(self) -> None:
        check_ranges(self)
        _ = self.batch_sizes  # raises ConfigError when malformed

    @property
    def batch_sizes(self) -> tuple[int, int, int]:
        try:
            sizes = tuple(int(v) for v in self.batch.split(","))
        except ValueError:
            sizes = ()
        if len(sizes) != 3 or not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
            raise ConfigError(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {self.batch!r}")
        return sizes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PredictConfig:
    """The numeric settings of `sladkit predict` and `RuntimeModel.predict` (runtime only, never saved)."""

    top_k: int = _opt(5, "Classes per image in the output (classification).", range=AT_LEAST_1)
    batch: int = _opt(16, "Images per inference batch.", range=AT_LEAST_1)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class EvalConfig:
    """The numeric settings of `sladkit eval` and `sladkit.runtime.evaluate.evaluate` (never saved)."""

    batch: int = _opt(32, "Images per inference batch.", range=AT_LEAST_1)
    limit: int | None = _opt(None, "At most this many images.", range=AT_LEAST_1)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class ProfileConfig:
    """What `sladkit profile` measures and how (recorded in its JSON report)."""

    batches: tuple[int, ...] = _opt((1, 8), "Batch sizes.", range=AT_LEAST_1, flag="batch")
    warmup: int = _opt(10, "Untimed iterations first.", range=NON_NEGATIVE)
    iterations: int = _opt(100, "Timed iterations per batch size.", range=AT_LEAST_1)
    duration: float | None = _opt(None, "Time each batch size for this many seconds instead.", range=POSITIVE)
    threads: int | None = _opt(None, "CPU threads of the backend.", range=AT_LEAST_1)
    backend: str | None = _opt(None, "Backend to use (see --list-backends).")
    data: str | None = _opt(None, "Labelled image folder (or 'synthetic') for accuracy.")
    eval_images: int = _opt(500, "At most this many images for accuracy.", range=AT_LEAST_1)
    layers: bool = _opt(
        False,
        "Per-layer times (ONNX Runtime's profiler, OpenVINO's performance counters, TensorRT's IProfiler).",
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.batches:
            raise ConfigError("--batch must list at least one batch size, e.g. 1,8")

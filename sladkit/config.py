"""Typed configurations. Each field's help text is also its CLI help (`sladkit train --help`).

The resolved config is saved beside every artifact (`config.json` in a run folder), so a later stage can
rebuild exactly what an earlier one did. Fields in `RUNTIME_ONLY` change how a run executes but not
what it computes; they may differ when resuming.
"""

from __future__ import annotations

import dataclasses
import json
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


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its CLI help text."""
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


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
    val_fraction: float = _opt(0.2, "Share of train/ held out for validation when DIR has no val/.")
    strict: bool = _opt(False, "Fail on an unreadable image instead of skipping it with a warning.")
    synthetic_train: int = _opt(2000, "Training images of the synthetic dataset.")
    synthetic_val: int = _opt(500, "Validation images of the synthetic dataset.")
    image_size: int | None = _opt(None, "Input size in pixels (default: the models' own).")
    crop_scale: float = _opt(0.8, "Smallest area fraction of the random resized crop (train).")
    hflip: float = _opt(
        0.0,
        "Probability of a left-right flip of a training image (off by default: it changes digits and text; 0.5 suits most photos).",
    )
    augment: bool = _opt(
        True, "Random resized crop and flip on training images (--no-augment: the eval preprocessing)."
    )

    # Models
    teacher: str = _opt(TINY_TEACHER, "Teacher: a timm model name (e.g. vit_base_patch14_dinov2.lvd142m).")
    student: str = _opt(TINY_STUDENT, "Student: a timm model name of the teacher's family.")
    pretrained: bool = _opt(
        True, "Load the models' pretrained weights through timm (sladkit's tiny models have none)."
    )
    teacher_weights: str | None = _opt(None, "Teacher weights file (.safetensors or a PyTorch state dict).")
    student_weights: str | None = _opt(None, "Student weights file (.safetensors or a PyTorch state dict).")
    teacher_kwargs: dict = _opt({}, "Extra timm create_model arguments for the teacher, as JSON.")
    student_kwargs: dict = _opt({}, "Extra timm create_model arguments for the student, as JSON.")
    pool: Pool = _opt("cls+avg", "Classification head input: CLS token, mean patch token, or both.")

    # Method and shared LoRA
    method: str = _opt("slad", "Training method (see `sladkit train --help` for the list).")
    targets: str = _opt("qkv", "Comma-separated LoRA targets among qkv, proj, fc1, fc2.")
    rank: int = _opt(8, "LoRA rank r.")
    alpha: float = _opt(16.0, "LoRA alpha (the update is scaled by alpha / r).")
    lora_dropout: float = _opt(0.0, "Dropout on the LoRA branch input.")
    share: Share = _opt("ab", "Which LoRA factors the student shares with the teacher (slad).")
    layer_map: LayerMap = _opt("even", "Which teacher block each student block shares with.")
    student_adapt: Literal["lora", "ft"] = _opt(
        "lora", "Student adaptation in two-stage baselines: LoRA or full fine-tuning."
    )

    # Loss
    lambda_s: float = _opt(1.0, "Weight of the student task loss.")
    lambda_t: float = _opt(1.0, "Weight of the teacher task loss.")
    lambda_kd: float = _opt(1.0, "Weight of the KL distillation loss.")
    temperature: float = _opt(1.0, "Distillation temperature T (the KD term is scaled by T^2).")
    kd_into_teacher: bool = _opt(False, "Back-propagate the KD term into the teacher too.")

    # Optimisation
    epochs: int = _opt(8, "Epochs (per stage for two-stage methods).")
    teacher_epochs: int | None = _opt(
        None, "Epochs of a two-stage method's teacher stage (default: --epochs)."
    )
    batch_size: int = _opt(
        64, "Global batch per optimizer step, over all processes and --accumulate steps together."
    )
    lr_head: float = _opt(1e-2, "Learning rate of the heads.")
    lr_adapter: float = _opt(1e-2, "Learning rate of the LoRA adapters.")
    lr_backbone: float = _opt(1e-4, "Learning rate of fully fine-tuned backbones.")
    weight_decay: float = _opt(1e-4, "AdamW weight decay.")
    warmup_epochs: float = _opt(1.0, "Linear warm-up length in epochs, then cosine decay.")
    seed: int = _opt(0, "Random seed (data split, initialisation, shuffling, augmentation).")
    precision: Precision = _opt(
        "fp32", "Autocast precision: fp32, bf16 (GPUs and CPUs), fp16 (CUDA GPUs, with a GradScaler)."
    )

    # Runtime-only (may change on --resume)
    out: str | None = _opt(None, "Run folder (default: runs/<method>-<task>, numbered if taken).")
    workers: int = _opt(0, "Data loading worker processes.")
    device: str = _opt("auto", "Device: auto, cpu, cuda, cuda:N.")
    resume: bool = _opt(False, "Continue the run in --out from its last checkpoint.")
    overwrite: bool = _opt(False, "Replace a run already in --out.")
    progress: bool = _opt(True, "Show a progress bar.")
    accumulate: int = _opt(
        1, "Split each global batch into this many forward/backward passes per process (less memory)."
    )
    activation_checkpointing: bool = _opt(
        False, "Recompute the ViT blocks' activations in the backward pass (less memory, one more forward)."
    )
    cache_teacher: bool = _opt(
        False, "Compute a frozen teacher's outputs once and reuse them (two-stage methods, --no-augment)."
    )
    devices: int = _opt(
        1, "Processes on this node: GPUs (or CPU processes with --device cpu); >1 launches torchrun."
    )
    nnodes: int = _opt(1, "Nodes (machines) of a multi-node run; start the same command on each.")
    node_rank: int = _opt(0, "This node's index among --nnodes (0 on the node at --master-addr).")
    master_addr: str = _opt("127.0.0.1", "Address of node 0, reachable from every node (multi-node).")
    master_port: int = _opt(29500, "Free TCP port on node 0 for the rendezvous (multi-node).")
    dist_backend: DistBackend = _opt(
        "auto", "torch.distributed backend: nccl for CUDA GPUs, gloo for CPU processes (auto)."
    )

    def __post_init__(self) -> None:
        for name in (
            "rank",
            "epochs",
            "batch_size",
            "synthetic_train",
            "synthetic_val",
            "accumulate",
            "devices",
            "nnodes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.teacher_epochs is not None and self.teacher_epochs < 1:
            raise ConfigError(f"--teacher-epochs must be at least 1, got {self.teacher_epochs}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"--crop-scale must be in (0, 1], got {self.crop_scale}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f"--hflip must be a probability in [0, 1], got {self.hflip}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be positive, got {self.temperature}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"--image-size must be at least 8 pixels, got {self.image_size}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: choose one")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"--node-rank must be in [0, --nnodes={self.nnodes}), got {self.node_rank}")
        if not 0 < self.master_port < 65536:
            raise ConfigError(f"--master-port must be a TCP port (1-65535), got {self.master_port}")
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


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    from sladkit._atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class ExportConfig:
    """Everything `sladkit export` needs. `sladkit.export.run(ExportConfig(...))` is the Python API."""

    run_dir: str = _opt("", "The training run folder (`sladkit train --out`).")
    target: str = _opt("jetson-orin", "Deployment target (see `sladkit export --help`).")
    out: str | None = _opt(None, "Bundle folder (default: deploy/<run name>-<target>).")
    precision: Literal["fp32", "fp16", "int8"] | None = _opt(
        None, "Precision (default: the best the target supports)."
    )
    model: Literal["student", "teacher"] = _opt("student", "Which model of the run to export.")
    checkpoint: Literal["best", "last"] = _opt("best", "Which checkpoint of the run to export.")
    calib_data: str | None = _opt(None, "Calibration images folder (default: the run's training data).")
    calib_images: int = _opt(512, "Number of calibration images.")
    calib_method: Literal["entropy", "minmax", "percentile"] = _opt("entropy", "INT8 calibration method.")
    max_accuracy_drop: float = _opt(1.0, "Largest INT8 accuracy (or mIoU) drop against FP32, in points.")
    eval_images: int = _opt(1000, "Validation images used by the accuracy checks (at most).")
    batch: str = _opt("1,1,8", "TensorRT optimisation profile batch sizes MIN,OPT,MAX.")
    workspace_mb: int | None = _opt(None, "TensorRT builder workspace cap in MiB (default: the target's).")
    dla_core: int | None = _opt(None, "Build for this DLA core (implicit INT8 with the calibration cache).")
    build_engine: Literal["auto", "always", "never"] = _opt("auto", "Build the TensorRT engine here.")
    bake_preprocess: bool = _opt(False, "Model input is uint8 NHWC RGB, normalisation inside the graph.")
    overwrite: bool = _opt(False, "Replace an existing bundle folder.")

    def __post_init__(self) -> None:
        if self.calib_images < 8:
            raise ConfigError(f"--calib-images must be at least 8, got {self.calib_images}")
        if self.eval_images < 1:
            raise ConfigError(f"--eval-images must be at least 1, got {self.eval_images}")
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

"""A run's trained model, rebuilt from its run folder, and merged: what export (step 1) and the runtime's
torch backend run.

The run folder (`sladkit.run_folder`) is the only input: `config.json` says how to rebuild the pair, the
checkpoint holds the adapters, heads and the student's whole backbone. Merging turns every LoRA layer
into a plain `nn.Linear` with `W + (alpha / r) B A`, leaving a plain timm ViT + head.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from sladkit.config import TrainConfig
from sladkit.errors import RunDirError
from sladkit.models.adapters import lora_layers, merge_lora
from sladkit.models.heads import TaskModel
from sladkit.models.pair import create_pair
from sladkit.run_folder import CONFIG_FILE, MODEL_FILE, checkpoint_dir, read_config
from sladkit.train import checkpoint as ckpt
from sladkit.train.methods import get_method


def load_run_model(
    run_dir: str | Path, *, role: str = "student", checkpoint: str = "best"
) -> tuple[TaskModel, dict]:
    """The run's trained (unmerged) task model for `role`, in eval mode, and the run's config.json."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run folder {run_dir} does not exist; pass the --out folder of `sladkit train`")
    run_config = read_config(run_dir)
    folder = checkpoint_dir(run_dir, checkpoint)
    if ckpt.read_state(folder) is None or not (folder / MODEL_FILE).is_file():
        raise RunDirError(
            f"{run_dir} has no complete {checkpoint} checkpoint ({folder}); finish the run with "
            f"`sladkit train --out {run_dir} --resume`"
        )
    config = TrainConfig.from_dict(run_config["train"])
    get_method(config.method)  # an unknown method means a foreign or corrupt config
    spec = run_config["models"]

    # The checkpoint holds the student's whole backbone, so only the teacher may need its original weights.
    saved_teacher = run_config.get("checkpoint", {}).get("teacher_backbone", False)
    if role == "student" or saved_teacher:
        config = config.replace(pretrained=False, teacher_weights=None, student_weights=None)
    torch.manual_seed(config.seed)
    pair = create_pair(
        config,
        num_classes=run_config["num_classes"],
        image_size=run_config["image_size"],
        teacher_adapter=spec["teacher_adapter"],
        shared=spec["shared"],
        student_ft=not spec["student_adapter"],
    )
    state_keys = _checkpoint_keys(folder)
    missing = sorted(k for k in pair.state_dict() if k.startswith(f"{role}.") and k not in state_keys)
    if role == "teacher" and not saved_teacher:
        missing = [k for k in missing if ".lora_" in k or ".head." in k]
    if missing:
        raise RunDirError(
            f"checkpoint {folder} lacks {role} weights ({', '.join(missing[:3])}, ...): it does not fit "
            f"field 'train.{role}' ({getattr(config, role)!r}) of {run_dir / CONFIG_FILE}; restore the "
            "config.json that sladkit train wrote, or train again"
        )
    ckpt.load_model_state(folder, pair)
    model = getattr(pair, role)
    model.eval()
    return model, run_config


def _checkpoint_keys(folder: Path) -> set[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(folder / MODEL_FILE, framework="pt") as f:
            return set(f.keys())
    except (OSError, SafetensorError) as e:
        raise RunDirError(f"checkpoint {folder / MODEL_FILE} is corrupt ({e}); train again") from None


def merge_adapters(model: TaskModel) -> TaskModel:
    """A merged copy of `model`: plain nn.Linear layers, no adapter module left, shared views materialised."""
    merged = copy.deepcopy(model)
    merge_lora(merged)
    assert not lora_layers(merged)
    return merged.eval()


def check_weights_finite(model: nn.Module) -> list[str]:
    """Names of parameters holding NaN or Inf."""
    return [
        name
        for name, p in model.state_dict().items()
        if p.is_floating_point() and not torch.isfinite(p).all()
    ]


@torch.no_grad()
def max_abs_difference(a: nn.Module, b: nn.Module, images: torch.Tensor, batch: int = 64) -> float:
    """Largest absolute difference between two models' outputs on `images`."""
    worst = 0.0
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        worst = max(worst, (a(x) - b(x)).abs().max().item())
    return worst

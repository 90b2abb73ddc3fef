"""Checkpoints of a run: `checkpoints/{last,best}/` with `model.safetensors`, `optimizer.pt`, `state.json`.

Each checkpoint folder is written under a temporary name and swapped in whole (`sladkit._atomic`), so a
run killed at any moment leaves the previous checkpoint intact. `model.safetensors` holds what the
run changed or cannot rebuild: adapters, heads, the student's whole backbone, and the teacher's
backbone when it was fine-tuned or randomly initialised. The optimizer state is a tensor-only
state dict read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from sladkit._atomic import atomic_dir, recover_dir
from sladkit.errors import RunDirError
from sladkit.run_folder import CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE


def saved_state(model: nn.Module, *, teacher_backbone: bool) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps (see the module docstring)."""
    state = {}
    for key, value in model.state_dict().items():
        keep = (
            ".lora_A" in key
            or ".lora_B" in key
            or ".head." in key
            or key.startswith("student.")
            or (teacher_backbone and key.startswith("teacher."))
        )
        if keep:
            state[key] = value.detach().cpu().contiguous()
    return state


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict,
    *,
    teacher_backbone: bool,
) -> None:
    """Write a checkpoint folder atomically (the previous one survives any interruption)."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file(saved_state(model, teacher_backbone=teacher_backbone), tmp / MODEL_FILE)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Copy a complete checkpoint folder atomically (e.g. last -> best)."""
    with atomic_dir(dst) as tmp:
        for item in src.iterdir():
            shutil.copy2(item, tmp / item.name)


def read_state(folder: Path) -> dict | None:
    """The checkpoint's state.json, or None when there is no checkpoint."""
    recover_dir(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(
            f"checkpoint state {path} is unreadable ({e}); this checkpoint cannot be resumed: export the run's "
            "other checkpoint (`sladkit export RUN --checkpoint best`), or start again with --overwrite"
        ) from None


def load_model_state(folder: Path, model: nn.Module) -> None:
    """Load a checkpoint's tensors into `model` (which must have been built the same way)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / MODEL_FILE
    try:
        state = load_file(path)
    except (OSError, SafetensorError) as e:
        raise RunDirError(
            f"checkpoint {path} is missing or corrupt ({e}); export the run's other checkpoint "
            "(`--checkpoint best`), or start again with --overwrite"
        ) from None
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own)
    misfit = [k for k in state if k in own and own[k].shape != state[k].shape]
    if unknown or misfit:  # config.json was edited after training (or the checkpoint is another run's)
        key = (unknown or misfit)[0]
        found = (
            "unexpected"
            if unknown
            else f"{list(state[key].shape)} there, {list(own[key].shape)} as configured"
        )
        raise RunDirError(
            f"{folder.parent.parent / CONFIG_FILE}: field '{config_field(key)}' does not fit checkpoint {path} "
            f"({key}: {found}); restore the config.json that sladkit train wrote, or train again"
        )
    model.load_state_dict(state, strict=False)


def config_field(key: str) -> str:
    """The run's config.json field that decides the shape of checkpoint tensor `key` ("student.head.fc.bias")."""
    if ".lora_" in key:
        return "train.rank"
    if ".head." in key:
        return "num_classes"
    if "pos_embed" in key:
        return "image_size"
    return f"train.{key.split('.', 1)[0]}"  # train.student or train.teacher: the architecture


def load_optimizer_state(folder: Path, optimizer: torch.optim.Optimizer) -> None:
    """Load `optimizer.pt`; without one (moved away by the user), the optimizer starts afresh, with a warning."""
    path = folder / OPTIMIZER_FILE
    run_dir = folder.parent.parent
    if not path.exists():
        print(
            f"warning: {path} is missing: resuming with a fresh optimizer state (its moments restart from zero)",
            file=sys.stderr,
        )
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state)
    except Exception as e:
        raise RunDirError(
            f"optimizer state {path} is damaged ({type(e).__name__}); the model weights beside it are intact: "
            f"export them with `sladkit export {run_dir} --checkpoint {folder.name}`, or move {path.name} "
            "away and --resume again to continue with a fresh optimizer state"
        ) from None

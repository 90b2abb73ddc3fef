"""Adapters in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`).

`peft.PeftModel.from_pretrained(timm_model, folder)` loads them onto the plain timm backbone. The
student's shared factors are materialised (copied out of the teacher's) on the way. sladkit's task head
lives outside the timm backbone (PEFT's `modules_to_save` cannot reach it), so it is saved beside them as
`head.safetensors`, its metadata naming the head's class and the run checkpoint both came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sladkit._atomic import atomic_dir
from sladkit.models.adapters import lora_layers

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_WEIGHTS = "head.safetensors"


def peft_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """PEFT's key names (`base_model.model.<module>.lora_A.weight`) -> contiguous tensors."""
    state = {}
    for name, layer in lora_layers(model).items():
        state[f"base_model.model.{name}.lora_A.weight"] = layer.weight_a().detach().contiguous().cpu()
        state[f"base_model.model.{name}.lora_B.weight"] = layer.weight_b().detach().contiguous().cpu()
    return state


def save_peft_adapter(
    model: nn.Module,
    folder: str | Path,
    *,
    base_model: str,
    head: nn.Module | None = None,
    checkpoint: str = "last",
) -> None:
    """Write `model`'s LoRA adapters into `folder` (atomically) in PEFT's format, and `head` beside them."""
    from safetensors.torch import save_file

    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters to save")
    first = next(iter(layers.values()))
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model,
        "r": first.rank,
        "lora_alpha": first.alpha,
        "lora_dropout": dropout,
        "target_modules": sorted(layers),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "inference_mode": True,
    }
    with atomic_dir(folder) as tmp:
        save_file(peft_state_dict(model), tmp / ADAPTER_WEIGHTS)
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if head is not None:
            state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
            meta = {"class": type(head).__name__, "checkpoint": checkpoint, "base_model": base_model}
            save_file(state, tmp / HEAD_WEIGHTS, metadata=meta)

"""Mixed precision and memory savers for large teachers (ViT-L or ViT-g at 518 px).

- `--precision bf16|fp16`: forward passes run under `torch.autocast`; fp16 adds a GradScaler (its
  dynamic loss scaling). Parameters, optimizer state and losses stay float32.
- Under bf16/fp16 the teacher's frozen base (the pretrained weights that LoRA, a linear probe or a
  distillation stage leave untouched) is stored in that half precision: half the teacher's memory, with
  the same matmuls, since autocast casts those weights to it at every use anyway. LoRA factors, heads and
  anything trained stay float32.
- `--activation-checkpointing`: the ViT blocks keep only their inputs and recompute their activations in
  the backward pass (`torch.utils.checkpoint`, non-reentrant: LoRA factors and the student's shared views
  inside a block get their gradients even when the block's input needs none).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device):
    """The forward-pass context of `precision` on `device` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (bf16 has float32's range and needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def half_frozen_base(backbone: nn.Module, precision: str) -> int:
    """Store a frozen backbone's own weights (not its LoRA factors) in `precision`; returns how many.

    Only call this under autocast precisions: outside autocast a float32 input meets half weights.
    """
    dtype = DTYPES[precision]
    if dtype == torch.float32:
        return 0
    count = 0
    for name, param in backbone.named_parameters():
        if ".lora_" not in name and not param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)
            count += 1
    return count


class CheckpointedBlocks(nn.Sequential):
    """`nn.Sequential` of ViT blocks whose activations are recomputed in the backward pass.

    It keeps the children and their names (`blocks.0...`), so state dicts and checkpoints are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = checkpoint(block, x, use_reentrant=False) if torch.is_grad_enabled() else block(x)
        return x


def checkpoint_blocks(backbone: nn.Module) -> None:
    """Make a timm ViT's `blocks` recompute their activations in the backward pass (in place)."""
    if not isinstance(backbone.blocks, CheckpointedBlocks):
        backbone.blocks = CheckpointedBlocks(*backbone.blocks)

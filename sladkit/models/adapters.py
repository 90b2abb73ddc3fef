"""LoRA adapters, and the shared adapters of SLAD (`docs/method.md`, "The shared adapter").

A LoRA linear layer computes `W x + (alpha / r) * B A dropout(x)` with `A: (r, in)` Kaiming-initialised
and `B: (out, r)` zero-initialised, so a freshly adapted model computes exactly its base function.

The student's shared adapter owns no tensor for a shared factor: it reads a *view* of its teacher
partner's parameter at every forward pass,

    A_s = A_t[:, :in_s]                                  (the first in_s input features)
    B_s = rows [k*out_t : k*out_t + out_s] of B_t, k = 0..blocks-1   (q, k, v blocks for qkv)

so gradients of the student's loss land on the teacher's entries and any change to them shows up in
the student at once. Slicing `B_t[:3*D_s]` would mix q and k; `blocks` keeps them apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sladkit.config import LORA_TARGETS
from sladkit.errors import ConfigError

LAYER_MAPS = ("even", "first", "last")
SHARE_MODES = ("ab", "a", "b", "none")


class LoraLinear(nn.Module):
    """`nn.Linear` plus a low-rank update whose factors may be views of another LoraLinear's.

    Args:
        base: the pretrained linear layer (kept as is; freeze it to train the adapter only).
        rank: r. alpha: scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapter's input.
        blocks: the output is `blocks` stacked sub-layers (3 for qkv) sliced independently when shared.
        source: the teacher's LoraLinear to share with, or None.
        share_a / share_b: take A / B from `source` instead of owning them.
    """

    def __init__(
        self,
        base: nn.Linear,
        *,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        blocks: int = 1,
        source: LoraLinear | None = None,
        share_a: bool = False,
        share_b: bool = False,
    ) -> None:
        super().__init__()
        if base.out_features % blocks:
            raise ConfigError(
                f"a layer with {base.out_features} outputs cannot be split into {blocks} blocks"
            )
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.blocks = blocks
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Not registered as a submodule: the teacher owns these parameters; the student only reads them.
        object.__setattr__(self, "source", source)
        self.share_a = share_a and source is not None
        self.share_b = share_b and source is not None
        if source is not None:
            if source.rank != rank or source.blocks != blocks:
                raise ConfigError("shared adapters need the same rank and block structure on both sides")
            if self.in_features > source.in_features or self.out_features > source.out_features:
                raise ConfigError(
                    f"cannot slice a ({self.out_features}x{self.in_features}) adapter out of a "
                    f"({source.out_features}x{source.in_features}) one: the student is wider than the teacher"
                )
        w = base.weight
        self.lora_A = (
            None if self.share_a else nn.Parameter(torch.empty(rank, self.in_features, dtype=w.dtype))
        )
        self.lora_B = (
            None if self.share_b else nn.Parameter(torch.zeros(self.out_features, rank, dtype=w.dtype))
        )
        if self.lora_A is not None:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft

    def weight_a(self) -> torch.Tensor:
        """A: (r, in); a view of the teacher's A when shared."""
        if self.share_a:
            return self.source.lora_A[:, : self.in_features]
        return self.lora_A

    def weight_b(self) -> torch.Tensor:
        """B: (out, r); when shared, the first out/blocks rows of each of the teacher's blocks."""
        if self.share_b:
            b_t = self.source.lora_B  # (blocks * out_t, r)
            per_block = self.out_features // self.blocks
            return b_t.unflatten(0, (self.blocks, -1))[:, :per_block].flatten(0, 1)
        return self.lora_B

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (alpha / r) B A: (out, in)."""
        return self.scaling * (self.weight_b() @ self.weight_a())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lora = F.linear(F.linear(self.dropout(x), self.weight_a()), self.weight_b())
        return self.base(x) + self.scaling * lora

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing the same function (W + ΔW)."""
        base = self.base
        out = nn.Linear(self.in_features, self.out_features, bias=base.bias is not None)
        out = out.to(device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(base.weight + self.delta_weight().to(base.weight.dtype))
            if base.bias is not None:
                out.bias.copy_(base.bias)
        return out

    def extra_repr(self) -> str:
        shared = "".join(f for f, s in (("A", self.share_a), ("B", self.share_b)) if s) or "none"
        return f"rank={self.rank}, alpha={self.alpha}, blocks={self.blocks}, shared={shared}"


def layer_map(mode: str, student_depth: int, teacher_depth: int) -> list[int]:
    """The teacher block paired with each student block.

    even: student block i <-> teacher block round((i + 1) * L_t / L_s) - 1 (halves rounded up);
    first: the first L_s teacher blocks; last: the last L_s.
    """
    if mode not in LAYER_MAPS:
        raise ConfigError(f"unknown layer map {mode!r}: choose among {', '.join(LAYER_MAPS)}")
    if student_depth > teacher_depth:
        raise ConfigError(
            f"the student has more blocks ({student_depth}) than the teacher ({teacher_depth}); "
            "choose a deeper teacher"
        )
    if mode == "first":
        return list(range(student_depth))
    if mode == "last":
        return list(range(teacher_depth - student_depth, teacher_depth))
    return [math.floor((i + 1) * teacher_depth / student_depth + 0.5) - 1 for i in range(student_depth)]


def _target_layers(model: nn.Module, block: int, targets: list[str]) -> Iterator[tuple[str, nn.Module, str]]:
    """(full name, parent module, attribute) of each targeted linear layer in one ViT block."""
    for target in targets:
        parent_name = "attn" if target in ("qkv", "proj") else "mlp"
        parent = getattr(model.blocks[block], parent_name)
        yield f"blocks.{block}.{parent_name}.{target}", parent, target


def add_lora(
    model: nn.Module, *, targets: list[str], rank: int, alpha: float, dropout: float = 0.0
) -> dict[str, LoraLinear]:
    """Wrap the targeted linear layers of every block of a timm ViT with private LoRA adapters."""
    adapters = {}
    for i in range(len(model.blocks)):
        for name, parent, attr in _target_layers(model, i, targets):
            layer = LoraLinear(
                getattr(parent, attr), rank=rank, alpha=alpha, dropout=dropout, blocks=LORA_TARGETS[attr]
            )
            setattr(parent, attr, layer)
            adapters[name] = layer
    return adapters


def add_shared_lora(
    student: nn.Module,
    teacher_adapters: dict[str, LoraLinear],
    *,
    targets: list[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    share: str = "ab",
    mapping: list[int],
) -> dict[str, LoraLinear]:
    """Give every student block adapters that share factors with its teacher partner's (`mapping`)."""
    if share not in SHARE_MODES:
        raise ConfigError(f"unknown share mode {share!r}: choose among {', '.join(SHARE_MODES)}")
    adapters = {}
    for i, j in enumerate(mapping):
        for name, parent, attr in _target_layers(student, i, targets):
            layer = LoraLinear(
                getattr(parent, attr),
                rank=rank,
                alpha=alpha,
                dropout=dropout,
                blocks=LORA_TARGETS[attr],
                source=teacher_adapters[name.replace(f"blocks.{i}.", f"blocks.{j}.", 1)],
                share_a=share in ("ab", "a"),
                share_b=share in ("ab", "b"),
            )
            setattr(parent, attr, layer)
            adapters[name] = layer
    return adapters


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    """Every LoraLinear in `model`, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoraLinear by its merged nn.Linear, in place; returns `model`."""
    for name, layer in lora_layers(model).items():
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, layer.merged())
    return model

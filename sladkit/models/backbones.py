"""Backbones from timm: sladkit's tiny built-in pair, weight files, and teacher/student pair checks.

The tiny pair (`sladkit_vit_192_p8` teacher, `sladkit_vit_96_p8` student) is a same-family ViT pair
(patch 8, 32 px, depth 6, head size 32) registered with timm, so the real code path (timm names)
is the one the embedded default uses. Its "foundation" weights ship inside the package
(`sladkit/models/weights/`, made by `tools/pretrain_tiny_pair.py` on a synthetic pretext task) and are
loaded like a user's weight file when `pretrained` is on.
"""

from __future__ import annotations

import difflib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from sladkit.errors import ModelError


def _tiny_vit(width: int, heads: int, **kwargs) -> VisionTransformer:
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's loader arguments
        kwargs.pop(key, None)
    args = dict(img_size=32, patch_size=8, embed_dim=width, depth=6, num_heads=heads, num_classes=0)
    args.update(kwargs)
    model = VisionTransformer(**args)
    return model


@register_model
def sladkit_vit_192_p8(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Tiny teacher: width 192, 6 heads of 32, depth 6, patch 8, 32 px."""
    return _tiny_vit(192, 6, **kwargs)


@register_model
def sladkit_vit_96_p8(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Tiny student: width 96, 3 heads of 32, depth 6, patch 8, 32 px."""
    return _tiny_vit(96, 3, **kwargs)


TINY_MODELS = ("sladkit_vit_192_p8", "sladkit_vit_96_p8")
TINY_WEIGHTS = Path(__file__).parent / "weights"
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
TINY_PREPROCESS = {"image_size": 32, "interpolation": "bicubic", "crop_pct": 1.0, **_IMAGENET}


@dataclass(frozen=True)
class BackboneInfo:
    """The facts about a backbone that the rest of sladkit needs."""

    name: str
    width: int
    depth: int
    num_heads: int
    head_dim: int
    patch_size: int
    num_prefix_tokens: int
    image_size: int

    @classmethod
    def of(cls, name: str, model: VisionTransformer) -> BackboneInfo:
        attn = model.blocks[0].attn
        return cls(
            name=name,
            width=model.embed_dim,
            depth=len(model.blocks),
            num_heads=attn.num_heads,
            head_dim=attn.head_dim,
            patch_size=model.patch_embed.patch_size[0],
            num_prefix_tokens=model.num_prefix_tokens,
            image_size=model.patch_embed.img_size[0],
        )


def preprocess_config(name: str) -> dict:
    """Input size, interpolation, crop fraction and mean/std a model was pretrained with (no download)."""
    if name.split(".")[0] in TINY_MODELS:
        cfg = dict(TINY_PREPROCESS)
    else:
        check_model_name(name, "student")
        pretrained = timm.get_pretrained_cfg(name)
        if pretrained is None:
            return {"image_size": 224, "interpolation": "bicubic", "crop_pct": 0.875, **_IMAGENET}
        cfg = {
            "image_size": int(pretrained.input_size[-1]),
            "interpolation": pretrained.interpolation or "bicubic",
            "crop_pct": float(pretrained.crop_pct),
            "mean": [float(v) for v in pretrained.mean],
            "std": [float(v) for v in pretrained.std],
        }
    return cfg


def uses_pretrained_weights(name: str, pretrained: bool, weights: str | None) -> bool:
    """Whether a backbone starts from saved weights (a file, timm's or sladkit's) rather than random ones."""
    if weights is not None:
        return True
    if name.split(".")[0] in TINY_MODELS:
        return pretrained and (TINY_WEIGHTS / f"{name}.safetensors").is_file()
    return pretrained


def check_model_name(name: str, role: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(pretrained=False) + list(TINY_MODELS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; list names with timm.list_models('vit*')"
    raise ModelError(f"unknown {role} model {name!r}{hint}")


def check_hub_weights(name: str, role: str) -> None:
    """Refuse at once (not after the Hub client's minute of retries) hub weights that cannot be had offline."""
    if name.split(".")[0] in TINY_MODELS:
        return
    if not _hub_cached(name) and not _hub_reachable():
        raise ModelError(
            f"pretrained weights for {role} {name!r} are not in the Hugging Face cache and the Hub "
            f"({_hub_endpoint()}) cannot be reached; without internet, pass --{role}-weights FILE or "
            "--no-pretrained"
        )


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_cached(name: str) -> bool:
    """Whether timm would find `name`'s pretrained weights in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    except (ImportError, AttributeError, RuntimeError):
        return True  # cannot tell: let timm try
    if not repo:
        return True  # not on the Hub (a URL): let timm try
    repo = repo.split("@")[0]
    names = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in names)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A 3-second TCP connect to the Hub, instead of the Hub client's minute of retries when offline.

    Behind a proxy (HTTPS_PROXY) a direct connect says nothing, so this answers yes and timm decides.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(_hub_endpoint())
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout
        ).close()
    except OSError:
        return False
    return True


def create_backbone(
    name: str,
    *,
    role: str,
    image_size: int,
    pretrained: bool = True,
    weights: str | None = None,
    kwargs: dict | None = None,
) -> VisionTransformer:
    """Build a timm ViT without classifier at `image_size` (position embeddings resampled if needed).

    Args:
        name: timm model name, optionally with a pretrained tag (`vit_small_patch14_dinov2.lvd142m`).
        role: "teacher" or "student", for error messages.
        image_size: input size; pretrained position embeddings are resampled to it.
        pretrained: load timm's pretrained weights (ignored for sladkit's tiny models and with `weights`).
        weights: a local weights file; replaces `pretrained`.
        kwargs: extra arguments for `timm.create_model`.
    """
    check_model_name(name, role)
    kwargs = dict(kwargs or {})
    tiny = name.split(".")[0] in TINY_MODELS
    use_hub = pretrained and weights is None and not tiny
    if pretrained and weights is None and tiny and (TINY_WEIGHTS / f"{name}.safetensors").is_file():
        if kwargs:
            raise ModelError(
                f"sladkit's pretrained {name} weights fit its default architecture only; with "
                f"--{role}-kwargs {kwargs} pass --no-pretrained"
            )
        weights = str(TINY_WEIGHTS / f"{name}.safetensors")
    if use_hub:
        check_hub_weights(name, role)
    try:
        model = timm.create_model(name, pretrained=use_hub, num_classes=0, img_size=image_size, **kwargs)
    except TypeError as e:
        raise ModelError(f"cannot build {role} {name!r} with {kwargs}: {e}") from None
    except (OSError, RuntimeError, ValueError) as e:
        if not use_hub:
            raise ModelError(f"cannot build {role} {name!r}: {e}") from None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(
            f"could not load pretrained weights for {role} {name!r} ({first}); without internet, pass "
            f"--{role}-weights FILE or --no-pretrained"
        ) from None
    if not isinstance(model, VisionTransformer):
        raise ModelError(
            f"{role} {name!r} is a {type(model).__name__}; sladkit supports timm VisionTransformer models "
            "(ViT, DeiT, DINOv2, ...)"
        )
    if weights is not None:
        load_weights(model, weights, role=role)
    return model


def read_state_dict(path: str | Path, *, role: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file or a PyTorch state dict (never unpickling anything but tensors)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{role} weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled objects, wrong format
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(
            f"cannot read {role} weights {str(path)!r} ({first}); expected .safetensors or a PyTorch "
            "state dict saved with torch.save(model.state_dict())"
        ) from None
    for key in ("state_dict", "model", "teacher", "module"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{role} weights {str(path)!r} do not hold a flat name -> tensor state dict")
    # float16/bfloat16 files are widened: the models train and resample position embeddings in float32
    return {
        k.removeprefix("module.").removeprefix("backbone."): v.float() if v.is_floating_point() else v
        for k, v in state.items()
    }


HF_PATCH_KEY = "embeddings.patch_embeddings.projection.weight"  # marks Hugging Face's Dinov2Model layout


def from_hf_dinov2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face `transformers` Dinov2Model / Dinov2WithRegistersModel keys -> timm's ViT keys.

    This is the layout of `facebook/dinov2-*`'s `model.safetensors` (and of what transformers 5 saves, which
    names the projections `attention.{q,k,v,o}_proj`): separate query/key/value projections
    (concatenated into timm's `qkv`), `layer_scale{1,2}.lambda1` (timm's `ls{1,2}.gamma`), the final
    `layernorm` (timm's `norm`). A `dinov2.` prefix (Dinov2ForImageClassification) and the classifier are
    dropped, as is the `mask_token` (used only in pretraining).
    """
    state = {k.removeprefix("dinov2."): v for k, v in state.items() if not k.startswith("classifier.")}
    out = {
        "cls_token": state.pop("embeddings.cls_token"),
        "pos_embed": state.pop("embeddings.position_embeddings"),
        "patch_embed.proj.weight": state.pop(HF_PATCH_KEY),
        "patch_embed.proj.bias": state.pop("embeddings.patch_embeddings.projection.bias"),
    }
    state.pop("embeddings.mask_token", None)
    if "embeddings.register_tokens" in state:
        out["reg_token"] = state.pop("embeddings.register_tokens")
    renames = {
        "attention.output.dense.": "attn.proj.",
        "attention.o_proj.": "attn.proj.",
        "layer_scale1.lambda1": "ls1.gamma",
        "layer_scale2.lambda1": "ls2.gamma",
        "mlp.weights_in.": "mlp.fc1.",  # SwiGLU (ViT-g) is stored as one in-projection in both
        "mlp.weights_out.": "mlp.fc2.",
    }
    blocks = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")})
    for i in blocks:
        hf, timm_ = f"encoder.layer.{i}.", f"blocks.{i}."
        # The Hub's files say attention.attention.{query,key,value}; transformers 5 saves attention.{q,k,v}_proj.
        old_names = f"{hf}attention.attention.query.weight" in state
        names = (
            ("attention.query", "attention.key", "attention.value")
            if old_names
            else ("q_proj", "k_proj", "v_proj")
        )
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{hf}attention.{n}.{kind}") for n in names]
            out[f"{timm_}attn.qkv.{kind}"] = torch.cat(parts, 0)
        for key in [k for k in state if k.startswith(hf)]:
            rest = key[len(hf) :]
            for old, new in renames.items():
                rest = rest.replace(old, new)
            out[timm_ + rest] = state.pop(key)
    for kind in ("weight", "bias"):
        if f"layernorm.{kind}" in state:
            out[f"norm.{kind}"] = state.pop(f"layernorm.{kind}")
    out.update(state)  # anything else is reported as unexpected by the caller
    return out


def load_weights(model: VisionTransformer, path: str | Path, *, role: str) -> None:
    """Load a weights file into `model`, resampling position embeddings; report mismatched keys.

    Accepted layouts: timm's, the original DINOv2 repository's, and Hugging Face's (`from_hf_dinov2`).
    """
    state = read_state_dict(path, role=role)
    if any(k.removeprefix("dinov2.") == HF_PATCH_KEY for k in state):
        try:
            state = from_hf_dinov2(state)
        except KeyError as e:
            raise ModelError(
                f"{role} weights {str(path)!r} look like Hugging Face's DINOv2 but lack {e}"
            ) from None
    try:
        state = checkpoint_filter_fn(state, model)  # converts original DINOv2/DeiT keys, resamples pos_embed
    except Exception as e:
        raise ModelError(f"{role} weights {str(path)!r} do not fit {type(model).__name__}: {e}") from None
    state = {k: v for k, v in state.items() if not k.startswith("head.")}  # we bring our own heads
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    wrong_shape = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})")
        if wrong_shape:
            shapes = ", ".join(
                f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
                for k in wrong_shape[:2]
            )
            parts.append(f"wrong shape ({len(wrong_shape)}): {shapes}")
        width = state.get("cls_token", state.get("patch_embed.proj.bias"))
        hint = ""
        if width is not None and width.shape[-1] != model.embed_dim:
            other = "student" if role == "teacher" else "teacher"
            hint = (
                f"; the file is {width.shape[-1]} wide, the {role} {model.embed_dim}: are the {role} and "
                f"{other} weight files swapped?"
            )
        raise ModelError(f"{role} weights {str(path)!r} do not match the model: {'; '.join(parts)}{hint}")
    model.load_state_dict(state)


def check_pair(teacher: BackboneInfo, student: BackboneInfo) -> None:
    """Refuse teacher/student pairs that cannot share adapters."""
    if teacher.patch_size != student.patch_size:
        raise ModelError(
            f"teacher {teacher.name} has patch size {teacher.patch_size} but student {student.name} has "
            f"{student.patch_size}; choose two models of one family with the same patch size"
        )
    if teacher.head_dim != student.head_dim:
        raise ModelError(
            f"teacher {teacher.name} has head size {teacher.head_dim} but student {student.name} has "
            f"{student.head_dim}; shared q/k/v slices need equal head sizes (same family)"
        )
    if student.width > teacher.width:
        raise ModelError(
            f"student {student.name} (width {student.width}) is wider than teacher {teacher.name} "
            f"(width {teacher.width}); swap --teacher and --student"
        )

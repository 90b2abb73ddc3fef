"""timm backbones: names, weight files, pair checks."""

from __future__ import annotations

import re

import pytest
import torch

from sladkit.errors import ModelError
from sladkit.models.backbones import BackboneInfo, check_pair, create_backbone, preprocess_config

KW = {"depth": 2, "init_values": 1.0}


def _student(**kwargs):
    return create_backbone(
        "sladkit_vit_96_p8", role="student", image_size=32, pretrained=False, kwargs={**KW, **kwargs}
    )


def test_unknown_name_suggests_close_names():
    with pytest.raises(ModelError, match="did you mean vit_small_patch14_dinov2"):
        create_backbone("vit_smal_patch14_dinov2", role="teacher", image_size=32)


def test_dinov2_names_resolve_preprocessing_without_download():
    cfg = preprocess_config("vit_small_patch14_dinov2.lvd142m")
    assert cfg["image_size"] == 518 and cfg["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_offline_pretrained_download_fails_with_a_hint(monkeypatch):
    import timm.models._builder

    def offline(*args, **kwargs):  # what huggingface_hub raises without network, minus its retries
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(ModelError, match="--student-weights FILE or --no-pretrained"):
        create_backbone("vit_small_patch14_dinov2.lvd142m", role="student", image_size=28, pretrained=True)


def test_real_dinov2_config_builds_at_a_chosen_size():
    model = create_backbone(
        "vit_small_patch14_dinov2", role="student", image_size=56, pretrained=False, kwargs={"depth": 1}
    )
    info = BackboneInfo.of("vit_small_patch14_dinov2", model)
    assert (info.width, info.head_dim, info.patch_size, info.image_size) == (384, 64, 14, 56)


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "pt-wrapped"])
def test_weight_files_load_exactly(tmp_path, fmt):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = _student().eval()
    state = source.state_dict()
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        save_file(state, path)
    else:
        torch.save({"model": state} if fmt == "pt-wrapped" else state, path)
    torch.manual_seed(2)
    loaded = create_backbone("sladkit_vit_96_p8", role="student", image_size=32, weights=str(path), kwargs=KW)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), source(x))


def test_weight_files_are_resampled_to_a_new_image_size(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(_student().state_dict(), path)
    model = create_backbone("sladkit_vit_96_p8", role="student", image_size=48, weights=str(path), kwargs=KW)
    assert model.pos_embed.shape[1] == 1 + 6 * 6


def test_mismatched_weights_name_the_keys(tmp_path):
    from safetensors.torch import save_file

    state = _student().state_dict()
    state.pop("blocks.1.norm1.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.safetensors"
    save_file(state, path)
    with pytest.raises(ModelError, match=r"missing: blocks\.1\.norm1\.weight.*unexpected: extra\.weight"):
        create_backbone("sladkit_vit_96_p8", role="student", image_size=32, weights=str(path), kwargs=KW)


class _Arbitrary:
    """Any class: unpickling it would run code, so weights_only loading must refuse it."""


def test_missing_and_corrupt_and_pickled_weight_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_backbone("sladkit_vit_96_p8", role="student", image_size=32, weights=str(tmp_path / "no.pt"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot read student weights"):
        create_backbone("sladkit_vit_96_p8", role="student", image_size=32, weights=str(bad))
    pickled = tmp_path / "object.pt"
    torch.save({"state_dict": _student().state_dict(), "object": _Arbitrary()}, pickled)
    with pytest.raises(ModelError, match="cannot read student weights"):  # weights_only refuses objects
        create_backbone("sladkit_vit_96_p8", role="student", image_size=32, weights=str(pickled))


def _info(**changes):
    base = dict(
        name="m",
        width=192,
        depth=6,
        num_heads=6,
        head_dim=32,
        patch_size=8,
        num_prefix_tokens=1,
        image_size=32,
    )
    base.update(changes)
    return BackboneInfo(**base)


@pytest.mark.parametrize(
    "student, message",
    [
        (_info(patch_size=14), "patch size"),
        (_info(head_dim=64, num_heads=3), "head size"),
        (_info(width=384, num_heads=12), "wider than teacher"),
    ],
)
def test_incompatible_pairs_are_refused(student, message):
    with pytest.raises(ModelError, match=message):
        check_pair(_info(), student)
    check_pair(_info(), _info(width=96, num_heads=3, depth=3))  # narrower and shallower is fine


HUB_NAMES = {  # facebook/dinov2-*'s model.safetensors predates transformers 5's names
    "attention.q_proj.": "attention.attention.query.",
    "attention.k_proj.": "attention.attention.key.",
    "attention.v_proj.": "attention.attention.value.",
    "attention.o_proj.": "attention.output.dense.",
}


@pytest.mark.parametrize("wrapper, names", [("", "hub"), ("", "transformers-5"), ("dinov2.", "hub")])
def test_hugging_face_dinov2_weights_load_into_the_timm_model(tmp_path, wrapper, names):
    """Hugging Face's DINOv2 layout: a random transformers Dinov2Model, saved and loaded."""
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=384, num_hidden_layers=2, num_attention_heads=6, patch_size=14, image_size=56,
        layerscale_value=0.5,
    )  # fmt: skip
    hf = Dinov2Model(config).eval()
    path = tmp_path / "model.safetensors"
    state = {}
    for key, value in hf.state_dict().items():
        for new, old in HUB_NAMES.items() if names == "hub" else ():
            key = key.replace(new, old)
        state[wrapper + key] = value.contiguous()
    save_file(state, str(path))
    model = create_backbone(
        "vit_small_patch14_dinov2", role="student", image_size=56, weights=str(path), kwargs={"depth": 2}
    ).eval()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected = hf(pixel_values=x).last_hidden_state
        got = model.forward_features(x)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_hub_weights_that_cannot_be_had_offline_fail_at_once(monkeypatch):
    import time

    from sladkit.models import backbones

    monkeypatch.setattr(backbones, "_hub_cached", lambda name: False)
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout=3.0: False)
    started = time.perf_counter()
    with pytest.raises(ModelError, match="not in the Hugging Face cache and the Hub .* cannot be reached"):
        create_backbone("vit_small_patch14_dinov2.lvd142m", role="teacher", image_size=32)
    assert time.perf_counter() - started < 5  # no download attempt, no retries
    backbones.check_hub_weights("sladkit_vit_96_p8", "student")  # the embedded pair never needs the Hub


def test_swapped_weight_files_are_named(tmp_path):
    from safetensors.torch import save_file

    teacher = create_backbone("sladkit_vit_192_p8", role="teacher", image_size=32, pretrained=False)
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    with pytest.raises(ModelError) as e:
        create_backbone("sladkit_vit_96_p8", role="student", image_size=32, weights=str(path))
    message = str(e.value)
    assert re.search(r"\(192(, 192)?\) in the file, \(96(, 96)?\) in the model", message), message
    assert "are the student and teacher weight files swapped?" in message

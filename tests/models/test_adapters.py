"""Shared LoRA: the student's adapters are views of the teacher's (docs/method.md)."""

from __future__ import annotations

import copy

import pytest
import torch

from sladkit.errors import ConfigError
from sladkit.models.adapters import LoraLinear, add_lora, add_shared_lora, layer_map, lora_layers, merge_lora
from sladkit.models.backbones import create_backbone

D_T, D_S, R = 192, 96, 4


def _pair(targets=("qkv",), share="ab", teacher_depth=2, student_depth=2, mode="even"):
    torch.manual_seed(0)
    kw = {"init_values": 1.0}
    teacher = create_backbone(
        "sladkit_vit_192_p8",
        role="teacher",
        image_size=32,
        pretrained=False,
        kwargs={**kw, "depth": teacher_depth},
    )
    student = create_backbone(
        "sladkit_vit_96_p8",
        role="student",
        image_size=32,
        pretrained=False,
        kwargs={**kw, "depth": student_depth},
    )
    bases = copy.deepcopy(teacher), copy.deepcopy(student)
    t_adapters = add_lora(teacher, targets=list(targets), rank=R, alpha=8.0)
    s_adapters = add_shared_lora(
        student,
        t_adapters,
        targets=list(targets),
        rank=R,
        alpha=8.0,
        share=share,
        mapping=layer_map(mode, student_depth, teacher_depth),
    )
    return teacher, student, t_adapters, s_adapters, bases


def _randomise(adapters):
    with torch.no_grad():
        for layer in adapters.values():
            for p in (layer.lora_A, layer.lora_B):
                if p is not None:
                    p.normal_(std=0.1)


def test_initial_models_compute_exactly_their_base_function():
    teacher, student, _, _, (base_t, base_s) = _pair(targets=("qkv", "proj", "fc1", "fc2"))
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(teacher(x), base_t(x))
    assert torch.equal(student(x), base_s(x))


def test_student_owns_no_shared_parameter():
    teacher, student, _, s_adapters, _ = _pair()
    names = [n for n, _ in student.named_parameters()]
    assert not any("lora" in n for n in names)  # share=ab: both factors live in the teacher
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert all(id(p) not in teacher_ids for p in student.parameters())
    assert all(layer.share_a and layer.share_b for layer in s_adapters.values())


def test_qkv_block_slicing_equals_hand_computed_delta():
    _, _, t_adapters, s_adapters, _ = _pair()
    _randomise(t_adapters)
    t, s = t_adapters["blocks.1.attn.qkv"], s_adapters["blocks.1.attn.qkv"]
    a, b = t.lora_A.detach(), t.lora_B.detach()  # (r, D_t), (3 D_t, r)
    rows = torch.cat([torch.arange(k * D_T, k * D_T + D_S) for k in range(3)])  # q, k, v: first D_s rows each
    expected = (8.0 / R) * b[rows] @ a[:, :D_S]  # (3 D_s, D_s)
    assert torch.allclose(s.delta_weight(), expected, atol=1e-6)
    # the naive slice B_t[:3 D_s] mixes q and k, and differs
    assert not torch.allclose(s.delta_weight(), (8.0 / R) * b[: 3 * D_S] @ a[:, :D_S])
    # with equal head size this is "the first H_s heads" of each of q, k, v
    delta_t = t.delta_weight().unflatten(0, (3, D_T))  # (3, D_t, D_t)
    assert torch.allclose(s.delta_weight().unflatten(0, (3, D_S)), delta_t[:, :D_S, :D_S], atol=1e-6)


@pytest.mark.parametrize(
    "target, shape", [("proj", (D_S, D_S)), ("fc1", (4 * D_S, D_S)), ("fc2", (D_S, 4 * D_S))]
)
def test_other_targets_slice_their_first_rows_and_columns(target, shape):
    _, _, t_adapters, s_adapters, _ = _pair(targets=(target,))
    _randomise(t_adapters)
    name = f"blocks.0.{'attn' if target == 'proj' else 'mlp'}.{target}"
    t_delta = t_adapters[name].delta_weight()
    s_delta = s_adapters[name].delta_weight()
    assert s_delta.shape == shape
    assert torch.allclose(s_delta, t_delta[: shape[0], : shape[1]], atol=1e-6)


def test_student_loss_gradient_lands_on_the_teachers_shared_entries():
    teacher, student, t_adapters, _, _ = _pair()
    _randomise(t_adapters)
    student(torch.randn(2, 3, 32, 32)).pow(2).mean().backward()
    t = t_adapters["blocks.0.attn.qkv"]
    assert t.lora_A.grad is not None and t.lora_A.grad[:, :D_S].abs().sum() > 0
    assert t.lora_A.grad[:, D_S:].abs().sum() == 0  # columns the student never reads
    grad_b = t.lora_B.grad.unflatten(0, (3, D_T))  # (3, D_t, r)
    assert grad_b[:, :D_S].abs().sum() > 0
    assert grad_b[:, D_S:].abs().sum() == 0
    assert all(p.grad is None for n, p in teacher.named_parameters() if "lora" not in n)


def test_changing_a_shared_teacher_entry_changes_the_student_output():
    _, student, t_adapters, _, _ = _pair()
    _randomise(t_adapters)
    x = torch.randn(2, 3, 32, 32)
    before = student(x).detach()
    with torch.no_grad():
        t_adapters["blocks.0.attn.qkv"].lora_B[2 * D_T + 3, 0] += 1.0  # a row of v inside the student's slice
    assert not torch.allclose(student(x), before)
    with torch.no_grad():
        after = student(x).detach()
        t_adapters["blocks.0.attn.qkv"].lora_B[2 * D_T + D_S + 3, 0] += 1.0  # a row of v outside the slice
    assert torch.equal(student(x), after)


@pytest.mark.parametrize(
    "share, owns_a, owns_b",
    [("ab", False, False), ("a", False, True), ("b", True, False), ("none", True, True)],
)
def test_share_modes_decide_which_factors_the_student_owns(share, owns_a, owns_b):
    _, student, _, s_adapters, _ = _pair(share=share)
    layer = s_adapters["blocks.0.attn.qkv"]
    assert (layer.lora_A is not None) == owns_a
    assert (layer.lora_B is not None) == owns_b
    assert layer.share_a == (not owns_a) and layer.share_b == (not owns_b)


@pytest.mark.parametrize(
    "mode, student_depth, teacher_depth, expected",
    [
        ("even", 12, 24, [2 * i + 1 for i in range(12)]),
        ("first", 12, 24, list(range(12))),
        ("last", 12, 24, list(range(12, 24))),
        ("even", 6, 6, list(range(6))),
        ("even", 4, 6, [1, 2, 4, 5]),
        ("even", 3, 12, [3, 7, 11]),
    ],
)
def test_layer_maps(mode, student_depth, teacher_depth, expected):
    assert layer_map(mode, student_depth, teacher_depth) == expected


def test_layer_map_rejects_unknown_mode_and_deeper_student():
    with pytest.raises(ConfigError, match="unknown layer map 'middle'"):
        layer_map("middle", 2, 4)
    with pytest.raises(ConfigError, match="more blocks"):
        layer_map("even", 6, 4)


def test_depth_mismatch_pairs_student_blocks_with_mapped_teacher_blocks():
    _, _, t_adapters, s_adapters, _ = _pair(teacher_depth=4, student_depth=2, mode="last")
    assert s_adapters["blocks.0.attn.qkv"].source is t_adapters["blocks.2.attn.qkv"]
    assert s_adapters["blocks.1.attn.qkv"].source is t_adapters["blocks.3.attn.qkv"]


def test_merge_gives_plain_linears_with_the_same_outputs():
    teacher, student, t_adapters, _, _ = _pair(targets=("qkv", "fc2"))
    _randomise(t_adapters)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected_t, expected_s = teacher(x), student(x)
        merge_lora(student)
        merge_lora(teacher)
        assert not lora_layers(student) and not lora_layers(teacher)
        assert torch.allclose(student(x), expected_s, atol=1e-5)
        assert torch.allclose(teacher(x), expected_t, atol=1e-5)


def test_student_wider_than_teacher_is_refused():
    small = torch.nn.Linear(8, 24)
    big = torch.nn.Linear(16, 48)
    source = LoraLinear(small, rank=2, alpha=2, blocks=3)
    with pytest.raises(ConfigError, match="wider than the teacher"):
        LoraLinear(big, rank=2, alpha=2, blocks=3, source=source, share_a=True, share_b=True)

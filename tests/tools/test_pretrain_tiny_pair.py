"""tools/pretrain_tiny_pair.py: a --smoke run, its outputs, and resuming after an interruption."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sladkit.data.pretext import FAMILIES

TOOL = Path(__file__).resolve().parents[2] / "tools" / "pretrain_tiny_pair.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("pretrain_tiny_pair", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoke_args(tmp: Path, *extra: str) -> list[str]:
    return ["--smoke", "--no-progress", "--run", str(tmp / "run"), "--export", str(tmp / "weights"), *extra]


def test_smoke_run_writes_metrics_weights_and_curves(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TOOL), *smoke_args(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]
    for key in ("teacher_acc", "student_acc", "teacher_patch_acc", "token_cosine", "loss_teacher"):
        assert all(isinstance(r[key], float) for r in rows)
    assert set(rows[-1]["teacher_family_acc"]) <= set(FAMILIES)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    teacher = load_file(tmp_path / "weights" / "sladkit_vit_192_p8.safetensors")
    student = load_file(tmp_path / "weights" / "sladkit_vit_96_p8.safetensors")
    assert teacher["cls_token"].shape[-1] == 192 and student["cls_token"].shape[-1] == 96
    assert all(v.dtype == torch.float16 for v in [*teacher.values(), *student.values()])
    assert not any(k.startswith(("head", "patch_head", "project")) for k in teacher)  # backbones only
    # a second run into the same folder is refused, nothing overwritten
    again = subprocess.run([sys.executable, str(TOOL), *smoke_args(tmp_path)], capture_output=True, text=True)
    assert again.returncode != 0 and "--resume" in again.stderr


def test_resume_after_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    tool = load_tool()
    tool.main(smoke_args(tmp_path / "straight"))

    save = tool.save_checkpoint

    def save_then_die(folder, step, *args):
        save(folder, step, *args)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(tool, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        tool.main(smoke_args(tmp_path / "resumed"))
    monkeypatch.setattr(tool, "save_checkpoint", save)
    with pytest.raises(SystemExit, match="differ"):
        tool.main(smoke_args(tmp_path / "resumed", "--resume", "--lr", "0.1"))
    tool.main(smoke_args(tmp_path / "resumed", "--resume"))
    for name in ("sladkit_vit_192_p8", "sladkit_vit_96_p8"):
        a = load_file(tmp_path / "straight" / "weights" / f"{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "weights" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "resumed" / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [3, 6]


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        load_tool().main(smoke_args(tmp_path, "--resume"))


def test_export_only_writes_the_checkpoint_backbones_and_touches_no_run_file(tmp_path):
    tool = load_tool()
    tool.main(smoke_args(tmp_path))
    run = tmp_path / "run"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    tool.main([*smoke_args(tmp_path), "--export-only", "--export", str(tmp_path / "again"), "--lr", "0.5"])
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for name in ("sladkit_vit_192_p8", "sladkit_vit_96_p8"):
        a = load_file(tmp_path / "weights" / f"{name}.safetensors")
        b = load_file(tmp_path / "again" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_stage_starts_from_the_first_stages_backbones(tmp_path, monkeypatch):
    tool = load_tool()
    tool.main(smoke_args(tmp_path / "one"))
    first = tmp_path / "one" / "weights"
    loaded = {}
    init = tool.init_backbones

    def spy(folder, teacher, student, device):
        init(folder, teacher, student, device)
        loaded.update({k: v.clone() for k, v in teacher.backbone.state_dict().items()})

    monkeypatch.setattr(tool, "init_backbones", spy)
    tool.main(smoke_args(tmp_path / "two", "--init", str(first), "--seed", "1"))
    start = load_file(first / "sladkit_vit_192_p8.safetensors")
    assert all(torch.equal(loaded[k], start[k].float()) for k in start)  # training started from stage one
    end = load_file(tmp_path / "two" / "weights" / "sladkit_vit_192_p8.safetensors", device="cpu")
    assert not all(torch.equal(end[k], start[k]) for k in start)  # and moved on from there
    with pytest.raises(SystemExit, match="--init: .* not found"):
        tool.main(smoke_args(tmp_path / "three", "--init", str(tmp_path / "nowhere")))


def test_teacher_only_moves_the_teacher_and_exports_the_student_unchanged(tmp_path):
    tool = load_tool()
    tool.main(smoke_args(tmp_path / "one"))
    first = tmp_path / "one" / "weights"
    tool.main(smoke_args(tmp_path / "two", "--init", str(first), "--seed", "1", "--teacher-only"))
    for name, moved in (("sladkit_vit_192_p8", True), ("sladkit_vit_96_p8", False)):
        start = load_file(first / f"{name}.safetensors")
        end = load_file(tmp_path / "two" / "weights" / f"{name}.safetensors")
        assert all(torch.equal(end[k], start[k]) for k in start) is not moved
    with pytest.raises(SystemExit, match="--teacher-only .* pass --init"):
        tool.main(smoke_args(tmp_path / "three", "--teacher-only"))
    assert not (tmp_path / "three").exists()  # refused before anything is written

"""`sladkit.train.run`: every method end to end, the run-folder contract, PEFT adapters, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sladkit.train import run
from sladkit.train.methods import METHODS


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_writes_the_run_folder(tiny_config, method):
    config = tiny_config(method=method, epochs=1, teacher_epochs=1)
    result = run(config)
    out = Path(config.out)
    for name in (
        "config.json",
        "labels.txt",
        "metrics.jsonl",
        "checkpoints/last/model.safetensors",
        "checkpoints/last/optimizer.pt",
        "checkpoints/last/state.json",
        "checkpoints/best/state.json",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "config.json").read_text())
    assert saved["method"]["name"] == method
    assert saved["labels"] == (out / "labels.txt").read_text().splitlines()
    assert saved["transforms"]["image_size"] == saved["image_size"] == 32
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stages = len(METHODS[method].stages)
    assert len(records) == 1 + stages  # before training, then one per epoch and stage
    assert records[0]["epoch"] == 0 and 0.0 <= records[0]["cka"] <= 1.0
    assert {"loss", "lr", "images_per_s", "elapsed_s", "student_acc", "teacher_acc", "cka"} <= set(
        records[-1]
    )
    assert result.student is not None and 0.0 <= result.student <= 100.0
    assert (result.teacher is None) == (method == "student-only")
    assert set(result.stage_seconds) == {s.name for s in METHODS[method].stages}
    has_teacher_lora = METHODS[method].teacher_adapter
    assert (out / "adapters/teacher/adapter_model.safetensors").exists() == has_teacher_lora
    assert (out / "adapters/student/adapter_model.safetensors").exists()


def test_slad_student_checkpoint_holds_no_adapter_of_its_own(tiny_config):
    config = tiny_config(epochs=1)
    run(config)
    state = load_file(Path(config.out) / "checkpoints/last/model.safetensors")
    assert any(k.startswith("teacher.backbone.") and "lora_A" in k for k in state)
    assert not any(k.startswith("student.") and "lora_" in k for k in state)  # views of the teacher's


def test_segmentation_trains_and_reports_miou(tiny_config):
    result = run(tiny_config(task="seg", epochs=1))
    assert result.metric == "miou" and 0.0 <= result.student <= 100.0
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["labels"][0] == "background" and saved["num_classes"] >= 5


def test_peft_loads_the_saved_adapters_onto_the_timm_models(tiny_config):
    from peft import PeftModel

    from sladkit.models.backbones import create_backbone
    from sladkit.models.pair import create_pair
    from sladkit.train import checkpoint as ckpt

    config = tiny_config(epochs=2, share="ab", targets="qkv,fc1")
    run(config)
    out = Path(config.out)
    trained = create_pair(
        config, num_classes=15, image_size=32, teacher_adapter=True, shared=True, student_ft=False
    )
    ckpt.load_model_state(out / "checkpoints/last", trained)
    trained.eval()
    x = torch.randn(4, 3, 32, 32)
    for role in ("teacher", "student"):
        plain = create_backbone(
            getattr(config, role),
            role=role,
            image_size=32,
            pretrained=False,
            kwargs=getattr(config, f"{role}_kwargs"),
        )
        base = {
            k.removeprefix(f"{role}.backbone."): v
            for k, v in trained.state_dict().items()
            if k.startswith(f"{role}.backbone.") and "lora_" not in k
        }
        plain.load_state_dict({k.replace(".base.", "."): v for k, v in base.items()})
        with torch.no_grad():
            without_adapters = plain.eval().forward_features(x)
            peft_model = PeftModel.from_pretrained(plain, out / "adapters" / role).eval()
            expected = getattr(trained, role).backbone.forward_features(x)
            got = peft_model.base_model.model.forward_features(x)
        assert not torch.allclose(without_adapters, expected, atol=1e-4), "training changed nothing"
        assert torch.allclose(got, expected, atol=1e-5), role


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sladkit",
        "train",
        "--out",
        str(out),
        "--no-progress",
        "--teacher-kwargs",
        '{"depth": 2, "init_values": 1.0}',
        "--student-kwargs",
        '{"depth": 2, "init_values": 1.0}',
        "--synthetic-train",
        "256",
        "--synthetic-val",
        "64",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--rank",
        "4",
        "--no-pretrained",
        "--lora-dropout",
        "0.1",
        *extra,
    ]


def test_resume_after_a_kill_reaches_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = killed / "checkpoints/last/state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = json.loads(state_file.read_text())["epoch"]
    assert 1 <= interrupted_at < 4, "the run must be killed before it finished"

    done = subprocess.run(_train_cmd(killed, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    a = load_file(reference / "checkpoints/last/model.safetensors")
    b = load_file(killed / "checkpoints/last/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    epochs = [json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4]  # no record lost or repeated

"""`sladkit` through click's CliRunner: options, one-line errors, nothing written on bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sladkit.cli import cli
from sladkit.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY = [
    "--teacher-kwargs", '{"depth": 2, "init_values": 1.0}',
    "--student-kwargs", '{"depth": 2, "init_values": 1.0}',
    "--synthetic-train", "64", "--synthetic-val", "32", "--epochs", "1", "--batch-size", "32", "--rank", "2",
    "--no-progress", "--no-pretrained",
]  # fmt: skip


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_every_config_field_is_a_cli_option():
    help_text = invoke("train", "--help").output
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    for method in ("slad", "joint-lora", "lora-kd", "ft-kd", "lp-kd", "student-only"):
        assert method in help_text


def test_help_does_not_import_torch():
    code = (
        "import sys; from sladkit.cli import cli; cli(['train', '--help'], standalone_mode=False); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_train_prints_student_and_teacher_accuracy(tmp_path):
    result = invoke("train", "--out", str(tmp_path / "run"), *TINY)
    assert result.exit_code == 0, result.output
    assert "student acc" in result.output and "teacher acc" in result.output
    assert json.loads((tmp_path / "run/config.json").read_text())["train"]["rank"] == 2


def test_resume_takes_the_saved_options(tmp_path):
    out = str(tmp_path / "run")
    assert invoke("train", "--out", out, *TINY).exit_code == 0
    result = invoke("train", "--out", out, "--resume")  # no other option: the saved ones are used
    assert result.exit_code == 0, result.output
    result = invoke("train", "--out", out, "--resume", "--rank", "8")
    assert result.exit_code == 1
    assert "options differ from the saved run (rank: 2 -> 8)" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "distill"], "Invalid value for '--method'"),
        (["--share", "abc"], "Invalid value for '--share'"),
        (["--layer-map", "middle"], "Invalid value for '--layer-map'"),
        (
            ["--teacher", "vit_bse_patch16_224"],
            "unknown teacher model 'vit_bse_patch16_224'; did you mean vit_base_patch16_224",
        ),
        (
            ["--teacher", "sladkit_vit_96_p8", "--student", "sladkit_vit_192_p8"],
            "swap --teacher and --student",
        ),
        (["--student", "vit_small_patch14_dinov2", "--no-pretrained", "--image-size", "28"], "patch size"),
        (
            ["--teacher-weights", "missing.safetensors"],
            "missing.safetensors' does not exist",
        ),
        (["--data", "no/such/folder"], "no/such/folder"),
        (["--targets", "qkv,mlp"], "unknown LoRA target"),
        (["--rank", "0"], "--rank must be >= 1 (got 0)"),
        (["--hflip", "1.5"], "--hflip must be in [0, 1] (got 1.5)"),
        (["--teacher-kwargs", "{depth: 2}"], "not JSON"),
        (["--student-adapt", "ft"], "does not apply to slad"),
        (["--resume", "--overwrite"], "contradict"),
        (["--devices", "4"], "--devices 4 asks for 4 CUDA GPUs, but"),
        (["--devices", "2", "--device", "cuda:1"], "--device cuda:1 picks one GPU"),
        (
            ["--devices", "2", "--device", "cpu", "--dist-backend", "nccl"],
            "--dist-backend nccl needs CUDA GPUs; use --dist-backend gloo",
        ),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA GPU"),
        (["--accumulate", "3"], "--batch-size 32 cannot be split evenly over 1 process(es) x --accumulate 3"),
        (["--nnodes", "2", "--node-rank", "2"], "--node-rank must be in [0, --nnodes=2)"),
        (["--cache-teacher"], "--cache-teacher needs --no-augment"),
        (["--cache-teacher", "--no-augment"], "--cache-teacher needs a method whose teacher is frozen"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = invoke("train", *TINY, "--out", str(out), *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_an_occupied_out_folder_is_refused_and_left_intact(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", "--out", str(out), *TINY).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = invoke("train", "--out", str(out), *TINY, "--rank", "4")
    assert result.exit_code == 1
    assert (
        "already holds a run folder; pass --overwrite to replace it or --resume to continue it"
        in result.output
    )
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert invoke("train", "--out", str(out), *TINY, "--rank", "4", "--overwrite").exit_code == 0
    assert json.loads((out / "config.json").read_text())["train"]["rank"] == 4


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from sladkit.train import loop

    calls = {"n": 0}
    real = loop.task_loss

    def poisoned(logits, target):  # 2 steps an epoch, 2 task losses a step: step 4 goes NaN
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] >= 7 else loss

    monkeypatch.setattr(loop, "task_loss", poisoned)
    out = tmp_path / "run"
    result = invoke("train", "--out", str(out), *TINY, "--epochs", "2")
    assert result.exit_code == 1
    assert "the loss became nan at step 4 (stage joint, epoch 2)" in result.output
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert state["epoch"] == 1  # the good epoch-1 checkpoint is kept


def test_sigint_finishes_the_step_writes_a_checkpoint_and_exits_75(tmp_path, monkeypatch):
    import os
    import signal

    from sladkit.train import loop

    train_step = loop.Trainer.train_step

    def interrupted(self, stage, model, optimizer, scaler, micro_batches, seed, progress):
        if progress.global_step == 0:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the first step
        return train_step(self, stage, model, optimizer, scaler, micro_batches, seed, progress)

    monkeypatch.setattr(loop.Trainer, "train_step", interrupted)
    out = tmp_path / "run"
    result = invoke("train", "--out", str(out), *TINY, "--batch-size", "16")
    assert result.exit_code == 75
    assert result.output.strip().splitlines()[-1] == (
        "interrupted at step 1; checkpoint written; continue with --resume"
    )
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert (state["epoch"], state["epoch_step"], state["interrupted"]) == (0, 1, True)
    monkeypatch.undo()
    result = invoke("train", "--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "student acc" in result.output


def test_torchrun_workers_get_options_that_rebuild_the_config():
    from sladkit.cli import train
    from sladkit.train.distributed import train_args

    config = TrainConfig(
        teacher_kwargs={"depth": 2}, image_size=48, lr_head=3e-5, augment=False, precision="bf16",
        devices=2, device="cpu", out="runs/x", resume=True,
    )  # fmt: skip
    context = train.make_context("train", train_args(config))
    assert TrainConfig(**context.params) == config


def test_multi_node_options_reach_torchrun():
    from torch.distributed.run import get_args_parser

    from sladkit.train.distributed import torchrun_args

    config = TrainConfig(
        devices=4, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400, batch_size=64, out="r"
    )
    args = get_args_parser().parse_args(torchrun_args(config))
    assert (args.nnodes, args.node_rank, args.master_addr, args.master_port) == ("2", 1, "10.0.0.1", 29400)
    assert str(args.nproc_per_node) == "4" and not args.standalone
    assert (
        args.module
        and args.training_script == "sladkit"
        and args.training_script_args[:3]
        == [
            "train",
            "--task",
            "cls",
        ]
    )
    single = get_args_parser().parse_args(torchrun_args(TrainConfig(devices=2, out="r")))
    assert single.standalone  # one node: a free local port


def test_help_names_each_numbers_allowed_range():
    text = " ".join(invoke("train", "--help").output.split())
    assert "Learning rate of the heads. Allowed: > 0." in text
    assert "Allowed: in [0, 1]" in text  # a probability (--hflip)

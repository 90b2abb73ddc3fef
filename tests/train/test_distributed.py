"""Several processes on the CPU (torchrun, gloo): DDP gradients and weights equal one process's, a stop
signal mid-epoch then `--resume` equals the uninterrupted run, a failing rank is named.

Every test starts real processes, each with a timeout, on the tiny models; about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sladkit.train import run
from sladkit.train.interrupt import INTERRUPTED_EXIT_CODE

HERE = Path(__file__).parent
TIMEOUT = 180  # seconds per launch: far above the ~15 s it takes, far below a hung CI job
# 256 images in steps of 16: 16 steps an epoch, 32 in all. Augmentation is on (reseeded per image);
# LoRA dropout stays 0 since its masks depend on how a batch is split over processes.
OPTIONS = {
    "teacher_kwargs": {"depth": 2, "init_values": 1.0},
    "student_kwargs": {"depth": 2, "init_values": 1.0},
    "synthetic_train": 256,
    "synthetic_val": 32,
    "epochs": 2,
    "batch_size": 16,
    "rank": 4,
    # qkv alone: with all four targets (the default) these 32 steps from random weights amplify the
    # last-bit differences to ~2e-3 (measured), while one step's gradients still agree to ~6e-8
    # (test_ddp_gradients_..., which covers all four targets); on qkv the drift stays ~1e-6.
    "targets": "qkv",
    "pretrained": False,
    "progress": False,
    "device": "cpu",
}
# One process against two, same global batch: DDP averages two half-batch gradients where one process
# takes the mean over the whole batch, so the float32 sums differ in their last bits (~1e-7 after 32
# steps here); 1e-5 leaves room for other CPUs' summation orders while any real difference in the
# batches, the loss scaling or the gradient averaging moves weights by 1e-3 or more.
TOLERANCE = 1e-5


def _args(out: Path, **changes) -> list[str]:
    from sladkit.config import TrainConfig
    from sladkit.train.distributed import train_args

    return train_args(TrainConfig(**{**OPTIONS, "out": str(out), **changes}))


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop("SLADKIT_LAUNCHED", None)
    return env


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints/last/model.safetensors")


def _records(out: Path) -> list[dict]:
    skip = {"images_per_s", "elapsed_s"}  # wall-clock numbers
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in skip} for line in lines]


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory) -> Path:
    """The reference: `torchrun --nproc-per-node 2 -m sladkit train ...` (torchrun by hand)."""
    out = tmp_path_factory.mktemp("torchrun") / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*cmd, "-m", "sladkit", "train", *_args(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done in") == 1  # rank 0 alone reports
    return out


def test_ddp_gradients_of_shared_lora_equal_one_process_gradients(tmp_path):
    out = tmp_path / "grads.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*cmd, str(HERE / "_ddp_grads.py"), str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["registered"] == result["unique"] == result["trainable"]  # each parameter once
    assert result["shared"], "the teacher's adapters are what the student shares"
    assert result["scale"] > 1e-3
    worst = max(result["diff"].values())
    assert worst < 1e-6 * max(1.0, result["scale"]), result["diff"]


def test_two_processes_reach_the_weights_of_one_process_with_the_same_global_batch(torchrun_run, tmp_path):
    from sladkit.config import TrainConfig

    run(TrainConfig(**{**OPTIONS, "out": str(tmp_path / "one")}))
    one, two = _weights(tmp_path / "one"), _weights(torchrun_run)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=0, atol=TOLERANCE), key
    trained = [k for k in one if "lora_B" in k]
    assert trained and all(one[k].abs().max() > 1e-3 for k in trained), "training changed the adapters"
    config = json.loads((torchrun_run / "config.json").read_text())
    assert config["train"]["batch_size"] == 16  # the global batch, split 8 + 8


def test_sigterm_mid_epoch_then_resume_under_ddp_reaches_the_same_weights(torchrun_run, tmp_path):
    out = tmp_path / "run"
    launcher = [sys.executable, "-m", "sladkit", "train"]
    # Rank 0 sends SIGTERM to the launcher (as a job scheduler would) before step 21 of 32 (epoch 2);
    # torchrun forwards it to both workers, which finish their step, checkpoint and exit.
    injected = _env(PYTHONPATH=str(HERE / "_inject"), SLADKIT_TEST_SIGNAL="21:SIGTERM")
    stopped = subprocess.run(
        [*launcher, *_args(out, devices=2)], env=injected, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert stopped.returncode == INTERRUPTED_EXIT_CODE, stopped.stderr[-3000:]
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line.startswith("interrupted at step ") and last_line.endswith(
        "; checkpoint written; continue with --resume"
    )
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert state["interrupted"] and state["epoch"] == 1 and 0 < state["epoch_step"] < 16
    assert (
        last_line == f"interrupted at step {state['global_step']}; checkpoint written; continue with --resume"
    )

    resumed = subprocess.run(
        [*launcher, "--out", str(out), "--resume"],  # the saved options, --devices 2 included
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"+ {state['epoch_step']} steps" in resumed.stderr
    expected, got = _weights(torchrun_run), _weights(out)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key  # bit for bit: same layout, same seeds
    assert _records(out) == _records(torchrun_run)  # losses averaged over the interrupted epoch too


def test_a_failing_rank_stops_the_others_and_is_named(tmp_path):
    out = tmp_path / "run"
    injected = _env(PYTHONPATH=str(HERE / "_inject"), SLADKIT_TEST_FAIL="1:20")  # rank 1, epoch 2
    done = subprocess.run(
        [sys.executable, "-m", "sladkit", "train", *_args(out, devices=2)],
        env=injected,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: rank 1 failed: injected failure before step 20; the other ranks were")
    assert "the last checkpoint" in last_line and "is intact" in last_line
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert state["epoch"] == 1 and state["epoch_step"] == 0 and not state["interrupted"]
    assert _weights(out)  # the epoch-1 checkpoint still loads

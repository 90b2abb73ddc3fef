"""Hostile input that could destroy work: `--overwrite`, `--resume`, two writers, damaged checkpoints.

Each row runs the command the way a careless or unlucky user would, and checks that it stops with one
line saying what was wrong, exits non-zero, and leaves every file that existed byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from sladkit.cli import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY = [
    "--teacher-kwargs", '{"depth": 2, "init_values": 1.0}',
    "--student-kwargs", '{"depth": 2, "init_values": 1.0}',
    "--synthetic-train", "64", "--synthetic-val", "32", "--epochs", "1", "--batch-size", "32", "--rank", "2",
    "--no-progress", "--no-pretrained",
]  # fmt: skip
EXPORT_FAST = ["--target", "cpu", "--precision", "fp32", "--eval-images", "16"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def world(tmp_path, run_dir):
    """A workspace: a run folder, a dataset, a bundle-free parent with an unrelated file, a weights file."""
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / "run")
    (runs / "notes.txt").write_text("unrelated work")
    data = tmp_path / "data"
    for label in ("a", "b"):
        (data / "train" / label).mkdir(parents=True)
        (data / "val" / label).mkdir(parents=True)
    from PIL import Image

    for i in range(8):
        for split in ("train", "val"):
            label = "ab"[i % 2]
            Image.new("RGB", (32, 32), (200 * (i % 2), 40 * i, 0)).save(data / split / label / f"{i}.png")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("months of work")
    weights = runs / "run" / "teacher.safetensors"
    shutil.copy(next((runs / "run" / "checkpoints" / "best").glob("*.safetensors")), weights)
    return {
        "root": tmp_path,
        "run": runs / "run",
        "runs": runs,
        "data": data,
        "foreign": foreign,
        "w": weights,
    }


CASES = [
    # export: --overwrite may replace only a bundle, never the run it reads or a folder holding it
    ("export {run} --out {run} --overwrite", "holds {run}, an input of this command"),
    ("export {run} --out {runs} --overwrite", "holds {run}, an input of this command"),
    ("export {run} --out {foreign} --overwrite", "holds files that are not a sladkit bundle"),
    ("export {run} --out {foreign}", "holds files that are not a sladkit bundle"),
    ("export {run} --out {run}/bundle", "lies inside {run}, an input of this command"),
    # train: --overwrite may replace only a run folder, never the data or the weights
    ("train --data {data} --out {data} --overwrite", "holds {data}, an input of this command"),
    ("train --data {data} --out {root} --overwrite", "holds {data}, an input of this command"),
    ("train --data {data} --out {data}/run", "lies inside {data}, an input of this command"),
    ("train --out {runs} --overwrite", "holds files that are not a sladkit run folder"),
    ("train --out {foreign} --overwrite", "holds files that are not a sladkit run folder"),
    ("train --out {run}", "already holds a run folder; pass --overwrite to replace it or --resume"),
    ("train --teacher-weights {w} --out {run} --overwrite", "holds {w}, an input of this command"),
]


@pytest.mark.parametrize("command, message", CASES, ids=[c[0] for c in CASES])
def test_nothing_is_deleted(world, command, message):
    paths = {k: str(v) for k, v in world.items()}
    args = command.format(**paths).split()
    if args[0] == "train":
        args += TINY
    else:
        args += EXPORT_FAST
    before = snapshot(world["root"])
    result = invoke(*args)
    assert result.exit_code != 0, result.output
    assert message.format(**paths) in result.output, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert snapshot(world["root"]) == before  # nothing deleted, nothing changed, nothing added
    assert not list(world["root"].rglob(".*.lock"))


def test_overwrite_replaces_a_bundle_and_a_run_folder(world, tmp_path):
    bundle = tmp_path / "bundle"
    old = os.umask(0o022)
    try:
        assert invoke("export", world["run"], "--out", bundle, *EXPORT_FAST).exit_code == 0
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in [bundle, *bundle.iterdir()]} <= {"0o755", "0o644"}
    (tmp_path / ".bundle.x1.tmp").mkdir()  # what a killed export leaves
    result = invoke("export", world["run"], "--out", bundle, *EXPORT_FAST)
    assert result.exit_code == 1 and "already holds a bundle; pass --overwrite" in result.output
    assert invoke("export", world["run"], "--out", bundle, *EXPORT_FAST, "--overwrite").exit_code == 0
    assert not (tmp_path / ".bundle.x1.tmp").exists()
    # a bundle is not a run folder, and the other way round
    result = invoke("train", "--out", bundle, *TINY, "--overwrite")
    assert result.exit_code == 1 and "not a sladkit run folder" in result.output
    result = invoke("export", world["run"], "--out", world["run"], "--overwrite", *EXPORT_FAST)
    assert result.exit_code == 1
    run2 = tmp_path / "run2"
    assert invoke("train", "--out", run2, *TINY).exit_code == 0
    assert invoke("train", "--out", run2, *TINY, "--rank", "4", "--overwrite").exit_code == 0
    assert json.loads((run2 / "config.json").read_text())["train"]["rank"] == 4


def test_resume_without_a_checkpoint_state_is_refused(world):
    run = world["run"]
    (run / "checkpoints" / "last" / "state.json").unlink()
    before = snapshot(run)
    result = invoke("train", "--out", run, "--resume")
    assert result.exit_code == 1
    assert f"cannot resume {run}: {run}/checkpoints/last/state.json is missing" in result.output
    assert snapshot(run) == before  # metrics history and checkpoints untouched


def test_a_second_writer_stops_naming_the_first(world, tmp_path):
    from sladkit._outdir import locked

    out = tmp_path / "busy"
    with locked(out, "train"):
        lock = tmp_path / ".busy.lock"
        assert f"pid {os.getpid()}" in lock.read_text()
        result = invoke("train", "--out", out, *TINY)
        assert result.exit_code == 1
        assert f"{out} is being written by sladkit train (pid {os.getpid()}" in result.output
        result = invoke("export", world["run"], "--out", out, *EXPORT_FAST)
        assert result.exit_code == 1 and "is being written by sladkit train" in result.output
        assert not out.exists()
    assert not lock.exists()  # released and removed
    assert invoke("train", "--out", out, *TINY).exit_code == 0
    assert not lock.exists()


def _interrupted_run(tmp_path, monkeypatch) -> Path:
    from sladkit.train import loop

    train_step = loop.Trainer.train_step

    def interrupted(self, stage, model, optimizer, scaler, micro_batches, seed, progress):
        if progress.global_step == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return train_step(self, stage, model, optimizer, scaler, micro_batches, seed, progress)

    monkeypatch.setattr(loop.Trainer, "train_step", interrupted)
    out = tmp_path / "run"
    assert invoke("train", "--out", out, *TINY, "--batch-size", "16").exit_code == 75
    monkeypatch.undo()
    return out


def test_a_damaged_optimizer_state_offers_a_safe_way_on(tmp_path, monkeypatch):
    out = _interrupted_run(tmp_path, monkeypatch)
    optimizer = out / "checkpoints" / "last" / "optimizer.pt"
    optimizer.write_bytes(b"\x80\x04not a torch file")
    before = snapshot(out)
    result = invoke("train", "--out", out, "--resume")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert "is damaged" in line and f"sladkit export {out} --checkpoint last" in line
    assert "--overwrite" not in line and "weights_only" not in line
    assert snapshot(out) == before
    optimizer.rename(tmp_path / "optimizer.pt.bad")  # the way on that the message offers
    result = invoke("train", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming with a fresh optimizer state" in result.output


def test_a_run_trained_with_relative_paths_exports_from_anywhere(world, tmp_path, monkeypatch):
    monkeypatch.chdir(world["root"])
    assert invoke("train", "--data", "data", "--out", "fresh", *TINY).exit_code == 0
    saved = json.loads((world["root"] / "fresh" / "config.json").read_text())
    assert saved["train"]["data"] == str(world["data"])  # absolute, as the run folder is read from anywhere
    assert (
        invoke("train", "--data", "data", "--out", "fresh", "--resume").exit_code == 0
    )  # still the same run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("export", world["root"] / "fresh", "--out", "bundle", *EXPORT_FAST)
    assert result.exit_code == 0, result.output


def test_resume_on_data_with_other_classes_is_refused(world, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--data", world["data"], "--out", run, *TINY).exit_code == 0
    for split in ("train", "val"):  # a third class, added after training
        (world["data"] / split / "c").mkdir()
        shutil.copy(next((world["data"] / split / "a").iterdir()), world["data"] / split / "c" / "x.png")
    before = snapshot(run)
    result = invoke("train", "--out", run, "--resume")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the data's classes (3: a, b, c) are not the run's (2: a, b)" in result.output
    assert snapshot(run) == before

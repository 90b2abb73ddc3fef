"""Training logs: metrics.csv beside metrics.jsonl, TensorBoard scalars, progress lines outside a terminal,
and --early-stop."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest

from sladkit.errors import MissingDependencyError
from sladkit.train import run


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_csv_holds_the_jsonl_records_and_lines_report_progress_outside_a_terminal(tiny_config, capsys):
    config = tiny_config(epochs=2, log_every=1, progress=True)  # 96 images / batch 32: 3 steps an epoch
    run(config)
    out = Path(config.out)
    expected = records(out)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(expected) == 3  # before training, then one per epoch
    for row, record in zip(rows, expected, strict=True):
        assert all(row[k] == str(v) for k, v in record.items())
    lines = [line for line in capsys.readouterr().err.splitlines() if " step " in line]
    assert lines[0].startswith("joint epoch 1/2 step 1/3  loss ") and lines[0].endswith(" img/s")
    assert len(lines) == 6


def test_tensorboard_gets_every_number_of_every_record(tiny_config, monkeypatch):
    calls = []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is not installed here)
        def __init__(self, log_dir, purge_step=None):
            calls.append(("open", Path(log_dir).name, purge_step))

        def add_scalar(self, tag, value, global_step):
            calls.append((tag, value, global_step))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setattr("sladkit.train.logs.require", lambda module, extra: None)
    monkeypatch.setattr("sladkit.train.pipeline.require", lambda module, extra: None)
    config = tiny_config(epochs=2, tensorboard=True)
    run(config)
    assert calls[0] == ("open", "tensorboard", 0) and calls[-1] == ("close",)
    last = records(Path(config.out))[-1]
    assert ("student_acc", last["student_acc"], last["step"]) in calls
    assert ("loss", last["loss"], last["step"]) in calls
    assert not any(c[0] in ("stage", "epoch", "step") for c in calls)


def test_tensorboard_without_the_package_is_one_line_before_anything_is_written(tiny_config):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:  # absent from the dev install: the user's case
        pytest.skip("tensorboard is installed here")
    config = tiny_config(tensorboard=True)
    with pytest.raises(MissingDependencyError, match=r"pip install 'sladkit\[tensorboard\]'"):
        run(config)
    assert not Path(config.out).exists()


def test_early_stop_ends_the_stage_when_the_student_stops_improving(tiny_config, monkeypatch, capsys):
    from sladkit.train import loop

    scores = iter([10.0, 50.0, 40.0, 45.0, 60.0, 70.0])  # before training, then epochs 1..5
    evaluate = loop.Trainer.evaluate

    def scripted(self, stage):
        metrics = evaluate(self, stage)
        metrics["student_acc"] = next(scores)
        return metrics

    monkeypatch.setattr(loop.Trainer, "evaluate", scripted)
    config = tiny_config(epochs=5, early_stop=2)
    result = run(config)
    epochs = [r["epoch"] for r in records(Path(config.out))]
    assert epochs == [0, 1, 2, 3]  # best at epoch 1, no better in 2 and 3: stop
    assert result.best_student == 50.0 and result.best_epoch == 1
    assert (
        "early stop: student acc has not improved for 2 epochs (best 50.0 at epoch 1)"
        in capsys.readouterr().err
    )


def test_an_image_size_off_the_patch_grid_is_warned_about(tiny_config, capsys):
    run(tiny_config(epochs=1, image_size=36))  # patch 8
    assert (
        "warning: --image-size 36 is not a multiple of the patch size 8: the patch embedding ignores the last "
        "4 pixel rows and columns; use 32 or 40" in capsys.readouterr().err
    )

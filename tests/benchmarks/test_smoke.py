"""Each benchmark's --smoke mode runs end to end (tiny random models, a few steps) and writes result files
of the expected structure into a temporary folder (never over the committed benchmarks/results)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

CASES = {
    # script: (extra arguments, top-level keys of the JSON, keys of each row)
    "methods": (
        ["--tasks", "cls"],
        {"machine", "command", "summary", "targets", "rows", "total_s"},
        {"group", "student", "teacher", "cka_before", "cka_after", "wall_s"},
    ),
    "train_speed": (
        [],
        {"machine", "command", "wall", "throughput", "targets", "runs"},
        {"method", "wall_s"},
    ),
    "inference": (
        [],
        {"machine", "command", "peaks", "models", "targets", "rows"},
        {"model", "form", "threads", "batch", "median_ms", "speedup_vs_torch", "fraction_of_peak"},
    ),
    "teacher_cache": (
        [],
        {"machine", "command", "summary", "runs"},
        {"method", "cache_teacher", "student_stage_s", "wall_s"},
    ),
    "quantization": (
        ["--tasks", "cls"],
        {"machine", "command", "targets", "rows"},
        {"task", "artifact", "calib", "fallback", "ok"},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_smoke(name, tmp_path):
    extra, keys, row_keys = CASES[name]
    subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--smoke", "--results", str(tmp_path), *extra],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert keys <= set(report), f"missing keys: {keys - set(report)}"
    assert report["args"]["smoke"] is True
    assert "loadavg_start" in report["machine"] and "loadavg_end" in report["machine"]
    rows = report.get("rows") or report.get("runs")
    assert rows and all(row_keys <= set(row) for row in rows)
    markdown = (tmp_path / f"{name}.md").read_text()
    assert "Smoke run" in markdown and "Command:" in markdown and "{SHARED_NOTE}" not in markdown


def test_methods_smoke_covers_every_method_and_ablation(tmp_path):
    """The full plan (built without training) has every method on both tasks and every ablation."""
    sys.path.insert(0, str(BENCHMARKS))
    import methods

    weights = tmp_path / "student.safetensors"  # the full plan cuts the student to depth 3: give it a file
    import torch
    from safetensors.torch import save_file

    save_file({"blocks.0.norm1.weight": torch.ones(2), "blocks.5.norm1.weight": torch.ones(2)}, str(weights))
    args = methods.parse_args(["--seeds", "1", "--student-weights", str(weights)])
    jobs = methods.plan(args, tmp_path)
    main = {(j["tags"]["task"], j["tags"]["method"]) for j in jobs if j["tags"]["group"] == "main"}
    assert main == {(t, m) for t in ("cls", "seg") for m in methods.METHODS}
    ablations = {
        (j["tags"]["ablation"], j["tags"]["value"]) for j in jobs if j["tags"]["group"] == "ablation"
    }
    assert {("share", s) for s in ("ab", "a", "b", "none")} <= ablations
    assert {("layer_map", m) for m in ("even", "first", "last")} <= ablations
    assert ("kd_into_teacher", "True") in ablations

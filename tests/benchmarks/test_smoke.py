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
        {"machine", "command", "summary", "paired", "tta_ratios", "targets", "rows", "total_s"},
        {"group", "student", "teacher", "cka_before", "cka_after", "wall_s", "train_s", "eval_s", "curve"},
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
    "cpu_int8": (
        [],
        {"machine", "command", "peaks", "rows", "targets"},
        {"model", "batch", "form", "median_ms", "speedup_vs_dynamic", "top1_agreement_vs_fp32"},
    ),
    "runtime_overhead": (
        [],
        {"machine", "command", "result"},
        None,  # one result, no rows
    ),
    "quantization": (
        ["--tasks", "cls", "--random-models", "tiny-random-32px"],
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
    assert row_keys is None or (rows and all(row_keys <= set(row) for row in rows))
    markdown = (tmp_path / f"{name}.md").read_text()
    assert "Smoke run" in markdown and "Command:" in markdown and "{SHARED_NOTE}" not in markdown
    if name == "methods":
        check_methods_statistics(report, markdown)
    if name == "cpu_int8":  # the openvino form is timed (openvino is in dev) with its FP32 reference
        forms = {r["form"] for r in rows}
        assert {"fp32", "ort-dynamic", "int8-cpu", "int8-openvino", "fp32-openvino"} <= forms
        assert report["machine"]["openvino"] and "artifact_form" in report
    if name == "runtime_overhead":
        assert all(report["result"][k] > 0 for k in ("bare_loop_ms", "preprocess_ms", "inference_b1_ms"))
    if name == "quantization":
        # the CPU row names the form auto kept; only the static form dequantizes (DequantizeLinear feeds)
        (cpu,) = [r for r in rows if r["artifact"].startswith("cpu-int8")]
        assert cpu["artifact"] == f"cpu-int8 ({cpu['form']})" and cpu["form"] in (
            "static",
            "dynamic",
            "openvino",
        )
        assert bool(cpu["dq_feeds"]) == (cpu["form"] in ("static", "openvino"))
        # the random-weight comparison: sladkit's Q/DQ model is one TensorRT takes
        (row,) = report["random_model_rows"]
        assert row["tensorrt_problems"] == 0 and 0 < row["softmax_amax"][0] <= row["softmax_amax"][1] <= 1
        assert row["softmax_amax"] == pytest.approx(row["softmax_max_seen"], abs=2e-4)  # max-calibrated
        assert 0 < row["agreement"] <= 100 and row["quantize_peak_mb"] > 0 and "Softmax amax" in markdown


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_methods_statistics(report: dict, markdown: str) -> None:
    """Confidence intervals over seeds, paired differences and time to accuracy are there, as numbers."""
    seeds = report["args"]["seeds"].get("cls", report["args"]["seeds"][""])
    assert seeds >= 2  # an interval needs two seeds
    for method, entry in report["summary"]["cls"].items():
        student = entry["student"]
        assert student["n"] == seeds, method
        assert all(_is_number(student[k]) for k in ("mean", "low", "high", "half_width")), method
        assert student["low"] <= student["mean"] <= student["high"]
        assert _is_number(entry["student_wilson_half_width"])
    for baseline, p in report["paired"]["cls"].items():
        assert set(p["student"]["diffs"]) == {str(s) for s in range(seeds)}, baseline  # JSON keys
        assert all(_is_number(v) for v in p["student"]["diffs"].values())
        assert all(_is_number(p["student"][k]) for k in ("mean", "low", "high", "half_width"))
        assert isinstance(p["verdict"], str)
    main = [r for r in report["rows"] if r["group"] == "main"]
    for row in main:
        assert _is_number(row["tta_threshold"])
        assert row["tta"] is None or all(_is_number(row["tta"][k]) for k in ("elapsed_s", "train_s"))
        assert 0 <= row["train_s"] <= row["curve"][-1]["elapsed_s"]
        assert 0 < row["student_wilson"]["half_width"] < 100
    for seed in range(seeds):  # the best final student reaches 95 % of itself
        runs = [r for r in main if r["seed"] == seed]
        best = max(runs, key=lambda r: r["student"])
        assert _is_number(best["tta"]["train_s"])
    ratios = report["tta_ratios"]["cls"]
    assert set(ratios) == {"lora-kd", "ft-kd", "lp-kd"}
    for r in ratios.values():
        assert all(_is_number(r["wall"][k]) for k in ("mean", "low", "high"))
        assert r["tta_train"] is None or _is_number(r["tta_train"]["mean"])
    assert any("time to accuracy <= 0.5x ft-kd" in t["target"] for t in report["targets"])
    assert "Paired differences" in markdown and "Time ratios" in markdown
    assert f"LoRA on {report['args']['targets']};" in markdown


def test_methods_smoke_covers_every_method_and_ablation(tmp_path):
    """The full plan (built without training) has every method on both tasks and every ablation."""
    sys.path.insert(0, str(BENCHMARKS))
    import _methods_plan
    import methods

    weights = tmp_path / "student.safetensors"  # the full plan cuts the student to depth 3: give it a file
    import torch
    from safetensors.torch import save_file

    save_file({"blocks.0.norm1.weight": torch.ones(2), "blocks.5.norm1.weight": torch.ones(2)}, str(weights))
    args = methods.parse_args(["--seeds", "1", "--student-weights", str(weights)])
    assert (args.seeds, args.val_images) == ({"": 1}, 2000) and methods.parse_args([]).seeds == {"": 5}
    jobs = _methods_plan.plan(args, tmp_path)
    main = {(j["tags"]["task"], j["tags"]["method"]) for j in jobs if j["tags"]["group"] == "main"}
    assert main == {(t, m) for t in ("cls", "seg") for m in _methods_plan.METHODS}
    ablations = {
        (j["tags"]["ablation"], j["tags"]["value"]) for j in jobs if j["tags"]["group"] == "ablation"
    }
    assert {("share", s) for s in ("ab", "a", "b", "none")} <= ablations
    assert {("layer_map", m) for m in ("even", "first", "last")} <= ablations
    assert ("kd_into_teacher", "True") in ablations
    args = methods.parse_args(["--seeds", "3,seg=2", "--student-weights", str(weights), "--no-ablations"])
    seeds = {}
    for j in _methods_plan.plan(args, tmp_path):
        seeds.setdefault(j["tags"]["task"], set()).add(j["tags"]["seed"])
    assert seeds == {"cls": {0, 1, 2}, "seg": {0, 1}}
    # --ablation-seeds: share/temperature/KD at every seed, share=ab only where no SLAD run stands for it,
    # the layer map at seed 0
    args = methods.parse_args(["--seeds", "2", "--student-weights", str(weights), "--ablation-seeds", "3"])
    runs = [j["tags"] for j in _methods_plan.plan(args, tmp_path) if j["tags"]["group"] == "ablation"]
    by_seed = {s: {(t["ablation"], t["value"]) for t in runs if t["seed"] == s} for s in (0, 1, 2)}
    assert ("share", "ab") in by_seed[0] and ("share", "ab") not in by_seed[1]  # SLAD cls seed 1 is it
    assert ("share", "ab") in by_seed[2] and ("temperature", "4.0") in by_seed[2]  # no SLAD cls seed 2
    assert all(t["seed"] == 0 for t in runs if t["ablation"] == "layer_map")
    with pytest.raises(SystemExit):
        methods.parse_args(["--ablation-seeds", "0"])
    assert methods.parse_args([]).name == "methods" and methods.parse_args(["--name", "m4"]).name == "m4"
    assert len({j["config"]["out"] for j in _methods_plan.plan(args, tmp_path)}) == len(
        _methods_plan.plan(args, tmp_path)
    )


def test_methods_resumes_finished_runs(tmp_path, monkeypatch):
    """A rerun with the same --work trains only what is missing or was configured differently."""
    sys.path.insert(0, str(BENCHMARKS))
    import _resume
    import methods

    trained = []

    def fake_train(job):
        trained.append(job["tags"]["method"])
        return {**job["tags"], "student": 1.0}

    monkeypatch.setattr(methods, "train_one", fake_train)
    jobs = [
        {"config": {"out": str(tmp_path / f"cls-{m}-0"), "epochs": 1}, "tags": {"method": m}} for m in "ab"
    ]
    rows, todo = _resume.resumed_rows(jobs, tmp_path / "rows", "salt")
    assert rows == [] and todo == jobs
    _resume.save_row(tmp_path / "rows", jobs[0], methods.train_one(jobs[0]), "salt")
    rows, todo = _resume.resumed_rows(jobs, tmp_path / "rows", "salt")
    assert [r["method"] for r in rows] == ["a"] and todo == [jobs[1]]
    changed = [{**jobs[0], "config": {**jobs[0]["config"], "epochs": 2}}]  # another configuration
    assert _resume.resumed_rows(changed, tmp_path / "rows", "salt")[1] == changed
    assert _resume.resumed_rows(jobs, tmp_path / "rows", "other weights")[0] == []
    (tmp_path / "rows" / "cls-a-0.json").write_text("{trunc")  # a damaged row file is run again
    assert _resume.resumed_rows(jobs, tmp_path / "rows", "salt")[1] == jobs
    with pytest.raises(SystemExit):
        methods.parse_args(["--seeds", "seg=2"])  # no default count


def test_methods_resume_from_an_earlier_report():
    """--resume-from keeps an earlier report's rows of planned runs only if weights and run options match."""
    sys.path.insert(0, str(BENCHMARKS))
    import _resume

    def job(method, seed):
        return {"config": {}, "tags": {"group": "main", "task": "cls", "method": method, "seed": seed}}

    jobs = [job("slad", 0), job("ft-kd", 0), job("slad", 1)]
    shas = {"teacher": "t", "student": "s"}
    args = {"epochs": 8, "val_images": 2000, "tasks": "cls,seg", "work": "/w2", "seeds": {"": 2}}
    report = {
        "weights_sha256": shas,
        "args": {"epochs": 8, "val_images": 2000, "tasks": "cls", "work": "/w1", "seeds": {"": 1}},
        "rows": [{**job(m, 0)["tags"], "student": 50.0} for m in ("slad", "ft-kd", "lp-kd")],
    }
    found, why = _resume.rows_from_report(report, jobs, args, shas)
    assert why is None and [(j["tags"]["method"], r["method"]) for j, r in found] == [
        ("slad",) * 2,
        ("ft-kd",) * 2,
    ]
    # ablation rows of reports made before --ablation-seeds carry no seed: they stand for seed 0
    abl = {"group": "ablation", "task": "cls", "ablation": "share", "value": "a"}
    old = {**report, "rows": [{**abl, "student": 40.0}]}
    found, _ = _resume.rows_from_report(old, [{"config": {}, "tags": {**abl, "seed": 0}}], args, shas)
    assert [r["student"] for _, r in found] == [40.0]
    assert _resume.rows_from_report(old, [{"config": {}, "tags": {**abl, "seed": 1}}], args, shas)[0] == []
    # a report made before --targets existed ran qkv: it stands for --targets qkv only
    assert _resume.rows_from_report(report, jobs, {**args, "targets": "qkv"}, shas)[1] is None
    found, why = _resume.rows_from_report(report, jobs, {**args, "targets": "qkv,proj,fc1,fc2"}, shas)
    assert found == [] and "--targets was qkv" in why
    found, why = _resume.rows_from_report(report, jobs, {**args, "val_images": 500}, shas)
    assert found == [] and "--val-images was 2000, not 500" in why
    found, why = _resume.rows_from_report(report, jobs, args, {**shas, "teacher": "other"})
    assert found == [] and "weights" in why


def test_methods_statistics_helpers():
    """The intervals methods.py reports, against textbook values (no scipy needed)."""
    sys.path.insert(0, str(BENCHMARKS))
    import _stats

    ci = _stats.mean_ci([1.0, 2.0, 3.0])  # t(0.975, 2) = 4.3027
    assert ci["mean"] == 2.0 and ci["half_width"] == pytest.approx(4.3027 / 3**0.5, abs=1e-3)
    assert _stats.t_critical(40) == pytest.approx(2.0211, abs=1e-3)  # beyond the table
    assert _stats.mean_ci([5.0])["low"] is None and _stats.mean_ci([]) is None
    diff = _stats.paired_ci({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.0, 1: 1.0, 2: 1.0, 3: 9.0})
    assert diff["diffs"] == {0: 1.0, 1: 1.0, 2: 3.0} and diff["n"] == 3  # seed 3 has no partner
    w = _stats.wilson(20.0, 100)  # 20 of 100: Wilson 95 % = [13.34, 28.88] %
    assert (w["low"], w["high"]) == (pytest.approx(13.34, abs=0.01), pytest.approx(28.88, abs=0.01))
    assert _stats.verdict(diff, better="b", worse="w").startswith("not resolved")


def test_shared_note_tells_other_jobs_from_the_benchmarks_own_threads():
    sys.path.insert(0, str(BENCHMARKS))
    import _common

    def note(start, end):
        return _common.shared_note({"cores": 2, "loadavg_start": [start, 0, 0], "loadavg_end": [end, 0, 0]})

    assert note(0.03, 1.9).startswith("No other jobs")  # a 2-thread benchmark's own load at the end
    assert "shared with other jobs" in note(1.5, 1.0)  # something ran before it started
    assert "shared with other jobs" in note(0.2, 3.1)  # more than its 2 cores' worth at the end


def test_methods_ablations_paired_with_the_default_run_of_their_seed():
    """ablation − default per seed: the SLAD cls row of the seed, else the share=ab ablation row of it."""
    sys.path.insert(0, str(BENCHMARKS))
    import _methods_report

    def row(student, seed, **tags):
        return {"task": "cls", "student": student, "teacher": student + 5, "seed": seed, **tags}

    rows = [row(70.0 + s, s, group="main", method="slad") for s in (0, 1)]
    rows += [row(71.0, 2, group="ablation", ablation="share", value="ab")]  # seed 2's default
    share_a = (72.0, 74.0, 75.0)  # default + 2, 3, 4 points
    rows += [row(v, s, group="ablation", ablation="share", value="a") for s, v in enumerate(share_a)]
    legacy = row(69.0, None, group="ablation", ablation="temperature", value="4.0")
    del legacy["seed"]  # a row made before --ablation-seeds: seed 0
    rows += [legacy, row(1.0, 0, group="ablation", ablation="layer_map", value="last")]
    pairs = _methods_report.ablation_paired(rows)
    assert set(pairs) == {"share=a", "temperature=4.0"}  # share=ab is the default; layer maps not paired
    diff = pairs["share=a"]["student_diff"]
    assert diff["diffs"] == {0: 2.0, 1: 3.0, 2: 4.0} and diff["mean"] == 3.0 and diff["low"] > 0
    assert pairs["share=a"]["verdict"] == "better" and pairs["share=a"]["seeds"] == [0, 1, 2]
    assert pairs["temperature=4.0"]["student_diff"]["diffs"] == {0: -1.0}
    assert pairs["temperature=4.0"]["verdict"].startswith("not resolved")


def test_methods_compare_with_pairs_this_slad_with_an_earlier_file(tmp_path):
    """--compare-with: this run's SLAD − each method of the earlier file, per task and seed it shares."""
    sys.path.insert(0, str(BENCHMARKS))
    import _methods_report

    def row(method, seed, student, wall):
        return {
            "group": "main",
            "task": "cls",
            "method": method,
            "seed": seed,
            "student": student,
            "wall_s": wall,
        }

    earlier = [row("ft-kd", s, 80.0 + s, 100.0) for s in (0, 1, 2)] + [row("slad", 0, 70.0, 50.0)]
    here = [row("slad", s, 82.0 + s + 0.1 * s, 120.0) for s in (0, 1, 3)]  # seed 3: not in the earlier file
    compared = _methods_report.compare(here, earlier, "earlier.json")
    ft = compared["tasks"]["cls"]["ft-kd"]
    assert ft["student"]["diffs"] == {0: 2.0, 1: pytest.approx(2.1)} and ft["student"]["low"] > 0
    assert ft["verdict"] == "this SLAD better" and ft["wall_ratio"]["mean"] == pytest.approx(1.2)
    assert compared["tasks"]["cls"]["slad"]["student"]["diffs"] == {0: 12.0}


def test_methods_compare_with_a_bad_file_is_one_line_before_any_training(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import methods

    (tmp_path / "notes.md").write_text("not json")
    (tmp_path / "other.json").write_text('{"name": "inference"}')
    cases = {
        "missing.json": "cannot read it as JSON",
        "notes.md": "cannot read it as JSON",
        "other.json": "no list",
    }
    for name, words in cases.items():
        with pytest.raises(SystemExit, match=words) as e:
            methods.main(["--smoke", "--compare-with", str(tmp_path / name), "--work", str(tmp_path / "w")])
        assert str(e.value).startswith(f"error: --compare-with {tmp_path / name}: ")
    assert not (tmp_path / "w").exists()  # nothing planned or trained


def test_methods_set_passes_train_options_to_every_run(tmp_path, capsys):
    """--set KEY=VALUE: a TrainConfig field for every planned run (JSON values); a wrong key is one error."""
    sys.path.insert(0, str(BENCHMARKS))
    import _methods_plan
    import _resume
    import methods

    args = methods.parse_args(["--set", "lambda_kd=0", "--set", "pool=cls", "--smoke"])
    assert args.train_options == {"lambda_kd": 0, "pool": "cls"}
    args.seeds, args.tasks, args.methods, args.ablations = {"": 1}, "cls", "slad,ft-kd", False
    args.train_images, args.val_images = 8, 8
    assert all(
        j["config"]["lambda_kd"] == 0 and j["config"]["pool"] == "cls"
        for j in _methods_plan.plan(args, tmp_path)
    )
    # a report made without --set cannot stand for runs with it
    earlier = {"weights_sha256": None, "args": {"targets": "qkv"}, "rows": []}
    assert "train-options" in _resume.rows_from_report(earlier, [], vars(args), None)[1]
    with pytest.raises(SystemExit):
        methods.parse_args(["--set", "no_such_field=1"])
    assert "--set no_such_field=1: expected KEY=VALUE" in capsys.readouterr().err


def test_real_data_smoke(tmp_path):
    """real_data.py --smoke: one real dataset (scikit-learn's digits, a 200-image subset), every model."""
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "real_data.py"), "--smoke", "--results", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((tmp_path / "real_data.json").read_text())
    keys = {"machine", "command", "datasets", "skipped", "rows", "targets", "total_s"}
    assert keys <= set(report), f"missing keys: {keys - set(report)}"
    assert report["args"]["smoke"] is True
    assert "loadavg_start" in report["machine"] and "loadavg_end" in report["machine"]
    (name,) = report["datasets"]
    assert report["datasets"][name]["version"] and report["datasets"][name]["install"]
    models = {row["model"] for row in report["rows"]}
    assert models == {"logreg", "cnn", "probe-teacher", "probe-student", "slad-student", "slad-teacher"}
    for row in report["rows"]:
        assert {"dataset", "model", "acc", "ci95", "n", "wall_s"} <= set(row)
        assert row["ci95"][0] <= row["acc"] <= row["ci95"][1] and row["n"] == report["datasets"][name]["val"]
    assert {t["target"].split(": ", 1)[1] for t in report["targets"]} == {
        "SLAD student beats logistic regression on raw pixels",
        "SLAD teacher beats the SLAD student",
    }
    markdown = (tmp_path / "real_data.md").read_text()
    assert "Smoke run" in markdown and "Command:" in markdown and "{SHARED_NOTE}" not in markdown


def test_recipe_smoke(tmp_path):
    """recipe.py --smoke --search: two recipes, the embedded default (cls, seg) and the probes."""
    subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "recipe.py"),
            "--smoke",
            "--search",
            "--recipes",
            "default,lr 1e-2/1e-2",
            "--results",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((tmp_path / "recipe.json").read_text())
    search = [r for r in report["runs"] if r["part"] == "search"]
    assert {(r["task"], r["recipe"]) for r in search} >= {
        ("synthetic", "default"),
        ("synthetic", "lr 1e-2/1e-2"),
    }
    assert {r["task"] for r in report["runs"] if r["part"] == "default"} == {"cls", "seg"}
    assert all(isinstance(r["student"], float) and r["process_s"] > 0 for r in report["runs"])
    assert len(report["targets"]) == 4 and all(
        " met" in t or "missed" in t or "reported" in t for t in report["targets"]
    )
    assert {p["role"] for p in report["probes"]} == {"teacher", "student"}
    markdown = (tmp_path / "recipe.md").read_text()
    assert "Recipe search" in markdown and "embedded default" in markdown and "Linear probes" in markdown


def test_recipe_search_pairs_each_recipe_with_the_default_of_its_seed():
    """recipe.py --seeds: mean over seeds and recipe − default paired per seed, per task."""
    sys.path.insert(0, str(BENCHMARKS))
    import recipe

    def row(task, name, seed, student):
        return {
            "part": "search",
            "task": task,
            "recipe": name,
            "seed": seed,
            "student": student,
            "teacher": student + 1,
            "train_s": 10.0,
        }

    rows = [row("fashion-mnist", "default", s, 80.0 + s) for s in (0, 1, 2)]
    rows += [row("fashion-mnist", "16 epochs", s, 82.0 + s + 0.5 * s) for s in (0, 1, 2)]  # +2, +2.5, +3
    rows += [row("synthetic", "default", 0, 50.0), row("synthetic", "16 epochs", 0, 55.0)]  # one seed
    paired = recipe.search_paired(rows)
    assert {(e["task"], e["recipe"]) for e in paired} == {
        ("fashion-mnist", "default"),
        ("fashion-mnist", "16 epochs"),
    }
    longer = next(e for e in paired if e["recipe"] == "16 epochs")
    diff = longer["student_vs_reference"]
    assert diff["diffs"] == {0: 2.0, 1: 2.5, 2: 3.0} and diff["mean"] == 2.5 and diff["low"] > 0
    assert longer["seeds"] == 3 and longer["student"]["mean"] == 83.5
    lines = recipe.paired_markdown(paired)
    assert any("16 epochs" in line and "better" in line for line in lines)


def test_recipe_search_on_a_real_dataset_never_sees_its_val_split(tmp_path):
    """A real search task is the prepared train split alone; sladkit holds out --val-fraction of it."""
    sys.path.insert(0, str(BENCHMARKS))
    import recipe

    args = recipe.parse_args(["--smoke", "--search", "--tasks", "digits", "--seeds", "2"])
    data = recipe.search_data("digits", 1, args, tmp_path)
    view = Path(data["data"])
    assert data["val_fraction"] == 0.2 and [p.name for p in view.iterdir()] == ["train"]
    prepared = (view / "train").resolve().parent
    assert (prepared / "val").is_dir() and prepared.is_relative_to(tmp_path)  # smoke: not the cache
    with pytest.raises(SystemExit, match="unknown search task"):
        recipe.search_data("imagenet", 0, args, tmp_path)
    with pytest.raises(SystemExit):
        recipe.parse_args(["--seeds", "0"])

"""The methods benchmark's numbers and tables: confidence intervals, paired differences, time to accuracy.

`benchmarks/methods.py` trains the runs; this module turns their rows (one per run, with the learning
curve read from the run's metrics.jsonl) into `summary`, `paired`, `tta_ratios`, `targets` and the
Markdown report. Intervals come from `_stats` (95 %, Student t over seeds; Wilson for one accuracy).
"""

from __future__ import annotations

import _common
import _stats

PIPELINES = ("lora-kd", "ft-kd", "lp-kd")  # the two-stage methods, for time to accuracy


def time_to_accuracy(curve: list[dict], threshold: float) -> dict | None:
    """The first evaluation whose student metric reaches `threshold`: its stage, epoch and times."""
    for point in curve:
        if point["student"] is not None and point["student"] >= threshold:
            return {k: point[k] for k in ("stage", "epoch", "elapsed_s", "train_s")}
    return None


# ---------------------------------------------------------------------------------------- statistics
def add_time_to_accuracy(rows: list[dict], fraction: float) -> None:
    """Each main row gets `tta_threshold` and `tta` (None when never reached) for its task and seed."""
    groups: dict = {}
    for row in rows:
        if row["group"] == "main":
            groups.setdefault((row["task"], row["seed"]), []).append(row)
    for group in groups.values():
        finals = [r["student"] for r in group if r["student"] is not None]
        threshold = fraction * max(finals) if finals else None
        for row in group:
            row["tta_threshold"] = threshold
            row["tta"] = None if threshold is None else time_to_accuracy(row["curve"], threshold)


def _by_task(rows: list[dict]) -> dict:
    out: dict = {}
    for row in rows:
        if row["group"] == "main":
            out.setdefault(row["task"], {}).setdefault(row["method"], {})[row["seed"]] = row
    return out


def _tta(row: dict, key: str) -> float | None:
    return None if row.get("tta") is None else row["tta"][key]


def summarise(rows: list[dict]) -> dict:
    """Per task and method, over seeds: mean and 95 % t interval of every number (`_stats.mean_ci`)."""
    summary = {}
    for task, methods in _by_task(rows).items():
        summary[task] = {}
        for method, runs in methods.items():
            runs = list(runs.values())
            entry = {"seeds": len(runs)}
            for key in ("student", "teacher", "cka_before", "cka_after", "wall_s", "train_s", "eval_s"):
                entry[key] = _stats.mean_ci([r[key] for r in runs])
            entry["cka_drop_pct"] = _stats.mean_ci(
                [
                    100.0 * (r["cka_before"] - r["cka_after"]) / r["cka_before"]
                    for r in runs
                    if r["cka_before"] and r["cka_after"] is not None
                ]
            )
            entry["tta_train_s"] = _stats.mean_ci([_tta(r, "train_s") for r in runs])
            entry["tta_s"] = _stats.mean_ci([_tta(r, "elapsed_s") for r in runs])
            entry["tta_reached"] = sum(r.get("tta") is not None for r in runs)
            wilson = [r["student_wilson"]["half_width"] for r in runs if r.get("student_wilson")]
            entry["student_wilson_half_width"] = sum(wilson) / len(wilson) if wilson else None
            summary[task][method] = entry
    return summary


def paired(rows: list[dict]) -> dict:
    """Per task and baseline: SLAD − baseline per seed (student and teacher metric), with t intervals."""
    out = {}
    for task, methods in _by_task(rows).items():
        slad = methods.get("slad")
        if slad is None:
            continue
        out[task] = {}
        for baseline, runs in methods.items():
            if baseline == "slad":
                continue
            student = _stats.paired_ci(
                {s: r["student"] for s, r in slad.items()}, {s: r["student"] for s, r in runs.items()}
            )
            teacher = _stats.paired_ci(
                {s: r["teacher"] for s, r in slad.items()}, {s: r["teacher"] for s, r in runs.items()}
            )
            out[task][baseline] = {
                "student": student,
                "teacher": teacher,
                "verdict": _stats.verdict(student, better="SLAD better", worse="SLAD worse"),
                "resolves_1_point": None
                if student is None or student["half_width"] is None
                else student["half_width"] < 1.0,
            }
    return out


def ablation_paired(rows: list[dict]) -> dict:
    """Per ablation and value (cls): ablation − default SLAD per seed, student and teacher, with t intervals.

    The default run of a seed is the main SLAD cls row of that seed, else the `share=ab` ablation row of it
    (the same configuration). Rows made before `--ablation-seeds` carry no seed: they are seed 0.
    """
    default = dict(_by_task(rows).get("cls", {}).get("slad", {}))
    out: dict = {}
    for r in rows:
        if r["group"] != "ablation" or r["ablation"] in ("layer_map", "layer_map_student_only"):
            continue
        if r["ablation"] == "share" and r["value"] == "ab":  # the default configuration itself
            default.setdefault(r.get("seed", 0), r)
        else:
            out.setdefault(f"{r['ablation']}={r['value']}", {})[r.get("seed", 0)] = r
    pairs = {}
    for key, runs in out.items():
        entry = {"seeds": sorted(runs)}
        for metric in ("student", "teacher"):
            entry[metric] = _stats.mean_ci([r[metric] for r in runs.values()])
            entry[f"{metric}_diff"] = _stats.paired_ci(
                {s: r[metric] for s, r in runs.items()}, {s: r[metric] for s, r in default.items()}
            )
        entry["verdict"] = _stats.verdict(entry["student_diff"], better="better", worse="worse")
        pairs[key] = entry
    return pairs


def tta_ratios(rows: list[dict]) -> dict:
    """Per task and two-stage pipeline: SLAD / pipeline per seed (time to accuracy, total wall time)."""

    def ratios(slad: dict, other: dict, value) -> dict | None:
        per_seed = {}
        for seed, row in slad.items():
            if seed not in other:
                continue
            a, b = value(row), value(other[seed])
            if a is not None and b:  # b == 0: the pipeline met the threshold before training
                per_seed[seed] = a / b
        entry = _stats.mean_ci(list(per_seed.values()))
        return None if entry is None else {**entry, "per_seed": per_seed}

    out = {}
    for task, methods in _by_task(rows).items():
        if "slad" not in methods:
            continue
        out[task] = {}
        for pipeline in PIPELINES:
            if pipeline in methods:
                slad, other = methods["slad"], methods[pipeline]
                out[task][pipeline] = {
                    "tta_train": ratios(slad, other, lambda r: _tta(r, "train_s")),
                    "tta_with_eval": ratios(slad, other, lambda r: _tta(r, "elapsed_s")),
                    "wall": ratios(slad, other, lambda r: r["wall_s"]),
                    "reached": f"{sum(r.get('tta') is not None for r in slad.values())}/{len(slad)} slad, "
                    f"{sum(r.get('tta') is not None for r in other.values())}/{len(other)} {pipeline}",
                }
    return out


def compare(rows: list[dict], other_rows: list[dict], other_file, method: str = "slad") -> dict:
    """This run's `method` (SLAD, or a variant such as slad-lp: `--compare-method`) against every method of an
    earlier methods.json (`--compare-with`; its `other_rows`), per task: the paired student difference per
    seed and the per-seed ratio of total wall times."""
    other = _by_task(other_rows)
    out = {"file": str(other_file), "method": method, "tasks": {}}
    for task, methods in _by_task(rows).items():
        slad = methods.get(method)
        if slad is None or task not in other:
            continue
        out["tasks"][task] = {}
        for method, runs in other[task].items():
            student = _stats.paired_ci(
                {s: r["student"] for s, r in slad.items()}, {s: r["student"] for s, r in runs.items()}
            )
            wall = _stats.mean_ci([r["wall_s"] / runs[s]["wall_s"] for s, r in slad.items() if s in runs])
            out["tasks"][task][method] = {
                "student": student,
                "wall_ratio": wall,
                "verdict": _stats.verdict(student, better="this SLAD better", worse="this SLAD worse"),
            }
    return out


def targets(summary: dict, pairs: dict, ratios: dict) -> list[dict]:
    """The issue's targets with the numbers behind them; `met` None means the interval does not decide."""

    def decided(ci) -> bool | None:
        if ci is None or ci["low"] is None:
            return None
        return True if ci["low"] > 0 else False if ci["high"] < 0 else None

    checks = []
    for task, baselines in pairs.items():
        for baseline, p in baselines.items():
            if p["student"] is None:
                continue
            per_seed = ", ".join(f"{v:+.2f}" for v in p["student"]["diffs"].values())
            checks.append(
                {
                    "target": f"{task}: SLAD student > {baseline} student (paired over seeds)",
                    "met": decided(p["student"]),
                    "detail": f"SLAD − {baseline} = {_stats.interval_text(p['student'])} points (95 % CI, "
                    f"{p['student']['n']} seeds; per seed {per_seed}): {p['verdict']}",
                }
            )
        lora = baselines.get("lora-kd", {}).get("teacher")
        if lora is not None:
            checks.append(
                {
                    "target": f"{task}: SLAD teacher > lora-kd teacher (paired over seeds)",
                    "met": decided(lora),
                    "detail": f"SLAD − lora-kd = {_stats.interval_text(lora)} points: "
                    + _stats.verdict(lora, better="SLAD better", worse="SLAD worse"),
                }
            )
    for task, methods in summary.items():
        drops = {m: methods.get(m, {}).get("cka_drop_pct") for m in ("ft-kd", "lora-kd", "slad")}
        if None not in drops.values():
            checks.append(
                {
                    "target": f"{task}: CKA drop ft-kd > lora-kd > slad (means over seeds)",
                    "met": drops["ft-kd"]["mean"] > drops["lora-kd"]["mean"] > drops["slad"]["mean"],
                    "detail": ", ".join(
                        f"{m} {_stats.interval_text(v, 1, False)} %" for m, v in drops.items()
                    ),
                }
            )
    for task, pipelines in ratios.items():
        ft = pipelines.get("ft-kd")
        if ft is None:
            continue
        r = ft["tta_train"]
        if r is None:
            checks.append(
                {
                    "target": f"{task}: SLAD time to accuracy <= 0.5x ft-kd's",
                    "met": False,
                    "detail": f"no seed where both reached the threshold ({ft['reached']})",
                }
            )
            continue
        where = (
            "" if r["high"] is None else " (CI entirely below 0.5)" if r["high"] <= 0.5
            else " (CI entirely above 0.5)" if r["low"] > 0.5 else " (CI includes 0.5)"
        )  # fmt: skip
        checks.append(
            {
                "target": f"{task}: SLAD time to accuracy <= 0.5x ft-kd's (training time, evaluations excluded)",
                "met": r["mean"] <= 0.5,
                "detail": f"slad/ft-kd = {_stats.interval_text(r, 2, False)}{where}; per seed "
                + ", ".join(f"{v:.2f}" for v in r["per_seed"].values())
                + f"; with evaluations {_stats.interval_text(ft['tta_with_eval'], 2, False)}; "
                f"total wall time {_stats.interval_text(ft['wall'], 2, False)}; reached: {ft['reached']}",
            }
        )
    return checks


# ---------------------------------------------------------------------------------------- report
def _pm(entry: dict | None, digits: int = 1) -> str:
    """mean ± CI half-width (95 %)."""
    if entry is None:
        return "–"
    if entry["half_width"] is None:
        return f"{entry['mean']:.{digits}f} (n=1)"
    return f"{entry['mean']:.{digits}f} ± {entry['half_width']:.{digits}f}"


def seeds_of(args: dict, task: str) -> int:
    """The number of seeds `task` ran with (`args["seeds"]`: {"": default, task: count})."""
    return args["seeds"].get(task, args["seeds"][""])


def _seeds_text(args: dict) -> str:
    """`0-11 (cls), 0-4 (seg)`: each task's seeds."""
    parts = []
    for task in args["tasks"].split(","):
        n = seeds_of(args, task)
        parts.append(f"{'0' if n == 1 else f'0–{n - 1}'} ({task})")
    return ", ".join(parts)


def markdown(report: dict) -> list[str]:
    a = report["args"]
    lines = _common.report_header(
        "Methods: SLAD against the baselines, with 95 % confidence intervals", report
    )
    lines += [
        f"Command: `{report['command']}`. Seeds {_seeds_text(a)}; {a['epochs']} epochs per stage; LoRA on "
        f"{a.get('targets', 'qkv')}; "
        f"synthetic tasks: {a['train_images']} training images, {a['val_images']} (cls) / "
        f"{a['seg_val_images']} (seg) validation images; pair: {report['pair']}. Total benchmark time "
        f"{report['total_s'] / 60:.1f} min ({a['jobs']} parallel run(s), {a['threads'] or 'default'} torch "
        "thread(s) each).",
        "",
    ]
    if report.get("resumed"):
        lines += [
            f"**{report['resumed']} of {len(report['rows'])} runs were resumed** from `--work`'s saved rows: "
            "they were trained by an earlier invocation, so the total time and the load above are this "
            "invocation's, not theirs (see the notes below).",
            "",
        ]
    lines += [
        "All metrics in percent: top-1 accuracy (cls, real datasets), mIoU (seg). **± is the 95 % confidence "
        "interval of the mean over seeds** (Student t, n − 1 degrees of freedom; every seed draws its own "
        "scenes or split and initialisation, the same for every method). *one run ±*: the Wilson 95 % "
        "interval of a single run's accuracy on its validation images (evaluation noise alone; not for "
        "mIoU). CKA: linear CKA of pooled teacher/student features on the validation set, drop = "
        "(before − after) / before. Wall s: the whole run (models, data, every stage, evaluation, "
        "checkpoints); eval s: the per-epoch evaluations within it.",
        "",
        f"**Time to accuracy** (TTA): threshold = {a['tta_fraction']:.0%} of the best final student metric "
        "of all methods for the same task and seed; a method's TTA is the training time (per-epoch "
        "evaluations excluded; metrics.jsonl's `elapsed_s` minus each epoch's evaluation) at the end of the "
        "first epoch whose evaluation reaches it, from the start of its first stage (a two-stage pipeline's "
        "teacher stage included). *with eval*: the same point in `elapsed_s`, evaluations included. Mean "
        "over the seeds that reached it.",
        "",
    ]
    for task, methods in report["summary"].items():
        metric = "mIoU %" if task == "seg" else "top-1 %"
        first = next(r for r in report["rows"] if r["group"] == "main" and r["task"] == task)
        lines += [
            f"## {task}",
            "",
            f"{first['train_images']} training / {first['val_images']} validation images per seed"
            + ("" if task == "seg" else f" (one validation image = {100 / first['val_images']:.2f} points)")
            + ".",
            "",
            f"| method | student {metric} | one run ± | teacher {metric} | CKA before → after | CKA drop % "
            "| wall s | eval s | TTA s | TTA with eval s | reached |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, e in methods.items():
            one = e["student_wilson_half_width"]
            lines.append(
                f"| {method} | {_pm(e['student'])} | {'–' if one is None else f'± {one:.1f}'} "
                f"| {_pm(e['teacher'])} | {_pm(e['cka_before'], 3)} → {_pm(e['cka_after'], 3)} "
                f"| {_pm(e['cka_drop_pct'])} | {_pm(e['wall_s'], 0)} | {_pm(e['eval_s'], 0)} "
                f"| {_pm(e['tta_train_s'], 0)} | {_pm(e['tta_s'], 0)} | {e['tta_reached']}/{e['seeds']} |"
            )
        lines.append("")
        pairs = report["paired"].get(task, {})
        if pairs:
            lines += [
                f"Paired differences SLAD − baseline ({task}, points, mean [95 % CI] over seeds):",
                "",
                "| baseline | student Δ | per seed | CI half-width < 1 point | teacher Δ | verdict (student) |",
                "|---|---|---|---|---|---|",
            ]
            for baseline, p in pairs.items():
                seeds = (
                    "–"
                    if p["student"] is None
                    else ", ".join(f"{v:+.2f}" for v in p["student"]["diffs"].values())
                )
                res = {True: "yes", False: "no", None: "–"}[p["resolves_1_point"]]
                lines.append(
                    f"| {baseline} | {_stats.interval_text(p['student'])} | {seeds} | {res} | {_stats.interval_text(p['teacher'])} "
                    f"| {p['verdict']} |"
                )
            lines.append("")
        ratios = report["tta_ratios"].get(task, {})
        if ratios:
            lines += [
                f"Time ratios SLAD / two-stage pipeline ({task}, mean [95 % CI] of the per-seed ratios):",
                "",
                "| pipeline | TTA (training time) | per seed | TTA with eval | total wall time | reached |",
                "|---|---|---|---|---|---|",
            ]
            for pipeline, r in ratios.items():
                seeds = (
                    "–"
                    if r["tta_train"] is None
                    else ", ".join(f"{v:.2f}" for v in r["tta_train"]["per_seed"].values())
                )
                lines.append(
                    f"| {pipeline} | {_stats.interval_text(r['tta_train'], 2, False)} | {seeds} "
                    f"| {_stats.interval_text(r['tta_with_eval'], 2, False)} | {_stats.interval_text(r['wall'], 2, False)} | {r['reached']} |"
                )
            lines.append("")
    abl = [r for r in report["rows"] if r["group"] == "ablation" and r.get("seed", 0) == 0]
    if abl:
        lines += [
            "## Ablations (cls, SLAD, seed 0)",
            "",
            "One run each: ± is the Wilson interval of the single run. Layer-map rows use the depth-mismatched "
            "pair (teacher depth 6, student = first 3 blocks of the pretrained depth-6 student); "
            "`layer_map_student_only` is that student trained alone, for reference.",
            "",
            "| ablation | value | student | teacher | CKA before → after | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for r in abl:
            teacher = "–" if r["teacher"] is None else f"{r['teacher']:.1f}"
            w = r.get("student_wilson")
            student = f"{r['student']:.1f}" + (f" ± {w['half_width']:.1f}" if w else "")
            lines.append(
                f"| {r['ablation']} | {r['value']} | {student} | {teacher} "
                f"| {r['cka_before']:.3f} → {r['cka_after']:.3f} | {r['wall_s']:.0f} |"
            )
        lines.append("")
    multi = {k: e for k, e in report.get("ablation_paired", {}).items() if len(e["seeds"]) > 1}
    if multi:
        lines += [
            "## Ablations over seeds (cls, SLAD): ablation − default, paired per seed",
            "",
            "Each ablation run is paired with the default SLAD run of its seed (same scenes, split and "
            "initialisation; `--share ab`, temperature 1, no KD into the teacher). Points, mean over seeds "
            "[95 % t interval].",
            "",
            "| ablation | seeds | student % | teacher % | student − default | teacher − default | student verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, e in multi.items():
            lines.append(
                f"| {key} | {len(e['seeds'])} | {_pm(e['student'])} | {_pm(e['teacher'])} "
                f"| {_stats.interval_text(e['student_diff'])} | {_stats.interval_text(e['teacher_diff'])} | {e['verdict']} |"
            )
        lines.append("")
    if report["targets"]:
        lines += ["## Targets", "", "| target | met | numbers |", "|---|---|---|"]
        word = {True: "yes", False: "**no**", None: "not resolved"}
        for t in report["targets"]:
            lines.append(f"| {t['target']} | {word[t['met']]} | {t['detail']} |")
        lines.append("")
    compared = report.get("compared")
    if compared:
        method = compared.get("method", "slad")
        lines += [
            f"## This run's {method} against `{compared['file']}`, paired per seed",
            "",
            f"{method} here ({a['epochs']} epochs) − each method there, student, points, mean [95 % CI] over the "
            f"seeds both have (the same task, seed, data and initialisation); wall: this {method}'s total wall "
            "time / theirs, per seed (the two files ran at different loads: a rough guide).",
            "",
            "| task | method there | student Δ | per seed | wall ratio | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for task, methods in compared["tasks"].items():
            for method, c in methods.items():
                diffs = c["student"]["diffs"] if c["student"] else {}
                lines.append(
                    f"| {task} | {method} | {_stats.interval_text(c['student'])} | "
                    + ", ".join(f"{d:+.2f}" for d in diffs.values())
                    + f" | {_stats.interval_text(c['wall_ratio'], sign=False)} | {c['verdict']} |"
                )
        lines.append("")
    if report.get("notes"):
        lines += ["## Reading", "", *report["notes"], ""]
    return lines

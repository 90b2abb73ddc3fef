"""The paper's comparison, small: SLAD against the five baselines, plus ablations.

Pair: sladkit's tiny "foundation" pair (teacher sladkit_vit_192_p8, student sladkit_vit_96_p8, depth 6,
patch 8, 32 px), pretrained on the 60-class synthetic pretext task (shape x texture x hue), loaded from
its weight files through `--teacher-weights/--student-weights` with `--no-pretrained`, like a user's
checkpoint. `--pretrain` rebuilds the files first with `tools/pretrain_tiny_pair.py`.

Downstream, with limited labels (`--train-images`, default 800):
  cls  the synthetic 15-class task, shape x texture: it drops the pretext's hue from the label (so its
       classes are unions of pretext classes) and renders new scenes (another seed stream).
  seg  synthetic scenes with 1-3 objects and per-pixel masks, 5 shape classes + background (mIoU): a task
       and a layout the pretext never had.
Every method of `sladkit train --method` on both tasks with `--seeds` seeds: student and teacher metric,
CKA before and after training, total wall time. Ablations (classification, seed 0): `--share`,
`--layer-map` with a depth-mismatched pair, the temperature and KD into the teacher.

Depth mismatch: the pretraining tool makes depth-6 models only, so the mismatched pair is the depth-6
teacher and a depth-3 student made of the first 3 blocks of the pretrained student (its final norm kept).
This is NOT a student pretrained at depth 3 in the same family; it is what fits the time. See the README.

Run:  .venv/bin/python benchmarks/methods.py            (full: 3 seeds, both tasks, ablations)
      .venv/bin/python benchmarks/methods.py --smoke --results /tmp/r
Writes <results>/methods.json and .md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

METHODS = ("slad", "joint-lora", "lora-kd", "ft-kd", "lp-kd", "student-only")
WEIGHTS = _common.ROOT / "sladkit" / "models" / "weights"
TEACHER, STUDENT = "sladkit_vit_192_p8", "sladkit_vit_96_p8"
SMOKE_KWARGS = {"depth": 2, "init_values": 1.0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds per method and task (0..N-1)")
    p.add_argument("--epochs", type=int, default=8, help="epochs (per stage for two-stage methods)")
    p.add_argument("--train-images", type=int, default=800, help="labelled training images per task")
    p.add_argument("--val-images", type=int, default=500, help="validation images per task")
    p.add_argument("--tasks", default="cls,seg")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    p.add_argument("--teacher-weights", type=Path, default=WEIGHTS / f"{TEACHER}.safetensors")
    p.add_argument("--student-weights", type=Path, default=WEIGHTS / f"{STUDENT}.safetensors")
    p.add_argument(
        "--pretrain",
        action="store_true",
        help="rebuild the pair with tools/pretrain_tiny_pair.py first (into the work folder)",
    )
    p.add_argument("--pretrain-epochs", type=int, default=9, help="teacher epochs with --pretrain")
    p.add_argument("--pretrain-student-epochs", type=int, default=25, help="student epochs with --pretrain")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs in parallel (processes); with 2 on 2 cores, use --threads 1. Wall times are then per "
        "process and comparable only with each other",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    p.add_argument("--work", type=Path, default=None, help="folder for the run folders (default: a temp dir)")
    p.add_argument("--reduced", default=None, help="label the results as reduced, with this reason")
    return p.parse_args(argv)


def _init_worker(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def train_one(job: dict) -> dict:
    """One `sladkit.train.run` (in a worker process); returns the numbers of its TrainResult."""
    from sladkit.config import TrainConfig
    from sladkit.train import run

    t0 = time.perf_counter()
    result = run(TrainConfig(**job["config"]))
    return {
        **job["tags"],
        "student": result.student,
        "teacher": result.teacher,
        "best_student": result.best_student,
        "cka_before": result.cka_before,
        "cka_after": result.cka_after,
        "wall_s": round(result.wall_seconds, 2),
        "stage_s": {k: round(v, 2) for k, v in result.stage_seconds.items()},
        "process_s": round(time.perf_counter() - t0, 2),
    }


def truncate_student(weights: Path, depth: int, out: Path) -> Path:
    """The first `depth` blocks of a pretrained student (and its stem and final norm), as a weight file."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    kept = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < depth}
    save_file(kept, str(out), metadata={"truncated_from": weights.name, "depth": str(depth)})
    return out


def base_config(args: argparse.Namespace, task: str, seed: int, out: Path) -> dict:
    config = dict(
        task=task,
        seed=seed,
        epochs=args.epochs,
        synthetic_train=args.train_images,
        synthetic_val=args.val_images,
        pretrained=False,
        out=str(out),
        overwrite=True,
        progress=False,
    )
    if args.smoke:
        config.update(teacher_kwargs=SMOKE_KWARGS, student_kwargs=SMOKE_KWARGS, batch_size=16, rank=4)
    else:
        config.update(teacher_weights=str(args.teacher_weights), student_weights=str(args.student_weights))
    return config


def plan(args: argparse.Namespace, work: Path) -> list[dict]:
    jobs = []
    for task in args.tasks.split(","):
        for seed in range(args.seeds):
            for method in args.methods.split(","):
                config = base_config(args, task, seed, work / f"{task}-{method}-{seed}")
                config["method"] = method
                jobs.append(
                    {
                        "config": config,
                        "tags": {"group": "main", "task": task, "method": method, "seed": seed},
                    }
                )
    if args.no_ablations:
        return jobs

    def ablation(name: str, value, **changes) -> None:
        config = base_config(args, "cls", 0, work / f"abl-{name}-{value}")
        config.update({"method": "slad", **changes})
        jobs.append({"config": config, "tags": {"group": "ablation", "ablation": name, "value": str(value)}})

    # the smoke run keeps one value of each ablation (the slowest part of the smoke test otherwise)
    for share in ("none",) if args.smoke else ("ab", "a", "b", "none"):
        ablation("share", share, share=share)
    for temperature in (2.0,) if args.smoke else (2.0, 4.0):
        ablation("temperature", temperature, temperature=temperature)
    ablation("kd_into_teacher", True, kd_into_teacher=True)
    # depth mismatch: teacher depth 2x the student's
    if args.smoke:
        deep = {"student_kwargs": {"depth": 1, "init_values": 1.0}}
    else:
        shallow = truncate_student(args.student_weights, 3, work / "student_depth3.safetensors")
        deep = {"student_kwargs": {"depth": 3}, "student_weights": str(shallow)}
    for layer_map in ("last",) if args.smoke else ("even", "first", "last"):
        ablation("layer_map", layer_map, layer_map=layer_map, **deep)
    if not args.smoke:
        ablation("layer_map_student_only", "-", **deep, method="student-only")
    return jobs


def pretrain(args: argparse.Namespace, work: Path) -> None:
    out = work / "weights"
    command = [
        sys.executable,
        str(_common.ROOT / "tools" / "pretrain_tiny_pair.py"),
        "--out",
        str(out),
        "--seed",
        "0",
    ]
    if args.smoke:
        command += ["--epochs", "1", "--num-train", "256", "--num-val", "64"]
    else:
        command += [
            "--epochs",
            str(args.pretrain_epochs),
            "--student-epochs",
            str(args.pretrain_student_epochs),
        ]
    subprocess.run(command, check=True)
    args.teacher_weights, args.student_weights = (
        out / f"{TEACHER}.safetensors",
        out / f"{STUDENT}.safetensors",
    )


def summarise(rows: list[dict]) -> dict:
    """Per task and method: mean/std/min/max over seeds of each number, and the CKA drop in percent."""
    out: dict = {}
    for row in rows:
        if row["group"] != "main":
            continue
        out.setdefault(row["task"], {}).setdefault(row["method"], []).append(row)
    summary = {}
    for task, methods in out.items():
        summary[task] = {}
        for method, runs in methods.items():
            entry = {}
            for key in ("student", "teacher", "cka_before", "cka_after", "wall_s"):
                values = [r[key] for r in runs if r[key] is not None]
                entry[key] = _common.spread(values) if values else None
            drops = [
                100.0 * (r["cka_before"] - r["cka_after"]) / r["cka_before"]
                for r in runs
                if r["cka_before"] and r["cka_after"] is not None
            ]
            entry["cka_drop_pct"] = _common.spread(drops) if drops else None
            summary[task][method] = entry
    return summary


def targets(summary: dict) -> list[dict]:
    """The issue's targets, each with met / missed and the numbers behind it."""
    checks = []

    def mean(task, method, key):
        entry = summary.get(task, {}).get(method, {}).get(key)
        return None if entry is None else entry["mean"]

    for task, methods in summary.items():
        slad = mean(task, "slad", "student")
        others = {m: mean(task, m, "student") for m in methods if m != "slad"}
        if slad is not None and others:
            beaten = [m for m, v in others.items() if v is not None and v > slad]
            checks.append(
                {
                    "target": f"{task}: SLAD student >= every other student (mean over seeds)",
                    "met": not beaten,
                    "detail": f"slad {slad:.2f}; "
                    + ", ".join(f"{m} {v:.2f}" for m, v in others.items() if v is not None),
                }
            )
        t_slad, t_lora = mean(task, "slad", "teacher"), mean(task, "lora-kd", "teacher")
        if t_slad is not None and t_lora is not None:
            checks.append(
                {
                    "target": f"{task}: SLAD teacher >= lora-kd teacher",
                    "met": t_slad >= t_lora,
                    "detail": f"slad {t_slad:.2f}, lora-kd {t_lora:.2f}",
                }
            )
        drops = {m: mean(task, m, "cka_drop_pct") for m in ("ft-kd", "lora-kd", "slad")}
        if None not in drops.values():
            checks.append(
                {
                    "target": f"{task}: CKA drop ft-kd > lora-kd > slad",
                    "met": drops["ft-kd"] > drops["lora-kd"] > drops["slad"],
                    "detail": ", ".join(f"{m} {v:.1f} %" for m, v in drops.items()),
                }
            )
        w_slad, w_ft = mean(task, "slad", "wall_s"), mean(task, "ft-kd", "wall_s")
        if w_slad is not None and w_ft is not None:
            checks.append(
                {
                    "target": f"{task}: SLAD wall time <= 0.5x ft-kd's",
                    "met": w_slad <= 0.5 * w_ft,
                    "detail": f"slad/ft-kd = {w_slad / w_ft:.2f} ({w_slad:.0f} s / {w_ft:.0f} s)",
                }
            )
    return checks


def _pm(entry, digits=1) -> str:
    if entry is None:
        return "–"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def markdown(report: dict) -> list[str]:
    a = report["args"]
    lines = ["# Methods: SLAD against the baselines (tiny pair, synthetic tasks)", ""]
    if report.get("reduced"):
        lines += [f"**Reduced configuration**: {report['reduced']}", ""]
    if a["smoke"]:
        lines += ["**Smoke run: tiny random models, numbers mean nothing.**", ""]
    lines += [
        _common.machine_line(report["machine"]) + " {SHARED_NOTE}",
        "",
        f"Command: `{report['command']}`. Seeds {list(range(a['seeds']))}; {a['epochs']} epochs per stage; "
        f"{a['train_images']} training / {a['val_images']} validation images per task; pair: "
        f"{report['pair']}. Total benchmark time {report['total_s'] / 60:.1f} min "
        f"({a['jobs']} parallel run(s), {a['threads'] or 'default'} torch thread(s) each).",
        "",
        "Mean ± standard deviation over seeds. Metric: top-1 accuracy % (cls), mIoU % (seg). "
        "CKA: linear CKA of pooled teacher/student features on the validation set; drop = "
        "(before − after) / before.",
        "",
    ]
    for task, methods in report["summary"].items():
        lines += [
            f"## {task}",
            "",
            "| method | student | teacher | CKA before | CKA after | CKA drop % | wall s |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, e in methods.items():
            lines.append(
                f"| {method} | {_pm(e['student'])} | {_pm(e['teacher'])} | {_pm(e['cka_before'], 3)} "
                f"| {_pm(e['cka_after'], 3)} | {_pm(e['cka_drop_pct'])} | {_pm(e['wall_s'], 0)} |"
            )
        lines.append("")
    abl = [r for r in report["rows"] if r["group"] == "ablation"]
    if abl:
        lines += [
            "## Ablations (cls, SLAD, seed 0)",
            "",
            "Layer-map rows use the depth-mismatched pair (teacher depth 6, student = first 3 blocks of the "
            "pretrained depth-6 student); `layer_map_student_only` is that student trained alone, for reference.",
            "",
            "| ablation | value | student | teacher | CKA before → after | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for r in abl:
            teacher = "–" if r["teacher"] is None else f"{r['teacher']:.1f}"
            lines.append(
                f"| {r['ablation']} | {r['value']} | {r['student']:.1f} | {teacher} "
                f"| {r['cka_before']:.3f} → {r['cka_after']:.3f} | {r['wall_s']:.0f} |"
            )
        lines.append("")
    if report["targets"]:
        lines += ["## Targets", "", "| target | met | numbers |", "|---|---|---|"]
        for t in report["targets"]:
            lines.append(f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |")
        lines.append("")
    if report.get("notes"):
        lines += ["## Reading", "", *report["notes"], ""]
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs = min(args.seeds, 1), 1
        args.train_images, args.val_images = 32, 16
    machine = _common.machine_info(jobs=args.jobs, threads=args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sladkit-methods-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.pretrain:
            pretrain(args, work)
        jobs = plan(args, work)
        rows = []
        if args.jobs > 1:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(args.jobs, ctx, _init_worker, (args.threads,)) as pool:
                for row in pool.map(train_one, jobs):
                    rows.append(row)
                    print(_progress(row), flush=True)
        else:
            _init_worker(args.threads)
            for job in jobs:
                rows.append(train_one(job))
                print(_progress(rows[-1]), flush=True)
    summary = summarise(rows)
    pair = (
        "random-init depth-2 (smoke)"
        if args.smoke
        else (
            f"{TEACHER} ({Path(args.teacher_weights).name}) / {STUDENT} ({Path(args.student_weights).name})"
            + (" rebuilt by --pretrain" if args.pretrain else ", the shipped weight files")
        )
    )
    report = {
        "name": "methods",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "reduced": args.reduced,
        "pair": pair,
        "total_s": round(time.perf_counter() - started, 1),
        "summary": summary,
        "targets": targets(summary),
        "rows": rows,
        "notes": [],
    }
    notes_file = args.results / "methods_notes.md"
    if notes_file.exists() and not args.smoke:
        report["notes"] = notes_file.read_text().splitlines()
    _common.write_results(args.results, "methods", report, markdown(report))
    return report


def _progress(row: dict) -> str:
    what = (
        f"{row.get('task')} {row.get('method')} seed {row.get('seed')}"
        if row["group"] == "main"
        else (f"ablation {row['ablation']}={row['value']}")
    )
    return (
        f"[{os.getpid()}] {what}: student {row['student']} teacher {row['teacher']} "
        f"CKA {row['cka_before']} -> {row['cka_after']} {row['wall_s']} s"
    )


if __name__ == "__main__":
    main()

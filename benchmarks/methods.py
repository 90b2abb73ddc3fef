"""The paper's comparison, small: SLAD against the five baselines, with confidence intervals, plus ablations.

Pair: `_common.pair_options` (the shipped tiny pretrained pair, teacher sladkit_vit_192_p8 and student
sladkit_vit_96_p8, loaded from their weight files through `--teacher-weights/--student-weights` with
`--no-pretrained`, like a user's checkpoint; `tools/pretrain_tiny_pair.py` makes them);
`--teacher-weights/--student-weights` take other files.

Tasks (`--tasks`, comma-separated):
  cls  the synthetic 15-class task, shape x texture, `--train-images` labelled images (limited labels), a
       held-out set of `--val-images` scenes; every seed renders its own scenes.
  seg  synthetic scenes with 1-3 objects and per-pixel masks, 5 shape classes + background (mIoU);
       `--seg-val-images` validation scenes.
  NAME a real classification dataset of `benchmarks/_real_datasets.py` (`DATASETS`, e.g. digits, mnist-5k),
       prepared with `prepare(NAME, seed=seed, ...)`: every seed its own split.
Every method of `sladkit train --method` on every task with `--seeds` seeds (the same seed gives every
method the same data and split). Reported, in percent: mean and 95 % t interval over seeds of the student
and teacher metric; the paired per-seed difference SLAD - baseline with its t interval; for classification,
the Wilson interval of one run's accuracy on its validation images (the evaluation's own noise). CKA before
and after training, total wall time.

Time to accuracy (per task and seed): threshold = `--tta-fraction` (95 %) x the best final student metric of
all methods run for that task and seed; a method's time to accuracy is the run's training time at the end
of the first epoch whose evaluation reaches it, counted from the start of its first stage (the teacher
stage of the two-stage pipelines included). Training time = metrics.jsonl's cumulative `elapsed_s` minus
the per-epoch evaluations (each epoch's training seconds are steps x batch / `images_per_s`, the loop's own
timing); the time with evaluations is reported beside it. SLAD / pipeline ratios per seed, with t intervals.

Ablations (`--ablations`, on by default; classification): `--share`, the temperature and KD into the
teacher at seeds 0..`--ablation-seeds`-1, each run paired with the default SLAD run of its seed (ablation -
default per seed, with its t interval); `--layer-map` with a depth-mismatched pair at seed 0. Depth mismatch: the pretraining tool makes
depth-6 models only, so the mismatched pair is the depth-6 teacher and a depth-3 student made of the first 3
blocks of the pretrained student (its final norm kept): not a student pretrained at depth 3.

Run:  .venv/bin/python benchmarks/methods.py                 (full: 5 seeds, cls + seg, ablations)
      .venv/bin/python benchmarks/methods.py --tasks digits,mnist-5k --no-ablations
      .venv/bin/python benchmarks/methods.py --plan-only       (the runs and a duration estimate, no training)
      .venv/bin/python benchmarks/methods.py --tasks cls,seg --work W --resume-from benchmarks/results/methods.json
                                                               (add seg to an earlier cls report: only seg trains)
      .venv/bin/python benchmarks/methods.py --smoke --results /tmp/r
Writes <results>/methods.json and .md (`--name` another stem).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import _methods_plan as plan_  # noqa: E402
import _methods_report as report_  # noqa: E402
import _resume  # noqa: E402
import _stats  # noqa: E402

TEACHER, STUDENT = "sladkit_vit_192_p8", "sladkit_vit_96_p8"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument(
        "--seeds",
        type=plan_.seeds_spec,
        default={"": 5},
        help="seeds per method and task (0..N-1): N, or N with per-task overrides, e.g. 12,seg=5,digits=4",
    )
    p.add_argument("--epochs", type=int, default=8, help="epochs (per stage for two-stage methods)")
    p.add_argument(
        "--targets",
        default="qkv",
        help="LoRA targets of every run (default qkv: the paper's placement, on which the committed table ran; "
        "sladkit train's default is qkv,proj,fc1,fc2)",
    )
    p.add_argument("--train-images", type=int, default=800, help="labelled training images (synthetic)")
    p.add_argument("--val-images", type=int, default=2000, help="validation images of the synthetic cls task")
    p.add_argument(
        "--seg-val-images",
        type=int,
        default=1000,
        help="validation scenes of the seg task (mIoU pools every pixel: fewer scenes pin it down)",
    )
    p.add_argument("--tasks", default="cls,seg", help="cls, seg and/or names of _real_datasets.DATASETS")
    p.add_argument("--methods", default=",".join(plan_.METHODS))
    p.add_argument(
        "--real-max-images",
        type=int,
        default=None,
        help="cap on a real dataset's images (default: the dataset's own benchmark subset, if any)",
    )
    p.add_argument("--real-val-fraction", type=float, default=0.2, help="a real dataset's validation share")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder for the prepared real datasets (default: _real_datasets' cache; smoke: the work folder)",
    )
    p.add_argument(
        "--tta-fraction",
        type=float,
        default=0.95,
        help="time-to-accuracy threshold, as a fraction of the best final student metric (task, seed)",
    )
    p.add_argument(
        "--ablations",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the SLAD ablations (cls)",
    )
    p.add_argument(
        "--ablation-seeds",
        type=int,
        default=1,
        help="seeds 0..N-1 of the --share, temperature and KD-into-teacher ablations, each paired with the "
        "SLAD run of its seed (the layer-map ablations run at seed 0 only)",
    )
    p.add_argument("--teacher-weights", type=Path, default=None, help="default: the shipped tiny teacher")
    p.add_argument("--student-weights", type=Path, default=None, help="default: the shipped tiny student")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs in parallel (processes); with 2 on 2 cores, use --threads 1. Wall times are then per "
        "process and comparable only with each other",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the run folders (default: a temp dir); a rerun with the same --work resumes: runs "
        "whose result is in WORK/rows with the same configuration are not trained again",
    )
    p.add_argument(
        "--resume-from",
        type=Path,
        default=None,
        help="an earlier methods.json: its rows of planned runs are kept (same weights and run options "
        "required, else one line says what differs) and saved into WORK/rows",
    )
    p.add_argument(
        "--set",
        dest="train_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field for every run (repeatable; VALUE read as JSON, else as a string), e.g. "
        "--set lambda_kd=0 for an ablation of the whole table",
    )
    p.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        help="an earlier methods.json run on the same tasks and seeds: this run's SLAD is paired per task and "
        "seed with each of its methods (e.g. SLAD at more --epochs against the file's two-stage pipelines)",
    )
    p.add_argument(
        "--compare-method",
        default="slad",
        help="the method of this run that --compare-with pairs with the earlier file's (e.g. slad-lp)",
    )
    p.add_argument("--plan-only", action="store_true", help="print the runs and the estimate, train nothing")
    p.add_argument("--reduced", default=None, help="label the results as reduced, with this reason")
    p.add_argument(
        "--name",
        default="methods",
        help="results file stem: <results>/NAME.json and .md (with NAME_notes.md's paragraphs, if it exists)",
    )
    args = p.parse_args(argv)
    args.train_options = _train_options(p, args.train_options)
    if args.ablation_seeds < 1:
        p.error(f"--ablation-seeds must be at least 1 (got {args.ablation_seeds})")
    pair = _common.pair_options(smoke=False)
    args.teacher_weights = args.teacher_weights or Path(pair["teacher_weights"])
    args.student_weights = args.student_weights or Path(pair["student_weights"])
    return args


def _train_options(p: argparse.ArgumentParser, items: list[str]) -> dict:
    """`--set KEY=VALUE` items as {field: value}; an unknown field or a missing `=` is one parser error."""
    from dataclasses import fields

    from sladkit.config import TrainConfig

    known, out = {f.name for f in fields(TrainConfig)}, {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            p.error(f"--set {item}: expected KEY=VALUE with KEY a TrainConfig field (e.g. lambda_kd=0)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _init_worker(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------- one run
def train_one(job: dict) -> dict:
    """One `sladkit.train.run` (in a worker process): its TrainResult's numbers and its learning curve."""
    from sladkit.config import TrainConfig
    from sladkit.train import run

    t0 = time.perf_counter()
    config = TrainConfig(**job["config"])
    result = run(config)
    records = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines() if line
    ]
    curve = learning_curve(records, result.metric, config.batch_size, job["tags"]["train_images"])
    row = {
        **job["tags"],
        "student": result.student,
        "teacher": result.teacher,
        "best_student": result.best_student,
        "cka_before": result.cka_before,
        "cka_after": result.cka_after,
        "wall_s": round(result.wall_seconds, 2),
        "stage_s": {k: round(v, 2) for k, v in result.stage_seconds.items()},
        "train_s": curve[-1]["train_s"],
        "eval_s": round(curve[-1]["elapsed_s"] - curve[-1]["train_s"], 3),
        "process_s": round(time.perf_counter() - t0, 2),
        "curve": curve,
    }
    if result.metric == "acc" and result.student is not None:
        row["student_wilson"] = _stats.wilson(result.student, job["tags"]["val_images"])
    return row


def learning_curve(records: list[dict], metric: str, batch_size: int, train_images: int) -> list[dict]:
    """Per evaluation: stage, epoch, student metric, `elapsed_s` and the training-only seconds so far.

    `elapsed_s` (sladkit's loop) is cumulative over the stages and counts each epoch's training *and* its
    evaluation (not the evaluation before training, model building or checkpoint writes). The training part
    of an epoch is its optimizer steps x global batch / `images_per_s`, which the loop measures over the
    training steps alone; the rest of each epoch's seconds is its evaluation.
    """
    from sladkit.train.batching import plan_batches

    global_batch = plan_batches(train_images, batch_size).global_batch
    curve, train_s, last_step = [], 0.0, 0
    for r in records:
        if r["epoch"] > 0 and r.get("images_per_s"):
            train_s += (r["step"] - last_step) * global_batch / r["images_per_s"]
        last_step = r["step"]
        curve.append(
            {
                "stage": r["stage"],
                "epoch": r["epoch"],
                "student": r.get(f"student_{metric}"),
                "elapsed_s": r["elapsed_s"],
                "train_s": round(min(train_s, r["elapsed_s"]), 3),
            }
        )
    return curve


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs = {k: min(n, 2) for k, n in args.seeds.items()}, 1
        args.train_images, args.val_images, args.seg_val_images = 32, 16, 16
        args.real_max_images = args.real_max_images or 120
    # read before training: a bad --compare-with file is one line now, not a traceback after the runs
    earlier = None if args.compare_with is None else _resume.read_report(args.compare_with, "--compare-with")
    machine = _common.machine_info(jobs=args.jobs, threads=args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sladkit-methods-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.smoke and args.data_root is None:
            args.data_root = work / "data"
        jobs = plan_.plan(args, work)
        plan_.print_plan(jobs, args)
        if args.plan_only:
            return {"jobs": jobs}
        salt = (
            ""
            if args.smoke
            else _resume.file_sha256(args.teacher_weights) + _resume.file_sha256(args.student_weights)
        )
        if args.resume_from:
            shas = None if args.smoke else _weights_sha256(args)
            _resume.seed_rows(args.resume_from, jobs, vars(args), shas, work / "rows", salt)
        rows, todo = _resume.resumed_rows(jobs, work / "rows", salt)
        resumed = len(rows)
        if rows:
            print(f"resumed {len(rows)} finished run(s) from {work / 'rows'}", flush=True)

        def finished(job: dict, row: dict) -> None:
            rows.append(row)
            _resume.save_row(work / "rows", job, row, salt)
            print(_progress(row, len(rows), len(jobs)), flush=True)

        if args.jobs > 1:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(args.jobs, ctx, _init_worker, (args.threads,)) as pool:
                for job, row in zip(todo, pool.map(train_one, todo), strict=True):
                    finished(job, row)
        else:
            _init_worker(args.threads)
            for job in todo:
                finished(job, train_one(job))
    report_.add_time_to_accuracy(rows, args.tta_fraction)
    summary, pairs, ratios = report_.summarise(rows), report_.paired(rows), report_.tta_ratios(rows)
    pair = (
        "random-init depth-2 (smoke)"
        if args.smoke
        else (f"{TEACHER} ({args.teacher_weights}) / {STUDENT} ({args.student_weights})")
    )
    report = {
        "name": args.name,
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "reduced": args.reduced,
        "pair": pair,
        "weights_sha256": None if args.smoke else _weights_sha256(args),
        "total_s": round(time.perf_counter() - started, 1),
        "resumed": resumed,
        "summary": summary,
        "paired": pairs,
        "tta_ratios": ratios,
        "ablation_paired": report_.ablation_paired(rows),
        "compared": None
        if earlier is None
        else report_.compare(rows, earlier["rows"], args.compare_with, args.compare_method),
        "targets": report_.targets(summary, pairs, ratios),
        "rows": rows,
        "notes": [],
    }
    notes_file = args.results / f"{args.name}_notes.md"
    if notes_file.exists() and not args.smoke:
        report["notes"] = notes_file.read_text().splitlines()
    _common.write_results(args.results, args.name, report, report_.markdown(report))
    return report


def _weights_sha256(args: argparse.Namespace) -> dict:
    return {
        "teacher": _resume.file_sha256(args.teacher_weights),
        "student": _resume.file_sha256(args.student_weights),
    }


def _progress(row: dict, done: int, total: int) -> str:
    what = (
        f"{row['task']} {row['method']} seed {row['seed']}"
        if row["group"] == "main"
        else f"ablation {row['ablation']}={row['value']} seed {row.get('seed', 0)}"
    )
    return (
        f"[{done}/{total}] {what}: student {row['student']} teacher {row['teacher']} "
        f"CKA {row['cka_before']} -> {row['cka_after']} {row['wall_s']} s (eval {row['eval_s']} s)"
    )


if __name__ == "__main__":
    main()

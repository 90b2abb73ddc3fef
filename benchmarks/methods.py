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
Writes <results>/methods.json and .md.
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
import _methods_report as report_  # noqa: E402
import _resume  # noqa: E402
import _stats  # noqa: E402

METHODS = ("slad", "joint-lora", "lora-kd", "ft-kd", "lp-kd", "student-only")
SYNTHETIC = ("cls", "seg")
TEACHER, STUDENT = "sladkit_vit_192_p8", "sladkit_vit_96_p8"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument(
        "--seeds",
        type=seeds_spec,
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
    p.add_argument("--methods", default=",".join(METHODS))
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
    p.add_argument("--plan-only", action="store_true", help="print the runs and the estimate, train nothing")
    p.add_argument("--reduced", default=None, help="label the results as reduced, with this reason")
    args = p.parse_args(argv)
    if args.ablation_seeds < 1:
        p.error(f"--ablation-seeds must be at least 1 (got {args.ablation_seeds})")
    pair = _common.pair_options(smoke=False)
    args.teacher_weights = args.teacher_weights or Path(pair["teacher_weights"])
    args.student_weights = args.student_weights or Path(pair["student_weights"])
    return args


def seeds_spec(text: str) -> dict[str, int]:
    """`12,seg=5` -> {"": 12, "seg": 5}: the default count under "", then per-task counts."""
    counts = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, _, value = item.rpartition("=")
        try:
            counts[task] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not N or TASK=N") from None
        if counts[task] < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: the number of seeds must be at least 1")
    if "" not in counts:
        raise argparse.ArgumentTypeError(f"{text!r} names no default count: start with N, e.g. 5,{text}")
    return counts


def seeds_of(args: argparse.Namespace, task: str) -> int:
    return args.seeds.get(task, args.seeds[""])


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


# ---------------------------------------------------------------------------------------- the plan
def truncate_student(weights: Path, depth: int, out: Path) -> Path:
    """The first `depth` blocks of a pretrained student (and its stem and final norm), as a weight file."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    kept = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < depth}
    save_file(kept, str(out), metadata={"truncated_from": weights.name, "depth": str(depth)})
    return out


def task_data(args: argparse.Namespace, task: str, seed: int) -> dict:
    """TrainConfig data options of a task and seed, with its image counts (real datasets prepared here)."""
    if task == "cls":
        return {"config": {"task": "cls"}, "train_images": args.train_images, "val_images": args.val_images}
    if task == "seg":
        return {
            "config": {"task": "seg"},
            "train_images": args.train_images,
            "val_images": args.seg_val_images,
        }
    from sladkit.data._files import list_images

    real = _real_datasets()
    options = dict(
        seed=seed,
        val_fraction=args.real_val_fraction,
        max_images=args.real_max_images or real.DATASETS[task].benchmark_max_images,
    )
    # --data-root holds one folder per (dataset, seed, ...), named as prepare's default cache folders
    root = None if args.data_root is None else args.data_root / real.default_root(task, **options).name
    try:
        root = Path(real.prepare(task, root, **options))
    except real.DatasetUnavailable as e:
        raise SystemExit(f"task {task}: {e}") from None
    return {
        "config": {"task": "cls", "data": str(root)},
        "train_images": len(list_images(root / "train", recursive=True)),
        "val_images": len(list_images(root / "val", recursive=True)),
    }


def _real_datasets():
    try:
        import _real_datasets
    except ImportError as e:
        raise SystemExit(f"real-dataset tasks need benchmarks/_real_datasets.py ({e})") from None
    return _real_datasets


def check_tasks(tasks: list[str]) -> None:
    real = [t for t in tasks if t not in SYNTHETIC]
    if real:
        unknown = [t for t in real if t not in _real_datasets().DATASETS]
        if unknown:
            names = ", ".join([*SYNTHETIC, *_real_datasets().DATASETS])
            raise SystemExit(f"unknown task(s) {', '.join(unknown)}: choose among {names}")


def base_config(args: argparse.Namespace, seed: int, out: Path, data: dict) -> dict:
    config = dict(
        seed=seed,
        epochs=args.epochs,
        targets=args.targets,
        synthetic_train=args.train_images,
        synthetic_val=data["val_images"],
        val_fraction=args.real_val_fraction,
        out=str(out),
        overwrite=True,
        progress=False,
        **_common.pair_options(smoke=args.smoke),
        **data["config"],
    )
    if args.smoke:
        config["batch_size"] = 16
    else:
        config.update(teacher_weights=str(args.teacher_weights), student_weights=str(args.student_weights))
    return config


def plan(args: argparse.Namespace, work: Path) -> list[dict]:
    """Every run: task x seed x method (method order rotated per seed), then the ablations."""
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    check_tasks(tasks)
    jobs = []
    for task in tasks:
        for seed in range(seeds_of(args, task)):
            data = task_data(args, task, seed)
            order = methods[seed % len(methods) :] + methods[: seed % len(methods)]
            for method in order:
                config = base_config(args, seed, work / f"{task}-{method}-{seed}", data)
                config["method"] = method
                tags = {"group": "main", "task": task, "method": method, "seed": seed}
                tags.update(train_images=data["train_images"], val_images=data["val_images"])
                jobs.append({"config": config, "tags": tags})
    if not args.ablations:
        return jobs

    def ablation(seed: int, name: str, value, **changes) -> None:
        data = task_data(args, "cls", seed)
        out = work / (f"abl-{name}-{value}" + (f"-{seed}" if seed else ""))
        config = base_config(args, seed, out, data)
        config.update({"method": "slad", **changes})
        tags = {"group": "ablation", "task": "cls", "ablation": name, "value": str(value), "seed": seed}
        tags.update(train_images=data["train_images"], val_images=data["val_images"])
        jobs.append({"config": config, "tags": tags})

    slad_seeds = seeds_of(args, "cls") if "cls" in tasks and "slad" in methods else 0
    for seed in range(1 if args.smoke else args.ablation_seeds):
        # the smoke run keeps one value of each ablation (the slowest part of the smoke test otherwise).
        # share=ab is the default: past seed 0 the SLAD run of the same seed is that run, when planned
        shares = (
            ("none",)
            if args.smoke
            else ("ab", "a", "b", "none")
            if seed == 0 or seed >= slad_seeds
            else ("a", "b", "none")
        )
        for share in shares:
            ablation(seed, "share", share, share=share)
        for temperature in (2.0,) if args.smoke else (2.0, 4.0):
            ablation(seed, "temperature", temperature, temperature=temperature)
        ablation(seed, "kd_into_teacher", True, kd_into_teacher=True)
    # depth mismatch (seed 0): teacher depth 2x the student's
    if args.smoke:
        deep = {"student_kwargs": {"depth": 1, "init_values": 1.0}}
    else:
        shallow = truncate_student(args.student_weights, 3, work / "student_depth3.safetensors")
        deep = {"student_kwargs": {"depth": 3}, "student_weights": str(shallow)}
    for layer_map in ("last",) if args.smoke else ("even", "first", "last"):
        ablation(0, "layer_map", layer_map, layer_map=layer_map, **deep)
    if not args.smoke:
        ablation(0, "layer_map_student_only", "-", **deep, method="student-only")
    return jobs


# Duration estimate: multiply-adds per image of the tiny pair at 32 px (benchmarks/inference.py); a training
# step costs 1 forward for a probed or frozen model, 2 with LoRA (forward + input gradients), 3 fully
# fine-tuned; every evaluation runs both models on the validation set (the teacher stage's too); calibrated on a default `sladkit train` (SLAD,
# 8 epochs x 2000 images, 9 evaluations of 500) taking about 65 s on an idle 2-core machine; segmentation
# runs took 1.7x as long as classification ones in the committed results.
_TEACHER_GMAC, _STUDENT_GMAC = 0.0464, 0.0119
_S_PER_GMAC = 65.0 / ((8 * 2000 * 2 + 9 * 500) * (_TEACHER_GMAC + _STUDENT_GMAC))
_TEACHER_STAGE = {"lora-kd": 2, "ft-kd": 3, "lp-kd": 1}  # teacher forwards per image


def estimate_seconds(job: dict) -> float:
    c, tags = job["config"], job["tags"]
    t = _TEACHER_GMAC
    s = _STUDENT_GMAC * c.get("student_kwargs", {}).get("depth", 6) / 6
    n_train, n_val, epochs = tags["train_images"], tags["val_images"], c["epochs"]
    method = c["method"]
    if method in ("slad", "joint-lora"):
        per_epoch, stages = 2 * (t + s), 1
    elif method == "student-only":
        per_epoch, stages = 2 * s, 1
    else:
        per_epoch, stages = _TEACHER_STAGE[method] * t + (t + 2 * s), 2
    gmac = epochs * n_train * per_epoch + (1 + stages * epochs) * n_val * (t + s)
    return gmac * _S_PER_GMAC * (1.7 if c["task"] == "seg" else 1.0)


def print_plan(jobs: list[dict], args: argparse.Namespace) -> None:
    main_runs = sum(j["tags"]["group"] == "main" for j in jobs)
    line = f"{len(jobs)} runs planned ({main_runs} method runs, {len(jobs) - main_runs} ablation runs)"
    if not args.smoke:
        minutes = sum(estimate_seconds(j) for j in jobs) / 60 / max(1, args.jobs)
        line += (
            f"; rough estimate {minutes:.0f} min on an idle 2-core machine (cost model calibrated on a "
            "default `sladkit train` of about 65 s; a shared machine takes longer)"
        )
    print(line, flush=True)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs = {k: min(n, 2) for k, n in args.seeds.items()}, 1
        args.train_images, args.val_images, args.seg_val_images = 32, 16, 16
        args.real_max_images = args.real_max_images or 120
    machine = _common.machine_info(jobs=args.jobs, threads=args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sladkit-methods-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.smoke and args.data_root is None:
            args.data_root = work / "data"
        jobs = plan(args, work)
        print_plan(jobs, args)
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
        "name": "methods",
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
        "targets": report_.targets(summary, pairs, ratios),
        "rows": rows,
        "notes": [],
    }
    notes_file = args.results / "methods_notes.md"
    if notes_file.exists() and not args.smoke:
        report["notes"] = notes_file.read_text().splitlines()
    _common.write_results(args.results, "methods", report, report_.markdown(report))
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

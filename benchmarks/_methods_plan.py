"""The runs of benchmarks/methods.py: tasks, seeds, their configurations, the ablations, a duration estimate.

`plan(args, work)` turns methods.py's parsed options into jobs, `{"config": TrainConfig options, "tags":
what the report groups by}`; methods.py trains them and `_methods_report.py` reports them. The tasks, the
method order and the ablations are described in methods.py's docstring.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _common

METHODS = ("slad", "joint-lora", "lora-kd", "ft-kd", "lp-kd", "student-only")
SYNTHETIC = ("cls", "seg")


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
    config.update(args.train_options)
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
    elif method == "slad-lp":  # a head probe (teacher forwards) of probe_epochs, then the joint stage
        probe = c.get("probe_epochs", 1) * n_train * t / epochs
        per_epoch, stages = 2 * (t + s) + probe / n_train, 2
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

"""Two-stage baselines with and without `--cache-teacher`: the student stage's wall time, ratios in one run.

A frozen teacher with no augmentation gives the same logits for an image every epoch, so `--cache-teacher`
computes them once. Comparisons between methods stay fair only if both timings are reported: this script
runs `lora-kd`, `ft-kd` and `lp-kd` with `--no-augment`, with and without the cache (interleaved, order
rotated per repeat), on the shipped tiny pretrained pair, and reports the student stage's seconds (the
cache's build time included) and the total wall time.

Run:  .venv/bin/python benchmarks/teacher_cache.py [--repeats 3] [--epochs 3]
Writes benchmarks/results/teacher_cache.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

METHODS = ("lora-kd", "ft-kd", "lp-kd")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="epochs per stage")
    p.add_argument("--train-images", type=int, default=1000)
    p.add_argument("--val-images", type=int, default=200)
    return p.parse_args(argv)


def config_for(args, method: str, cache: bool, out: Path):
    from sladkit.config import TrainConfig

    values = dict(
        method=method, epochs=args.epochs, synthetic_train=args.train_images, synthetic_val=args.val_images,
        augment=False, cache_teacher=cache, out=str(out), overwrite=True, progress=False,
    )  # fmt: skip
    values.update(_common.pair_options(args.smoke))
    return TrainConfig(**values)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.repeats, args.epochs, args.train_images, args.val_images = 1, 1, 32, 16
    from sladkit.train import run

    machine = _common.machine_info()
    started = time.perf_counter()
    runs = []
    plan = [(m, c) for m in METHODS for c in (False, True)]
    with tempfile.TemporaryDirectory(prefix="sladkit-cache-") as tmp:
        for repeat in range(args.repeats):
            shift = repeat % len(plan)
            for method, cache in plan[shift:] + plan[:shift]:
                result = run(config_for(args, method, cache, Path(tmp) / f"{method}-{cache}"))
                runs.append(
                    {
                        "repeat": repeat,
                        "method": method,
                        "cache_teacher": cache,
                        "student_stage_s": round(result.stage_seconds["student"], 3),
                        "wall_s": round(result.wall_seconds, 3),
                        "student": result.student,
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for method in METHODS:

        def of(cache, key, method=method):
            return [r[key] for r in runs if r["method"] == method and r["cache_teacher"] is cache]

        ratios = [
            a / b for a, b in zip(of(False, "student_stage_s"), of(True, "student_stage_s"), strict=True)
        ]
        summary[method] = {
            "student_stage_s_without": _common.spread(of(False, "student_stage_s")),
            "student_stage_s_with": _common.spread(of(True, "student_stage_s")),
            "speedup_of_student_stage": _common.spread(ratios),
            "same_student_metric": all(
                a == b for a, b in zip(of(False, "student"), of(True, "student"), strict=True)
            ),
        }
    report = {
        "name": "teacher_cache",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "total_s": round(time.perf_counter() - started, 1),
        "summary": summary,
        "runs": runs,
    }
    lines = [
        "# Two-stage baselines with and without --cache-teacher (student stage, --no-augment)",
        "",
        "**Smoke run: the numbers mean nothing.**" if args.smoke else "",
        _common.machine_line(machine),
        "{SHARED_NOTE}",
        "",
        f"Command: `{report['command']}`. {args.repeats} repeats, {args.epochs} epochs per stage, "
        f"{args.train_images} training images; runs interleaved, order rotated per repeat.",
        "",
        "| method | student stage s without cache | with cache | speed-up (median, min–max) | same student metric |",
        "|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        sp = s["speedup_of_student_stage"]
        lines.append(
            f"| {method} | {s['student_stage_s_without']['median']:.1f} | {s['student_stage_s_with']['median']:.1f} "
            f"| {sp['median']:.2f}x ({sp['min']:.2f}–{sp['max']:.2f}) | {s['same_student_metric']} |"
        )
    _common.write_results(args.results, "teacher_cache", report, lines)
    return report


if __name__ == "__main__":
    main()

"""Training speed: SLAD's total wall time against the two-stage pipelines, per-step throughput, cost of sharing.

All through `sladkit.train.run(TrainConfig(...))` on the tiny pretrained pair (shipped weight files),
synthetic classification, the same epochs per stage for every method (`--teacher-epochs` = `--epochs`):

1. total wall time (every stage and evaluation included) of `slad` against `ft-kd`, `lora-kd`, `lp-kd`
   and `joint-lora`, as ratios: the methods run in turn, the order rotated each repeat, and each ratio is
   the median over repeats of (method / slad) within the same repeat;
2. training throughput (images/s, from each stage's `images_per_s` in metrics.jsonl; data loading
   included): a SLAD step (teacher + student, shared LoRA) against a teacher-LoRA step plus a student step
   (the two stages of `lora-kd`, combined as 1 / (1/t + 1/s) images/s);
3. the cost of sharing: `slad` against `joint-lora` (same loss, independent adapters).

Run:  .venv/bin/python benchmarks/train_speed.py            (3 repeats, 3 epochs, 1000 images)
      .venv/bin/python benchmarks/train_speed.py --smoke --results /tmp/r
Writes <results>/train_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

METHODS = ("slad", "joint-lora", "lora-kd", "ft-kd", "lp-kd")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="epochs per stage (all methods)")
    p.add_argument("--train-images", type=int, default=1000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p.parse_args(argv)


def config_for(args, method: str, out: Path):
    from sladkit.config import TrainConfig

    values = dict(
        method=method,
        epochs=args.epochs,
        teacher_epochs=args.epochs,
        synthetic_train=args.train_images,
        synthetic_val=args.val_images,
        batch_size=args.batch_size,
        out=str(out),
        overwrite=True,
        progress=False,
    )
    values.update(_common.pair_options(args.smoke))
    return TrainConfig(**values)


def stage_throughput(run_dir: Path) -> dict[str, float]:
    """Median images/s of each stage's training epochs, from the run's metrics.jsonl."""
    per_stage: dict[str, list[float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("epoch", 0) > 0 and "images_per_s" in record:
            per_stage.setdefault(record["stage"], []).append(record["images_per_s"])
    return {stage: statistics.median(v) for stage, v in per_stage.items()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.repeats, args.epochs, args.train_images, args.val_images, args.batch_size = 1, 1, 32, 16, 16
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from sladkit.train import run

    machine = _common.machine_info(threads=args.threads)
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="sladkit-speed-") as tmp:
        # warm-up (imports, allocator, first-run costs), not timed: a short SLAD run
        run(config_for(args, "slad", Path(tmp) / "warmup").replace(epochs=1, synthetic_train=64))
        for repeat in range(args.repeats):
            order = METHODS[repeat % len(METHODS) :] + METHODS[: repeat % len(METHODS)]  # rotate
            for method in order:
                result = run(config_for(args, method, Path(tmp) / method))
                runs.append(
                    {
                        "repeat": repeat,
                        "method": method,
                        "wall_s": round(result.wall_seconds, 3),
                        "stage_s": {k: round(v, 3) for k, v in result.stage_seconds.items()},
                        "images_per_s": stage_throughput(result.run_dir),
                    }
                )
                print(json.dumps(runs[-1]), flush=True)

    def of(method, repeat):
        return next(r for r in runs if r["method"] == method and r["repeat"] == repeat)

    wall = {}
    for method in METHODS:
        walls = [r["wall_s"] for r in runs if r["method"] == method]
        ratios = [of(method, k)["wall_s"] / of("slad", k)["wall_s"] for k in range(args.repeats)]
        slad_min = min(r["wall_s"] for r in runs if r["method"] == "slad")
        wall[method] = {
            "wall_s": _common.spread(walls),
            "ratio_to_slad": _common.spread(ratios),
            # on a shared machine the fastest repeat of each method is the least disturbed one
            "ratio_of_fastest": min(walls) / slad_min,
        }

    slad_ips = [of("slad", k)["images_per_s"]["joint"] for k in range(args.repeats)]
    t_ips = [of("lora-kd", k)["images_per_s"]["teacher"] for k in range(args.repeats)]
    s_ips = [of("lora-kd", k)["images_per_s"]["student"] for k in range(args.repeats)]
    two = [1.0 / (1.0 / t + 1.0 / s) for t, s in zip(t_ips, s_ips, strict=True)]
    joint_ips = [of("joint-lora", k)["images_per_s"]["joint"] for k in range(args.repeats)]
    throughput = {
        "slad_step": _common.spread(slad_ips),
        "teacher_lora_step": _common.spread(t_ips),
        "student_step_frozen_teacher": _common.spread(s_ips),
        "teacher_plus_student_combined": _common.spread(two),
        "joint_lora_step": _common.spread(joint_ips),
        "slad_over_combined": _common.spread([a / b for a, b in zip(slad_ips, two, strict=True)]),
        "slad_over_joint_lora": _common.spread([a / b for a, b in zip(slad_ips, joint_ips, strict=True)]),
    }
    # the fastest repeat of each step (least disturbed by other jobs on a shared machine)
    best_two = 1.0 / (1.0 / max(t_ips) + 1.0 / max(s_ips))
    throughput["fastest"] = {
        "slad_over_combined": max(slad_ips) / best_two,
        "slad_over_joint_lora": max(slad_ips) / max(joint_ips),
    }
    ft_ratio = wall["ft-kd"]["ratio_to_slad"]["median"]
    ft_fastest = wall["ft-kd"]["ratio_of_fastest"]
    report = {
        "name": "train_speed",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "total_s": round(time.perf_counter() - started, 1),
        "wall": wall,
        "throughput": throughput,
        "targets": [
            {
                "target": "SLAD total wall time <= 0.5x ft-kd's",
                "met": 1.0 / ft_ratio <= 0.5,
                "detail": f"slad / ft-kd = {1.0 / ft_ratio:.2f} (median of per-repeat ratios), "
                f"{1.0 / ft_fastest:.2f} (fastest repeats); paper: 1/1.48 = 0.68 measured, 0.5 claimed",
            }
        ],
        "runs": runs,
    }
    _common.write_results(args.results, "train_speed", report, markdown(report))
    return report


def markdown(report: dict) -> list[str]:
    a = report["args"]
    lines = _common.report_header(
        "Training speed: SLAD against the two-stage pipelines (tiny pretrained pair, cls)", report
    )
    lines += [
        f"Command: `{report['command']}`. {a['epochs']} epochs per stage for every method, "
        f"{a['train_images']} training / {a['val_images']} validation images, batch {a['batch_size']}, "
        f"{a['repeats']} repeats with the method order rotated; torch threads: {a['threads'] or 'default'}. "
        f"Benchmark time {report['total_s'] / 60:.1f} min.",
        "",
        "## Total wall time (every stage and evaluation)",
        "",
        "| method | wall s, median (min–max) | ratio to slad, median of per-repeat ratios (min–max) "
        "| ratio of fastest repeats |",
        "|---|---|---|---|",
    ]
    for method, w in report["wall"].items():
        s, r = w["wall_s"], w["ratio_to_slad"]
        lines.append(
            f"| {method} | {s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f}) "
            f"| {r['median']:.2f}x ({r['min']:.2f}–{r['max']:.2f}) | {w['ratio_of_fastest']:.2f}x |"
        )
    t = report["throughput"]
    lines += [
        "",
        "## Training throughput (images/s, median over repeats (min–max))",
        "",
        "| step | images/s |",
        "|---|---|",
    ]
    names = {
        "slad_step": "SLAD step (teacher + student, shared LoRA)",
        "joint_lora_step": "joint-lora step (teacher + student, own LoRA)",
        "teacher_lora_step": "teacher-LoRA step (lora-kd stage 1)",
        "student_step_frozen_teacher": "student step with frozen-teacher forward (lora-kd stage 2)",
        "teacher_plus_student_combined": "teacher step + student step, combined 1/(1/t+1/s)",
        "slad_over_combined": "ratio SLAD / (teacher + student)",
        "slad_over_joint_lora": "ratio SLAD / joint-lora (cost of sharing: < 1 means sharing is slower)",
    }
    for key, label in names.items():
        v = t[key]
        fmt = ".2f" if key.startswith("slad_over") else ".0f"
        lines.append(f"| {label} | {v['median']:{fmt}} ({v['min']:{fmt}}–{v['max']:{fmt}}) |")
    f = t["fastest"]
    lines += [
        "",
        f"Fastest repeat of each step: SLAD / (teacher + student) {f['slad_over_combined']:.2f}, "
        f"SLAD / joint-lora {f['slad_over_joint_lora']:.2f}.",
    ]
    lines += ["", "## Targets", "", "| target | met | numbers |", "|---|---|---|"]
    for tg in report["targets"]:
        lines.append(f"| {tg['target']} | {'yes' if tg['met'] else '**no**'} | {tg['detail']} |")
    return lines


if __name__ == "__main__":
    main()

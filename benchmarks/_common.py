"""Helpers shared by the benchmark scripts: machine description, statistics, result files.

Every script writes `<results>/<name>.json` (machine, versions, command, load averages, numbers) and
`<results>/<name>.md` (the same as tables). Timings on a shared machine are noisy: scripts measure ratios
within one run, interleave what they compare, take medians, and record `os.getloadavg()` before and after;
`shared_note` says so in the result files when the load average shows other jobs (above 1 at the start, above
the core count at the end).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


WEIGHTS = ROOT / "sladkit" / "models" / "weights"
SMOKE_KWARGS = {"depth": 2, "init_values": 1.0}


def pair_options(smoke: bool, weights: Path | None = None) -> dict:
    """TrainConfig values for the benchmarks' teacher/student pair.

    Full runs load the shipped tiny pretrained pair (or the pair's files in the folder `weights`) as a
    user's weight files (`--no-pretrained` plus `--teacher-weights/--student-weights`); `--smoke` runs
    use tiny random depth-2 models.
    """
    if smoke:
        return {
            "pretrained": False,
            "teacher_kwargs": SMOKE_KWARGS,
            "student_kwargs": SMOKE_KWARGS,
            "rank": 4,
        }
    return {
        "pretrained": False,
        "teacher_weights": str(Path(weights or WEIGHTS) / "sladkit_vit_192_p8.safetensors"),
        "student_weights": str(Path(weights or WEIGHTS) / "sladkit_vit_96_p8.safetensors"),
    }


def train_synthetic(
    out: Path, smoke: bool, *, epochs: int, train_images: int, val_images: int, task: str = "cls"
):
    """Train the default SLAD run on the synthetic task with the benchmarks' pair (`pair_options`, batch 16
    under `--smoke`), quietly; returns its run folder: the run the export benchmarks quantize and time."""
    from sladkit.config import TrainConfig
    from sladkit.train import run

    values = dict(
        task=task,
        epochs=epochs,
        synthetic_train=train_images,
        synthetic_val=val_images,
        out=str(out),
        progress=False,
    )
    values.update(pair_options(smoke))
    if smoke:
        values.update(batch_size=16)
    return run(TrainConfig(**values)).run_dir


def random_classifier(name: str, size: int, kwargs: dict, num_classes: int = 100):
    """A timm backbone with random weights (seed 0) and sladkit's classification head, in eval mode:
    the random-weight models the speed and quantization benchmarks time and quantize."""
    import torch

    from sladkit.models.backbones import create_backbone
    from sladkit.models.heads import TaskModel, create_head

    torch.manual_seed(0)
    backbone = create_backbone(name, role="student", image_size=size, pretrained=False, kwargs=kwargs)
    grid = backbone.patch_embed.grid_size
    head = create_head(
        "cls",
        backbone.embed_dim,
        num_classes,
        num_prefix=backbone.num_prefix_tokens,
        grid=grid,
        pool="cls+avg",
    )
    return TaskModel(backbone, head).eval()


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--results DIR and --smoke, which every benchmark takes."""
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for <name>.json and .md (default: %(default)s)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, a few steps: checks that the script runs, no numbers",
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine_info(**extra) -> dict:
    """CPU, cores, versions and the load average now (call at the start; `finish` adds the end)."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            p: _version(p) for p in ("sladkit", "torch", "timm", "peft", "onnx", "onnxruntime", "numpy")
        },
        "loadavg_start": load_average(),
    }
    info.update(extra)
    return info


def command_line() -> str:
    """The command that reproduces this run, from the repository root."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return " ".join([".venv/bin/python", str(script), *(shlex.quote(a) for a in sys.argv[1:])])


def shared_note(machine: dict) -> str:
    """One sentence on the machine's load, for the .md files.

    The 1-minute load average at the start is other jobs' (the benchmark has not run yet); at the end it
    includes the benchmark's own threads, so only a value above the core count says another job ran.
    """
    start = (machine.get("loadavg_start") or [0.0])[0]
    end = (machine.get("loadavg_end") or [0.0])[0]
    cores = machine.get("cores") or 1
    text = f"load average (1, 5, 15 min) {machine.get('loadavg_start')} at start, {machine.get('loadavg_end')} at end"
    if start > 1.0 or end > cores + 0.5:
        return (
            f"**The machine was shared with other jobs** ({text}): absolute times are pessimistic and noisy; "
            "ratios measured in the same run, interleaved, are the numbers to read."
        )
    return (
        f"No other jobs ran ({text}: under 1 at the start, and at the end within what the benchmark's own "
        f"threads put on the {cores} cores)."
    )


def spread(values: list[float]) -> dict:
    """Median, mean, standard deviation, min and max (of a non-empty list)."""
    values = [float(v) for v in values]
    return {
        "n": len(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def p10_p90(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[0], q[-1]


def write_results(results: Path, name: str, report: dict, markdown: list[str]) -> None:
    """Write `<results>/<name>.json` and `.md`, adding the end load average to the machine record."""
    report.setdefault("machine", {})["loadavg_end"] = load_average()
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = "\n".join(markdown).replace("{SHARED_NOTE}", shared_note(report["machine"]))
    (results / f"{name}.md").write_text(text.rstrip() + "\n")
    print(text)


def machine_line(machine: dict) -> str:
    v = machine["versions"]
    return (
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"sladkit {v.get('sladkit')}, torch {v.get('torch')}, timm {v.get('timm')}, "
        f"onnxruntime {v.get('onnxruntime')}."
    )


SMOKE_NOTE = "**Smoke run: tiny random models, numbers mean nothing.**"


def report_header(title: str, report: dict, *, smoke_note: str = SMOKE_NOTE) -> list[str]:
    """A report's first lines: `# title`, the reduced note, the smoke note, the machine line.

    Each is followed by a blank line; the reduced note comes only when `report["reduced"]` is set and
    the smoke note only for `--smoke` runs. The machine line ends in `{SHARED_NOTE}`, which
    `write_results` fills in.
    """
    lines = [f"# {title}", ""]
    if report.get("reduced"):
        lines += [f"**Reduced configuration**: {report['reduced']}", ""]
    if report["args"]["smoke"]:
        lines += [smoke_note, ""]
    return lines + [machine_line(report["machine"]) + " {SHARED_NOTE}", ""]

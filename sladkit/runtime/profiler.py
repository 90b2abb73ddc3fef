"""`sladkit profile`: latency percentiles, throughput, memory, power and accuracy of artifacts.

Conventions of trtexec: warm-up first, then timed iterations (or a duration), percentiles rather than means,
GPU compute time apart from end-to-end latency where the backend reports it. Timing wraps only
`backend.infer` on a preprocessed batch, so the profiler adds one `perf_counter` pair per iteration
(its overhead against a bare loop is measured by `benchmarks/runtime_overhead.py`).
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sladkit.config import ProfileConfig
from sladkit.runtime.model import RuntimeModel


@dataclass
class Measurement:
    """One artifact at one batch size (the profile report's row; `docs/design.md`)."""

    artifact: str
    backend: str
    precision: str
    device: str
    batch: int
    warmup: int
    iterations: int
    latency_ms: dict[str, float]  # min, mean, p50, p90, p95, p99, max
    throughput: float  # images/s
    peak_host_mb: float
    gpu_compute_ms: dict[str, float] | None = None
    peak_gpu_mb: float | None = None
    power: dict | None = None
    accuracy: dict | None = None
    extra: dict = field(default_factory=dict)


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    stats = {"min": a.min(), "mean": a.mean()}
    for p in (50, 90, 95, 99):
        stats[f"p{p}"] = float(np.percentile(a, p))
    stats["max"] = a.max()
    return {k: round(float(v), 4) for k, v in stats.items()}


def peak_host_mb() -> float:
    """Peak resident memory of this process (ru_maxrss; kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def time_backend(
    model: RuntimeModel, batch: np.ndarray, config: ProfileConfig
) -> tuple[list[float], list[float]]:
    """End-to-end and (where reported) GPU compute latencies in ms, after warm-up."""
    backend = model.backend
    gpu_timer = getattr(backend, "gpu_compute_ms", None)
    for _ in range(config.warmup):
        backend.infer(batch)
    samples, gpu = [], []
    deadline = time.perf_counter() + config.duration if config.duration else None
    count = 0
    while (deadline is None and count < config.iterations) or (
        deadline is not None and time.perf_counter() < deadline
    ):
        start = time.perf_counter()
        backend.infer(batch)
        samples.append((time.perf_counter() - start) * 1e3)
        if gpu_timer is not None and (g := gpu_timer()) is not None:
            gpu.append(g)
        count += 1
    return samples, gpu


def example_batch(model: RuntimeModel, size: int, seed: int = 0) -> np.ndarray:
    """A batch of random images already preprocessed into the model's input layout."""
    rng = np.random.default_rng(seed)
    s = model.artifact.image_size
    pixels = rng.integers(0, 256, size=(size, s, s, 3), dtype=np.uint8)
    return model.preprocess(list(pixels))


def profile_model(
    model: RuntimeModel, config: ProfileConfig, *, accuracy: dict | None = None
) -> list[Measurement]:
    from sladkit.runtime.power import PowerMonitor

    rows = []
    for size in config.batches:
        batch = example_batch(model, size)
        with PowerMonitor() as power:
            samples, gpu = time_backend(model, batch, config)
        stats = latency_stats(samples)
        power_summary = power.summary()
        energy = (
            power.energy_mj_per_image(size * len(samples), sum(samples) / 1e3)
            if power_summary.get("available")
            else None
        )
        if power_summary.get("available"):
            power_summary["mj_per_image"] = energy
        rows.append(
            Measurement(
                artifact=model.artifact.name,
                backend=model.backend.name,
                precision=model.artifact.precision,
                device=model.backend.device,
                batch=size,
                warmup=config.warmup,
                iterations=len(samples),
                latency_ms=stats,
                throughput=round(size * 1e3 / stats["p50"], 2),
                peak_host_mb=peak_host_mb(),
                gpu_compute_ms=latency_stats(gpu) if gpu else None,
                power=power_summary,
                accuracy=accuracy,
                extra={"samples_ms": samples},
            )
        )
    return rows


def format_table(rows: list[Measurement]) -> str:
    """One table, ratios against the first artifact at the same batch size."""
    base = {}
    for r in rows:
        base.setdefault(r.batch, r)
    header = (
        "artifact",
        "backend",
        "prec",
        "batch",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "img/s",
        "speed-up",
        "host MB",
        "power mW",
        "accuracy",
    )
    lines = [header]
    for r in rows:
        b = base[r.batch]
        total = (r.power or {}).get("total")
        lines.append(
            (
                r.artifact,
                r.backend,
                r.precision,
                str(r.batch),
                f"{r.latency_ms['p50']:.3f}",
                f"{r.latency_ms['p90']:.3f}",
                f"{r.latency_ms['p99']:.3f}",
                f"{r.latency_ms['mean']:.3f}",
                f"{r.throughput:.1f}",
                f"{b.latency_ms['p50'] / r.latency_ms['p50']:.2f}x",
                f"{r.peak_host_mb:.0f}",
                f"{total['average_mw']:.0f}" if total else "n/a",
                f"{r.accuracy['metric']}={r.accuracy['value']:.2f}" if r.accuracy else "-",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine_info() -> dict:
    from sladkit.runtime.device import device_state

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jetson": device_state(),
    }


def write_json(rows: list[Measurement], path: str | Path, config: ProfileConfig) -> None:
    from sladkit._atomic import atomic_write_text

    report = {"machine": machine_info(), "config": asdict(config), "results": [asdict(r) for r in rows]}
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")


def write_plot(rows: list[Measurement], samples: dict[str, list[float]], path: str | Path) -> None:
    """Latency distributions (box plots) and accuracy against p50 latency."""
    from sladkit.errors import require

    matplotlib = require("matplotlib", "runtime")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(samples)
    axes[0].boxplot([samples[n] for n in names], showfliers=False)
    axes[0].set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    axes[0].set_ylabel("latency (ms)")
    axes[0].set_yscale("log")
    axes[0].set_title("latency distribution")
    first_batch = rows[0].batch if rows else None
    for r in rows:
        if r.accuracy and r.batch == first_batch:
            axes[1].scatter(r.latency_ms["p50"], r.accuracy["value"])
            axes[1].annotate(r.artifact, (r.latency_ms["p50"], r.accuracy["value"]), fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_xlabel(f"p50 latency at batch {first_batch} (ms)")
    axes[1].set_ylabel("accuracy / mIoU (%)")
    axes[1].set_title("accuracy against latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

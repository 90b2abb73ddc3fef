"""`sladkit profile`: latency percentiles, throughput, memory, power and accuracy of artifacts.

Conventions of trtexec: warm-up first, then timed iterations (or a duration), percentiles rather than means,
GPU compute time apart from end-to-end latency where the backend reports it. Timing wraps only
`backend.infer` on a preprocessed batch, so the profiler adds one `perf_counter` pair per iteration
(its overhead against a bare loop is measured by `benchmarks/runtime_overhead.py`).

- latency: end to end per batch (`backend.infer`: the input copied in, the model run, the output copied back);
  per image is that divided by the batch size.
- throughput: images / wall time of the whole timed loop (trtexec's "Throughput"), measured, not derived
  from a percentile; with one call at a time it is about batch / mean latency.
- GPU compute: the backend's own timing of the model alone (TensorRT through Polygraphy), where it has one.
- host memory: what the artifact's session adds (`sladkit.runtime.host_memory`), not the process's peak.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sladkit.config import ProfileConfig
from sladkit.runtime.host_memory import HostMemoryWindow
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
    latency_ms: dict[str, float]  # per batch, end to end: min, mean, p50, p90, p95, p99, max
    throughput: float  # images / wall time of the timed loop (trtexec's "Throughput"), images/s
    wall_s: float  # wall time of the timed loop
    host_mb: float  # RSS this artifact's session adds: peak during load and runs up to this row, minus before
    host_memory: dict = field(default_factory=dict)  # baseline_mb, added_mb, load_mb, method
    gpu_compute_ms: dict[str, float] | None = None  # per batch, the backend's own timing, where it has one
    peak_gpu_mb: float | None = None
    power: dict | None = None
    accuracy: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def latency_per_image_ms(self) -> dict[str, float]:
        """`latency_ms` divided by the batch size."""
        return {k: v / self.batch for k, v in self.latency_ms.items()}


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    stats = {"min": a.min(), "mean": a.mean()}
    for p in (50, 90, 95, 99):
        stats[f"p{p}"] = float(np.percentile(a, p))
    stats["max"] = a.max()
    return {k: round(float(v), 4) for k, v in stats.items()}


@dataclass
class Timing:
    """The timed loop of one batch size."""

    samples_ms: list[float]  # end to end, per batch
    gpu_ms: list[float]  # the backend's GPU compute time per batch, where it reports one
    wall_s: float  # from the first timed call's start to the last one's end


def time_backend(
    model: RuntimeModel, batch: np.ndarray, config: ProfileConfig, *, clock=time.perf_counter
) -> Timing:
    """Warm-up, then `config.iterations` timed calls (or `config.duration` seconds of them)."""
    backend = model.backend
    gpu_timer = getattr(backend, "gpu_compute_ms", None)
    for _ in range(config.warmup):
        backend.infer(batch)
    samples, gpu = [], []
    first = end = clock()
    deadline = first + config.duration if config.duration else None
    while (deadline is None and len(samples) < config.iterations) or (
        deadline is not None and end < deadline
    ):
        start = clock()
        backend.infer(batch)
        end = clock()
        samples.append((end - start) * 1e3)
        if gpu_timer is not None and (g := gpu_timer()) is not None:
            gpu.append(g)
    return Timing(samples, gpu, end - first)


def example_batch(model: RuntimeModel, size: int, seed: int = 0) -> np.ndarray:
    """A batch of random images already preprocessed into the model's input layout."""
    rng = np.random.default_rng(seed)
    s = model.artifact.image_size
    pixels = rng.integers(0, 256, size=(size, s, s, 3), dtype=np.uint8)
    return model.preprocess(list(pixels))


def profile_model(
    model: RuntimeModel,
    config: ProfileConfig,
    *,
    accuracy: dict | None = None,
    memory: HostMemoryWindow | None = None,
    clock=time.perf_counter,
) -> list[Measurement]:
    """One row per batch size of `config`.

    Args:
        memory: the window opened before `model` was loaded (`host_mb`); without one, a window opened here
            (then `host_mb` leaves out the load).
        clock: seconds, monotonic (tests pass a fake one).
    """
    from sladkit.runtime.power import PowerMonitor

    own_window = memory is None
    if own_window:
        memory = HostMemoryWindow().__enter__()
    load_mb = memory.added_mb()
    rows = []
    try:
        for size in config.batches:
            batch = example_batch(model, size)
            with PowerMonitor() as power:
                timing = time_backend(model, batch, config, clock=clock)
            samples = timing.samples_ms
            power_summary = power.summary()
            if power_summary.get("available"):
                power_summary["mj_per_image"] = power.energy_mj_per_image(size * len(samples), timing.wall_s)
            host = {**memory.summary(), "load_mb": load_mb if not own_window else None}
            rows.append(
                Measurement(
                    artifact=model.artifact.name,
                    backend=model.backend.name,
                    precision=model.artifact.precision,
                    device=model.backend.device,
                    batch=size,
                    warmup=config.warmup,
                    iterations=len(samples),
                    latency_ms=latency_stats(samples),
                    throughput=round(size * len(samples) / timing.wall_s, 2) if timing.wall_s > 0 else 0.0,
                    wall_s=round(timing.wall_s, 6),
                    host_mb=host["added_mb"],
                    host_memory=host,
                    gpu_compute_ms=latency_stats(timing.gpu_ms) if timing.gpu_ms else None,
                    power=power_summary,
                    accuracy=accuracy,
                    extra={"samples_ms": samples},
                )
            )
    finally:
        if own_window:
            memory.__exit__(None, None, None)
    return rows


TABLE_NOTES = (
    "latency: end to end per batch (ms/img: p50 / batch); gpu p50: the backend's own compute time "
    "(n/a: not reported)",
    "img/s: images / wall time of the timed loop; host MB: RSS the artifact's session adds (peak during its "
    "load and run minus RSS before loading)",
)


def format_accuracy(accuracy: dict | None) -> str:
    """`acc 81.25 (74.10-86.90)` with its 95 % Wilson interval where there is one; `-` without accuracy."""
    if not accuracy:
        return "-"
    text = f"{accuracy['metric']} {accuracy['value']:.2f}"
    if accuracy.get("ci95"):
        low, high = accuracy["ci95"]
        text += f" ({low:.2f}-{high:.2f})"
    return text


def format_table(rows: list[Measurement]) -> str:
    """One table, ratios against the first artifact at the same batch size, then what the columns measure."""
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
        "ms/img",
        "gpu p50",
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
                f"{r.latency_per_image_ms['p50']:.3f}",
                f"{r.gpu_compute_ms['p50']:.3f}" if r.gpu_compute_ms else "n/a",
                f"{r.throughput:.1f}",
                f"{b.latency_ms['p50'] / r.latency_ms['p50']:.2f}x",
                f"{r.host_mb:.1f}",
                f"{total['average_mw']:.0f}" if total else "n/a",
                format_accuracy(r.accuracy),
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*out, *TABLE_NOTES])


def package_versions() -> dict[str, str]:
    """sladkit, Python, numpy and each inference library this process has imported (none imported here)."""
    from importlib import metadata

    from sladkit import __version__

    versions = {"sladkit": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for module in ("onnxruntime", "tensorrt", "polygraphy", "torch"):
        if module in sys.modules:
            version = getattr(sys.modules[module], "__version__", None)
            if version is None:
                try:
                    version = metadata.version(module)
                except metadata.PackageNotFoundError:
                    version = "unknown"
            versions[module] = str(version)
    return versions


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def machine_info() -> dict:
    """The machine and its load when profiling starts (the load average counts other processes too)."""
    from sladkit.runtime.device import device_state, gpu_info

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": load_average(),
        "gpu": gpu_info()["name"],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jetson": device_state(),
    }


def write_json(
    rows: list[Measurement],
    path: str | Path,
    config: ProfileConfig,
    *,
    machine: dict | None = None,
    versions: dict | None = None,
) -> None:
    """The profile report (`docs/design.md`): machine, versions, config and one object per row."""
    from sladkit._atomic import atomic_write_text

    report = {
        "machine": machine or machine_info(),
        "versions": versions or package_versions(),
        "config": asdict(config),
        "results": [asdict(r) for r in rows],
    }
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")

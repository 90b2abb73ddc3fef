"""`profile --plot FILE`: per-image latency distributions and accuracy against latency, one PNG.

Left: one box per artifact and batch size, per-image latency (a batch's end-to-end latency divided by its
size) on a linear axis from 0: box p25-p75, line p50, triangle mean, whiskers min and the p99 of the table,
dots the samples above p99. Right: accuracy (or mIoU) against per-image p50 latency at the first batch
size, with the 95 % Wilson interval where the metric is a proportion of images, on a range that fits the
intervals. Footer: the machine, its load average when profiling started, versions and the timing settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sladkit.runtime.profiler import Measurement


def _box(row: Measurement, samples_ms: list[float]) -> dict:
    """matplotlib `bxp` statistics whose median and upper whisker are the table's p50 and p99."""
    per_image = np.asarray(samples_ms, dtype=np.float64) / row.batch
    latency = row.latency_per_image_ms
    q1, q3 = np.percentile(per_image, [25, 75]) if len(per_image) else (latency["p50"], latency["p50"])
    return {
        "label": f"{row.artifact}\nbatch {row.batch}",
        "med": latency["p50"],
        "mean": latency["mean"],
        "q1": float(q1),
        "q3": float(q3),
        "whislo": latency["min"],
        "whishi": latency["p99"],
        "fliers": per_image[per_image > latency["p99"]],
    }


def footer_text(machine: dict, versions: dict, rows: list[Measurement]) -> str:
    """Two lines: the machine and its load; the versions and the timing settings."""
    load = machine.get("load_average")
    load_text = " / ".join(f"{v:.2f}" for v in load) + " (1/5/15 min) at start" if load else "unknown"
    jetson = machine.get("jetson") or {}
    board = f", {jetson.get('model')}, nvpmodel {jetson.get('nvpmodel')}" if jetson.get("jetson") else ""
    first = (
        f"machine: {machine.get('cpu') or 'unknown CPU'} ({machine.get('cores')} cores), "
        f"GPU {machine.get('gpu') or 'none'}{board}; load average {load_text}"
    )
    timing = ""
    if rows:
        timing = f"; warm-up {rows[0].warmup}, {rows[0].iterations} timed iterations per box"
    second = "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + timing
    return f"{first}\n{second}"


def profile_figure(rows: list[Measurement], samples: list[list[float]], *, machine: dict, versions: dict):
    """The figure (matplotlib `Figure`); `samples[i]` are the per-batch latencies in ms of `rows[i]`."""
    from sladkit.errors import require

    matplotlib = require("matplotlib", "runtime")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(13, 5.2))
    boxes = [_box(r, s) for r, s in zip(rows, samples, strict=True)]
    drawn = latency_ax.bxp(boxes, showmeans=True, showfliers=True, flierprops={"markersize": 3})
    for position, (box, upper) in enumerate(zip(boxes, drawn["whiskers"][1::2], strict=True), start=1):
        upper.set_gid(f"p99 {box['label']}")  # the upper whisker of each box ends at the table's p99
        for value, name in ((box["med"], "p50"), (box["whishi"], "p99")):
            latency_ax.annotate(f"{name} {value:.3g}", (position, value), xytext=(10, 0),
                                textcoords="offset points", fontsize=7, va="center")  # fmt: skip
    latency_ax.set_ylim(bottom=0)
    latency_ax.tick_params(axis="x", labelsize=7, labelrotation=20)
    latency_ax.set_ylabel("latency per image (ms) = batch latency / batch size")
    latency_ax.set_xlabel("artifact and batch size")
    latency_ax.set_title("per-image latency: box p25-p75, line p50, ▲ mean, whiskers min-p99", fontsize=10)

    first_batch = rows[0].batch if rows else None
    points = [r for r in rows if r.accuracy and r.batch == first_batch]
    metric = points[0].accuracy["metric"] if points else None
    lows, highs = [], []
    for r in points:
        x, y = r.latency_per_image_ms["p50"], r.accuracy["value"]
        low, high = r.accuracy.get("ci95") or (y, y)
        lows.append(low)
        highs.append(high)
        accuracy_ax.errorbar(
            x, y, yerr=[[y - low], [high - y]], fmt="o", capsize=4, label=f"{r.artifact} ({r.precision})"
        )
    if points:
        span = max(highs) - min(lows)
        pad = max(2.0, 0.15 * span)
        accuracy_ax.set_ylim(max(0.0, min(lows) - pad), min(100.0, max(highs) + pad))
        accuracy_ax.set_xlim(left=0, right=1.15 * max(r.latency_per_image_ms["p50"] for r in points))
        accuracy_ax.legend(fontsize=7, loc="best")
        images = points[0].accuracy.get("images")
        interval = "95 % Wilson interval" if any(r.accuracy.get("ci95") for r in points) else "no interval"
        accuracy_ax.set_title(f"{metric} on {images} images ({interval})", fontsize=10)
    else:
        accuracy_ax.text(0.5, 0.5, "no accuracy: pass --data", ha="center", va="center")
        accuracy_ax.set_title("accuracy", fontsize=10)
    name = {"acc": "top-1 accuracy (%)", "miou": "mIoU (%)"}.get(metric, "accuracy (%)")
    accuracy_ax.set_ylabel(name)
    accuracy_ax.set_xlabel(f"p50 latency per image at batch {first_batch} (ms)")

    fig.suptitle("sladkit profile")
    fig.text(0.01, 0.01, footer_text(machine, versions, rows), fontsize=7, va="bottom", gid="footer")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def write_plot(
    rows: list[Measurement],
    samples: list[list[float]],
    path: str | Path,
    *,
    machine: dict | None = None,
    versions: dict | None = None,
) -> None:
    """`profile_figure` saved as a PNG at `path`."""
    from sladkit.runtime.profiler import machine_info, package_versions

    fig = profile_figure(
        rows, samples, machine=machine or machine_info(), versions=versions or package_versions()
    )
    import matplotlib.pyplot as plt  # present: profile_figure checked

    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)

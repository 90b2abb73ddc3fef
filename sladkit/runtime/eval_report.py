"""What `sladkit eval` prints, plots (`--plot FILE`, the confusion matrix) and writes (`--json FILE`).

The report is `sladkit.runtime.evaluate.evaluate_report`'s dict; nothing here recomputes a metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MATRIX_TEXT_MAX = 20  # more classes than this: the text lists the largest confusions instead of the matrix
LARGEST_CONFUSIONS = 10


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Text columns: the first (labels) left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def format_eval(name: str, report: dict) -> str:
    """The headline line, top-5, the per-class table and the confusion matrix (or its largest cells)."""
    unit = "images" if report["metric"] == "acc" else "pixels"
    lines = [
        f"{name}: {report['metric']} {report['value']:.2f} % on {report['images']} images "
        f"(split: {report['split']})"
    ]
    if report.get("ci95"):
        low, high = report["ci95"]
        lines[0] += f", 95 % Wilson interval {low:.2f}-{high:.2f} %"
    if "top5" in report:
        lines.append(f"top-5 acc {report['top5']:.2f} %")
    per_class = report["per_class"]
    if report["metric"] == "acc":
        rows = [("class", "images", "correct", "acc %")]
        rows += [
            (c["label"], str(c["images"]), str(c["correct"]), "-" if c["acc"] is None else f"{c['acc']:.2f}")
            for c in per_class
        ]
    else:
        rows = [("class", "pixels", "IoU %")]
        rows += [
            (c["label"], str(c["pixels"]), "-" if c["iou"] is None else f"{c['iou']:.2f}") for c in per_class
        ]
    lines += ["per class:", *_table(rows)]
    matrix = np.asarray(report["confusion_matrix"])
    labels = report["labels"]
    if len(labels) <= MATRIX_TEXT_MAX:
        lines.append(f"confusion matrix ({unit}; rows: true class, columns: predicted class, by index):")
        rows = [("", *(str(i) for i in range(len(labels))))]
        digits = len(str(len(labels) - 1))
        rows += [
            (f"{i:>{digits}} {label}", *(str(v) for v in row))
            for i, (label, row) in enumerate(zip(labels, matrix, strict=True))
        ]
        lines += _table(rows)
    else:
        off = matrix.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None)[:LARGEST_CONFUSIONS]
        cells = [np.unravel_index(i, off.shape) for i in order if off.flat[i] > 0]
        lines.append(f"largest confusions ({unit}; the whole matrix is in --json and --plot):")
        lines += _table(
            [("true", "predicted", unit)] + [(labels[t], labels[p], str(off[t, p])) for t, p in cells]
        )
    return "\n".join(lines)


def write_eval_json(report: dict, path: str | Path, *, artifact: dict) -> None:
    """`report` with the artifact it describes (`name`, `backend`, `precision`)."""
    from sladkit._atomic import atomic_write_text

    document = {
        "artifact": artifact,
        **{k: v for k, v in report.items() if k != "confusion_matrix"},
        "confusion_matrix": {
            "rows": "true class",
            "columns": "predicted class",
            "unit": "images" if report["metric"] == "acc" else "pixels",
            "counts": report["confusion_matrix"],
        },
    }
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def confusion_figure(name: str, report: dict):
    """A matplotlib `Figure`: the confusion matrix normalised per true class (each row sums to 100 %),
    with the counts written in the cells when there are at most 20 classes."""
    from sladkit.errors import require

    matplotlib = require("matplotlib", "runtime")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report["confusion_matrix"], dtype=np.float64)
    labels = report["labels"]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(100.0 * matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = min(4 + 0.45 * len(labels), 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    unit = "images" if report["metric"] == "acc" else "pixels"
    fig.colorbar(image, ax=ax, label=f"% of the true class's {unit}")
    ticks = range(len(labels))
    fontsize = 8 if len(labels) <= MATRIX_TEXT_MAX else 5
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if len(labels) <= MATRIX_TEXT_MAX:
        for (t, p), count in np.ndenumerate(matrix.astype(np.int64)):
            ax.text(p, t, str(count), ha="center", va="center", fontsize=7,
                    color="white" if share[t, p] > 50 else "black")  # fmt: skip
    title = f"{name}: {report['metric']} {report['value']:.2f} % on {report['images']} images"
    if "top5" in report:
        title += f", top-5 {report['top5']:.2f} %"
    ax.set_title(f"{title}\nsplit: {report['split']}", fontsize=9)
    fig.tight_layout()
    return fig


def write_confusion_plot(name: str, report: dict, path: str | Path) -> None:
    """`confusion_figure` saved as a PNG at `path`."""
    fig = confusion_figure(name, report)
    import matplotlib.pyplot as plt  # present: confusion_figure checked

    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)

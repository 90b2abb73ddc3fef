"""The real-data benchmark's targets and Markdown report.

`benchmarks/real_data.py` prepares the datasets and runs every model on them; this module turns its rows
(one per dataset and model, accuracy with a 95 % Wilson interval) into `targets` and the Markdown tables.
"""

from __future__ import annotations

import _common

# the accuracy table's columns, in order
MODELS = ("logreg", "cnn", "probe-teacher", "probe-student", "slad-student", "slad-teacher")


def fmt_acc(row: dict | None) -> str:
    """Accuracy and its interval, `91.2 [89.0, 93.0]` (an en dash for a missing row)."""
    if row is None:
        return "–"
    lo, hi = row["ci95"]
    return f"{row['acc']:.1f} [{lo:.1f}, {hi:.1f}]"


def targets(rows: list[dict]) -> list[dict]:
    """Per dataset: the SLAD student beats logreg on raw pixels, the SLAD teacher beats the SLAD student."""
    by = {(r["dataset"], r["model"]): r for r in rows}
    checks = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for better, worse, what in (
            ("slad-student", "logreg", "SLAD student beats logistic regression on raw pixels"),
            ("slad-teacher", "slad-student", "SLAD teacher beats the SLAD student"),
        ):
            a, b = by.get((dataset, better)), by.get((dataset, worse))
            if a is None or b is None:
                continue
            overlap = a["ci95"][0] <= b["ci95"][1] and b["ci95"][0] <= a["ci95"][1]
            checks.append(
                {
                    "target": f"{dataset}: {what}",
                    "met": a["acc"] > b["acc"],
                    "detail": f"{better} {fmt_acc(a)} vs {worse} {fmt_acc(b)}: {a['acc'] - b['acc']:+.1f} points"
                    + ("; the 95 % intervals overlap" if overlap else ""),
                }
            )
    return checks


def markdown(report: dict, *, c_grid: tuple[float, ...]) -> list[str]:
    """The report's lines; `c_grid` is the logistic regression's grid of C (real_data.C_GRID)."""
    a = report["args"]
    lines = _common.report_header(
        "Real data: the default SLAD recipe against classic baselines",
        report,
        smoke_note="**Smoke run: tiny random models, tiny subsets, 1 epoch; numbers mean nothing.**",
    )
    lines += [
        f"Command: `{report['command']}`. Seed {a['seed']}; pair: {report['pair']}; sladkit train: the default "
        f"recipe ({report['recipe']}); small CNN: {a['cnn_epochs']} epochs. Total benchmark time "
        f"{report['total_s'] / 60:.1f} min.",
        "",
        "## Data (installed from a package registry; nothing downloaded at run time)",
        "",
        "| dataset | package (registry) | version | install | images used | native size | train / val |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in report["datasets"].items():
        lines.append(
            f"| {name} | {d['package']} ({d['registry']}) | {d['version']} | `{d['install']}` | "
            f"{d['images_used']} of {d['images_total']} | {'x'.join(map(str, d['image_shape']))} | "
            f"{d['train']} / {d['val']} |"
        )
    for name, line in report["skipped"].items():
        lines.append(f"| {name} | skipped: {line} | | | | | |")
    lines += [
        "",
        "Each dataset is written once as a sladkit classification folder (PNG at native resolution, seeded "
        "stratified 80/20 split, `dataset.json` with package, version and split hash) by "
        "`benchmarks/_real_datasets.py:prepare`; every model trains on that train split and is scored on "
        "that val split.",
        "",
        "## Val accuracy % [95 % Wilson interval]",
        "",
        "| dataset | val n | logreg, raw pixels | small CNN | probe: teacher | probe: student "
        "| SLAD student | SLAD teacher |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["dataset"], r["model"]): r for r in report["rows"]}
    for name in report["datasets"]:
        n = by.get((name, "logreg"), {}).get("n", "–")
        lines.append(f"| {name} | {n} | " + " | ".join(fmt_acc(by.get((name, m))) for m in MODELS) + " |")
    lines += [
        "",
        "logreg: standardised raw pixels at native resolution, C picked from "
        f"{list(c_grid)} on a stratified 20 % of train (column C below), refit on all of train. Probes: the "
        "frozen pair's [CLS ‖ mean patch tokens] after the final norm, sladkit's eval preprocessing at 32 px, "
        "the same logistic regression. SLAD: final-epoch accuracies (not the best epoch, which would be "
        "chosen on val).",
        "",
        "## Wall time (s) and settings",
        "",
        "| dataset | logreg (C) | small CNN | probe teacher (C) | probe student (C) | sladkit train |",
        "|---|---|---|---|---|---|",
    ]

    def t(name, model, with_c=False):
        r = by.get((name, model))
        if r is None:
            return "–"
        return f"{r['wall_s']:.0f}" + (f" (C={r['C']:g})" if with_c else "")

    for name in report["datasets"]:
        lines.append(
            f"| {name} | {t(name, 'logreg', True)} | {t(name, 'cnn')} | {t(name, 'probe-teacher', True)} "
            f"| {t(name, 'probe-student', True)} | {t(name, 'slad-student')} |"
        )
    lines += ["", "## Targets", "", "| target | met | numbers |", "|---|---|---|"]
    for c in report["targets"]:
        lines.append(f"| {c['target']} | {'yes' if c['met'] else '**no**'} | {c['detail']} |")
    lines.append("")
    return lines

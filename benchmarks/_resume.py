"""Resuming the methods benchmark: each finished run's row is kept under WORK/rows, keyed by a fingerprint.

`benchmarks/methods.py` saves a row as soon as its run finishes (`save_row`); a rerun with the same --work
keeps the rows whose fingerprint (the run's whole configuration and tags, plus a salt made of the weight
files' digests) still matches and trains only the rest (`resumed_rows`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def _fingerprint(job: dict, salt: str) -> str:
    """What makes a run's result reusable: its whole configuration and the weights' contents."""
    text = json.dumps({"config": job["config"], "tags": job["tags"]}, sort_keys=True) + salt
    return hashlib.sha256(text.encode()).hexdigest()


def save_row(folder: Path, job: dict, row: dict, salt: str) -> None:
    """Keep one finished run's row (atomically), so that a killed benchmark resumes after it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(job['config']['out']).name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": _fingerprint(job, salt), "row": row}))
    tmp.replace(path)


def resumed_rows(jobs: list[dict], folder: Path, salt: str) -> tuple[list[dict], list[dict]]:
    """(rows kept from an earlier invocation with the same --work, jobs still to run)."""
    rows, todo = [], []
    for job in jobs:
        path = folder / f"{Path(job['config']['out']).name}.json"
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = None
        if saved and saved.get("fingerprint") == _fingerprint(job, salt):
            rows.append(saved["row"])
        else:
            todo.append(job)
    return rows, todo


def file_sha256(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256 (the weights' part of the salt, and the report's)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


#: methods.py options that do not change what one run computes: which runs, where they go, how they are
#: reported. Every other option must be equal for an earlier report's row to stand for a planned run.
NOT_IN_A_RUN = (
    "results",
    "seeds",
    "tasks",
    "methods",
    "ablations",
    "ablation_seeds",
    "tta_fraction",
    "data_root",
    "teacher_weights",  # compared by contents (the report's weights_sha256)
    "student_weights",
    "work",
    "plan_only",
    "reduced",
    "resume_from",
    "name",
    "compare_with",
)


#: Options added after reports were committed, with the value those reports' runs had.
BEFORE_THE_OPTION = {"targets": "qkv", "train_options": {}}


def _row_key(tags: dict) -> tuple:
    key = {k: tags.get(k) for k in ("group", "task", "method", "seed", "ablation", "value")}
    if key["group"] == "ablation" and key["seed"] is None:
        key["seed"] = 0  # ablation rows of reports made before --ablation-seeds: seed 0
    return tuple(key.values())


def rows_from_report(
    report: dict, jobs: list[dict], args: dict, weights_sha256: dict
) -> tuple[list[tuple[dict, dict]], str | None]:
    """(job, row) pairs of the planned `jobs` that an earlier methods.json `report` already holds, or ([], why
    not) when the report was made with other weights or another setting of an option in a run."""
    if report.get("weights_sha256") != weights_sha256:
        return [], "its weights differ from these (weights_sha256)"
    old = {**BEFORE_THE_OPTION, **report.get("args", {})}
    for key, value in args.items():
        if key not in NOT_IN_A_RUN and key in old and str(old[key]) != str(value):
            return [], f"its --{key.replace('_', '-')} was {old[key]}, not {value}"
    by_key = {_row_key(row): row for row in report.get("rows", [])}
    found = [(job, by_key[_row_key(job["tags"])]) for job in jobs if _row_key(job["tags"]) in by_key]
    return found, None


def read_report(path: Path, option: str) -> dict:
    """An earlier methods.json named by `option` (--resume-from, --compare-with); one line if it is not one."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {option} {path}: cannot read it as JSON ({e})") from None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
        raise SystemExit(f"error: {option} {path}: not a methods.py result (it has no list of rows)")
    return report


def seed_rows(path: Path, jobs: list[dict], args: dict, shas: dict | None, folder: Path, salt: str) -> None:
    """--resume-from: save the rows of the earlier report at `path` into `folder`, where resuming finds them."""
    report = read_report(path, "--resume-from")
    found, why = rows_from_report(report, jobs, args, shas)
    if why:
        raise SystemExit(f"error: --resume-from {path}: {why}; its rows cannot stand for these runs")
    for job, row in found:
        save_row(folder, job, row, salt)
    print(f"--resume-from {path}: {len(found)} of {len(jobs)} planned run(s) found there", flush=True)

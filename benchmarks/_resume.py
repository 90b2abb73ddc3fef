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

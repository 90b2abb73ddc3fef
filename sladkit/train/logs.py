"""A run's metric logs: `metrics.jsonl` (the record), `metrics.csv` (the same table), TensorBoard (optional).

`metrics.jsonl` holds one JSON object per evaluation and is the source of truth; `metrics.csv` is rewritten
from it after every record (columns in order of first appearance, empty where a record lacks one), so the
two never disagree, also after a resumed run trims the records written after its checkpoint. With
`--tensorboard`, every number of a record is also a TensorBoard scalar at the record's global step, in
`RUN/tensorboard/`; a resumed run purges the events after the step it restarts from. `format_record` is
the line printed after every epoch.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sladkit._atomic import atomic_write_text
from sladkit.errors import require
from sladkit.run_folder import METRICS_FILE

CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
NOT_SCALARS = ("stage", "epoch", "step")  # the record's coordinates, not its measurements


def read_records(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def write_records(run_dir: Path, records: list[dict]) -> None:
    """metrics.jsonl and metrics.csv, both atomically."""
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))
    columns = list(dict.fromkeys(key for record in records for key in record))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(run_dir / CSV_FILE, text.getvalue())


def append_record(run_dir: Path, record: dict) -> None:
    write_records(run_dir, [*read_records(run_dir), record])


class TensorBoardLog:
    """TensorBoard scalars of the metric records (torch's SummaryWriter; the `tensorboard` package)."""

    def __init__(self, run_dir: Path, *, purge_step: int | None = None) -> None:
        require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def add(self, record: dict) -> None:
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, global_step=record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def format_record(record: dict, metric: str, epochs: int) -> str:
    """A record as the line the loop prints after every epoch (`-` for a model without a metric)."""

    def pct(key: str) -> str:
        value = record.get(key)
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{record['stage']} epoch {record['epoch']}/{epochs}  loss {record.get('loss', float('nan')):.3f}  "
        f"student {metric} {pct('student_' + metric)}  teacher {metric} {pct('teacher_' + metric)}  "
        f"CKA {record['cka']:.3f}  {record.get('images_per_s', 0):.0f} img/s"
    )

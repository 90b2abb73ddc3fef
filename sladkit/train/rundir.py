"""Training's side of the run folder (`sladkit.run_folder`): choosing it, refusing to clobber, resuming."""

from __future__ import annotations

import shutil
from pathlib import Path

from sladkit._atomic import recover_dir
from sladkit._outdir import check_out
from sladkit.config import RUNTIME_ONLY, TrainConfig
from sladkit.errors import RunDirError
from sladkit.run_folder import METRICS_FILE, STATE_FILE, checkpoint_dir, is_run_folder, read_config


def default_out(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """runs/<method>-<task>, or the first free runs/<method>-<task>-N."""
    base = root / f"{config.method}-{config.task}"
    path, n = base, 2
    while path.exists() and any(path.iterdir()):
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    return path


def check_out_dir(out: Path, config: TrainConfig) -> dict | None:
    """Refuse an output folder this run may not write, before anything is written.

    A new run needs an empty or absent `out`, or `--overwrite` and a run folder sladkit wrote there;
    `--resume` needs a run folder with a checkpoint and the same options. `out` may neither hold nor lie
    inside the data or weights files.

    Returns:
        With `--resume`, the run's config.json as `read_config` checked it (no need to read it again);
        None for a new run.
    """
    inputs = [
        config.data if config.data != "synthetic" else None,
        config.teacher_weights,
        config.student_weights,
    ]
    if not config.resume:
        check_out(
            out,
            overwrite=config.overwrite,
            kind="run folder",
            is_kind=is_run_folder,
            inputs=inputs,
            hint=" or --resume to continue it",
        )
        return None
    check_out(out, overwrite=True, kind="run folder", is_kind=is_run_folder, inputs=inputs)
    saved_config = read_config(out)
    last = checkpoint_dir(out, "last")
    recover_dir(last)
    if not (last / STATE_FILE).is_file():
        raise RunDirError(
            f"cannot resume {out}: {last / STATE_FILE} is missing (the run saved no checkpoint, or it was "
            "removed), so its progress is unknown; start it again with --overwrite, or use another --out"
        )
    # Options a run folder predates were at their defaults then.
    saved = {**TrainConfig().to_dict(), **saved_config["train"]}
    changed = sorted(k for k, v in config.to_dict().items() if k not in RUNTIME_ONLY and saved.get(k) != v)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in changed[:4])
        raise RunDirError(
            f"cannot resume {out}: options differ from the saved run ({details}); resume with the same "
            "options, or start a new run with another --out"
        )
    return saved_config


def clear_for_overwrite(out: Path) -> None:
    """Remove the run folder `--overwrite` replaces (`check_out_dir` has checked it is one)."""
    if out.exists():
        if any(out.iterdir()) and not is_run_folder(out):
            raise RunDirError(f"refusing to delete {out}: it is not a sladkit run folder")
        shutil.rmtree(out)


def trim_metrics(out: Path, step: int) -> None:
    """Drop metric records written after the checkpoint a resumed run restarts from (jsonl and csv)."""
    from sladkit.train.logs import read_records, write_records

    if (out / METRICS_FILE).exists():
        write_records(out, [r for r in read_records(out) if r["step"] <= step])

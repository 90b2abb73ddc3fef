"""The run folder (`docs/design.md`, "Run directory"): choosing it, refusing to clobber, resuming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sladkit.config import RUNTIME_ONLY, TrainConfig
from sladkit.errors import RunDirError

CONFIG_FILE = "config.json"


def default_out(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """runs/<method>-<task>, or the first free runs/<method>-<task>-N."""
    base = root / f"{config.method}-{config.task}"
    path, n = base, 2
    while path.exists() and any(path.iterdir()):
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    return path


def read_run_config(run_dir: Path) -> dict:
    """The resolved config.json of a run folder."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a sladkit run folder (no {CONFIG_FILE})")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path} is unreadable ({e})") from None


def check_out_dir(out: Path, config: TrainConfig) -> None:
    """Refuse an output folder that holds something else, unless --resume/--overwrite says what to do."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; choose a folder")
    occupied = out.is_dir() and any(out.iterdir())
    if config.resume:
        # Options a run folder predates were at their defaults then.
        saved = {**TrainConfig().to_dict(), **read_run_config(out)["train"]}
        changed = sorted(
            k for k, v in config.to_dict().items() if k not in RUNTIME_ONLY and saved.get(k) != v
        )
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in changed[:4])
            raise RunDirError(
                f"cannot resume {out}: options differ from the saved run ({details}); resume with the same "
                "options, or start a new run with another --out"
            )
    elif occupied and not config.overwrite:
        what = "another run" if (out / CONFIG_FILE).exists() else "other files"
        raise RunDirError(
            f"{out} already holds {what}; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --out"
        )


def clear_for_overwrite(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)


def trim_metrics(out: Path, step: int) -> None:
    """Drop metric records written after the checkpoint a resumed run restarts from."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return
    from sladkit._atomic import atomic_write_text

    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))

"""Training stage: `sladkit.train.run(TrainConfig(...)) -> TrainResult` (the CLI's `sladkit train`).

Imported lazily: `sladkit.train.methods` (the method registry the CLI lists) must not pull in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sladkit.config import TrainConfig
    from sladkit.train.pipeline import TrainResult

__all__ = ["TrainResult", "run"]


def run(config: TrainConfig) -> TrainResult | None:
    """Train with `config` and write its run folder; see `sladkit.train.pipeline.run`.

    None in the processes of a multi-process run that do not write the run folder (ranks other than 0).
    """
    from sladkit.train.pipeline import run as _run

    return _run(config)


def __getattr__(name: str):
    if name == "TrainResult":
        from sladkit.train.pipeline import TrainResult

        return TrainResult
    raise AttributeError(f"module 'sladkit.train' has no attribute {name!r}")

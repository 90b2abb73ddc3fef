"""Training stage: `sladkit.train.run(TrainConfig(...)) -> TrainResult` (the CLI's `sladkit train`)."""

from sladkit.train.pipeline import TrainResult, run

__all__ = ["TrainResult", "run"]

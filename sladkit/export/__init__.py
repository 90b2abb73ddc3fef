"""Export stage: `sladkit.export.run(ExportConfig(...)) -> ExportResult` (the CLI's `sladkit export`).

merge -> ONNX -> simplify -> INT8 calibrate -> [TensorRT engine] -> deployment bundle. Imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sladkit.config import ExportConfig
    from sladkit.export.pipeline import ExportResult

__all__ = ["run"]


def run(config: ExportConfig) -> ExportResult:
    """Export a run folder to a deployment bundle; see `sladkit.export.pipeline.run`."""
    from sladkit.export.pipeline import run as _run

    return _run(config)

"""Runtime stage: load a bundle / ONNX / engine / run folder, predict, evaluate, profile. Needs no torch.

import sladkit.runtime
with sladkit.runtime.load("deploy/demo-cpu") as model:
    print(model.predict(["image.jpg"])[0].labels)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sladkit.runtime.model import RuntimeModel

__all__ = ["load"]


def load(
    path, *, backend: str | None = None, model: str | None = None, threads: int | None = None
) -> RuntimeModel:
    """See `sladkit.runtime.model.load`."""
    from sladkit.runtime.model import load as _load

    return _load(path, backend=backend, model=model, threads=threads)

"""One base class for every inference backend (Polygraphy's runners are the model).

`load / infer / close` on every backend; input checks are done once here, so the profiler treats ONNX
Runtime, TensorRT and torch the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict

import numpy as np

from sladkit.errors import SladkitError
from sladkit.runtime.artifacts import Artifact


class BackendError(SladkitError):
    """A backend that cannot run here or cannot run this input."""


def summarise_layers(times: dict[str, list[float]], ops: dict[str, str], iterations: int) -> list[dict]:
    """Per-layer mean ms per inference and share of the total, slowest first."""
    means = {name: sum(values) / iterations for name, values in times.items()}
    total = sum(means.values()) or 1.0
    rows = [
        {"layer": name, "op": ops.get(name, ""), "mean_ms": round(ms, 4), "share": round(ms / total, 4)}
        for name, ms in means.items()
    ]
    return sorted(rows, key=lambda r: -r["mean_ms"])


def layer_times() -> tuple[defaultdict, dict]:
    return defaultdict(list), {}


def add_blocks(rows: list[dict], model_file, onnx_node=None) -> list[dict]:
    """Give each per-layer row the ViT block and role (`sladkit.onnx_blocks`) of the ONNX node it is, None for
    both where it is none of the file's (a runtime's own fused node) or the onnx package is absent (a device).

    Args:
        onnx_node: `onnx_node(layer, blocks)` -> the `blocks` entry of the layer's node (default: its name's).
    """
    try:
        from sladkit.onnx_blocks import node_blocks

        blocks = node_blocks(model_file)
    except ImportError:
        blocks = {}
    for row in rows:
        where = onnx_node(row["layer"], blocks) if onnx_node else blocks.get(row["layer"])
        row["block"], row["role"] = (where.block, where.role) if where else (None, None)
    return rows


class Backend(ABC):
    """Runs one artifact. Subclasses set `name`, `artifact_kinds` and implement `_load`, `_infer`."""

    name: str = ""
    artifact_kinds: tuple[str, ...] = ()
    extra: str = "runtime"  # the pip extra that provides it

    def __init__(self, artifact: Artifact, *, threads: int | None = None) -> None:
        self.artifact = artifact
        self.threads = threads
        self.device = "cpu"
        self.loaded = False

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(usable here, why not) — without loading any model."""
        return True, ""

    def load(self) -> Backend:
        """Load the model; once only (`load()` then `with model:` must not load it twice)."""
        if not self.loaded:
            self._load()
            self.loaded = True
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output (logits) for an input batch in the artifact's layout and dtype."""
        if not self.loaded:
            self.load()
        self.check_input(batch)
        return self._infer(batch)

    def check_input(self, batch: np.ndarray) -> None:
        a = self.artifact
        size = a.image_size
        expected = (size, size, 3) if a.in_graph else (3, size, size)
        dtype = np.uint8 if a.in_graph else np.float32
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected or batch.dtype != dtype:
            raise BackendError(
                f"input of shape {tuple(batch.shape)} {batch.dtype} does not fit {a.name}: expected "
                f"(N, {', '.join(map(str, expected))}) {np.dtype(dtype).name}"
            )
        if a.batch_max is not None and batch.shape[0] > a.batch_max:
            raise BackendError(
                f"batch {batch.shape[0]} is larger than {a.name}'s optimisation profile allows ({a.batch_max}); "
                "use a smaller batch or rebuild the engine with export --batch MIN,OPT,MAX"
            )

    def layer_profile(self, batch: np.ndarray, iterations: int = 20) -> list[dict]:
        """Per-layer times: [{"layer", "op", "mean_ms", "share"}], slowest first."""
        raise BackendError(
            f"per-layer profiles need the onnxruntime, openvino or tensorrt backend, not {self.name}"
        )

    def close(self) -> None:
        self.loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

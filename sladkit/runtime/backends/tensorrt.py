"""TensorRT engines, through Polygraphy's TrtRunner (which handles TensorRT 8.5 and 10 bindings and buffers).

An engine runs only on the TensorRT version and GPU it was built for: `engine.json` (written beside it by
`sladkit export` or `build_engine.sh`) is checked first, and a mismatch says how to rebuild. tensorrt and
polygraphy are imported lazily. Not exercised on our CI machines (no GPU); see the README.
"""

from __future__ import annotations

import numpy as np

from sladkit.runtime.artifacts import INPUT, OUTPUT
from sladkit.runtime.backends.base import Backend, BackendError, layer_times, summarise_layers


def check_engine_fits(engine: str, meta: dict, tensorrt_version: str, gpu: dict) -> None:
    """Refuse an engine built for another TensorRT version or GPU, saying how to rebuild it."""
    built = str(meta.get("tensorrt_version"))
    if built.split(".")[:2] != tensorrt_version.split(".")[:2]:
        raise BackendError(
            f"{engine} was built with TensorRT {built}, this machine has {tensorrt_version}; engines are not "
            "portable: rebuild it here with the bundle's build_engine.sh"
        )
    wanted, here = meta.get("compute_capability"), gpu.get("compute_capability")
    if wanted and here and wanted != here:
        raise BackendError(
            f"{engine} was built for a GPU of compute capability {wanted} ({meta.get('gpu')}), this one is {here} "
            f"({gpu.get('name')}); rebuild it here with the bundle's build_engine.sh"
        )


class TensorRTBackend(Backend):
    name = "tensorrt"
    artifact_kinds = ("engine",)
    extra = "tensorrt"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        from sladkit.export.tensorrt import tensorrt_status

        ok, why = tensorrt_status()
        if ok:
            try:
                import polygraphy  # noqa: F401
            except ImportError:
                return False, "polygraphy is not installed (pip install 'sladkit[tensorrt]')"
        return ok, why

    def _load(self) -> None:
        import tensorrt as trt
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        from sladkit.export.tensorrt import _gpu_info

        gpu = _gpu_info()
        check_engine_fits(
            self.artifact.model_file.name, self.artifact.engine_meta or {}, str(trt.__version__), gpu
        )
        self.runner = TrtRunner(EngineFromBytes(self.artifact.model_file.read_bytes()))
        self.runner.activate()
        self.device = f"cuda ({gpu.get('name') or 'GPU'})"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.runner.infer({INPUT: batch})[OUTPUT])

    def layer_profile(self, batch: np.ndarray, iterations: int = 20) -> list[dict]:
        """TensorRT's per-layer times through an IProfiler on the runner's execution context."""
        import tensorrt as trt

        times, ops = layer_times()

        class _Profiler(trt.IProfiler):
            def __init__(self):
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name, ms):
                times[layer_name].append(ms)

        self.check_input(batch)
        self.runner.context.profiler = _Profiler()
        for _ in range(iterations):
            self.runner.infer({INPUT: batch})
        self.runner.context.profiler = None
        return summarise_layers(times, ops, iterations)

    def gpu_compute_ms(self) -> float | None:
        """Polygraphy's own timing of the last inference (without Python-side overhead)."""
        last = getattr(self.runner, "last_inference_time", None)
        return None if last is None or last() is None else 1e3 * last()

    def close(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None and runner.is_active:
            runner.deactivate()
        super().close()

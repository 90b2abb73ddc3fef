"""TensorRT engines, through Polygraphy's TrtRunner (which handles TensorRT 8.5 and 10 bindings and buffers).

An engine runs only on the TensorRT version and GPU it was built for: its stamp in `engine.json` (written
beside it by `sladkit export` or `build_engine.sh`; its SHA-256 was checked when the artifact was resolved) is
checked against this machine first, by NVIDIA's rules (`sladkit.engine_stamp.check_fits`), and a mismatch
names the rule and says how to rebuild. tensorrt and polygraphy are imported lazily. Exercised here against a
stand-in tensorrt and TrtRunner only (no GPU); see the README.
"""

from __future__ import annotations

import numpy as np

from sladkit.engine_stamp import check_fits
from sladkit.runtime.artifacts import INPUT, OUTPUT
from sladkit.runtime.backends.base import Backend, BackendError, layer_times, summarise_layers


class TensorRTBackend(Backend):
    name = "tensorrt"
    artifact_kinds = ("engine",)
    extra = "tensorrt"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        from sladkit.runtime.device import tensorrt_status

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

        from sladkit.runtime import device

        engine, version, gpu = self.artifact.model_file, str(trt.__version__), device.gpu_info()
        check_fits(engine.name, self.artifact.engine_meta, version, gpu)
        try:
            self.runner = TrtRunner(EngineFromBytes(engine.read_bytes()))
            self.runner.activate()
        except Exception as e:  # Polygraphy and TensorRT raise their own exception types
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(
                f"TensorRT {version} cannot load {engine} ({message}); rebuild it here with the bundle's "
                "build_engine.sh"
            ) from None
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

"""OpenVINO's CPU plugin: runs sladkit's ONNX files, and the CPU INT8 model in its `openvino` form.

Why this runtime: OpenVINO fuses a Q/DQ ViT into integer kernels well beyond ONNX Runtime's integer GEMMs
(LayerNorm, GELU, the attention), so the same standard Q/DQ ONNX runs 1.4-2.2x faster than ONNX Runtime's
dynamic quantization of the model on a ViT-S/14 (`benchmarks/results/cpu_int8.md`). Optional: `pip install
'sladkit[openvino]'`, imported only here, when used.

Two choices, both measured (`benchmarks/results/cpu_int8_forms.md`, "OpenVINO"):
- each input shape gets its own compiled model (`OpenVINOSession`): compiled for a static batch, a ViT-S/14
  ran 1.2-2.2x faster than compiled once for a dynamic batch. The first run at a new batch compiles it.
- `INFERENCE_PRECISION_HINT` is f32: the float parts compute in FP32, as in ONNX Runtime, so an FP32 model
  gives FP32 results and the accuracy gate sees on the exporting machine what any other CPU computes.
  OpenVINO's own default on CPUs with AVX512-BF16 or AMX is bf16 (FP32 model: max logit error 1.7 % of the
  largest logit on the ViT-S/14).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sladkit.runtime.artifacts import INPUT, OUTPUT
from sladkit.runtime.backends.base import Backend, BackendError

INSTALL = "pip install 'sladkit[openvino]'"
#: compiled models kept per session (one per batch size seen); the oldest goes when a new one is needed
MAX_SHAPES = 4


def openvino_available() -> tuple[bool, str]:
    """(importable here, why not)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False, f"openvino is not installed ({INSTALL})"
    return True, ""


def config(threads: int | None = None) -> dict[str, str]:
    """The CPU plugin's options of every OpenVINO model sladkit compiles (the module docstring says why)."""
    options = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        options["INFERENCE_NUM_THREADS"] = str(threads)
    return options


class OpenVINOSession:
    """An ONNX file compiled by OpenVINO for the CPU, with ONNX Runtime's `run(outputs, feeds)`, so that export's
    helpers (`run_onnx`, the accuracy gate, the timing of the CPU INT8 forms) take either."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ok, why = openvino_available()
        if not ok:
            raise BackendError(f"OpenVINO cannot run {path}: {why}")
        import openvino as ov

        self.path = Path(path)
        self.core = ov.Core()
        self.config = config(threads)
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"OpenVINO cannot read {path}: {str(e).splitlines()[0]}") from None
        self.input = self.model.inputs[0].get_any_name()
        self.compiled: dict[tuple, object] = {}

    def request(self, shape: tuple[int, ...]):
        """The infer request of the model compiled for input `shape` (compiled on first use)."""
        if shape not in self.compiled:
            if len(self.compiled) >= MAX_SHAPES:
                self.compiled.pop(next(iter(self.compiled)))
            model = self.model.clone()
            model.reshape({self.input: list(shape)})
            self.compiled[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return self.compiled[shape]

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds[INPUT] if INPUT in feeds else next(iter(feeds.values()))
        request = self.request(tuple(x.shape))
        request.infer({self.input: np.ascontiguousarray(x)})
        return [np.array(request.get_output_tensor(0).data, copy=True)]

    def ports(self) -> tuple[list, list]:
        """[(name, dtype, shape)] of the inputs and outputs, as `bundle.check_model_io` takes them."""

        def describe(port) -> tuple:
            shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            return port.get_any_name(), np.dtype(port.get_element_type().to_dtype()).name, shape

        return [describe(p) for p in self.model.inputs], [describe(p) for p in self.model.outputs]


class OpenVINOBackend(Backend):
    name = "openvino"
    artifact_kinds = ("bundle", "onnx")
    extra = "openvino"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return openvino_available()

    def _load(self) -> None:
        self.session = OpenVINOSession(self.artifact.model_file, self.threads)
        if self.artifact.kind == "bundle":
            from sladkit.bundle import check_model_io

            inputs, outputs = self.session.ports()
            check_model_io(
                self.artifact.manifest, self.artifact.model_file, labels=None, inputs=inputs, outputs=outputs
            )

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: batch})[0]

    def close(self) -> None:
        self.session = None
        super().close()

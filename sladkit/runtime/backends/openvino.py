"""OpenVINO's CPU plugin: runs sladkit's ONNX files, and the CPU INT8 model in its `openvino` form.

Why this runtime: OpenVINO fuses a Q/DQ ViT into integer kernels well beyond ONNX Runtime's integer GEMMs
(LayerNorm, GELU, the attention), so the same standard Q/DQ ONNX runs 1.2-1.6x faster than ONNX Runtime's
dynamic quantization of the model on a ViT-S/14 at batch 1-8 (`benchmarks/results/cpu_int8.md`). Optional: `pip install
'sladkit[openvino]'`, imported only here, when used.

Two choices, both measured (`benchmarks/results/cpu_int8_forms.md`, "OpenVINO"):
- each input shape gets its own compiled model (`OpenVINOSession`): compiled for a static batch, a ViT-S/14
  ran 1.6-2.3x faster than compiled once for a dynamic batch. The first run at a new batch compiles it.
- `INFERENCE_PRECISION_HINT` is f32: the float parts compute in FP32, as in ONNX Runtime, so an FP32 model
  gives FP32 results and the accuracy gate sees on the exporting machine what any other CPU computes.
  OpenVINO's own default on CPUs with AVX512-BF16 or AMX is bf16 (FP32 model: max logit error 1.7 % of the
  largest logit on the ViT-S/14).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sladkit.runtime.artifacts import INPUT, OUTPUT
from sladkit.runtime.backends.base import Backend, BackendError, add_blocks, layer_times, summarise_layers

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
        self.input_dtype = np.dtype(self.model.inputs[0].get_element_type().to_dtype())
        self.compiled: dict[tuple, object] = {}

    def compile(self, shape: tuple[int, ...], **extra: str):
        """An infer request of the model compiled for input `shape` (`extra`: more plugin options)."""
        model = self.model.clone()
        try:
            model.reshape({self.input: list(shape)})
            return self.core.compile_model(model, "CPU", {**self.config, **extra}).create_infer_request()
        except Exception as e:  # OpenVINO's own RuntimeError subclasses
            raise BackendError(
                f"OpenVINO cannot compile {self.path} for input {list(shape)}: {str(e).splitlines()[0]}"
            ) from None

    def request(self, shape: tuple[int, ...]):
        """The infer request of the model compiled for input `shape` (compiled on first use)."""
        if shape not in self.compiled:
            if len(self.compiled) >= MAX_SHAPES:
                self.compiled.pop(next(iter(self.compiled)))
            self.compiled[shape] = self.compile(shape)
        return self.compiled[shape]

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The model's output for the input in `feeds`, copied out. The input is handed to OpenVINO as a tensor
        over the array's own memory (`set_input_tensor`), not through `infer(dict)`, which copies it in and the
        outputs out into a dict on every call: 8-11 % of a sub-millisecond call (the demo student, batch 1). The
        request's input tensor points into `x` only until the next run sets its own: nothing reads a request's
        input after `run` returns."""
        import openvino as ov

        x = feeds[INPUT] if INPUT in feeds else next(iter(feeds.values()))
        # a C-contiguous, writeable array of the model's input type (infer(dict) converted too; OpenVINO's tensor
        # refuses a read-only array, e.g. np.frombuffer's or a memory map's)
        x = np.require(x, self.input_dtype, ["C_CONTIGUOUS", "WRITEABLE"])
        request = self.request(tuple(x.shape))
        request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        request.infer()
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

    def layer_profile(self, batch: np.ndarray, iterations: int = 20) -> list[dict]:
        """OpenVINO's performance counters (`PERF_COUNT`), on a separate compiled model so the timed one is
        untouched. Its layers are OpenVINO's fused nodes, named after one ONNX node each (of the ViT block
        that node belongs to, where the name is one of the file's)."""
        import openvino as ov

        self.check_input(batch)
        request = self.session.compile(tuple(batch.shape), PERF_COUNT="YES")
        data = {self.session.input: np.ascontiguousarray(batch)}
        request.infer(data)  # warm-up, not counted
        times, ops = layer_times()
        for _ in range(iterations):
            request.infer(data)
            for info in request.profiling_info:
                if info.status == ov.ProfilingInfo.Status.EXECUTED:
                    times[info.node_name].append(info.real_time.total_seconds() * 1e3)
                    ops[info.node_name] = info.node_type
        return add_blocks(summarise_layers(times, ops, iterations), self.artifact.model_file, _onnx_node)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: batch})[0]

    def close(self) -> None:
        self.session = None
        super().close()


def _onnx_node(name: str, blocks: dict):
    """The ONNX node an OpenVINO layer is named after: OpenVINO appends its own parts to the name of the node it
    fused into (`Gemm_2/WithoutBiases/DequantizationMultiply`, `/patch_embed/proj/Conv/WithoutBiases`)."""
    parts = name.split("/")
    for end in range(len(parts), 0, -1):
        where = blocks.get("/".join(parts[:end]))
        if where:
            return where
    return None

"""NVIDIA Model Optimizer (ModelOpt) as the optional INT8 Q/DQ quantizer of TensorRT artifacts.

`sladkit export --quantizer modelopt` hands the FP32 ONNX model to `modelopt.onnx.quantization.quantize`
instead of sladkit's own quantizer (`quantize.quantize_qdq`). ModelOpt is fed sladkit's calibration: the
ranges go in as a TensorRT calibration cache (`calib_cache.write_calibration_cache`) through ModelOpt's
documented `calibration_cache_path`, whose scales replace the ones ModelOpt computes for every tensor the
cache names. The result goes through the same accuracy gate and `check_tensorrt_qdq` as sladkit's own.

ModelOpt is imported lazily: it pulls torch, an older onnx pin and (on x86 Linux) onnxruntime-gpu, so it
lives in its own extra, `pip install 'sladkit[modelopt]'`, outside the default install.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from sladkit.errors import MissingDependencyError
from sladkit.export.calib_cache import write_calibration_cache

EXTRA = "modelopt"
MISSING = f"--quantizer modelopt needs NVIDIA ModelOpt: pip install 'sladkit[{EXTRA}]'"
#: TensorRT version written into the cache header; ModelOpt skips the header line.
CACHE_TENSORRT = "10.3.0"
#: What ModelOpt's calibration logs as an ERROR on a machine without NVIDIA's driver (NVML absent), where it
#: then counts 0 GPUs and goes on (`modelopt/onnx/quantization/ort_patching.py`): noise on a CPU export.
NO_NVML = "Failed to get GPU count: NVML Shared Library Not Found"


def _modelopt_quantization():
    """`modelopt.onnx.quantization`, or a MissingDependencyError naming the extra (one line)."""
    try:
        import modelopt.onnx.quantization as quantization
    except ImportError:
        raise MissingDependencyError(MISSING) from None
    return quantization


def modelopt_version() -> str:
    """The installed ModelOpt's version (raises MissingDependencyError when it is absent)."""
    _modelopt_quantization()
    import modelopt

    return modelopt.__version__


def check_available() -> None:
    """Fail early, before training weights are loaded, when ModelOpt is not installed."""
    _modelopt_quantization()


def _input_zeros(model_path: Path) -> np.ndarray:
    """One all-zero input at the model's shape (batch 1): ModelOpt wants calibration data to run its own
    pass, whose scales the calibration cache then replaces."""
    graph_input = onnx.load(str(model_path), load_external_data=False).graph.input[0]
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in graph_input.type.tensor_type.shape.dim]
    return np.zeros(dims, dtype=np.float32)


def quantize_modelopt(
    model_path: str | Path,
    out_path: str | Path,
    calibration,
    *,
    exclude_nodes: list[str] | None = None,
    include_nodes: list[str] | None = None,
) -> None:
    """Explicit Q/DQ INT8 by ModelOpt with sladkit's activation ranges; same signature as `quantize_qdq`.

    Args:
        calibration: a `quantize.Calibration`; its amax values become the calibration cache ModelOpt reads.
        exclude_nodes: nodes kept in float (the accuracy gate's per-block fallback).
        include_nodes: quantize only these nodes (the gate's one-block-at-a-time sensitivity pass).
    """
    quantization = _modelopt_quantization()
    model_path, out_path = Path(model_path), Path(out_path)
    cache = out_path.with_suffix(".modelopt-calib.cache")
    write_calibration_cache(cache, calibration.amax, tensorrt_version=CACHE_TENSORRT)
    with _without_no_nvml_error():
        quantization.quantize(
            str(model_path),
            quantize_mode="int8",
            calibration_data=_input_zeros(model_path),
            calibration_method="max",  # its own pass is replaced by the cache; max is the cheapest
            calibration_cache_path=str(cache),
            calibration_eps=["cpu"],
            nodes_to_quantize=list(include_nodes) if include_nodes is not None else None,
            nodes_to_exclude=list(exclude_nodes or []),
            high_precision_dtype="fp32",  # its default fp16 would change the float parts against FP32
            output_path=str(out_path),
            log_level="WARNING",
        )
    cache.unlink(missing_ok=True)
    fold_weight_quantizers(out_path)


class _NoNvmlError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != NO_NVML


@contextlib.contextmanager
def _without_no_nvml_error():
    """Drop `NO_NVML`, and only it, from ModelOpt's ONNX logger (every other message, errors included, stays)."""
    logger, no_nvml = logging.getLogger("modelopt.onnx"), _NoNvmlError()
    logger.addFilter(no_nvml)
    try:
        yield
    finally:
        logger.removeFilter(no_nvml)


def fold_weight_quantizers(path: Path) -> int:
    """Replace each QuantizeLinear of a float weight initializer by its INT8 result; returns how many.

    ModelOpt leaves weights in FP32 behind a QuantizeLinear (per output channel); sladkit's quantizer stores
    them already quantized, as INT8 initializers that feed the DequantizeLinear. Folding gives the same form
    (a quarter of the weight bytes, the per-channel scale on a constant DQ input, as `check_tensorrt_qdq`
    requires) with the same values: ONNX QuantizeLinear is round-half-to-even, then saturate.
    """
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    consumers = Counter(name for node in graph.node for name in node.input)
    folded = []
    for node in graph.node:
        names = list(node.input) + [""] * (3 - len(node.input))
        weight, scale, zero = names[:3]
        if node.op_type != "QuantizeLinear" or weight not in initializers or scale not in initializers:
            continue
        if (
            not zero
            or initializers.get(zero) is None
            or initializers[zero].data_type != onnx.TensorProto.INT8
        ):
            continue
        w = numpy_helper.to_array(initializers[weight]).astype(np.float64)
        s = numpy_helper.to_array(initializers[scale]).astype(np.float64)
        z = numpy_helper.to_array(initializers[zero]).astype(np.float64)
        if s.size > 1:  # per channel along `axis` (default 1)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % w.ndim
            shape = [1] * w.ndim
            shape[axis] = s.size
            s, z = s.reshape(shape), z.reshape(shape)
        q = np.clip(np.rint(w / s) + z, -128, 127).astype(np.int8)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
        if consumers[node.input[0]] == 1:
            graph.initializer.remove(initializers[node.input[0]])
    if folded:
        onnx.save(model, str(path))
    return len(folded)

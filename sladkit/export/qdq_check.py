"""The Q/DQ types and parameters TensorRT takes, checked on an ONNX model before it goes into a bundle.

No TensorRT runs here, so its rules are written down (`docs/deploy-facts.md`; TensorRT's `IQuantizeLayer` /
`IDequantizeLayer` documentation and the ONNX-TensorRT operator matrix):

- DequantizeLinear's input is INT8 (FP8 E4M3 for FP8 artifacts): never INT32 (ONNX Runtime's quantized
  biases, NVIDIA/TensorRT#4542, onnx/onnx-tensorrt#850), UINT8, INT16;
- QuantizeLinear writes that same type (its zero point's type);
- zero points are 0 (TensorRT's quantization is symmetric);
- scales are positive and finite, and constant;
- per-tensor scales on activations; a per-channel scale only on a constant (weight) input, along its
  output-channel axis (Conv/ConvTranspose weight axis 0, MatMul weight axis 1, Gemm `transB ? 0 : 1`),
  with one scale per channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

#: DequantizeLinear input / QuantizeLinear output types TensorRT takes, per artifact precision.
ALLOWED_TYPES = {"int8": (TensorProto.INT8,), "fp8": (TensorProto.FLOAT8E4M3FN,)}


def _axis(node, rank: int) -> int:
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    return axis + rank if axis < 0 else axis


def _out_channel_axis(consumer) -> int | None:
    if consumer.op_type in ("Conv", "ConvTranspose"):
        return 0 if consumer.op_type == "Conv" else 1
    if consumer.op_type == "MatMul":
        return 1
    if consumer.op_type == "Gemm":
        return 0 if next((a.i for a in consumer.attribute if a.name == "transB"), 0) else 1
    return None


def check_tensorrt_qdq(model: onnx.ModelProto | str | Path, *, precision: str = "int8") -> list[str]:
    """Every Q/DQ node of `model` that TensorRT cannot take, one line each (empty: all fine).

    Args:
        model: the Q/DQ model (or its path).
        precision: "int8" or "fp8": the type every Q/DQ must carry.
    """
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    allowed = ALLOWED_TYPES[precision]
    allowed_names = "/".join(TensorProto.DataType.Name(t) for t in allowed)
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def array(name: str) -> np.ndarray | None:
        if name in init:
            return numpy_helper.to_array(init[name])
        if name in constants:
            return numpy_helper.to_array(next(a.t for a in constants[name].attribute if a.name == "value"))
        return None

    def dtype(name: str) -> int | None:
        if name in init:
            return init[name].data_type
        if name in constants:
            return next(a.t for a in constants[name].attribute if a.name == "value").data_type
        return None

    problems: list[str] = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label = f"{node.op_type} {node.name or node.output[0]!r}"
        scale_name = node.input[1] if len(node.input) > 1 else ""
        zero_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        scale = array(scale_name)
        if scale is None:
            problems.append(f"{label}: scale {scale_name!r} is not a constant")
            continue
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            problems.append(f"{label}: scale must be positive and finite (min {float(np.min(scale)):.3g})")
        # The quantized type: the DQ input's, or the Q's zero point's (UINT8 when a Q has none).
        if node.op_type == "DequantizeLinear":
            x = node.input[0]
            if x in init or x in constants:
                qtype = dtype(x)
            elif x in producer and producer[x].op_type == "QuantizeLinear":
                q_zero = producer[x].input[2] if len(producer[x].input) > 2 else ""
                qtype = dtype(q_zero) if q_zero else TensorProto.UINT8
            else:
                problems.append(f"{label}: input {x!r} comes neither from a constant nor a QuantizeLinear")
                qtype = None
        else:
            qtype = dtype(zero_name) if zero_name else TensorProto.UINT8
        if qtype is not None and qtype not in allowed:
            problems.append(
                f"{label}: {TensorProto.DataType.Name(qtype)} quantization; TensorRT takes {allowed_names} here"
                + (" (an INT32 bias: quantize with QuantizeBias off)" if qtype == TensorProto.INT32 else "")
            )
        if zero_name:
            zero = array(zero_name)
            if zero is None:
                problems.append(f"{label}: zero point {zero_name!r} is not a constant")
            elif np.any(zero.astype(np.float64) != 0):
                problems.append(
                    f"{label}: zero point must be 0 (TensorRT is symmetric), got {zero.ravel()[:4]}"
                )
        if scale.size > 1:
            weight = array(node.input[0]) if node.op_type == "DequantizeLinear" else None
            if weight is None:
                problems.append(f"{label}: per-channel scale ({scale.size}) on an activation; use one scale")
                continue
            axis = _axis(node, weight.ndim)
            if not 0 <= axis < weight.ndim or scale.shape != (weight.shape[axis],):
                problems.append(
                    f"{label}: scale of shape {scale.shape} does not fit axis {axis} of a {weight.shape} weight"
                )
                continue
            for consumer in consumers.get(node.output[0], []):
                want = _out_channel_axis(consumer)
                if want is not None and consumer.input[1] == node.output[0] and axis != want:
                    problems.append(
                        f"{label}: per-channel axis {axis}, but {consumer.op_type} {consumer.name!r} needs its "
                        f"output channels (axis {want})"
                    )
    return problems

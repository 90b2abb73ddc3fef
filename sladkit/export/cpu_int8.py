"""The CPU INT8 artifact (`model.int8-cpu.onnx`): static U8S8 Q/DQ for ONNX Runtime's CPU provider.

Form (measured in `benchmarks/cpu_int8.py`): the inputs of every MatMul/Gemm/Conv quantized, the two
attention MatMuls (Q.K^T and attention.V) included; U8 activations with ranges from sladkit's calibration
(`--calib-method`, on the run's training images or `--calib-data`), S8 symmetric per-channel weights, float
outputs. ONNX Runtime fuses each DequantizeLinear -> MatMul/Gemm pair into its integer kernels (QGemm,
MatMulIntegerToFloat, QLinearMatMul); LayerNorm, Softmax, GELU and the residual Adds stay float.

Why not ONNX Runtime's dynamic quantization (the former artifact): it is what a user gets in one line, and
its activation ranges are taken from each batch, so a model's output (and accuracy) depends on what else
is in the batch. The static form gives the same output for an image whatever the batch, is calibrated
like the TensorRT artifact (with the same gate and per-block fallback), and is a plain Q/DQ model other
runtimes read. Its speed (benchmarks/results/cpu_int8.md, quiet machine): level with dynamic on a ViT-S/14 at
224 px (0.97x / 1.02x at batch 1 / 8; both run the same VNNI integer GEMMs, the attention MatMuls are INT8
only in the static form), about 15 % slower on the tiny 32 px student, whose time is mostly per-node overhead
(its QuantizeLinear nodes).

Why U8S8: on x86-64 ONNX Runtime's integer GEMMs take U8 activations and S8 weights (its QDQ default S8S8
runs slower than FP32 there, `docs/deploy-facts.md`); on ARM64 we expect U8S8 and S8S8 to be exact (UDOT/SDOT
kernels; not tested: no ARM64 machine here). `reduce_range` is left off: the 7-bit weights it makes only help x86 CPUs without VNNI, where the
16-bit intermediate sums of VPMADDUBSW can saturate (ONNX Runtime's `quantize_static` docstring); on such
a machine the accuracy gate, run with ONNX Runtime on the exporting machine, sees the saturated model.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from sladkit.export.quantize import QUANTIZED_OPS, Calibration, _ort_method, _without_preprocessing_hint

#: Ops whose output is never negative: their U8 range starts at 0 (a Softmax output gets all 256 levels).
NONNEGATIVE_OUTPUTS = ("Softmax", "Relu", "Sigmoid")
FORM = "static U8S8 Q/DQ (U8 activations, per-channel S8 weights; MatMul/Gemm/Conv incl. attention)"


def cpu_ranges(model_path: str | Path, amax: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(low, high) per tensor for U8 activations: (-amax, amax), or (0, amax) where the tensor is the output
    of a `NONNEGATIVE_OUTPUTS` op (sladkit's calibration stores |max| only)."""
    model = onnx.load(str(model_path), load_external_data=False)
    nonnegative = {n.output[0] for n in model.graph.node if n.op_type in NONNEGATIVE_OUTPUTS and n.output}
    return {name: (0.0 if name in nonnegative else -a, a) for name, a in amax.items()}


def _save_ranges(ranges: dict[str, tuple[float, float]], method: str, path: Path) -> None:
    import numpy as np
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {n: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for n, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(_ort_method(method), data), path)


def quantize_cpu(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Calibration,
    *,
    exclude_nodes: list[str] | None = None,
    include_nodes: list[str] | None = None,
) -> None:
    """Static U8S8 Q/DQ for ONNX Runtime on CPUs (the module docstring says why this form).

    Same signature as `quantize_qdq`, so `quantize_with_gate` and its per-block fallback take either.

    Args:
        model_path: the float model, initializers unshared (`unshare_initializers`), as calibrated.
        calibration: sladkit's ranges of every tensor of `model_path`.
        exclude_nodes / include_nodes: MatMul/Gemm/Conv nodes kept float / the only ones quantized.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    cache = Path(calibration.cache_path).with_suffix(".cpu.json")
    _save_ranges(cpu_ranges(model_path, calibration.amax), calibration.method, cache)
    with _without_preprocessing_hint():
        quantize_static(
            str(model_path),
            str(out_path),
            None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=include_nodes,
            nodes_to_exclude=exclude_nodes or [],
            calibrate_method=_ort_method(calibration.method),
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),  # inputs only
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # output channels of a (in, out) weight
            },
            calibration_cache_path=cache,
        )


def quantize_cpu_dynamic(model_path: str | Path, out_path: str | Path) -> None:
    """ONNX Runtime's dynamic quantization (U8 activations per batch, S8 weights, MatMul/Gemm): the one-line
    baseline the CPU artifact is measured against (`benchmarks/cpu_int8.py`); no bundle holds it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _without_preprocessing_hint():
        quantize_dynamic(
            str(model_path),
            str(out_path),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=False,
        )

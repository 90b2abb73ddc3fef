"""Steps 4-5 of export: INT8 calibration, explicit Q/DQ for TensorRT, a CPU INT8 model, the accuracy gate.

TensorRT (`docs/deploy-facts.md`): symmetric INT8 (zero point 0), per-channel weights, per-tensor
activations, and only the inputs of MatMul/Gemm/Conv quantized: LayerNorm, Softmax, GELU and residual
Adds stay float, since ViTs lose accuracy when those are quantized.

Calibration (`sladkit.export.calibrate`) is done once over *every* tensor, so the same ranges feed the
Q/DQ model (through ONNX Runtime's calibration cache) and TensorRT's calibration cache.

CPU (ONNX Runtime on x86/ARM): symmetric S8S8 Q/DQ runs slower than FP32 there; the CPU artifact
(`sladkit.export.cpu_int8`) is static U8S8 Q/DQ from the same calibration or ONNX Runtime's dynamic
quantization, each under the same gate, by default the one measured faster on the exporting machine.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from sladkit._progress import progress
from sladkit.bundle import ACCURACY_BATCH
from sladkit.export.calibrate import calibrate_int8, calibrate_int8_methods, save_ort_ranges
from sladkit.export.onnx import onnxruntime_session, run_onnx
from sladkit.metrics import task_metric
from sladkit.onnx_blocks import OTHER, block_order, node_blocks

QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")


def _ort_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}.get(
        name, CalibrationMethod.Percentile
    )


#: `--calib-method auto` scores each method on at most this many calibration images
AUTO_SCORE_IMAGES = 128


@dataclass
class Calibration:
    """amax of every tensor, and the same ranges as ONNX Runtime's cache file (reused by every quantization).

    Attributes:
        scores: for `auto`, {method: mean squared logit error of its Q/DQ model against FP32} (else None).
    """

    method: str
    amax: dict[str, float]
    cache_path: Path
    images: int
    scores: dict[str, float] | None = None

    @classmethod
    def run(
        cls, model_path: str | Path, images: np.ndarray, method: str, cache_path: str | Path
    ) -> Calibration:
        """Calibrate `model_path` on `images` with `method`, or with "auto": every method from one collection
        (`calibrate_int8_methods`), each scored by the mean squared error of its TensorRT Q/DQ model's logits
        against FP32 on the first `AUTO_SCORE_IMAGES` calibration images (training images, never the gate's
        validation images), the lowest kept."""
        if method != "auto":
            amax = calibrate_int8(model_path, images, method)
            save_ort_ranges(amax, method, cache_path)
            return cls(method=method, amax=amax, cache_path=Path(cache_path), images=len(images))
        candidates = calibrate_int8_methods(model_path, images)
        sample = images[:AUTO_SCORE_IMAGES]
        reference = run_onnx(onnxruntime_session(model_path), sample)
        scores = {}
        with tempfile.TemporaryDirectory(prefix="sladkit-calib-") as tmp:
            for name, amax in candidates.items():
                ranges, qdq = Path(tmp) / f"{name}.json", Path(tmp) / f"{name}.onnx"
                save_ort_ranges(amax, name, ranges)
                quantize_qdq(
                    model_path, qdq, cls(method=name, amax=amax, cache_path=ranges, images=len(images))
                )
                error = run_onnx(onnxruntime_session(qdq), sample) - reference
                scores[name] = float(np.mean(error**2))
        best = min(scores, key=scores.get)
        save_ort_ranges(candidates[best], best, cache_path)
        return cls(
            method=best, amax=candidates[best], cache_path=Path(cache_path), images=len(images), scores=scores
        )


def unshare_initializers(model_path: str | Path, out_path: str | Path) -> None:
    """Give each node its own copy of shared initializers.

    Graph optimizers merge equal constants (e.g. a zero LayerNorm bias and a zero Gemm bias); quantizing
    the Gemm's copy would then put a DequantizeLinear in front of the LayerNorm too.
    """
    model = onnx.load(str(model_path))
    initializers = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__{node.name or len(model.graph.initializer)}_{k}"
                model.graph.initializer.append(copy)
                node.input[k] = copy.name
            seen.add(name)
    onnx.save(model, str(out_path))


def quantizable_nodes(model_path: str | Path) -> list[str]:
    """Names of the MatMul/Gemm/Conv nodes (the only ones quantized by default)."""
    return [
        n.name
        for n in onnx.load(str(model_path), load_external_data=False).graph.node
        if n.op_type in QUANTIZED_OPS
    ]


def quantize_qdq(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Calibration,
    *,
    exclude_nodes: list[str] | None = None,
    include_nodes: list[str] | None = None,
) -> None:
    """Explicit Q/DQ INT8 for TensorRT: symmetric, per-channel weights, MatMul/Gemm/Conv inputs only."""
    quantize_static_qdq(
        model_path,
        out_path,
        calibration.method,
        calibration.cache_path,
        unsigned_activations=False,
        include_nodes=include_nodes,
        exclude_nodes=exclude_nodes,
        # TensorRT's IDequantizeLayer takes INT8/FP8/INT4 only: ORT's INT32 bias Q/DQ cannot build
        QuantizeBias=False,
    )


def quantize_static_qdq(
    model_path: str | Path,
    out_path: str | Path,
    method: str,
    cache_path: str | Path,
    *,
    unsigned_activations: bool,
    include_nodes: list[str] | None = None,
    exclude_nodes: list[str] | None = None,
    **extra_options,
) -> None:
    """ONNX Runtime's `quantize_static` in the form both of sladkit's static INT8 models share: Q/DQ on the
    inputs of MatMul/Gemm/Conv only, per-channel symmetric S8 weights (a MatMul's along its output channels),
    activation ranges read from `cache_path` (never recomputed), no `reduce_range`.

    Args:
        method: the calibration method the ranges came from (ONNX Runtime records it).
        unsigned_activations: U8 activations with a zero point (the CPU form) instead of symmetric S8
            (TensorRT's form).
        include_nodes / exclude_nodes: the only nodes quantized / nodes kept float.
        extra_options: more of `quantize_static`'s `extra_options` (e.g. `QuantizeBias=False`).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with _without_preprocessing_hint():
        quantize_static(
            str(model_path),
            str(out_path),
            None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8 if unsigned_activations else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=include_nodes,
            nodes_to_exclude=exclude_nodes or [],
            calibrate_method=_ort_method(method),
            extra_options={
                "ActivationSymmetric": not unsigned_activations,
                "WeightSymmetric": True,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),  # inputs only
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # output channels of a (in, out) weight
                **extra_options,
            },
            calibration_cache_path=cache_path,
        )


class _PreprocessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_hint():
    """ONNX Runtime's quantizers log "Please consider pre-processing before quantization" on every call:
    advice for its own shape-inference tool, which sladkit's graphs (simplified, shapes known) do not need."""
    hint = _PreprocessingHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


# ---------------------------------------------------------------- accuracy


def predictions(model_path: str | Path, images: np.ndarray, session=onnxruntime_session) -> np.ndarray:
    """Class per image (N,) or per pixel (N, H, W); `session(path)` opens the model (default ONNX Runtime)."""
    return run_onnx(session(model_path), images, batch=ACCURACY_BATCH).argmax(axis=1)


@dataclass
class GateResult:
    """INT8 against FP32 on the validation images."""

    fp32_metric: float
    int8_metric: float
    agreement: float  # share of images (pixels) where INT8 and FP32 predict the same class, in percent
    float_blocks: list[str]  # blocks kept in float by the sensitivity fallback
    passed: bool
    sensitivity: dict[str, float] = field(default_factory=dict)  # block -> output error when quantized alone
    drop_ci95: tuple[float, float] | None = None  # bootstrap 95 % interval of the drop, in points
    min_agreement: float = 0.0  # the agreement the gate asked for, in percent

    @property
    def drop(self) -> float:
        return self.fp32_metric - self.int8_metric

    def to_dict(self) -> dict:
        return {
            "fp32_metric": round(self.fp32_metric, 4),
            "int8_metric": round(self.int8_metric, 4),
            "drop_points": round(self.drop, 4),
            "drop_ci95": [round(v, 4) for v in self.drop_ci95] if self.drop_ci95 else None,
            "top1_agreement": round(self.agreement, 4),
            "min_agreement": self.min_agreement,
            "float_blocks": self.float_blocks,
            "sensitivity": {k: round(v, 6) for k, v in self.sensitivity.items()},
            "passed": self.passed,
        }


def compare(
    fp32_pred, int8_pred, target, num_classes, float_blocks, budget, min_agreement: float = 0.0
) -> GateResult:
    """INT8 against FP32: it passes when the metric drops by at most `budget` points AND the two agree on at
    least `min_agreement` percent of the images (pixels): a metric that holds while the predictions change
    (a segmentation "gaining" 0.45 mIoU at 71.5 % pixel agreement) is not the same model."""
    fp32_metric = task_metric(fp32_pred, target, num_classes)
    int8_metric = task_metric(int8_pred, target, num_classes)
    agreement = float(100.0 * (fp32_pred == int8_pred).mean())
    passed = fp32_metric - int8_metric <= budget and agreement >= min_agreement
    return GateResult(
        fp32_metric,
        int8_metric,
        agreement,
        float_blocks,
        passed,
        drop_ci95=drop_interval(fp32_pred, int8_pred, target, num_classes),
        min_agreement=min_agreement,
    )


def gate_failure(kind: str, gate: GateResult, config) -> str:
    """The accuracy gate's refusal: what was measured against what was asked (`config`: the `ExportConfig`), and
    the options to change; the caller adds its own."""
    ci = f" (95 % CI [{gate.drop_ci95[0]:.2f}, {gate.drop_ci95[1]:.2f}])" if gate.drop_ci95 else ""
    floats = f" even with {', '.join(gate.float_blocks)} in float" if gate.float_blocks else ""
    return (
        f"{kind} loses {gate.drop:.2f} points{ci} ({gate.int8_metric:.2f} vs FP32 {gate.fp32_metric:.2f}) and "
        f"agrees with FP32 on {gate.agreement:.1f} % of the images{floats}; the gate asks for at most "
        f"{config.max_accuracy_drop} points and at least {config.min_agreement} %: raise --max-accuracy-drop "
        "or lower --min-agreement"
    )


def drop_interval(fp32_pred, int8_pred, target, num_classes, *, resamples: int = 200, seed: int = 0):
    """Bootstrap 95 % interval of the metric drop (FP32 - INT8, points), resampling images (paired)."""
    n = len(target)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        drops.append(
            task_metric(fp32_pred[i], target[i], num_classes)
            - task_metric(int8_pred[i], target[i], num_classes)
        )
    low, high = np.percentile(drops, [2.5, 97.5])
    return float(low), float(high)


def quantize_with_gate(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Calibration,
    images: np.ndarray,
    target: np.ndarray,
    *,
    num_classes: int,
    max_drop: float,
    min_agreement: float = 0.0,
    log=print,
    quantizer=None,
    kind: str = "int8",
    session=onnxruntime_session,
) -> GateResult:
    """Q/DQ INT8 within an accuracy budget: if the drop exceeds `max_drop` points, rank the blocks by
    sensitivity (output error with that block alone quantized) and keep the most sensitive ones in float
    until the budget holds. `passed` is False when even that fails.

    Args:
        quantizer: `quantize_qdq` (TensorRT, the default), `cpu_int8.quantize_cpu` or
            `cpu_int8.quantize_cpu_dynamic`, `modelopt_backend.quantize_modelopt`: same signature.
        kind: the name the log lines give the model.
        session: `session(path)` opens a quantized model with the runtime it is made for (default ONNX
            Runtime's CPU provider); the FP32 reference always runs in ONNX Runtime.
    """
    quantizer = quantizer or quantize_qdq
    fp32_pred = predictions(model_path, images)
    quantizer(model_path, out_path, calibration)
    result = compare(
        fp32_pred, predictions(out_path, images, session), target, num_classes, [], max_drop, min_agreement
    )
    low, high = result.drop_ci95 or (float("nan"), float("nan"))
    log(
        f"{kind}: {result.int8_metric:.2f} vs fp32 {result.fp32_metric:.2f} (drop {result.drop:.2f} points, 95 % "
        f"CI [{low:.2f}, {high:.2f}]; agreement {result.agreement:.1f} %)"
    )
    if result.passed:
        return result

    nodes = quantizable_nodes(model_path)
    where = node_blocks(model_path)  # through the weights' names, so onnxsim's node names do not matter
    block_of = {n: where[n].block if n in where else OTHER for n in nodes}
    blocks = sorted(set(block_of.values()), key=block_order)
    sensitivity = block_sensitivity(
        model_path, calibration, images, block_of, quantizer=quantizer, session=session
    )
    ranked = sorted(blocks, key=lambda b: -sensitivity[b])
    log(
        f"{kind} over budget ({max_drop} points, {min_agreement} % agreement): sensitivity "
        + ", ".join(f"{b} {sensitivity[b]:.4f}" for b in ranked)
    )
    for k in range(1, len(ranked) + 1):
        kept = ranked[:k]
        quantizer(model_path, out_path, calibration, exclude_nodes=[n for n in nodes if block_of[n] in kept])
        result = compare(
            fp32_pred,
            predictions(out_path, images, session),
            target,
            num_classes,
            kept,
            max_drop,
            min_agreement,
        )
        result.sensitivity = sensitivity
        log(f"  float {', '.join(kept)}: drop {result.drop:.2f} points, agreement {result.agreement:.1f} %")
        if result.passed:
            return result
    return result


def block_sensitivity(
    model_path, calibration, images, block_of: dict[str, str], *, quantizer=None, session=onnxruntime_session
) -> dict[str, float]:
    """Mean squared output error against FP32 with one block at a time quantized.

    Args:
        block_of: quantizable node name -> its block (`sladkit.onnx_blocks.node_blocks`).
        quantizer, session: as in `quantize_with_gate` (default `quantize_qdq`, ONNX Runtime).
    """
    quantizer = quantizer or quantize_qdq
    reference = run_onnx(onnxruntime_session(model_path), images)
    scores = {}
    with tempfile.TemporaryDirectory(prefix="sladkit-sens-") as tmp:
        path = Path(tmp) / "one_block.onnx"
        blocks = sorted(set(block_of.values()), key=block_order)
        for block in progress(blocks, desc="INT8 gate: block sensitivity"):
            quantizer(
                model_path, path, calibration, include_nodes=[n for n, b in block_of.items() if b == block]
            )
            scores[block] = float(np.mean((run_onnx(session(path), images) - reference) ** 2))
    return scores


# ---------------------------------------------------------------- FP8 (E4M3)

FP8_E4M3_MAX = 448.0  # largest finite FLOAT8E4M3FN (ONNX "Float stored in 8 bits" docs)
INT8_MAX = 127.0  # symmetric INT8: ONNX Runtime's scale = amax / 127


def convert_qdq_to_fp8(int8_path: str | Path, float_path: str | Path, out_path: str | Path) -> None:
    """The symmetric INT8 Q/DQ model of `quantize_qdq`, turned into FP8 (E4M3) Q/DQ with the same ranges.

    Why not ONNX Runtime's own FP8 mode: `quantize_static` takes `QuantType.QFLOAT8E4M3FN` (QDQ format, opset
    >= 19) only with `CalibrationMethod.Distribution`, whose scale comes from each tensor's standard deviation,
    so it cannot reuse sladkit's amax calibration. Here, as in NVIDIA ModelOpt's `int8_to_fp8` (max-calibrated
    models): every scale becomes amax / 448 (= INT8 scale * 127 / 448), every zero point an FP8 zero, and each
    weight is re-quantized from its FP32 value (in `float_path`) to E4M3, saturating at +-448.

    Args:
        int8_path: Output of `quantize_qdq` (symmetric INT8, biases float), opset >= 19.
        float_path: The float model it was quantized from (its weights are re-quantized, not the INT8 ones).
        out_path: Where to write the FP8 Q/DQ model.
    """
    import ml_dtypes
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(int8_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 19:
        raise ValueError(
            f"FP8 QuantizeLinear/DequantizeLinear need ONNX opset >= 19; {int8_path} is opset {opset}"
        )
    floats = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(str(float_path), load_external_data=True).graph.initializer
    }
    init = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    ratio = INT8_MAX / FP8_E4M3_MAX

    def replace(name: str, array: np.ndarray) -> None:
        tensor = numpy_helper.from_array(array, name)
        init[name].CopyFrom(tensor)

    def to_fp8(values: np.ndarray) -> np.ndarray:
        return np.clip(values, -FP8_E4M3_MAX, FP8_E4M3_MAX).astype(ml_dtypes.float8_e4m3fn)

    scales = {n.input[1] for n in qdq}
    zeros = {n.input[2] for n in qdq if len(n.input) > 2 and n.input[2]}
    weights = {n.input[0]: n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in init}
    old_scale = {name: numpy_helper.to_array(init[name]).astype(np.float32) for name in scales}
    for name, node in weights.items():
        q = numpy_helper.to_array(init[name]).astype(np.float32)
        scale = old_scale[node.input[1]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[axis % q.ndim] = scale.size
        original = name[: -len("_quantized")] if name.endswith("_quantized") else None
        w = floats.get(original) if original else None
        if w is None or w.shape != q.shape:
            w = q * scale.reshape(shape)  # no float original: dequantize the INT8 weight
        replace(name, to_fp8(w.astype(np.float32) / (scale * ratio).reshape(shape)))
    for name in scales:
        replace(name, (old_scale[name] * ratio).astype(np.float32))
    for name in zeros:
        if init[name].data_type != TensorProto.FLOAT8E4M3FN:
            replace(name, np.zeros(tuple(init[name].dims), dtype=ml_dtypes.float8_e4m3fn))
    quantized = {n.output[0] for n in qdq if n.op_type == "QuantizeLinear"}
    kept = [v for v in model.graph.value_info if v.name not in quantized]  # their INT8 types are stale
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))

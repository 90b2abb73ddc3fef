"""INT8 calibration: the activation range (|max|, "amax") of every tensor of an ONNX model.

One calibration serves both INT8 forms: the ranges of the MatMul/Gemm/Conv inputs go into the Q/DQ model,
and all of them into TensorRT's calibration cache (implicit INT8, DLA).

Methods (`--calib-method`):
- `entropy`: TensorRT's EntropyCalibrator2 — a 2048-bin histogram of |x|, then the clipping threshold
  whose 128-level quantized distribution has the smallest KL divergence from the clipped one (Migacz,
  "8-bit Inference with TensorRT", GTC 2017). Done here in numpy: ONNX Runtime's `quantize_static`
  silently keeps 128 bins for its Entropy method (deploy-facts.md), and its own calibrator takes minutes.
- `minmax`: the largest |x| seen.
- `percentile`: the 99.999th percentile of |x|.
- `auto` (the default, `sladkit.export.quantize.Calibration.run`): all three from one collection, and the
  one whose Q/DQ model's logits are closest to FP32's on the calibration images is kept. No method wins
  everywhere: on the embedded pair's trained students (the demo, Fashion-MNIST) entropy's logit error was
  10-25x minmax's and percentile's, while on random-weight ViTs with peaked attention entropy was the best.

Whatever the method, outputs whose range is known a priori (`BOUNDED_OUTPUTS`: Softmax in [0, 1], Sigmoid,
Tanh, Erf) get their observed |max|, capped at that bound. Entropy or percentile clipping is wrong for them:
with diffuse attention (many probabilities near 1/N, a few large ones) entropy clips the Softmax output to
a fraction of its max and saturates exactly the attention weights that matter; a fixed 1/127 scale (ModelOpt)
rounds the small ones to 0. Both broke a ViT-S/14 here (41 % and 27 % top-1 agreement against 94 % with the
max; `docs/deploy-facts.md`).

Activations are collected with ONNX Runtime by exposing every float tensor as a graph output, in two passes
over the images (|max| first, then histograms over [0, |max|]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from sladkit._progress import progress
from sladkit.export.onnx import INPUT

CALIB_METHODS = ("entropy", "minmax", "percentile")
BINS = 2048
QUANT_LEVELS = 128
PERCENTILE = 99.999
#: op -> bound of |output|: these outputs are calibrated with their max, whatever `--calib-method` says.
BOUNDED_OUTPUTS = {"Softmax": 1.0, "Sigmoid": 1.0, "Tanh": 1.0, "Erf": 1.0}


def _float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the graph input and every float node output (shapes inferred)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape"):
            continue
        names += [o for o in node.output if o and types.get(o) == onnx.TensorProto.FLOAT]
    return list(dict.fromkeys(names))


def _activation_session(model_path: str | Path):
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    names = _float_tensors(model)
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, names


def _batches(images: np.ndarray, batch: int):
    for start in range(0, len(images), batch):
        yield images[start : start + batch]


def collect_histograms(
    model_path: str | Path, images: np.ndarray, *, batch: int = 16
) -> dict[str, tuple[float, np.ndarray]]:
    """Per tensor: (|max|, 2048-bin histogram of |x| over [0, |max|])."""
    session, names = _activation_session(model_path)
    amax = dict.fromkeys(names, 0.0)
    steps = -(-len(images) // batch)
    for x in progress(_batches(images, batch), desc="calibration 1/2 (ranges)", total=steps):
        for name, value in zip(names, session.run(names, {INPUT: x}), strict=True):
            amax[name] = max(amax[name], float(np.abs(value).max()) if value.size else 0.0)
    hists = {name: np.zeros(BINS, dtype=np.int64) for name in names}
    for x in progress(_batches(images, batch), desc="calibration 2/2 (histograms)", total=steps):
        for name, value in zip(names, session.run(names, {INPUT: x}), strict=True):
            if amax[name] > 0:
                hists[name] += np.histogram(np.abs(value), bins=BINS, range=(0.0, amax[name]))[0]
    return {name: (amax[name], hists[name]) for name in names}


def entropy_amax(hists: np.ndarray, amax: np.ndarray, *, levels: int = QUANT_LEVELS) -> np.ndarray:
    """Per tensor, the clipping threshold minimising KL(P || Q) (TensorRT's entropy calibration).

    Every threshold from `levels` to all bins is tried, for all tensors at once.

    Args:
        hists: (T, bins) histograms of |x| over [0, amax]. amax: (T,).
    """
    hists = np.atleast_2d(hists).astype(np.float64)
    amax = np.atleast_1d(np.asarray(amax, dtype=np.float64))
    count, bins = hists.shape
    tails = np.cumsum(hists[:, ::-1], axis=1)[:, ::-1]  # tails[:, i] = sum of bins i..end
    best_kl = np.full(count, np.inf)
    best_i = np.full(count, bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(levels, bins + 1):
            p = hists[:, :i].copy()
            if i < bins:
                p[:, -1] += tails[:, i]  # outliers clipped into the last bin
            # Q: the first i bins merged into `levels` groups, each group's mass spread over its non-empty bins
            edges = np.linspace(0, i, levels + 1).astype(np.int64)
            nonzero = hists[:, :i] != 0
            sums = np.add.reduceat(hists[:, :i], edges[:-1], axis=1)
            counts = np.add.reduceat(nonzero.astype(np.float64), edges[:-1], axis=1)
            per_bin = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
            q = np.repeat(per_bin, np.diff(edges), axis=1) * nonzero
            p_n = p / p.sum(axis=1, keepdims=True)
            q_n = q / q.sum(axis=1, keepdims=True)
            terms = np.where(p_n > 0, p_n * np.log(p_n / q_n), 0.0)
            kl = np.where(((p_n > 0) & (q_n == 0)).any(axis=1), np.inf, terms.sum(axis=1))
            better = kl < best_kl
            best_kl[better], best_i[better] = kl[better], i
    return np.where(hists.sum(axis=1) > 0, amax * best_i / bins, amax)


def percentile_amax(hist: np.ndarray, amax: float, percentile: float = PERCENTILE) -> float:
    cumulative = np.cumsum(hist) / max(1, hist.sum())
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    return amax * min(index + 1, len(hist)) / len(hist)


def bounded_tensors(model: onnx.ModelProto) -> dict[str, float]:
    """Output tensors of the `BOUNDED_OUTPUTS` ops -> the bound of their |value|."""
    return {
        node.output[0]: BOUNDED_OUTPUTS[node.op_type]
        for node in model.graph.node
        if node.op_type in BOUNDED_OUTPUTS and node.output
    }


def calibrate_int8(model_path: str | Path, images: np.ndarray, method: str) -> dict[str, float]:
    """amax of every float tensor of `model_path` over `images` with `method` (max for bounded outputs)."""
    return calibrate_int8_methods(model_path, images, (method,))[method]


def calibrate_int8_methods(
    model_path: str | Path, images: np.ndarray, methods: tuple[str, ...] = CALIB_METHODS
) -> dict[str, dict[str, float]]:
    """{method: amax of every float tensor} for each of `methods`, from one collection over `images`."""
    unknown = [m for m in methods if m not in CALIB_METHODS]
    if unknown:
        raise ValueError(f"unknown calibration method {unknown[0]!r}")
    collected = collect_histograms(model_path, images)
    names = list(collected)
    amax = np.array([collected[n][0] for n in names])
    hists = np.stack([collected[n][1] for n in names])
    bounded = bounded_tensors(onnx.load(str(model_path), load_external_data=False))
    result = {}
    for method in methods:
        if method == "minmax":
            values = amax
        elif method == "percentile":
            values = [percentile_amax(h, a) for h, a in zip(hists, amax, strict=True)]
        else:
            values = entropy_amax(hists, amax)
        ranges = {n: float(v) for n, v in zip(names, values, strict=True)}
        for name, bound in bounded.items():
            if name in ranges:
                ranges[name] = min(collected[name][0], bound)
        result[method] = ranges
    return result


def save_ort_ranges(amax: dict[str, float], method: str, path: str | Path) -> None:
    """Write the ranges as ONNX Runtime's calibration cache, so `quantize_static` reuses them."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    ort_method = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}.get(
        method, CalibrationMethod.Percentile
    )
    data = {name: TensorData(lowest=np.float32(-a), highest=np.float32(a)) for name, a in amax.items()}
    save_tensors_data(TensorsData(ort_method, data), path)

"""INT8: calibration, Q/DQ placement, the accuracy gate and its sensitivity fallback, the TensorRT cache."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from sladkit.export.calib_cache import read_calibration_cache, write_calibration_cache
from sladkit.export.calibrate import (
    CALIB_METHODS,
    calibrate_int8,
    calibrate_int8_methods,
    collect_histograms,
    entropy_amax,
    percentile_amax,
)
from sladkit.export.onnx import export_onnx, onnxruntime_session, run_onnx
from sladkit.export.quantize import (
    Calibration,
    predictions,
    quantize_qdq,
    quantize_with_gate,
    unshare_initializers,
)
from sladkit.models.run_model import load_run_model, merge_adapters


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from sladkit.export.data import validation_arrays
    from sladkit.export.simplify import simplify_onnx

    model, run_config = load_run_model(run_dir)
    merged = merge_adapters(model)
    folder = tmp_path_factory.mktemp("quantize")
    export_onnx(merged, folder / "raw.onnx", image_size=32, opset=17)
    simplify_onnx(folder / "raw.onnx", folder / "simple.onnx")
    unshare_initializers(folder / "simple.onnx", folder / "model.onnx")
    images, _ = validation_arrays(run_config, 64)
    return merged, folder, images


def _entropy_reference(hist, amax, levels=128):
    """TensorRT's entropy calibration, written plainly (one threshold, one group at a time)."""
    hist = hist.astype(float)
    best = (np.inf, len(hist))
    for i in range(levels, len(hist) + 1):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        edges = np.linspace(0, i, levels + 1).astype(int)
        q = np.zeros(i)
        for j in range(levels):
            group = hist[edges[j] : edges[j + 1]]
            nonzero = group != 0
            if nonzero.any():
                q[edges[j] : edges[j + 1]][nonzero] = group.sum() / nonzero.sum()
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        kl = np.inf if np.any(q[mask] == 0) else float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best[0]:
            best = (kl, i)
    return amax * best[1] / len(hist)


def test_entropy_calibration_matches_the_plain_algorithm():
    rng = np.random.default_rng(0)
    hists = np.stack([np.histogram(np.abs(rng.standard_t(df, 20000)), bins=2048)[0] for df in (2, 5, 30)])
    amax = np.array([7.0, 3.0, 1.5])
    got = entropy_amax(hists, amax)
    for k in range(3):
        assert got[k] == pytest.approx(_entropy_reference(hists[k], amax[k]))
    assert np.all(got <= amax)


def test_minmax_and_percentile_ranges(exported):
    _, folder, images = exported
    collected = collect_histograms(folder / "model.onnx", images[:16])
    assert collected["images"][0] == pytest.approx(float(np.abs(images[:16]).max()), rel=1e-6)
    minmax = calibrate_int8(folder / "model.onnx", images[:16], "minmax")
    assert minmax["images"] == pytest.approx(collected["images"][0])
    amax, hist = collected["images"]
    assert 0 < percentile_amax(hist, amax) <= amax


def test_qdq_placement_is_what_tensorrt_wants(exported, tmp_path):
    _, folder, images = exported
    calibration = Calibration.run(folder / "model.onnx", images[:32], "minmax", tmp_path / "ranges.json")
    quantize_qdq(folder / "model.onnx", tmp_path / "int8.onnx", calibration)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    fed_by_dq = {
        node.op_type
        for node in graph.node
        for name in node.input
        if name in producer and producer[name].op_type == "DequantizeLinear"
    }
    assert fed_by_dq == {"MatMul", "Gemm", "Conv"}  # LayerNorm, Softmax, Erf (GELU), Add stay float
    quantize_nodes = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quantize_nodes and all(not init[n.input[2]].any() for n in quantize_nodes)  # zero points 0
    assert all(init[n.input[2]].dtype == np.int8 for n in quantize_nodes)
    weights = 0
    for dq in (n for n in graph.node if n.op_type == "DequantizeLinear" and init.get(n.input[0]) is not None):
        w, scale = init[dq.input[0]], init[dq.input[1]]
        weights += 1
        axis = next(a.i for a in dq.attribute if a.name == "axis")
        consumer = next(n for n in graph.node if dq.output[0] in n.input)
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        out_axis = 0 if consumer.op_type == "Conv" or trans_b else 1
        assert axis == out_axis and scale.shape == (w.shape[out_axis],), consumer.name  # per output channel
    assert weights >= 8
    # TensorRT's IDequantizeLayer takes INT8, FP8 and INT4 inputs only (no INT32 biases)
    int8 = onnx.TensorProto.INT8
    for dq in (n for n in graph.node if n.op_type == "DequantizeLinear"):
        source = dq.input[0]
        if source in init:
            assert init[source].dtype == np.int8, f"{dq.name} dequantizes a {init[source].dtype} initializer"
        else:
            assert producer[source].op_type == "QuantizeLinear", dq.name
            zero_point = producer[source].input[2]
            assert next(i.data_type for i in graph.initializer if i.name == zero_point) == int8


def test_tensorrt_cache_parses_back_to_the_computed_scales(exported, tmp_path):
    _, folder, images = exported
    calibration = Calibration.run(folder / "model.onnx", images[:32], "entropy", tmp_path / "ranges.json")
    write_calibration_cache(tmp_path / "calib.cache", calibration.amax, tensorrt_version="10.3.0")
    header, scales = read_calibration_cache(tmp_path / "calib.cache")
    assert header == "TRT-100300-EntropyCalibration2"
    assert set(scales) == set(calibration.amax)
    for name, amax in calibration.amax.items():
        assert scales[name] == pytest.approx(max(amax, 1e-30) / 127.0, rel=1e-6)


def test_accuracy_gate_keeps_an_outlier_block_in_float(exported, tmp_path):
    """A classic ViT INT8 failure, built on purpose: one block's LayerNorm output gets an outlier channel
    (gamma, beta x 1000, the qkv weights' column / 1000: the same function in float), which per-tensor
    INT8 cannot represent. The gate must catch it and keep exactly that block in float."""
    merged, folder, images = exported
    model = copy.deepcopy(merged)
    block = model.backbone.blocks[1]
    with torch.no_grad():
        block.norm1.weight[5] *= 1000.0
        block.norm1.bias[5] *= 1000.0
        block.attn.qkv.weight[:, 5] /= 1000.0
    path = tmp_path / "outlier.onnx"
    export_onnx(model, path, image_size=32, opset=17)
    unshare_initializers(path, path)
    fp32 = predictions(path, images)
    with torch.no_grad():  # still the same function in float
        assert (
            np.abs(
                run_onnx(onnxruntime_session(path), images) - merged(torch.from_numpy(images)).numpy()
            ).max()
            < 1e-3
        )
    calibration = Calibration.run(path, images, "minmax", tmp_path / "ranges.json")
    # Labels = FP32's own predictions: the metric is then the INT8/FP32 agreement, and FP32 scores 100.
    result = quantize_with_gate(
        path,
        tmp_path / "int8.onnx",
        calibration,
        images,
        fp32,
        num_classes=15,
        max_drop=2.0,
        log=lambda m: None,
    )
    assert result.passed
    assert result.float_blocks[0] == "blocks.1"
    assert max(result.sensitivity, key=result.sensitivity.get) == "blocks.1"
    assert result.drop <= 2.0

    failing = quantize_with_gate(
        path,
        tmp_path / "int8.onnx",
        calibration,
        images,
        fp32,
        num_classes=15,
        max_drop=-1.0,
        log=lambda m: None,
    )
    assert not failing.passed  # an impossible budget fails with every block in float


def test_the_gate_needs_agreement_as_well_as_the_metric():
    from sladkit.export.quantize import compare

    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, 400)
    fp32 = np.where(rng.random(400) < 0.6, target, rng.integers(0, 4, 400))
    changed = fp32.copy()  # every wrong prediction becomes another wrong class: same accuracy, other model
    for i in np.flatnonzero(fp32 != target):
        changed[i] = next(c for c in range(4) if c not in (fp32[i], target[i]))
    gate = compare(fp32, changed, target, 4, [], budget=5.0, min_agreement=90.0)
    assert gate.drop == 0.0 and gate.agreement < 80.0 and not gate.passed
    assert compare(fp32, changed, target, 4, [], budget=5.0).passed  # the metric alone would pass it
    same = compare(fp32, fp32, target, 4, [], budget=1.0, min_agreement=90.0)
    assert same.passed and same.drop_ci95 == (0.0, 0.0)
    worse = fp32.copy()
    worse[np.flatnonzero(fp32 == target)[:40]] = (target[np.flatnonzero(fp32 == target)[:40]] + 1) % 4
    lost = compare(fp32, worse, target, 4, [], budget=1.0)  # 40 of 400 images lost: 10 points
    low, high = lost.drop_ci95
    assert lost.drop == 10.0 and low <= 10.0 <= high and high - low > 2.0  # 400 images: CI of several points
    assert lost.to_dict()["drop_ci95"] == [round(low, 4), round(high, 4)]


def test_one_collection_gives_each_methods_ranges(exported):
    _, folder, images = exported
    every = calibrate_int8_methods(folder / "model.onnx", images[:16])
    assert set(every) == set(CALIB_METHODS)
    for method in CALIB_METHODS:
        assert every[method] == calibrate_int8(folder / "model.onnx", images[:16], method)
    with pytest.raises(ValueError, match="unknown calibration method 'kl'"):
        calibrate_int8_methods(folder / "model.onnx", images[:16], ("kl",))


def test_auto_calibration_keeps_the_method_closest_to_fp32(exported, tmp_path):
    """auto scores every method by its Q/DQ model's logit error on the calibration images themselves, and its
    cache file holds the kept method's ranges, as the method run alone writes them."""
    _, folder, images = exported
    model, calib = folder / "model.onnx", images[:24]
    auto = Calibration.run(model, calib, "auto", tmp_path / "auto.json")
    assert set(auto.scores) == set(CALIB_METHODS) and all(v >= 0 for v in auto.scores.values())
    assert auto.method == min(auto.scores, key=auto.scores.get) and auto.images == 24

    reference = run_onnx(onnxruntime_session(model), calib)
    for method in CALIB_METHODS:  # each score is what that method's model does
        alone = Calibration.run(model, calib, method, tmp_path / f"{method}.json")
        quantize_qdq(model, tmp_path / f"{method}.onnx", alone)
        error = run_onnx(onnxruntime_session(tmp_path / f"{method}.onnx"), calib) - reference
        assert auto.scores[method] == pytest.approx(float(np.mean(error**2)), rel=1e-5)
    assert auto.amax == calibrate_int8(model, calib, auto.method)
    kept = tmp_path / f"{auto.method}.json"
    assert (tmp_path / "auto.json").read_bytes() == kept.read_bytes()

"""check_tensorrt_qdq: every TensorRT target's INT8 artifact passes TensorRT's Q/DQ rules, and each rule
catches what it is for (ONNX Runtime's default INT32 biases, zero points, scales, per-channel axes)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from sladkit.export.qdq_check import check_tensorrt_qdq
from sladkit.export.quantize import Calibration, quantize_qdq
from sladkit.export.targets import TARGETS

INT8_TENSORRT = [t for t in TARGETS.values() if t.runtime == "tensorrt" and "int8" in t.precisions]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from sladkit.models.backbones import sladkit_vit_96_p8
    from sladkit.models.heads import TaskModel, create_head

    torch.manual_seed(0)
    backbone = sladkit_vit_96_p8(depth=2, init_values=1.0)
    model = TaskModel(backbone, create_head("cls", 96, 15, num_prefix=1, grid=(4, 4), pool="cls+avg")).eval()
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    return model, images, tmp_path_factory.mktemp("qdq")


def _int8_artifact(tiny, opset: int, **quantize_options):
    """model.int8.onnx as export makes it (export, simplify, unshare, calibrate, Q/DQ), at `opset`."""
    from sladkit.export.onnx import export_onnx
    from sladkit.export.quantize import unshare_initializers
    from sladkit.export.simplify import simplify_onnx

    model, images, folder = tiny
    core = folder / f"model{opset}.onnx"
    if not core.exists():
        export_onnx(model, folder / "raw.onnx", image_size=32, opset=opset)
        simplify_onnx(folder / "raw.onnx", folder / "simple.onnx")
        unshare_initializers(folder / "simple.onnx", core)
    out = folder / f"int8-{opset}.onnx"
    calibration = Calibration.run(core, images, "minmax", folder / f"ranges{opset}.json")
    quantize_qdq(core, out, calibration, **quantize_options)
    return out


@pytest.mark.parametrize("target", INT8_TENSORRT, ids=lambda t: t.name)
def test_every_targets_int8_artifact_passes(tiny, target):
    path = _int8_artifact(tiny, target.opset)
    assert check_tensorrt_qdq(path) == []
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("DequantizeLinear") > 10  # it did check something


def test_onnxruntime_default_int32_biases_are_refused(tiny, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    path = _int8_artifact(tiny, 17)  # for its calibration cache
    _, _, folder = tiny
    quantize_static(  # ONNX Runtime's defaults: biases quantized to INT32
        str(folder / "model17.onnx"),
        str(tmp_path / "ort.onnx"),
        None,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"],
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        },
        calibration_cache_path=folder / "ranges17.json",
    )
    problems = check_tensorrt_qdq(tmp_path / "ort.onnx")
    assert path.exists() and problems
    assert any("INT32" in p and "QuantizeBias" in p for p in problems)


def _edit(path, out, change):
    model = onnx.load(str(path))
    change(model)
    onnx.save(model, str(out))
    return out


def _first(model, op, weight: bool):
    init = {i.name for i in model.graph.initializer}
    return next(n for n in model.graph.node if n.op_type == op and (n.input[0] in init) == weight)


def _set(model, name, array):
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("zero_point", "zero point must be 0"),
        ("negative_scale", "positive and finite"),
        ("nan_scale", "positive and finite"),
        ("uint8", "UINT8 quantization"),
        ("weight_axis", "needs its output channels"),
        ("activation_per_channel", "per-channel scale"),
    ],
)
def test_each_rule_catches_its_violation(tiny, tmp_path, case, message):
    path = _int8_artifact(tiny, 17)

    def change(model):
        init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        q = _first(model, "QuantizeLinear", weight=False)
        dq_w = _first(model, "DequantizeLinear", weight=True)
        if case == "zero_point":
            _set(model, q.input[2], np.array(3, dtype=np.int8))
        elif case == "negative_scale":
            _set(model, q.input[1], -init[q.input[1]])
        elif case == "nan_scale":
            _set(model, dq_w.input[1], np.full_like(init[dq_w.input[1]], np.nan))
        elif case == "uint8":
            _set(model, q.input[2], np.array(0, dtype=np.uint8))
        elif case == "weight_axis":  # per-channel along the input channels of a square weight
            square = next(
                n
                for n in model.graph.node
                if n.op_type == "DequantizeLinear"
                and n.input[0] in init
                and init[n.input[0]].ndim == 2
                and init[n.input[0]].shape[0] == init[n.input[0]].shape[1]
            )
            next(a for a in square.attribute if a.name == "axis").i = 0
        else:
            _set(model, q.input[1], np.full(4, init[q.input[1]], dtype=np.float32))

    problems = check_tensorrt_qdq(_edit(path, tmp_path / "bad.onnx", change))
    assert any(message in p for p in problems), problems


def test_fp8_artifacts_need_fp8_types(tiny):
    path = _int8_artifact(tiny, 17)
    problems = check_tensorrt_qdq(path, precision="fp8")
    assert problems and all("FLOAT8E4M3FN" in p for p in problems)
    assert TensorProto.FLOAT8E4M3FN  # the type the rule names


def test_export_checks_the_artifact_and_refuses_in_one_line(run_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sladkit.cli import cli
    from sladkit.export import pipeline

    seen = []

    def fake_check(path, **_):
        seen.append(check_tensorrt_qdq(path))
        return ["DequantizeLinear 'b': INT32 quantization; TensorRT takes INT8 here"]

    monkeypatch.setattr(pipeline, "check_tensorrt_qdq", fake_check)
    out = tmp_path / "orin"
    args = ["export", str(run_dir), "--target", "jetson-orin", "--out", str(out), "--calib-images", "16"]
    result = CliRunner().invoke(cli, [*args, "--eval-images", "32", "--calib-method", "minmax"])
    assert result.exit_code != 0
    assert seen == [[]]  # the real artifact passed
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "TensorRT cannot take" in lines[0] and "INT32" in lines[0], result.output
    assert not out.exists()

"""The CPU INT8 artifact: static U8S8 Q/DQ (attention MatMuls included), calibrated, gated, batch-independent."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from sladkit.cli import cli
from sladkit.export.cpu_int8 import cpu_ranges, quantize_cpu
from sladkit.export.onnx import onnxruntime_session, run_onnx
from sladkit.export.quantize import Calibration, quantize_with_gate

FAST = ["--calib-images", "16", "--eval-images", "32", "--calib-method", "minmax"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _graph(path):
    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return model, init, producer


def test_cpu_artifact_is_static_u8s8_qdq_with_the_attention_matmuls(cpu_bundle):
    manifest = json.loads((cpu_bundle / "manifest.json").read_text())
    check = manifest["checks"]["int8_cpu_vs_fp32"]
    assert check["passed"] and check["float_blocks"] == []
    assert check["form"].startswith("static U8S8")
    model, init, producer = _graph(cpu_bundle / "model.int8-cpu.onnx")
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops  # not ORT's dynamic form
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]

    def weight_input(name):  # an initializer, or a DequantizeLinear of one
        return name in init or (name in producer and producer[name].input[0] in init)

    attention = [n for n in matmuls if n.op_type == "MatMul" and not any(map(weight_input, n.input))]
    assert len(attention) == 2 * 2  # Q.K^T and attention.V in each of the tiny model's 2 blocks
    for node in matmuls:
        for name in node.input[:2]:
            dq = producer.get(name)
            assert dq is not None and dq.op_type == "DequantizeLinear", f"{node.name} input {name} is float"
            if dq.input[0] in init:  # a weight: S8, symmetric, one scale per output channel
                assert init[dq.input[0]].dtype == np.int8
                assert init[dq.input[1]].size > 1
                assert not init[dq.input[2]].any()
            else:  # an activation: U8, its range from the calibration
                q = producer[dq.input[0]]
                assert q.op_type == "QuantizeLinear" and init[q.input[2]].dtype == np.uint8
    softmax_out = {n.output[0] for n in model.graph.node if n.op_type == "Softmax"}
    q_of_softmax = [
        n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in softmax_out
    ]
    assert q_of_softmax and all(int(init[q.input[2]]) == 0 for q in q_of_softmax)  # [0, max]: all 256 levels


def test_cpu_int8_gives_an_image_the_same_logits_in_any_batch(cpu_bundle):
    """Dynamic quantization takes its activation ranges from each batch; the static form must not."""
    session = onnxruntime_session(cpu_bundle / "model.int8-cpu.onnx")
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    batch[1:] *= 5.0  # other images with a much wider range would widen a per-batch range
    alone = run_onnx(session, batch[:1])
    together = run_onnx(session, batch, batch=8)[:1]
    np.testing.assert_allclose(alone, together, atol=1e-5)
    fp32 = run_onnx(onnxruntime_session(cpu_bundle / "model.onnx"), batch[:1])
    assert np.abs(alone - fp32).max() < 0.1 * np.abs(fp32).max()


def test_cpu_ranges_start_nonnegative_outputs_at_zero(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Neg", ["x"], ["n"]), onnx.helper.make_node("Softmax", ["n"], ["y"])],
        "g",
        [x],
        [y],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "m.onnx"))
    ranges = cpu_ranges(tmp_path / "m.onnx", {"x": 2.0, "n": 2.0, "y": 0.5})
    assert ranges == {"x": (-2.0, 2.0), "n": (-2.0, 2.0), "y": (0.0, 0.5)}


def test_cpu_gate_falls_back_to_float_blocks(run_dir, tmp_path):
    from sladkit.export.data import calibration_array, validation_arrays
    from sladkit.export.onnx import export_onnx
    from sladkit.export.quantize import unshare_initializers
    from sladkit.export.simplify import simplify_onnx
    from sladkit.models.run_model import load_run_model, merge_adapters

    model, run_config = load_run_model(run_dir)
    export_onnx(merge_adapters(model), tmp_path / "raw.onnx", image_size=32, opset=17)
    simplify_onnx(tmp_path / "raw.onnx", tmp_path / "simple.onnx")
    unshare_initializers(tmp_path / "simple.onnx", tmp_path / "model.onnx")
    images, targets = validation_arrays(run_config, 32)
    calib, _ = calibration_array(run_config, None, 16)
    calibration = Calibration.run(tmp_path / "model.onnx", calib, "minmax", tmp_path / "ranges.json")
    out = tmp_path / "int8.onnx"
    gate = quantize_with_gate(
        tmp_path / "model.onnx",
        out,
        calibration,
        images,
        targets,
        num_classes=run_config["num_classes"],
        max_drop=-1.0,  # unreachable: every block is tried in float
        log=lambda _: None,
        quantizer=quantize_cpu,
    )
    assert not gate.passed and gate.float_blocks and set(gate.sensitivity) >= set(gate.float_blocks)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" not in ops  # every block kept float at the end of the fallback


def test_calibration_options_apply_to_the_cpu_target(run_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "cpu"
    args = ["--calib-data", folder, "--calib-method", "percentile", "--eval-images", "32"]
    result = invoke("export", run_dir, "--target", "cpu", "--out", out, *args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration"]["method"] == "percentile"
    assert manifest["calibration"]["images"] == 10
    assert str(folder) in json.dumps(manifest["calibration"]["source"])
    assert manifest["checks"]["int8_cpu_vs_fp32"]["passed"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "fp32", "--calib-data", "{few}"], "uses no calibration: drop --calib-data"),
        (["--calib-data", "{few}"], "has 3 readable images; at least 8"),
        (["--calib-method", "median"], "Invalid value for '--calib-method'"),
        (["--max-accuracy-drop", "-1"], "CPU INT8 loses"),
    ],
)
def test_bad_cpu_input_is_one_line(run_dir, tmp_path, args, message):
    from PIL import Image

    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(few / f"{i}.png")
    out = tmp_path / "bundle"
    args = [a.replace("{few}", str(few)) for a in args]
    result = invoke("export", run_dir, "--target", "cpu", "--out", out, *FAST, *args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if message in line]) == 1
    assert not out.exists()

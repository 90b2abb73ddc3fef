"""The CPU INT8 artifact: its static form (U8S8 Q/DQ of the weight MatMuls, calibrated, batch-independent),
its dynamic form, and auto, which gates every form and keeps the fastest as timed on the exporting machine
(its choice, with stand-ins for the gate and the timer: tests/test_cpu_int8_choice.py). The openvino form and
backend: tests/test_openvino.py."""

from __future__ import annotations

import json
import typing

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from sladkit import bundle
from sladkit.cli import cli
from sladkit.config import ExportConfig
from sladkit.errors import ConfigError
from sladkit.export import cpu_int8, cpu_timing
from sladkit.export import run as export
from sladkit.export.cpu_int8 import cpu_ranges, quantize_cpu, quantize_cpu_dynamic, quantize_openvino
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


def _export_cpu(run_dir, out, form: str):
    config = ExportConfig(
        run_dir=str(run_dir), target="cpu", out=str(out), eval_images=32, calib_images=16, cpu_int8_form=form
    )
    export(config)
    return out


@pytest.fixture(scope="module")
def static_bundle(run_dir, tmp_path_factory):
    """The shared run exported with --cpu-int8-form static (the default, auto, may keep either form)."""
    return _export_cpu(run_dir, tmp_path_factory.mktemp("bundles") / "static", "static")


@pytest.fixture(scope="module")
def dynamic_bundle(run_dir, tmp_path_factory):
    return _export_cpu(run_dir, tmp_path_factory.mktemp("bundles") / "dynamic", "dynamic")


def _manifest(bundle_dir):
    return json.loads((bundle_dir / "manifest.json").read_text())


def test_cpu_artifact_is_static_u8s8_qdq_of_the_weight_matmuls(static_bundle):
    manifest = _manifest(static_bundle)
    check = manifest["checks"]["int8_cpu_vs_fp32"]
    assert check["passed"] and check["float_blocks"] == []
    assert check["form"] == cpu_int8.FORMS["static"] and check["form"].startswith("static U8S8")
    assert check["chosen"] == "static" and check["chosen_by"] == "--cpu-int8-form static"
    assert check["speed"] is None and check["faster_than_fp32"] is None and "candidates" not in check
    assert manifest["export_config"]["cpu_int8_form"] == "static"
    model, init, producer = _graph(static_bundle / "model.int8-cpu.onnx")
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops  # not ORT's dynamic form
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]

    def weight_input(name):  # an initializer, or a DequantizeLinear of one
        return name in init or (name in producer and producer[name].input[0] in init)

    attention = [n for n in matmuls if n.op_type == "MatMul" and not any(map(weight_input, n.input))]
    assert len(attention) == 2 * 2  # Q.K^T and attention.V in each of the tiny model's 2 blocks
    for node in attention:  # float: INT8 there is slower in ONNX Runtime (cpu_int8.activation_matmuls)
        assert all(producer[name].op_type != "DequantizeLinear" for name in node.input[:2]), node.name
    linear = [n for n in matmuls if n not in attention]
    assert len(linear) == 1 + 2 * 4 + 1  # patch embedding, qkv/proj/fc1/fc2 of each block, the head
    for node in linear:
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
    assert not q_of_softmax  # it feeds attention.V, which stays float


def test_cpu_int8_gives_an_image_the_same_logits_in_any_batch(static_bundle):
    """Dynamic quantization takes its activation ranges from each batch; the static form must not."""
    session = onnxruntime_session(static_bundle / "model.int8-cpu.onnx")
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    batch[1:] *= 5.0  # other images with a much wider range would widen a per-batch range
    alone = run_onnx(session, batch[:1])
    together = run_onnx(session, batch, batch=8)[:1]
    np.testing.assert_allclose(alone, together, atol=1e-5)
    fp32 = run_onnx(onnxruntime_session(static_bundle / "model.onnx"), batch[:1])
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


@pytest.fixture(scope="module")
def tiny_onnx(run_dir, tmp_path_factory):
    """The shared run's student as export quantizes it (simplified, initializers unshared), its calibration,
    validation images and labels."""
    from sladkit.export.data import calibration_array, validation_arrays
    from sladkit.export.onnx import export_onnx
    from sladkit.export.quantize import unshare_initializers
    from sladkit.export.simplify import simplify_onnx
    from sladkit.models.run_model import load_run_model, merge_adapters

    tmp = tmp_path_factory.mktemp("tiny-onnx")
    model, run_config = load_run_model(run_dir)
    export_onnx(merge_adapters(model), tmp / "raw.onnx", image_size=32, opset=17)
    simplify_onnx(tmp / "raw.onnx", tmp / "simple.onnx")
    unshare_initializers(tmp / "simple.onnx", tmp / "model.onnx")
    images, targets = validation_arrays(run_config, 32)
    calib, _ = calibration_array(run_config, None, 16)
    calibration = Calibration.run(tmp / "model.onnx", calib, "minmax", tmp / "ranges.json")
    return tmp / "model.onnx", calibration, images, targets, run_config["num_classes"]


@pytest.mark.parametrize(
    "quantizer, quantized_ops",
    [
        (quantize_cpu, {"QuantizeLinear"}),
        (quantize_cpu_dynamic, {"DynamicQuantizeLinear", "MatMulInteger"}),
        (quantize_openvino, {"QuantizeLinear"}),
    ],
)
def test_cpu_gate_falls_back_to_float_blocks(tiny_onnx, tmp_path, quantizer, quantized_ops):
    """Every form takes the gate's per-block fallback (quantize_dynamic's nodes_to_exclude for the dynamic one;
    the openvino form translates the names of the qkv layers it splits)."""
    model, calibration, images, targets, num_classes = tiny_onnx
    out = tmp_path / "int8.onnx"
    quantizer(model, out, calibration)
    assert quantized_ops & {n.op_type for n in onnx.load(str(out)).graph.node}
    gate = quantize_with_gate(
        model,
        out,
        calibration,
        images,
        targets,
        num_classes=num_classes,
        max_drop=-1.0,  # unreachable: every block is tried in float
        log=lambda _: None,
        quantizer=quantizer,
    )
    assert not gate.passed and gate.float_blocks and set(gate.sensitivity) >= set(gate.float_blocks)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert not quantized_ops & ops  # every block kept float at the end of the fallback


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
        (
            ["--max-accuracy-drop", "-1", "--cpu-int8-form", "static"],
            "CPU INT8 (--cpu-int8-form static) loses",
        ),
        (["--cpu-int8-form", "fast"], "Invalid value for '--cpu-int8-form'"),
        (["--cpu-int8-form", "static", "--precision", "fp32"], "--cpu-int8-form static chooses the form"),
        (["--cpu-int8-form", "dynamic", "--calib-data", "{few}"], "--cpu-int8-form dynamic ranges its"),
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


def test_dynamic_form_end_to_end(dynamic_bundle):
    """--cpu-int8-form dynamic: ONNX Runtime's dynamic quantization under the same gate, without calibration."""
    manifest = _manifest(dynamic_bundle)
    check = manifest["checks"]["int8_cpu_vs_fp32"]
    assert check["passed"] and check["form"] == cpu_int8.FORMS["dynamic"]
    assert check["chosen"] == "dynamic" and check["chosen_by"] == "--cpu-int8-form dynamic"
    assert check["speed"] is None and check["faster_than_fp32"] is None
    assert manifest["calibration"] is None  # the dynamic form ranges its activations on each batch
    ops = {n.op_type for n in onnx.load(str(dynamic_bundle / "model.int8-cpu.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "QuantizeLinear" not in ops
    images = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    int8 = run_onnx(onnxruntime_session(dynamic_bundle / "model.int8-cpu.onnx"), images)
    fp32 = run_onnx(onnxruntime_session(dynamic_bundle / "model.onnx"), images)
    assert np.abs(int8 - fp32).max() < 0.1 * np.abs(fp32).max()
    result = invoke("info", dynamic_bundle)
    assert result.exit_code == 0
    assert (
        "CPU INT8 form: dynamic (--cpu-int8-form dynamic; speed against FP32 not measured)" in result.output
    )


def test_default_export_measures_both_forms(cpu_bundle):
    """auto (the default): both forms gated, each that passed timed against FP32, the faster kept."""
    check = _manifest(cpu_bundle)["checks"]["int8_cpu_vs_fp32"]
    assert check["chosen_by"] == "measured" and check["chosen"] in bundle.CPU_INT8_FORMS
    assert check["form"] == cpu_int8.FORMS[check["chosen"]]
    assert set(check["candidates"]) == set(bundle.CPU_INT8_FORMS)
    assert check["candidates"][check["chosen"]]["passed"]
    speed = check["speed"]
    timed = [f for f in bundle.CPU_INT8_FORMS if check["candidates"][f]["passed"]]
    assert speed["batches"] == [1, bundle.ACCURACY_BATCH]
    assert cpu_timing.MIN_REPEATS <= speed["repeats"] <= cpu_timing.MAX_REPEATS
    assert speed["load_average"] is None or len(speed["load_average"]) == 3
    assert set(speed["median_ms"]) == {"fp32", *timed} and set(speed["speedup_vs_fp32"]) == set(timed)
    for form in timed:
        for b in ("1", str(bundle.ACCURACY_BATCH)):
            fp32, ms = speed["median_ms"]["fp32"][b], speed["median_ms"][form][b]
            assert ms > 0 and speed["speedup_vs_fp32"][form][b] == pytest.approx(fp32 / ms, rel=1e-2)
    ratios = speed["speedup_vs_fp32"][check["chosen"]].values()
    assert check["faster_than_fp32"] is all(v > 1 for v in ratios)
    result = invoke("info", cpu_bundle)
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if "CPU INT8 form:" in x)
    assert f"CPU INT8 form: {check['chosen']} (measured; " in line
    assert f"faster_than_fp32: {str(check['faster_than_fp32']).lower()}" in line


# ---------------------------------------------------------------- the timer


class _Clock:
    """A clock that advances `step` seconds per reading: every timed run (two readings) takes `step`."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_measure_cpu_latency_sets_its_repeats_by_the_budget(static_bundle):
    models = {"fp32": static_bundle / "model.onnx", "static": static_bundle / "model.int8-cpu.onnx"}
    images = np.zeros((3, 3, 32, 32), np.float32)  # fewer than the batch: repeated
    # every clock reading takes 1 ms, so a timed run takes 1 ms; one turn = SETTLE_MS of untimed runs + BURST
    # timed; one round = 2 models x 2 batches x (50 + 3) ms = 212 ms; a 2.6 s budget gives 12 rounds
    assert (cpu_timing.SETTLE_MS, cpu_timing.BURST) == (50.0, 3)
    speed = cpu_timing.measure_cpu_latency(models, images, batches=(1, 4), budget_s=2.6, clock=_Clock(1e-3))
    assert cpu_timing.MIN_REPEATS < 12 < cpu_timing.MAX_REPEATS
    assert speed["repeats"] == 12 and speed["batches"] == [1, 4]
    assert speed["median_ms"] == {"fp32": {"1": 1.0, "4": 1.0}, "static": {"1": 1.0, "4": 1.0}}
    assert speed["cores"] >= 1
    short = cpu_timing.measure_cpu_latency(models, images, batches=(1,), budget_s=1e-6, clock=_Clock(1e-3))
    assert short["repeats"] == cpu_timing.MIN_REPEATS  # a large model: at least MIN_REPEATS rounds
    many = cpu_timing.measure_cpu_latency(
        models, images, batches=(1,), budget_s=1.0, clock=_Clock(1e-9), settle_ms=0.0
    )
    assert many["repeats"] == cpu_timing.MAX_REPEATS


class _HeldCores:
    """Sessions sharing one fake clock: a model's run takes 1 ms, or 2 ms when it starts within 4 ms of the
    end of another model's last run (that runtime's threads still spinning on the cores, as measured: the
    next runtime's first few runs are slow, not just its first)."""

    HOLD, SLOW, FAST = 4e-3, 2e-3, 1e-3

    def __init__(self) -> None:
        self.now, self.ended, self.spinning = 0.0, {}, []

    def clock(self) -> float:
        return self.now

    def session(self, path, runtime, threads=None, spinning=True):
        held = self
        held.spinning.append(spinning)

        class Session:
            def run(self, outputs, feeds):
                others = [end for p, end in held.ended.items() if p != path]
                # (1e-12: sums of 1 ms steps in floats; a run that starts exactly HOLD after is not held)
                held.now += held.SLOW if others and held.now - max(others) < held.HOLD - 1e-12 else held.FAST
                held.ended[path] = held.now

        return Session()


def test_timed_turn_settles_before_it_times():
    cores = _HeldCores()
    other, model = cores.session("a.onnx", "onnxruntime"), cores.session("b.onnx", "openvino")
    other.run(None, None)
    # one untimed run is not enough here: the second run still starts inside the other's 4 ms
    unsettled = cpu_timing.timed_turn(lambda: model.run(None, None), 1, settle_ms=0.0, clock=cores.clock)
    assert unsettled == pytest.approx([2.0])
    other.run(None, None)
    assert cpu_timing.timed_turn(lambda: model.run(None, None), 3, clock=cores.clock) == pytest.approx(
        [1.0] * 3
    )


def test_measure_cpu_latency_does_not_time_a_model_while_the_previous_one_holds_the_cores(monkeypatch):
    cores = _HeldCores()
    monkeypatch.setattr(cpu_timing, "session", cores.session)
    images = np.zeros((2, 3, 32, 32), np.float32)
    models = {"fp32": "a.onnx", "openvino": "b.onnx"}
    speed = cpu_timing.measure_cpu_latency(models, images, batches=(1, 2), budget_s=0.1, clock=cores.clock)
    assert speed["median_ms"] == {"fp32": {"1": 1.0, "2": 1.0}, "openvino": {"1": 1.0, "2": 1.0}}
    assert cores.spinning == [True, True]  # the sessions as `profile` and an application run them
    unsettled = cpu_timing.measure_cpu_latency(
        models, images, batches=(1,), burst=1, settle_ms=0.0, clock=cores.clock
    )
    # without the settling runs, runs inside the other runtime's hold are timed: both look slower
    assert all(ms["1"] >= 1.5 for ms in unsettled["median_ms"].values())


def test_measure_cpu_latency_times_real_sessions(static_bundle):
    models = {"fp32": static_bundle / "model.onnx", "static": static_bundle / "model.int8-cpu.onnx"}
    speed = cpu_timing.measure_cpu_latency(
        models, np.zeros((2, 3, 32, 32), np.float32), batches=(1, 2), budget_s=0.05
    )
    assert cpu_timing.MIN_REPEATS <= speed["repeats"] <= cpu_timing.MAX_REPEATS
    assert all(ms > 0 for per_batch in speed["median_ms"].values() for ms in per_batch.values())


# ---------------------------------------------------------------- the option


@pytest.mark.parametrize(
    "target, precision",
    [("cpu", "fp32"), ("jetson-orin", "int8"), ("jetson-orin", "fp16"), ("x86-gpu", None)],
)
@pytest.mark.parametrize("form", ["static", "dynamic"])
def test_cpu_int8_form_refused_where_there_is_no_cpu_int8_model(tmp_path, target, precision, form):
    config = ExportConfig(
        run_dir=str(tmp_path / "run"), target=target, precision=precision, cpu_int8_form=form
    )
    with pytest.raises(ConfigError, match=f"--cpu-int8-form {form} chooses the form of the CPU INT8 model"):
        export(config)
    assert not (tmp_path / "run").exists()


def test_cpu_int8_form_option_and_schema_agree():
    choices = typing.get_args(typing.get_type_hints(ExportConfig)["cpu_int8_form"])
    assert choices == ("auto", *bundle.CPU_INT8_FORMS) and tuple(cpu_int8.FORMS) == bundle.CPU_INT8_FORMS
    assert set(cpu_int8.QUANTIZERS) == set(bundle.CPU_INT8_FORMS)
    assert ExportConfig().cpu_int8_form == "auto"
    result = invoke("export", "--help")
    text = " ".join(result.output.split())
    assert "--cpu-int8-form [auto|static|dynamic|openvino]" in text
    for words in (
        "static (U8S8",
        "dynamic (ONNX Runtime's dynamic quantization",
        "openvino (S8S8 Q/DQ",
        "or auto: build every form whose runtime is installed",
    ):
        assert words in text
    assert f"more than {cpu_int8.STATIC_PREFERENCE * 100:.0f} % faster" in text

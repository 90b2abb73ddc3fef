"""How --cpu-int8-form auto chooses: `build_cpu_int8` with stand-ins for the accuracy gate and the timer (no model
is quantized or timed here), and `choose_cpu_form`'s table. The forms themselves: tests/test_cpu_int8.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sladkit import bundle
from sladkit.config import ExportConfig
from sladkit.export import cpu_int8
from sladkit.export.onnx import ExportError
from sladkit.export.quantize import GateResult


def _gate(passed: bool, drop: float = 0.0) -> GateResult:
    return GateResult(80.0, 80.0 - drop, 99.0, [], passed)


def _choose(tmp_path, monkeypatch, *, gates, median_ms, form="auto", runtimes=None, logged=None):
    """build_cpu_int8 with `gates` (form -> GateResult) standing in for the gate and `median_ms` for the timer;
    each form's file holds its name, so the file kept shows which form was chosen. The forms auto builds are
    those of `gates` (all runtimes "installed"). `runtimes` / `logged`: lists that get the timer's runtimes
    and the log lines."""
    by_quantizer = {q: f for f, q in cpu_int8.QUANTIZERS.items()}

    def fake_gate(model_path, out_path, calibration, images, targets, *, quantizer, **_):
        name = by_quantizer[quantizer]
        out_path.write_text(name)
        return gates[name]

    timed = []

    def fake_timer(models, images, runtimes=None):
        timed.append(set(models))
        if runtimes is not None and logged_runtimes is not None:
            logged_runtimes.append(runtimes)
        return {"batches": [1, 32], "repeats": 7, "load_average": [3.5, 2.0, 1.0], "cores": 2,
                "median_ms": {name: median_ms[name] for name in models}}  # fmt: skip

    logged_runtimes = runtimes
    monkeypatch.setattr(cpu_int8, "quantize_with_gate", fake_gate)
    monkeypatch.setattr(cpu_int8, "available_forms", lambda: (tuple(f for f in gates), {}))
    out = tmp_path / "model.int8-cpu.onnx"
    config = ExportConfig(run_dir="run", target="cpu", cpu_int8_form=form)
    images = np.zeros((2, 3, 32, 32), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check = cpu_int8.build_cpu_int8(
            tmp_path / "fp32.onnx", out, None, images, np.zeros(2, np.int64),
            fp32_path=tmp_path / "fp32.onnx", num_classes=3, config=config, timer=fake_timer,
            log=(logged.append if logged is not None else lambda _: None),
        )  # fmt: skip
    return check, out.read_text(), timed, [str(w.message) for w in caught]


FP32_MS = {"1": 1.0, "32": 10.0}


@pytest.mark.parametrize(
    "static_ms, dynamic_ms, static_passes, dynamic_passes, chosen",
    [
        ({"1": 0.5, "32": 5.0}, {"1": 0.7, "32": 7.0}, True, True, "static"),  # static faster
        ({"1": 0.5, "32": 5.0}, {"1": 0.4, "32": 4.0}, True, True, "dynamic"),  # dynamic 25 % faster
        ({"1": 0.5, "32": 5.0}, {"1": 0.49, "32": 4.9}, True, True, "static"),  # within STATIC_PREFERENCE
        ({"1": 0.5, "32": 5.0}, {"1": 0.1, "32": 1.0}, True, False, "static"),  # dynamic fails its gate
        ({"1": 0.1, "32": 1.0}, {"1": 0.5, "32": 5.0}, False, True, "dynamic"),  # static fails its gate
    ],
)
def test_auto_keeps_the_faster_form_that_passed(
    tmp_path, monkeypatch, static_ms, dynamic_ms, static_passes, dynamic_passes, chosen
):
    gates = {"static": _gate(static_passes, 0.0 if static_passes else 5.0), "dynamic": _gate(dynamic_passes)}
    check, kept, timed, warned = _choose(
        tmp_path,
        monkeypatch,
        gates=gates,
        median_ms={"fp32": FP32_MS, "static": static_ms, "dynamic": dynamic_ms},
    )
    assert kept == chosen and check["chosen"] == chosen and check["form"] == cpu_int8.FORMS[chosen]
    assert check["chosen_by"] == "measured" and check["passed"]
    passed = {f for f, g in gates.items() if g.passed}
    assert timed == [{"fp32", *passed}]  # a form that failed its gate is not timed
    assert check["candidates"]["static"]["passed"] is static_passes
    assert check["candidates"]["dynamic"]["passed"] is dynamic_passes
    speed = check["speed"]
    assert speed["repeats"] == 7 and speed["load_average"] == [3.5, 2.0, 1.0]
    assert speed["speedup_vs_fp32"][chosen] == {
        b: round(FP32_MS[b] / ms, 3) for b, ms in speed["median_ms"][chosen].items()
    }
    assert check["faster_than_fp32"] is True and warned == []


def test_auto_warns_once_when_int8_is_slower_than_fp32(tmp_path, monkeypatch):
    check, kept, _, warned = _choose(
        tmp_path,
        monkeypatch,
        gates={"static": _gate(True), "dynamic": _gate(True)},
        median_ms={"fp32": FP32_MS, "static": {"1": 3.0, "32": 12.0}, "dynamic": {"1": 2.5, "32": 11.0}},
    )
    assert kept == "dynamic" and check["faster_than_fp32"] is False
    assert check["speed"]["speedup_vs_fp32"]["dynamic"] == {"1": 0.4, "32": 0.909}
    assert warned == [
        "CPU INT8 (dynamic form) is slower than FP32 at batch 1 and 32 on this machine (0.40x FP32's speed at "
        "batch 1, 0.91x at batch 32; load 3.5 on 2 cores): deploy model.onnx, or export a larger model"
    ]
    summary = bundle.cpu_int8_summary(check)
    assert (
        summary
        == "CPU INT8 form: dynamic (measured; 0.40x/0.91x FP32's speed at batch 1/32, load 3.5); faster_than_fp32: false"
    )


def test_int8_slower_at_one_batch_is_not_faster_than_fp32(tmp_path, monkeypatch):
    check, _, _, warned = _choose(
        tmp_path,
        monkeypatch,
        gates={"static": _gate(True), "dynamic": _gate(True)},
        median_ms={"fp32": FP32_MS, "static": {"1": 1.2, "32": 5.0}, "dynamic": {"1": 1.3, "32": 6.0}},
    )
    assert check["chosen"] == "static" and check["faster_than_fp32"] is False
    assert warned == [
        "CPU INT8 (static form) is slower than FP32 at batch 1 on this machine (0.83x FP32's speed at batch 1, "
        "2.00x at batch 32; load 3.5 on 2 cores): deploy model.onnx at batch 1, or export a larger model"
    ]


@pytest.mark.parametrize("form", ["static", "dynamic"])
def test_an_explicit_form_is_neither_timed_nor_compared(tmp_path, monkeypatch, form):
    check, kept, timed, warned = _choose(
        tmp_path, monkeypatch, gates={form: _gate(True)}, median_ms={}, form=form
    )
    assert kept == form and timed == [] and warned == []
    assert check["chosen_by"] == f"--cpu-int8-form {form}" and check["speed"] is None
    assert check["faster_than_fp32"] is None and "candidates" not in check


def test_auto_refuses_when_both_forms_fail(tmp_path, monkeypatch):
    with pytest.raises(ExportError) as caught:
        _choose(
            tmp_path,
            monkeypatch,
            gates={"static": _gate(False, 3.0), "dynamic": _gate(False, 2.0)},
            median_ms={},
        )
    message = str(caught.value)
    assert message.startswith(
        "CPU INT8 fails the gate in every form (static, dynamic); the closest (dynamic) loses 2.00 points"
    )
    assert message.endswith(", try another --calib-method, or use --precision fp32") and "\n" not in message


def test_choose_cpu_form_table():
    both = ["static", "dynamic"]
    assert cpu_int8.choose_cpu_form({"static": {"1": 2.0}, "dynamic": {"1": 1.0}}, both) == "static"
    assert cpu_int8.choose_cpu_form({"static": {"1": 1.0}, "dynamic": {"1": 2.0}}, both) == "dynamic"
    assert cpu_int8.choose_cpu_form({"static": {"1": 1.5}, "dynamic": {"1": 1.56}}, both) == "static"
    # the geometric mean over batches: 1.05x at one, 3x at the other beats 1.1x at both
    assert (
        cpu_int8.choose_cpu_form({"static": {"1": 1.1, "8": 1.1}, "dynamic": {"1": 1.05, "8": 3.0}}, both)
        == "dynamic"
    )
    assert cpu_int8.choose_cpu_form({"dynamic": {"1": 0.2}}, ["dynamic"]) == "dynamic"
    # a form faster than FP32 at every batch comes before a faster one that is slower at one batch
    three = ["static", "dynamic", "openvino"]
    speed = {
        "static": {"1": 1.02, "32": 1.08},
        "dynamic": {"1": 1.3, "32": 1.3},
        "openvino": {"1": 0.8, "32": 2.1},
    }
    assert cpu_int8.choose_cpu_form(speed, three) == "dynamic"
    speed["openvino"]["1"] = 1.5
    assert cpu_int8.choose_cpu_form(speed, three) == "openvino"
    # when none is faster than FP32 everywhere, the fastest
    assert (
        cpu_int8.choose_cpu_form({"static": {"1": 0.5, "8": 3.0}, "dynamic": {"1": 0.9, "8": 1.1}}, both)
        == "static"
    )


def test_auto_times_each_form_with_its_runtime(tmp_path, monkeypatch):
    runtimes, logged = [], []
    check, kept, timed, warned = _choose(
        tmp_path,
        monkeypatch,
        gates={"static": _gate(True), "dynamic": _gate(True), "openvino": _gate(True)},
        median_ms={
            "fp32": FP32_MS,
            "static": {"1": 0.9, "32": 9.0},
            "dynamic": {"1": 0.8, "32": 8.0},
            "openvino": {"1": 0.5, "32": 4.0},
        },  # fmt: skip
        runtimes=runtimes,
        logged=logged,
    )
    assert kept == "openvino" and check["chosen"] == "openvino" and check["runtime"] == "openvino"
    assert runtimes == [{"static": "onnxruntime", "dynamic": "onnxruntime", "openvino": "openvino"}]
    assert set(check["candidates"]) == {"static", "dynamic", "openvino"} and warned == []
    assert any("kept the openvino form" in line for line in logged)


def test_auto_leaves_out_a_form_whose_runtime_is_missing(tmp_path, monkeypatch):
    from sladkit.runtime.backends import BACKENDS

    monkeypatch.setattr(BACKENDS["openvino"], "availability", classmethod(lambda cls: (False, "not here")))
    assert cpu_int8.available_forms() == (("static", "dynamic"), {"openvino": "not here"})

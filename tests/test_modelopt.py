"""`sladkit export --quantizer modelopt`: where the option applies, the one line without ModelOpt, and the
ModelOpt-quantized TensorRT INT8 model on the tiny run.

The ModelOpt export test needs `sladkit[modelopt]`, which the dev venv does not hold (it pins an older onnx):
`make test` runs this file a second time in `.venv/modelopt` with SLADKIT_REQUIRE_MODELOPT=1, where that
test cannot skip. In the dev venv it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sladkit.cli import cli
from sladkit.config import ExportConfig
from sladkit.errors import ConfigError, MissingDependencyError
from sladkit.export import modelopt_backend
from sladkit.export import run as export

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _has_modelopt() -> bool:
    try:
        modelopt_backend.check_available()
    except MissingDependencyError:
        return False
    return True


REQUIRED = os.environ.get("SLADKIT_REQUIRE_MODELOPT") == "1"
needs_modelopt = pytest.mark.skipif(
    not REQUIRED and not _has_modelopt(),
    reason="ModelOpt not installed here; `make test` runs this in .venv/modelopt (SLADKIT_REQUIRE_MODELOPT=1)",
)


@pytest.mark.parametrize(
    "target, precision",
    [
        ("cpu", None),
        ("cpu", "int8"),
        ("jetson-orin", "fp16"),
        ("jetson-orin", "fp32"),
        ("jetson-thor", "fp8"),
    ],
)
def test_modelopt_refused_where_it_does_not_apply(tmp_path, target, precision):
    config = ExportConfig(
        run_dir=str(tmp_path / "run"), target=target, precision=precision, quantizer="modelopt"
    )
    with pytest.raises(ConfigError, match="--quantizer modelopt quantizes the TensorRT INT8 model only"):
        export(config)
    assert not (tmp_path / "run").exists()


def test_unknown_quantizer_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--quantizer", "ort"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_missing_modelopt_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "modelopt", None)  # import modelopt now raises ImportError
    monkeypatch.setitem(sys.modules, "modelopt.onnx", None)
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", None)
    with pytest.raises(MissingDependencyError) as caught:
        export(ExportConfig(run_dir=str(tmp_path), target="jetson-orin", quantizer="modelopt"))
    message = str(caught.value)
    assert "\n" not in message and "pip install 'sladkit[modelopt]'" in message
    result = CliRunner().invoke(
        cli, ["export", str(tmp_path), "--target", "jetson-orin", "--quantizer", "modelopt"]
    )
    assert result.exit_code != 0
    assert "sladkit[modelopt]" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture
def orin_int8(run_dir, tmp_path):
    """A fast TensorRT INT8 export of the tiny run into tmp_path/NAME (no engine, a gate that always passes):
    `orin_int8(NAME, quantizer=...)` exports and returns the manifest."""

    def export_to(name: str, **options) -> dict:
        config = ExportConfig(
            run_dir=str(run_dir),
            target="jetson-orin",
            out=str(tmp_path / name),
            eval_images=32,
            calib_images=32,
            build_engine="never",
            min_agreement=0.0,
            max_accuracy_drop=100.0,
            **options,
        )
        export(config)
        return json.loads((tmp_path / name / "manifest.json").read_text())

    return export_to


def test_manifest_records_the_quantizer_and_its_version(orin_int8, monkeypatch):
    """The plumbing without ModelOpt: the gate is handed the ModelOpt quantizer (here sladkit's own, standing
    in for it) and the manifest says which quantizer made model.int8.onnx and which ModelOpt version."""
    from sladkit.export.quantize import quantize_qdq

    calls = []

    def stand_in(model_path, out_path, calibration, **nodes):
        calls.append(nodes)
        quantize_qdq(model_path, out_path, calibration, **nodes)

    monkeypatch.setattr(modelopt_backend, "check_available", lambda: None)
    monkeypatch.setattr(modelopt_backend, "quantize_modelopt", stand_in)
    monkeypatch.setattr(modelopt_backend, "modelopt_version", lambda: "0.0.stand-in")
    check = orin_int8("mo", quantizer="modelopt")["checks"]["int8_vs_fp32"]
    assert calls and check["quantizer"] == "modelopt" and check["modelopt"] == "0.0.stand-in"

    calls.clear()
    check = orin_int8("sk")["checks"]["int8_vs_fp32"]
    assert not calls and check["quantizer"] == "sladkit" and "modelopt" not in check


def test_only_the_no_nvml_error_of_modelopt_is_dropped(caplog):
    """ModelOpt logs "Failed to get GPU count: NVML ..." as an ERROR on every machine without NVIDIA's driver;
    that one line is dropped during its quantization, every other one kept."""
    import logging

    logger = logging.getLogger("modelopt.onnx")
    with caplog.at_level(logging.INFO), modelopt_backend._without_no_nvml_error():
        logger.error("Failed to get GPU count: %s", "NVML Shared Library Not Found")
        logger.error("Failed to get GPU count: Driver Not Loaded")
        logger.error("Quantization failed")
    logger.error("Failed to get GPU count: NVML Shared Library Not Found")  # outside quantization: kept
    assert [r.getMessage() for r in caplog.records] == [
        "Failed to get GPU count: Driver Not Loaded",
        "Quantization failed",
        "Failed to get GPU count: NVML Shared Library Not Found",
    ]


@needs_modelopt
def test_modelopt_export_of_the_tiny_run(orin_int8, tmp_path, caplog):
    import onnxruntime as ort

    from sladkit.export.qdq_check import check_tensorrt_qdq

    out = tmp_path / "orin"
    manifest = orin_int8("orin", quantizer="modelopt")
    assert not [r for r in caplog.records if "Failed to get GPU count" in r.getMessage()]  # see above
    check = manifest["checks"]["int8_vs_fp32"]
    assert check["quantizer"] == "modelopt"
    import modelopt

    assert check["modelopt"] == modelopt.__version__
    assert manifest["export_config"]["quantizer"] == "modelopt"

    qdq = onnx.load(str(out / "model.int8.onnx"))
    ops = Counter(n.op_type for n in qdq.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert check_tensorrt_qdq(qdq) == []
    initializers = {i.name: i for i in qdq.graph.initializer}
    for node in qdq.graph.node:  # no bias dequantized from INT32
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            assert initializers[node.input[0]].data_type != onnx.TensorProto.INT32, node.name

    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    shape = [2 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    logits = session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})[0]
    assert logits.shape[0] == 2 and np.isfinite(logits).all()

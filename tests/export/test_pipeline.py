"""`sladkit export` end to end: bundles, `sladkit info`, and bad input (one line, no partial bundle)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sladkit.cli import cli
from sladkit.export.targets import TARGETS, Target, get_target, register_target

FAST = ["--calib-images", "16", "--eval-images", "32", "--calib-method", "minmax"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def orin_bundle(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "orin"
    result = invoke("export", run_dir, "--target", "jetson-orin", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "pre-processing before quantization" not in result.output  # ONNX Runtime's advice, not ours
    return out


def test_orin_bundle_holds_checked_artifacts(orin_bundle):
    manifest = json.loads((orin_bundle / "manifest.json").read_text())
    files = {a["file"] for a in manifest["artifacts"]}
    assert {"model.onnx", "model.int8.onnx", "calib.cache", "labels.txt", "build_engine.sh"} <= files
    assert manifest["target"] == {
        **manifest["target"],
        "name": "jetson-orin",
        "tensorrt": "10.3.0",
        "opset": 17,
    }
    assert manifest["checks"]["onnx_vs_pytorch"]["max_abs_diff"] < 1e-4
    assert manifest["checks"]["merge"]["max_abs_diff"] < 1e-4
    assert manifest["checks"]["int8_vs_fp32"]["passed"] is True
    assert manifest["calibration"]["method"] == "minmax" and manifest["calibration"]["images"] == 16
    assert manifest["input"]["batch"] == {"min": 1, "opt": 1, "max": 8}
    script = (orin_bundle / "build_engine.sh").read_text()
    read = set(re.findall(r"--(?:onnx|calib)=([\w.-]+)", script))  # what the script reads
    assert read and read <= files  # build_engine.sh names only files of the bundle
    assert "--memPoolSize=workspace:" in script and "model.int8.onnx" in script


def test_info_verifies_hashes_and_refuses_a_tampered_bundle(orin_bundle, tmp_path):
    result = invoke("info", orin_bundle)
    assert result.exit_code == 0 and "listed files verified (SHA-256)" in result.output
    tampered = tmp_path / "tampered"
    shutil.copytree(orin_bundle, tampered)
    with open(tampered / "model.int8.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01")
    result = invoke("info", tampered)
    assert result.exit_code == 1
    assert "model.int8.onnx does not match its SHA-256" in result.output and "Traceback" not in result.output


def test_cpu_bundle_with_baked_preprocessing(run_dir, tmp_path):
    out = tmp_path / "cpu"
    result = invoke("export", run_dir, "--target", "cpu", "--out", out, "--bake-preprocess", *FAST)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["file"] for a in manifest["artifacts"]} >= {"model.onnx", "model.int8-cpu.onnx"}
    assert manifest["input"]["dtype"] == "uint8" and manifest["input"]["layout"] == "NHWC"
    assert manifest["checks"]["bake_preprocess"]["max_abs_diff"] < 1e-4
    assert not (out / "build_engine.sh").exists()


def test_target_table():
    assert set(TARGETS) == {
        "jetson-thor",
        "jetson-orin-jp7",
        "jetson-orin",
        "jetson-xavier",
        "jetson-nano",
        "x86-gpu",
        "cpu",
    }
    assert "int8" not in get_target("jetson-nano").precisions
    assert get_target("jetson-xavier").opset == 16 and get_target("jetson-nano").opset == 16
    assert get_target("jetson-orin").dla_cores == 2 and get_target("jetson-orin").tensorrt.startswith("10.3")
    with pytest.raises(ValueError, match="already registered"):
        register_target(Target("cpu", "again", runtime="onnxruntime", opset=17, precisions=("fp32",)))


def test_simplifier_failure_falls_back_to_onnxslim(run_dir, tmp_path, monkeypatch):
    import onnxsim

    def broken(*args, **kwargs):
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    out = tmp_path / "b"
    result = invoke("export", run_dir, "--target", "jetson-orin", "--precision", "fp16", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    simplify = json.loads((out / "manifest.json").read_text())["checks"]["simplify"]
    assert (
        simplify["tool"].startswith("onnxslim") and "simulated onnxsim crash" in simplify["fallback_reason"]
    )


def test_failure_while_writing_keeps_the_previous_bundle(run_dir, orin_bundle, tmp_path, monkeypatch):
    out = tmp_path / "keep"
    shutil.copytree(orin_bundle, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from sladkit.export import pipeline

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_build_script", crash)
    with pytest.raises(OSError, match="disk full"):
        invoke("export", run_dir, "--out", out, "--overwrite", *FAST)
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]  # no temporary folder left


@pytest.fixture
def broken_runs(run_dir, tmp_path):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(run_dir, incomplete)
    shutil.rmtree(incomplete / "checkpoints")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir, corrupt)
    (corrupt / "checkpoints/best/model.safetensors").write_bytes(b"garbage")
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        shutil.copy(next((run_dir / "adapters/student").glob("*.json")), few / f"{i}.txt")
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(few / f"{i}.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    exists = tmp_path / "exists"
    exists.mkdir()
    (exists / "notes.txt").write_text("not sladkit's")
    return {"incomplete": incomplete, "corrupt": corrupt, "few": few, "empty": empty, "exists": exists}


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "does not exist"),
        (["{incomplete}"], "has no complete best checkpoint"),
        (["{corrupt}"], "is corrupt"),
        (["{run}", "--target", "jetson-tx2"], "Invalid value for '--target'"),
        (["{run}", "--target", "jetson-nano", "--precision", "int8"], "no INT8; use --precision fp16"),
        (["{run}", "--calib-data", "{empty}"], "holds no images"),
        (["{run}", "--calib-data", "{few}"], "has 3 readable images; at least 8"),
        (["{run}", "--target", "cpu", "--precision", "fp32", "--calib-data", "{few}"], "uses no calibration"),
        (["{run}", "--calib-images", "4"], "--calib-images must be >= 8 (got 4)"),
        (["{run}", "--out", "{exists}"], "holds files that are not a sladkit bundle"),
        (["{run}", "--batch", "8,1,1"], "--batch must be MIN,OPT,MAX"),
        (["{run}", "--target", "cpu", "--dla-core", "0"], "0 DLA cores"),
        (["{run}", "--max-accuracy-drop", "-1"], "INT8 loses"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_bundle(run_dir, broken_runs, tmp_path, args, message):
    paths = {"run": run_dir, "missing": tmp_path / "missing", **broken_runs}
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    out = tmp_path / "bundle"
    if "--out" not in args:
        args += ["--out", str(out)]
    result = invoke("export", *FAST, *args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def _fp8_to_float(tensor):
    import ml_dtypes
    import numpy as np

    raw = np.frombuffer(tensor.raw_data, dtype=ml_dtypes.float8_e4m3fn).reshape(tuple(tensor.dims))
    return raw.astype(np.float32)


def test_thor_fp8_bundle(run_dir, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    from sladkit.export.qdq_check import check_tensorrt_qdq

    out = tmp_path / "thor"
    result = invoke("export", run_dir, "--target", "jetson-thor", "--precision", "fp8", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    files = {a["file"] for a in manifest["artifacts"]}
    assert {"model.onnx", "model.fp8.onnx", "build_engine.sh"} <= files
    assert not {"model.int8.onnx", "calib.cache"} & files  # FP8 is explicit: no implicit-INT8 cache
    assert manifest["target"] == {
        **manifest["target"],
        "name": "jetson-thor",
        "tensorrt": "10.13.3",
        "compute_capability": "11.0",
        "opset": 19,
        "precision": "fp8",
    }
    assert manifest["checks"]["fp8_vs_fp32"]["passed"] is True
    assert (
        manifest["engine_build"]["strongly_typed"]
        and manifest["engine_build"]["engine"] == "model.fp8.engine"
    )
    script = (out / "build_engine.sh").read_text()
    assert "--onnx=model.fp8.onnx" in script and "--stronglyTyped" in script
    assert not re.search(r"--(fp16|int8|fp8|calib)\b", script)
    # structurally: every Q/DQ is E4M3 with zero points 0, as TensorRT takes it
    fp8 = onnx.load(str(out / "model.fp8.onnx"))
    assert check_tensorrt_qdq(fp8, precision="fp8") == []
    init = {i.name: i for i in fp8.graph.initializer}
    dqs = [n for n in fp8.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs and all(init[n.input[2]].data_type == TensorProto.FLOAT8E4M3FN for n in dqs)
    # numerically, without ONNX Runtime: each weight dequantized in numpy is its FP32 value within E4M3's
    # 3-bit mantissa (relative step 2^-3, half of it for round-to-nearest), scale = amax / 448
    reference = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(str(out / "model.onnx")).graph.initializer
    }
    checked = 0
    for n in dqs:
        if n.input[0] not in init:
            continue
        scale = numpy_helper.to_array(init[n.input[1]])
        q = _fp8_to_float(init[n.input[0]])
        assert np.abs(q).max() <= 448.0
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[next((a.i for a in n.attribute if a.name == "axis"), 1)] = scale.size
        w = q * scale.reshape(shape)
        fp32 = next(
            (v for v in reference.values() if v.shape == w.shape and np.allclose(v, w, rtol=0.07, atol=1e-6)),
            None,
        )
        assert fp32 is not None, n.input[0]
        checked += 1
    assert checked >= 4
    assert "engine build: model.fp8.engine on GPU" in invoke("info", out).output


def test_dla_bundle_manifest_is_what_the_script_builds(run_dir, tmp_path):
    out = tmp_path / "dla"
    args = ("--target", "jetson-orin", "--precision", "fp16", "--dla-core", "0", "--batch", "1,4,8")
    result = invoke("export", run_dir, *args, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["batch"] == {"min": 4, "opt": 4, "max": 4}  # DLA: no dynamic dimensions
    assert manifest["engine_build"]["dla_core"] == 0 and manifest["target"]["dla_core"] == 0
    assert manifest["engine_build"]["engine"] == "model.fp16.dla0.engine"
    script = (out / "build_engine.sh").read_text()
    assert set(re.findall(r"--(?:min|opt|max)Shapes=\w+:(\d+)x", script)) == {"4"}
    assert "--useDLACore=0" in script
    info = invoke("info", out).output
    assert "engine build: model.fp16.dla0.engine on DLA core 0, batch 4/4/4" in info


def test_the_gate_refuses_int8_that_keeps_the_metric_but_not_the_predictions(run_dir, tmp_path, monkeypatch):
    from sladkit.export import quantize

    real = quantize.predictions

    def other_model(path, images, *session):  # every INT8 prediction moved to the next class
        predicted = real(path, images, *session)
        return (predicted + 1) % 15 if "int8" in Path(path).name else predicted

    monkeypatch.setattr(quantize, "predictions", other_model)
    out = tmp_path / "bundle"
    result = invoke("export", run_dir, "--out", out, *FAST, "--max-accuracy-drop", "100")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "agrees with FP32 on 0.0 % of the images" in result.output
    assert "at least 90.0 %: raise --max-accuracy-drop or lower --min-agreement" in result.output
    assert not out.exists()


def test_default_calibration_is_auto_and_the_manifest_says_what_it_kept(cpu_bundle):
    calibration = json.loads((cpu_bundle / "manifest.json").read_text())["calibration"]
    errors = calibration["logit_mse"]
    assert calibration["chosen_by"] == "auto" and set(errors) == {"entropy", "minmax", "percentile"}
    assert calibration["method"] == min(errors, key=errors.get)
    info = invoke("info", cpu_bundle)
    assert (
        info.exit_code == 0 and f"calibration: {calibration['method']} (auto: lowest logit MSE" in info.output
    )

"""The openvino backend and the CPU INT8 model's openvino form (TensorRT's S8S8 Q/DQ placement run by OpenVINO)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto

from sladkit import bundle
from sladkit.cli import cli
from sladkit.config import ExportConfig
from sladkit.errors import ConfigError
from sladkit.export import cpu_int8
from sladkit.export import run as export
from sladkit.export.onnx import onnxruntime_session, run_onnx
from sladkit.runtime.artifacts import resolve
from sladkit.runtime.backends import BACKENDS, BackendError, create_backend
from sladkit.runtime.backends import openvino as ov_backend

pytest.importorskip("openvino", reason="the dev install includes it (pip install 'sladkit[openvino]')")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def openvino_bundle(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "openvino"
    export(
        ExportConfig(
            run_dir=str(run_dir),
            target="cpu",
            out=str(out),
            eval_images=32,
            calib_images=16,
            cpu_int8_form="openvino",
        )  # fmt: skip
    )
    return out


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_openvino_session_matches_onnxruntime_on_fp32(cpu_bundle):
    """FP32 in, FP32 out: the f32 precision hint keeps OpenVINO from computing in bf16."""
    path = cpu_bundle / "model.onnx"
    images = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    reference = run_onnx(onnxruntime_session(path), images)
    session = ov_backend.OpenVINOSession(path, threads=1)
    for batch in (1, 2, 5):  # one compiled model per input shape
        got = run_onnx(session, images, batch=batch)
        assert np.abs(got - reference).max() <= 1e-4 * np.abs(reference).max()
    assert {s[0] for s in session.compiled} == {1, 2, 5}  # batch 2 runs 2 + 2 + 1
    for batch in range(3, 3 + ov_backend.MAX_SHAPES):
        session.run(None, {"images": images[:batch]})
    assert len(session.compiled) == ov_backend.MAX_SHAPES


def test_openvino_session_reads_any_array_layout_and_owns_its_output(cpu_bundle):
    """The input goes to OpenVINO as a tensor over the array's memory: a strided view, a float64 or a read-only
    input gives the same logits as a contiguous float32 one, and the returned logits are not overwritten by the
    next run."""
    session = ov_backend.OpenVINOSession(cpu_bundle / "model.onnx", threads=1)
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    contiguous = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    (first,) = session.run(None, {"images": contiguous})
    (strided,) = session.run(None, {"images": images.transpose(0, 3, 1, 2)})
    (wide,) = session.run(None, {"images": contiguous.astype(np.float64)})
    read_only = contiguous.copy()
    read_only.setflags(write=False)  # e.g. np.frombuffer's, a memory map's
    (frozen,) = session.run(None, {"images": read_only})
    np.testing.assert_array_equal(strided, first)
    np.testing.assert_array_equal(frozen, first)
    np.testing.assert_allclose(wide, first, rtol=0, atol=1e-6 * np.abs(first).max())
    kept = first.copy()
    session.run(None, {"images": rng.standard_normal((2, 3, 32, 32)).astype(np.float32)})
    np.testing.assert_array_equal(first, kept)


def test_openvino_form_is_s8_qdq_without_bias_dequantization(openvino_bundle):
    manifest = _manifest(openvino_bundle)
    check = manifest["checks"]["int8_cpu_vs_fp32"]
    assert check["passed"] and check["chosen"] == "openvino" and check["runtime"] == "openvino"
    assert check["form"] == cpu_int8.FORMS["openvino"] and check["chosen_by"] == "--cpu-int8-form openvino"
    model = onnx.load(str(openvino_bundle / "model.int8-cpu.onnx"))
    init = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    zero_points = [init[n.input[2]].data_type for n in qdq if len(n.input) > 2 and n.input[2] in init]
    assert zero_points and set(zero_points) == {TensorProto.INT8}  # symmetric S8, no INT32 bias
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    producer = {o: n for n in model.graph.node for o in n.output}
    # every MatMul/Gemm reads dequantized inputs, the attention MatMuls included (unlike the static form)
    for node in matmuls:
        assert producer[node.input[0]].op_type == "DequantizeLinear", node.name
    (conv,) = [n for n in model.graph.node if n.op_type == "Conv"]  # the patch embedding stays float
    assert conv.input[0] not in producer or producer[conv.input[0]].op_type != "DequantizeLinear"
    assert conv.input[1] in init


def test_eval_runs_the_openvino_form_with_openvino_and_gets_the_gates_number(openvino_bundle):
    artifact = resolve(openvino_bundle, model="model.int8-cpu.onnx")
    assert artifact.runtime == "openvino" and resolve(openvino_bundle).runtime is None
    assert create_backend(artifact).name == "openvino"
    result = invoke(
        "eval", openvino_bundle, "--model", "model.int8-cpu.onnx", "--data", "synthetic", "--limit", "32"
    )
    assert result.exit_code == 0, result.output
    expected = _manifest(openvino_bundle)["checks"]["int8_cpu_vs_fp32"]["int8_metric"]
    assert f"acc {expected:.2f} % on 32 images" in result.output, result.output


def test_profile_names_the_openvino_backend(openvino_bundle):
    result = invoke("profile", openvino_bundle, "--batch", "1", "--iterations", "3", "--warmup", "1")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "model.int8-cpu.onnx" in line)
    assert row.split()[1] == "openvino"
    fp32 = next(line for line in result.output.splitlines() if ":model.onnx" in line)
    assert fp32.split()[1] == "onnxruntime"


def test_without_openvino_one_line_names_the_extra_and_the_way_around(openvino_bundle, monkeypatch):
    monkeypatch.setattr(
        BACKENDS["openvino"],
        "availability",
        classmethod(lambda cls: (False, "openvino is not installed (x)")),
    )
    artifact = resolve(openvino_bundle, model="model.int8-cpu.onnx")
    with pytest.raises(BackendError) as caught:
        create_backend(artifact)
    message = str(caught.value)
    assert "\n" not in message and "is made for openvino" in message and "--backend onnxruntime" in message
    backend = create_backend(artifact, "onnxruntime").load()  # a plain Q/DQ model: ONNX Runtime runs it too
    assert backend.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, len(artifact.labels))
    result = CliRunner().invoke(cli, ["eval", str(openvino_bundle), "--model", "model.int8-cpu.onnx",
                                      "--data", "synthetic", "--limit", "8"])  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "is made for openvino" in lines[0], result.output


def test_openvino_form_refused_without_openvino(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ov_backend, "openvino_available", lambda: (False, "openvino is not installed (x)"))
    config = ExportConfig(
        run_dir=str(run_dir), target="cpu", out=str(tmp_path / "b"), cpu_int8_form="openvino"
    )
    with pytest.raises(
        ConfigError, match="--cpu-int8-form openvino runs the model with OpenVINO: openvino is not"
    ):
        export(config)
    assert not (tmp_path / "b").exists()


def test_runtime_of_follows_the_form():
    manifest = {"checks": {bundle.CPU_INT8_CHECK: {"chosen": "openvino"}}}
    assert bundle.runtime_of(manifest, bundle.CPU_INT8_FILE) == "openvino"
    assert bundle.runtime_of(manifest, "model.onnx") is None
    for form in ("static", "dynamic"):
        manifest["checks"][bundle.CPU_INT8_CHECK]["chosen"] = form
        assert bundle.runtime_of(manifest, bundle.CPU_INT8_FILE) == "onnxruntime"
    assert bundle.runtime_of({"checks": {}}, bundle.CPU_INT8_FILE) is None


def test_layer_profile_reads_openvinos_counters(openvino_bundle):
    """`profile --layers` on the openvino form: OpenVINO's executed (fused) nodes, slowest first."""
    artifact = resolve(openvino_bundle, model="model.int8-cpu.onnx")
    backend = create_backend(artifact).load()
    layers = backend.layer_profile(np.zeros((2, 3, 32, 32), np.float32), iterations=3)
    assert layers and layers == sorted(layers, key=lambda r: -r["mean_ms"])
    assert abs(sum(r["share"] for r in layers) - 1.0) < 1e-2 and all(r["op"] for r in layers)
    assert any(r["block"] for r in layers)  # some fused nodes keep the name of an ONNX node of a block


def test_profile_skips_the_openvino_form_without_openvino_in_one_line(openvino_bundle, monkeypatch):
    monkeypatch.setattr(
        BACKENDS["openvino"],
        "availability",
        classmethod(lambda cls: (False, "openvino is not installed (x)")),
    )
    result = CliRunner().invoke(
        cli, ["profile", str(openvino_bundle), "--batch", "1", "--iterations", "2", "--warmup", "1"]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"skipping {openvino_bundle / 'model.int8-cpu.onnx'}: it is made for the openvino backend, unavailable "
        "here (openvino is not installed (x)); --backend onnxruntime runs it" in result.output
    )
    rows = [line for line in result.output.splitlines() if line.startswith(f"{openvino_bundle.name}:")]
    assert rows and all(line.startswith(f"{openvino_bundle.name}:model.onnx ") for line in rows)


def test_a_model_openvino_cannot_compile_is_one_line(cpu_bundle):
    session = ov_backend.OpenVINOSession(cpu_bundle / "model.onnx")
    with pytest.raises(BackendError) as caught:
        session.run(None, {"images": np.zeros((1, 3, 31, 32), np.float32)})  # not the model's image size
    assert "\n" not in str(caught.value) and str(caught.value).startswith("OpenVINO cannot compile")

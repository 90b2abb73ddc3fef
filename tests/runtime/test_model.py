"""`sladkit.runtime.load`: every artifact kind, predict/infer, no torch needed, clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import sladkit.runtime
from sladkit.engine_stamp import EngineStampError, check_fits
from sladkit.errors import SladkitError
from sladkit.runtime.artifacts import resolve
from sladkit.runtime.backends import create_backend
from sladkit.runtime.backends.base import BackendError


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(45, 37), (32, 32), (64, 80)]):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_bundle_onnx_file_and_run_folder_agree(cpu_bundle, run_dir, images):
    with sladkit.runtime.load(cpu_bundle) as bundle:
        expected = bundle.infer(bundle.preprocess(images))
        predictions = bundle.predict(images, top_k=3)
    assert expected.shape == (3, 15)
    assert [len(p.labels) for p in predictions] == [3, 3, 3]
    assert predictions[0].indices[0] == int(expected[0].argmax())
    assert sum(predictions[0].scores) <= 1.0 and predictions[0].scores == sorted(
        predictions[0].scores, reverse=True
    )
    with sladkit.runtime.load(cpu_bundle / "model.onnx") as onnx_file:
        assert np.allclose(onnx_file.infer(onnx_file.preprocess(images)), expected, atol=1e-5)
    with sladkit.runtime.load(run_dir) as torch_run:  # the PyTorch reference
        assert torch_run.backend.name == "torch"
        assert np.allclose(torch_run.infer(torch_run.preprocess(images)), expected, atol=1e-4)
    with sladkit.runtime.load(cpu_bundle, model="model.int8-cpu.onnx") as int8:
        assert int8.artifact.precision == "int8"
        assert int8.infer(int8.preprocess(images)).shape == (3, 15)


def test_runtime_runs_without_torch(cpu_bundle, images):
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import sladkit.runtime
with sladkit.runtime.load({str(cpu_bundle)!r}) as model:
    print(model.predict([{str(images[0])!r}])[0].labels[0])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in json.loads((cpu_bundle / "manifest.json").read_text())["labels"]


def test_profile_on_synthetic_data_runs_without_torch(cpu_bundle):
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
from sladkit.cli import cli
cli(["profile", {str(cpu_bundle)!r}, "--data", "synthetic", "--eval-images", "16", "--iterations", "3",
     "--warmup", "1"])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "acc" in result.stdout + result.stderr


def test_tampered_or_unknown_artifacts_are_refused(cpu_bundle, tmp_path):
    with pytest.raises(SladkitError, match="does not exist"):
        resolve(tmp_path / "nothing")
    stray = tmp_path / "model.bin"
    stray.write_bytes(b"x")
    with pytest.raises(SladkitError, match="not a sladkit artifact"):
        resolve(stray)
    tampered = tmp_path / "bundle"
    shutil.copytree(cpu_bundle, tampered)
    (tampered / "labels.txt").write_text("changed\n")
    with pytest.raises(SladkitError, match="labels.txt does not match its SHA-256"):
        resolve(tampered)
    manifest = json.loads((cpu_bundle / "manifest.json").read_text())
    manifest["schema_version"] = 99
    shutil.copytree(cpu_bundle, tmp_path / "future")
    (tmp_path / "future/manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SladkitError, match="version 99; this sladkit reads"):
        resolve(tmp_path / "future")


def test_wrong_inputs_and_unreadable_images(cpu_bundle, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with sladkit.runtime.load(cpu_bundle) as model:
        with pytest.raises(SladkitError, match="cannot read image .*broken.jpg"):
            model.predict([broken])
        with pytest.raises(BackendError, match=r"expected \(N, 3, 32, 32\) float32"):
            model.infer(np.zeros((1, 3, 48, 48), np.float32))


def test_engines_from_another_tensorrt_or_gpu_are_refused():
    meta = {"tensorrt_version": "10.3.0", "compute_capability": "8.7", "gpu": "Orin"}
    check_fits("model.int8.engine", meta, "10.3.0.30", {"compute_capability": "8.7"})
    with pytest.raises(
        EngineStampError, match="built with TensorRT 10.3.0, this machine has 8.5.2.*build_engine.sh"
    ):
        check_fits("model.int8.engine", meta, "8.5.2", {"compute_capability": "8.7"})
    with pytest.raises(EngineStampError, match="this machine has 10.3.1.*'Support Policies'"):
        check_fits("model.int8.engine", meta, "10.3.1", {"compute_capability": "8.7"})
    with pytest.raises(EngineStampError, match="compute capability 8.7 .*this one is 9.0"):
        check_fits("model.int8.engine", meta, "10.3.0", {"compute_capability": "9.0", "name": "H100"})


def test_engine_batch_limit_and_unavailable_tensorrt(cpu_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(cpu_bundle, bundle)
    (bundle / "model.fp16.engine").write_bytes(b"engine")
    engine_meta = {
        "sha256": hashlib.sha256(b"engine").hexdigest(),
        "tensorrt_version": "10.3.0",
        "precision": "fp16",
        "input": {"batch": {"min": 1, "opt": 1, "max": 4}},
    }
    (bundle / "engine.json").write_text(
        json.dumps({"schema_version": 1, "engines": {"model.fp16.engine": engine_meta}})
    )
    artifact = resolve(bundle / "model.fp16.engine", verify=False)
    assert artifact.kind == "engine" and artifact.batch_max == 4 and artifact.precision == "fp16"
    with pytest.raises(BackendError, match="tensorrt is unavailable here"):
        create_backend(artifact)
    from sladkit.runtime.backends.tensorrt import TensorRTBackend

    backend = TensorRTBackend(artifact)
    with pytest.raises(BackendError, match="batch 8 is larger than .* allows \\(4\\)"):
        backend.check_input(np.zeros((8, 3, 32, 32), np.float32))

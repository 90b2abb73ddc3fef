"""Merge parity, ONNX parity (ONNX Runtime and Polygraphy against PyTorch), metadata, baked preprocessing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sladkit.export.onnx import (
    bake_preprocess,
    check_onnx,
    export_onnx,
    onnxruntime_session,
    read_metadata,
    run_onnx,
    set_metadata,
)
from sladkit.models.adapters import LoraLinear
from sladkit.models.run_model import load_run_model, max_abs_difference, merge_adapters


@pytest.fixture(scope="module")
def models(run_dir):
    model, run_config = load_run_model(run_dir)
    return model, merge_adapters(model), run_config


@pytest.fixture(scope="module")
def images(models):
    from sladkit.export.data import validation_arrays

    return validation_arrays(models[2], 32)


def test_merge_leaves_a_plain_model_with_the_same_outputs(models, images):
    model, merged, _ = models
    assert any(isinstance(m, LoraLinear) for m in model.modules())
    assert not any(isinstance(m, LoraLinear) for m in merged.modules())
    assert any(isinstance(m, LoraLinear) for m in model.modules()), "merging must not touch the run's model"
    x = torch.from_numpy(images[0])
    assert max_abs_difference(model, merged, x) < 1e-5
    with torch.no_grad():
        assert not torch.allclose(
            merged(x), model.head(model.backbone.forward_features(x) * 0)
        )  # not trivial


def test_onnx_matches_pytorch_with_a_dynamic_batch(models, images, tmp_path):
    _, merged, run_config = models
    path = tmp_path / "m.onnx"
    export_onnx(merged, path, image_size=run_config["image_size"], opset=17)
    check_onnx(path)
    session = onnxruntime_session(path)
    for n in (1, 5, 32):
        x = images[0][:n]
        with torch.no_grad():
            expected = merged(torch.from_numpy(x)).numpy()
        assert np.abs(run_onnx(session, x) - expected).max() < 1e-4
    set_metadata(path, {"task": "cls", "labels": run_config["labels"]})
    meta = read_metadata(path)
    assert meta["task"] == "cls" and json.loads(meta["labels"]) == run_config["labels"]


def test_polygraphy_onnxrt_agrees_with_pytorch(models, images, tmp_path):
    """An independent check: Polygraphy's own ONNX Runtime runner, through its CLI."""
    from polygraphy.comparator import RunResults
    from polygraphy.json import save_json

    _, merged, run_config = models
    path = tmp_path / "m.onnx"
    export_onnx(merged, path, image_size=run_config["image_size"], opset=17)
    x = images[0][:8]
    save_json([{"images": x}], tmp_path / "inputs.json")
    cmd = [str(Path(sys.executable).parent / "polygraphy"), "run", str(path), "--onnxrt", "--load-inputs",
           str(tmp_path / "inputs.json"), "--save-outputs", str(tmp_path / "outputs.json")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    results = RunResults.load(str(tmp_path / "outputs.json"))
    ((_, outputs),) = results.items()
    got = np.asarray(outputs[0]["logits"])
    with torch.no_grad():
        assert np.abs(got - merged(torch.from_numpy(x)).numpy()).max() < 1e-4


def test_baked_preprocessing_takes_uint8_frames(models, images, tmp_path):
    _, merged, run_config = models
    float_path, baked_path = tmp_path / "m.onnx", tmp_path / "baked.onnx"
    export_onnx(merged, float_path, image_size=run_config["image_size"], opset=16)
    mean, std = run_config["transforms"]["mean"], run_config["transforms"]["std"]
    bake_preprocess(float_path, baked_path, mean=mean, std=std)
    check_onnx(baked_path)
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    normalised = ((frames / 255.0 - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2).astype(np.float32)
    expected = run_onnx(onnxruntime_session(float_path), normalised)
    assert np.abs(run_onnx(onnxruntime_session(baked_path), frames) - expected).max() < 1e-4


def test_baked_preprocessing_is_the_runtimes_bit_for_bit(tmp_path):
    """The in-graph normalisation gives exactly `normalize_eval`'s input (and so torchvision's): a last-bit
    difference moves predictions of a dynamically quantized model between export's gate and `eval`."""
    from onnx import TensorProto, helper

    from sladkit.data.transforms import normalize_eval, transform_config

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    identity = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["images"], ["logits"])],
            "identity",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 16, 16])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 16, 16])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    identity.ir_version = 8
    float_path, baked_path = tmp_path / "identity.onnx", tmp_path / "baked.onnx"
    float_path.write_bytes(identity.SerializeToString())
    bake_preprocess(float_path, baked_path, mean=mean, std=std)
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    frames[1] = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)  # every value in every channel
    cfg = transform_config(image_size=16, mean=mean, std=std)
    expected = np.stack([normalize_eval(cfg, f) for f in frames])
    got = onnxruntime_session(baked_path).run(["logits"], {"images": frames})[0]
    np.testing.assert_array_equal(got, expected)

"""Hostile bundles: a manifest, labels.txt or model edited by hand, with the hashes recomputed to match.

Each row tampers with a copy of the shared CPU bundle the way a careless or malicious hand would, fixing up
the manifest's hashes so that only the cross-checks can notice, and runs `info`, `predict`, `eval` and
`profile` on it: one `error:` line naming what disagrees, a non-zero exit, no traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sladkit.bundle import MANIFEST, describe_artifact
from sladkit.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def rehash(bundle: Path, manifest: dict) -> None:
    """Recompute every listed artifact's size and SHA-256, as a tamperer covering their tracks would."""
    manifest["artifacts"] = [
        describe_artifact(
            bundle, a["file"], **{k: v for k, v in a.items() if k not in ("file", "bytes", "sha256")}
        )
        for a in manifest["artifacts"]
    ]
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def reverse_manifest_labels(bundle: Path, manifest: dict) -> None:
    manifest["labels"] = manifest["labels"][::-1]
    rehash(bundle, manifest)


def reverse_all_labels(bundle: Path, manifest: dict) -> None:  # manifest and labels.txt agree; the model not
    manifest["labels"] = manifest["labels"][::-1]
    (bundle / "labels.txt").write_text("".join(label + "\n" for label in manifest["labels"]))
    rehash(bundle, manifest)


def swap_in_a_4_class_model(bundle: Path, manifest: dict) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = manifest["input"]["shape"][-1]
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])
    weight = numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "w")
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
    ]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    model = helper.make_model(
        helper.make_graph(nodes, "other", [images], [logits], initializer=[weight]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.save(model, str(bundle / "model.onnx"))
    rehash(bundle, manifest)


def claim_uint8_input(bundle: Path, manifest: dict) -> None:
    manifest["input"]["dtype"] = "uint8"
    rehash(bundle, manifest)


CASES = [
    ("labels reversed in the manifest", reverse_manifest_labels, "list different labels", True),
    (
        "labels reversed in manifest and labels.txt",
        reverse_all_labels,
        "its metadata lists the labels",
        False,
    ),
    (
        "a 4-class model swapped in",
        swap_in_a_4_class_model,
        "it outputs 4 classes, the manifest lists 15",
        False,
    ),
    (
        "input dtype edited",
        claim_uint8_input,
        "its input is 'images' float32, the manifest says 'images' uint8",
        False,
    ),
]
# `info` checks the manifest and the files it lists; a model is checked against the manifest where it is loaded.
ROWS = [
    pytest.param(name, tamper, message, command, id=f"{name}-{command}")
    for name, tamper, message, seen_by_info in CASES
    for command in (["info"] if seen_by_info else []) + ["predict", "eval", "profile"]
]


@pytest.fixture(scope="module")
def tampered(cpu_bundle, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tampered")
    bundles = {}
    for name, tamper, _, _ in CASES:
        bundles[name] = root / name.replace(" ", "-")
        shutil.copytree(cpu_bundle, bundles[name])
        tamper(bundles[name], json.loads((bundles[name] / MANIFEST).read_text()))
    return bundles


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("name, tamper, message, command", ROWS)
def test_a_tampered_bundle_is_refused_in_one_line(tampered, image, name, tamper, message, command):
    bundle = tampered[name]
    args = {
        "info": ["info", bundle],
        "predict": ["predict", bundle, image],
        "eval": ["eval", bundle, "--data", "synthetic", "--limit", "8"],
        "profile": ["profile", bundle, "--iterations", "2", "--warmup", "1"],
    }[command]
    result = invoke(*args)
    lines = [
        line for line in result.output.splitlines() if line and not line.startswith(("warning:", "skipping"))
    ]
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.output


def test_the_untampered_bundle_passes_every_cross_check(cpu_bundle, image):
    assert invoke("predict", cpu_bundle, image).exit_code == 0
    assert invoke("info", cpu_bundle).exit_code == 0


def test_info_checks_engines_against_their_stamp(cpu_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(cpu_bundle, bundle)
    (bundle / "model.fp16.engine").write_bytes(b"an engine built by hand, never stamped")
    result = invoke("info", bundle)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "model.fp16.engine has no engine.json beside it" in result.output

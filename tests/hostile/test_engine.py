"""The engine path, end to end and under hostile input: build_engine.sh -> engine.json -> profile/eval/predict.

No TensorRT here. A fake `trtexec` (a bash script on PATH that prints what real trtexec logs: the RUNNING
line with its command, "Selected Device", "Compute Capability", "TensorRT version", PASSED) runs through the
bundle's real `build_engine.sh` (written by `sladkit.export.trtexec`, as export writes it), which stamps the
engine with `python -m sladkit.engine_stamp`. The runtime then loads it against a stand-in `tensorrt` (only
`__version__`, which is all the runtime reads of it) and a stand-in for Polygraphy's TrtRunner; the GPU is
faked where `sladkit.runtime.device.gpu_info` reports it. This checks sladkit's stamping and checks, not
TensorRT's behaviour. Every hostile case must give one line, a non-zero exit and no traceback.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from PIL import Image

from sladkit.bundle import MANIFEST, SCHEMA, SCHEMA_VERSION, describe_artifact
from sladkit.cli import cli
from sladkit.data.transforms import transform_config
from sladkit.export.targets import get_target
from sladkit.export.trtexec import trtexec_commands, write_build_script
from sladkit.runtime import device as runtime_device

LABELS = ["cat", "dog", "eel", "fox"]
SIZE = 32
ENGINE = "model.int8.engine"
ORIN = {"name": "Orin", "compute_capability": "8.7", "source": "test"}

FAKE_TRTEXEC = r"""#!/usr/bin/env bash
version="${FAKE_TRT_VERSION:-10.3.0}"
IFS=. read -r major minor patch <<< "$version"
if [ "$major" -ge 10 ]; then number=$((major * 10000 + minor * 100 + patch)); else number=$((major * 1000 + minor * 100 + patch)); fi
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v$number] [b26] # $0 $*"
[ "${1:-}" = "--help" ] && exit 0
echo "[12/01/2026-10:00:00] [I] === Device Information ==="
echo "[12/01/2026-10:00:00] [I] Selected Device: ${FAKE_GPU:-Orin}"
echo "[12/01/2026-10:00:00] [I] Compute Capability: ${FAKE_CC:-8.7}"
echo "[12/01/2026-10:00:00] [I] TensorRT version: $version"
for a in "$@"; do
  case "$a" in
    --onnx=*) [ -f "${a#*=}" ] || { echo "[E] cannot open ${a#*=}"; echo "&&&& FAILED TensorRT.trtexec"; exit 1; } ;;
    --saveEngine=*) printf 'fake engine built from %s' "$(sha256sum model.int8.onnx | cut -c1-64)" > "${a#*=}" ;;
  esac
done
echo "&&&& PASSED TensorRT.trtexec [TensorRT v$number] [b26] # $0 $*"
"""


def tiny_onnx(path: Path) -> None:
    """images (N, 3, 32, 32) -> global average pool -> Gemm -> logits (N, 4)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, len(LABELS)], np.eye(3, 4).ravel().tolist())
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def make_bundle(folder: Path) -> Path:
    """A jetson-orin bundle with the files and build_engine.sh that export writes (no engine yet)."""
    folder.mkdir(parents=True)
    tiny_onnx(folder / "model.onnx")
    shutil.copy(folder / "model.onnx", folder / "model.int8.onnx")  # the fake trtexec only reads it
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in LABELS))
    target = get_target("jetson-orin")
    commands = trtexec_commands(target, files={"onnx": "model.onnx", "int8_onnx": "model.int8.onnx"},
                                precision="int8", input_name="images", input_shape=(3, SIZE, SIZE),
                                batch=(1, 1, 8), workspace_mb=256, dla_core=None)  # fmt: skip
    write_build_script(folder / "build_engine.sh", commands, target=target)
    transforms = transform_config(image_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    manifest = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "task": "cls",
        "labels": LABELS,
        "input": {
            "name": "images",
            "layout": "NCHW",
            "dtype": "float32",
            "shape": ["N", 3, SIZE, SIZE],
            "batch": {"min": 1, "opt": 1, "max": 8},
        },  # fmt: skip
        "preprocessing": {"in_graph": False, "transforms": transforms},
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["N", len(LABELS)]}],
        "target": {"name": "jetson-orin", "runtime": "tensorrt", "tensorrt": "10.3.0", "precision": "int8"},
        "artifacts": [
            describe_artifact(folder, "model.onnx", precision="fp32"),
            describe_artifact(folder, "model.int8.onnx", precision="int8"),
            describe_artifact(folder, "labels.txt"),
            describe_artifact(folder, "build_engine.sh"),
        ],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return folder


def fake_trtexec(folder: Path) -> Path:
    path = folder / "trtexec"
    path.write_text(FAKE_TRTEXEC)
    path.chmod(0o755)
    return path


def run_build_script(bundle: Path, bin_dir: Path, **env) -> subprocess.CompletedProcess:
    """The bundle's own build_engine.sh, with the fake trtexec on PATH and this interpreter as PYTHON."""
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": sys.executable,
        **env,
    }
    return subprocess.run(["bash", str(bundle / "build_engine.sh")], env=env, capture_output=True, text=True)


class StandInRunner:
    """Polygraphy's TrtRunner, as far as the tensorrt backend uses it; counts activations (model loads)."""

    activations = 0

    def __init__(self, loader):
        self.loader, self.is_active = loader, False

    def activate(self):
        data = self.loader()
        if not data.startswith(b"fake engine"):
            raise RuntimeError(
                "Serialization assertion magicTagRead == kMAGIC_TAG failed.\nMagic tag does not match"
            )
        StandInRunner.activations += 1
        self.is_active = True

    def infer(self, feed):
        batch = feed["images"]
        return {"logits": batch.mean(axis=(2, 3)) @ np.eye(3, len(LABELS), dtype=np.float32)}

    def last_inference_time(self):
        return 0.001

    def deactivate(self):
        self.is_active = False


@pytest.fixture
def device(monkeypatch):
    """This process as a device with TensorRT `version` and `gpu` (stand-ins), returning a setter."""

    def set_device(version: str = "10.3.0.30", gpu: dict = ORIN):
        trt = types.ModuleType("tensorrt")
        trt.__version__ = version
        trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # for importlib.util.find_spec
        polygraphy_trt = types.ModuleType("polygraphy.backend.trt")
        polygraphy_trt.TrtRunner = StandInRunner
        polygraphy_trt.EngineFromBytes = lambda data: lambda: data
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", polygraphy_trt)
        monkeypatch.setattr(runtime_device, "gpu_info", lambda capability_hint=None: dict(gpu))
        StandInRunner.activations = 0

    set_device()
    return set_device


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A bundle whose engine was built and stamped by its own build_engine.sh (fake trtexec)."""
    root = tmp_path_factory.mktemp("built")
    bundle = make_bundle(root / "orin")
    fake_trtexec(root)
    result = run_build_script(bundle, root)
    assert result.returncode == 0, result.stderr
    return bundle


@pytest.fixture
def bundle(built, tmp_path) -> Path:
    """A fresh copy of the built bundle, for a test to damage."""
    return Path(shutil.copytree(built, tmp_path / "orin"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in LABELS[:2]:
        (root / "val" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
                root / "val" / label / f"{i}.png"
            )
    return root


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def profile(target):
    return invoke("profile", target, "--batch", "1,2", "--warmup", "1", "--iterations", "2")


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# --- the main path ------------------------------------------------------------------------------------------


def test_build_engine_sh_stamps_the_engine_it_builds(built):
    assert (built / ENGINE).is_file() and (built / f"{ENGINE}.log").is_file()
    stamp = json.loads((built / "engine.json").read_text())
    meta = stamp["engines"][ENGINE]
    assert stamp["schema_version"] == 1
    assert (
        meta["tensorrt_version"] == "10.3.0" and meta["gpu"] == "Orin" and meta["compute_capability"] == "8.7"
    )
    assert (
        meta["precision"] == "int8" and meta["built_by"] == "trtexec" and meta["version_compatible"] is False
    )
    assert meta["input"] == {
        "name": "images",
        "shape": [3, SIZE, SIZE],
        "batch": {"min": 1, "opt": 1, "max": 8},
    }
    manifest = json.loads((built / MANIFEST).read_text())
    onnx_sha = next(a["sha256"] for a in manifest["artifacts"] if a["file"] == "model.int8.onnx")
    assert meta["onnx"] == {"file": "model.int8.onnx", "sha256": onnx_sha}
    assert meta["workspace_mb"] == 256 and meta["dla_core"] is None and meta["log"] == f"{ENGINE}.log"


def test_profile_bundle_loads_the_engine_built_by_its_script(built, device):
    result = profile(built)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[2:]]
    assert {(row[0], row[1]) for row in rows} >= {
        (f"orin:{ENGINE}", "tensorrt"),
        ("orin:model.onnx", "onnxruntime"),
    }
    assert "skipping" not in result.output


def test_profile_engine_file_eval_and_predict_load_it_once_each(built, device, images):
    assert profile(built / ENGINE).exit_code == 0 and StandInRunner.activations == 1
    StandInRunner.activations = 0
    result = invoke("eval", built, "--model", ENGINE, "--data", images)
    assert result.exit_code == 0, result.output
    assert f"orin:{ENGINE}: acc" in result.output and StandInRunner.activations == 1
    StandInRunner.activations = 0
    result = invoke("predict", built / ENGINE, images / "val" / "cat" / "0.png", "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output.splitlines()[-1])["top"]) == 2 and StandInRunner.activations == 1


def test_profile_bundle_says_why_it_skips_an_engine(built, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no TensorRT here
    result = profile(built)
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipping")]
    assert (
        skipped == [skipped[0]] and ENGINE in skipped[0] and "tensorrt backend is unavailable" in skipped[0]
    )
    assert "sladkit[tensorrt]" in skipped[0]


def test_hand_built_engine_loads_after_the_documented_stamping_step(tmp_path, device):
    bundle = make_bundle(tmp_path / "orin")
    trtexec = fake_trtexec(tmp_path)
    argv = [
        str(trtexec),
        "--onnx=model.onnx",
        "--fp16",
        "--saveEngine=model.fp16.engine",
    ]  # no shapes: static
    with open(bundle / "my-build.log", "w") as log:
        subprocess.run(argv, cwd=bundle, stdout=log, stderr=subprocess.STDOUT, check=True)
    assert_one_line_error(profile(bundle / "model.fp16.engine"), "has no engine.json", "sladkit.engine_stamp")
    stamp = [sys.executable, "-m", "sladkit.engine_stamp", "model.fp16.engine", "--log", "my-build.log"]
    done = subprocess.run(stamp, cwd=bundle, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stamped model.fp16.engine in engine.json: TensorRT 10.3.0, Orin")
    assert profile(bundle / "model.fp16.engine").exit_code == 0


def test_build_script_without_sladkit_warns_and_the_runtime_says_how_to_stamp(tmp_path, device):
    bundle = make_bundle(tmp_path / "orin")
    fake_trtexec(tmp_path)
    result = run_build_script(bundle, tmp_path, PYTHON="false")
    assert result.returncode == 0, result.stderr
    assert "warning: model.int8.engine is built but not stamped" in result.stderr
    assert "python3 -m sladkit.engine_stamp model.int8.engine --log model.int8.engine.log" in result.stderr
    assert (bundle / ENGINE).is_file() and not (bundle / "engine.json").exists()
    assert_one_line_error(profile(bundle), f"{ENGINE} has no engine.json beside it", "sladkit.engine_stamp")


def test_failed_trtexec_stops_the_script_before_stamping(tmp_path):
    bundle = make_bundle(tmp_path / "orin")
    fake_trtexec(tmp_path)
    (bundle / "model.int8.onnx").unlink()
    result = run_build_script(bundle, tmp_path)
    assert result.returncode != 0 and not (bundle / "engine.json").exists()


# --- hostile input: one line, non-zero exit, no traceback ---------------------------------------------------


def edit_stamp(change):
    def apply(bundle: Path) -> None:
        path = bundle / "engine.json"
        doc = json.loads(path.read_text())
        change(doc, doc["engines"][ENGINE])
        path.write_text(json.dumps(doc))

    return apply


def write(name: str, text: str):
    return lambda bundle: (bundle / name).write_text(text)


def restamped_garbage(bundle: Path) -> None:
    (bundle / ENGINE).write_bytes(b"not an engine")
    edit_stamp(
        lambda doc, meta: meta.update(sha256=__import__("hashlib").sha256(b"not an engine").hexdigest())
    )(bundle)


HOSTILE = {
    "no engine.json": (
        lambda b: (b / "engine.json").unlink(),
        {},
        ["has no engine.json beside it", "engine_stamp"],
    ),
    "engine.json not JSON": (write("engine.json", '{"engines": '), {}, ["engine.json is not valid JSON"]),
    "engine.json a list": (write("engine.json", "[]"), {}, ["is not an engine stamp"]),
    "engine.json engines a list": (
        write("engine.json", '{"schema_version": 1, "engines": []}'),
        {},
        ["is not an engine stamp"],
    ),  # fmt: skip
    "engine.json of a future schema": (
        edit_stamp(lambda d, m: d.update(schema_version=2)),
        {},
        ["has schema version 2; this sladkit reads 1"],
    ),  # fmt: skip
    "engine not described": (
        edit_stamp(lambda d, m: d["engines"].update({"other.engine": d["engines"].pop(ENGINE)})),
        {},
        [f"does not describe {ENGINE} (it describes other.engine)"],
    ),  # fmt: skip
    "entry not an object": (
        edit_stamp(lambda d, m: d["engines"].update({ENGINE: "x"})),
        {},
        ["entry is 'x'"],
    ),
    "sha256 malformed": (
        edit_stamp(lambda d, m: m.update(sha256="xyz")),
        {},
        ["sha256 is 'xyz', expected 64"],
    ),
    "no tensorrt_version": (
        edit_stamp(lambda d, m: m.pop("tensorrt_version")),
        {},
        ["tensorrt_version is None, expected a version"],
    ),  # fmt: skip
    "tensorrt_version a number": (
        edit_stamp(lambda d, m: m.update(tensorrt_version=10.3)),
        {},
        ["tensorrt_version is 10.3"],
    ),  # fmt: skip
    "input a string": (edit_stamp(lambda d, m: m.update(input="images")), {}, ["input is 'images'"]),
    "batch max zero": (edit_stamp(lambda d, m: m["input"]["batch"].update(max=0)), {}, ["input.batch is"]),
    "engine bytes changed": (
        lambda b: (b / ENGINE).write_bytes(b"fake engine, changed"),
        {},
        [f"{ENGINE} does not match the SHA-256 in", "build_engine.sh"],
    ),  # fmt: skip
    "engine truncated": (lambda b: (b / ENGINE).write_bytes(b""), {}, ["does not match the SHA-256"]),
    "engine missing": (lambda b: (b / ENGINE).unlink(), {}, [f"{ENGINE} does not exist"]),
    "built from another model": (
        edit_stamp(lambda d, m: m["onnx"].update(sha256="0" * 64)),
        {},
        ["was built from another model.int8.onnx than this bundle's"],
    ),  # fmt: skip
    "another TensorRT patch": (
        None,
        {"version": "10.3.1.5"},
        [
            "built with TensorRT 10.3.0, this machine has 10.3.1.5",
            "'Support Policies'",
            "exact TensorRT version",
        ],
    ),  # fmt: skip
    "another TensorRT build": (
        edit_stamp(lambda d, m: m.update(tensorrt_version="10.3.0.26")),
        {},
        ["built with TensorRT 10.3.0.26, this machine has 10.3.0.30", "major.minor.patch.build"],
    ),
    "older TensorRT": (None, {"version": "8.5.2.2"}, ["this machine has 8.5.2.2", "rebuild it here"]),
    "version-compatible on an older TensorRT": (
        edit_stamp(lambda d, m: m.update(version_compatible=True)),
        {"version": "10.2.0.1"},
        ["'Version Compatibility'"],
    ),  # fmt: skip
    "version_compatible not a bool": (
        edit_stamp(lambda d, m: m.update(version_compatible="yes")),
        {},
        ["version_compatible is 'yes'"],
    ),  # fmt: skip
    "another GPU": (
        None,
        {"gpu": {"name": "H100", "compute_capability": "9.0"}},
        ["compute capability 8.7 (Orin), this one is 9.0 (H100)", "'Engine Portability'"],
    ),  # fmt: skip
    "ampere+ on a Turing GPU": (
        edit_stamp(lambda d, m: m.update(hardware_compatibility="ampere+")),
        {"gpu": {"name": "T4", "compute_capability": "7.5"}},
        ["this one is 7.5 (T4)", "ampere+"],
    ),  # fmt: skip
    "TensorRT cannot deserialize it": (
        restamped_garbage,
        {},
        ["TensorRT 10.3.0.30 cannot load", "Serialization"],
    ),
}


@pytest.mark.parametrize("command", ["profile-bundle", "profile-engine", "eval", "predict"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_engines_are_refused_in_one_line(case, command, bundle, device, images):
    damage, device_options, fragments = HOSTILE[case]
    if damage:
        damage(bundle)
    device(**device_options)
    engine = bundle / ENGINE
    result = {
        "profile-bundle": lambda: profile(bundle),
        "profile-engine": lambda: profile(engine),
        "eval": lambda: invoke("eval", bundle, "--model", ENGINE, "--data", images),
        "predict": lambda: invoke("predict", engine, images / "val" / "cat" / "0.png"),
    }[command]()
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(
    "stamp_change, device_options",
    [
        (lambda d, m: m.update(version_compatible=True), {"version": "10.4.1.2"}),  # same major, later
        (
            lambda d, m: m.update(hardware_compatibility="ampere+"),
            {"gpu": {"name": "H100", "compute_capability": "9.0"}},
        ),
        (
            lambda d, m: m.update(compute_capability=None),
            {"gpu": {"name": "H100", "compute_capability": "9.0"}},
        ),
    ],
    ids=["version-compatible on a later 10.x", "ampere+ on Hopper", "no compute capability stamped"],
)
def test_what_nvidias_rules_allow_loads(stamp_change, device_options, bundle, device):
    edit_stamp(stamp_change)(bundle)
    device(**device_options)
    result = profile(bundle / ENGINE)
    assert result.exit_code == 0, result.output

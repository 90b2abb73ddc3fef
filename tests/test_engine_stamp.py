"""`sladkit/engine_stamp.py`: trtexec logs -> engine.json, the stamping command, NVIDIA's compatibility rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sladkit.engine_stamp import (
    EngineStampError,
    check_fits,
    parse_trtexec_log,
    read_stamp,
    record_stamp,
    stamp_from_trtexec_log,
)

# The lines trtexec 10.x prints that the stamp reads (layout as in a TensorRT 10 trtexec log on an Orin).
LOG_10 = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b26] # /usr/src/tensorrt/bin/trtexec --onnx=model.int8.onnx \
--minShapes=images:1x3x224x224 --optShapes=images:4x3x224x224 --maxShapes=images:8x3x224x224 --int8 --fp16 \
--memPoolSize=workspace:1024 --saveEngine=model.int8.engine --skipInference
[01/01/2026-03:47:30] [I] === Device Information ===
[01/01/2026-03:47:30] [I] Available Devices:
[01/01/2026-03:47:30] [I]   Device 0: "Orin" UUID: GPU-f5507ee1
[01/01/2026-03:47:30] [I] Selected Device: Orin
[01/01/2026-03:47:30] [I] Compute Capability: 8.7
[01/01/2026-03:47:30] [I] TensorRT version: 10.3.0
[01/01/2026-03:48:30] [I] Engine built in 60.1 sec.
&&&& PASSED TensorRT.trtexec [TensorRT v100300] [b26] # /usr/src/tensorrt/bin/trtexec --onnx=model.int8.onnx
"""
# TensorRT 8.5 (JetPack 5.1): the version from the RUNNING line's number when no "TensorRT version:" line.
LOG_85 = """&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec --onnx=model.onnx --fp16 --useDLACore=1 \
--allowGPUFallback --versionCompatible --hardwareCompatibilityLevel=ampere+ --saveEngine=model.fp16.dla1.engine
[I] Selected Device: Xavier
[I] Compute Capability: 7.2
&&&& PASSED TensorRT.trtexec [TensorRT v8502] # trtexec
"""


def test_parse_trtexec_logs():
    info = parse_trtexec_log(LOG_10)
    assert info["version"] == "10.3.0" and info["gpu"] == "Orin" and info["compute_capability"] == "8.7"
    assert info["passed"] and info["argv"][0].endswith("trtexec") and "--int8" in info["argv"]
    assert parse_trtexec_log(LOG_85)["version"] == "8.5.2"
    assert parse_trtexec_log("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # t\n")["version"] == "8.2.1"
    again = parse_trtexec_log(LOG_85 + LOG_10.replace("PASSED", "FAILED"))  # an appended log: the last run
    assert again["version"] == "10.3.0" and not again["passed"]


def stamped(tmp_path: Path, log: str, engine: str) -> dict:
    (tmp_path / engine).write_bytes(b"plan")
    (tmp_path / "model.int8.onnx").write_bytes(b"onnx")
    (tmp_path / "build.log").write_text(log)
    return stamp_from_trtexec_log(tmp_path / engine, tmp_path / "build.log")


def test_stamp_from_a_tensorrt_10_log(tmp_path):
    meta = stamped(tmp_path, LOG_10, "model.int8.engine")
    assert meta == read_stamp(tmp_path / "model.int8.engine")
    assert meta["precision"] == "int8" and meta["tensorrt_version"] == "10.3.0" and meta["bytes"] == 4
    assert meta["input"] == {
        "name": "images",
        "shape": [3, 224, 224],
        "batch": {"min": 1, "opt": 4, "max": 8},
    }
    assert meta["onnx"]["file"] == "model.int8.onnx" and len(meta["onnx"]["sha256"]) == 64
    assert meta["workspace_mb"] == 1024 and not meta["version_compatible"] and meta["dla_core"] is None


def test_stamp_from_a_tensorrt_8_5_dla_log(tmp_path):
    meta = stamped(tmp_path, LOG_85, "model.fp16.dla1.engine")
    assert meta["precision"] == "fp16" and meta["dla_core"] == 1 and meta["tensorrt_version"] == "8.5.2"
    assert meta["version_compatible"] and meta["hardware_compatibility"] == "ampere+"
    assert (
        meta["onnx"] == {"file": "model.onnx", "sha256": None} and meta["input"] is None
    )  # no such file here


def test_record_keeps_the_other_engines_and_replaces_a_broken_stamp(tmp_path):
    (tmp_path / "engine.json").write_text("{broken")
    record_stamp(tmp_path / "a.engine", {"precision": "fp16"})
    record_stamp(tmp_path / "b.engine", {"precision": "int8"})
    doc = json.loads((tmp_path / "engine.json").read_text())
    assert doc["schema_version"] == 1 and set(doc["engines"]) == {"a.engine", "b.engine"}


@pytest.mark.parametrize(
    "log, engine, message",
    [
        (None, "model.int8.engine", "cannot read trtexec's log"),
        ("just text\n", "model.int8.engine", "is not a trtexec log: it has no '&&&& RUNNING"),
        ("&&&& RUNNING TensorRT.trtexec oops\n", "model.int8.engine", "has no '[TensorRT vNNNN] # command'"),
        (LOG_10, "model.fp16.engine", "log of model.int8.engine, not of model.fp16.engine"),
        (LOG_10.replace("&&&& PASSED", "&&&& FAILED"), "model.int8.engine", "shows no '&&&& PASSED"),
        (LOG_10.replace("Compute Capability", "CC"), "model.int8.engine", "does not name the GPU"),
        (
            LOG_10.replace("--saveEngine=model.int8.engine", ""),
            "model.int8.engine",
            "a run without --saveEngine",
        ),
    ],
    ids=["no log", "not a log", "no command", "another engine", "failed build", "no GPU", "no --saveEngine"],
)
def test_stamping_command_refuses_in_one_line(tmp_path, log, engine, message):
    (tmp_path / engine).write_bytes(b"plan")
    if log is not None:
        (tmp_path / "build.log").write_text(log)
    argv = [sys.executable, "-m", "sladkit.engine_stamp", engine, "--log", "build.log"]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and message in run.stderr
    assert not (tmp_path / "engine.json").exists()


def test_stamping_a_missing_engine(tmp_path):
    with pytest.raises(EngineStampError, match="does not exist; build it first"):
        stamp_from_trtexec_log(tmp_path / "model.int8.engine", tmp_path / "build.log")


ORIN = {"name": "Orin", "compute_capability": "8.7"}


@pytest.mark.parametrize(
    "built, extra, running, gpu, fits",
    [
        ("10.3.0", {}, "10.3.0.30", ORIN, True),  # trtexec stamps have no build number
        ("10.3.0.30", {}, "10.3.0.30", ORIN, True),
        ("10.3.0.26", {}, "10.3.0.30", ORIN, False),  # exact: the build number too
        ("10.3.0", {}, "10.3.1", ORIN, False),
        ("10.3.0", {}, "10.4.0", ORIN, False),
        ("10.3.0", {"version_compatible": True}, "10.8.0", ORIN, True),
        ("10.3.0", {"version_compatible": True}, "11.1.0", ORIN, True),  # 10 -> 11 is documented
        ("8.6.1", {"version_compatible": True}, "10.3.0", ORIN, True),  # 8 -> 10 is documented
        ("8.5.2", {"version_compatible": True}, "8.6.1", ORIN, False),  # version compatibility starts at 8.6
        ("10.3.0", {"version_compatible": True}, "10.2.0", ORIN, False),  # never on an older runtime
        ("10.3.0", {"version_compatible": True}, "12.0.0", ORIN, False),
        ("10.3.0", {}, "10.3.0", {"name": "H100", "compute_capability": "9.0"}, False),
        (
            "10.3.0",
            {},
            "10.3.0",
            {"name": None, "compute_capability": None},
            True,
        ),  # not reported: not checked
        ("10.3.0", {"hardware_compatibility": "ampere+"}, "10.3.0", {"compute_capability": "9.0"}, True),
        ("10.3.0", {"hardware_compatibility": "ampere+"}, "10.3.0", {"compute_capability": "7.5"}, False),
    ],
)
def test_nvidias_compatibility_rules(built, extra, running, gpu, fits):
    meta = {"tensorrt_version": built, "compute_capability": "8.7", "gpu": "Orin", **extra}
    if fits:
        check_fits("model.int8.engine", meta, running, gpu)
    else:
        with pytest.raises(EngineStampError, match="NVIDIA's rule .*build_engine.sh") as info:
            check_fits("model.int8.engine", meta, running, gpu)
        assert "\n" not in str(info.value)

"""`sladkit/export/trtexec.py`: the flag table, the trtexec commands and build_engine.sh (no TensorRT needed)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sladkit.errors import ConfigError
from sladkit.export import tensorrt as trt_mod
from sladkit.export.targets import TARGETS, get_target
from sladkit.export.trtexec import (
    ASSUMED_TENSORRT,
    TRTEXEC_FLAGS,
    engine_build,
    flag_supported,
    trtexec_commands,
    write_build_script,
)

FILES = {
    "onnx": "model.onnx",
    "int8_onnx": "model.int8.onnx",
    "fp8_onnx": "model.fp8.onnx",
    "calib_cache": "calib.cache",
}
INPUT_FLAGS = ("--onnx=", "--calib=")
OUTPUT_FLAGS = ("--saveEngine=", "--timingCacheFile=", "--exportLayerInfo=")
TRT_TARGETS = [name for name, t in TARGETS.items() if t.runtime == "tensorrt"]


def commands(target="jetson-orin", precision="fp16", dla_core=None, files=FILES, **kw):
    kw = {"input_name": "input", "input_shape": (3, 224, 224), "batch": (1, 4, 8), "workspace_mb": 1024, **kw}
    t = get_target(target) if isinstance(target, str) else target
    return trtexec_commands(t, files=files, precision=precision, dla_core=dla_core, **kw)


def combos():
    """Every valid (target, precision, dla_core) of the target table."""
    for name in TRT_TARGETS:
        t = get_target(name)
        for precision in t.precisions:
            yield name, precision, None
            if t.dla_cores and precision != "fp32":
                for core in range(t.dla_cores):
                    yield name, precision, core


# --- the flag table -----------------------------------------------------------------------------------------


def test_flag_table_is_sourced_and_ordered():
    for flag in TRTEXEC_FLAGS.values():
        assert flag.name.startswith("--") and flag.source
        if flag.until:
            assert trt_mod._version(flag.since) < trt_mod._version(flag.until)


@pytest.mark.parametrize(
    "flag, version, ok",
    [
        ("--workspace=1024", "8.2.1", True),
        ("--workspace=1024", "10.3.0", False),  # removed in 10.x
        ("--memPoolSize=workspace:1024", "8.2.1", False),
        ("--memPoolSize=workspace:1024", "8.5.2", True),
        ("--buildOnly", "8.5.2", True),
        ("--buildOnly", "10.3.0", False),  # deprecated by --skipInference in 8.6
        ("--skipInference", "8.5.2", False),
        ("--skipInference", "8.6.1", True),
        ("--stronglyTyped", "8.5.2", False),
        ("--stronglyTyped", "11.0.0", True),
        ("--int8", "10.3.0", True),
        ("--int8", "11.0.0", False),
        ("--calib=calib.cache", "11.0.0", False),
        ("--profilingVerbosity=detailed", "8.2.1", False),
        ("--exportLayerInfo=x.json", "8.5.2", True),
        ("--notAFlag", "10.3.0", False),
    ],
)
def test_flag_supported(flag, version, ok):
    assert flag_supported(flag, version) is ok


# --- trtexec commands ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target, precision, dla_core", list(combos()))
def test_every_flag_valid_and_every_file_in_the_bundle(target, precision, dla_core):
    version = get_target(target).tensorrt or ASSUMED_TENSORRT
    (argv,) = commands(target, precision, dla_core)
    assert argv[0] == "trtexec"
    assert all(flag_supported(a, version) for a in argv[1:]), argv
    inputs = [a.split("=", 1)[1] for a in argv if a.startswith(INPUT_FLAGS)]
    assert inputs and all(name in FILES.values() for name in inputs)
    outputs = [a.split("=", 1)[1] for a in argv if a.startswith(OUTPUT_FLAGS)]
    assert all("/" not in name and name not in FILES.values() for name in outputs)
    engine = next(a for a in argv if a.startswith("--saveEngine="))
    suffix = f".dla{dla_core}" if dla_core is not None else ""
    assert engine == f"--saveEngine=model.{precision}{suffix}.engine"
    assert "--timingCacheFile=timing.cache" in argv
    assert any(a.startswith(("--memPoolSize=workspace:1024", "--workspace=1024")) for a in argv)
    assert any(a in ("--skipInference", "--buildOnly") for a in argv)
    assert len([a for a in argv if a.startswith(("--minShapes", "--optShapes", "--maxShapes"))]) == 3


def test_gpu_precisions_on_orin():
    fp16, int8, fp32 = (commands(precision=p)[0] for p in ("fp16", "int8", "fp32"))
    assert fp16[1] == "--onnx=model.onnx" and "--fp16" in fp16 and "--int8" not in fp16
    assert int8[1] == "--onnx=model.int8.onnx" and {"--int8", "--fp16"} <= set(int8)
    assert not any(a.startswith("--calib") for a in int8)  # explicit Q/DQ: no calibration cache
    assert fp32[1] == "--onnx=model.onnx" and not {"--fp16", "--int8", "--stronglyTyped"} & set(fp32)
    assert "--minShapes=input:1x3x224x224" in fp16 and "--maxShapes=input:8x3x224x224" in fp16
    assert "--memPoolSize=workspace:1024" in fp16 and "--skipInference" in fp16
    assert "--exportLayerInfo=model.fp16.layers.json" in fp16


def test_dla_uses_implicit_int8_and_a_fixed_batch():
    (argv,) = commands(precision="int8", dla_core=1)
    assert argv[1] == "--onnx=model.onnx"
    assert {"--int8", "--fp16", "--calib=calib.cache", "--useDLACore=1", "--allowGPUFallback"} <= set(argv)
    # DLA has no dynamic dimensions: min = opt = max = the opt batch
    assert [a for a in argv if "Shapes=" in a] == [
        f"--{s}Shapes=input:4x3x224x224" for s in ("min", "opt", "max")
    ]
    (fp16,) = commands(precision="fp16", dla_core=0)
    assert "--useDLACore=0" in fp16 and "--fp16" in fp16 and "--int8" not in fp16
    assert not any(a.startswith("--calib") for a in fp16)


def test_older_jetpacks_get_their_flags():
    xavier = commands("jetson-xavier", "int8")[0]
    assert "--buildOnly" in xavier and "--memPoolSize=workspace:1024" in xavier
    nano = commands("jetson-nano", "fp16", workspace_mb=512)[0]
    assert "--workspace=512" in nano and "--buildOnly" in nano
    assert not any(a.startswith(("--memPoolSize", "--profilingVerbosity", "--exportLayerInfo")) for a in nano)


def test_tensorrt_11_is_strongly_typed():
    int8 = commands("x86-gpu", "int8", tensorrt_version="11.0.0")[0]
    assert int8[1] == "--onnx=model.int8.onnx" and "--stronglyTyped" in int8
    assert not {"--int8", "--fp16"} & set(int8)
    assert all(flag_supported(a, "11.0.0") for a in int8[1:])
    with pytest.raises(ConfigError, match="FP16"):
        commands("x86-gpu", "fp16", tensorrt_version="11.0.0")
    fp16 = commands(
        "x86-gpu", "fp16", tensorrt_version="11.0.0", files={**FILES, "fp16_onnx": "model.fp16.onnx"}
    )
    assert fp16[0][1] == "--onnx=model.fp16.onnx" and "--fp16" not in fp16[0]


def test_x86_without_version_assumes_tensorrt_10():
    assert commands("x86-gpu", "int8")[0] == commands("x86-gpu", "int8", tensorrt_version=ASSUMED_TENSORRT)[0]


def test_uint8_nhwc_input_and_quoted_names():
    (argv,) = commands(input_shape=(224, 224, 3), batch=(1, 1, 2))
    assert "--maxShapes=input:2x224x224x3" in argv
    (argv,) = commands(input_name="input:0", batch=(1, 1, 1))
    assert "--optShapes='input:0':1x3x224x224" in argv  # trtexec's escaping for names with ':'


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": "jetson-nano", "precision": "int8"}, "INT8|int8"),
        ({"target": "jetson-nano", "precision": "fp16", "dla_core": 0}, "no DLA"),
        ({"target": "x86-gpu", "precision": "int8", "dla_core": 0}, "no DLA"),
        ({"target": "jetson-orin", "precision": "int8", "dla_core": 2}, "does not exist"),
        ({"target": "jetson-orin", "precision": "fp32", "dla_core": 0}, "FP16 or INT8"),
        (
            {"target": "jetson-orin", "precision": "int8", "dla_core": 0, "tensorrt_version": "11.0.0"},
            "<= 10",
        ),
        ({"target": "cpu", "precision": "fp32"}, "not TensorRT"),
        ({"precision": "int8", "dla_core": 0, "files": {"onnx": "model.onnx"}}, "calib_cache"),
        ({"precision": "int8", "files": {"onnx": "model.onnx"}}, "int8_onnx"),
        ({"batch": (4, 1, 8)}, "min <= opt <= max"),
        ({"batch": (0, 1, 1)}, "positive"),
        ({"batch": (1, 2)}, "three"),
        ({"workspace_mb": 0}, "workspace"),
        ({"input_shape": ()}, "input shape"),
        ({"input_name": "in'put"}, "input name"),
    ],
)
def test_refusals(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        commands(**kwargs)


def test_dla_refused_on_a_tensorrt_11_target():
    orin11 = dataclasses.replace(get_target("jetson-orin"), tensorrt="11.0.0")
    with pytest.raises(ConfigError, match="<= 10"):
        commands(orin11, "int8", dla_core=0)


# --- build_engine.sh ----------------------------------------------------------------------------------------


def write_script(bundle: Path, target="jetson-orin", precisions=("fp16", "int8"), dla=(0,)) -> Path:
    cmds = [c for p in precisions for c in commands(target, p)]
    cmds += [c for core in dla for c in commands(target, "int8", dla_core=core)]
    path = bundle / "build_engine.sh"
    write_build_script(path, cmds, target=get_target(target))
    return path


@pytest.mark.parametrize("target", TRT_TARGETS)
def test_script_is_executable_valid_bash_and_says_what_to_know(tmp_path, target):
    t = get_target(target)
    path = write_script(tmp_path, target, precisions=("fp16",), dla=())
    assert path.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text and 'cd "$(dirname "$0")"' in text
    assert target in text and "on the device itself" in text
    assert "sudo nvpmodel -m 0 && sudo jetson_clocks" in text
    if t.tensorrt:
        assert f"TensorRT {t.tensorrt}" in text and f"JetPack {t.jetpack}" in text
    else:
        assert "installed" in text
    assert [p.name for p in tmp_path.iterdir()] == ["build_engine.sh"]  # no temporary left behind
    # and, after each build, trtexec's own benchmark of the engine it built
    assert (
        'echo "==> benchmark it: $TRTEXEC --loadEngine=model.fp16.engine --shapes=input:4x3x224x224"' in text
    )


def test_script_refuses_non_trtexec_commands(tmp_path):
    with pytest.raises(ConfigError):
        write_build_script(tmp_path / "b.sh", [["rm", "-rf", "/"]], target=get_target("jetson-orin"))
    with pytest.raises(ConfigError):
        write_build_script(tmp_path / "b.sh", [], target=get_target("jetson-orin"))


FAKE_TRTEXEC = """#!/usr/bin/env bash
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v@VERSION@] [b1] # trtexec $*"
if [ "${1:-}" = "--help" ]; then
  exit 0
fi
echo "[I] Selected Device: Orin"
echo "[I] Compute Capability: 8.7"
printf '%s\\n' "$@" >> "@LOG@"
for a in "$@"; do
  case "$a" in
    --onnx=*|--calib=*) f="${a#*=}"; [ -f "$f" ] || { echo "missing input $f" >&2; exit 3; } ;;
    --saveEngine=*) echo engine > "${a#*=}" ;;
  esac
done
echo "&&&& PASSED TensorRT.trtexec"
"""


@pytest.mark.parametrize("reported, warns", [("100300", False), ("8502", True)])
def test_script_runs_from_anywhere_with_bundle_files_only(tmp_path, reported, warns):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in FILES.values():
        (bundle / name).write_text("x")
    script = write_script(bundle, dla=() if warns else (0,))
    log = tmp_path / "args.txt"
    fake = tmp_path / "bin" / "trtexec"
    fake.parent.mkdir()
    fake.write_text(FAKE_TRTEXEC.replace("@VERSION@", reported).replace("@LOG@", str(log)))
    fake.chmod(0o755)
    run = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env={**os.environ, "TRTEXEC": str(fake), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert ("warning" in run.stderr) is warns
    assert (bundle / "model.fp16.engine").is_file() and (bundle / "model.int8.engine").is_file()
    stamps = json.loads((bundle / "engine.json").read_text())["engines"]  # each engine stamped from its log
    assert {"model.fp16.engine", "model.int8.engine"} <= set(stamps)
    assert stamps["model.fp16.engine"]["tensorrt_version"] == ("10.3.0" if not warns else "8.5.2")
    if not warns:
        assert (bundle / "model.int8.dla0.engine").is_file()
        assert stamps["model.int8.dla0.engine"]["dla_core"] == 0
        assert "--calib=calib.cache" in log.read_text().splitlines()


def test_script_refuses_a_calibration_cache_of_another_version(tmp_path):
    script = write_script(tmp_path)  # with a DLA INT8 command: --calib=calib.cache
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC.replace("@VERSION@", "8502").replace("@LOG@", str(tmp_path / "log")))
    fake.chmod(0o755)
    run = subprocess.run(
        ["bash", str(script)], env={**os.environ, "TRTEXEC": str(fake)}, capture_output=True, text=True
    )
    assert run.returncode == 1 and "calib.cache is for v100300" in run.stderr
    assert not (tmp_path / "log").exists()  # stopped before building anything


def test_script_stops_when_trtexec_is_missing(tmp_path):
    script = write_script(tmp_path)
    env = {**os.environ, "TRTEXEC": str(tmp_path / "no-trtexec")}
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert run.returncode == 127 and "trtexec not found" in run.stderr


# --- the target table, row by row -----------------------------------------------------------------------------

# name: (JetPack, TensorRT, compute capability, opset, precisions, DLA cores, build_engine.sh's expected version)
ROWS = {
    "jetson-thor": ("7.0, 7.1", "10.13.3", "11.0", 19, ("fp8", "int8", "fp16", "fp32"), 0, "v101303"),
    "jetson-orin-jp7": ("7.2", "10.16.2", "8.7", 17, ("int8", "fp16", "fp32"), 0, "v101602"),
    "jetson-orin": ("6.1, 6.2", "10.3.0", "8.7", 17, ("int8", "fp16", "fp32"), 2, "v100300"),
    "jetson-xavier": ("5.1, 5.1.1, 5.1.2", "8.5.2", "7.2", 16, ("int8", "fp16", "fp32"), 2, "v8502"),
    "jetson-nano": ("4.6.1, 4.6.2", "8.2.1", "5.3", 16, ("fp16", "fp32"), 0, "v8201"),
}


def test_every_tensorrt_target_has_a_row_here():
    assert set(ROWS) | {"x86-gpu"} == set(TRT_TARGETS)


@pytest.mark.parametrize("name", list(ROWS))
def test_target_row(tmp_path, name):
    jetpack, tensorrt, cc, opset, precisions, dla, expected = ROWS[name]
    t = get_target(name)
    assert (t.jetpack, t.tensorrt, t.compute_capability, t.opset, t.precisions, t.dla_cores) == (
        jetpack,
        tensorrt,
        cc,
        opset,
        precisions,
        dla,
    )
    script = write_script(tmp_path, name, precisions=precisions, dla=range(dla)).read_text()
    assert f"expected={expected}  # TensorRT {tensorrt}" in script  # the exact release the row names
    assert f"JetPack {jetpack}" in script
    for precision in precisions:
        (argv,) = commands(name, precision)
        typed = precision == "fp8" or int(tensorrt.split(".")[0]) >= 11
        assert ("--stronglyTyped" in argv) is typed
        assert not ({"--fp16", "--int8", "--fp8"} & set(argv) and typed)
    if not dla:
        with pytest.raises(ConfigError, match="no DLA"):
            commands(name, precisions[0] if precisions[0] != "fp8" else "int8", dla_core=0)


def test_thor_fp8_is_strongly_typed_from_the_fp8_qdq_model():
    (argv,) = commands("jetson-thor", "fp8")
    assert argv[1] == "--onnx=model.fp8.onnx" and "--stronglyTyped" in argv
    assert not {"--fp16", "--int8", "--fp8"} & set(argv) and not any(a.startswith("--calib") for a in argv)
    assert "--saveEngine=model.fp8.engine" in argv and "--memPoolSize=workspace:1024" in argv
    int8 = commands("jetson-thor", "int8")[0]  # TensorRT 10.13: the INT8 Q/DQ form of the other 10.x rows
    assert int8[1] == "--onnx=model.int8.onnx" and {"--int8", "--fp16"} <= set(int8)
    with pytest.raises(ConfigError, match="files has no 'fp8_onnx'"):
        commands("jetson-thor", "fp8", files={"onnx": "model.onnx"})


@pytest.mark.parametrize(
    "name", ["jetson-orin", "jetson-orin-jp7", "jetson-xavier", "x86-gpu", "jetson-nano"]
)
def test_fp8_refused_where_the_gpu_has_none(name):
    with pytest.raises(ConfigError, match="FP8 targets: jetson-thor"):
        commands(name, "fp8")


def test_fp8_needs_a_strongly_typed_tensorrt():
    with pytest.raises(ConfigError, match="strongly typed"):
        commands(dataclasses.replace(get_target("jetson-thor"), tensorrt="8.6.2"), "fp8")


def test_engine_build_records_the_profile_the_script_builds():
    dla = engine_build(get_target("jetson-orin"), precision="int8", batch=(1, 4, 8), dla_core=0)
    assert dla["batch"] == {"min": 4, "opt": 4, "max": 4} and dla["dla_core"] == 0
    assert (
        dla["engine"] == "model.int8.dla0.engine" and dla["onnx_role"] == "onnx" and dla["calibration_cache"]
    )
    # the script made from the recorded profile is the script made from the requested one
    recorded = tuple(dla["batch"][k] for k in ("min", "opt", "max"))
    assert commands(precision="int8", dla_core=0, batch=recorded) == commands(precision="int8", dla_core=0)
    gpu = engine_build(get_target("jetson-thor"), precision="fp8", batch=(1, 1, 8), dla_core=None)
    assert (
        gpu["batch"] == {"min": 1, "opt": 1, "max": 8} and gpu["strongly_typed"] and gpu["dla_core"] is None
    )

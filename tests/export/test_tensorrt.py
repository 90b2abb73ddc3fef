"""TensorRT build: trtexec commands per target/version, build_engine.sh, build_engine against a fake tensorrt.

No TensorRT here: `build_engine` runs against a fake `tensorrt` module (only the calls sladkit makes), which
checks the call sequence, not TensorRT's behaviour.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sladkit.errors import ConfigError, MissingDependencyError
from sladkit.export import tensorrt as trt_mod
from sladkit.export.calib_cache import write_calibration_cache
from sladkit.export.targets import TARGETS, get_target
from sladkit.export.tensorrt import (
    EngineBuildError,
    build_engine,
    tensorrt_status,
)
from sladkit.export.trtexec import (
    ASSUMED_TENSORRT,
    TRTEXEC_FLAGS,
    flag_supported,
    trtexec_commands,
    write_build_script,
)

FILES = {"onnx": "model.onnx", "int8_onnx": "model.int8.onnx", "calib_cache": "calib.cache"}
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


# --- importing ----------------------------------------------------------------------------------------------


def test_import_needs_neither_tensorrt_nor_torch():
    code = (
        "import sys, sladkit.export.tensorrt, sladkit.export.calib_cache; "
        "bad = [m for m in ('tensorrt', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_status_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    ok, reason = tensorrt_status()
    assert not ok
    assert "tensorrt" in reason and "sladkit[tensorrt]" in reason


def test_status_on_this_machine():
    ok, reason = tensorrt_status()
    if ok:
        pytest.skip(f"TensorRT works here: {reason}")
    assert reason


def test_build_engine_without_tensorrt_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"sladkit\[tensorrt\]"):
        build_engine(
            tmp_path / "model.onnx",
            tmp_path / "model.fp16.engine",
            precision="fp16",
            target=get_target("jetson-orin"),
            input_name="input",
            batch=(1, 1, 1),
            input_shape=(3, 32, 32),
            workspace_mb=256,
        )


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


def test_script_refuses_non_trtexec_commands(tmp_path):
    with pytest.raises(ConfigError):
        write_build_script(tmp_path / "b.sh", [["rm", "-rf", "/"]], target=get_target("jetson-orin"))
    with pytest.raises(ConfigError):
        write_build_script(tmp_path / "b.sh", [], target=get_target("jetson-orin"))


FAKE_TRTEXEC = """#!/usr/bin/env bash
if [ "${1:-}" = "--help" ]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v@VERSION@] [b1] # trtexec --help"
  exit 0
fi
printf '%s\\n' "$@" >> "@LOG@"
for a in "$@"; do
  case "$a" in
    --onnx=*|--calib=*) f="${a#*=}"; [ -f "$f" ] || { echo "missing input $f" >&2; exit 3; } ;;
    --saveEngine=*) echo engine > "${a#*=}" ;;
  esac
done
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
        env={**os.environ, "TRTEXEC": str(fake)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert ("warning" in run.stderr) is warns
    assert (bundle / "model.fp16.engine").is_file() and (bundle / "model.int8.engine").is_file()
    if not warns:
        assert (bundle / "model.int8.dla0.engine").is_file()
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


# --- build_engine against a fake tensorrt -------------------------------------------------------------------


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


def fake_tensorrt(version="10.3.0.30", *, parse_ok=True, build_ok=True, dla_cores=2, inputs=("input",)):
    """A stand-in with the classes and calls sladkit uses, recording them in `trt.calls`."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list[tuple] = []
    trt.calls = calls

    class ILogger:
        Severity = Severity

        def __init__(self):
            calls.append(("ILogger.__init__",))

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0
        STRONGLY_TYPED = 1

    trt.ILogger = ILogger
    trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    trt.BuilderFlag = enum.Enum("BuilderFlag", "FP16 INT8 GPU_FALLBACK")
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    trt.DeviceType = enum.Enum("DeviceType", "GPU DLA")
    trt.ProfilingVerbosity = enum.Enum("ProfilingVerbosity", "LAYER_NAMES_ONLY DETAILED")

    class IInt8EntropyCalibrator2:
        def __init__(self):
            calls.append(("IInt8EntropyCalibrator2.__init__",))

    class Network:
        num_inputs = len(inputs)

        def get_input(self, i):
            return types.SimpleNamespace(name=inputs[i])

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):
            calls.append(("OnnxParser", type(network).__name__))

        def parse_from_file(self, path):
            calls.append(("parse_from_file", Path(path).name))
            return parse_ok

        def get_error(self, i):
            return f"In node {i} (importModel):\nUNSUPPORTED_NODE: op {i}"

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timing:" + self.data

    class Config:
        def __init__(self):
            object.__setattr__(self, "attrs", {})
            object.__setattr__(self, "flags", [])

        def __setattr__(self, name, value):
            self.attrs[name] = value
            calls.append(("config." + name, value))

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool.name, size))

        def set_flag(self, flag):
            self.flags.append(flag.name)

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))

        def set_calibration_profile(self, profile):
            calls.append(("set_calibration_profile",))

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            object.__setattr__(self, "timing", TimingCache(bytes(data)))
            return self.timing

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", ignore_mismatch))

        def get_timing_cache(self):
            return self.timing

    if version.startswith("8.2"):  # TensorRT 8.2 has max_workspace_size, not memory pools
        del Config.set_memory_pool_limit

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calibrator = config.attrs.get("int8_calibrator")
            if (
                calibrator is not None
            ):  # what TensorRT does with a calibrator: read the cache, ask for batches
                calls.append(("calibrator", calibrator.get_batch_size(), calibrator.read_calibration_cache()))
                calls.append(("get_batch", calibrator.get_batch(["input"])))
            calls.append(("build_serialized_network", tuple(config.flags)))
            if not build_ok:
                self.logger.log(Severity.WARNING, "a warning")
                self.logger.log(Severity.ERROR, "Out of memory\nwhile building")
                return None
            return b"ENGINE" + version.encode()

    trt.Builder = Builder
    trt.OnnxParser = OnnxParser
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return trt


GPU = {"name": "NVIDIA Jetson AGX Orin", "compute_capability": "8.7", "source": "test"}


@pytest.fixture
def use_trt(monkeypatch):
    def install(trt):
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trt_mod, "_gpu_info", lambda target=None: dict(GPU))
        return trt

    return install


def build(tmp_path, **kw):
    onnx = tmp_path / kw.pop("onnx", "model.onnx")
    onnx.write_bytes(b"onnx-bytes")
    args = {
        "precision": "fp16",
        "target": get_target("jetson-orin"),
        "input_name": "input",
        "batch": (1, 2, 4),
        "input_shape": (3, 32, 32),
        "workspace_mb": 256,
        **kw,
    }
    engine = tmp_path / f"model.{args['precision']}.engine"
    return engine, build_engine(onnx, engine, **args)


def test_fp16_on_tensorrt_8_5(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt("8.5.2.2"))
    engine, meta = build(tmp_path, target=get_target("jetson-xavier"), timing_cache=tmp_path / "timing.cache")
    calls = trt.calls
    assert ("create_network", 1 << 0) in calls  # EXPLICIT_BATCH on 8.x
    assert ("parse_from_file", "model.onnx") in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in calls
    assert ("set_shape", "input", (1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32)) in calls
    assert ("build_serialized_network", ("FP16",)) in calls
    assert not any(c[0] in ("config.default_device_type", "config.int8_calibrator") for c in calls)
    assert ("create_timing_cache", b"") in calls and ("set_timing_cache", False) in calls
    assert (tmp_path / "timing.cache").read_bytes() == b"timing:"
    data = engine.read_bytes()
    assert data == b"ENGINE8.5.2.2"
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["bytes"] == len(data)
    assert meta["tensorrt_version"] == "8.5.2.2" and meta["precision"] == "fp16" and meta["dla_core"] is None
    assert meta["gpu"] == GPU["name"] and meta["compute_capability"] == "8.7"
    assert meta["input"] == {"name": "input", "shape": [3, 32, 32], "batch": {"min": 1, "opt": 2, "max": 4}}
    assert meta["workspace_mb"] == 256 and meta["build_seconds"] >= 0 and not meta["strongly_typed"]
    assert meta["onnx"] == {"file": "model.onnx", "sha256": hashlib.sha256(b"onnx-bytes").hexdigest()}
    doc = json.loads((tmp_path / "engine.json").read_text())
    assert doc["engines"]["model.fp16.engine"] == meta


def test_fp16_on_tensorrt_8_2_sets_the_old_workspace(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt("8.2.1.8"))
    build(tmp_path, target=get_target("jetson-nano"))
    assert ("config.max_workspace_size", 256 << 20) in trt.calls
    assert ("create_network", 1) in trt.calls and ("build_serialized_network", ("FP16",)) in trt.calls


def test_timing_cache_is_loaded_when_present(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt())
    (tmp_path / "timing.cache").write_bytes(b"old")
    build(tmp_path, timing_cache=tmp_path / "timing.cache")
    assert ("create_timing_cache", b"old") in trt.calls
    assert (tmp_path / "timing.cache").read_bytes() == b"timing:old"


def test_int8_qdq_on_tensorrt_10(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt("10.3.0.30"))
    _, meta = build(tmp_path, precision="int8", onnx="model.int8.onnx")
    assert ("create_network", 0) in trt.calls  # explicit batch is the default on 10
    assert ("build_serialized_network", ("INT8", "FP16")) in trt.calls
    assert not any(c[0] == "config.int8_calibrator" for c in trt.calls)  # Q/DQ: no calibrator
    assert meta["onnx"]["file"] == "model.int8.onnx" and meta["calibration_cache"] is None


def test_int8_on_tensorrt_11_sets_no_precision_flags(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt("11.0.0.1"))
    _, meta = build(tmp_path, precision="int8", onnx="model.int8.onnx", target=get_target("x86-gpu"))
    assert ("create_network", 0) in trt.calls
    assert ("build_serialized_network", ()) in trt.calls and meta["strongly_typed"]


def test_dla_int8_reads_only_the_cache(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt("10.3.0.30"))
    cache = tmp_path / "calib.cache"
    write_calibration_cache(
        cache, {"input": 2.5, "/blocks.0/MatMul_output_0": 7.0}, tensorrt_version="10.3.0"
    )
    engine = tmp_path / "model.int8.dla1.engine"
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    meta = build_engine(
        tmp_path / "model.onnx",
        engine,
        precision="int8",
        target=get_target("jetson-orin"),
        input_name="input",
        batch=(1, 2, 4),
        input_shape=(3, 32, 32),
        workspace_mb=512,
        dla_core=1,
        calib_cache=cache,
    )
    calls = trt.calls
    assert ("config.default_device_type", trt.DeviceType.DLA) in calls
    assert ("config.DLA_core", 1) in calls
    assert ("build_serialized_network", ("INT8", "FP16", "GPU_FALLBACK")) in calls
    assert ("IInt8EntropyCalibrator2.__init__",) in calls
    assert ("calibrator", 1, cache.read_bytes()) in calls and ("get_batch", None) in calls
    assert ("set_calibration_profile",) in calls
    assert ("set_shape", "input", (2, 3, 32, 32), (2, 3, 32, 32), (2, 3, 32, 32)) in calls  # fixed for DLA
    assert meta["dla_core"] == 1 and meta["calibration_cache"] == "calib.cache"
    assert meta["input"]["batch"] == {"min": 2, "opt": 2, "max": 2}
    assert json.loads((tmp_path / "engine.json").read_text())["engines"]["model.int8.dla1.engine"] == meta


def test_engine_json_keeps_every_engine(tmp_path, use_trt):
    use_trt(fake_tensorrt())
    build(tmp_path, precision="fp16")
    build(tmp_path, precision="fp32")
    doc = json.loads((tmp_path / "engine.json").read_text())
    assert doc["schema_version"] == 1 and set(doc["engines"]) == {"model.fp16.engine", "model.fp32.engine"}


def test_dla_checks(tmp_path, use_trt):
    use_trt(fake_tensorrt("10.3.0"))
    with pytest.raises(ConfigError, match="calib_cache"):
        build(tmp_path, precision="int8", dla_core=0)
    stale = tmp_path / "stale.cache"
    write_calibration_cache(stale, {"input": 1.0}, tensorrt_version="8.5.2")
    with pytest.raises(ConfigError, match="rewrite it"):
        build(tmp_path, precision="int8", dla_core=0, calib_cache=stale)
    use_trt(fake_tensorrt("10.3.0", dla_cores=0))
    with pytest.raises(ConfigError, match="not available here"):
        build(tmp_path, precision="fp16", dla_core=0)


def test_refuses_a_tensorrt_other_than_the_targets(tmp_path, use_trt):
    use_trt(fake_tensorrt("8.5.2"))
    with pytest.raises(ConfigError, match="on the device"):
        build(tmp_path, target=get_target("jetson-orin"))


def test_unknown_input_name(tmp_path, use_trt):
    use_trt(fake_tensorrt(inputs=("pixel_values",)))
    with pytest.raises(ConfigError, match="pixel_values"):
        build(tmp_path)


def test_parser_errors_on_one_line(tmp_path, use_trt):
    use_trt(fake_tensorrt(parse_ok=False))
    with pytest.raises(EngineBuildError) as info:
        build(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "UNSUPPORTED_NODE: op 0" in message and "op 1" in message


def test_builder_errors_on_one_line(tmp_path, use_trt):
    use_trt(fake_tensorrt(build_ok=False))
    with pytest.raises(EngineBuildError) as info:
        engine, _ = build(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "Out of memory while building" in message and "a warning" not in message
    assert not (tmp_path / "model.fp16.engine").exists() and not (tmp_path / "engine.json").exists()


def test_status_with_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0"))
    monkeypatch.setattr(trt_mod, "_gpu_info", lambda target=None: dict(GPU))
    assert tensorrt_status() == (True, f"TensorRT 10.3.0, GPU {GPU['name']}")
    monkeypatch.setattr(trt_mod, "_gpu_info", lambda target=None: {"name": None})
    ok, reason = tensorrt_status()
    assert not ok and "no CUDA GPU" in reason

"""TensorRT engine build (`sladkit/export/tensorrt.py`) against a fake tensorrt, and TensorRT availability.

No TensorRT here: `build_engine` runs against a fake `tensorrt` module (only the calls sladkit makes), which
checks the call sequence, not TensorRT's behaviour.
"""

from __future__ import annotations

import enum
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sladkit.errors import ConfigError, MissingDependencyError
from sladkit.export.calib_cache import write_calibration_cache
from sladkit.export.targets import get_target
from sladkit.export.tensorrt import (
    EngineBuildError,
    build_engine,
)
from sladkit.runtime import device
from sladkit.runtime.device import tensorrt_status

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
        monkeypatch.setattr(device, "gpu_info", lambda capability_hint=None: dict(GPU))
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


def test_fp8_on_thor_is_a_strongly_typed_network(tmp_path, use_trt):
    trt = use_trt(fake_tensorrt("10.13.3.9"))
    _, meta = build(tmp_path, precision="fp8", onnx="model.fp8.onnx", target=get_target("jetson-thor"))
    assert ("create_network", 1 << 1) in trt.calls  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert ("build_serialized_network", ()) in trt.calls and meta["strongly_typed"]
    assert meta["onnx"]["file"] == "model.fp8.onnx" and meta["dla_core"] is None


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
    monkeypatch.setattr(device, "gpu_info", lambda capability_hint=None: dict(GPU))
    assert tensorrt_status() == (True, f"TensorRT 10.3.0, GPU {GPU['name']}")
    monkeypatch.setattr(device, "gpu_info", lambda capability_hint=None: {"name": None})
    ok, reason = tensorrt_status()
    assert not ok and "no CUDA GPU" in reason

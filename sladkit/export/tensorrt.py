"""TensorRT engine build: the `trtexec` commands of `build_engine.sh`, and the same build in Python.

An engine is tied to the TensorRT version and the GPU (`docs/deploy-facts.md`), so the bundle carries the
ONNX files, the calibration cache and a script to run on the device; `build_engine` builds in-process where
TensorRT is present. `tensorrt` is imported inside functions only: importing this module needs neither
tensorrt nor torch.

Sources (NVIDIA documentation and NVIDIA/TensorRT on GitHub):

- trtexec flags per version (`TRTEXEC_FLAGS` names the source of each): the help text in
  `samples/common/sampleOptions.cpp` of TensorRT 8.0, 8.4/8.5 and 8.6, `trtexec --help` of TensorRT 10.5,
  and "Migrating trtexec Usage from TensorRT 8.x to 10.x" (docs.nvidia.com/deeplearning/tensorrt/latest/
  api/migration/tensorrt-8x-to-10x-trtexec.html): `--workspace=N` is gone in 10.x, use
  `--memPoolSize=workspace:N` (N in MiB when no suffix is given).
- Python builder API (TensorRT 8.5 and 10.x Python API reference): `Builder`, `create_network` with
  `NetworkDefinitionCreationFlag.EXPLICIT_BATCH` on 8.x ("[DEPRECATED] Ignored because networks are always
  explicit batch in TensorRT 10.0"), `OnnxParser` and its error list, `IBuilderConfig.set_memory_pool_limit(
  MemoryPoolType.WORKSPACE, bytes)`, `BuilderFlag`, `int8_calibrator`, `default_device_type`, `DLA_core`,
  `create_optimization_profile`/`set_shape`, `create_timing_cache`/`set_timing_cache`,
  `build_serialized_network`; `IInt8EntropyCalibrator2` ("the required calibrator for DLA").
- DLA: "DLA Supported Layers and Restrictions" (docs.nvidia.com/deeplearning/tensorrt/latest/
  inference-library/dla-layer-restrictions.html): "DLA does not support dynamic dimensions, so the profile's
  min, max, and opt values must be equal"; "DLA does not support explicit quantization" (Developer Guide,
  "Working with DLA"), so DLA INT8 is implicit, from a calibration cache, which TensorRT skips silently when
  it is of another TensorRT version (NVIDIA/TensorRT#1378, maintainer's answer).
- Strong typing: `NetworkDefinitionCreationFlag.STRONGLY_TYPED` (TensorRT 10); TensorRT 11 is always
  strongly typed and removed `BuilderFlag.kFP16`/`kINT8` ("Strongly Typed Networks for DLA", TensorRT 11.4.1
  docs), so precision comes from the ONNX tensor types. On 10.x sladkit keeps weak typing for the Q/DQ model
  (`--int8 --fp16`): strongly typed, every layer outside the Q/DQ pairs would stay FP32.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from sladkit._atomic import atomic_write_bytes
from sladkit.engine_stamp import STAMP, record_stamp
from sladkit.errors import ConfigError, SladkitError, require
from sladkit.export.calib_cache import parse_cache_header, read_calibration_cache, trt_version_number
from sladkit.export.targets import Target
from sladkit.export.trtexec import _check_shape, _plan, _version
from sladkit.runtime import device

_log = logging.getLogger(__name__)

ENGINE_METADATA = STAMP  # engine.json; its schema and checks are in sladkit.engine_stamp


class EngineBuildError(SladkitError):
    """TensorRT could not parse the ONNX model or build the engine."""


def _make_logger(trt):
    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(" ".join(str(msg).split()))
            elif severity == trt.ILogger.Severity.WARNING:
                _log.warning("TensorRT: %s", msg)

    return _Logger()


def _cache_calibrator(trt, cache: bytes):
    """An IInt8EntropyCalibrator2 that only reads the calibration cache (it has no data to calibrate)."""

    class _CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names, *args):
            return None  # no images: every tensor's range must come from the cache

        def read_calibration_cache(self, *args):
            return cache

        def write_calibration_cache(self, *args):
            return None

    return _CacheCalibrator()


def _one_line(messages: list[str]) -> str:
    return "; ".join(" ".join(m.split()) for m in messages if m.strip()) or "no details from TensorRT"


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str,
    target: Target,
    input_name: str,
    batch: tuple[int, int, int],
    input_shape: tuple[int, ...],
    workspace_mb: int,
    dla_core: int | None = None,
    calib_cache: str | Path | None = None,
    timing_cache: str | Path | None = None,
) -> dict:
    """Build a serialized engine with TensorRT's Python API (8.x or 10.x) and record it in `engine.json`.

    Same recipe as `trtexec_commands` for the installed TensorRT version: explicit batch on 8.x, one
    optimisation profile, workspace cap, FP16/INT8 builder flags (none on TensorRT >= 11, strongly typed),
    DLA with GPU fallback and a cache-only entropy calibrator for implicit INT8, and a timing cache.

    Args:
        onnx_path: model.onnx (fp32, fp16, DLA), model.int8.onnx (int8 on the GPU), model.fp8.onnx (fp8,
            strongly typed), or an FP16-typed ONNX for fp16 on TensorRT >= 11.
        engine_path: Where to write the engine.
        precision: "fp32", "fp16", "int8" or "fp8".
        target: The target; its TensorRT major.minor must match the installed one when it names one.
        input_name: The ONNX input to profile.
        batch: (min, opt, max) batch; DLA builds use opt for all three.
        input_shape: Input shape without the batch.
        workspace_mb: Builder workspace cap in MiB.
        dla_core: DLA core, or None for the GPU.
        calib_cache: calib.cache for DLA INT8 (its header must carry the installed TensorRT version).
        timing_cache: Timing cache to load if present, and to save after the build.

    Returns:
        The engine's metadata (as stored under its file name in `engine.json` beside the engine): TensorRT
        version, GPU name and compute capability, precision, input name/shape/batch profile, DLA core,
        workspace, SHA-256 and size of the engine file, build seconds.

    Raises:
        MissingDependencyError: tensorrt is not installed (names the `sladkit[tensorrt]` extra).
        ConfigError: invalid combination, version mismatch, or missing input/cache.
        EngineBuildError: the parser or builder failed (their errors on one line).
    """
    trt = require("tensorrt", "tensorrt")
    version = str(trt.__version__)
    if target.tensorrt and _version(target.tensorrt)[:2] != _version(version)[:2]:
        raise ConfigError(
            f"target {target.name} expects TensorRT {target.tensorrt} (JetPack {target.jetpack}) but "
            f"TensorRT {version} is installed; run build_engine.sh on the device, or use --target x86-gpu"
        )
    plan = _plan(target, precision, batch, dla_core, version)
    _check_shape(input_name, input_shape)
    if not isinstance(workspace_mb, int) or workspace_mb <= 0:
        raise ConfigError(f"workspace {workspace_mb!r} MiB must be a positive integer")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ConfigError(f"ONNX model {onnx_path} does not exist; run sladkit export first")
    cache = None
    if plan.calibration_cache:
        if calib_cache is None:
            raise ConfigError(
                "DLA INT8 needs the calibration cache: pass calib_cache (the bundle's calib.cache)"
            )
        number, _ = parse_cache_header(read_calibration_cache(calib_cache)[0])
        if number != trt_version_number(version):  # TensorRT would skip it silently (NVIDIA/TensorRT#1378)
            raise ConfigError(
                f"{calib_cache} was written for TensorRT version number {number}, this is {version} "
                f"({trt_version_number(version)}); rewrite it with tensorrt_version={version!r}"
            )
        cache = Path(calib_cache).read_bytes()

    start = time.perf_counter()
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if _version(version)[0] < 10 else 0
    if plan.strongly_typed and _version(version)[0] == 10:
        # FP8 Q/DQ on TensorRT 10 (trtexec --stronglyTyped); TensorRT >= 11 is strongly typed anyway
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external weights next to the model; parse(bytes) is the portable fallback
    parsed = (
        parser.parse_from_file(str(onnx_path))
        if hasattr(parser, "parse_from_file")
        else parser.parse(onnx_path.read_bytes())
    )
    if not parsed:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors
        raise EngineBuildError(f"TensorRT {version} could not parse {onnx_path.name}: {_one_line(errors)}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if input_name not in inputs:
        raise ConfigError(f"{onnx_path.name} has no input {input_name!r}; its inputs are {inputs}")

    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT 8.2 (JetPack 4.6): the attribute 8.4 deprecated
        config.max_workspace_size = workspace_mb << 20
    for p in plan.precisions:
        config.set_flag(getattr(trt.BuilderFlag, p.upper()))
    if hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *[(b, *input_shape) for b in plan.batch])
    config.add_optimization_profile(profile)
    if plan.dla_core is not None:
        if builder.num_DLA_cores <= plan.dla_core:
            raise ConfigError(
                f"DLA core {plan.dla_core} is not available here ({builder.num_DLA_cores} DLA cores)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if cache is not None:
        calibrator = _cache_calibrator(trt, cache)  # keep a reference until the build is done
        config.int8_calibrator = calibrator
        if hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
    timing_path = Path(timing_cache) if timing_cache else None
    timing = config.create_timing_cache(
        timing_path.read_bytes() if timing_path and timing_path.is_file() else b""
    )
    config.set_timing_cache(timing, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT {version} could not build {engine_path.name}: {_one_line(logger.errors)}"
        )
    data = bytes(serialized)
    seconds = time.perf_counter() - start
    atomic_write_bytes(engine_path, data)
    if timing_path:
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))

    gpu = device.gpu_info(target.compute_capability if target else None)
    meta = {
        "engine": engine_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "tensorrt_version": version,
        "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "gpu_source": gpu["source"],
        "built_by": "tensorrt python api",
        "target": target.name,
        "precision": precision,
        "strongly_typed": plan.strongly_typed,
        "version_compatible": False,  # no BuilderFlag.VERSION_COMPATIBLE: only this exact TensorRT loads it
        "hardware_compatibility": "none",  # no hardware-compatibility level: only this GPU architecture
        "onnx": {"file": onnx_path.name, "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest()},
        "calibration_cache": Path(calib_cache).name if cache is not None else None,
        "input": {
            "name": input_name,
            "shape": list(input_shape),
            "batch": dict(zip(("min", "opt", "max"), plan.batch, strict=True)),
        },
        "dla_core": plan.dla_core,
        "workspace_mb": workspace_mb,
        "build_seconds": round(seconds, 3),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record_stamp(engine_path, meta)
    return meta

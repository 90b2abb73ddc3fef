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
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sladkit._atomic import atomic_write_bytes, atomic_write_text
from sladkit.errors import ConfigError, SladkitError, require
from sladkit.export.calib_cache import parse_cache_header, read_calibration_cache, trt_version_number
from sladkit.export.targets import Target

_log = logging.getLogger(__name__)

#: Flags for a target whose TensorRT is "whatever is installed" (x86-gpu) when the version is not known:
#: the oldest 10.x, so that every flag chosen for it is valid on every TensorRT 10 release.
ASSUMED_TENSORRT = "10.0.0"
TIMING_CACHE = "timing.cache"
ENGINE_METADATA = "engine.json"

_FILE_ROLES = {
    "onnx": "FP32 model.onnx",
    "int8_onnx": "explicit Q/DQ model.int8.onnx",
    "calib_cache": "TensorRT calibration cache calib.cache",
    "fp16_onnx": "FP16-typed ONNX (TensorRT >= 11 builds are strongly typed)",
}


class EngineBuildError(SladkitError):
    """TensorRT could not parse the ONNX model or build the engine."""


@dataclass(frozen=True)
class TrtexecFlag:
    """A trtexec flag sladkit emits, accepted by TensorRT versions `since` <= v < `until`."""

    name: str
    since: str
    until: str | None
    source: str


_S80 = "sampleOptions.cpp help, TensorRT 8.0 (NVIDIA/TensorRT samples/common)"
_S85 = "sampleOptions.cpp help, TensorRT 8.4/8.5 (NVIDIA/TensorRT samples/common)"
_S86 = "sampleOptions.cpp, TensorRT 8.6: '--buildOnly flag has been deprecated by --skipInference flag.'"
_S105 = "trtexec --help, TensorRT 10.5 ([TensorRT v100500])"
_S10MIG = "TensorRT docs, 'Migrating trtexec Usage from TensorRT 8.x to 10.x' (removed: --workspace)"
_S11 = "TensorRT 11 docs: strongly typed only, BuilderFlag kFP16/kINT8 and implicit INT8 removed in 11.0"

TRTEXEC_FLAGS: dict[str, TrtexecFlag] = {
    f.name: f
    for f in (
        TrtexecFlag("--onnx", "8.0", None, _S80),
        TrtexecFlag("--saveEngine", "8.0", None, _S80),
        TrtexecFlag("--minShapes", "8.0", None, _S80),
        TrtexecFlag("--optShapes", "8.0", None, _S80),
        TrtexecFlag("--maxShapes", "8.0", None, _S80),
        TrtexecFlag("--fp16", "8.0", "11.0", f"{_S80}; {_S11}"),
        TrtexecFlag("--int8", "8.0", "11.0", f"{_S80}; {_S11}"),
        TrtexecFlag("--calib", "8.0", "11.0", f"{_S80}; {_S11}"),
        TrtexecFlag("--useDLACore", "8.0", None, _S80),
        TrtexecFlag("--allowGPUFallback", "8.0", None, _S80),
        TrtexecFlag("--timingCacheFile", "8.0", None, _S80),
        TrtexecFlag("--workspace", "8.0", "10.0", f"{_S80}; {_S10MIG}"),
        TrtexecFlag("--memPoolSize", "8.4", None, f"{_S85}; {_S10MIG}"),
        TrtexecFlag("--buildOnly", "8.0", "8.6", f"{_S80}; {_S86}"),
        TrtexecFlag("--skipInference", "8.6", None, f"{_S86}; {_S105}"),
        TrtexecFlag("--profilingVerbosity", "8.4", None, f"{_S85} (8.0 had --nvtxMode); {_S105}"),
        TrtexecFlag("--exportLayerInfo", "8.4", None, _S85),
        TrtexecFlag("--stronglyTyped", "10.0", None, f"{_S105}; {_S11} (a no-op there, on by default)"),
    )
}


def _version(version: str) -> tuple[int, int, int]:
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(version).strip())
    if not match:
        raise ConfigError(f"TensorRT version {version!r} is not of the form major.minor.patch (e.g. 10.3.0)")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def flag_supported(flag: str, tensorrt_version: str) -> bool:
    """Whether trtexec of `tensorrt_version` accepts `flag` ("--fp16" or "--fp16=..."), per `TRTEXEC_FLAGS`.

    Args:
        flag: A flag, with or without its "=value".
        tensorrt_version: e.g. "8.5.2".

    Returns:
        False for flags outside the table as well.
    """
    entry = TRTEXEC_FLAGS.get(flag.split("=", 1)[0])
    if entry is None:
        return False
    v = _version(tensorrt_version)
    return _version(entry.since) <= v and (entry.until is None or v < _version(entry.until))


def _first_supported(version: str, *flags: str) -> str:
    for flag in flags:
        if flag_supported(flag, version):
            return flag
    raise ConfigError(f"TensorRT {version} is older than sladkit supports (8.2): none of {', '.join(flags)}")


@dataclass(frozen=True)
class _Plan:
    onnx_role: str
    precisions: tuple[str, ...]  # builder precisions beyond FP32 ("int8", "fp16"); empty when strongly typed
    strongly_typed: bool
    calibration_cache: bool  # implicit INT8 from calib.cache (DLA)
    dla_core: int | None
    batch: tuple[int, int, int]
    engine: str


# precision -> (ONNX role, builder precisions). GPU on TensorRT <= 10 (weakly typed); GPU on TensorRT >= 11
# (strongly typed: the ONNX tensor types are the precision); DLA (implicit INT8 from the FP32 ONNX).
_GPU = {"fp32": ("onnx", ()), "fp16": ("onnx", ("fp16",)), "int8": ("int8_onnx", ("int8", "fp16"))}
_TYPED = {"fp32": ("onnx", ()), "fp16": ("fp16_onnx", ()), "int8": ("int8_onnx", ())}
_DLA = {"fp16": ("onnx", ("fp16",)), "int8": ("onnx", ("int8", "fp16"))}


def _plan(target: Target, precision: str, batch, dla_core: int | None, version: str) -> _Plan:
    """The one place where target, precision, DLA and TensorRT version turn into a build recipe."""
    if target.runtime != "tensorrt":
        raise ConfigError(f"target {target.name} runs {target.runtime}, not TensorRT; pick a TensorRT target")
    target.check_precision(precision)
    batch = tuple(batch)
    if (
        len(batch) != 3
        or not all(isinstance(b, int) and b > 0 for b in batch)
        or sorted(batch) != list(batch)
    ):
        raise ConfigError(f"batch {batch} must be three positive integers min <= opt <= max")
    major = _version(version)[0]
    if dla_core is None:
        role, precisions = (_TYPED if major >= 11 else _GPU)[precision]
        return _Plan(role, precisions, major >= 11, False, None, batch, f"model.{precision}.engine")
    if target.dla_cores == 0:
        raise ConfigError(f"target {target.name} has no DLA; drop the DLA core option")
    if major > 10:
        raise ConfigError(
            f"DLA builds need implicit INT8 and TensorRT <= 10, not {version}; build for the GPU"
        )
    if not isinstance(dla_core, int) or not 0 <= dla_core < target.dla_cores:
        raise ConfigError(
            f"DLA core {dla_core!r} does not exist on {target.name}: use 0..{target.dla_cores - 1}"
        )
    if precision not in _DLA:
        raise ConfigError("DLA runs FP16 or INT8 only; use --precision fp16 or int8 with a DLA core")
    role, precisions = _DLA[precision]
    fixed = (batch[1],) * 3  # "DLA does not support dynamic dimensions": min = opt = max
    engine = f"model.{precision}.dla{dla_core}.engine"
    return _Plan(role, precisions, False, precision == "int8", dla_core, fixed, engine)


def _check_shape(input_name: str, input_shape) -> None:
    if not isinstance(input_name, str) or not input_name or "'" in input_name:
        raise ConfigError(f"input name {input_name!r} must be a non-empty name without single quotes")
    if not input_shape or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ConfigError(
            f"input shape {tuple(input_shape)} must be positive sizes without the batch, e.g. (3, 224, 224)"
        )


def _shape_spec(input_name: str, batch: int, input_shape: tuple[int, ...]) -> str:
    # trtexec: "Input names can be wrapped with escaped single quotes (ex: 'Input:0')" (sampleOptions.cpp)
    name = f"'{input_name}'" if any(c in input_name for c in ":,") else input_name
    return f"{name}:{'x'.join(str(d) for d in (batch, *input_shape))}"


def _file(files: dict[str, str], role: str, hint: str = "export it first or choose another precision") -> str:
    name = files.get(role)
    if not name:
        raise ConfigError(f"files has no {role!r} entry (the {_FILE_ROLES.get(role, role)}); {hint}")
    return name


def trtexec_commands(
    target: Target,
    *,
    files: dict[str, str],
    precision: str,
    input_name: str,
    input_shape: tuple[int, ...],
    batch: tuple[int, int, int],
    workspace_mb: int,
    dla_core: int | None,
    tensorrt_version: str | None = None,
) -> list[list[str]]:
    """The trtexec command(s) that build this bundle's engine on the device.

    fp16: FP32 ONNX + `--fp16`. int8: the Q/DQ ONNX (explicit quantization) + `--int8 --fp16`. DLA:
    implicit INT8 from the FP32 ONNX + `--calib --int8 --fp16 --useDLACore=N --allowGPUFallback` (`--fp16`
    alone for FP16), with a fixed batch (the opt one). fp32: no precision flag. TensorRT >= 11:
    `--stronglyTyped`, no precision flags (int8 takes the Q/DQ ONNX; fp16 needs an FP16-typed ONNX,
    files["fp16_onnx"]).
    Always: one optimisation profile, a workspace cap, `timing.cache`, `--saveEngine=model.<precision>
    [.dla<N>].engine`, no inference run; layer info (`.layers.json`) where trtexec can export it.

    Args:
        target: A TensorRT target from `sladkit.export.targets`.
        files: Bundle file name per role: "onnx", "int8_onnx", "calib_cache" (and "fp16_onnx" for TRT >= 11).
        precision: "fp32", "fp16" or "int8".
        input_name: The ONNX input name.
        input_shape: Shape without the batch: (3, 224, 224), or (224, 224, 3) for a uint8 NHWC input.
        batch: (min, opt, max) batch of the optimisation profile.
        workspace_mb: Builder workspace cap in MiB.
        dla_core: DLA core to build for, or None for the GPU.
        tensorrt_version: TensorRT that will run the commands; default: the target's, or `ASSUMED_TENSORRT`
            for a target without one (x86-gpu).

    Returns:
        One argv list per engine, each starting with "trtexec".

    Raises:
        ConfigError: invalid combination (unsupported precision, no DLA, DLA on TRT 11, missing file).
    """
    version = tensorrt_version or target.tensorrt or ASSUMED_TENSORRT
    plan = _plan(target, precision, batch, dla_core, version)
    _check_shape(input_name, input_shape)
    if not isinstance(workspace_mb, int) or workspace_mb <= 0:
        raise ConfigError(f"workspace {workspace_mb!r} MiB must be a positive integer")
    hint = (
        "convert model.onnx to FP16 first (python -m modelopt.onnx.autocast --low_precision_type fp16) "
        "or choose another precision"
        if plan.onnx_role == "fp16_onnx"
        else "export it first or choose another precision"
    )
    argv = ["trtexec", f"--onnx={_file(files, plan.onnx_role, hint)}"]
    for flag, size in zip(("--minShapes", "--optShapes", "--maxShapes"), plan.batch, strict=True):
        argv.append(f"{flag}={_shape_spec(input_name, size, tuple(input_shape))}")
    argv += [f"--{p}" for p in plan.precisions]
    if plan.strongly_typed:
        argv.append("--stronglyTyped")
    if plan.calibration_cache:
        argv.append(f"--calib={_file(files, 'calib_cache', 'write it with the INT8 calibration step first')}")
    if plan.dla_core is not None:
        argv += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    if _first_supported(version, "--memPoolSize", "--workspace") == "--memPoolSize":
        argv.append(f"--memPoolSize=workspace:{workspace_mb}")
    else:
        argv.append(f"--workspace={workspace_mb}")
    argv += [f"--timingCacheFile={TIMING_CACHE}", f"--saveEngine={plan.engine}"]
    if flag_supported("--exportLayerInfo", version) and flag_supported("--profilingVerbosity", version):
        argv += [
            "--profilingVerbosity=detailed",
            f"--exportLayerInfo={plan.engine[: -len('.engine')]}.layers.json",
        ]
    argv.append(_first_supported(version, "--skipInference", "--buildOnly"))
    unsupported = [a for a in argv[1:] if not flag_supported(a, version)]
    if unsupported:  # the table drives every choice above; this guards against a future edit
        raise AssertionError(f"flags {unsupported} are not valid for TensorRT {version}")
    return [argv]


def write_build_script(path: str | Path, commands: list[list[str]], *, target: Target) -> None:
    """Write `build_engine.sh`: bash, executable, written atomically.

    Args:
        path: Script path (the bundle's `build_engine.sh`); it `cd`s to its own folder, so bundle-relative
            file names in the commands resolve wherever the bundle is copied.
        commands: argv lists from `trtexec_commands`, each starting with "trtexec".
        target: The target, for the header (expected TensorRT/JetPack) and the version check.
    """
    if not commands or any(not argv or argv[0] != "trtexec" for argv in commands):
        raise ConfigError("build script commands must be non-empty trtexec argv lists (see trtexec_commands)")
    lines = [
        "#!/usr/bin/env bash",
        f"# Builds the TensorRT engine(s) of this sladkit bundle for {target.name}: {target.description}.",
    ]
    if target.tensorrt:
        cc = f", compute capability {target.compute_capability}" if target.compute_capability else ""
        lines.append(f"# Expected: JetPack {target.jetpack}, TensorRT {target.tensorrt}{cc}.")
    else:
        lines += [
            "# Expected: the TensorRT installed on this host. The flags follow TensorRT 10.x; to follow the",
            "# installed version, regenerate this script there (sladkit export on this host), which",
            "# TensorRT >= 11 needs (strongly typed: --stronglyTyped, no --fp16/--int8/--calib).",
        ]
    lines += [
        "# Engines are tied to the TensorRT version and the GPU: run this script on the device itself",
        "# (or in a container pinned to its exact JetPack). An engine built anywhere else will not load.",
        "# Before benchmarking, pin the clocks (record the mode): sudo nvpmodel -m 0 && sudo jetson_clocks",
    ]
    if not target.jetpack:
        lines.append("# (on a discrete GPU: sudo nvidia-smi --lock-gpu-clocks=<min,max> instead)")
    lines += [
        "# Set TRTEXEC=/path/to/trtexec if trtexec is not on PATH (JetPack: /usr/src/tensorrt/bin/trtexec).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'if ! command -v "$TRTEXEC" >/dev/null 2>&1; then',
        '  echo "error: trtexec not found; set TRTEXEC=/path/to/trtexec" >&2',
        "  exit 127",
        "fi",
    ]
    if target.tensorrt:
        expected = trt_version_number(target.tensorrt)
        lines += [
            f"expected=v{expected}  # TensorRT {target.tensorrt}, as trtexec prints it",
            'found="$("$TRTEXEC" --help 2>&1 | sed -n \'s/.*\\[TensorRT \\(v[0-9]*\\)\\].*/\\1/p\' \\',
            '  | head -n 1)" || true',
            'if [ "${found:-}" != "$expected" ]; then',
            f'  echo "warning: bundle made for TensorRT {target.tensorrt} ($expected)," \\',
            '    "but $TRTEXEC is ${found:-of unknown version}" >&2',
        ]
        if any(a.startswith("--calib=") for argv in commands for a in argv):
            # TensorRT skips a calibration cache of another version (NVIDIA/TensorRT#1378), silently
            lines += [
                '  if [ -n "${found:-}" ]; then',
                '    echo "error: calib.cache is for $expected; TensorRT would ignore it. Re-export the" \\',
                '      "bundle with this TensorRT version." >&2',
                "    exit 1",
                "  fi",
            ]
        lines.append("fi")
    for argv in commands:
        engine = next((a.split("=", 1)[1] for a in argv if a.startswith("--saveEngine=")), "engine")
        lines.append(f"echo {shlex.quote('==> building ' + engine)} >&2")
        lines.append(" \\\n    ".join(['"$TRTEXEC"', *(shlex.quote(a) for a in argv[1:])]))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    atomic_write_text(tmp, "\n".join(lines) + "\n")
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)  # appears complete and executable at once


def _gpu(name: str | None, capability: str | None, source: str | None) -> dict:
    return {"name": name, "compute_capability": capability, "source": source}


def _gpu_info(target: Target | None = None) -> dict:
    """GPU name and compute capability: cuda-python, then nvidia-smi, then a Jetson's device tree."""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, prop = cudart.cudaGetDeviceProperties(0)
        if err == cudart.cudaError_t.cudaSuccess:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return _gpu(name.rstrip("\x00"), f"{prop.major}.{prop.minor}", "cuda")
    except Exception:  # cuda-python missing, or no driver/device
        pass
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
        try:
            lines = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            lines = ""
        if lines.strip():
            name, _, capability = lines.strip().splitlines()[0].rpartition(",")
            return _gpu(name.strip(), capability.strip() or None, "nvidia-smi")
    try:  # Jetsons (JetPack 4/5) have no nvidia-smi; the device tree names the module
        model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n")
    except OSError:
        model = ""
    if "NVIDIA" in model or "Jetson" in model:
        capability = target.compute_capability if target else None
        return _gpu(model, capability, "device-tree (capability from the target table)")
    return _gpu(None, None, None)


def tensorrt_status() -> tuple[bool, str]:
    """Whether TensorRT can build here: `import tensorrt` works and a CUDA GPU is visible (no torch).

    Returns:
        (True, "TensorRT <version>, GPU <name>") or (False, the reason).
    """
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError when its CUDA libraries are missing
        return False, (
            f"tensorrt cannot be imported ({type(e).__name__}: {e}); install it with "
            "pip install 'sladkit[tensorrt]' (on a Jetson it comes with JetPack)"
        )
    gpu = _gpu_info()
    if gpu["name"] is None:
        return (
            False,
            f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible (cuda, nvidia-smi, Jetson)",
        )
    return True, f"TensorRT {trt.__version__}, GPU {gpu['name']}"


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
        onnx_path: model.onnx (fp32, fp16, DLA), model.int8.onnx (int8 on the GPU), or an FP16-typed ONNX
            for fp16 on TensorRT >= 11.
        engine_path: Where to write the engine.
        precision: "fp32", "fp16" or "int8".
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

    gpu = _gpu_info(target)
    meta = {
        "engine": engine_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "tensorrt_version": version,
        "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "gpu_source": gpu["source"],
        "target": target.name,
        "precision": precision,
        "strongly_typed": plan.strongly_typed,
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
    _record(engine_path.parent / ENGINE_METADATA, meta)
    return meta


def _record(path: Path, meta: dict) -> None:
    """Add or replace one engine's entry in engine.json ({"schema_version": 1, "engines": {file: meta}})."""
    doc = {"schema_version": 1, "engines": {}}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            if isinstance(old, dict) and isinstance(old.get("engines"), dict):
                doc["engines"] = old["engines"]
        except (OSError, ValueError):
            _log.warning("replacing unreadable %s", path)
    doc["engines"][meta["engine"]] = meta
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")

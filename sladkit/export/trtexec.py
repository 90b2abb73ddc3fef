"""`build_engine.sh`: the exact `trtexec` commands that build a bundle's engine on the device.

Which flags exist in which TensorRT version is a table (`TRTEXEC_FLAGS`), each entry naming its source;
the sources are listed in `sladkit.export.tensorrt`'s docstring. Needs neither tensorrt nor torch.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from sladkit._atomic import atomic_write_text
from sladkit.errors import ConfigError
from sladkit.export.calib_cache import trt_version_number
from sladkit.export.targets import Target

#: Flags for a target whose TensorRT is "whatever is installed" (x86-gpu) when the version is not known:
#: the oldest 10.x, so that every flag chosen for it is valid on every TensorRT 10 release.
ASSUMED_TENSORRT = "10.0.0"
TIMING_CACHE = "timing.cache"

_FILE_ROLES = {
    "onnx": "FP32 model.onnx",
    "int8_onnx": "explicit Q/DQ model.int8.onnx",
    "calib_cache": "TensorRT calibration cache calib.cache",
    "fp16_onnx": "FP16-typed ONNX (TensorRT >= 11 builds are strongly typed)",
    "fp8_onnx": "FP8 (E4M3) Q/DQ model.fp8.onnx",
}


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
# FP8 is strongly typed on every release (`STRONGLY_TYPED_PRECISIONS`): NVIDIA's TensorRT maintainers answer
# FP8 Q/DQ ONNX with --stronglyTyped (NVIDIA/TensorRT#3987, NVIDIA/Model-Optimizer#118), and on Blackwell
# (Thor) a weakly typed network mixing INT8 and FP8 is an error (justincdavis/trtutils#163).
_GPU = {
    "fp32": ("onnx", ()),
    "fp16": ("onnx", ("fp16",)),
    "int8": ("int8_onnx", ("int8", "fp16")),
    "fp8": ("fp8_onnx", ()),
}
_TYPED = {"fp32": ("onnx", ()), "fp16": ("fp16_onnx", ()), "int8": ("int8_onnx", ()), "fp8": ("fp8_onnx", ())}
STRONGLY_TYPED_PRECISIONS = ("fp8",)
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
    if precision in STRONGLY_TYPED_PRECISIONS and not flag_supported("--stronglyTyped", version):
        raise ConfigError(
            f"--precision {precision} needs a strongly typed build (TensorRT >= 10), not {version}"
        )
    if dla_core is None:
        strongly_typed = major >= 11 or precision in STRONGLY_TYPED_PRECISIONS
        role, precisions = (_TYPED if strongly_typed else _GPU)[precision]
        return _Plan(role, precisions, strongly_typed, False, None, batch, f"model.{precision}.engine")
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


def engine_build(
    target: Target,
    *,
    precision: str,
    batch: tuple[int, int, int],
    dla_core: int | None,
    tensorrt_version: str | None = None,
) -> dict:
    """What `build_engine.sh` builds, as the manifest records it (`manifest["engine_build"]`).

    The batch profile is the one actually built: a DLA build fixes min = opt = max to the opt batch.
    `trtexec_commands` is then called with exactly these values, so the manifest and the script agree.

    Returns:
        {"engine", "onnx_role", "precision", "dla_core", "batch": {"min", "opt", "max"}, "strongly_typed",
        "builder_precisions", "calibration_cache", "tensorrt"}.
    """
    version = tensorrt_version or target.tensorrt or ASSUMED_TENSORRT
    plan = _plan(target, precision, batch, dla_core, version)
    return {
        "engine": plan.engine,
        "onnx_role": plan.onnx_role,
        "precision": precision,
        "dla_core": plan.dla_core,
        "batch": dict(zip(("min", "opt", "max"), plan.batch, strict=True)),
        "strongly_typed": plan.strongly_typed,
        "builder_precisions": list(plan.precisions),
        "calibration_cache": plan.calibration_cache,
        "tensorrt": version,
    }


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

    fp16: FP32 ONNX + `--fp16`. int8: the Q/DQ ONNX (explicit quantization) + `--int8 --fp16`. fp8: the FP8
    Q/DQ ONNX + `--stronglyTyped`, no precision flags, on every TensorRT (>= 10). DLA:
    implicit INT8 from the FP32 ONNX + `--calib --int8 --fp16 --useDLACore=N --allowGPUFallback` (`--fp16`
    alone for FP16), with a fixed batch (the opt one). fp32: no precision flag. TensorRT >= 11:
    `--stronglyTyped`, no precision flags (int8 takes the Q/DQ ONNX; fp16 needs an FP16-typed ONNX,
    files["fp16_onnx"]).
    Always: one optimisation profile, a workspace cap, `timing.cache`, `--saveEngine=model.<precision>
    [.dla<N>].engine`, no inference run; layer info (`.layers.json`) where trtexec can export it.

    Args:
        target: A TensorRT target from `sladkit.export.targets`.
        files: Bundle file name per role: "onnx", "int8_onnx", "fp8_onnx", "calib_cache" (and "fp16_onnx"
            for TRT >= 11).
        precision: "fp32", "fp16", "int8" or "fp8".
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


def benchmark_args(argv: list[str]) -> list[str]:
    """`trtexec` arguments that time the engine a build command writes (trtexec's own benchmark)."""
    engine = next(a.split("=", 1)[1] for a in argv if a.startswith("--saveEngine="))
    args = [f"--loadEngine={engine}"]
    args += ["--shapes=" + a.split("=", 1)[1] for a in argv if a.startswith("--optShapes=")]
    return args + [a for a in argv if a.startswith("--useDLACore=")]


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
        "# Each engine's trtexec output is kept in <engine>.log and stamped into engine.json (TensorRT version",
        "# and GPU from that log, SHA-256, shapes) by python3 -m sladkit.engine_stamp (PYTHON=... to choose",
        "# the interpreter); sladkit profile/eval/predict load only stamped engines.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'if ! command -v "$TRTEXEC" >/dev/null 2>&1; then',
        '  echo "error: trtexec not found; set TRTEXEC=/path/to/trtexec" >&2',
        "  exit 127",
        "fi",
        'PYTHON="${PYTHON:-python3}"',
        "stamp() {  # ENGINE LOG: record ENGINE in engine.json from trtexec's LOG",
        "  if \"$PYTHON\" -c 'import sladkit.engine_stamp' >/dev/null 2>&1; then",
        '    "$PYTHON" -m sladkit.engine_stamp "$1" --log "$2"',
        "  else",
        '    echo "warning: $1 is built but not stamped ($PYTHON cannot import sladkit), so sladkit will not" \\',
        '      "load it: pip install sladkit, then run here: python3 -m sladkit.engine_stamp $1 --log $2" >&2',
        "  fi",
        "}",
    ]
    if target.tensorrt:
        expected = trt_version_number(target.tensorrt)
        lines += [
            f"expected=v{expected}  # TensorRT {target.tensorrt}, as trtexec prints it",
            'found="$("$TRTEXEC" --help 2>&1 | sed -n \'s/.*\\[TensorRT \\(v[0-9]*\\)\\].*/\\1/p\' \\',
            '  | head -n 1)" || true',
            'if [ "${found:-}" != "$expected" ]; then',
            f'  echo "warning: bundle made for TensorRT {target.tensorrt} ($expected, JetPack {target.jetpack})," \\',
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
        log = shlex.quote(f"{engine}.log")
        lines.append(f"echo {shlex.quote('==> building ' + engine)} >&2")
        lines.append(
            " \\\n    ".join(['"$TRTEXEC"', *(shlex.quote(a) for a in argv[1:])]) + f" 2>&1 | tee {log}"
        )
        lines.append(f"stamp {shlex.quote(engine)} {log}")
        lines.append(f'echo "==> benchmark it: $TRTEXEC {" ".join(benchmark_args(argv))}" >&2')
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    atomic_write_text(tmp, "\n".join(lines) + "\n")
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)  # appears complete and executable at once

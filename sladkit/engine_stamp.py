"""The engine stamp: `engine.json` beside TensorRT engines, its schema, how it is written and checked.

An engine only runs where it was built, so every engine sladkit loads carries a stamp: the TensorRT version
and GPU that built it, its SHA-256, the bundle file it was built from, precision and shapes.
`{"schema_version": 1, "engines": {"model.int8.engine": {...}, ...}}`, one entry per engine of the folder.

Writers: `sladkit.export.tensorrt.build_engine` (TensorRT's Python API, at export) and
`stamp_from_trtexec_log`, which the bundle's `build_engine.sh` runs after each `trtexec` and which a user
runs by hand after their own `trtexec ... | tee LOG`: `python3 -m sladkit.engine_stamp ENGINE --log LOG`.
The version and GPU come from trtexec's own log ("TensorRT version: 10.3.0", "[TensorRT v100300]",
"Selected Device", "Compute Capability"), so the stamp says what built the engine, not what the stamping
machine has. Readers: the runtime (`read_stamp` when it resolves an engine, `check_fits` when it loads one).

Compatibility follows NVIDIA's rules (TensorRT documentation):
- "Support Policies": serialized engines are not covered by semantic versioning; unless an engine was built
  version-compatible, the TensorRT version that loads it must equal the one that built it in major, minor,
  patch and build. trtexec reports major.minor.patch only, so a trtexec stamp is compared on those three.
- "Version Compatibility": a version-compatible engine (`--versionCompatible`, `BuilderFlag.
  VERSION_COMPATIBLE`, TensorRT >= 8.6) runs on the same or a later TensorRT of the same major version;
  across majors only 8 -> 9/10 and 10 -> 11 (TensorRT 10.x docs and the 11.4 support matrix).
- "Support Matrix, Engine Portability" / "Hardware Compatibility": without hardware-compatibility mode an
  engine is not portable across GPU architectures (sladkit requires the same compute capability); built
  with `--hardwareCompatibilityLevel=ampere+` it runs on compute capability 8.0 and later.

Standard library only: `build_engine.sh` runs this module on the device.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from sladkit._atomic import atomic_write_text
from sladkit.errors import SladkitError

STAMP = "engine.json"
SCHEMA_VERSION = 1
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

EXACT_RULE = (
    "NVIDIA's rule (TensorRT docs, 'Support Policies'): an engine loads only with the exact TensorRT version "
    "that built it (major.minor.patch.build) unless it was built version-compatible"
)
COMPATIBLE_RULE = (
    "NVIDIA's rule for version-compatible engines (TensorRT docs, 'Version Compatibility'): built with "
    "TensorRT >= 8.6, they run on the same or a later TensorRT of the same major version (or 8 -> 9/10, 10 -> 11)"
)
SAME_GPU_RULE = (
    "NVIDIA's rule (TensorRT docs, 'Engine Portability'): without hardware-compatibility mode an engine is "
    "not portable across GPU architectures"
)
AMPERE_PLUS_RULE = (
    "NVIDIA's rule (TensorRT docs, 'Hardware Compatibility'): an engine built with hardware compatibility "
    "level ampere+ runs on compute capability 8.0 and later"
)
_CROSS_MAJOR = {(8, 9), (8, 10), (10, 11)}  # (built, running) majors a version-compatible engine crosses

_VERSION = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")
_CAPABILITY = re.compile(r"^\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EngineStampError(SladkitError):
    """An engine without a valid stamp, one that does not match its stamp, or one that cannot run here."""


def stamp_command(engine: str | Path) -> str:
    """The documented stamping step for an engine built by hand, for messages."""
    return f"python3 -m sladkit.engine_stamp {engine} --log TRTEXEC_LOG (trtexec's output)"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_engine(path: str | Path) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


# --- reading and checking ----------------------------------------------------------------------------------


def read_stamps(folder: str | Path) -> dict[str, dict]:
    """Every engine entry of `folder/engine.json` ({} when there is none); the file's layout is checked."""
    path = Path(folder) / STAMP
    if not path.is_file():
        return {}
    fix = f"rebuild the engines with build_engine.sh or restamp them with {stamp_command('ENGINE')}"
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise EngineStampError(f"{path} is unreadable ({e}); {fix}") from None
    except json.JSONDecodeError as e:
        raise EngineStampError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); {fix}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("engines"), dict):
        raise EngineStampError(
            f'{path} is not an engine stamp (expected {{"schema_version": 1, "engines": {{...}}}}); {fix}'
        )
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise EngineStampError(
            f"{path} has schema version {doc.get('schema_version')!r}; this sladkit reads {SCHEMA_VERSION}: {fix}"
        )
    return doc["engines"]


def read_stamp(engine: str | Path, *, verify: bool = True) -> dict:
    """The validated stamp of `engine`; with `verify`, also its SHA-256 against the engine's bytes.

    Raises:
        EngineStampError: no engine.json, malformed, not describing this engine, a field of the wrong type,
            or (verify) an engine whose bytes are not the stamped ones. One line, saying how to fix it.
    """
    engine = Path(engine)
    path = engine.parent / STAMP
    if not path.is_file():
        raise EngineStampError(
            f"{engine} has no {STAMP} beside it (its TensorRT version, GPU and SHA-256): build it with the "
            f"bundle's build_engine.sh, or stamp an engine built by hand with {stamp_command(engine)}"
        )
    engines = read_stamps(engine.parent)
    if engine.name not in engines:
        described = ", ".join(sorted(engines)) or "no engine"
        raise EngineStampError(
            f"{path} does not describe {engine.name} (it describes {described}); build it with the bundle's "
            f"build_engine.sh, or stamp it with {stamp_command(engine)}"
        )
    meta = engines[engine.name]
    _check_fields(path, engine, meta)
    if verify and sha256_file(engine) != meta["sha256"]:
        raise EngineStampError(
            f"{engine} does not match the SHA-256 in {path} (modified, corrupt, or rebuilt without stamping): "
            f"rebuild it with the bundle's build_engine.sh, or restamp it with {stamp_command(engine)}"
        )
    return meta


def _check_fields(path: Path, engine: Path, meta) -> None:
    def bad(field: str, value, expected: str) -> EngineStampError:
        return EngineStampError(
            f"{path}: {engine.name}'s {field} is {value!r}, expected {expected}; rebuild the engine with "
            f"build_engine.sh or restamp it with {stamp_command(engine)}"
        )

    if not isinstance(meta, dict):
        raise bad("entry", meta, "an object")
    checks = {
        "sha256": (lambda v: isinstance(v, str) and _SHA256.match(v), "64 lowercase hex digits"),
        "tensorrt_version": (lambda v: isinstance(v, str) and _VERSION.match(v), "a version like 10.3.0"),
        "precision": (lambda v: isinstance(v, str) and v, "a precision like int8"),
        "compute_capability": (
            lambda v: v is None or (isinstance(v, str) and _CAPABILITY.match(v)),
            "like 8.7",
        ),
        "version_compatible": (lambda v: isinstance(v, bool), "true or false"),
    }
    for field, (ok, expected) in checks.items():
        value = meta.get(field, False if field == "version_compatible" else None)
        if not ok(value):
            raise bad(field, value, expected)
    inp = meta.get("input")
    if inp is not None and not isinstance(inp, dict):
        raise bad("input", inp, "an object")
    batch = (inp or {}).get("batch")
    if batch is not None and not (
        isinstance(batch, dict)
        and all(isinstance(batch.get(k), int) and batch[k] > 0 for k in ("min", "opt", "max"))
    ):
        raise bad("input.batch", batch, "{min, opt, max} positive integers")


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(version))[:4])


def check_fits(engine: str, meta: dict, tensorrt_version: str, gpu: dict) -> None:
    """Refuse an engine that NVIDIA's rules say cannot run on this TensorRT or GPU, naming the rule.

    Args:
        engine: The engine's name, for the message.
        meta: Its stamp (`read_stamp`).
        tensorrt_version: The TensorRT that will load it (`tensorrt.__version__`, e.g. "10.3.0.30").
        gpu: {"name", "compute_capability"} of this machine (either may be None: then the GPU is not checked).
    """
    built, here = _parts(meta["tensorrt_version"]), _parts(tensorrt_version)
    rebuild = "rebuild it here with the bundle's build_engine.sh"
    if meta.get("version_compatible"):
        fits = built[:2] >= (8, 6) and built[:3] <= here[:3]
        fits = fits and (built[0] == here[0] or (built[0], here[0]) in _CROSS_MAJOR)
        rule = COMPATIBLE_RULE
    else:
        common = max(3, min(len(built), len(here)))  # trtexec stamps have no build number
        fits, rule = built[:common] == here[:common], EXACT_RULE
    if not fits:
        raise EngineStampError(
            f"{engine} was built with TensorRT {meta['tensorrt_version']}, this machine has {tensorrt_version}; "
            f"{rule}: {rebuild}"
        )
    wanted, have = meta.get("compute_capability"), gpu.get("compute_capability")
    if not wanted or not have:
        return
    level = str(meta.get("hardware_compatibility") or "none").lower()
    if level == "ampere+":
        fits, rule = _parts(have)[:1] >= (8,), AMPERE_PLUS_RULE
    else:
        fits, rule = wanted == have, SAME_GPU_RULE
    if not fits:
        raise EngineStampError(
            f"{engine} was built for a GPU of compute capability {wanted} ({meta.get('gpu')}), this one is "
            f"{have} ({gpu.get('name')}); {rule}: {rebuild}"
        )


# --- writing -----------------------------------------------------------------------------------------------


def record_stamp(engine: str | Path, meta: dict) -> None:
    """Add or replace `engine`'s entry in the engine.json beside it, keeping the other engines' entries."""
    engine = Path(engine)
    path = engine.parent / STAMP
    try:
        engines = read_stamps(engine.parent)
    except EngineStampError:
        engines = {}  # an unreadable stamp describes nothing: replace it
    engines[engine.name] = {**meta, "engine": engine.name}
    doc = {"schema_version": SCHEMA_VERSION, "engines": engines}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for arg in argv[1:]:
        name, _, value = arg.partition("=")
        flags[name] = value
    return flags


def _shape(spec: str) -> tuple[str, list[int]]:
    """'images:8x3x224x224' (or "'in:0':8x3") -> (name, dims); the first input of a list."""
    name, _, dims = spec.split(",")[0].rpartition(":")
    return name.strip("'\"\\"), [int(d) for d in dims.split("x")]


def _version_from_number(number: int) -> str:
    """NV_TENSORRT_VERSION back to major.minor.patch: 100300 -> 10.3.0 (>= 10), 8502 -> 8.5.2."""
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"


def parse_trtexec_log(text: str) -> dict:
    """What trtexec's log says about its last run: argv, TensorRT version, GPU, whether it passed."""
    runs = text.split("&&&& RUNNING TensorRT.trtexec")
    if len(runs) < 2:
        raise ValueError("it has no '&&&& RUNNING TensorRT.trtexec' line: keep trtexec's whole output")
    run = runs[-1]
    header = re.match(r"\s*\[TensorRT v(\d+)\][^#\n]*#\s*(.*)", run)
    if not header:
        raise ValueError("its '&&&& RUNNING' line has no '[TensorRT vNNNN] # command'")

    def find(pattern: str) -> str | None:
        match = re.search(pattern, run)
        return match[1].strip() if match else None

    try:
        argv = shlex.split(header[2])
    except ValueError:
        argv = header[2].split()
    return {
        "argv": argv,
        "version": find(r"TensorRT version: (\d+\.\d+\.\d+)") or _version_from_number(int(header[1])),
        "gpu": find(r"Selected Device: ([^\n]+)"),
        "compute_capability": find(r"Compute Capability: (\d+\.\d+)"),
        "passed": "&&&& PASSED TensorRT.trtexec" in run,
    }


def _precision(flags: dict[str, str], onnx: str) -> str:
    if "--best" in flags:
        return "best"
    if "--int8" in flags:
        return "int8"
    if "--fp16" in flags:
        return "fp16"
    if "--stronglyTyped" in flags:  # the ONNX tensor types are the precision (sladkit's file names say which)
        return next((p for p in ("int8", "fp16", "fp8") if p in Path(onnx).name), "fp32")
    return "fp32"


def stamp_from_trtexec_log(engine: str | Path, log: str | Path) -> dict:
    """Stamp an engine built by trtexec from trtexec's log, and record it in the engine.json beside it.

    Args:
        engine: The engine file (trtexec's `--saveEngine`).
        log: trtexec's output of that build (stdout and stderr, e.g. `trtexec ... 2>&1 | tee LOG`).

    Returns:
        The recorded stamp.

    Raises:
        EngineStampError: the engine or log is missing, the log is of another engine or of a failed build,
            or it does not say which TensorRT built the engine.
    """
    engine, log = Path(engine), Path(log)
    if not engine.is_file():
        raise EngineStampError(
            f"engine {engine} does not exist; build it first (the bundle's build_engine.sh)"
        )
    try:
        info = parse_trtexec_log(log.read_text(errors="replace"))
    except OSError as e:
        raise EngineStampError(
            f"cannot read trtexec's log {log} ({e.strerror}); pass the build's output"
        ) from None
    except ValueError as e:
        raise EngineStampError(f"{log} is not a trtexec log: {e}") from None
    flags = _flags(info["argv"])
    saved = flags.get("--saveEngine")
    if not saved or Path(saved).name != engine.name:
        raise EngineStampError(
            f"{log} is trtexec's log of {saved or 'a run without --saveEngine'}, not of {engine.name}; "
            "pass the log of the build that wrote this engine"
        )
    if not info["passed"]:
        raise EngineStampError(
            f"{log} shows no '&&&& PASSED TensorRT.trtexec': the build of {engine.name} failed or was cut short; "
            "rebuild it"
        )
    if not info["gpu"] or not info["compute_capability"]:
        raise EngineStampError(
            f"{log} does not name the GPU ('Selected Device', 'Compute Capability'): keep trtexec's whole output"
        )
    onnx = flags.get("--onnx", "")
    onnx_path = next((p for p in (engine.parent / onnx, Path(onnx)) if onnx and p.is_file()), None)
    shapes = {k: _shape(flags[f"--{k}Shapes"]) for k in ("min", "opt", "max") if flags.get(f"--{k}Shapes")}
    name, dims = shapes.get("opt", (None, []))
    level = flags.get("--hardwareCompatibilityLevel", "none")
    workspace = re.search(r"workspace:(\d+)", flags.get("--memPoolSize", "")) or re.match(
        r"(\d+)$", flags.get("--workspace", "")
    )
    meta = {
        "engine": engine.name,
        "sha256": sha256_file(engine),
        "bytes": engine.stat().st_size,
        "tensorrt_version": info["version"],
        "gpu": info["gpu"],
        "compute_capability": info["compute_capability"],
        "gpu_source": "trtexec log",
        "built_by": "trtexec",
        "precision": _precision(flags, onnx),
        "strongly_typed": "--stronglyTyped" in flags,
        "version_compatible": "--versionCompatible" in flags or "--vc" in flags,
        "hardware_compatibility": level.lower(),
        "onnx": {"file": onnx, "sha256": sha256_file(onnx_path) if onnx_path else None} if onnx else None,
        "calibration_cache": flags.get("--calib") or None,
        "input": {
            "name": name,
            "shape": dims[1:],
            "batch": {k: d[0] for k, (_, d) in shapes.items()} if len(shapes) == 3 else None,
        }
        if shapes
        else None,
        "dla_core": int(flags["--useDLACore"]) if flags.get("--useDLACore", "").isdigit() else None,
        "workspace_mb": int(workspace[1]) if workspace else None,
        "log": log.name if log.parent.resolve() == engine.parent.resolve() else str(log),
        "trtexec_command": shlex.join(info["argv"]),
        "stamped_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record_stamp(engine, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    """`python3 -m sladkit.engine_stamp ENGINE --log LOG`: one line on success or error."""
    parser = argparse.ArgumentParser(
        prog="python3 -m sladkit.engine_stamp",
        description="Stamp a TensorRT engine built by trtexec (TensorRT version, GPU, SHA-256, shapes) "
        "into the engine.json beside it, from trtexec's log, so that sladkit can load it.",
    )
    parser.add_argument("engine", help="the engine file trtexec wrote (--saveEngine)")
    parser.add_argument(
        "--log", required=True, help="trtexec's output of that build (trtexec ... 2>&1 | tee LOG)"
    )
    args = parser.parse_args(argv)
    try:
        meta = stamp_from_trtexec_log(args.engine, args.log)
    except EngineStampError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"stamped {args.engine} in {STAMP}: TensorRT {meta['tensorrt_version']}, {meta['gpu']} (compute "
        f"capability {meta['compute_capability']}), {meta['precision']}, sha256 {meta['sha256'][:12]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

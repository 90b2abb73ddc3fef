"""TensorRT INT8 calibration cache (the text file `IInt8Calibrator` writes and `trtexec --calib=FILE` reads).

Format (`docs/deploy-facts.md`, checked against caches TensorRT itself wrote and published in public
repositories and NVIDIA/TensorRT issues, e.g. `TRT-8203-EntropyCalibration2` in NVIDIA/TensorRT#2036,
`TRT-8401-EntropyCalibration2`, `TRT-100300-EntropyCalibration2` from JetPack 6 devices)::

    TRT-<version number>-EntropyCalibration2
    <tensor name>: <scale as a big-endian IEEE-754 float32, in hex>

with scale = amax / 127 (symmetric INT8). Implicit INT8 is what DLA needs on TensorRT <= 10; TensorRT
deprecated it in 10.1 and removed it in 11.

The version number is TensorRT's `NV_TENSORRT_VERSION`:

- TensorRT 8.x (`NvInferRuntimeBase.h`, NVIDIA/TensorRT on GitHub):
  `kNV_TENSORRT_VERSION_IMPL = (NV_TENSORRT_MAJOR * 1000) + (NV_TENSORRT_MINOR * 100) + NV_TENSORRT_PATCH`,
  so 8.5.2 -> 8502, 8.2.1 -> 8201;
- TensorRT >= 10 (`NvInferRuntimeBase.h`):
  `NV_TENSORRT_VERSION_INT(major, minor, patch) ((major) *10000L + (minor) *100L + (patch) *1L)`,
  so 10.3.0 -> 100300 (the header JetPack 6 caches carry: `TRT-100300-EntropyCalibration2`).
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

from sladkit._atomic import atomic_write_text
from sladkit.errors import SladkitError

#: Scale written for a tensor whose amax is 0 (an all-zero tensor, e.g. a constant padding output).
#: TensorRT divides by the scale, so 0 is avoided; 2**-14 is the smallest normal float16, so the scale
#: survives FP16 arithmetic (GPU or DLA). Any positive scale quantizes an all-zero tensor exactly.
ZERO_AMAX_SCALE = 2.0**-14

_HEADER_RE = re.compile(r"^TRT-(\d+)-([A-Za-z][A-Za-z0-9]*)$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{1,8}$")
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*$")


class CalibrationCacheError(SladkitError):
    """A calibration cache is malformed, or cannot be written from the given ranges."""


def trt_version_number(version: str) -> int:
    """Encode a TensorRT version the way `NV_TENSORRT_VERSION` (and the cache header) does.

    Args:
        version: "major.minor[.patch[.build]]", e.g. "8.5.2", "10.3.0" or "10.3.0.30"; the build is ignored.

    Returns:
        major*1000 + minor*100 + patch before TensorRT 10 (8.5.2 -> 8502),
        major*10000 + minor*100 + patch from TensorRT 10 on (10.3.0 -> 100300).

    Raises:
        CalibrationCacheError: the version is not of that form or does not fit the encoding.
    """
    match = _VERSION_RE.match(version.strip())
    if not match:
        raise CalibrationCacheError(
            f"TensorRT version {version!r} is not of the form major.minor.patch (e.g. 10.3.0); pass the "
            "version of the TensorRT that will read the cache"
        )
    major, minor, patch = int(match[1]), int(match[2]), int(match[3] or 0)
    if major < 10:
        if minor > 9 or patch > 99:
            raise CalibrationCacheError(
                f"TensorRT version {version!r} does not fit major*1000+minor*100+patch"
            )
        return major * 1000 + minor * 100 + patch
    if minor > 99 or patch > 99:
        raise CalibrationCacheError(f"TensorRT version {version!r} does not fit major*10000+minor*100+patch")
    return major * 10000 + minor * 100 + patch


def _scale_hex(name: str, amax: float) -> str:
    try:
        value = float(amax)
    except (TypeError, ValueError):
        raise CalibrationCacheError(f"amax of tensor {name!r} is {amax!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise CalibrationCacheError(
            f"amax of tensor {name!r} is {value}; it must be finite and >= 0 (re-run calibration, or drop "
            "the tensor so TensorRT keeps it in higher precision)"
        )
    scale = value / 127.0 if value > 0 else ZERO_AMAX_SCALE
    try:
        packed = struct.pack(">f", scale)
    except OverflowError:
        raise CalibrationCacheError(f"amax of tensor {name!r} ({value}) overflows float32") from None
    if struct.unpack(">f", packed)[0] == 0.0:  # a positive amax below float32 range would become scale 0
        packed = struct.pack(">f", ZERO_AMAX_SCALE)
    return packed.hex()


def write_calibration_cache(
    path: str | Path,
    amax: dict[str, float],
    *,
    tensorrt_version: str,
    algorithm: str = "EntropyCalibration2",
) -> None:
    """Write a TensorRT calibration cache, atomically.

    Args:
        path: Where to write (conventionally `calib.cache` in the bundle).
        amax: Per-tensor absolute maximum of the activations, keyed by TensorRT tensor name (the ONNX
            tensor names, which TensorRT's ONNX parser keeps). Lines are written in this dict's order
            (callers pass graph order), so the same ranges always give the same bytes.
        tensorrt_version: Version of the TensorRT that will read the cache ("10.3.0" for JetPack 6);
            TensorRT matches the header against its own version.
        algorithm: Calibrator name in the header; "EntropyCalibration2" matches `IInt8EntropyCalibrator2`,
            the calibrator DLA requires.

    Raises:
        CalibrationCacheError: an amax is negative, NaN or infinite, a tensor name is empty or holds a line
            break, the version or algorithm is malformed. An amax of 0 is written as `ZERO_AMAX_SCALE`.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", algorithm):
        raise CalibrationCacheError(
            f"calibration algorithm {algorithm!r} is not a name like EntropyCalibration2"
        )
    lines = [f"TRT-{trt_version_number(tensorrt_version)}-{algorithm}"]
    for name, value in amax.items():
        if not isinstance(name, str) or not name or any(c in name for c in "\r\n"):
            raise CalibrationCacheError(f"tensor name {name!r} cannot be written to a calibration cache")
        lines.append(f"{name}: {_scale_hex(name, value)}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def parse_cache_header(header: str) -> tuple[int, str]:
    """Split a cache header into its version number and algorithm.

    Args:
        header: The first line of a cache, e.g. "TRT-100300-EntropyCalibration2".

    Returns:
        (100300, "EntropyCalibration2") for that example.

    Raises:
        CalibrationCacheError: the line is not TRT-<version>-<algorithm>.
    """
    match = _HEADER_RE.match(header.strip())
    if not match:
        raise CalibrationCacheError(
            f"calibration cache header {header[:60]!r} is not TRT-<version>-<algorithm>"
        )
    return int(match[1]), match[2]


def read_calibration_cache(path: str | Path) -> tuple[str, dict[str, float]]:
    """Read a TensorRT calibration cache.

    Args:
        path: The cache file.

    Returns:
        The header line (e.g. "TRT-100300-EntropyCalibration2") and the per-tensor scales (amax / 127)
        as Python floats, in file order.

    Raises:
        CalibrationCacheError: the file is missing, not text, or not in TensorRT's cache format.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CalibrationCacheError(
            f"calibration cache {path} does not exist; re-run sladkit export"
        ) from None
    except (UnicodeDecodeError, OSError) as e:
        raise CalibrationCacheError(f"calibration cache {path} is not a readable text file ({e})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CalibrationCacheError(f"calibration cache {path} is empty; re-run sladkit export")
    header = lines[0].strip()
    if not _HEADER_RE.match(header):
        raise CalibrationCacheError(
            f"calibration cache {path} starts with {header[:60]!r}, not TRT-<version>-<algorithm>; "
            "re-run sladkit export"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rstrip("\r").rpartition(": ")
        value = value.strip()
        if not sep or not name or not _HEX_RE.match(value):
            raise CalibrationCacheError(
                f"calibration cache {path} line {number} is {line[:60]!r}, not '<tensor>: <hex float32>'"
            )
        if name in scales:
            raise CalibrationCacheError(f"calibration cache {path} line {number} repeats tensor {name!r}")
        scales[name] = struct.unpack(">f", bytes.fromhex(value.zfill(8)))[0]
    return header, scales

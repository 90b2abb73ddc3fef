"""The C++ library's integrity checks against Python's: SHA-256 (cpp/src/sha256.cpp vs hashlib) and engine.json
(cpp/src/engine_stamp.cpp vs `sladkit.engine_stamp`), through `sladkit-test-driver` (cpp/tests/driver.cpp).

The TensorRT backend is not compiled here (no TensorRT, no CUDA); what it runs before deserializing an engine,
`check_engine` and `check_engine_fits`, is pure C++ and is tested here on the same tables as Python.
The bundle's manifest SHA-256s are tested through `sladkit-infer` in test_cpp.py (test_errors_are_one_clear_line).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sladkit.engine_stamp import (
    AMPERE_PLUS_RULE,
    COMPATIBLE_RULE,
    EXACT_RULE,
    SAME_GPU_RULE,
    EngineStampError,
    _version_from_number,
    check_fits,
    read_stamp,
    record_stamp,
)

ENGINE = "model.fp16.engine"


def driver(exe: Path, *args, code: int = 0) -> str:
    """Run sladkit-test-driver; returns stdout, or the one stderr line when `code` is 1."""
    result = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    if code:
        assert result.stdout == "" and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        return result.stderr
    return result.stdout


# --- SHA-256 -----------------------------------------------------------------------------------------------

VECTORS = [  # FIPS 180-2, appendix B (and the empty message)
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def test_sha256_known_vectors(driver_exe, tmp_path):
    files = []
    for i, (data, _) in enumerate(VECTORS):
        files.append(tmp_path / f"vector{i}")
        files[-1].write_bytes(data)
    assert driver(driver_exe, "sha256", *files).split() == [digest for _, digest in VECTORS]


def test_sha256_matches_hashlib(driver_exe, bundles, tmp_path):
    """Lengths around the 64-byte block and the 56-byte padding limit, one over the 1 MiB read chunk, and the
    real files of a bundle (whose manifest holds hashlib's digests)."""
    rng = np.random.default_rng(0)
    files = []
    for size in (1, 55, 56, 57, 63, 64, 65, 119, 120, 128, (1 << 20) + 13):
        files.append(tmp_path / f"random{size}")
        files[-1].write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    bundle = bundles[("seg", False)]
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = [a for a in manifest["artifacts"] if (bundle / a["file"]).is_file()]
    files += [bundle / a["file"] for a in listed]
    digests = driver(driver_exe, "sha256", *files).split()
    assert digests == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert digests[-len(listed) :] == [a["sha256"] for a in listed]
    assert any(f.name == "model.onnx" for f in files)


# --- engine.json -------------------------------------------------------------------------------------------


def write_engine(folder: Path, data: bytes = b"serialized engine", name: str = ENGINE, **fields) -> Path:
    """A stand-in engine file and its stamp, recorded by Python's own writer (sladkit.engine_stamp)."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / name
    engine.write_bytes(data)
    meta = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "tensorrt_version": "10.3.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "precision": "fp16",
        "version_compatible": False,
        "hardware_compatibility": "none",
        "onnx": {"file": "model.onnx", "sha256": "0" * 64},
        "input": {"name": "images", "shape": [3, 32, 32], "batch": {"min": 1, "opt": 1, "max": 4}},
        **fields,
    }
    record_stamp(engine, meta)
    return engine


def test_stamp_reads_as_in_python(driver_exe, tmp_path):
    engine = write_engine(tmp_path, hardware_compatibility="Ampere+", version_compatible=True, gpu=None)
    parsed = json.loads(driver(driver_exe, "stamp", engine))
    meta = read_stamp(engine)
    assert parsed == {
        "engine": ENGINE,
        "sha256": meta["sha256"],
        "tensorrt_version": "10.3.0",
        "precision": "fp16",
        "gpu": "",
        "compute_capability": "8.7",
        "version_compatible": True,
        "hardware_compatibility": "ampere+",  # compared lower-case, as check_fits does
        "onnx_file": "model.onnx",
        "onnx_sha256": "0" * 64,
    }


def _edit_stamp(engine: Path, edit) -> None:
    path = engine.parent / "engine.json"
    doc = json.loads(path.read_text())
    result = edit(doc)
    path.write_text(result if isinstance(result, str) else json.dumps(doc if result is None else result))


def _field(name, value):
    def edit(doc):
        doc["engines"][ENGINE][name] = value

    return edit


STAMP_CASES = [  # (id, change, fragment both messages hold)
    ("no-stamp", lambda engine: (engine.parent / "engine.json").unlink(), "has no engine.json beside it"),
    ("not-json", lambda e: _edit_stamp(e, lambda doc: "{not json"), "is not valid JSON"),
    ("a-list", lambda e: _edit_stamp(e, lambda doc: [doc]), "is not an engine stamp"),
    ("no-engines", lambda e: _edit_stamp(e, lambda doc: {"schema_version": 1}), "is not an engine stamp"),
    ("schema-2", lambda e: _edit_stamp(e, lambda doc: {**doc, "schema_version": 2}), "has schema version 2"),
    (
        "other-engine",
        lambda e: _edit_stamp(e, lambda doc: {**doc, "engines": {"other.engine": doc["engines"][ENGINE]}}),
        f"does not describe {ENGINE} (it describes other.engine)",
    ),
    ("entry-list", lambda e: _edit_stamp(e, _field_entry([])), f"{ENGINE}'s entry is"),
    ("sha-short", lambda e: _edit_stamp(e, _field("sha256", "abc")), f"{ENGINE}'s sha256 is"),
    ("sha-upper", lambda e: _edit_stamp(e, _field("sha256", "A" * 64)), f"{ENGINE}'s sha256 is"),
    (
        "version-2-parts",
        lambda e: _edit_stamp(e, _field("tensorrt_version", "10.3")),
        "'s tensorrt_version is",
    ),
    ("version-number", lambda e: _edit_stamp(e, _field("tensorrt_version", 10)), "'s tensorrt_version is"),
    ("no-version", lambda e: _edit_stamp(e, _field("tensorrt_version", None)), "'s tensorrt_version is"),
    ("precision-empty", lambda e: _edit_stamp(e, _field("precision", "")), "'s precision is"),
    (
        "capability-sm",
        lambda e: _edit_stamp(e, _field("compute_capability", "sm_87")),
        "'s compute_capability is",
    ),
    (
        "compatible-text",
        lambda e: _edit_stamp(e, _field("version_compatible", "yes")),
        "'s version_compatible is",
    ),
    (
        "compatible-null",
        lambda e: _edit_stamp(e, _field("version_compatible", None)),
        "'s version_compatible is",
    ),
    ("input-text", lambda e: _edit_stamp(e, _field("input", "images")), "'s input is"),
    (
        "batch-zero",
        lambda e: _edit_stamp(e, _field("input", {"batch": {"min": 0, "opt": 1, "max": 1}})),
        "'s input.batch is",
    ),
    ("batch-partial", lambda e: _edit_stamp(e, _field("input", {"batch": {"max": 4}})), "'s input.batch is"),
    ("other-bytes", lambda engine: engine.write_bytes(b"another engine"), "does not match the SHA-256 in"),
]


def _field_entry(value):
    def edit(doc):
        doc["engines"][ENGINE] = value

    return edit


@pytest.mark.parametrize(
    ("change", "fragment"), [c[1:] for c in STAMP_CASES], ids=[c[0] for c in STAMP_CASES]
)
def test_bad_stamps_are_refused_as_in_python(driver_exe, tmp_path, change, fragment):
    engine = write_engine(tmp_path)
    change(engine)
    with pytest.raises(EngineStampError) as python:
        read_stamp(engine)
    message = driver(driver_exe, "stamp", engine, code=1)
    assert fragment in str(python.value) and fragment in message, (str(python.value), message)
    if "restamp" in str(python.value) or "stamp it" in str(python.value):
        assert "python3 -m sladkit.engine_stamp" in message  # says how to fix it


def test_stamp_fields_absent_are_allowed_as_in_python(driver_exe, tmp_path):
    engine = write_engine(tmp_path)

    def edit(doc):
        del doc["engines"][ENGINE]["version_compatible"]
        doc["engines"][ENGINE]["compute_capability"] = None

    _edit_stamp(engine, edit)
    read_stamp(engine)
    parsed = json.loads(driver(driver_exe, "stamp", engine))
    assert parsed["version_compatible"] is False and parsed["compute_capability"] == ""


def test_engine_built_from_another_onnx_is_refused(driver_exe, bundles, copy_bundle):
    bundle = copy_bundle(bundles[("cls", False)])
    onnx_sha = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    engine = write_engine(bundle, onnx={"file": "model.onnx", "sha256": "1" * 64})
    message = driver(driver_exe, "engine", bundle, engine, code=1)
    assert (
        f"{ENGINE} was built from another model.onnx than this bundle's (SHA-256 111111111111 in " in message
    )
    assert f"{onnx_sha[:12]} in manifest.json); rebuild it with the bundle's build_engine.sh" in message
    write_engine(bundle, onnx={"file": "model.onnx", "sha256": onnx_sha})
    assert json.loads(driver(driver_exe, "engine", bundle, engine))["onnx_sha256"] == onnx_sha
    write_engine(bundle, onnx=None)  # a stamp that does not name its source: nothing to compare
    driver(driver_exe, "engine", bundle, engine)
    engine.write_bytes(b"tampered")
    assert "does not match the SHA-256 in" in driver(driver_exe, "engine", bundle, engine, code=1)


# --- NVIDIA's rules: the same table through Python's check_fits and C++'s check_engine_fits -----------------

FITS = [  # (stamp fields, TensorRT here, compute capability here ("" = unknown), rule when refused or None)
    ({"tensorrt_version": "10.3.0"}, "10.3.0", "8.7", None),
    ({"tensorrt_version": "10.3.0"}, "10.3.1", "8.7", EXACT_RULE),
    ({"tensorrt_version": "10.3.1"}, "10.3.0", "8.7", EXACT_RULE),
    ({"tensorrt_version": "10.3.0.30"}, "10.3.0", "8.7", None),  # getInferLibVersion has no build number
    ({"tensorrt_version": "10.3.0.30"}, "10.3.0.26", "8.7", EXACT_RULE),  # Python's tensorrt.__version__
    ({"tensorrt_version": "8.5.2"}, "10.3.0", "8.7", EXACT_RULE),
    ({"tensorrt_version": "8.6.1", "version_compatible": True}, "8.6.1", "8.7", None),
    ({"tensorrt_version": "8.6.1", "version_compatible": True}, "8.6.3", "8.7", None),
    ({"tensorrt_version": "8.6.1", "version_compatible": True}, "10.3.0", "8.7", None),  # 8 -> 10
    ({"tensorrt_version": "8.6.1", "version_compatible": True}, "9.2.0", "8.7", None),  # 8 -> 9
    (
        {"tensorrt_version": "8.5.2", "version_compatible": True},
        "8.6.1",
        "8.7",
        COMPATIBLE_RULE,
    ),  # before 8.6
    ({"tensorrt_version": "10.3.0", "version_compatible": True}, "10.2.0", "8.7", COMPATIBLE_RULE),  # older
    ({"tensorrt_version": "10.3.0", "version_compatible": True}, "11.4.0", "8.7", None),  # 10 -> 11
    ({"tensorrt_version": "9.2.0", "version_compatible": True}, "10.3.0", "8.7", COMPATIBLE_RULE),
    ({"tensorrt_version": "10.3.0", "version_compatible": True}, "12.0.0", "8.7", COMPATIBLE_RULE),
    ({"compute_capability": "8.7"}, "10.3.0", "8.6", SAME_GPU_RULE),
    ({"compute_capability": "8.7"}, "10.3.0", "", None),  # this GPU unknown: not checked
    ({"compute_capability": None}, "10.3.0", "7.2", None),  # not stamped: not checked
    ({"compute_capability": "8.6", "hardware_compatibility": "ampere+"}, "10.3.0", "8.9", None),
    ({"compute_capability": "8.6", "hardware_compatibility": "Ampere+"}, "10.3.0", "9.0", None),
    ({"compute_capability": "8.6", "hardware_compatibility": "ampere+"}, "10.3.0", "7.5", AMPERE_PLUS_RULE),
    (
        {"compute_capability": "8.6", "hardware_compatibility": "same-compute-capability"},
        "10.3.0",
        "8.9",
        SAME_GPU_RULE,
    ),  # fmt: skip
]


@pytest.mark.parametrize(("fields", "version", "capability", "rule"), FITS)
def test_compatibility_rules_match_python(driver_exe, tmp_path, fields, version, capability, rule):
    engine = write_engine(tmp_path, **fields)
    meta = read_stamp(engine)
    gpu = {"name": "this GPU", "compute_capability": capability or None}
    if rule is None:
        check_fits(ENGINE, meta, version, gpu)
        assert driver(driver_exe, "fits", engine, version, capability) == "ok\n"
        return
    with pytest.raises(EngineStampError, match="NVIDIA's rule") as python:
        check_fits(ENGINE, meta, version, gpu)
    message = driver(driver_exe, "fits", engine, version, capability, code=1)
    assert rule in str(python.value) and rule in message
    assert message.endswith(": rebuild it here with the bundle's build_engine.sh\n")
    if rule in (EXACT_RULE, COMPATIBLE_RULE):
        assert f"built with TensorRT {meta['tensorrt_version']}, this machine has {version};" in message
    else:
        assert f"compute capability {meta['compute_capability']} (Orin), this one is {capability}" in message


@pytest.mark.parametrize("number", [8201, 8502, 8601, 8603, 9200, 100000, 100300, 100801, 101300, 110400])
def test_tensorrt_version_numbers_decode_as_in_python(driver_exe, number):
    """getInferLibVersion()'s number (NV_TENSORRT_VERSION) read as sladkit/engine_stamp.py reads trtexec's."""
    assert driver(driver_exe, "tensorrt-version", number).strip() == _version_from_number(number)

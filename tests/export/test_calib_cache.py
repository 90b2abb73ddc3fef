"""TensorRT calibration cache: version encoding, known lines, round trips, malformed input."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from sladkit.errors import SladkitError
from sladkit.export.calib_cache import (
    ZERO_AMAX_SCALE,
    CalibrationCacheError,
    parse_cache_header,
    read_calibration_cache,
    trt_version_number,
    write_calibration_cache,
)
from sladkit.export.targets import get_target


@pytest.mark.parametrize(
    "version, number",
    [
        ("8.2.1", 8201),  # JetPack 4.6
        ("8.4.1", 8401),  # a TensorRT-written cache starts TRT-8401-EntropyCalibration2
        ("8.5.2", 8502),  # JetPack 5.1
        ("8.5.2.2", 8502),  # the build number is ignored
        ("8.6.1.6", 8601),
        ("7.1.3", 7103),
        ("10.3.0", 100300),  # JetPack 6: TRT-100300-EntropyCalibration2
        ("10.3.0.30", 100300),
        ("10.16.1", 101601),
        ("10.3", 100300),
    ],
)
def test_version_number(version, number):
    assert trt_version_number(version) == number


@pytest.mark.parametrize("version", ["", "ten", "10", "8.10.0", "8.5.100", "10.3.0.x", "v10.3.0"])
def test_version_number_rejects_malformed(version):
    with pytest.raises(CalibrationCacheError):
        trt_version_number(version)


@pytest.mark.parametrize(
    "target, header",
    [
        ("jetson-orin", "TRT-100300-EntropyCalibration2"),
        ("jetson-xavier", "TRT-8502-EntropyCalibration2"),
        ("jetson-nano", "TRT-8201-EntropyCalibration2"),
    ],
)
def test_header_per_target(tmp_path, target, header):
    path = tmp_path / "calib.cache"
    write_calibration_cache(path, {"input": 1.0}, tensorrt_version=get_target(target).tensorrt)
    assert path.read_text().splitlines()[0] == header
    assert read_calibration_cache(path)[0] == header
    assert parse_cache_header(header) == (
        trt_version_number(get_target(target).tensorrt),
        "EntropyCalibration2",
    )


def test_known_lines(tmp_path):
    path = tmp_path / "calib.cache"
    write_calibration_cache(path, {"input": 127.0, "out": 254.0, "x": 0.5 * 127}, tensorrt_version="8.5.2")
    # scale 1.0 = 0x3f800000, 2.0 = 0x40000000, 0.5 = 0x3f000000 (IEEE-754 binary32, big-endian)
    assert path.read_text() == ("TRT-8502-EntropyCalibration2\ninput: 3f800000\nout: 40000000\nx: 3f000000\n")


def test_round_trip_within_float32(tmp_path):
    rng = np.random.default_rng(0)
    amax = {f"/blocks.{i}/attn/MatMul_output_0": float(v) for i, v in enumerate(rng.uniform(1e-4, 50, 64))}
    amax["input:0"] = 2.6400000953674316  # names may contain ':' (TensorRT splits at the last ': ')
    path = tmp_path / "calib.cache"
    write_calibration_cache(path, amax, tensorrt_version="10.3.0")
    header, scales = read_calibration_cache(path)
    assert header == "TRT-100300-EntropyCalibration2"
    assert list(scales) == list(amax)  # order kept
    for name, value in amax.items():
        assert scales[name] == float(np.float32(value / 127.0))
        assert math.isclose(scales[name] * 127, value, rel_tol=1e-6)


def test_same_ranges_same_bytes(tmp_path):
    amax = {"b": 1.0, "a": 2.0}
    write_calibration_cache(tmp_path / "1", amax, tensorrt_version="10.3.0")
    write_calibration_cache(tmp_path / "2", dict(amax), tensorrt_version="10.3.0")
    assert (tmp_path / "1").read_bytes() == (tmp_path / "2").read_bytes()


def test_zero_amax_gets_a_tiny_positive_scale(tmp_path):
    path = tmp_path / "calib.cache"
    write_calibration_cache(path, {"zeros": 0.0, "tiny": 1e-45}, tensorrt_version="10.3.0")
    assert "zeros: 38800000" in path.read_text()  # 2**-14, the smallest normal float16
    scales = read_calibration_cache(path)[1]
    assert scales["zeros"] == ZERO_AMAX_SCALE > 0
    assert scales["tiny"] > 0  # an amax that underflows float32 is not written as scale 0 either


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), -float("inf"), "x", None, 1e42])
def test_refuses_bad_amax(tmp_path, bad):
    path = tmp_path / "calib.cache"
    with pytest.raises(CalibrationCacheError, match="amax"):
        write_calibration_cache(path, {"ok": 1.0, "bad": bad}, tensorrt_version="10.3.0")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("name", ["", "a\nb", "a\rb"])
def test_refuses_bad_names(tmp_path, name):
    with pytest.raises(CalibrationCacheError, match="tensor name"):
        write_calibration_cache(tmp_path / "c", {name: 1.0}, tensorrt_version="10.3.0")


def test_refuses_bad_version_and_algorithm(tmp_path):
    with pytest.raises(CalibrationCacheError, match="major.minor.patch"):
        write_calibration_cache(tmp_path / "c", {"a": 1.0}, tensorrt_version="latest")
    with pytest.raises(CalibrationCacheError, match="algorithm"):
        write_calibration_cache(tmp_path / "c", {"a": 1.0}, tensorrt_version="10.3.0", algorithm="Entropy-2")
    write_calibration_cache(
        tmp_path / "c", {"a": 1.0}, tensorrt_version="10.3.0", algorithm="MinMaxCalibration"
    )
    assert read_calibration_cache(tmp_path / "c")[0] == "TRT-100300-MinMaxCalibration"


def test_errors_are_sladkit_errors():
    assert issubclass(CalibrationCacheError, SladkitError)


def test_reads_a_cache_as_tensorrt_writes_it(tmp_path):
    # TensorRT prints the bits with std::hex: no zero padding ("0"), lower case, names with spaces and ':'.
    path = tmp_path / "calib.cache"
    path.write_text(
        "TRT-8401-EntropyCalibration2\n"
        "input: 3caa54fc\n"
        "(Unnamed Layer* 64) [Shuffle]_output: 0\n"
        "input_1:0: 3c010a14\n"
        "\n"
    )
    header, scales = read_calibration_cache(path)
    assert header == "TRT-8401-EntropyCalibration2"
    assert scales["input"] == struct.unpack(">f", bytes.fromhex("3caa54fc"))[0]
    assert scales["(Unnamed Layer* 64) [Shuffle]_output"] == 0.0
    assert scales["input_1:0"] == struct.unpack(">f", bytes.fromhex("3c010a14"))[0]


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("TensorRT cache\ninput: 3f800000\n", "TRT-<version>-<algorithm>"),
        ("TRT-8502-EntropyCalibration2\ninput 3f800000\n", "line 2"),
        ("TRT-8502-EntropyCalibration2\ninput: 3f80000g\n", "line 2"),
        ("TRT-8502-EntropyCalibration2\ninput: 3f8000000\n", "line 2"),
        ("TRT-8502-EntropyCalibration2\n: 3f800000\n", "line 2"),
        ("TRT-8502-EntropyCalibration2\na: 3f800000\n\nb: 3f800000\n", "line 3"),
        ("TRT-8502-EntropyCalibration2\na: 3f800000\na: 40000000\n", "repeats"),
    ],
)
def test_read_refuses_malformed(tmp_path, content, match):
    path = tmp_path / "calib.cache"
    path.write_text(content)
    with pytest.raises(CalibrationCacheError, match=match):
        read_calibration_cache(path)


def test_read_refuses_missing_and_binary(tmp_path):
    with pytest.raises(CalibrationCacheError, match="does not exist"):
        read_calibration_cache(tmp_path / "nope.cache")
    (tmp_path / "bin.cache").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(CalibrationCacheError, match="not a readable text file"):
        read_calibration_cache(tmp_path / "bin.cache")


def test_parse_header_refuses_malformed():
    with pytest.raises(CalibrationCacheError):
        parse_cache_header("TRT-abc-EntropyCalibration2")

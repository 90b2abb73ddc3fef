"""Shared fixtures: tiny models (patch 8, 32 px) and small synthetic data keep the suite fast."""

from __future__ import annotations

import struct
import zlib

import pytest

# Random-init ViTs use LayerScale 1e-5 in DINOv2 configs; init_values=1.0 makes outputs input-dependent.
TINY_KWARGS = {"depth": 2, "init_values": 1.0}


@pytest.fixture
def tiny_config(tmp_path):
    """A TrainConfig for a run of a few seconds on the CPU."""
    from sladkit.config import TrainConfig

    def make(**changes):
        values = dict(
            pretrained=False,
            teacher_kwargs=TINY_KWARGS,
            student_kwargs=TINY_KWARGS,
            synthetic_train=96,
            synthetic_val=48,
            epochs=2,
            batch_size=32,
            rank=4,
            out=str(tmp_path / "run"),
            progress=False,
        )
        values.update(changes)
        return TrainConfig(**values)

    return make


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A tiny trained classification run, shared by the export and runtime tests."""
    from sladkit.config import TrainConfig
    from sladkit.train import run

    out = tmp_path_factory.mktemp("shared") / "run"
    run(
        TrainConfig(
            out=str(out),
            pretrained=False,
            teacher_kwargs=TINY_KWARGS,
            student_kwargs=TINY_KWARGS,
            synthetic_train=128,
            synthetic_val=64,
            epochs=2,
            batch_size=32,
            rank=4,
            targets="qkv,fc1",
            progress=False,
        )
    )
    return out


@pytest.fixture(scope="session")
def cpu_bundle(run_dir, tmp_path_factory):
    """The shared run exported for the CPU target (FP32 + CPU INT8)."""
    from sladkit.config import ExportConfig
    from sladkit.export import run

    out = tmp_path_factory.mktemp("bundles") / "cpu"
    run(ExportConfig(run_dir=str(run_dir), target="cpu", out=str(out), eval_images=32))
    return out


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread during a test: tiny models gain nothing from more, and on a busy machine
    OpenMP threads waiting for each other make a training run ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def png_bytes():
    """`png_bytes(width, height, depth, colour, raw)`: a PNG file written by hand (IHDR with colour 0 grey,
    2 RGB, 4 grey + alpha, 6 RGBA; one IDAT of the zlib-compressed `raw` rows; IEND), for what Pillow does
    not write: 16-bit colour, or a header declaring more pixels than the file holds."""

    def encode(width: int, height: int, depth: int, colour: int, raw: bytes) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )

    return encode

"""Fixtures for the C++ library tests: a Release build of cpp/ against the onnxruntime wheel's library, and
real bundles (cls and seg, float and baked-preprocessing) made by sladkit's Python API on tiny models.

A missing build dependency fails these tests (it never skips them): run `bash cpp/install_deps.sh` first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CPP_DIR = Path(__file__).resolve().parents[2] / "cpp"
INSTALL_HINT = "run `bash cpp/install_deps.sh` (as root: apt packages and ONNX Runtime's headers)"
TINY_KWARGS = {"depth": 2, "init_values": 1.0}  # input-dependent outputs (see tests/conftest.py)


def run_logged(argv: list[str], what: str, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run a build step; fail the test with the step's last output lines when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        pytest.fail(f"{what} failed (exit {result.returncode}); {INSTALL_HINT}\n$ {' '.join(argv)}\n{tail}")
    return result


def onnxruntime_capi() -> Path:
    """The onnxruntime wheel's folder holding libonnxruntime.so.1.* (the library the C++ code links)."""
    import onnxruntime

    return Path(onnxruntime.__file__).parent / "capi"


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory) -> Path:
    """cpp/ configured and built (Release, -j2) in a temporary folder; returns the build folder."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the C++ library cannot be built; {INSTALL_HINT}")
    build = tmp_path_factory.mktemp("cpp-build")
    configure = run_logged(
        [
            "cmake",
            "-S",
            str(CPP_DIR),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DONNXRUNTIME_ROOT={onnxruntime_capi()}",
            f"-DCMAKE_INSTALL_PREFIX={build / 'prefix'}",
            "-DSLADKIT_BUILD_TESTS=ON",
        ],
        "cmake configure of cpp/",
        timeout=180,
    )
    if "ONNX Runtime backend:" not in configure.stdout:
        pytest.fail(f"cpp/ configured without its ONNX Runtime backend; {INSTALL_HINT}\n{configure.stdout}")
    run_logged(["cmake", "--build", str(build), "-j", "2"], "cmake build of cpp/")
    return build


@pytest.fixture(scope="session")
def infer_exe(cpp_build) -> Path:
    return cpp_build / "sladkit-infer"


@pytest.fixture(scope="session")
def driver_exe(cpp_build) -> Path:
    """cpp/tests/driver.cpp: the library's SHA-256 and engine.json checks, one command per call."""
    return cpp_build / "sladkit-test-driver"


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """{(task, baked): bundle folder}: float bundles for the cpu target, baked ones for jetson-orin."""
    from sladkit import export, train
    from sladkit.config import ExportConfig, TrainConfig

    root = tmp_path_factory.mktemp("cpp-bundles")
    out: dict[tuple[str, bool], Path] = {}
    for task in ("cls", "seg"):
        run_dir = root / f"run-{task}"
        train.run(
            TrainConfig(
                task=task,
                out=str(run_dir),
                epochs=1,
                synthetic_train=128,
                synthetic_val=64,
                progress=False,
                pretrained=False,
                teacher_kwargs=TINY_KWARGS,
                student_kwargs=TINY_KWARGS,
            )
        )
        for baked, target in ((False, "cpu"), (True, "jetson-orin")):
            bundle = root / f"bundle-{task}-{'baked' if baked else 'float'}"
            export.run(
                ExportConfig(
                    run_dir=str(run_dir),
                    out=str(bundle),
                    target=target,
                    eval_images=64,
                    calib_images=32,
                    bake_preprocess=baked,
                )
            )
            out[(task, baked)] = bundle
    return out


@pytest.fixture
def copy_bundle(tmp_path):
    """Copy a bundle and update its manifest's preprocessing (which lives outside the ONNX graph)."""
    import json

    def make(bundle: Path, **preprocessing) -> Path:
        dest = tmp_path / f"{bundle.name}-{len(os.listdir(tmp_path))}"
        shutil.copytree(bundle, dest)
        manifest = json.loads((dest / "manifest.json").read_text())
        manifest["preprocessing"].update(preprocessing)
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return dest

    return make

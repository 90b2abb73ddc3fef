"""The package's layering: each artifact's schema in one torch-free module; the runtime apart from export."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCHEMAS = ["sladkit.run_folder", "sladkit.bundle", "sladkit.engine_stamp"]
RUNTIME = [
    "sladkit.runtime",
    "sladkit.runtime.artifacts",
    "sladkit.runtime.model",
    "sladkit.runtime.profiler",
    "sladkit.runtime.profile_command",
    "sladkit.runtime.device",
    "sladkit.runtime.backends.onnxruntime",
    "sladkit.runtime.backends.tensorrt",
]


def imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", SCHEMAS)
def test_artifact_schemas_need_neither_torch_nor_numpy(module):
    loaded = imported_by(module)
    assert not {"torch", "numpy", "onnx"} & loaded


@pytest.mark.parametrize("module", RUNTIME)
def test_the_runtime_imports_neither_export_nor_train(module):
    loaded = imported_by(module)
    assert not [m for m in loaded if m.startswith(("sladkit.export", "sladkit.train.", "torch"))]

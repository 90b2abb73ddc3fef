"""Inference backends behind one base class, in a registry: onnxruntime, openvino, tensorrt, torch."""

from __future__ import annotations

from sladkit.errors import ConfigError
from sladkit.runtime.artifacts import Artifact
from sladkit.runtime.backends.base import Backend, BackendError
from sladkit.runtime.backends.onnxruntime import OnnxRuntimeBackend
from sladkit.runtime.backends.openvino import OpenVINOBackend
from sladkit.runtime.backends.tensorrt import TensorRTBackend
from sladkit.runtime.backends.torch import TorchBackend

BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    if cls.name in BACKENDS:
        raise ValueError(f"backend {cls.name!r} is already registered")
    BACKENDS[cls.name] = cls
    return cls


for _cls in (OnnxRuntimeBackend, OpenVINOBackend, TensorRTBackend, TorchBackend):
    register_backend(_cls)


def list_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend: (usable here, why not)."""
    return {name: cls.availability() for name, cls in BACKENDS.items()}


def create_backend(artifact: Artifact, name: str | None = None, *, threads: int | None = None) -> Backend:
    """The named backend for `artifact`, else the one it is made for (`Artifact.runtime`, e.g. a CPU INT8 model in
    its openvino form), else the first registered one that handles its kind."""
    if name is not None and name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}: choose among {', '.join(BACKENDS)}")
    if name is None and artifact.runtime in BACKENDS:
        ok, why = BACKENDS[artifact.runtime].availability()
        if not ok:
            raise BackendError(
                f"{artifact.name} is made for {artifact.runtime}, which is unavailable here: {why}; or pass "
                "--backend onnxruntime (it runs the same model, slower)"
            )
        name = artifact.runtime
    candidates = (
        [BACKENDS[name]] if name else [c for c in BACKENDS.values() if artifact.kind in c.artifact_kinds]
    )
    for cls in candidates:
        if artifact.kind not in cls.artifact_kinds:
            raise ConfigError(f"backend {cls.name} cannot run a {artifact.kind} ({artifact.name})")
        ok, why = cls.availability()
        if not ok:
            raise BackendError(f"backend {cls.name} is unavailable here: {why}")
        return cls(artifact, threads=threads)
    raise ConfigError(f"no backend runs a {artifact.kind}")


__all__ = ["BACKENDS", "Backend", "BackendError", "create_backend", "list_backends", "register_backend"]

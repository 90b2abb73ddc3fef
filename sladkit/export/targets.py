"""Deployment targets as data (`docs/deploy-facts.md`): one table, no branches spread through the code.

JetPack pins TensorRT: JetPack 6 (Orin) -> TensorRT 10.3, JetPack 5.1 (Xavier) -> 8.5.2, JetPack 4.6 (Nano)
-> 8.2.1. TensorRT 8.2/8.5 cannot parse ONNX LayerNormalization (opset 17): those targets get opset 16,
where the exporter decomposes LayerNorm. Jetson Nano (Maxwell) has no INT8.
"""

from __future__ import annotations

from dataclasses import dataclass

from sladkit.errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    runtime: str  # "tensorrt" or "onnxruntime"
    opset: int
    precisions: tuple[str, ...]  # supported, best first (the default is the first)
    tensorrt: str | None = None  # TensorRT version the target ships ("10.3.0"); None: whatever is installed
    jetpack: str | None = None
    compute_capability: str | None = None  # "8.7"; None: any
    dla_cores: int = 0
    workspace_mb: int = 1024  # default builder workspace cap (8 GB Orins run out with large ones)

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            hint = (
                " (it has no INT8; use --precision fp16)"
                if precision == "int8" and "fp16" in self.precisions
                else ""
            )
            raise ConfigError(
                f"target {self.name} does not support --precision {precision}{hint}; "
                f"supported: {', '.join(self.precisions)}"
            )


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    if target.name in TARGETS:
        raise ValueError(f"target {target.name!r} is already registered")
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}: choose among {', '.join(TARGETS)}")
    return TARGETS[name]


register_target(
    Target(
        "jetson-orin",
        "Jetson AGX Orin / Orin NX / Orin Nano, JetPack 6",
        runtime="tensorrt",
        opset=17,
        precisions=("int8", "fp16", "fp32"),
        tensorrt="10.3.0",
        jetpack="6.0",
        compute_capability="8.7",
        dla_cores=2,
    )
)
register_target(
    Target(
        "jetson-xavier",
        "Jetson AGX Xavier / Xavier NX, JetPack 5.1",
        runtime="tensorrt",
        opset=16,
        precisions=("int8", "fp16", "fp32"),
        tensorrt="8.5.2",
        jetpack="5.1",
        compute_capability="7.2",
        dla_cores=2,
    )
)
register_target(
    Target(
        "jetson-nano",
        "Jetson Nano (Maxwell), JetPack 4.6",
        runtime="tensorrt",
        opset=16,
        precisions=("fp16", "fp32"),
        tensorrt="8.2.1",
        jetpack="4.6",
        compute_capability="5.3",
        workspace_mb=512,
    )
)
register_target(
    Target(
        "x86-gpu",
        "an x86-64 machine with an NVIDIA GPU and TensorRT installed",
        runtime="tensorrt",
        opset=17,
        precisions=("int8", "fp16", "fp32"),
        workspace_mb=4096,
    )
)
register_target(
    Target(
        "cpu",
        "a CPU (x86-64 or ARM64) with ONNX Runtime",
        runtime="onnxruntime",
        opset=17,
        precisions=("int8", "fp32"),
    )
)

"""Deployment targets as data (`docs/deploy-facts.md`): one table, no branches spread through the code.

Each row names the JetPack release(s) it means and the TensorRT those releases ship, so that
`build_engine.sh` checks the TensorRT it finds against exactly that. Every fact carries its source in a
comment beside it; a fact that could not be confirmed says so there (and in the README's target table).

- TensorRT 8.2/8.5 cannot parse ONNX LayerNormalization (opset 17): those targets get opset 16, where the
  exporter decomposes LayerNorm. Jetson Nano (Maxwell) has no INT8.
- FP8 Q/DQ (QuantizeLinear/DequantizeLinear with FLOAT8E4M3FN) exists from ONNX opset 19 on (ONNX
  operator docs, QuantizeLinear-19): FP8 targets export opset 19.
- JetPack 6.0 (L4T r36.3) shipped TensorRT 8.6.2, not 10.3; TensorRT 10.3 came with JetPack 6.1 (L4T
  r36.4) and is also JetPack 6.2's. `jetson-orin` means JetPack 6.1/6.2 (the repo's Dockerfile.jetson:
  r36.4.0 = JetPack 6.1, TensorRT 10.3; r36.3.0 = JetPack 6.0).
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
    jetpack: str | None = None  # the JetPack release(s) this row means ("6.1, 6.2"); TensorRT is theirs
    compute_capability: str | None = None  # "8.7"; None: any
    dla_cores: int = 0
    workspace_mb: int = 1024  # default builder workspace cap (8 GB Orins run out with large ones)

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            hint = ""
            if precision == "int8" and "fp16" in self.precisions:
                hint = " (it has no INT8; use --precision fp16)"
            elif precision == "fp8":
                fp8 = [t.name for t in TARGETS.values() if "fp8" in t.precisions]
                hint = f" (its GPU has no FP8 tensor cores; FP8 targets: {', '.join(fp8) or 'none'})"
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


# Jetson AGX Orin / Orin NX / Orin Nano on JetPack 6.1 / 6.2.
# - TensorRT 10.3 on JetPack 6.1 and 6.2: Torch-TensorRT "JetPack 6.1" / "JetPack 6.2" pages citing NVIDIA's
#   JetPack release notes ("CUDA 12.6, TensorRT 10.3, cuDNN 9.3"). JetPack 6.0 shipped TensorRT 8.6.2 (NVIDIA
#   JetPack 6.0 release notes, as checked in issue 12): a 6.0 device gets the version warning.
# - sm_87 (NVIDIA CUDA GPUs list); 2 DLA cores on AGX Orin / Orin NX (Orin Nano has none: the DLA core check
#   then fails on the device, not here).
register_target(
    Target(
        "jetson-orin",
        "Jetson AGX Orin / Orin NX / Orin Nano, JetPack 6.1 / 6.2 (TensorRT 10.3)",
        runtime="tensorrt",
        opset=17,
        precisions=("int8", "fp16", "fp32"),
        tensorrt="10.3.0",
        jetpack="6.1, 6.2",
        compute_capability="8.7",
        dla_cores=2,
    )
)
# Jetson Orin on JetPack 7.2 (Jetson Linux 39.2, CUDA 13.2): JetPack 7.0 / 7.1 (Jetson Linux 38.x) support
# Thor only ("release 38.4 does not support the Jetson Orin family", Jetson Linux 38.4 Developer Guide);
# Orin came to JetPack 7 with 7.2 (OE4T/meta-tegra#2224 "JetPack 7.2 / L4T R39.2.0: both Orin and Thor are
# supported, CUDA 13.2, TensorRT 10.16"; TensorRT-Edge-LLM support matrix: "Jetson Orin: JetPack 7.2, CUDA 13.2").
# - TensorRT 10.16: OE4T/meta-tegra#2224; 10.16.2(.10) read off a JetPack 7.2 device (roboflow/inference#2478).
#   NOT confirmed from NVIDIA's own JetPack 7.2 page (not found by search): build_engine.sh warns when the
#   device's trtexec reports another version.
# - No FP8: Ampere sm_87 has no FP8 tensor cores ("Jetson Orin does not run FP8 or FP4 model engines",
#   TensorRT-Edge-LLM support matrix).
# - DLA: NOT offered. NVIDIA's TensorRT 11.4.1 docs ("Working with DLA") restore Orin DLA only with TensorRT
#   11.4.1 on JetPack 7.2.2 and say "TensorRT 10.7 was the last 10.x release that supported DLA"; a JetPack 7.2
#   Orin host ships no libnvdla_compiler.so (blakeblackshear/frigate#23582). Whether JetPack 7.2's TensorRT 10.16
#   builds DLA engines is unconfirmed, so sladkit refuses --dla-core here; use jetson-orin (JetPack 6) for DLA.
register_target(
    Target(
        "jetson-orin-jp7",
        "Jetson Orin on JetPack 7.2 (TensorRT 10.16, CUDA 13; no DLA offered)",
        runtime="tensorrt",
        opset=17,
        precisions=("int8", "fp16", "fp32"),
        tensorrt="10.16.2",
        jetpack="7.2",
        compute_capability="8.7",
        dla_cores=0,
    )
)
# Jetson AGX Thor (Blackwell GPU), JetPack 7.0 / 7.1 (Jetson Linux 38.2 / 38.4, CUDA 13.0).
# - TensorRT 10.13.3 (.9): NVIDIA's JetPack 7.1 downloads page ("CUDA 13.0.0, cuDNN 9.12.0, TensorRT 10.13.3.9",
#   developer.nvidia.com/embedded/jetpack/downloads/archive-7.1, as quoted in NVIDIA/IsaacTeleop#1050); the
#   same 10.13.3 on Jetson Linux 38.2.2 = JetPack 7.0 (dataplayer12/SAM3-TensorRT#24) and "TensorRT 10.13" on
#   JetPack 7.1 (roboflow/inference#1935). JetPack 7.2 moves Thor to TensorRT 10.16 (not this row).
# - Compute capability 11.0 (sm_110) under CUDA 13; CUDA 12.x called Thor sm_101 ("From CUDA 13.0, the
#   Blackwell SM101 for Thor GPUs is renamed to SM110", CUTLASS 4.2 changelog; CUDA 13.0 release notes).
# - FP8 (E4M3) and NVFP4 tensor cores (NVIDIA's Jetson Thor pages). sladkit produces FP8 Q/DQ; NVFP4 is not
#   offered (no quantizer here writes it, nothing here could check it).
# - No DLA: "NVIDIA Jetson Thor, which has no DLA" (TensorRT 11.4.1 docs, "Working with DLA").
# - opset 19: the first with FP8 QuantizeLinear/DequantizeLinear; TensorRT 10.13's ONNX parser reads
#   opset 9-24 (TensorRT 10.13 support matrix, docs/deploy-facts.md).
# - FP8 Q/DQ builds strongly typed (--stronglyTyped, no precision flags): NVIDIA's TensorRT maintainers'
#   answer for FP8 Q/DQ ONNX (NVIDIA/TensorRT#3987; NVIDIA/Model-Optimizer#118), and weakly typed INT8+FP8
#   mixes are a hard error on Blackwell (justincdavis/trtutils#163).
register_target(
    Target(
        "jetson-thor",
        "Jetson AGX Thor (Blackwell), JetPack 7.0 / 7.1 (TensorRT 10.13, CUDA 13); no DLA",
        runtime="tensorrt",
        opset=19,
        precisions=("fp8", "int8", "fp16", "fp32"),
        tensorrt="10.13.3",
        jetpack="7.0, 7.1",
        compute_capability="11.0",
        dla_cores=0,
        workspace_mb=4096,
    )
)
# Jetson AGX Xavier / Xavier NX, JetPack 5.1.x: TensorRT 8.5.2 on JetPack 5.1.1 and 5.1.2 (NVIDIA's JetPack
# archive as tabulated in edgehook/Jetson-AI-task) and on 5.1 (L4T 35.2.1); sm_72; 2 DLA cores.
register_target(
    Target(
        "jetson-xavier",
        "Jetson AGX Xavier / Xavier NX, JetPack 5.1.x (TensorRT 8.5.2)",
        runtime="tensorrt",
        opset=16,
        precisions=("int8", "fp16", "fp32"),
        tensorrt="8.5.2",
        jetpack="5.1, 5.1.1, 5.1.2",
        compute_capability="7.2",
        dla_cores=2,
    )
)
# Jetson Nano (Maxwell, sm_53), JetPack 4.6.1 and later 4.6.x: TensorRT 8.2.1 on 4.6.1 and 4.6.2 (L4T R32.7.1);
# JetPack 4.6 itself (L4T R32.6.1) shipped TensorRT 8.0.1 (NVIDIA's TensorFlow-for-Jetson release notes, as
# tabulated in gist Tiryoh/2b5dc1f8): a 4.6 device gets the version warning. Later 4.6.x keep 8.2.1 (not
# re-checked here).
register_target(
    Target(
        "jetson-nano",
        "Jetson Nano (Maxwell), JetPack 4.6.1+ (TensorRT 8.2.1)",
        runtime="tensorrt",
        opset=16,
        precisions=("fp16", "fp32"),
        tensorrt="8.2.1",
        jetpack="4.6.1, 4.6.2",
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
        "a CPU (x86-64 or ARM64) with ONNX Runtime or OpenVINO",
        runtime="onnxruntime",
        opset=17,
        precisions=("int8", "fp32"),
    )
)

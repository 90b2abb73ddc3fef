"""The CPU INT8 artifact (`model.int8-cpu.onnx`), and how its form is chosen.

Three forms (`--cpu-int8-form`), each passed through the same accuracy gate with its per-block float fallback,
run by the runtime it is made for (`bundle.CPU_INT8_RUNTIME`):

- static (`quantize_cpu`): U8S8 Q/DQ, the inputs of every MatMul/Gemm/Conv that reads a weight quantized; U8
  activations with ranges from sladkit's calibration (`--calib-method`, on the run's training images or
  `--calib-data`), S8 symmetric per-channel weights, float outputs. ONNX Runtime fuses each DequantizeLinear ->
  MatMul/Gemm pair into its integer kernels (QGemm, MatMulIntegerToFloat); the two attention MatMuls (Q.K^T
  and attention.V), LayerNorm, Softmax, GELU and the residual Adds stay float. The attention MatMuls stay
  float because INT8 there was slower on a quiet machine (`benchmarks/results/cpu_int8_forms.md`, "Attention
  MatMuls, quiet machine": their QuantizeLinear nodes and the attention-scale Muls that ONNX Runtime no longer
  folds into `FusedMatMul` cost more than the integer kernels save: 3-10 % on the tiny student and a ViT-S/14).
  An image gets the same output whatever else is in its batch, and it is a plain Q/DQ model other runtimes read.
- dynamic (`quantize_cpu_dynamic`): ONNX Runtime's dynamic quantization (U8 activations ranged from each
  batch at run time, S8 per-tensor weights, MatMul/Gemm; the attention MatMuls stay float). No calibration;
  a model's output (and accuracy) depends on what else is in the batch, so the gate, `sladkit eval` and
  `profile` all run it at `bundle.ACCURACY_BATCH`. ONNX Runtime only.
- openvino (`quantize_openvino`, needs `pip install 'sladkit[openvino]'`): the Q/DQ placement of TensorRT's
  model.int8.onnx (symmetric S8 activations on the inputs of every MatMul/Gemm, the attention MatMuls
  included, per-channel S8 weights, float biases; the patch-embedding Conv float) on the graph with its qkv
  layers split into q, k and v layers (`sladkit.export.rewrite.split_qkv`), run by OpenVINO's CPU plugin
  (`sladkit.runtime.backends.openvino`), which fuses it into integer kernels far beyond ONNX Runtime's: on a
  ViT-S/14 at 224 px 1.24x / 1.60x ORT dynamic and 2.54x / 3.51x ORT FP32 at batch 1 / 8, against ONNX Runtime
  at its default settings (`benchmarks/results/cpu_int8.md`). The
  static U8 placement and the attention left float were both slower there (`cpu_int8_forms.md`, "OpenVINO").
  Still a plain Q/DQ model: ONNX Runtime runs it too (`--backend onnxruntime`), slower.
- auto (the default, `build_cpu_int8`): build every form whose runtime is installed, gate each, time each form
  that passed against FP32 (ONNX Runtime) on the exporting machine with its own runtime, and keep the
  fastest of those faster than FP32 at every timed batch (`choose_cpu_form`) — as TensorRT's builder times its
  tactics on the GPU that builds the engine instead of predicting them. No form wins everywhere
  (`benchmarks/results/cpu_int8.md`, quiet machine): in ONNX Runtime static and dynamic are level on a
  ViT-S/14 (the same VNNI integer GEMMs), while on the tiny 32 px student, whose time is mostly per-node
  overhead, dynamic is often faster than static, and the openvino form about as fast as dynamic at batch 1 and
  2-3x FP32 at batch 32.
  Within `STATIC_PREFERENCE` the static form is kept, for its batch-independent output.

Why U8S8: on x86-64 ONNX Runtime's integer GEMMs take U8 activations and S8 weights (its QDQ default S8S8
runs slower than FP32 there, `docs/deploy-facts.md`); on ARM64 we expect U8S8 and S8S8 to be exact (UDOT/SDOT
kernels; not tested: no ARM64 machine here). `reduce_range` is left off: the 7-bit weights it makes only help
x86 CPUs without VNNI, where the 16-bit intermediate sums of VPMADDUBSW can saturate (ONNX Runtime's
`quantize_static` docstring); on such a machine the accuracy gate, run with ONNX Runtime on the exporting
machine, sees the saturated model.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

from sladkit.bundle import (
    CPU_INT8_FORMS,
    CPU_INT8_RUNTIME,
    FP32,
    cpu_int8_check,
    speedups_vs_fp32,
)
from sladkit.errors import ConfigError
from sladkit.export.cpu_timing import measure_cpu_latency, session
from sladkit.export.onnx import ExportError
from sladkit.export.quantize import (
    Calibration,
    GateResult,
    _ort_method,
    _without_preprocessing_hint,
    gate_failure,
    quantize_qdq,
    quantize_static_qdq,
    quantize_with_gate,
)
from sladkit.export.rewrite import split_qkv

#: Ops whose output is never negative: their U8 range starts at 0 (a Softmax output gets all 256 levels).
NONNEGATIVE_OUTPUTS = ("Softmax", "Relu", "Sigmoid")
#: What each form is (the manifest's `checks.int8_cpu_vs_fp32.form`).
FORMS = {
    "static": "static U8S8 Q/DQ (U8 activations, per-channel S8 weights; weight MatMul/Gemm/Conv, attention float)",
    "dynamic": "dynamic (ONNX Runtime quantize_dynamic: U8 activations ranged per batch, S8 weights; MatMul/Gemm)",
    "openvino": "static S8S8 Q/DQ for OpenVINO (TensorRT's placement: every MatMul/Gemm, attention included)",
}
#: auto keeps the static form unless the fastest form beats it by more than this share (geometric mean over
#: the timed batches): on a ViT-S the two are level, and the choice should not flip with the noise.
STATIC_PREFERENCE = 0.05


def cpu_ranges(model_path: str | Path, amax: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(low, high) per tensor for U8 activations: (-amax, amax), or (0, amax) where the tensor is the output
    of a `NONNEGATIVE_OUTPUTS` op (sladkit's calibration stores |max| only)."""
    model = onnx.load(str(model_path), load_external_data=False)
    nonnegative = {n.output[0] for n in model.graph.node if n.op_type in NONNEGATIVE_OUTPUTS and n.output}
    return {name: (0.0 if name in nonnegative else -a, a) for name, a in amax.items()}


def _save_ranges(ranges: dict[str, tuple[float, float]], method: str, path: Path) -> None:
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {n: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for n, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(_ort_method(method), data), path)


def quantize_cpu(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Calibration,
    *,
    exclude_nodes: list[str] | None = None,
    include_nodes: list[str] | None = None,
) -> None:
    """The static form: U8S8 Q/DQ for ONNX Runtime on CPUs (the module docstring says why this form).

    Same signature as `quantize_qdq`, so `quantize_with_gate` and its per-block fallback take either.

    Args:
        model_path: the float model, initializers unshared (`unshare_initializers`), as calibrated.
        calibration: sladkit's ranges of every tensor of `model_path`.
        exclude_nodes / include_nodes: MatMul/Gemm/Conv nodes kept float / the only ones quantized; the
            `activation_matmuls` are kept float in any case.
    """
    exclude_nodes = [*(exclude_nodes or []), *activation_matmuls(model_path)]
    cache = Path(calibration.cache_path).with_suffix(".cpu.json")
    _save_ranges(cpu_ranges(model_path, calibration.amax), calibration.method, cache)
    quantize_static_qdq(
        model_path,
        out_path,
        calibration.method,
        cache,
        unsigned_activations=True,
        include_nodes=include_nodes,
        exclude_nodes=exclude_nodes,
    )


def activation_matmuls(model_path: str | Path) -> list[str]:
    """The MatMul nodes that read no weight (no initializer input): a ViT's two attention MatMuls per block."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not initializers.intersection(n.input)]


def quantize_cpu_dynamic(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Calibration | None = None,
    *,
    exclude_nodes: list[str] | None = None,
    include_nodes: list[str] | None = None,
) -> None:
    """The dynamic form: ONNX Runtime's dynamic quantization (U8 activations per batch, S8 weights, MatMul/Gemm).

    Same signature as `quantize_cpu` (for `quantize_with_gate`); `calibration` is not used.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def with_gemm_rewrites(names: list[str] | None) -> list[str] | None:
        # Before it picks the nodes, ONNX Runtime's dynamic quantizer rewrites each Gemm G into a MatMul
        # named G_MatMul (and an Add; `ONNXModel.replace_gemm_with_matmul`): name both.
        return None if names is None else [*names, *(f"{n}_MatMul" for n in names)]

    with _without_preprocessing_hint():
        quantize_dynamic(
            str(model_path),
            str(out_path),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=False,
            nodes_to_quantize=with_gemm_rewrites(include_nodes),
            nodes_to_exclude=with_gemm_rewrites(exclude_nodes or []),
        )


def quantize_openvino(
    model_path: str | Path,
    out_path: str | Path,
    calibration: Calibration,
    *,
    exclude_nodes: list[str] | None = None,
    include_nodes: list[str] | None = None,
) -> None:
    """The openvino form: `quantize_qdq`'s model (the module docstring says why) of the graph with every qkv
    layer split into q, k and v layers (`rewrite.split_qkv`: OpenVINO then fuses the head split into its INT8
    attention kernel), the Conv nodes (a ViT's patch embedding) left float: OpenVINO ran the tiny student's
    INT8 patch embedding as its slowest layer (21 % of the time at batch 8), and the model 12-16 % faster with
    it float (a ViT-S/14 1-2 %). Same signature as `quantize_cpu`; node names are those of `model_path`."""
    with tempfile.TemporaryDirectory(prefix="sladkit-openvino-") as tmp:
        split_path = Path(tmp) / "split_qkv.onnx"
        renamed = split_qkv(model_path, split_path)

        def translate(names: list[str] | None) -> list[str] | None:
            return None if names is None else [new for n in names for new in renamed.get(n, [n])]

        graph = onnx.load(str(split_path), load_external_data=False).graph
        convolutions = [n.name for n in graph.node if n.op_type == "Conv"]
        quantize_qdq(
            split_path,
            out_path,
            calibration,
            exclude_nodes=[*translate(exclude_nodes or []), *convolutions],
            include_nodes=translate(include_nodes),
        )


QUANTIZERS = {"static": quantize_cpu, "dynamic": quantize_cpu_dynamic, "openvino": quantize_openvino}


def available_forms() -> tuple[tuple[str, ...], dict[str, str]]:
    """The forms whose runtime is installed here, and {form: why not} for the others."""
    from sladkit.runtime.backends import BACKENDS

    missing = {}
    for form in CPU_INT8_FORMS:
        ok, why = BACKENDS[CPU_INT8_RUNTIME[form]].availability()
        if not ok:
            missing[form] = why
    return tuple(f for f in CPU_INT8_FORMS if f not in missing), missing


def check_cpu_int8_form(config, target, precision: str) -> None:
    """Refuse `--cpu-int8-form` where there is no CPU INT8 model, and `--calib-data` for the dynamic form."""
    form = config.cpu_int8_form
    if form != "auto" and (target.runtime == "tensorrt" or precision != "int8"):
        raise ConfigError(
            f"--cpu-int8-form {form} chooses the form of the CPU INT8 model (model.int8-cpu.onnx); target "
            f"{target.name} at {precision} has none: drop --cpu-int8-form, or export --target cpu --precision int8"
        )
    if form == "openvino":
        from sladkit.runtime.backends.openvino import openvino_available

        ok, why = openvino_available()
        if not ok:
            raise ConfigError(f"--cpu-int8-form openvino runs the model with OpenVINO: {why}")
    if form == "dynamic" and config.calib_data:
        raise ConfigError(
            "--cpu-int8-form dynamic ranges its activations on each batch and uses no calibration: drop "
            "--calib-data, or use --cpu-int8-form static or auto"
        )


def choose_cpu_form(speedup: dict[str, dict[str, float]], passed: list[str]) -> str:
    """The fastest form among those that passed the gate (geometric mean of their speed-ups over the batches),
    static unless the fastest beats it by more than `STATIC_PREFERENCE`. Forms faster than FP32 at every timed
    batch come first: a form that is the fastest at batch 32 and slower than FP32 at batch 1 (the tiny
    student's openvino form measured so under the old one-run timing) loses to one faster at both."""

    def score(form: str) -> float:
        values = list(speedup[form].values())
        return math.exp(sum(math.log(v) for v in values) / len(values))

    faster = [form for form in passed if all(v > 1.0 for v in speedup[form].values())]
    candidates = faster or passed
    best = max(candidates, key=score)
    if "static" in candidates and score("static") * (1 + STATIC_PREFERENCE) >= score(best):
        return "static"
    return best


def build_cpu_int8(
    model_path: Path,
    out_path: Path,
    calibration: Calibration | None,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    fp32_path: Path,
    num_classes: int,
    config,
    log=print,
    timer=measure_cpu_latency,
) -> dict:
    """The CPU INT8 model in the form `config.cpu_int8_form` asks for (auto: measured), written to `out_path`.

    Each form built passes through `quantize_with_gate` (with its per-block fallback). auto times the forms
    that passed against `fp32_path` with `timer` and keeps the faster (`choose_cpu_form`); if the one kept is
    slower than FP32 at any timed batch, one warning says so and the check's `faster_than_fp32` is False.

    Args:
        model_path: the float model to quantize (initializers unshared), `calibration` its ranges (None: the
            dynamic form only).
        images, targets: the gate's validation images and labels.
        fp32_path: the bundle's FP32 model, the reference of the timing.
        config: the `ExportConfig` (`cpu_int8_form`, `max_accuracy_drop`, `min_agreement`).
        timer: `measure_cpu_latency` or a function with its signature (tests pass a fake one).

    Returns:
        The manifest's `checks.int8_cpu_vs_fp32` (`bundle.cpu_int8_check`).

    Raises:
        ExportError: no form built passes the gate (the message gives the one closest to passing).
    """
    choice = config.cpu_int8_form
    forms = (choice,)
    if choice == "auto":
        forms, missing = available_forms()
        for form, why in missing.items():
            log(f"cpu int8: the {form} form is not considered: {why}")
    paths = {form: out_path.with_name(f"{out_path.stem}.{form}.onnx") for form in forms}
    gates = {
        form: quantize_with_gate(
            model_path,
            paths[form],
            calibration,
            images,
            targets,
            num_classes=num_classes,
            max_drop=config.max_accuracy_drop,
            min_agreement=config.min_agreement,
            log=log,
            quantizer=QUANTIZERS[form],
            kind=f"cpu int8 {form}",
            session=lambda path, form=form: session(path, CPU_INT8_RUNTIME[form]),
        )
        for form in forms
    }
    passed = [form for form in forms if gates[form].passed]
    if not passed:
        closest = min(forms, key=lambda f: gates[f].drop)
        kind = f"CPU INT8 (--cpu-int8-form {choice})"
        if choice == "auto":
            kind = f"CPU INT8 fails the gate in every form ({', '.join(forms)}); the closest ({closest})"
        advice = {
            "static": "another --calib-method or --cpu-int8-form",
            "openvino": "another --calib-method or --cpu-int8-form",
            "dynamic": "another --cpu-int8-form",
        }
        raise ExportError(
            gate_failure(kind, gates[closest], config)
            + f", try {advice.get(choice, 'another --calib-method')}, or use --precision fp32"
        )
    candidates = {form: _gate_summary(gate) for form, gate in gates.items()} if choice == "auto" else None
    speed = None
    if choice == "auto":
        speed = timer(
            {FP32: fp32_path, **{form: paths[form] for form in passed}},
            images,
            runtimes={form: CPU_INT8_RUNTIME[form] for form in passed},
        )
        speed["speedup_vs_fp32"] = speedups_vs_fp32(speed["median_ms"])
    form = choose_cpu_form(speed["speedup_vs_fp32"], passed) if speed else choice
    shutil.move(paths[form], out_path)
    check = cpu_int8_check(
        gates[form].to_dict(),
        form=form,
        description=FORMS[form],
        chosen_by="measured" if speed else f"--cpu-int8-form {choice}",
        speed=speed,
        candidates=candidates,
    )
    if speed:
        ratios = speed["speedup_vs_fp32"]
        log(
            f"cpu int8: kept the {form} form, measured over {speed['repeats']} rounds (load "
            f"{speed['load_average']}); speed against FP32 at batch {'/'.join(map(str, speed['batches']))}: "
            + ", ".join(f"{f} {'/'.join(f'{v:.2f}x' for v in r.values())}" for f, r in ratios.items())
        )
        if not check["faster_than_fp32"]:
            warnings.warn(slower_than_fp32(form, speed), stacklevel=2)
    return check


def slower_than_fp32(form: str, speed: dict) -> str:
    """The one warning line when the CPU INT8 model kept is slower than FP32 at some timed batch."""
    ratios = speed["speedup_vs_fp32"][form]
    slower = " and ".join(b for b, v in ratios.items() if v <= 1.0)
    times = [f"{v:.2f}x at batch {b}" for b, v in ratios.items()]
    times[0] = times[0].replace("x at", "x FP32's speed at", 1)
    load = speed.get("load_average")
    where = f"load {load[0]:.1f} on {speed.get('cores')} cores" if load else "load unknown"
    at = "" if all(v <= 1.0 for v in ratios.values()) else f" at batch {slower}"
    return (
        f"CPU INT8 ({form} form) is slower than FP32 at batch {slower} on this machine ({', '.join(times)}; {where}): "
        f"deploy model.onnx{at}, or export a larger model"
    )


def _gate_summary(gate: GateResult) -> dict:
    keys = ("passed", "drop_points", "top1_agreement", "float_blocks")
    return {k: v for k, v in gate.to_dict().items() if k in keys}

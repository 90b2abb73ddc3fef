"""`sladkit.export.run(config)`: run folder -> checked deployment bundle.

Every step is checked and its numbers go into `manifest.json`. The bundle is assembled in a temporary
folder and renamed into place only when complete and valid, so a failure leaves no partial bundle and
an existing bundle intact.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sladkit import __version__
from sladkit import bundle as bundles
from sladkit._atomic import atomic_dir, remove_stale_temporaries, work_dir
from sladkit._outdir import check_out, locked
from sladkit.config import ExportConfig
from sladkit.errors import ConfigError
from sladkit.export import modelopt_backend
from sladkit.export.calib_cache import write_calibration_cache
from sladkit.export.cpu_int8 import build_cpu_int8, check_cpu_int8_form
from sladkit.export.data import calibration_array, validation_arrays
from sladkit.export.onnx import (
    INPUT,
    OUTPUT,
    ExportError,
    bake_preprocess,
    check_onnx,
    export_onnx,
    onnxruntime_session,
    run_onnx,
    set_metadata,
)
from sladkit.export.qdq_check import check_tensorrt_qdq
from sladkit.export.quantize import (
    Calibration,
    compare,
    convert_qdq_to_fp8,
    gate_failure,
    predictions,
    quantize_qdq,
    quantize_with_gate,
    unshare_initializers,
)
from sladkit.export.simplify import simplify_onnx
from sladkit.export.targets import get_target
from sladkit.export.tensorrt import build_engine
from sladkit.export.trtexec import engine_build, trtexec_commands, write_build_script
from sladkit.metrics import task_metric
from sladkit.models.run_model import check_weights_finite, load_run_model, max_abs_difference, merge_adapters
from sladkit.runtime import device

PARITY_TOLERANCE = 1e-3  # max |ONNX Runtime - PyTorch| on logits
CALIBRATED = ("int8", "fp8")  # TensorRT precisions whose Q/DQ ranges come from calibration


def _calibrated(target, precision: str, cpu_form: str) -> bool:
    """Whether this export calibrates: TensorRT INT8/FP8, and the CPU target's INT8 unless its form is dynamic."""
    if target.runtime == "tensorrt":
        return precision in CALIBRATED
    return precision == "int8" and cpu_form != "dynamic"


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict

    def summary(self) -> str:
        return bundles.summary(self.manifest) + f"\nbundle written to {self.bundle}"


def _log(message: str) -> None:
    print(f"export: {message}", file=sys.stderr)


def run(config: ExportConfig) -> ExportResult:
    """Export a run folder to a deployment bundle (see the module docstring)."""
    started = time.perf_counter()
    target = get_target(config.target)
    precision = config.precision or target.precisions[0]
    target.check_precision(precision)
    if config.dla_core is not None and not 0 <= config.dla_core < target.dla_cores:
        raise ConfigError(
            f"target {target.name} has {target.dla_cores} DLA cores; --dla-core {config.dla_core} is out of range"
        )
    if config.dla_core is not None and precision == "fp32":
        raise ConfigError("DLA runs FP16 or INT8 only; pass --precision fp16 or int8 with --dla-core")
    if config.quantizer != "sladkit":
        if target.runtime != "tensorrt" or precision != "int8":
            raise ConfigError(
                f"--quantizer {config.quantizer} quantizes the TensorRT INT8 model only; target {target.name} "
                f"at {precision} has none: drop --quantizer, or export a TensorRT target with --precision int8"
            )
        modelopt_backend.check_available()
    check_cpu_int8_form(config, target, precision)
    if config.calib_data and not _calibrated(target, precision, config.cpu_int8_form):
        raise ConfigError(
            f"--calib-data calibrates INT8 (and FP8); target {target.name} at {precision} uses no calibration: "
            "drop --calib-data, or export with --precision int8"
        )
    run_dir = Path(config.run_dir)
    out = Path(config.out) if config.out else Path("deploy") / f"{run_dir.name}-{target.name}"
    inputs = [run_dir, config.calib_data]
    with locked(out, "export"):
        check_out(out, overwrite=config.overwrite, kind="bundle", is_kind=bundles.is_bundle, inputs=inputs)
        return _export(config, target, precision, run_dir, out, started)


def _export(
    config: ExportConfig, target, precision: str, run_dir: Path, out: Path, started: float
) -> ExportResult:
    batch = config.batch_sizes
    build = None
    if target.runtime == "tensorrt":
        # What build_engine.sh builds (DLA: min = opt = max), decided once: the manifest records it and the
        # script and the in-process build are made from the manifest's values.
        build = engine_build(target, precision=precision, batch=batch, dla_core=config.dla_core)
        batch = tuple(build["batch"][k] for k in ("min", "opt", "max"))
    # 1. Merge.
    model, run_config = load_run_model(run_dir, role=config.model, checkpoint=config.checkpoint)
    merged = merge_adapters(model)
    bad = check_weights_finite(merged)
    if bad:
        raise ExportError(
            f"merged weights hold NaN/Inf ({', '.join(bad[:3])}); the run diverged: train again"
        )
    images, targets = validation_arrays(run_config, config.eval_images)
    calib, calib_source = (None, None)
    if _calibrated(target, precision, config.cpu_int8_form):
        calib, calib_source = calibration_array(
            run_config, config.calib_data, config.calib_images, seed=run_config["train"]["seed"]
        )
    merge_diff = max_abs_difference(model, merged, torch.from_numpy(images[:64]))
    _log(f"merged the adapters (max |merged - unmerged| = {merge_diff:.2e})")
    num_classes = run_config["num_classes"]
    checks: dict = {"merge": {"max_abs_diff": merge_diff, "images": min(64, len(images))}}

    remove_stale_temporaries(out)  # a killed export's; we hold the lock
    with work_dir("sladkit-export-") as work, atomic_dir(out) as tmp:
        # 2. ONNX, checked against PyTorch on real validation images.
        raw = work / "raw.onnx"
        export_onnx(merged, raw, image_size=run_config["image_size"], opset=target.opset)
        check_onnx(raw)
        with torch.no_grad():
            reference = torch.cat(
                [merged(torch.from_numpy(images[i : i + 64])) for i in range(0, len(images), 64)]
            ).numpy()
        onnx_diff = float(np.abs(run_onnx(onnxruntime_session(raw), images) - reference).max())
        if onnx_diff > PARITY_TOLERANCE:
            raise ExportError(
                f"ONNX Runtime differs from PyTorch by {onnx_diff:.2e} (> {PARITY_TOLERANCE}) on validation images"
            )
        checks["onnx_vs_pytorch"] = {"max_abs_diff": onnx_diff, "images": len(images)}
        _log(
            f"ONNX opset {target.opset}: ONNX Runtime vs PyTorch max |diff| = {onnx_diff:.2e} on {len(images)} images"
        )

        # 3. Simplify.
        core = work / "model.onnx"
        tool, fallback_reason = simplify_onnx(raw, core)
        if fallback_reason:
            _log(f"onnxsim failed ({fallback_reason}); simplified with {tool} instead")
        check_onnx(core)
        fp32_out = run_onnx(onnxruntime_session(core), images)
        simplify_diff = float(np.abs(fp32_out - reference).max())
        if simplify_diff > PARITY_TOLERANCE:
            raise ExportError(
                f"the simplified model differs by {simplify_diff:.2e}; export with a fresh environment"
            )
        checks["simplify"] = {"tool": tool, "fallback_reason": fallback_reason, "max_abs_diff": simplify_diff}
        fp32_pred = fp32_out.argmax(axis=1)
        checks["fp32"] = {"metric": task_metric(fp32_pred, targets, num_classes), "images": len(images)}

        artifacts = [("model.onnx", core, "fp32")]
        unshared, calibration, calibration_info = core, None, None
        # 4-6. INT8 (and FP8, from the same calibration; the CPU INT8 too, unless dynamic).
        if _calibrated(target, precision, config.cpu_int8_form):
            unshared = work / "unshared.onnx"
            unshare_initializers(core, unshared)
            t0 = time.perf_counter()
            calibration = Calibration.run(unshared, calib, config.calib_method, work / "ranges.json")
            calibration_info = {
                "method": calibration.method,
                "images": len(calib),
                "source": calib_source,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            if calibration.scores:
                calibration_info["chosen_by"] = "auto"
                calibration_info["logit_mse"] = {m: float(f"{v:.6g}") for m, v in calibration.scores.items()}
            _log(
                f"calibrated: {bundles.calibration_summary(calibration_info)}, in {calibration_info['seconds']} s"
            )
            if precision == "fp8":
                fp8 = _quantize_fp8(
                    unshared, work, calibration, images, targets, fp32_pred, num_classes, config
                )
                checks["fp8_vs_fp32"] = fp8
                artifacts.append(("model.fp8.onnx", work / "model.fp8.onnx", "fp8"))
        if precision == "int8" and target.runtime == "tensorrt":
            qdq = work / "model.int8.onnx"
            gate = quantize_with_gate(
                unshared,
                qdq,
                calibration,
                images,
                targets,
                num_classes=num_classes,
                max_drop=config.max_accuracy_drop,
                min_agreement=config.min_agreement,
                log=_log,
                quantizer=modelopt_backend.quantize_modelopt if config.quantizer == "modelopt" else None,
            )
            checks["int8_vs_fp32"] = {**gate.to_dict(), "quantizer": config.quantizer}
            if config.quantizer == "modelopt":
                checks["int8_vs_fp32"]["modelopt"] = modelopt_backend.modelopt_version()
            if not gate.passed:
                raise ExportError(
                    gate_failure("INT8", gate, config)
                    + ", try another --calib-method, or use --precision fp16"
                )
            problems = check_tensorrt_qdq(qdq)
            if problems:
                raise ExportError(
                    f"model.int8.onnx (--quantizer {config.quantizer}) holds {len(problems)} Q/DQ node(s) TensorRT "
                    f"cannot take, e.g. {problems[0]}; this is a sladkit bug: please report it"
                )
            artifacts.append(("model.int8.onnx", qdq, "int8"))
            if target.tensorrt is None or int(target.tensorrt.split(".")[0]) <= 10:
                cache = work / "calib.cache"
                write_calibration_cache(cache, calibration.amax, tensorrt_version=target.tensorrt or "10.3.0")
                artifacts.append(("calib.cache", cache, "int8"))
        elif precision == "int8":  # the CPU INT8 model, in the form measured or asked for (cpu_int8.py)
            cpu = work / "model.int8-cpu.onnx"
            checks[bundles.CPU_INT8_CHECK] = build_cpu_int8(
                unshared,
                cpu,
                calibration,
                images,
                targets,
                fp32_path=core,
                num_classes=num_classes,
                config=config,
                log=_log,
            )
            artifacts.append(("model.int8-cpu.onnx", cpu, "int8"))

        # Metadata, optional baked preprocessing, then into the bundle.
        transforms = run_config["transforms"]
        metadata = {
            "sladkit_version": __version__,
            "task": run_config["task"],
            "labels": run_config["labels"],
            "mean": transforms["mean"],
            "std": transforms["std"],
            "image_size": run_config["image_size"],
            "input_layout": "NHWC uint8 RGB" if config.bake_preprocess else "NCHW float32 normalised",
            "preprocess_in_graph": config.bake_preprocess,
            "transforms": transforms,
        }
        for name, path, _ in artifacts:
            if not name.endswith(".onnx"):
                shutil.copy2(path, tmp / name)
                continue
            if config.bake_preprocess:
                bake_preprocess(path, tmp / name, mean=transforms["mean"], std=transforms["std"])
            else:
                shutil.copy2(path, tmp / name)
            set_metadata(tmp / name, metadata)
        if config.bake_preprocess:
            checks["bake_preprocess"] = _check_baked(tmp / "model.onnx", images, fp32_out, transforms)

        # 7. TensorRT engine (where TensorRT and a GPU exist) and the trtexec script (everywhere).
        size = run_config["image_size"]
        input_shape = (size, size, 3) if config.bake_preprocess else (3, size, size)
        workspace = config.workspace_mb or target.workspace_mb
        engine_info = None
        if target.runtime == "tensorrt":
            files = {"onnx": "model.onnx"}
            if (tmp / "model.int8.onnx").exists():
                files["int8_onnx"] = "model.int8.onnx"
            if (tmp / "model.fp8.onnx").exists():
                files["fp8_onnx"] = "model.fp8.onnx"
            if (tmp / "calib.cache").exists():
                files["calib_cache"] = "calib.cache"
            commands = trtexec_commands(
                target,
                files=files,
                precision=precision,
                input_name=INPUT,
                input_shape=input_shape,
                batch=batch,
                workspace_mb=workspace,
                dla_core=config.dla_core,
            )
            write_build_script(tmp / "build_engine.sh", commands, target=target)
            available, why = device.tensorrt_status()
            if config.build_engine == "always" and not available:
                raise ConfigError(f"--build-engine always, but TensorRT cannot build here: {why}")
            if config.build_engine != "never" and available:
                engine_info = build_engine(
                    tmp / files[build["onnx_role"]],
                    tmp / build["engine"],
                    precision=precision,
                    target=target,
                    input_name=INPUT,
                    batch=batch,
                    input_shape=input_shape,
                    workspace_mb=workspace,
                    dla_core=config.dla_core,
                    calib_cache=tmp / "calib.cache" if config.dla_core is not None else None,
                    timing_cache=work / "timing.cache",
                )
                artifacts.append((build["engine"], None, precision))
            else:
                _log(
                    f"TensorRT engine not built here ({why if not available else '--build-engine never'}); "
                    "run build_engine.sh on the device"
                )
        (tmp / "labels.txt").write_text("".join(label + "\n" for label in run_config["labels"]))

        described = [bundles.describe_artifact(tmp, name, precision=p) for name, _, p in artifacts]
        for extra in ("labels.txt", "build_engine.sh", "engine.json"):
            if (tmp / extra).exists():
                described.append(bundles.describe_artifact(tmp, extra))
        manifest = _manifest(
            config,
            target,
            precision,
            run_config,
            batch,
            input_shape,
            described,
            checks,
            calibration_info,
            engine_info,
        )
        manifest["engine_build"] = build  # None for ONNX Runtime targets
        manifest["export_seconds"] = round(time.perf_counter() - started, 2)
        (tmp / bundles.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if config.overwrite and out.exists():
            _log(f"replacing {out}")
    _log(f"done in {manifest['export_seconds']} s")
    return ExportResult(out, manifest)


def _quantize_fp8(unshared, work, calibration, images, targets, fp32_pred, num_classes, config) -> dict:
    """FP8 (E4M3) Q/DQ from the INT8 calibration, under the same accuracy gate as INT8.

    All MatMul/Gemm/Conv inputs first; over budget, the INT8 gate's per-block fallback picks the blocks kept
    in float, and the FP8 model is made from that. ONNX Runtime's CPU provider runs the FP8 Q/DQ model
    (QuantizeLinear/DequantizeLinear-19), so the gate measures the FP8 model itself.
    """
    base, fp8 = work / "fp8-base.int8.onnx", work / "model.fp8.onnx"
    quantize_qdq(unshared, base, calibration)
    convert_qdq_to_fp8(base, unshared, fp8)
    budget = config.max_accuracy_drop
    gate = compare(
        fp32_pred, predictions(fp8, images), targets, num_classes, [], budget, config.min_agreement
    )
    _log(f"fp8: {gate.int8_metric:.2f} vs fp32 {gate.fp32_metric:.2f} (drop {gate.drop:.2f} points)")
    if not gate.passed:
        fallback = quantize_with_gate(
            unshared,
            base,
            calibration,
            images,
            targets,
            num_classes=num_classes,
            max_drop=budget,
            min_agreement=config.min_agreement,
            log=_log,
        )
        convert_qdq_to_fp8(base, unshared, fp8)
        gate = compare(
            fp32_pred,
            predictions(fp8, images),
            targets,
            num_classes,
            fallback.float_blocks,
            budget,
            config.min_agreement,
        )
        gate.sensitivity = fallback.sensitivity
    if not gate.passed:
        raise ExportError(
            gate_failure("FP8", gate, config) + ", try another --calib-method, or use --precision fp16"
        )
    problems = check_tensorrt_qdq(fp8, precision="fp8")
    if problems:
        raise ExportError(
            f"model.fp8.onnx holds {len(problems)} Q/DQ node(s) TensorRT cannot take, e.g. {problems[0]}; "
            "this is a sladkit bug: please report it"
        )
    result = gate.to_dict()
    result["fp8_metric"] = result.pop("int8_metric")
    return result


def _check_baked(path: Path, images: np.ndarray, fp32_out: np.ndarray, transforms: dict) -> dict:
    """The baked model on uint8 frames equals the float model on the same frames normalised."""
    mean = np.asarray(transforms["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(transforms["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    pixels = np.clip(np.rint((images * std + mean) * 255.0), 0, 255).astype(
        np.uint8
    )  # the original uint8 crops
    out = run_onnx(onnxruntime_session(path), np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)))
    diff = float(np.abs(out - fp32_out).max())
    if diff > PARITY_TOLERANCE:
        raise ExportError(f"the baked-preprocessing model differs from the float model by {diff:.2e}")
    return {"max_abs_diff": diff, "images": len(images)}


def _manifest(
    config, target, precision, run_config, batch, input_shape, artifacts, checks, calibration, engine
) -> dict:
    import onnx
    import onnxruntime

    transforms = run_config["transforms"]
    baked = config.bake_preprocess
    size = run_config["image_size"]
    output_shape = ["N", run_config["num_classes"]] + ([size, size] if run_config["task"] == "seg" else [])
    return {
        "schema": bundles.SCHEMA,
        "schema_version": bundles.SCHEMA_VERSION,
        "task": run_config["task"],
        "labels": run_config["labels"],
        "input": {
            "name": INPUT,
            "layout": "NHWC" if baked else "NCHW",
            "dtype": "uint8" if baked else "float32",
            "shape": ["N", *input_shape],
            "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        },
        "preprocessing": {
            "in_graph": baked,
            "resize": transforms["eval"]["resize"],
            "center_crop": transforms["eval"]["center_crop"],
            "interpolation": transforms["interpolation"],
            "mean": transforms["mean"],
            "std": transforms["std"],
            "channel_order": "RGB",
            "scale": 1.0 / 255.0,
            "transforms": transforms,  # the run's exact transform config (sladkit.data.transforms)
        },
        "outputs": [
            {
                "name": OUTPUT,
                "dtype": "float32",
                "shape": output_shape,
                "meaning": "class logits" + (" per pixel" if run_config["task"] == "seg" else ""),
            }
        ],
        "target": {
            "name": target.name,
            "runtime": target.runtime,
            "tensorrt": target.tensorrt,
            "jetpack": target.jetpack,
            "compute_capability": target.compute_capability,
            "opset": target.opset,
            "dla_core": config.dla_core,
            "precision": precision,
        },
        "artifacts": artifacts,
        "calibration": calibration,
        "checks": checks,
        "engine": engine,
        "source": {
            "run_dir": str(Path(config.run_dir).resolve()),
            "model": config.model,
            "checkpoint": config.checkpoint,
            "method": run_config["method"]["name"],
            "data": {
                **run_config["data"],
                "seed": run_config["train"]["seed"],
                "val_fraction": run_config["train"]["val_fraction"],
                "synthetic_val": run_config["train"]["synthetic_val"],
            },
            "teacher": run_config["train"]["teacher"],
            "student": run_config["train"]["student"],
        },
        "export_config": config.to_dict(),
        "versions": {
            "sladkit": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }

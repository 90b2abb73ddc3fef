"""INT8 accuracy against FP32 on the downstream tasks: per calibration method, with and without the
sensitivity fallback, and the time calibration takes.

One SLAD run per task (tiny pretrained pair from the shipped weight files, synthetic classification and
segmentation) is exported with sladkit's public API (`sladkit.export.run(ExportConfig(...))`):

- `--target jetson-orin --precision int8` (explicit Q/DQ for TensorRT, evaluated on ONNX Runtime) for
  each `--calib-method` (entropy, minmax, percentile), once without the fallback (`--max-accuracy-drop`
  100: every block quantized) and once with it (`--max-accuracy-drop` = `--budget`, 0.5 points by default:
  the most sensitive blocks are kept in float until the drop fits, or export fails and says so);
  and each `--quantizers` entry: sladkit's own quantizer and/or NVIDIA ModelOpt (`--quantizer modelopt`;
  run the script with `.venv/modelopt/bin/python`, which `make test-modelopt` builds);
- `--target cpu --precision int8` with export's default calibration (`--calib-method auto`) (the CPU artifact
  in the form `--cpu-int8-form auto` keeps on this machine,
  static U8S8 calibrated the same way, ONNX Runtime's dynamic form, or the openvino form; the row names it).

`--random-models vit-s14-224px`: both quantizers on a model no training run holds, a ViT-S/14 at 224 px
(vit_small_patch14_dinov2, random weights with LayerScale 1.0, 100 classes: diffuse attention, where a
clipped Softmax range shows), through sladkit's export functions: FP32 ONNX (simplified), one calibration
per `--calib-methods` entry on `--random-calib-images` random-normal images, shared by the quantizers
(ModelOpt reads it as its calibration cache, as `--quantizer modelopt` does); against FP32 on
`--random-eval-images` other random images: top-1 agreement, cosine and relative L2 error of the logits;
the Q/DQ placement, the Softmax outputs' quantization range, TensorRT Q/DQ problems
(`sladkit.export.qdq_check`), and the seconds and peak memory (RSS of the process that ran it, a fresh one
per step) of calibration and of each quantization.

The numbers are the bundle manifest's checks (INT8 vs FP32 metric on the validation split, top-1 / pixel
agreement, blocks kept in float), its calibration time, and the Q/DQ placement of the INT8 model: the
DequantizeLinear nodes counted by the op type they feed.

Run:  .venv/bin/python benchmarks/quantization.py
      .venv/modelopt/bin/python benchmarks/quantization.py --tasks cls --calib-methods entropy --quantizers sladkit,modelopt
      .venv/modelopt/bin/python benchmarks/quantization.py --tasks none --random-models vit-s14-224px --calib-methods entropy --quantizers sladkit,modelopt
      .venv/bin/python benchmarks/quantization.py --smoke --results /tmp/r
Writes <results>/quantization.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

CALIB_METHODS = ("entropy", "minmax", "percentile", "auto")
#: the calibration of the CPU artifact's row: `sladkit export`'s own default
DEFAULT_CALIB_METHOD = "auto"
#: --random-models: (timm/sladkit model name, image size, model kwargs); random weights, LayerScale 1.0
RANDOM_MODELS = {
    "vit-s14-224px": ("vit_small_patch14_dinov2", 224, {"init_values": 1.0}),
    "tiny-random-32px": ("sladkit_vit_96_p8", 32, {"init_values": 1.0, "depth": 2}),  # the smoke run's
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--tasks", default="cls,seg", help="cls and/or seg, or none (only --random-models)")
    p.add_argument("--train-epochs", type=int, default=5)
    p.add_argument("--train-images", type=int, default=800)
    p.add_argument("--val-images", type=int, default=500, help="validation images = the accuracy check set")
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--budget", type=float, default=0.5, help="--max-accuracy-drop of the fallback exports")
    p.add_argument(
        "--calib-methods", default=",".join(CALIB_METHODS), help="comma-separated --calib-method values"
    )
    p.add_argument(
        "--quantizers",
        default="sladkit",
        help="comma-separated --quantizer values for the TensorRT Q/DQ model (sladkit, modelopt)",
    )
    p.add_argument(
        "--random-models",
        default="",
        help=f"comma-separated, also compare the quantizers on these random-weight models: {', '.join(RANDOM_MODELS)}",
    )
    p.add_argument("--random-calib-images", type=int, default=64)
    p.add_argument("--random-eval-images", type=int, default=256)
    args = p.parse_args(argv)
    unknown = [m for m in filter(None, args.random_models.split(",")) if m not in RANDOM_MODELS]
    if unknown:
        p.error(f"unknown --random-models {', '.join(unknown)}: choose among {', '.join(RANDOM_MODELS)}")
    if "modelopt" in args.quantizers.split(","):
        from sladkit.errors import SladkitError
        from sladkit.export import modelopt_backend

        try:
            modelopt_backend.check_available()
        except SladkitError as e:
            p.error(f"--quantizers modelopt: {e}")
    return args


def qdq_placement(model_path: Path) -> dict[str, int]:
    """DequantizeLinear nodes by the op type of the node they feed (weights and activations together)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    counts: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            if name in dq:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def export(args, run_dir: Path, out: Path, **options) -> dict:
    """One export; the manifest's INT8 numbers, or the error when the gate refuses."""
    from sladkit.config import ExportConfig
    from sladkit.errors import SladkitError
    from sladkit.export import run

    config = ExportConfig(
        run_dir=str(run_dir),
        out=str(out),
        precision="int8",
        calib_images=args.calib_images,
        eval_images=args.val_images,
        build_engine="never",
        **options,
    )
    t0 = time.perf_counter()
    try:
        manifest = run(config).manifest
    except SladkitError as e:
        return {"ok": False, "error": str(e), "export_s": round(time.perf_counter() - t0, 2)}
    checks = manifest["checks"]
    gate = checks.get("int8_vs_fp32") or checks.get("int8_cpu_vs_fp32")
    calibration = manifest.get("calibration") or {}
    int8 = next((a["file"] for a in manifest["artifacts"] if a["file"].startswith("model.int8")), None)
    return {
        "ok": True,
        "fp32": gate["fp32_metric"],
        "int8": gate["int8_metric"],
        "drop_points": gate["drop_points"],
        "agreement": gate["top1_agreement"],
        "float_blocks": gate["float_blocks"],
        "calibration_s": calibration.get("seconds"),
        "calibration_images": calibration.get("images"),
        "export_s": round(time.perf_counter() - t0, 2),
        "dq_feeds": qdq_placement(out / int8) if int8 else {},
        "form": gate.get("chosen"),
    }


# ------------------------------------------------------------------------- random-weight models
def _measured(fn, *args, **kwargs) -> tuple[object, float, float]:
    """(fn's result, seconds, peak RSS in MB of the process): call it in a fresh process for the peak."""
    import resource

    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    return result, round(seconds, 2), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def in_fresh_process(fn, *args, **kwargs) -> tuple[object, float, float]:
    """`_measured(fn, ...)` in a new (spawned) process, so that its peak memory is this step's alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, *args, **kwargs).result()


def _calibrate(model: Path, images, method: str, cache: Path):
    from sladkit.export.quantize import Calibration

    return Calibration.run(model, images, method, cache)


def _quantize(quantizer: str, model: Path, out: Path, calibration) -> None:
    if quantizer == "modelopt":
        from sladkit.export.modelopt_backend import quantize_modelopt as quantize
    else:
        from sladkit.export.quantize import quantize_qdq as quantize
    quantize(model, out, calibration)


def softmax_outputs(model_path: Path) -> set[str]:
    import onnx

    return {
        n.output[0]
        for n in onnx.load(str(model_path), load_external_data=False).graph.node
        if n.op_type == "Softmax"
    }


def softmax_ranges(model_path: Path) -> list[float]:
    """The amax (scale x 127, or x 255 for UINT8) of every QuantizeLinear that reads a Softmax output."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR
    }
    inits.update(consts)
    softmax_out = softmax_outputs(model_path)
    ranges = []
    for n in graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in softmax_out and n.input[1] in inits:
            zero = inits.get(n.input[2]) if len(n.input) > 2 else None
            levels = 255 if zero is not None and zero.dtype == "uint8" else 127
            ranges.append(float(inits[n.input[1]].max()) * levels)
    return ranges


def random_model_rows(args, work: Path, label: str) -> list[dict]:
    """Both quantizers on one random-weight model, sharing each calibration; against FP32 on random images."""
    import numpy as np

    from sladkit.export.onnx import export_onnx, onnxruntime_session, run_onnx
    from sladkit.export.qdq_check import check_tensorrt_qdq
    from sladkit.export.quantize import unshare_initializers
    from sladkit.export.simplify import simplify_onnx

    name, size, kwargs = RANDOM_MODELS[label]
    folder = work / label
    folder.mkdir(parents=True)
    export_onnx(_common.random_classifier(name, size, kwargs), folder / "raw.onnx", image_size=size, opset=17)
    simplify_onnx(folder / "raw.onnx", folder / "fp32.onnx")
    unshare_initializers(folder / "fp32.onnx", folder / "unshared.onnx")
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((args.random_calib_images, 3, size, size), dtype=np.float32)
    evals = rng.standard_normal((args.random_eval_images, 3, size, size), dtype=np.float32)
    reference = run_onnx(onnxruntime_session(folder / "fp32.onnx"), evals, batch=16)
    rows = []
    methods = args.calib_methods.split(",")
    for method in methods[:1] if args.smoke else methods:
        calibration, calib_s, calib_mb = in_fresh_process(
            _calibrate, folder / "unshared.onnx", calib, method, folder / f"{method}.ranges.json"
        )
        for quantizer in args.quantizers.split(","):
            out = folder / f"{quantizer}-{method}.onnx"
            _, quant_s, quant_mb = in_fresh_process(
                _quantize, quantizer, folder / "unshared.onnx", out, calibration
            )
            logits = run_onnx(onnxruntime_session(out), evals, batch=16)
            cosine = (logits * reference).sum(1) / (
                np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1)
            )
            ranges = softmax_ranges(out)
            seen = [
                calibration.amax[t]
                for t in softmax_outputs(folder / "unshared.onnx")
                if t in calibration.amax
            ]
            rows.append(
                {
                    "model": label,
                    "quantizer": quantizer,
                    "calib": method,
                    "agreement": round(100.0 * float((logits.argmax(1) == reference.argmax(1)).mean()), 2),
                    "cosine_mean": round(float(cosine.mean()), 4),
                    "cosine_min": round(float(cosine.min()), 4),
                    "rel_l2_error": round(
                        float(np.linalg.norm(logits - reference) / np.linalg.norm(reference)), 4
                    ),
                    "softmax_amax": [round(min(ranges), 4), round(max(ranges), 4)] if ranges else None,
                    "softmax_max_seen": [round(min(seen), 4), round(max(seen), 4)] if seen else None,
                    "tensorrt_problems": len(check_tensorrt_qdq(out)),
                    "dq_feeds": qdq_placement(out),
                    "calibration_s": calib_s,
                    "calibration_peak_mb": calib_mb,
                    "quantize_s": quant_s,
                    "quantize_peak_mb": quant_mb,
                    "eval_images": len(evals),
                    "calib_images": len(calib),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.train_epochs, args.train_images, args.val_images, args.calib_images = 1, 48, 32, 16
        args.random_calib_images, args.random_eval_images = 8, 16
    machine = _common.machine_info()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sladkit-quant-") as tmp:
        work = Path(tmp)
        for task in [t for t in args.tasks.split(",") if t not in ("", "none")]:
            run_dir = _common.train_synthetic(
                work / f"run-{task}",
                args.smoke,
                epochs=args.train_epochs,
                train_images=args.train_images,
                val_images=args.val_images,
                task=task,
            )
            methods = args.calib_methods.split(",")
            cases = [
                (quantizer, method, fallback)
                for quantizer in args.quantizers.split(",")
                for method in (methods[:1] if args.smoke else methods)
                for fallback in (False, True)
            ]
            for quantizer, method, fallback in cases:
                budget = args.budget if fallback else 100.0
                row = export(
                    args,
                    run_dir,
                    work / f"{task}-{quantizer}-{method}-{fallback}",
                    target="jetson-orin",
                    calib_method=method,
                    max_accuracy_drop=budget,
                    quantizer=quantizer,
                )
                artifact = "qdq" if quantizer == "sladkit" else f"qdq ({quantizer})"
                rows.append(
                    {"task": task, "artifact": artifact, "calib": method, "fallback": fallback, **row}
                )
                print(json.dumps(rows[-1]), flush=True)
            method = DEFAULT_CALIB_METHOD  # the CPU artifact as `sladkit export --target cpu` makes it
            row = export(
                args,
                run_dir,
                work / f"{task}-cpu",
                target="cpu",
                calib_method=method,
                max_accuracy_drop=100.0,
            )
            artifact = f"cpu-int8 ({row['form']})" if row.get("form") else "cpu-int8"
            rows.append({"task": task, "artifact": artifact, "calib": method, "fallback": False, **row})
            print(json.dumps(rows[-1]), flush=True)
        random_rows = [
            row
            for label in filter(None, args.random_models.split(","))
            for row in random_model_rows(args, work, label)
        ]
    cpu_rows = [r for r in rows if r["artifact"].startswith("cpu-int8") and r["ok"]]
    report = {
        "name": "quantization",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "total_s": round(time.perf_counter() - started, 1),
        "targets": [
            {
                "target": f"{r['task']}: CPU INT8 accuracy drop <= 0.5 points",
                "met": r["drop_points"] <= 0.5,
                "detail": f"{r['fp32']:.2f} -> {r['int8']:.2f} ({r['drop_points']:+.2f})",
            }
            for r in cpu_rows
        ],
        "rows": rows,
        "random_model_rows": random_rows,
    }
    _common.write_results(args.results, "quantization", report, markdown(report))
    return report


def markdown(report: dict) -> list[str]:
    a = report["args"]
    lines = _common.report_header("Quantization: INT8 against FP32 on the downstream tasks", report)
    lines += [
        f"Command: `{report['command']}`. One SLAD run per task ({a['train_epochs']} epochs, "
        f"{a['train_images']} training images), the student exported; INT8 vs FP32 on {a['val_images']} "
        f"validation images; {a['calib_images']} calibration images (training split). Fallback: "
        f"`--max-accuracy-drop {a['budget']}` (without: 100, nothing kept in float). Metric: top-1 % (cls), "
        f"mIoU % (seg); agreement: share of images (pixels) with the same class. "
        f"Benchmark time {report['total_s'] / 60:.1f} min.",
    ]
    if report["rows"]:
        lines += [
            "",
            "| task | artifact | calibration | fallback | FP32 | INT8 | drop (points) | agreement % "
            "| blocks in float | calibration s | export s | DequantizeLinear feeds |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for r in report["rows"]:
        head = f"| {r['task']} | {r['artifact']} | {r['calib']} | {'yes' if r['fallback'] else 'no'} "
        if not r["ok"]:
            lines.append(head + f"| export refused: {r['error']} | | | | | | {r['export_s']} | |")
            continue
        blocks = ", ".join(r["float_blocks"]) or "–"
        calib = "–" if r["calibration_s"] is None else f"{r['calibration_s']}"
        feeds = ", ".join(f"{op} {n}" for op, n in r.get("dq_feeds", {}).items()) or "–"
        lines.append(
            head + f"| {r['fp32']:.2f} | {r['int8']:.2f} | {r['drop_points']:+.2f} | {r['agreement']:.1f} "
            f"| {blocks} | {calib} | {r['export_s']} | {feeds} |"
        )
    lines += random_model_markdown(report)
    lines += ["", "## Targets", "", "| target | met | numbers |", "|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |")
    return lines


def random_model_markdown(report: dict) -> list[str]:
    rows = report.get("random_model_rows") or []
    if not rows:
        return []
    a = report["args"]
    lines = [
        "",
        "## Both quantizers on random-weight models (same calibration)",
        "",
        f"{', '.join(sorted({r['model'] for r in rows}))}: random weights, LayerScale 1.0, 100 classes; "
        f"calibration on {a['random_calib_images']} random-normal images, shared by the quantizers; against "
        f"FP32 on {a['random_eval_images']} other random images (ONNX Runtime, CPU). Softmax amax: the range "
        "the Q/DQ model gives the Softmax outputs (scale x 127, or x 255 for UINT8; min–max over the attention "
        "blocks), against the largest attention probability the calibration saw: equal is max calibration, "
        "below it clips the largest attention weights. Peak MB: RSS of the fresh process that ran the step "
        "(its imports included).",
        "",
        "| model | quantizer | calibration | top-1 agreement % | cosine mean (min) | rel. L2 error | Softmax amax "
        "(largest seen) "
        "| TensorRT Q/DQ problems | calibration s / peak MB | quantize s / peak MB | DequantizeLinear feeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        amax = "–" if r["softmax_amax"] is None else "–".join(f"{v:g}" for v in r["softmax_amax"])
        if r.get("softmax_max_seen"):
            amax += " (" + "–".join(f"{v:g}" for v in r["softmax_max_seen"]) + ")"
        feeds = ", ".join(f"{op} {n}" for op, n in r["dq_feeds"].items()) or "–"
        lines.append(
            f"| {r['model']} | {r['quantizer']} | {r['calib']} | {r['agreement']:.1f} | {r['cosine_mean']:.4f} "
            f"({r['cosine_min']:.4f}) | {r['rel_l2_error']:.4f} | {amax} | {r['tensorrt_problems']} "
            f"| {r['calibration_s']} / {r['calibration_peak_mb']:.0f} | {r['quantize_s']} / "
            f"{r['quantize_peak_mb']:.0f} | {feeds} |"
        )
    return lines


if __name__ == "__main__":
    main()

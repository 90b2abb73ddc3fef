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
- `--target cpu --precision int8` (the static U8S8 CPU artifact, calibrated the same way).

The numbers are the bundle manifest's checks (INT8 vs FP32 metric on the validation split, top-1 / pixel
agreement, blocks kept in float), its calibration time, and the Q/DQ placement of the INT8 model: the
DequantizeLinear nodes counted by the op type they feed.

Run:  .venv/bin/python benchmarks/quantization.py
      .venv/modelopt/bin/python benchmarks/quantization.py --tasks cls --calib-methods entropy --quantizers sladkit,modelopt
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

CALIB_METHODS = ("entropy", "minmax", "percentile")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--tasks", default="cls,seg")
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
    return p.parse_args(argv)


def train_run(args, task: str, out: Path) -> Path:
    from sladkit.config import TrainConfig
    from sladkit.train import run

    values = dict(
        task=task,
        epochs=args.train_epochs,
        synthetic_train=args.train_images,
        synthetic_val=args.val_images,
        out=str(out),
        progress=False,
    )
    values.update(_common.pair_options(args.smoke))
    if args.smoke:
        values.update(batch_size=16)
    return run(TrainConfig(**values)).run_dir


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
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.train_epochs, args.train_images, args.val_images, args.calib_images = 1, 48, 32, 16
    machine = _common.machine_info()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sladkit-quant-") as tmp:
        work = Path(tmp)
        for task in args.tasks.split(","):
            run_dir = train_run(args, task, work / f"run-{task}")
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
            method = args.calib_methods.split(",")[0]
            row = export(
                args,
                run_dir,
                work / f"{task}-cpu",
                target="cpu",
                calib_method=method,
                max_accuracy_drop=100.0,
            )
            rows.append({"task": task, "artifact": "cpu-int8", "calib": method, "fallback": False, **row})
            print(json.dumps(rows[-1]), flush=True)
    cpu_rows = [r for r in rows if r["artifact"] == "cpu-int8" and r["ok"]]
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
        "",
        "| task | artifact | calibration | fallback | FP32 | INT8 | drop (points) | agreement % | blocks in float "
        "| calibration s | export s | DequantizeLinear feeds |",
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
    lines += ["", "## Targets", "", "| target | met | numbers |", "|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |")
    return lines


if __name__ == "__main__":
    main()

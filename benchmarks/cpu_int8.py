"""CPU INT8: the bundle's CPU INT8 forms (ONNX Runtime static U8S8, OpenVINO S8S8) against ORT FP32 and ORT dynamic.

Models: the embedded default's student (sladkit_vit_96_p8, 32 px) and a ViT-S/14-sized student
(vit_small_patch14_dinov2 at 224 px), random weights with LayerScale 1.0. Forms, all made by sladkit's
export functions from the same simplified FP32 ONNX:
  fp32           model.onnx in ONNX Runtime: the reference
  ort-dynamic    `quantize_cpu_dynamic`: ONNX Runtime's `quantize_dynamic` (U8 activations per batch, S8
                 weights, MatMul/Gemm) — what a user gets in one line, and the former CPU artifact
  int8-cpu       `quantize_cpu`: model.int8-cpu.onnx in its static form (U8S8 Q/DQ, per-channel S8 weights,
                 the MatMul/Gemm/Conv that read weights; attention MatMuls float), calibrated on random images
                 here, in ONNX Runtime
  int8-openvino  `quantize_openvino`: model.int8-cpu.onnx in its openvino form (TensorRT's S8S8 placement,
                 attention included), run by OpenVINO's CPU plugin as `sladkit`'s openvino backend runs it
                 (static shapes, f32 precision hint); needs `pip install 'sladkit[openvino]'` (in dev)
  fp32-openvino  model.onnx in OpenVINO (f32): how much of the openvino form's gain is the runtime's
  int8-qdq       the TensorRT Q/DQ form (symmetric S8S8) run on ONNX Runtime, for reference (`--with-qdq`)
The CPU artifact on the ViT-S/14 is the form `sladkit export --cpu-int8-form auto` keeps given these speeds
(`cpu_int8.choose_cpu_form`); the targets are read on it.
Latency: batch 1 and 8, `--threads` ORT threads (spinning as by default; `--no-spinning` turns it off), forms
interleaved (round robin; in each turn untimed runs for `cpu_timing.SETTLE_MS`, at least one, while the previous
form's runtime lets go of the cores, then one timed run: `cpu_timing.timed_turn`, which export's timing uses),
medians and p10-p90 over `--repeats` rounds. Agreement: top-1 agreement and cosine of the logits with FP32 on 32
random images. Peaks, in the same run: ORT MatMul (FP32) and MatMulInteger (U8 x S8 -> S32) on 1024^3,
multiply-accumulates per second (median of 20 interleaved runs); their ratio is what INT8 can gain at most.
Accuracy on real data (`--real-run RUN`, a run trained on a real dataset, e.g. Fashion-MNIST through
`benchmarks/real_data.py`'s recipe): `sladkit.export.run(--target cpu --cpu-int8-form F)` on it for each
calibrated form F, the gate's FP32 and CPU-INT8 metric on the whole val split (the export's own check, with
F's runtime), and ORT dynamic on the same images for comparison.
Targets (ViT-S/14, batch 1 and 8): int8-cpu >= 1.35x faster than ort-dynamic and >= 3x FP32; accuracy drop
<= 0.5 points on the real dataset.

Run:  .venv/bin/python benchmarks/cpu_int8.py [--repeats 20] [--threads 2] [--real-run RUN]
      .venv/bin/python benchmarks/cpu_int8.py --smoke --results /tmp/r   (the tiny model, 2 repeats, small peaks)
Writes <results>/cpu_int8.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sladkit.export.cpu_int8 import choose_cpu_form, quantize_cpu, quantize_cpu_dynamic, quantize_openvino
from sladkit.export.cpu_timing import SETTLE_MS, timed_turn
from sladkit.export.cpu_timing import session as cpu_int8_session
from sladkit.export.onnx import export_onnx, run_onnx
from sladkit.export.quantize import Calibration, quantize_qdq, unshare_initializers
from sladkit.export.simplify import simplify_onnx
from sladkit.runtime.backends.onnxruntime import session_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

MODELS = {
    "tiny-student-32px": ("sladkit_vit_96_p8", 32, {"init_values": 1.0}),
    "vit-s14-224px": ("vit_small_patch14_dinov2", 224, {"init_values": 1.0}),
}
TARGET_VS_DYNAMIC, TARGET_VS_FP32, TARGET_DROP = 1.35, 3.0, 0.5
#: each form's runtime, and the export form (`--cpu-int8-form`) it is
OPENVINO_FORMS = ("int8-openvino", "fp32-openvino")
EXPORT_FORM = {"int8-cpu": "static", "ort-dynamic": "dynamic", "int8-openvino": "openvino"}


SPINNING = True  # --no-spinning: ORT's intra-op threads do not spin after each run (see --help)


def form_session(form: str, path: Path, threads: int):
    """The form's runtime on `path` as sladkit runs it (`cpu_timing.session`), ORT spinning as `--spinning` says."""
    runtime = "openvino" if form in OPENVINO_FORMS else "onnxruntime"
    return cpu_int8_session(path, runtime, threads, spinning=SPINNING)


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__.split("-")[0]


def session(model, threads: int, spinning: bool | None = None) -> ort.InferenceSession:
    """ONNX Runtime on a file or serialized model, with sladkit's session options (spinning per `--spinning`
    unless `spinning` says)."""
    source = str(model) if isinstance(model, Path) else model
    options = session_options(threads, spinning=SPINNING if spinning is None else spinning)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def interleaved_ms(runs: dict, repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Round robin over `runs` (name -> callable), `repeats` rounds, one timed run of each per turn after its
    settling runs (`cpu_timing.timed_turn`: the previous form's runtime may still hold the cores), ms."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name] += timed_turn(fn, 1)
    return times


def spread(times: list[float]) -> tuple[float, float, float]:
    deciles = statistics.quantiles(times, n=10)
    return statistics.median(times), deciles[0], deciles[-1]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def peaks(threads: int, n: int = 1024, repeats: int = 20) -> dict:
    """FP32 MatMul and U8S8 MatMulInteger multiply-accumulate rates of ONNX Runtime's CPU kernels, spinning off
    whatever `--spinning` says: these are kernel rates, and with it on the two sessions' threads competed (FP32
    72-150 GMAC/s against 157-158 with it off, on 2026-12-08)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    cases = {  # kind: (op, input type, weight, input, output type)
        "fp32": (
            "MatMul",
            TensorProto.FLOAT,
            rng.standard_normal((n, n)).astype(np.float32),
            rng.standard_normal((n, n)).astype(np.float32),
            TensorProto.FLOAT,
        ),
        "int8": (
            "MatMulInteger",
            TensorProto.UINT8,
            rng.integers(-127, 128, (n, n)).astype(np.int8),
            rng.integers(0, 256, (n, n)).astype(np.uint8),
            TensorProto.INT32,
        ),
    }
    runs = {}
    for kind, (op, in_type, w, x, out_type) in cases.items():
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "w"], ["y"])],
            kind,
            [helper.make_tensor_value_info("a", in_type, [n, n])],
            [helper.make_tensor_value_info("y", out_type, [n, n])],
            [numpy_helper.from_array(w, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        sess = session(model.SerializeToString(), threads, spinning=False)
        runs[kind] = lambda sess=sess, x=x: sess.run(None, {"a": x})
    times = interleaved_ms(runs, repeats)
    rate = {k: n**3 / (statistics.median(v) / 1e3) / 1e9 for k, v in times.items()}
    return {
        "shape": [n, n, n],
        "fp32_gmac_s": round(rate["fp32"], 1),
        "int8_gmac_s": round(rate["int8"], 1),
        "int8_over_fp32": round(rate["int8"] / rate["fp32"], 2),
        "uptime": uptime(),
    }


def model_forms(tmp: Path, label: str, with_qdq: bool, calib_method: str) -> dict[str, Path]:
    name, size, kwargs = MODELS[label]
    export_onnx(_common.random_classifier(name, size, kwargs), tmp / "raw.onnx", image_size=size, opset=17)
    simplify_onnx(tmp / "raw.onnx", tmp / "fp32.onnx")
    unshare_initializers(tmp / "fp32.onnx", tmp / "unshared.onnx")
    forms = {
        "fp32": tmp / "fp32.onnx",
        "ort-dynamic": tmp / "ort-dynamic.onnx",
        "int8-cpu": tmp / "int8-cpu.onnx",
    }
    quantize_cpu_dynamic(tmp / "fp32.onnx", forms["ort-dynamic"])
    calib = np.random.default_rng(1).standard_normal((16, 3, size, size)).astype(np.float32)
    calibration = Calibration.run(tmp / "unshared.onnx", calib, calib_method, tmp / "ranges.json")
    quantize_cpu(tmp / "unshared.onnx", forms["int8-cpu"], calibration)
    if openvino_version():
        forms["int8-openvino"] = tmp / "int8-openvino.onnx"
        quantize_openvino(tmp / "unshared.onnx", forms["int8-openvino"], calibration)
        forms["fp32-openvino"] = forms["fp32"]
    else:
        print(
            "openvino is not installed: its forms are left out (pip install 'sladkit[openvino]')", flush=True
        )
    if with_qdq:
        forms["int8-qdq"] = tmp / "int8-qdq.onnx"
        quantize_qdq(tmp / "unshared.onnx", forms["int8-qdq"], calibration)
    return forms


def latency_rows(label: str, forms: dict[str, Path], args) -> list[dict]:
    size = MODELS[label][1]
    rng = np.random.default_rng(0)
    sessions = {form: form_session(form, path, args.threads) for form, path in forms.items()}
    check = rng.standard_normal((32, 3, size, size)).astype(np.float32)
    outputs = {form: run_onnx(s, check, batch=8) for form, s in sessions.items()}
    reference = outputs["fp32"]
    rows = []
    for batch in (1, 8):
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        before = uptime()
        runs = {form: (lambda s=s, x=x: s.run(None, {"images": x})) for form, s in sessions.items()}
        times = interleaved_ms(runs, args.repeats)
        after = uptime()
        medians = {form: statistics.median(t) for form, t in times.items()}
        for form, t in times.items():
            median, p10, p90 = spread(t)
            out = outputs[form]
            cosine = float(np.sum(out * reference) / (np.linalg.norm(out) * np.linalg.norm(reference)))
            rows.append(
                {
                    "model": label,
                    "batch": batch,
                    "form": form,
                    "median_ms": round(median, 2),
                    "p10_ms": round(p10, 2),
                    "p90_ms": round(p90, 2),
                    "speedup_vs_fp32": round(medians["fp32"] / median, 3),
                    "speedup_vs_dynamic": round(medians["ort-dynamic"] / median, 3),
                    "top1_agreement_vs_fp32": round(
                        100.0 * float(np.mean(out.argmax(1) == reference.argmax(1))), 1
                    ),
                    "cosine_vs_fp32": round(cosine, 5),
                    "size_mb": round(forms[form].stat().st_size / 1e6, 2),
                    "uptime_before": before,
                    "uptime_after": after,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def real_accuracy(run_dir: Path, tmp: Path, threads: int) -> dict:
    """Export `run_dir` for the CPU target in each calibrated form and read the gate's numbers; ORT dynamic on
    the same images."""
    from sladkit.bundle import ACCURACY_BATCH
    from sladkit.config import ExportConfig
    from sladkit.export import run
    from sladkit.export.data import validation_arrays
    from sladkit.metrics import task_metric
    from sladkit.models.run_model import load_run_model

    per_form = {}
    for form in ("static", "openvino") if openvino_version() else ("static",):
        out = tmp / f"bundle-{form}"
        started = time.perf_counter()
        config = ExportConfig(
            run_dir=str(run_dir), target="cpu", out=str(out), eval_images=100_000, cpu_int8_form=form
        )
        result = run(config)
        check = result.manifest["checks"]["int8_cpu_vs_fp32"]
        per_form[form] = {
            "runtime": check["runtime"],
            "int8_cpu_metric": check["int8_metric"],
            "drop_points": check["drop_points"],
            "drop_ci95": check["drop_ci95"],
            "top1_agreement": check["top1_agreement"],
            "float_blocks": check["float_blocks"],
            "export_seconds": round(time.perf_counter() - started, 1),
        }
    _, run_config = load_run_model(run_dir)
    images, targets = validation_arrays(run_config, 100_000)
    quantize_cpu_dynamic(out / "model.onnx", tmp / "dynamic.onnx")
    dynamic = run_onnx(session(tmp / "dynamic.onnx", threads), images, batch=ACCURACY_BATCH).argmax(1)
    fp32 = run_onnx(session(out / "model.onnx", threads), images, batch=ACCURACY_BATCH).argmax(1)
    dynamic_metric = task_metric(dynamic, targets, run_config["num_classes"])
    return {
        "run": str(run_dir),
        "data": run_config["data"],
        "images": len(images),
        "calibration": result.manifest["calibration"],
        "fp32_metric": check["fp32_metric"],
        "forms": per_form,
        "ort_dynamic_metric": round(dynamic_metric, 4),
        "ort_dynamic_drop_points": round(check["fp32_metric"] - dynamic_metric, 4),
        "ort_dynamic_agreement": round(100.0 * float(np.mean(dynamic == fp32)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--calib-method", default="minmax", help="for the random-weight models")
    parser.add_argument("--with-qdq", action="store_true", help="also time the TensorRT S8S8 Q/DQ form")
    parser.add_argument("--real-run", type=Path, help="a run trained on a real dataset: accuracy drop")
    parser.add_argument(
        "--spinning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let ORT's intra-op threads spin after each run (ORT's default, and sladkit's in profile and "
        "export; --no-spinning turns it off, as this benchmark did until 2026-12-07: it slows ORT at batch 1, "
        "the demo student 0.35 against 0.25 ms). Each turn's settling runs keep one session's spinning threads "
        "off the next one's timed run",
    )
    args = parser.parse_args()
    global SPINNING
    SPINNING = args.spinning
    peak_size = 1024
    if args.smoke:
        args.models, args.repeats, args.real_run, peak_size = "tiny-student-32px", 2, None, 128

    start, load_start = uptime(), _common.load_average()
    peak = peaks(args.threads, n=peak_size)
    print(json.dumps(peak), flush=True)
    rows = []
    real = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label in args.models.split(","):
            (tmp / label).mkdir()
            forms = model_forms(tmp / label, label, args.with_qdq, args.calib_method)
            rows += latency_rows(label, forms, args)
        if args.real_run:
            (tmp / "real").mkdir()
            real = real_accuracy(args.real_run, tmp / "real", args.threads)
            print(json.dumps(real), flush=True)
    peak_end = peaks(args.threads, n=peak_size)
    machine = {
        "processor": _common.cpu_name(),
        "cores": os.cpu_count(),
        "vnni": _has_flag("avx512_vnni") or _has_flag("avx_vnni"),
        "spinning": SPINNING,
        "settle_ms": SETTLE_MS,
        "threads": args.threads,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "openvino": openvino_version(),
        "torch": torch.__version__,
        "uptime_start": start,
        "uptime_end": uptime(),
        "loadavg_start": load_start,
        "loadavg_end": _common.load_average(),
    }
    artifact = artifact_form(rows)
    targets = _targets(rows, real, artifact)
    args.results.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": machine,
        "command": _common.command_line(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "peaks": [peak, peak_end],
        "rows": rows,
        "real": real,
        "artifact_form": artifact,
        "targets": targets,
    }
    (args.results / "cpu_int8.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.results / "cpu_int8.md").write_text(_markdown(data))
    print(_markdown(data))


def artifact_form(rows: list[dict], model: str = "vit-s14-224px") -> str | None:
    """The benchmark form (e.g. int8-openvino) that `--cpu-int8-form auto` keeps given `model`'s measured
    speed-ups (every form taken to pass the gate), or None when `model` was not run."""
    speed = {}
    for r in rows:
        if r["model"] == model and r["form"] in EXPORT_FORM:
            speed.setdefault(EXPORT_FORM[r["form"]], {})[str(r["batch"])] = r["speedup_vs_fp32"]
    if not speed:
        return None
    chosen = choose_cpu_form(speed, list(speed))
    return next(form for form, export_form in EXPORT_FORM.items() if export_form == chosen)


def _targets(rows: list[dict], real: dict | None, artifact: str | None) -> list[dict]:
    out = []
    for r in rows:
        if r["model"] != "vit-s14-224px" or r["form"] != artifact:
            continue
        for key, goal, what in (
            ("speedup_vs_dynamic", TARGET_VS_DYNAMIC, "ORT dynamic"),
            ("speedup_vs_fp32", TARGET_VS_FP32, "ORT FP32"),
        ):
            out.append(
                {
                    "target": f"ViT-S/14 batch {r['batch']}: the CPU artifact ({artifact}) >= {goal}x {what}",
                    "measured": f"{r[key]:.2f}x",
                    "met": r[key] >= goal,
                }
            )
    form = real and real["forms"].get(EXPORT_FORM.get(artifact or "", ""))
    if form:
        out.append(
            {
                "target": f"accuracy drop <= {TARGET_DROP} points on {Path(real['data'].get('source', '?')).name} "
                f"({artifact}, {form['runtime']})",
                "measured": f"{form['drop_points']:.2f} points (95 % CI {form['drop_ci95']})",
                "met": form["drop_points"] <= TARGET_DROP,
            }
        )
    return out


def _markdown(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# CPU INT8: the bundle's CPU INT8 forms (ORT static U8S8, OpenVINO S8S8) against ORT FP32 and ORT dynamic",
        "",
        *([_common.SMOKE_NOTE, ""] if data.get("args", {}).get("smoke") else []),
        f"Machine: {m['processor']}, {m['cores']} cores (VNNI: {m['vnni']}), {m['threads']} ORT threads; "
        f"onnxruntime {m['onnxruntime']}, openvino {m.get('openvino') or 'not installed'} (f32 precision hint, "
        f"{m['threads']} threads), torch {m['torch']}. Command: `{data['command']}`.",
        f"`uptime` at start: `{m['uptime_start']}`; at end: `{m['uptime_end']}` (the load of each row is in "
        "cpu_int8.json; above 2, other jobs shared the 2 cores: read the ratios, not the absolute times).",
        "",
        "## Peaks (ORT kernels, {0} x {0} x {0}, median of 20 interleaved runs, spinning off)".format(
            data["peaks"][0]["shape"][0]
        ),
        "",
        "| when | FP32 MatMul GMAC/s | INT8 MatMulInteger (U8S8) GMAC/s | INT8 / FP32 | uptime |",
        "|---|---|---|---|---|",
    ]
    for when, p in zip(("start", "end"), data["peaks"], strict=True):
        lines.append(
            f"| {when} | {p['fp32_gmac_s']} | {p['int8_gmac_s']} | {p['int8_over_fp32']}x | `{p['uptime']}` |"
        )
    lines += [
        "",
        "## Latency (medians, p10-p90 in brackets, forms interleaved) and agreement with FP32 (32 random images)",
        "",
        "ORT intra-op thread spinning: "
        + (
            "on (ORT's default, as `sladkit profile` and export's timing run it)."
            if data["machine"].get("spinning", False)
            else "off (`session.intra_op.allow_spinning = 0` in every session, `--no-spinning`)."
        )
        + f" Each form's turn: untimed runs for {data['machine'].get('settle_ms', 0):g} ms (at least one), then "
        "one timed run: the previous form's runtime keeps its threads spinning for a while after a run and "
        'slowed the next form\'s first runs (`cpu_int8_forms.md`, "Timing several runtimes in one process").',
        "",
        "| model | batch | form | median ms (p10-p90) | vs FP32 | vs ORT dynamic | top-1 agreement | cosine | MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['form']} | {r['median_ms']:.2f} ({r['p10_ms']:.2f}-{r['p90_ms']:.2f}) "
            f"| {r['speedup_vs_fp32']:.2f}x | {r['speedup_vs_dynamic']:.2f}x | {r['top1_agreement_vs_fp32']:.0f} % "
            f"| {r['cosine_vs_fp32']:.4f} | {r['size_mb']} |"
        )
    if data.get("artifact_form"):
        lines += [
            "",
            f"The CPU artifact on the ViT-S/14: **{data['artifact_form']}** (the form `--cpu-int8-form auto` keeps "
            "given these speed-ups, `cpu_int8.choose_cpu_form`).",
        ]
    real = data["real"]
    if real:
        lines += [
            "",
            f"## Accuracy on real data ({real['images']} val images of `{real['data'].get('source', '?')}`)",
            "",
            f"`sladkit export --target cpu --cpu-int8-form F` (calibration: {real['calibration']}), the gate's "
            f"numbers; FP32 {real['fp32_metric']:.2f} %.",
            "",
            "| form | runtime | INT8 % | drop, points (95 % CI) | agreement with FP32 | blocks kept float |",
            "|---|---|---|---|---|---|",
        ]
        for form, f in real["forms"].items():
            lines.append(
                f"| {form} | {f['runtime']} | {f['int8_cpu_metric']:.2f} | {f['drop_points']:.2f} "
                f"({f['drop_ci95']}) | {f['top1_agreement']:.1f} % | {f['float_blocks'] or 'none'} |"
            )
        lines.append(
            f"| dynamic (ORT `quantize_dynamic`) | onnxruntime | {real['ort_dynamic_metric']:.2f} | "
            f"{real['ort_dynamic_drop_points']:.2f} | {real['ort_dynamic_agreement']:.1f} % | none |"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in data["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def _has_flag(flag: str) -> bool:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and flag in line.split() for line in cpuinfo.splitlines())


if __name__ == "__main__":
    main()

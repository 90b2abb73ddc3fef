"""CPU INT8 against FP32 in ONNX Runtime: latency at batch 1 and 8, medians over repeats, ratios in one run.

Models: the embedded default's student (sladkit_vit_96_p8, 32 px) and a ViT-S/14-sized student
(vit_small_patch14_dinov2 at 224 px, random weights with LayerScale 1.0). Forms compared, all made by
sladkit's export functions:
  fp32        model.onnx as exported and simplified
  int8-cpu    `quantize_cpu` (dynamic: U8 activations per batch, S8 weights, MatMul/Gemm) — the bundle's
              model.int8-cpu.onnx
  int8-qdq    the TensorRT Q/DQ form (symmetric S8S8, per-channel) run on ONNX Runtime, for reference
Also top-1 agreement of each INT8 form with FP32 on random inputs.

Run:  .venv/bin/python benchmarks/cpu_int8.py [--repeats 30] [--threads 2]
Writes benchmarks/results/cpu_int8.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from sladkit.export.onnx import export_onnx, run_onnx
from sladkit.export.quantize import Calibration, quantize_cpu, quantize_qdq, unshare_initializers
from sladkit.export.simplify import simplify_onnx
from sladkit.models.backbones import create_backbone
from sladkit.models.heads import TaskModel, create_head

RESULTS = Path(__file__).parent / "results"
MODELS = {
    "tiny-student-32px": ("sladkit_vit_96_p8", 32, {"init_values": 1.0}),
    "vit-s14-224px": ("vit_small_patch14_dinov2", 224, {"init_values": 1.0}),
}


def build(name: str, size: int, kwargs: dict) -> TaskModel:
    torch.manual_seed(0)
    backbone = create_backbone(name, role="student", image_size=size, pretrained=False, kwargs=kwargs)
    grid = backbone.patch_embed.grid_size
    head = create_head(
        "cls", backbone.embed_dim, 100, num_prefix=backbone.num_prefix_tokens, grid=grid, pool="cls+avg"
    )
    return TaskModel(backbone, head).eval()


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latency_ms(sess: ort.InferenceSession, x: np.ndarray, repeats: int) -> list[float]:
    for _ in range(3):
        sess.run(None, {"images": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, {"images": x})
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()

    rows = []
    load_start = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label in args.models.split(","):
            name, size, kwargs = MODELS[label]
            model = build(name, size, kwargs)
            export_onnx(model, tmp / "raw.onnx", image_size=size, opset=17)
            simplify_onnx(tmp / "raw.onnx", tmp / "fp32.onnx")
            quantize_cpu(tmp / "fp32.onnx", tmp / "int8-cpu.onnx")
            unshare_initializers(tmp / "fp32.onnx", tmp / "unshared.onnx")
            rng = np.random.default_rng(0)
            calib = rng.standard_normal((16, 3, size, size)).astype(np.float32)
            calibration = Calibration.run(tmp / "unshared.onnx", calib, "minmax", tmp / "ranges.json")
            quantize_qdq(tmp / "unshared.onnx", tmp / "int8-qdq.onnx", calibration)
            check = rng.standard_normal((32, 3, size, size)).astype(np.float32)
            reference = run_onnx(session(tmp / "fp32.onnx", args.threads), check).argmax(1)
            for batch in (1, 8):
                x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
                medians = {}
                # interleave the forms, so that drifts of the machine hit all of them alike
                samples = {form: [] for form in ("fp32", "int8-cpu", "int8-qdq")}
                sessions = {form: session(tmp / f"{form}.onnx", args.threads) for form in samples}
                for _ in range(3):
                    for form, sess in sessions.items():
                        samples[form] += latency_ms(sess, x, max(1, args.repeats // 3))
                for form, times in samples.items():
                    medians[form] = statistics.median(times)
                    spread = (statistics.quantiles(times, n=10)[0], statistics.quantiles(times, n=10)[-1])
                    agreement = 100.0 * float(np.mean(run_onnx(sessions[form], check).argmax(1) == reference))
                    rows.append(
                        {
                            "model": label,
                            "form": form,
                            "batch": batch,
                            "median_ms": round(medians[form], 3),
                            "p10_ms": round(spread[0], 3),
                            "p90_ms": round(spread[1], 3),
                            "speedup_vs_fp32": round(medians["fp32"] / medians[form], 3),
                            "top1_agreement_vs_fp32": round(agreement, 2),
                            "size_mb": round((tmp / f"{form}.onnx").stat().st_size / 1e6, 2),
                        }
                    )
                    print(json.dumps(rows[-1]))
    machine = {
        "processor": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "load_average_start_end": [load_start, [round(v, 2) for v in os.getloadavg()]],
    }
    command = f".venv/bin/python benchmarks/cpu_int8.py --repeats {args.repeats} --threads {args.threads}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_int8.json").write_text(
        json.dumps({"machine": machine, "command": command, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# CPU INT8 against FP32 (ONNX Runtime)",
        "",
        f"Machine: {machine['processor']}, {machine['cores']} cores, {args.threads} ORT threads; "
        f"onnxruntime {machine['onnxruntime']}, torch {machine['torch']}. Command: `{command}`.",
        f"Latency medians over {args.repeats} runs (interleaved across forms), p10–p90 in brackets; random weights.",
        f"Load average (1, 5, 15 min) at start and end: {machine['load_average_start_end']} "
        "(above 2 cores' worth, other jobs shared the machine: read the ratios, not the absolute times).",
        "",
        "| model | batch | form | median ms (p10–p90) | speed-up vs FP32 | top-1 agreement | MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['form']} | {r['median_ms']:.2f} ({r['p10_ms']:.2f}–{r['p90_ms']:.2f}) "
            f"| {r['speedup_vs_fp32']:.2f}x | {r['top1_agreement_vs_fp32']:.0f} % | {r['size_mb']} |"
        )
    (RESULTS / "cpu_int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()

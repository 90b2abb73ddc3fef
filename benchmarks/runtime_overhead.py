"""Runtime overheads, measured as ratios in one run (medians over interleaved repeats):

1. the profiler's own overhead: `sladkit profile`'s timed loop (`time_backend`) against a bare ONNX Runtime
   `session.run` loop on the same session and batch (target: under 2 % of the measured latency);
2. `predict`'s preprocessing (decode + resize + crop + normalise of one image file) against inference at
   batch 1 (target: under 10 %), for a ViT-S/14-sized student at 224 px (random weights).

Run:  .venv/bin/python benchmarks/runtime_overhead.py [--repeats 7] [--iterations 50]
      .venv/bin/python benchmarks/runtime_overhead.py --smoke --results /tmp/r   (a 32 px model, 2 repeats)
Writes <results>/runtime_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sladkit.data.transforms import transform_config
from sladkit.export.onnx import export_onnx, set_metadata
from sladkit.runtime import load
from sladkit.runtime.profiler import ProfileConfig, time_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def export_vit_s(folder: Path, size: int = 224, smoke: bool = False) -> Path:
    """A ViT-S/14 (random weights) with sladkit's metadata; smoke: a depth-2 tiny ViT at 32 px instead."""
    name, kwargs = "vit_small_patch14_dinov2", {"init_values": 1.0}
    if smoke:
        name, size, kwargs = "sladkit_vit_96_p8", 32, {"init_values": 1.0, "depth": 2}
    path = folder / "vit_s14.onnx"
    export_onnx(_common.random_classifier(name, size, kwargs), path, image_size=size, opset=17)
    transforms = transform_config(
        image_size=size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875
    )
    set_metadata(
        path,
        {
            "task": "cls",
            "labels": [f"c{i}" for i in range(100)],
            "transforms": transforms,
            "preprocess_in_graph": False,
        },
    )
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.iterations = 2, 3

    machine = _common.machine_info(threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = load(export_vit_s(tmp, smoke=args.smoke), threads=args.threads)
        image_path = tmp / "photo.jpg"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)).save(image_path, quality=90)
        batch = model.preprocess([image_path])
        session = model.backend.session
        config = ProfileConfig(batches=(1,), warmup=5, iterations=args.iterations)

        bare, profiled, preprocess, inference = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so drifts of the machine hit both alike
            for _ in range(5):
                session.run(None, {"images": batch})
            start = time.perf_counter()
            for _ in range(args.iterations):
                session.run(None, {"images": batch})
            bare.append((time.perf_counter() - start) * 1e3 / args.iterations)
            samples = time_backend(model, batch, config).samples_ms
            profiled.append(statistics.mean(samples))
            t0 = time.perf_counter()
            for _ in range(10):
                model.preprocess([image_path])
            preprocess.append((time.perf_counter() - t0) * 1e3 / 10)
            t0 = time.perf_counter()
            for _ in range(10):
                model.infer(batch)
            inference.append((time.perf_counter() - t0) * 1e3 / 10)
        model.close()

    result = {
        "bare_loop_ms": statistics.median(bare),
        "profiler_loop_ms": statistics.median(profiled),
        "profiler_overhead_pct": 100.0 * (statistics.median(profiled) / statistics.median(bare) - 1.0),
        "preprocess_ms": statistics.median(preprocess),
        "inference_b1_ms": statistics.median(inference),
        "preprocess_pct_of_inference": 100.0 * statistics.median(preprocess) / statistics.median(inference),
    }
    result = {k: round(v, 3) for k, v in result.items()}
    report = {
        "name": "runtime_overhead",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "result": result,
    }
    _common.write_results(args.results, "runtime_overhead", report, markdown(report))
    return report


def markdown(report: dict) -> list[str]:
    result, a = report["result"], report["args"]
    model = "a depth-2 tiny ViT, 32 px (smoke)" if a["smoke"] else "ViT-S/14 student, 224 px"
    lines = _common.report_header(f"Runtime overheads ({model}, ONNX Runtime FP32, batch 1)", report)
    return lines + [
        f"Command: `{report['command']}`. {a['threads']} ORT threads; medians of {a['repeats']} interleaved "
        "repeats.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| bare `session.run` loop | {result['bare_loop_ms']:.2f} ms | |",
        f"| `sladkit profile` timed loop | {result['profiler_loop_ms']:.2f} ms | |",
        f"| profiler overhead | {result['profiler_overhead_pct']:+.2f} % | < 2 % |",
        f"| predict preprocessing (640x480 JPEG → {'32' if a['smoke'] else '224'} crop) | "
        f"{result['preprocess_ms']:.2f} ms | |",
        f"| inference, batch 1 | {result['inference_b1_ms']:.2f} ms | |",
        f"| preprocessing / inference | {result['preprocess_pct_of_inference']:.2f} % | < 10 % |",
    ]


if __name__ == "__main__":
    main()

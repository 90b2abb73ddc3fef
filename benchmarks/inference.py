"""Inference speed of the student and the teacher: PyTorch eager, ONNX Runtime FP32, CPU INT8, TensorRT Q/DQ.

A run of the tiny pretrained pair (SLAD, synthetic classification, `--train-epochs`) is exported twice per
model with sladkit's public API (`sladkit.export.run`): `--target cpu --precision int8` (model.onnx FP32 +
model.int8-cpu.onnx in its static U8S8 form, `--cpu-int8-form static`) and `--target jetson-orin --precision int8`
(model.int8.onnx, the explicit Q/DQ artifact meant for TensorRT, here run on ONNX Runtime's CPU provider
as a reference). Forms, each at batch 1 and 8 and with 1 and 2 threads:

  torch-fp32   PyTorch eager on the merged model (`sladkit.runtime.load(run_dir)` for the student; the
               teacher through `sladkit.models.run_model.load_run_model(role="teacher")` + `merge_adapters`,
               which is what the torch backend does, because `runtime.load` has no teacher option)
  ort-fp32     model.onnx through `sladkit.runtime.load(bundle)`
  ort-int8-cpu model.int8-cpu.onnx
  ort-int8-qdq model.int8.onnx (TensorRT's form on the CPU: not what it is made for)

Latency: median over `--repeats` rounds; in each round every form runs `--iterations` calls in turn
(interleaved), so drifts of a shared machine hit all forms alike, after a 0.1 s pause that lets the
previous form's spinning worker threads go idle. Ratios against torch-fp32 (and ORT FP32).
Achieved GFLOP/s (GOP/s for INT8): the model's multiply-add count (analytic: patch embedding, qkv, attention,
projection, MLP, head; 2 ops per multiply-add) / latency, against this machine's peak measured in the same
run: a 1024^3 FP32 matrix multiply in torch, and a 1024^3 uint8 x int8 MatMulInteger in ONNX Runtime, both
with the same thread count.

Run:  .venv/bin/python benchmarks/inference.py
      .venv/bin/python benchmarks/inference.py --smoke --results /tmp/r
Writes <results>/inference.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

FORMS = ("torch-fp32", "ort-fp32", "ort-int8-cpu", "ort-int8-qdq")
SETTLE_S = 0.1  # pause before each form's timed calls


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--repeats", type=int, default=9, help="interleaved rounds; the median is reported")
    p.add_argument("--iterations", type=int, default=30, help="calls per form and round")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--train-epochs", type=int, default=2, help="epochs of the run that gets exported")
    return p.parse_args(argv)


def export_bundles(run_dir: Path, work: Path, role: str, smoke: bool) -> dict[str, Path]:
    from sladkit.config import ExportConfig
    from sladkit.export import run

    common = dict(
        run_dir=str(run_dir),
        model=role,
        precision="int8",
        calib_images=32 if smoke else 256,
        eval_images=32 if smoke else 300,
        max_accuracy_drop=100.0,  # speed only; accuracy is the quantization benchmark's
        build_engine="never",
    )
    # the static form, as this benchmark's `ort-int8-cpu` row has always been (the other CPU INT8 forms and
    # export's choice among them: benchmarks/cpu_int8.py)
    cpu_config = ExportConfig(target="cpu", out=str(work / f"{role}-cpu"), cpu_int8_form="static", **common)
    cpu = run(cpu_config).bundle
    orin = run(ExportConfig(target="jetson-orin", out=str(work / f"{role}-orin"), **common)).bundle
    return {"cpu": cpu, "orin": orin}


def vit_macs(run_config: dict, role: str) -> dict:
    """Multiply-adds of one image through the ViT + head (analytic; LayerNorm, softmax, GELU left out)."""
    import timm

    import sladkit.models.backbones  # noqa: F401  (registers the tiny models)

    spec = run_config["models"][role]
    train = run_config["train"]
    kwargs = train[f"{role}_kwargs"]
    model = timm.create_model(train[role], num_classes=0, img_size=run_config["image_size"], **kwargs)
    d, depth = model.embed_dim, len(model.blocks)
    patch = model.patch_embed.patch_size[0]
    grid = run_config["image_size"] // patch
    n = grid * grid + model.num_prefix_tokens
    hidden = model.blocks[0].mlp.fc1.out_features
    per_block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * hidden
    macs = grid * grid * 3 * patch * patch * d + depth * per_block + 2 * d * run_config["num_classes"]
    return {"embed_dim": d, "depth": depth, "tokens": n, "macs": macs, "spec": spec}


class PeakMeter:
    """This machine's peak, measured by large matrix multiplies between the timing rounds (best seen).

    FP32: a 1024^3 torch.mm; INT8: a 1024^3 uint8 x int8 MatMulInteger in ONNX Runtime; the same thread
    count as the forms timed. Sampled throughout the run so that a busy moment of a shared machine does not
    set the peak; the best sample is kept.
    """

    SIZE = 1024

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.a, self.b = torch.randn(self.SIZE, self.SIZE), torch.randn(self.SIZE, self.SIZE)
        self.x = np.random.default_rng(0).integers(0, 256, (self.SIZE, self.SIZE), dtype=np.uint8)
        self.sessions: dict[int, object] = {}
        self.best: dict[int, dict[str, float]] = {}

    def _session(self, threads: int):
        if threads not in self.sessions:
            import onnxruntime as ort
            from onnx import TensorProto, helper, numpy_helper

            rng = np.random.default_rng(1)
            weight = numpy_helper.from_array(rng.integers(-127, 128, (self.SIZE,) * 2, dtype=np.int8), "B")
            graph = helper.make_graph(
                [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
                "peak",
                [helper.make_tensor_value_info("A", TensorProto.UINT8, [self.SIZE, self.SIZE])],
                [helper.make_tensor_value_info("Y", TensorProto.INT32, [self.SIZE, self.SIZE])],
                [weight],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            self.sessions[threads] = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            self.sessions[threads].run(None, {"A": self.x})
        return self.sessions[threads]

    def sample(self, threads: int, repeats: int = 2) -> None:
        self.torch.set_num_threads(threads)
        session = self._session(threads)
        ops = 2 * self.SIZE**3
        best = self.best.setdefault(threads, {"fp32_gflops": 0.0, "int8_gops": 0.0})
        for _ in range(repeats):
            start = time.perf_counter()
            self.torch.mm(self.a, self.b)
            best["fp32_gflops"] = max(best["fp32_gflops"], ops / (time.perf_counter() - start) / 1e9)
            start = time.perf_counter()
            session.run(None, {"A": self.x})
            best["int8_gops"] = max(best["int8_gops"], ops / (time.perf_counter() - start) / 1e9)


class TorchTeacher:
    """The teacher's merged PyTorch model, with the runtime model's `infer` (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        import torch

        from sladkit.models.run_model import load_run_model, merge_adapters

        model, _ = load_run_model(run_dir, role="teacher")
        self.model, self.torch = merge_adapters(model), torch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    def close(self) -> None:
        pass


def load_forms(run_dir: Path, bundles: dict[str, Path], role: str, threads: int) -> dict:
    from sladkit.runtime import load

    eager = load(run_dir, backend="torch", threads=threads) if role == "student" else TorchTeacher(run_dir)
    return {
        "torch-fp32": eager,
        "ort-fp32": load(bundles["cpu"], model="model.onnx", threads=threads),
        "ort-int8-cpu": load(bundles["cpu"], model="model.int8-cpu.onnx", threads=threads),
        "ort-int8-qdq": load(bundles["orin"], model="model.int8.onnx", threads=threads),
    }


def time_forms(
    forms: dict, x: np.ndarray, threads: int, repeats: int, iterations: int, peak: PeakMeter
) -> dict[str, list]:
    """Per-call latency (ms) of each form: one sample per round, forms interleaved within each round,
    and a peak sample after each round."""
    import torch

    samples = {name: [] for name in forms}
    for model in forms.values():  # warm-up
        torch.set_num_threads(threads)
        for _ in range(3):
            model.infer(x)
    for _ in range(repeats):
        for name, model in forms.items():
            torch.set_num_threads(threads)
            # let the previous form's idle worker threads stop spinning (ORT's intra-op pool, OpenMP):
            # otherwise they steal the cores from the next form at 2 threads on 2 cores
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            for _ in range(iterations):
                model.infer(x)
            samples[name].append((time.perf_counter() - start) * 1e3 / iterations)
        peak.sample(threads)
    return samples


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        args.repeats, args.iterations, args.train_epochs, args.threads = 2, 3, 1, "1"
    machine = _common.machine_info()
    started = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    timings, models, peak = [], {}, PeakMeter()
    with tempfile.TemporaryDirectory(prefix="sladkit-inference-") as tmp:
        work = Path(tmp)
        run_dir = _common.train_synthetic(
            work / "run",
            args.smoke,
            epochs=args.train_epochs,
            train_images=64 if args.smoke else 800,
            val_images=32 if args.smoke else 300,
        )
        run_config = json.loads((run_dir / "config.json").read_text())
        size = run_config["image_size"]
        for role in ("student", "teacher"):
            bundles = export_bundles(run_dir, work, role, args.smoke)
            models[role] = vit_macs(run_config, role)
            for threads in thread_counts:
                forms = load_forms(run_dir, bundles, role, threads)
                for batch in batches:
                    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
                    samples = time_forms(forms, x, threads, args.repeats, args.iterations, peak)
                    timings.append((role, threads, batch, samples))
                    print(
                        role,
                        threads,
                        batch,
                        {k: statistics.median(v) for k, v in samples.items()},
                        flush=True,
                    )
                for model in forms.values():
                    model.close()
    peaks = peak.best
    rows = []
    for role, threads, batch, samples in timings:
        med = {name: statistics.median(v) for name, v in samples.items()}
        for name, values in samples.items():
            p10, p90 = _common.p10_p90(values)
            ops = 2 * models[role]["macs"] * batch / (med[name] / 1e3) / 1e9
            peak_ops = peaks[threads]["int8_gops" if "int8" in name else "fp32_gflops"]
            rows.append(
                {
                    "model": role,
                    "form": name,
                    "threads": threads,
                    "batch": batch,
                    "median_ms": round(med[name], 4),
                    "p10_ms": round(p10, 4),
                    "p90_ms": round(p90, 4),
                    "speedup_vs_torch": round(med["torch-fp32"] / med[name], 3),
                    "speedup_vs_ort_fp32": round(med["ort-fp32"] / med[name], 3),
                    "achieved_gops": round(ops, 2),
                    "peak_gops": round(peak_ops, 1),
                    "fraction_of_peak": round(ops / peak_ops, 4),
                    "fraction_of_fp32_peak": round(ops / peaks[threads]["fp32_gflops"], 4),
                }
            )
    target_rows = [
        r for r in rows if r["model"] == "student" and r["form"] == "ort-int8-cpu" and r["batch"] == 1
    ]
    report = {
        "name": "inference",
        "command": _common.command_line(),
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "total_s": round(time.perf_counter() - started, 1),
        "models": {k: {kk: vv for kk, vv in v.items() if kk != "spec"} for k, v in models.items()},
        "peaks": {str(k): {kk: round(vv, 1) for kk, vv in v.items()} for k, v in peaks.items()},
        "targets": [
            {
                "target": f"student CPU INT8 >= 2x ONNX Runtime FP32 at batch 1 ({r['threads']} thread(s))",
                "met": r["speedup_vs_ort_fp32"] >= 2.0,
                "detail": f"{r['speedup_vs_ort_fp32']:.2f}x",
            }
            for r in target_rows
        ],
        "rows": rows,
    }
    _common.write_results(args.results, "inference", report, markdown(report))
    return report


def markdown(report: dict) -> list[str]:
    a, m = report["args"], report["models"]
    lines = _common.report_header(
        "Inference: student and teacher, PyTorch eager / ONNX Runtime FP32 / INT8", report
    )
    lines += [
        f"Command: `{report['command']}`. Median over {a['repeats']} interleaved rounds of {a['iterations']} "
        f"calls (p10–p90 over rounds in brackets). Random-normal inputs of the run's image size. "
        f"Benchmark time {report['total_s'] / 60:.1f} min.",
        "",
        "Models: "
        + "; ".join(
            f"{role}: width {v['embed_dim']}, depth {v['depth']}, {v['tokens']} tokens, "
            f"{v['macs'] / 1e6:.1f} M multiply-adds per image"
            for role, v in m.items()
        )
        + ".",
        "",
        "Peaks measured in this run (best of 2 samples after every timing round, 1024³): "
        + "; ".join(
            f"{t} thread(s): FP32 {p['fp32_gflops']} GFLOP/s (torch mm), INT8 {p['int8_gops']} GOP/s "
            "(ORT MatMulInteger)"
            for t, p in report["peaks"].items()
        )
        + ". Fraction of peak: FP32 forms against the FP32 peak, INT8 forms against the INT8 peak.",
        "",
        "| model | threads | batch | form | median ms (p10–p90) | vs torch | vs ORT FP32 | G(FL)OP/s | of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['batch']} | {r['form']} | {r['median_ms']:.3f} "
            f"({r['p10_ms']:.3f}–{r['p90_ms']:.3f}) | {r['speedup_vs_torch']:.2f}x | "
            f"{r['speedup_vs_ort_fp32']:.2f}x | {r['achieved_gops']:.1f} | {100 * r['fraction_of_peak']:.1f} % |"
        )
    lines += ["", "## Targets", "", "| target | met | numbers |", "|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |")
    return lines


if __name__ == "__main__":
    main()

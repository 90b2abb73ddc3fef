"""`sladkit profile`, `eval` and `predict` through the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sladkit.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory, cpu_bundle):
    """A classification folder in the training layout, images of another size than the model's."""
    labels = json.loads((cpu_bundle / "manifest.json").read_text())["labels"]
    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(0)
    for label in labels[:3]:
        (root / "val" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                root / "val" / label / f"{i}.png"
            )
    return root


def test_profile_table_json_and_plot(cpu_bundle, run_dir, val_folder, tmp_path):
    report, plot = tmp_path / "report.json", tmp_path / "plot.png"
    result = invoke("profile", run_dir, cpu_bundle, "--batch", "1,2", "--warmup", "2", "--iterations", "5",
                    "--data", val_folder, "--json", report, "--plot", plot)  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split()[:4] == ["artifact", "backend", "prec", "batch"]
    assert len(lines) == 2 + 3 * 2 + 2  # header, rule, (run + two bundle models) x two batch sizes, notes
    assert "1.00x" in lines[2] and "n/a" in lines[2]  # ratios against the first artifact; no power here
    assert lines[-1].startswith("img/s: images / wall time of the timed loop; host MB:")
    data = json.loads(report.read_text())
    rows = data["results"]
    # the CPU INT8 model runs with the runtime its form was made for, which export's timing chose
    int8_runtime = json.loads((cpu_bundle / "manifest.json").read_text())["checks"]["int8_cpu_vs_fp32"][
        "runtime"
    ]
    assert {r["backend"] for r in rows} == {"torch", "onnxruntime", int8_runtime}
    assert {"min", "mean", "p50", "p90", "p95", "p99", "max"} == set(rows[0]["latency_ms"])
    assert all(r["iterations"] == 5 and r["warmup"] == 2 and r["throughput"] > 0 for r in rows)
    for r in rows:  # measured: images over the timed loop's wall time, which holds the five calls
        assert r["throughput"] == pytest.approx(r["batch"] * 5 / r["wall_s"], rel=1e-3)
        assert r["throughput"] <= r["batch"] * 1e3 / r["latency_ms"]["mean"] * 1.001
    assert all(r["host_mb"] == r["host_memory"]["added_mb"] >= 0 and r["host_memory"]["method"] for r in rows)
    assert data["versions"]["onnxruntime"] and isinstance(data["machine"]["load_average"], list)
    assert rows[0]["power"]["available"] is False and "tegrastats" in rows[0]["power"]["reason"]
    assert rows[0]["accuracy"]["images"] == 6 and len(rows[0]["accuracy"]["ci95"]) == 2
    assert data["machine"]["jetson"]["jetson"] is False
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_backends_says_why_not():
    result = invoke("profile", "--list-backends")
    assert result.exit_code == 0
    assert "onnxruntime  available" in result.output
    assert (
        "tensorrt     unavailable" in result.output and "tensorrt" in result.output.split("unavailable", 1)[1]
    )


def test_eval_agrees_with_the_export_check(cpu_bundle, val_folder):
    result = invoke("eval", cpu_bundle, "--data", val_folder)
    assert result.exit_code == 0, result.output
    assert "acc" in result.output and "on 6 images" in result.output
    result = invoke("eval", cpu_bundle, "--data", "synthetic", "--limit", "32")
    manifest = json.loads((cpu_bundle / "manifest.json").read_text())
    expected = manifest["checks"]["fp32"]["metric"]  # export measured the same 32 validation images
    assert f"acc {expected:.2f} % on 32 images" in result.output
    # The dynamically quantized CPU model takes its activation ranges from each batch: export and eval run it
    # at one batch (sladkit.bundle.ACCURACY_BATCH), so they report one number.
    result = invoke(
        "eval", cpu_bundle, "--model", "model.int8-cpu.onnx", "--data", "synthetic", "--limit", "32"
    )
    expected = manifest["checks"]["int8_cpu_vs_fp32"]["int8_metric"]
    assert f"acc {expected:.2f} % on 32 images" in result.output, result.output


def test_predict_json_lines_and_segmentation_masks(cpu_bundle, val_folder, tmp_path):
    image = next((val_folder / "val").rglob("*.png"))
    result = invoke("predict", cpu_bundle, image, "--top-k", "2")
    record = json.loads(result.output.strip())
    assert record["image"] == str(image) and record["task"] == "cls" and len(record["top"]) == 2


def test_segmentation_predict_writes_masks_and_overlays(tmp_path):
    from sladkit.config import ExportConfig, TrainConfig
    from sladkit.export import run as export
    from sladkit.train import run as train

    kw = {"depth": 2, "init_values": 1.0}
    train(TrainConfig(task="seg", out=str(tmp_path / "run"), epochs=1, synthetic_train=64, synthetic_val=32,
                      pretrained=False, teacher_kwargs=kw, student_kwargs=kw, progress=False, rank=2))  # fmt: skip
    export(
        ExportConfig(
            run_dir=str(tmp_path / "run"),
            target="cpu",
            precision="fp32",
            out=str(tmp_path / "b"),
            eval_images=16,
        )
    )
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(image)
    result = invoke("predict", tmp_path / "b", image, "--out", tmp_path / "masks")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip())
    mask = np.asarray(Image.open(record["mask"]["file"]))
    assert mask.shape == (32, 32) and (record["mask"]["height"], record["mask"]["width"]) == (32, 32)
    labels = json.loads((tmp_path / "b" / "manifest.json").read_text())["labels"]
    assert mask.max() < 6 and [c["label"] for c in record["classes"]] == labels
    counts = np.bincount(mask.ravel(), minlength=len(labels))
    assert [c["pixels"] for c in record["classes"]] == counts.tolist()
    overlay = Image.open(record["overlay"])  # on the original 40 x 50 image (enlarged x7), with a legend
    assert overlay.size[0] > 40 * 7 and overlay.size[1] == 50 * 7
    result = invoke("eval", tmp_path / "b", "--data", "synthetic", "--limit", "16")
    assert "miou" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "{missing}", "--data", "synthetic"], "does not exist"),
        (["predict", "{bundle}", "{missing}"], "cannot read image"),
        (["profile", "{bundle}", "--backend", "tensorrt"], "backend tensorrt cannot run a bundle"),
        (["profile", "{bundle}", "--backend", "magic"], "unknown backend 'magic'"),
        (["profile"], "give at least one artifact"),
        (["eval", "{bundle}", "--data", "{missing}"], "is not a folder"),
    ],
)
def test_bad_input_is_one_line(cpu_bundle, tmp_path, args, message):
    paths = {"bundle": str(cpu_bundle), "missing": str(tmp_path / "missing.png")}
    result = invoke(*[a.format(**paths) for a in args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_profile_layers_lists_onnxruntime_nodes(cpu_bundle, tmp_path):
    report = tmp_path / "layers.json"
    result = invoke("profile", cpu_bundle / "model.onnx", "--batch", "1", "--warmup", "1", "--iterations", "3",
                    "--layers", "--json", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "slowest layers of model.onnx" in result.output
    layers = json.loads(report.read_text())["results"][0]["extra"]["layers"]
    assert any(row["op"] in ("MatMul", "FusedMatMul", "Gemm") for row in layers)
    assert abs(sum(row["share"] for row in layers) - 1.0) < 0.01
    assert layers == sorted(layers, key=lambda r: -r["mean_ms"])
    matmuls = [r for r in layers if r["op"] in ("MatMul", "Gemm")]
    assert matmuls and all(r["block"] for r in matmuls)  # mapped to the ViT's blocks (sladkit.onnx_blocks)
    assert {"qkv", "fc1", "fc2"} <= {r["role"] for r in matmuls}
    # the by-block line names the ViT's blocks; which one comes first depends on the timings
    by_block = next(line for line in result.output.splitlines() if "by block: " in line)
    assert re.search(r"\bblocks\.\d+ \d+\.\d %", by_block)


def test_layers_need_a_backend_that_reports_them(run_dir):
    result = invoke("profile", run_dir, "--batch", "1", "--warmup", "1", "--iterations", "2", "--layers")
    assert (
        result.exit_code == 1
        and "per-layer profiles need the onnxruntime, openvino or tensorrt backend" in result.output
    )

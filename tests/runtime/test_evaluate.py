"""sladkit/runtime/evaluate.py and eval_report.py: per-class numbers, confusion matrix, top-5, split, JSON, PNG.

The fake model predicts the class painted into each image (tests/runtime/conftest.py), so every number
below is known in advance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sladkit.cli import cli
from sladkit.metrics import task_metric, wilson_interval
from sladkit.runtime.eval_report import confusion_figure, format_eval, write_eval_json
from sladkit.runtime.evaluate import evaluate, evaluate_report

STEP = 30


def _paint(path, red: int, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), (red, 90, 90), dtype=np.uint8)).save(path)


@pytest.fixture
def cls_folder(tmp_path):
    """7 classes, 10 images: class0 has one image predicted as class1, class6 one predicted as class5
    (which is not among the fake's top 5: class5, then 0, 1, 2, 3)."""
    root = tmp_path / "data"
    painted = {0: [0, 0, 1], 1: [1], 2: [2], 3: [3], 4: [4], 5: [5], 6: [5, 6]}
    for label, classes in painted.items():
        for i, c in enumerate(classes):
            _paint(root / "val" / f"class{label}" / f"{i}.png", STEP * c)
    return root


EXPECTED_MATRIX = np.diag([2, 1, 1, 1, 1, 1, 1])
EXPECTED_MATRIX[0, 1] = EXPECTED_MATRIX[6, 5] = 1


def test_classification_report(fake_model, cls_folder):
    report = evaluate_report(fake_model(classes=7), str(cls_folder), batch=4)
    assert report["confusion_matrix"] == EXPECTED_MATRIX.tolist()
    assert report["metric"] == "acc" and report["value"] == 80.0 and report["images"] == 10
    assert report["ci95"] == pytest.approx(wilson_interval(8, 10), abs=1e-4)
    assert report["top5"] == 90.0  # only class6's miss (predicted class5) is outside the top 5
    assert report["split"] == str(cls_folder / "val") and report["data"] == str(cls_folder)
    per_class = {c["label"]: c for c in report["per_class"]}
    assert per_class["class0"] == {"index": 0, "label": "class0", "images": 3, "correct": 2, "acc": 66.6667}
    assert per_class["class6"]["acc"] == 50.0 and per_class["class3"]["acc"] == 100.0
    summary = evaluate(fake_model(classes=7), str(cls_folder))  # what profile --data records: no matrix
    assert "confusion_matrix" not in summary and summary["value"] == 80.0 and summary["top5"] == 90.0


def test_top5_only_with_more_than_5_classes(fake_model, tmp_path):
    for c in range(5):
        _paint(tmp_path / f"class{c}" / "0.png", STEP * c)
    report = evaluate_report(fake_model(classes=5), str(tmp_path))
    assert "top5" not in report and report["value"] == 100.0 and report["split"] == str(tmp_path)


def test_segmentation_report_per_class_iou(fake_model, tmp_path):
    """Left half class 0; right half painted class 1, but its outer two columns are class 2 in the mask."""
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, 4:, 0] = STEP
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, 4:6], mask[:, 6:] = 1, 2
    mask[0] = 255  # ignored
    for folder, array in (("images", image), ("masks", mask)):
        (tmp_path / folder).mkdir()
        Image.fromarray(array).save(tmp_path / folder / "scene.png")
    report = evaluate_report(fake_model(task="seg", classes=3), str(tmp_path))
    assert report["metric"] == "miou" and report["value"] == 50.0 and report["pixels"] == 56
    assert [c["iou"] for c in report["per_class"]] == [100.0, 50.0, 0.0]
    assert [c["pixels"] for c in report["per_class"]] == [28, 14, 14]
    assert report["confusion_matrix"] == [[28, 0, 0], [0, 14, 0], [0, 14, 0]]
    prediction = np.where(np.arange(8) < 4, 0, 1)[None, :].repeat(8, axis=0)
    assert report["value"] == pytest.approx(task_metric(prediction[None], mask[None].astype(np.int64), 3))
    assert "ci95" not in report and "top5" not in report
    text = format_eval("fake.onnx", report)
    assert "IoU %" in text and "confusion matrix (pixels; rows: true class, columns: predicted class" in text


def test_text_json_and_png(fake_model, cls_folder, tmp_path):
    report = evaluate_report(fake_model(classes=7), str(cls_folder))
    text = format_eval("fake.onnx", report).splitlines()
    assert text[0] == (
        f"fake.onnx: acc 80.00 % on 10 images (split: {cls_folder / 'val'}), 95 % Wilson interval 49.02-94.33 %"
    )
    assert text[1] == "top-5 acc 90.00 %"
    assert text[3].split() == ["class", "images", "correct", "acc", "%"]
    assert text[4].split() == ["class0", "3", "2", "66.67"]
    header = text.index("confusion matrix (images; rows: true class, columns: predicted class, by index):")
    assert text[header + 1].split() == [str(i) for i in range(7)]
    assert text[header + 2].split() == ["0", "class0", "2", "1", "0", "0", "0", "0", "0"]
    assert text[header + 8].split() == ["6", "class6", "0", "0", "0", "0", "0", "1", "1"]

    write_eval_json(report, tmp_path / "eval.json", artifact={"name": "fake.onnx", "backend": "fake"})
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["artifact"]["name"] == "fake.onnx" and written["value"] == 80.0 and written["top5"] == 90.0
    assert written["confusion_matrix"]["counts"] == EXPECTED_MATRIX.tolist()
    assert written["confusion_matrix"]["rows"] == "true class" and written["split"] == str(cls_folder / "val")

    pytest.importorskip("matplotlib")
    fig = confusion_figure("fake.onnx", report)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"class{i}" for i in range(7)]
    shares = ax.images[0].get_array()
    assert shares[0].tolist() == pytest.approx([200 / 3, 100 / 3, 0, 0, 0, 0, 0])  # % of each true class
    assert {"2", "1"} <= {t.get_text() for t in ax.texts}  # the counts in the cells
    assert "acc 80.00 % on 10 images, top-5 90.00 %" in ax.get_title() and "split:" in ax.get_title()


def test_many_classes_list_the_largest_confusions():
    matrix = np.diag(np.full(25, 4))
    matrix[3, 7], matrix[9, 2] = 3, 1
    per_class = [{"index": c, "label": f"c{c}", "images": 4, "correct": 4, "acc": 100.0} for c in range(25)]
    report = {"metric": "acc", "value": 99.0, "images": 104, "split": "val", "labels": [f"c{c}" for c in range(25)],
              "per_class": per_class, "confusion_matrix": matrix.tolist()}  # fmt: skip
    text = format_eval("fake.onnx", report).splitlines()
    start = text.index("largest confusions (images; the whole matrix is in --json and --plot):")
    assert [line.split() for line in text[start + 1 :]] == [
        ["true", "predicted", "images"],
        ["c3", "c7", "3"],
        ["c9", "c2", "1"],
    ]


def test_cli_eval_writes_json_and_png(cpu_bundle, tmp_path):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "confusion.png"
    result = CliRunner().invoke(cli, ["eval", str(cpu_bundle), "--data", "synthetic", "--limit", "24",
                                      "--json", str(out_json), "--plot", str(out_png)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "on 24 images (split: synthetic validation scenes of the run)" in result.output
    assert "per class:" in result.output
    report = json.loads(out_json.read_text())
    assert report["images"] == 24 and report["artifact"]["backend"] == "onnxruntime"
    assert np.asarray(report["confusion_matrix"]["counts"]).sum() == 24
    assert len(report["per_class"]) == len(report["labels"]) and ("top5" in report) == (
        len(report["labels"]) > 5
    )
    assert out_png.read_bytes()[:4] == b"\x89PNG"

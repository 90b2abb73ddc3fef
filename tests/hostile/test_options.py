"""Hostile numbers and hand-edited artifacts: out-of-range options, NaN, damaged config.json and manifest.json.

Each row runs a command (or the Python API) the way a careless user would and checks that it stops with one
line naming what was wrong (the option and its allowed range, or the file and its field), exits non-zero,
shows no traceback, and writes nothing: `--out` is not created and the inputs are left as they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sladkit.cli import cli
from sladkit.errors import ConfigError, DataError
from sladkit.runtime.evaluate import evaluate
from sladkit.runtime.predict import predict_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY_KWARGS = {"depth": 2, "init_values": 1.0}  # as in tests/conftest.py

TINY = [
    "--teacher-kwargs", json.dumps(TINY_KWARGS), "--student-kwargs", json.dumps(TINY_KWARGS),
    "--synthetic-train", "32", "--synthetic-val", "16", "--epochs", "1", "--batch-size", "16", "--rank", "2",
    "--no-progress", "--no-pretrained",
]  # fmt: skip


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_refused(result, message: str) -> None:
    """Non-zero exit, one `error:` line holding `message`, no traceback (warnings aside)."""
    lines = [line for line in result.output.splitlines() if line and not line.startswith("warning:")]
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0], result.output


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Out-of-range numbers: refused where the config is built, before anything is loaded or written.

TRAIN_OPTIONS = [
    (["--lr-head", "-0.1"], "--lr-head must be > 0 (got -0.1)"),
    (["--lr-adapter", "0"], "--lr-adapter must be > 0 (got 0.0)"),
    (["--lr-backbone", "-1e-4"], "--lr-backbone must be > 0 (got -0.0001)"),
    (["--alpha", "nan"], "--alpha must be a finite number > 0 (got nan)"),
    (["--temperature", "nan"], "--temperature must be a finite number > 0 (got nan)"),
    (["--lambda-kd", "inf"], "--lambda-kd must be a finite number >= 0 (got inf)"),
    (["--lambda-s", "-1"], "--lambda-s must be >= 0 (got -1.0)"),
    (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0 (got -1.0)"),
    (["--workers", "-1"], "--workers must be >= 0 (got -1)"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0 (got -1.0)"),
    (["--val-fraction", "nan"], "--val-fraction must be a finite number in (0, 1) (got nan)"),
    (["--crop-scale", "0"], "--crop-scale must be in (0, 1] (got 0.0)"),
    (["--lora-dropout", "1"], "--lora-dropout must be in [0, 1) (got 1.0)"),
    (["--seed", "-1"], "--seed must be in [0, 4294967295] (got -1)"),
    (["--epochs", "0"], "--epochs must be >= 1 (got 0)"),
    (["--master-port", "70000"], "--master-port must be in [1, 65535] (got 70000)"),
]


@pytest.mark.parametrize("args, message", TRAIN_OPTIONS, ids=[a[0] for a, _ in TRAIN_OPTIONS])
def test_train_refuses_out_of_range_numbers_before_writing(tmp_path, args, message):
    out = tmp_path / "run"
    assert_refused(invoke("train", *TINY, "--out", out, *args), message)
    assert not out.exists()  # no config.json left behind, so a plain retry is not refused


def test_resume_refuses_out_of_range_numbers_and_leaves_the_run(tmp_path, run_dir):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = snapshot(run)
    assert_refused(invoke("train", "--resume", "--out", run, "--workers", "-1"), "--workers must be >= 0")
    assert snapshot(run) == before


EXPORT_OPTIONS = [
    (["--eval-images", "0"], "--eval-images must be >= 1 (got 0)"),
    (["--calib-images", "4"], "--calib-images must be >= 8 (got 4)"),
    (["--max-accuracy-drop", "nan"], "--max-accuracy-drop must be a finite number (got nan)"),
    (["--workspace-mb", "0"], "--workspace-mb must be >= 1 (got 0)"),
    (["--dla-core", "-1"], "--dla-core must be >= 0 (got -1)"),
]


@pytest.mark.parametrize("args, message", EXPORT_OPTIONS, ids=[a[0] for a, _ in EXPORT_OPTIONS])
def test_export_refuses_out_of_range_numbers_before_writing(tmp_path, run_dir, args, message):
    out = tmp_path / "bundle"
    assert_refused(invoke("export", run_dir, "--out", out, *args), message)
    assert not out.exists()


RUNTIME_OPTIONS = [
    ("profile", ["--iterations", "0"], "--iterations must be >= 1 (got 0)"),
    ("profile", ["--iterations", "-3"], "--iterations must be >= 1 (got -3)"),
    ("profile", ["--duration", "-1"], "--duration must be > 0 (got -1.0)"),
    ("profile", ["--duration", "nan"], "--duration must be a finite number > 0 (got nan)"),
    ("profile", ["--eval-images", "0"], "--eval-images must be >= 1 (got 0)"),
    ("profile", ["--warmup", "-1"], "--warmup must be >= 0 (got -1)"),
    ("profile", ["--threads", "-2"], "--threads must be >= 1 (got -2)"),
    ("profile", ["--batch", "1,0"], "--batch must be >= 1 (got 0)"),
    ("eval", ["--limit", "0"], "--limit must be >= 1 (got 0)"),
    ("eval", ["--limit", "-1"], "--limit must be >= 1 (got -1)"),
    ("eval", ["--batch", "0"], "--batch must be >= 1 (got 0)"),
    ("predict", ["--top-k", "0"], "--top-k must be >= 1 (got 0)"),
    ("predict", ["--top-k", "-3"], "--top-k must be >= 1 (got -3)"),
    ("predict", ["--batch", "0"], "--batch must be >= 1 (got 0)"),
]


def runtime_command(command: str, artifact, image, out: Path) -> list:
    """The command line of `command` on `artifact`, writing to `out` where the command writes."""
    if command == "profile":
        return ["profile", artifact, "--json", out / "report.json", "--plot", out / "plot.png"]
    if command == "eval":
        return ["eval", artifact, "--data", "synthetic"]
    return ["predict", artifact, image, "--out", out]


@pytest.mark.parametrize(
    "command, args, message", RUNTIME_OPTIONS, ids=[f"{c} {' '.join(a)}" for c, a, _ in RUNTIME_OPTIONS]
)
def test_runtime_commands_refuse_out_of_range_numbers(tmp_path, run_dir, image, command, args, message):
    out = tmp_path / "out"
    assert_refused(invoke(*runtime_command(command, run_dir, image, out), *args), message)
    assert not out.exists()


@pytest.fixture(scope="module")
def run_model(run_dir):
    import sladkit.runtime

    with sladkit.runtime.load(run_dir) as model:
        yield model


PYTHON_API = [
    ("predict([])", lambda m, img, out: m.predict([]), DataError, "no images"),
    ("preprocess([])", lambda m, img, out: m.preprocess([]), DataError, "no images"),
    (
        "infer(batch of 0)",
        lambda m, img, out: m.infer(np.zeros((0, 3, 32, 32), np.float32)),
        DataError,
        "empty batch",
    ),
    ("predict(top_k=0)", lambda m, img, out: m.predict([img], top_k=0), ConfigError, "--top-k must be >= 1"),
    ("predict_images([])", lambda m, img, out: list(predict_images(m, [], out=out)), DataError, "no images"),
    (
        "predict_images(batch=0)",
        lambda m, img, out: list(predict_images(m, [img], batch=0, out=out)),
        ConfigError,
        "--batch must be >= 1 (got 0)",
    ),
    (
        "evaluate(limit=0)",
        lambda m, img, out: evaluate(m, "synthetic", limit=0),
        ConfigError,
        "--limit must be >= 1",
    ),
    (
        "evaluate(batch=0)",
        lambda m, img, out: evaluate(m, "synthetic", batch=0),
        ConfigError,
        "--batch must be >= 1",
    ),
]


@pytest.mark.parametrize("call, error, message", [r[1:] for r in PYTHON_API], ids=[r[0] for r in PYTHON_API])
def test_python_api_refuses_empty_input_and_bad_numbers(run_model, image, tmp_path, call, error, message):
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        call(run_model, image, out)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


def test_every_float_option_refuses_nan():
    """NaN and infinity are refused in every float field of every config, whatever its range."""
    import dataclasses
    import typing

    from sladkit import config as configs

    for cls in (configs.TrainConfig, configs.ExportConfig, configs.EvalConfig, configs.ProfileConfig):
        hints = typing.get_type_hints(cls)
        floats = [
            f for f in dataclasses.fields(cls) if float in (hints[f.name], *typing.get_args(hints[f.name]))
        ]
        for f in floats:
            for bad in (float("nan"), float("inf"), float("-inf")):
                with pytest.raises(ConfigError, match=f"{configs.option_flag(f)} must be a finite number"):
                    cls(**{f.name: bad})


# ---------------------------------------------------------------------------------------------------------
# A run folder whose config.json was damaged or edited by hand: one line naming the file and the field.


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _edit(change):
    def apply(path: Path) -> None:
        values = json.loads(path.read_text())
        path.write_text(json.dumps(change(values)))

    return apply


def _image_size_64(values: dict) -> dict:
    values["image_size"] = values["transforms"]["image_size"] = values["train"]["image_size"] = 64
    values["transforms"]["eval"] = {"resize": 64, "center_crop": 64}
    return values


def _classes_10(path: Path) -> None:  # config.json and labels.txt edited alike
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "labels": values["labels"][:10], "num_classes": 10}))
    (path.parent / "labels.txt").write_text("".join(label + "\n" for label in values["labels"][:10]))


def _method(name: str, *, everywhere: bool):
    def change(values: dict) -> dict:
        values["train"]["method"] = name
        if everywhere:  # joint-lora has SLAD's one joint stage, but separate adapters
            values["method"]["name"] = name
        return values

    return change


RUN_CONFIGS = [
    ("truncated", _truncate, "config.json is unreadable"),
    ("a list", _edit(lambda v: [v]), "config.json: the file holds a JSON list"),
    ("no data", _edit(lambda v: {k: x for k, x in v.items() if k != "data"}), "field 'data' is missing"),
    ("no train", _edit(lambda v: {k: x for k, x in v.items() if k != "train"}), "field 'train' is missing"),
    ("rank", _edit(lambda v: {**v, "train": {**v["train"], "rank": 8}}), "field 'train.rank' does not fit"),
    (
        "student",
        _edit(lambda v: {**v, "train": {**v["train"], "student": "sladkit_vit_192_p8"}}),
        "field 'train.student' does not fit",
    ),
    ("class count", _classes_10, "field 'num_classes' does not fit"),
    (
        "labels reversed",
        _edit(lambda v: {**v, "labels": v["labels"][::-1]}),
        "labels.txt and ",
    ),
    ("method name", _edit(_method("joint-lora", everywhere=False)), "field 'method.name' is 'slad'"),
    ("method", _edit(_method("joint-lora", everywhere=True)), "field 'method' is 'joint-lora' but 'models'"),
    ("num_classes only", _edit(lambda v: {**v, "num_classes": 3}), "field 'num_classes' is 3 but 'labels'"),
    ("image size", _edit(_image_size_64), "field 'image_size' does not fit"),
    ("image size only", _edit(lambda v: {**v, "image_size": 64}), "field 'image_size' is 64 but"),
    ("bad rank", _edit(lambda v: {**v, "train": {**v["train"], "rank": -1}}), "--rank must be >= 1 (got -1)"),
]
# `train --resume` takes the classes from the data, not from config.json, so an edited class list (with a
# matching num_classes) does not concern it; every other row applies to every command.
DAMAGED_RUNS = [
    pytest.param(name, message, command, id=f"{name}-{command}")
    for name, _, message in RUN_CONFIGS
    for command in ("export", "predict", "eval", "profile", "resume")
    if (name, command) != ("class count", "resume")
]


@pytest.fixture(scope="module")
def edited_runs(run_dir, tmp_path_factory):
    """One copy of the shared run per row of RUN_CONFIGS, its config.json damaged that way."""
    root = tmp_path_factory.mktemp("edited")
    runs = {}
    for name, damage, _ in RUN_CONFIGS:
        runs[name] = root / name.replace(" ", "-")
        shutil.copytree(run_dir, runs[name])
        damage(runs[name] / "config.json")
    return runs


@pytest.mark.parametrize("name, message, command", DAMAGED_RUNS)
def test_damaged_run_config_is_one_line_naming_the_field(
    edited_runs, image, tmp_path, command, name, message
):
    run, out = edited_runs[name], tmp_path / "out"
    before = snapshot(run)
    if command == "export":
        args = ["export", run, "--out", out, "--target", "cpu", "--precision", "fp32"]
    elif command == "resume":
        args = ["train", "--resume", "--out", run]
    else:
        args = runtime_command(command, run, image, out)
    result = invoke(*args)
    assert_refused(result, message)
    assert str(run / "config.json") in result.output or "--rank" in message
    assert not out.exists() and snapshot(run) == before


# ---------------------------------------------------------------------------------------------------------
# A bundle whose manifest.json is not an object or lacks its artifacts.

MANIFESTS = [
    ("a list", [], "manifest.json holds a JSON list, not an object"),
    ("no artifacts", {}, "field 'artifacts' is missing, empty or malformed"),
    ("empty artifacts", {"artifacts": []}, "field 'artifacts' is missing, empty or malformed"),
    (
        "artifacts a dict",
        {"artifacts": {"model.onnx": {}}},
        "field 'artifacts' is missing, empty or malformed",
    ),
    (
        "entries not objects",
        {"artifacts": ["model.onnx"]},
        "field 'artifacts' is missing, empty or malformed",
    ),
]


@pytest.mark.parametrize("command", ["info", "profile", "eval", "predict"])
@pytest.mark.parametrize("manifest, message", [m[1:] for m in MANIFESTS], ids=[m[0] for m in MANIFESTS])
def test_malformed_manifest_is_one_line(tmp_path, image, command, manifest, message):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    if isinstance(manifest, dict):
        manifest = {"schema": "sladkit-bundle", "schema_version": 1, **manifest}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    args = ["info", bundle] if command == "info" else runtime_command(command, bundle, image, out)
    assert_refused(invoke(*args), message)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# Segmentation masks: a stray value without classes.txt, and a mask of another size than its image in eval.


def _seg_folder(root: Path, *, stray: int | None = None, mask_size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / split / "images" / f"{i}.png"
            )
            mask = np.zeros((mask_size, mask_size), np.uint8)
            mask[: mask_size // 2] = 1 + i % 2  # classes 0, 1, 2
            if stray is not None and split == "train" and i == 3:
                mask[0, 0] = stray
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    return root


def test_a_stray_mask_value_without_classes_txt_is_refused(tmp_path):
    data = _seg_folder(tmp_path / "data", stray=254)
    out = tmp_path / "run"
    result = invoke("train", *TINY, "--task", "seg", "--data", data, "--out", out)
    assert_refused(result, f"mask {data / 'train' / 'masks' / '3.png'} has value 254")
    assert "classes.txt" in result.output and "255 (ignore)" in result.output
    assert not out.exists()


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    from sladkit.config import TrainConfig
    from sladkit.train import run

    out = tmp_path_factory.mktemp("seg") / "run"
    run(TrainConfig(task="seg", out=str(out), epochs=1, synthetic_train=32, synthetic_val=16, batch_size=16,
                    rank=2, pretrained=False, teacher_kwargs=TINY_KWARGS, student_kwargs=TINY_KWARGS,
                    progress=False))  # fmt: skip
    return out


def test_eval_refuses_a_mask_of_another_size_than_its_image(tmp_path, seg_run):
    data = _seg_folder(tmp_path / "data", mask_size=24)
    result = invoke("eval", seg_run, "--data", data)
    assert_refused(result, f"mask {data / 'val' / 'masks' / '0.png'} is 24x24 but its image 0.png is 32x32")

"""The run folder (`sladkit train --out RUN`): its layout and the schema of its `config.json`.

This module is the one definition of the artifact between training and export. `sladkit train` writes it
(`sladkit.train`), `sladkit export` and the runtime's torch backend read it; all of them take the file
names and the validation from here. It needs neither torch nor numpy.

    RUN/
      config.json           "format": "sladkit-run" (the marker --overwrite looks for), task, labels, image
                            size, transforms, data, method, models, checkpoint, train (a TrainConfig)
      labels.txt            one class name per line, the same as config.json's labels
      metrics.jsonl         one JSON object per evaluation (metrics.csv: the same table; tensorboard/:
                            the same numbers as TensorBoard events, with --tensorboard)
      checkpoints/{last,best}/   model.safetensors, optimizer.pt, state.json
      adapters/{teacher,student}/  PEFT adapters + head.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sladkit.config import TrainConfig
from sladkit.errors import ConfigError, RunDirError

FORMAT = "sladkit-run"  # config.json's "format"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
ADAPTERS = "adapters"


def checkpoint_dir(run_dir: str | Path, name: str) -> Path:
    """`RUN/checkpoints/<name>` (name: "last" or "best")."""
    return Path(run_dir) / CHECKPOINTS / name


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a run folder sladkit wrote (its config.json says `"format": "sladkit-run"`)."""
    try:
        return json.loads((Path(path) / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# The fields of a run folder's config.json that later stages read, and their JSON types.
_RUN_FIELDS = {
    "task": str,
    "labels": list,
    "num_classes": int,
    "image_size": int,
    "transforms": dict,
    "data": dict,
    "method": dict,
    "models": dict,
    "train": dict,
}


def read_config(run_dir: str | Path) -> dict:
    """A run folder's config.json after `check_config`; a RunDirError names the file and field otherwise."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} is not a sladkit run folder (no {CONFIG_FILE}); pass the --out folder of `sladkit train`"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(
            f"{path} is unreadable ({e}); restore the file sladkit train wrote, or train again"
        ) from None
    check_config(path, values)
    check_labels_file(Path(run_dir), values["labels"])
    return values


def check_labels_file(run_dir: Path, labels: list[str]) -> None:
    """labels.txt must list config.json's labels, in order: an edit of either one is refused."""
    path = run_dir / LABELS_FILE
    try:
        listed = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(
            f"{path} is missing or unreadable ({e}); restore the run folder sladkit train wrote"
        ) from None
    if listed != labels:
        first = next(
            (i for i, (a, b) in enumerate(zip(listed, labels, strict=False)) if a != b),
            min(len(listed), len(labels)),
        )
        raise RunDirError(
            f"{path} and {run_dir / CONFIG_FILE} disagree on the labels (first at class {first}: "
            f"{listed[first] if first < len(listed) else 'nothing'!r} vs "
            f"{labels[first] if first < len(labels) else 'nothing'!r}); restore the files sladkit train wrote"
        )


def check_config(path: Path, values: Any) -> None:
    """Refuse a config.json that is not what `sladkit train` writes: missing sections, wrong types,
    fields that contradict each other, or a `train` section that is not a valid TrainConfig.

    Whether the models it describes fit the checkpoint is checked where the checkpoint is loaded.
    """

    def invalid(field: str, problem: str) -> RunDirError:
        return RunDirError(
            f"{path}: {field} {problem}; restore the config.json that sladkit train wrote, or train again"
        )

    if not isinstance(values, dict):
        raise invalid("the file", f"holds a JSON {type(values).__name__}, not an object")
    for name, kind in _RUN_FIELDS.items():
        if name not in values:
            raise invalid(f"field '{name}'", "is missing")
        value = values[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise invalid(f"field '{name}'", f"is a {type(value).__name__}, expected a {kind.__name__}")
    if values["task"] not in ("cls", "seg"):
        raise invalid("field 'task'", f"is {values['task']!r}, expected 'cls' or 'seg'")
    labels = values["labels"]
    if len(labels) < 2 or not all(isinstance(label, str) for label in labels):
        raise invalid("field 'labels'", "must list at least 2 class names (strings)")
    if values["num_classes"] != len(labels):
        raise invalid("field 'num_classes'", f"is {values['num_classes']} but 'labels' lists {len(labels)}")
    geometry = values["transforms"].get("eval")
    crop = geometry.get("center_crop") if isinstance(geometry, dict) else None
    if crop != values["image_size"] or values["transforms"].get("image_size") != values["image_size"]:
        raise invalid(
            "field 'image_size'",
            f"is {values['image_size']} but 'transforms' says {values['transforms'].get('image_size')} "
            f"(eval crop {crop})",
        )
    for name in ("teacher_adapter", "student_adapter", "shared"):
        if not isinstance(values["models"].get(name), bool):
            raise invalid(f"field 'models.{name}'", "is missing or not true/false")
    try:
        train = TrainConfig.from_dict(values["train"])
    except (ConfigError, TypeError) as e:
        raise invalid("section 'train'", f"is not a valid training config ({e})") from None
    _check_method(invalid, values, train)
    if train.task != values["task"]:
        raise invalid("field 'train.task'", f"is {train.task!r} but 'task' is {values['task']!r}")
    if train.image_size is not None and train.image_size != values["image_size"]:
        raise invalid(
            "field 'train.image_size'", f"is {train.image_size} but 'image_size' is {values['image_size']}"
        )


def _check_method(invalid, values: dict, train: TrainConfig) -> None:
    """The method recorded three times (train.method, method, models) must be one registered method."""
    from sladkit.train.methods import get_method

    method = get_method(train.method)
    recorded = values["method"]
    if recorded.get("name") != train.method:
        raise invalid(
            "field 'method.name'", f"is {recorded.get('name')!r} but 'train.method' is {train.method!r}"
        )
    if recorded.get("stages") != [vars(stage) for stage in method.stages]:
        raise invalid("field 'method.stages'", f"are not those of method {method.name!r}")
    models = values["models"]
    if models["teacher_adapter"] != method.teacher_adapter or (models["shared"] and not method.shared):
        raise invalid(
            "field 'method'",
            f"is {method.name!r} but 'models' records a teacher adapter: {models['teacher_adapter']}, shared "
            f"adapters: {models['shared']} (that method trains "
            f"{'a teacher adapter' if method.teacher_adapter else 'no teacher adapter'})",
        )

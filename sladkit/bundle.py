"""The deployment bundle (`sladkit export --out BUNDLE`): the schema of its `manifest.json` and its checks.

This module is the one definition of the artifact between export and the runtimes: `sladkit export`
writes it (step 8), `sladkit info`, `profile`, `eval`, `predict` and the Python API read it, all through
the names and checks here (the C++ library mirrors them). `manifest.json` lists every artifact with its
SHA-256; `verify_bundle` refuses a bundle whose schema version or any hash does not match. Engines built
on the device are not in the manifest: each is checked against its own stamp (`sladkit.engine_stamp`).
This module needs neither torch nor onnx.
"""

from __future__ import annotations

import json
from pathlib import Path

from sladkit.engine_stamp import STAMP, is_engine, sha256_file
from sladkit.errors import SladkitError

MANIFEST = "manifest.json"
LABELS_FILE = "labels.txt"
# Export's accuracy checks and the runtime's eval/profile run the model at this batch, so that they report one
# number for any artifact: a dynamically quantized model (model.int8-cpu.onnx in its dynamic form) takes its
# activation ranges from each batch.
ACCURACY_BATCH = 32
SCHEMA = "sladkit-bundle"
SCHEMA_VERSION = 1

# checks.int8_cpu_vs_fp32, the CPU INT8 model (`sladkit.export.cpu_int8`): the accuracy gate's fields
# (fp32_metric, int8_metric, drop_points, drop_ci95, top1_agreement, min_agreement, float_blocks, sensitivity,
# passed), then
#   form              what the model is (one description per form)
#   chosen            its form: one of CPU_INT8_FORMS
#   runtime           the runtime it is made for, gated and timed with: CPU_INT8_RUNTIME[chosen]
#   chosen_by         "measured" (--cpu-int8-form auto) or "--cpu-int8-form static" / "... dynamic"
#   candidates        auto only: per form built, its gate (passed, drop_points, top1_agreement, float_blocks)
#   speed             when measured, else None: batches, repeats (timed rounds), load_average (1/5/15 min when
#                     timing started), cores, median_ms {FP32 or form: {batch: ms}} and speedup_vs_fp32
#                     {form: {batch: FP32 ms / form ms}}; batches are strings (JSON keys)
#   faster_than_fp32  when measured, else None: the chosen form's speed-up is above 1 at every timed batch
CPU_INT8_CHECK = "int8_cpu_vs_fp32"
CPU_INT8_FORMS = ("static", "dynamic", "openvino")
#: the runtime each form is made for: the one export gates and times it with, and `eval` / `profile` / `predict`
#: run it with unless told otherwise (`--backend`)
CPU_INT8_RUNTIME = {"static": "onnxruntime", "dynamic": "onnxruntime", "openvino": "openvino"}
CPU_INT8_FILE = "model.int8-cpu.onnx"
FP32 = "fp32"  # the FP32 model's key in speed.median_ms


def runtime_of(manifest: dict, file: str) -> str | None:
    """The runtime a bundle's model is made for: its CPU INT8 model's form's (`CPU_INT8_RUNTIME`), else None."""
    check = manifest.get("checks", {}).get(CPU_INT8_CHECK) or {}
    return CPU_INT8_RUNTIME.get(check.get("chosen")) if file == CPU_INT8_FILE else None


def speedups_vs_fp32(median_ms: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{form: {batch: FP32 ms / form ms}} for every model of `median_ms` but FP32."""
    base = median_ms[FP32]
    return {
        name: {b: round(base[b] / ms, 3) if ms > 0 else 0.0 for b, ms in per_batch.items()}
        for name, per_batch in median_ms.items()
        if name != FP32
    }


def cpu_int8_check(
    gate: dict,
    *,
    form: str,
    description: str,
    chosen_by: str,
    speed: dict | None = None,
    candidates: dict | None = None,
) -> dict:
    """`checks.int8_cpu_vs_fp32` (the fields above) from the gate's dict and how the form was chosen."""
    check = {
        **gate,
        "form": description,
        "chosen": form,
        "runtime": CPU_INT8_RUNTIME[form],
        "chosen_by": chosen_by,
    }
    if candidates is not None:
        check["candidates"] = candidates
    check["speed"] = speed
    check["faster_than_fp32"] = (
        all(v > 1.0 for v in speed["speedup_vs_fp32"][form].values()) if speed is not None else None
    )
    return check


def cpu_int8_summary(check: dict) -> str:
    """One line: the CPU INT8 model's form, how it was chosen and, when measured, its speed against FP32."""
    line = f"CPU INT8 form: {check['chosen']} ({check['chosen_by']}"
    speed = check.get("speed")
    if not speed:
        return line + "; speed against FP32 not measured)"
    ratios = speed["speedup_vs_fp32"][check["chosen"]]
    load = speed.get("load_average")
    return (
        line
        + f"; {'/'.join(f'{v:.2f}x' for v in ratios.values())} FP32's speed at batch {'/'.join(ratios)}"
        + (f", load {load[0]:.1f}" if load else "")
        + f"); faster_than_fp32: {str(check['faster_than_fp32']).lower()}"
    )


class BundleError(SladkitError):
    """A bundle is missing, tampered with, or of an unknown schema."""


def describe_artifact(folder: Path, name: str, **fields) -> dict:
    path = folder / name
    return {"file": name, "bytes": path.stat().st_size, "sha256": sha256_file(path), **fields}


def is_bundle(path: Path) -> bool:
    """Whether `path` is a bundle sladkit wrote (its manifest.json names the schema): `--overwrite` may replace it."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(bundle: str | Path) -> dict:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{bundle} is not a sladkit bundle (no {MANIFEST}); create one with `sladkit export`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is unreadable ({e}); export the bundle again") from None
    if not isinstance(manifest, dict):
        raise BundleError(
            f"{path} holds a JSON {type(manifest).__name__}, not an object; export the bundle again"
        )
    if manifest.get("schema") != SCHEMA or manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{path} has schema {manifest.get('schema')!r} version {manifest.get('schema_version')!r}; this sladkit "
            f"reads {SCHEMA!r} version {SCHEMA_VERSION}: export the bundle again with this version"
        )
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts or not all(_is_entry(a) for a in artifacts):
        raise BundleError(
            f"{path}: field 'artifacts' is missing, empty or malformed (expected a list of "
            '{"file": ..., "sha256": ...} objects); export the bundle again'
        )
    return manifest


def _is_entry(artifact) -> bool:
    return isinstance(artifact, dict) and isinstance(artifact.get("file"), str)


def verify_bundle(bundle: str | Path) -> dict:
    """The manifest, after checking the schema and every artifact's size and SHA-256.

    Engines and their engine.json are not checked against the manifest: they belong to the device, where
    build_engine.sh rebuilds them, and each engine is checked against its own stamp when it is loaded
    (`sladkit.engine_stamp`).
    """
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    for artifact in manifest["artifacts"]:
        if artifact["file"] == STAMP or is_engine(artifact["file"]):
            continue
        path = bundle / artifact["file"]
        if not path.is_file():
            raise BundleError(f"{path} is listed in the manifest but missing; export the bundle again")
        if path.stat().st_size != artifact["bytes"] or sha256_file(path) != artifact["sha256"]:
            raise BundleError(
                f"{path} does not match its SHA-256 in the manifest (modified or corrupt); export again"
            )
    labels_file = bundle / LABELS_FILE
    if labels_file.is_file() and labels_file.read_text(encoding="utf-8").splitlines() != manifest["labels"]:
        raise BundleError(
            f"{labels_file} and {bundle / MANIFEST} list different labels (edited by hand?); export the bundle again"
        )
    return manifest


ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(float16)": "float16"}


def check_model_io(manifest: dict, model: str | Path, *, labels, inputs, outputs) -> None:
    """The model a runtime loaded is the one the manifest describes: its labels (ONNX metadata), its input's
    name, dtype and shape, and its output's class count. Refuses a mismatch in one line.

    Args:
        manifest: the bundle's manifest.
        model: the model file, for messages.
        labels: the labels in the model's own metadata (None when it has none).
        inputs, outputs: [(name, dtype, shape)] as the runtime reports them (dtype as numpy names it; a
            dimension that is not a number, e.g. the batch, may be any string or None).
    """
    expected = manifest["labels"]

    def refuse(what: str) -> BundleError:
        return BundleError(f"{model} does not fit its bundle's {MANIFEST}: {what}; export the bundle again")

    if labels is not None and list(labels) != expected:
        raise refuse(f"its metadata lists the labels {_short(labels)}, the manifest {_short(expected)}")
    if len(inputs) != 1 or len(outputs) < 1:
        raise refuse(f"it has {len(inputs)} inputs and {len(outputs)} outputs, expected 1 and 1")
    name, dtype, shape = inputs[0]
    spec = manifest["input"]
    if name != spec["name"] or dtype != spec["dtype"]:
        raise refuse(f"its input is {name!r} {dtype}, the manifest says {spec['name']!r} {spec['dtype']}")
    if [d for d in shape[1:]] != list(spec["shape"][1:]):
        raise refuse(f"its input shape is {list(shape)}, the manifest says {spec['shape']}")
    classes = outputs[0][2][1] if len(outputs[0][2]) > 1 else None
    if isinstance(classes, int) and classes != len(expected):
        raise refuse(f"it outputs {classes} classes, the manifest lists {len(expected)} labels")


def _short(labels) -> str:
    labels = list(labels)
    return f"[{', '.join(map(repr, labels[:3]))}{', ...' if len(labels) > 3 else ''}] ({len(labels)})"


def calibration_summary(calibration: dict) -> str:
    """The manifest's `calibration` in one line (`sladkit info`, and export's log when it calibrates)."""
    how = calibration["method"]
    if calibration.get("chosen_by") == "auto":
        errors = ", ".join(f"{m} {v:.4g}" for m, v in calibration["logit_mse"].items())
        how += f" (auto: lowest logit MSE vs FP32 of {errors})"
    return f"{how}, {calibration['images']} images of {calibration['source']}"


def summary(manifest: dict) -> str:
    """A human-readable summary of a bundle."""
    target = manifest["target"]
    inp = manifest["input"]
    lines = [
        f"sladkit bundle ({manifest['task']}, {len(manifest['labels'])} classes) for {target['name']}"
        + (
            f" (TensorRT {target['tensorrt']}, JetPack {target['jetpack']})" if target.get("tensorrt") else ""
        ),
        f"  model: {manifest['source']['model']} of {manifest['source']['run_dir']} ({manifest['source']['method']})",
        f"  input: {inp['name']} {inp['dtype']} {inp['layout']} {inp['shape']}, batch {inp['batch']}",
    ]
    build = manifest.get("engine_build")
    if build:  # what build_engine.sh builds, from the manifest
        b = build["batch"]
        where = f"DLA core {build['dla_core']}" if build["dla_core"] is not None else "GPU"
        typing = "strongly typed" if build["strongly_typed"] else "weakly typed"
        lines.append(
            f"  engine build: {build['engine']} on {where}, batch {b['min']}/{b['opt']}/{b['max']} (min/opt/max), "
            f"{typing}, TensorRT {build['tensorrt']}"
        )
    if manifest.get("calibration"):
        lines.append(f"  calibration: {calibration_summary(manifest['calibration'])}")
    lines.append("  artifacts:")
    for a in manifest["artifacts"]:
        lines.append(
            f"    {a['file']:<24} {a.get('precision', ''):<6} {a['bytes'] / 1e6:8.2f} MB  sha256 {a['sha256'][:12]}"
        )
    checks = manifest.get("checks", {})
    for name, check in checks.items():
        lines.append(f"  check {name}: {json.dumps(check)}")
    if "chosen" in checks.get(CPU_INT8_CHECK, {}):  # bundles from before the choice lack it
        lines.append(f"  {cpu_int8_summary(checks[CPU_INT8_CHECK])}")
    return "\n".join(lines)

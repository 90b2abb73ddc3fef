"""What an artifact path is, and what the runtime needs to know about it (without torch).

`sladkit.runtime.load` accepts a bundle folder (manifest.json), an `.onnx` file (sladkit's metadata), a
TensorRT engine file (stamped in the `engine.json` beside it, see `sladkit.engine_stamp`, and with the bundle's
manifest.json for preprocessing) or a training run folder (config.json; run with torch, as the reference).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from sladkit.engine_stamp import EngineStampError, is_engine, read_stamp, read_stamps
from sladkit.errors import SladkitError

INPUT = "images"
OUTPUT = "logits"


class ArtifactError(SladkitError):
    """An artifact path that cannot be used."""


@dataclass
class Artifact:
    """A loadable model and everything needed to feed it and read its output."""

    kind: str  # bundle | onnx | engine | run
    path: Path  # what the user gave
    model_file: Path | None  # the file a backend loads (None for run folders)
    task: str
    labels: list[str]
    transforms: dict  # sladkit.data.transforms config: the eval resize/crop/normalisation
    in_graph: bool  # preprocessing (normalisation) inside the graph: the input is uint8 NHWC
    precision: str
    batch_max: int | None = None
    manifest: dict = field(default_factory=dict)
    engine_meta: dict | None = None
    runtime: str | None = None  # the backend the model is made for (`bundle.runtime_of`); None: any

    @property
    def image_size(self) -> int:
        return int(self.transforms["eval"]["center_crop"])

    @property
    def name(self) -> str:
        if self.model_file is None or self.model_file == self.path:
            return self.path.name
        return f"{self.path.name}:{self.model_file.name}"


PRECISION_PREFERENCE = ("model.int8-cpu.onnx", "model.onnx")


def resolve(path: str | Path, *, model: str | None = None, verify: bool = True) -> Artifact:
    """Describe the artifact at `path`; `model` picks a file of a bundle (default: its FP32 ONNX)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(
            f"{path} does not exist; pass a bundle folder, an .onnx or .engine file, or a run folder"
        )
    if path.is_dir() and (path / "manifest.json").is_file():
        return _bundle(path, model, verify)
    if path.is_dir() and (path / "config.json").is_file():
        return _run_folder(path)
    if path.is_file() and path.suffix == ".onnx":
        return _onnx_file(path)
    if path.is_file() and is_engine(path):
        return _engine_file(path, verify)
    raise ArtifactError(
        f"{path} is not a sladkit artifact: expected a bundle folder (manifest.json), a run folder (config.json), "
        "an .onnx file or an .engine file"
    )


def _bundle(folder: Path, model: str | None, verify: bool) -> Artifact:
    from sladkit.bundle import read_manifest, runtime_of, verify_bundle

    manifest = verify_bundle(folder) if verify else read_manifest(folder)
    files = {a["file"]: a for a in manifest["artifacts"]}
    name = model or "model.onnx"
    engines = bundle_engines(folder, manifest)
    if name in engines:
        return _engine_file(folder / name, verify, manifest=manifest, given=folder)
    if name not in files:
        models = ", ".join([f for f in files if f.endswith(".onnx")] + engines)
        raise ArtifactError(f"{folder} has no {name}; its models are: {models}")
    return Artifact(
        kind="bundle",
        path=folder,
        model_file=folder / name,
        task=manifest["task"],
        labels=manifest["labels"],
        transforms=manifest["preprocessing"]["transforms"],
        in_graph=manifest["preprocessing"]["in_graph"],
        precision=files[name].get("precision", "fp32"),
        batch_max=None,
        manifest=manifest,
        runtime=runtime_of(manifest, name),
    )


def _onnx_file(path: Path) -> Artifact:
    import onnxruntime as ort

    try:  # onnxruntime reads the metadata; the onnx package may be absent on a device
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = dict(session.get_modelmeta().custom_metadata_map)
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable ONNX model ({str(e).splitlines()[0]})") from None
    if "transforms" not in meta:
        raise ArtifactError(
            f"{path} has no sladkit metadata (task, labels, preprocessing); load its bundle folder"
        )
    return Artifact(
        kind="onnx",
        path=path,
        model_file=path,
        task=meta["task"],
        labels=json.loads(meta["labels"]),
        transforms=json.loads(meta["transforms"]),
        in_graph=json.loads(meta.get("preprocess_in_graph", "false")),
        precision=next((p for p in ("int8", "fp8", "fp16") if p in path.name), "fp32"),  # model.<p>.onnx
    )


def bundle_engines(folder: Path, manifest: dict) -> list[str]:
    """A bundle's engines: listed in its manifest, stamped in its engine.json, or built beside it."""
    names = {a["file"] for a in manifest["artifacts"] if is_engine(a["file"])}
    names |= {p.name for p in folder.iterdir() if p.is_file() and is_engine(p)}
    with contextlib.suppress(EngineStampError):  # a broken engine.json is reported when an engine loads
        names |= set(read_stamps(folder))
    return sorted(names)


def _engine_file(
    path: Path, verify: bool, manifest: dict | None = None, given: Path | None = None
) -> Artifact:
    """An engine and its stamp (engine.json: SHA-256 checked with `verify`), with its bundle's manifest."""
    from sladkit.bundle import read_manifest, verify_bundle

    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; build it with the bundle's build_engine.sh")
    meta = read_stamp(path, verify=verify)
    if manifest is None:
        manifest = (verify_bundle if verify else read_manifest)(path.parent)
    source = meta.get("onnx") or {}  # the bundle file it was built from
    bundled = {a["file"]: a.get("sha256") for a in manifest["artifacts"]}.get(source.get("file"))
    if verify and source.get("sha256") and bundled and bundled != source["sha256"]:
        raise EngineStampError(
            f"{path.name} was built from another {source['file']} than this bundle's (SHA-256 "
            f"{source['sha256'][:12]} in engine.json, {bundled[:12]} in manifest.json); "
            "rebuild it with the bundle's build_engine.sh"
        )
    return Artifact(
        kind="engine",
        path=given or path,
        model_file=path,
        task=manifest["task"],
        labels=manifest["labels"],
        transforms=manifest["preprocessing"]["transforms"],
        in_graph=manifest["preprocessing"]["in_graph"],
        precision=meta["precision"],
        batch_max=((meta.get("input") or {}).get("batch") or {}).get("max"),
        manifest=manifest,
        engine_meta=meta,
    )


def _run_folder(folder: Path) -> Artifact:
    from sladkit.run_folder import read_config

    config = read_config(folder)
    return Artifact(
        kind="run",
        path=folder,
        model_file=None,
        task=config["task"],
        labels=config["labels"],
        transforms=config["transforms"],
        in_graph=False,
        precision="fp32",
    )

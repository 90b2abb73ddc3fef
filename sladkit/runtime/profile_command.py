"""The `sladkit profile` command: expand artifacts, measure each, print one table, write JSON and a plot."""

from __future__ import annotations

from pathlib import Path

import click

from sladkit.config import ProfileConfig
from sladkit.runtime.artifacts import bundle_engines, resolve
from sladkit.runtime.backends import BACKENDS, list_backends
from sladkit.runtime.profiler import (
    example_batch,
    format_table,
    machine_info,
    package_versions,
    profile_model,
    write_json,
)


def list_backends_text() -> str:
    lines = []
    for name, (ok, why) in list_backends().items():
        kinds = ", ".join(BACKENDS[name].artifact_kinds)
        lines.append(
            f"{name:<12} {'available' if ok else 'unavailable'}  (runs: {kinds}){'' if ok else '  — ' + why}"
        )
    return "\n".join(lines)


def expand(paths: list[str], backend: str | None = None) -> list[tuple[str, str | None]]:
    """(path, model file) pairs: a bundle folder stands for each of its models.

    A bundle's engines (listed in its manifest or built beside it by build_engine.sh) that cannot run here,
    and, unless `backend` names one, its models made for a backend that is missing here (the CPU INT8 model's
    openvino form without OpenVINO), are skipped with one line on stderr saying why; every other problem with
    them is an error when loaded.
    """
    from sladkit.bundle import runtime_of, verify_bundle

    items = []
    for path in paths:
        p = Path(path)
        if not (p.is_dir() and (p / "manifest.json").is_file()):
            items.append((path, None))
            continue
        manifest = verify_bundle(p)
        for name in [a["file"] for a in manifest["artifacts"] if a["file"].endswith(".onnx")]:
            runtime = runtime_of(manifest, name)  # e.g. the CPU INT8 model's openvino form
            ok, why = BACKENDS[runtime].availability() if runtime in BACKENDS else (True, "")
            if ok or backend is not None:
                items.append((path, name))
            else:
                click.echo(
                    f"skipping {p / name}: it is made for the {runtime} backend, unavailable here ({why}); "
                    "--backend onnxruntime runs it",
                    err=True,
                )
        engines_ok, why = BACKENDS["tensorrt"].availability()
        for name in bundle_engines(p, manifest):
            if engines_ok:
                items.append((path, name))
            else:
                click.echo(f"skipping {p / name}: the tensorrt backend is unavailable here ({why})", err=True)
    return items


def format_layers(artifact: str, batch: int, layers: list[dict], top: int = 12) -> str:
    """The slowest nodes with the ViT block and role each belongs to, then the time per block."""
    lines = [f"slowest layers of {artifact} (batch {batch}):"]
    for row in layers[:top]:
        where = f"{row.get('block') or '?'} {row.get('role') or ''}".strip()
        lines.append(
            f"  {row['mean_ms']:9.4f} ms  {100 * row['share']:5.1f} %  {row['op']:<12} {where:<22} {row['layer']}"
        )
    per_block: dict[str, float] = {}
    for row in layers:
        per_block[row.get("block") or "?"] = per_block.get(row.get("block") or "?", 0.0) + row["share"]
    shares = sorted(per_block.items(), key=lambda kv: -kv[1])
    lines.append("  by block: " + ", ".join(f"{block} {100 * share:.1f} %" for block, share in shares))
    return "\n".join(lines)


def run_profile(
    paths: list[str], config: ProfileConfig, *, json_path: str | None = None, plot: str | None = None
) -> str:
    """Profile every artifact in `paths` (a bundle stands for each of its models); the report's text.

    Each artifact's host memory is measured from just before its load to the end of its timed runs;
    accuracy (`config.data`) and per-layer times come after, outside that window.
    """
    from sladkit.runtime.backends import create_backend
    from sladkit.runtime.datasets import labelled_images
    from sladkit.runtime.evaluate import evaluate
    from sladkit.runtime.host_memory import HostMemoryWindow
    from sladkit.runtime.model import RuntimeModel

    machine = machine_info()  # before anything runs: the load average is the machine's, not ours
    rows, samples, layer_reports = [], [], []
    first_batch = config.batches[0]
    for path, model_file in expand(paths, config.backend):
        artifact = resolve(path, model=model_file)
        backend = create_backend(artifact, config.backend, threads=config.threads)
        if config.data:  # a bad --data fails now, not after the timed runs
            next(iter(labelled_images(config.data, artifact, limit=1)))
        with HostMemoryWindow() as memory, RuntimeModel(artifact, backend.load()) as model:
            measured = profile_model(model, config, memory=memory)
            if config.data:
                accuracy = evaluate(model, config.data, limit=config.eval_images)
                for row in measured:
                    row.accuracy = accuracy
            if config.layers:
                per_layer = model.backend.layer_profile(example_batch(model, first_batch))
                measured[0].extra["layers"] = per_layer
                layer_reports.append(format_layers(artifact.name, first_batch, per_layer))
        samples += [row.extra.pop("samples_ms", []) for row in measured]
        rows += measured
    versions = package_versions()
    if json_path:
        write_json(rows, json_path, config, machine=machine, versions=versions)
    if plot:
        from sladkit.runtime.profile_plot import write_plot

        write_plot(rows, samples, plot, machine=machine, versions=versions)
    return "\n\n".join([format_table(rows), *layer_reports])

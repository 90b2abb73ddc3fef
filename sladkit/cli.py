"""The `sladkit` command. Each command only parses options, builds a config and calls its stage's `run()`.

The options of `sladkit train` are generated from `TrainConfig`'s fields (names, types, defaults, help),
so the CLI and the Python API cannot drift apart. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
import warnings
from pathlib import Path

import click

from sladkit import __version__
from sladkit.config import (
    EvalConfig,
    ExportConfig,
    PredictConfig,
    ProfileConfig,
    TrainConfig,
    option_flag,
)
from sladkit.errors import ConfigError, SladkitError
from sladkit.export.targets import TARGETS
from sladkit.run_folder import read_config
from sladkit.train.methods import METHODS


class SladkitGroup(click.Group):
    """Prints a SladkitError as one line (the traceback only with --debug) and exits non-zero."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SladkitError as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; continue a training run with --resume", err=True)
            ctx.exit(130)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


@click.group(
    cls=SladkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(__version__, prog_name="sladkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
def cli(debug: bool) -> None:
    """sladkit: SLAD distillation of vision foundation models, exported and profiled for Jetson."""
    warnings.formatwarning = _one_line_warning


def _json_dict(value):
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e}); example: '{{\"depth\": 12}}'") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("expected a JSON object, e.g. '{\"depth\": 12}'")
    return parsed


def config_options(config_cls, *, exclude: tuple[str, ...] = (), choices: dict | None = None):
    """Click options for every field of a config dataclass (`choices`: registries for str fields)."""
    hints = typing.get_type_hints(config_cls)
    choices = choices or {}

    def decorate(func):
        for f in reversed(dataclasses.fields(config_cls)):
            if f.name in exclude:
                continue
            kind = hints[f.name]
            if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
                kind = next(a for a in typing.get_args(kind) if a is not type(None))
            flag = option_flag(f)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs = {
                "default": default,
                "show_default": default not in (None, {}),
                "help": f.metadata["help"]
                + (f" Allowed: {f.metadata['range']}." if f.metadata.get("range") else ""),
            }
            if kind is bool:
                option = click.option(f"{flag}/--no-{flag[2:]}", f.name, **kwargs)
            elif typing.get_origin(kind) is typing.Literal:
                option = click.option(flag, f.name, type=click.Choice(typing.get_args(kind)), **kwargs)
            elif f.name in choices:
                option = click.option(flag, f.name, type=click.Choice(list(choices[f.name])), **kwargs)
            elif kind is dict:
                kwargs["default"] = None
                option = click.option(flag, f.name, callback=lambda c, p, v: _json_dict(v or {}), **kwargs)
            else:
                option = click.option(flag, f.name, type=kind, **kwargs)
            func = option(func)
        return func

    return decorate


def _explicit(ctx: click.Context) -> dict:
    """The options the user typed (not defaults)."""
    source = click.core.ParameterSource
    return {k: v for k, v in ctx.params.items() if ctx.get_parameter_source(k) != source.DEFAULT}


_METHODS_HELP = "\n".join(f"  {name:<13} {m.help}" for name, m in METHODS.items())


@cli.command(
    epilog=f"\b\nMethods (--method):\n{_METHODS_HELP}",
    context_settings={"max_content_width": 110},
)
@config_options(TrainConfig, choices={"method": METHODS})
@click.pass_context
def train(ctx: click.Context, **options) -> None:
    """Adapt a teacher/student pair to a task with SLAD (or a baseline) and write a run folder.

    With no options: the built-in tiny pair, SLAD, synthetic classification, on the CPU in minutes.
    Several GPUs: --devices N (torchrun; also `torchrun --nproc-per-node N -m sladkit train ...`).
    SIGINT/SIGTERM: finish the step, checkpoint, exit 75; continue with --resume.
    """
    config = _resume_config(_explicit(ctx)) if options["resume"] else TrainConfig(**options)
    from sladkit.train import run
    from sladkit.train.distributed import launched_worker
    from sladkit.train.interrupt import TrainingInterrupted

    try:
        result = run(config)
    except TrainingInterrupted as e:  # not an error: a checkpoint was written
        if not (e.quiet or launched_worker()):
            click.echo(str(e), err=True)
        ctx.exit(e.exit_code)
    except SladkitError as e:
        if not launched_worker():
            raise
        ctx.exit(e.exit_code)  # `sladkit train --devices N` reports it in one line, naming the rank
    if result is not None and not launched_worker():  # None in the processes other than rank 0
        click.echo(result.summary())


def _resume_config(explicit: dict) -> TrainConfig:
    """The saved run's config, with the options typed now on top (the run checks they still agree)."""
    if explicit.get("overwrite"):
        raise ConfigError("--resume and --overwrite contradict each other: choose one")
    if "out" not in explicit:
        raise ConfigError("--resume needs --out RUN_FOLDER (the run to continue)")
    out = Path(explicit["out"])
    if not (out / "config.json").is_file():
        raise ConfigError(
            f"nothing to resume in {out} (no config.json); drop --resume to start a new run there"
        )
    saved = read_config(out)["train"]
    return TrainConfig.from_dict({**saved, **explicit})


_TARGETS_HELP = "\n".join(
    f"  {name:<14} {t.description}; {', '.join(t.precisions)}" for name, t in TARGETS.items()
)


@cli.command(epilog=f"\b\nTargets (--target):\n{_TARGETS_HELP}", context_settings={"max_content_width": 110})
@click.argument("run_dir", type=click.Path(file_okay=False))
@config_options(ExportConfig, exclude=("run_dir",), choices={"target": TARGETS})
def export(run_dir: str, **options) -> None:
    """Merge the shared LoRA into a run's student, export ONNX, calibrate INT8, write a deployment bundle.

    Builds the TensorRT engine too where TensorRT and a GPU exist; elsewhere the bundle's build_engine.sh
    holds the trtexec commands to run on the device.
    """
    from sladkit.export import run

    result = run(ExportConfig(run_dir=run_dir, **options))
    click.echo(result.summary())


@cli.command()
@click.argument("bundle", type=click.Path(file_okay=False))
def info(bundle: str) -> None:
    """Print a bundle's summary after verifying its schema, every listed file's SHA-256 and every engine's stamp."""
    from pathlib import Path

    from sladkit.bundle import summary, verify_bundle
    from sladkit.engine_stamp import read_stamp
    from sladkit.runtime.artifacts import bundle_engines

    manifest = verify_bundle(bundle)
    engines = bundle_engines(Path(bundle), manifest)
    for engine in engines:  # built on the device: checked against its own engine.json, not the manifest
        read_stamp(Path(bundle) / engine)
    click.echo(summary(manifest))
    stamped = f"; {len(engines)} engine(s) match their engine.json" if engines else ""
    click.echo(f"  manifest and {len(manifest['artifacts'])} listed files verified (SHA-256){stamped}")


def _batch_list(ctx, param, value: str) -> tuple[int, ...]:
    """Parse MIN,... batch sizes; ProfileConfig checks their range."""
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated positive batch sizes such as 1,8, got {value!r}"
        ) from None


@cli.command()
@click.argument("artifacts", nargs=-1, type=click.Path())
@click.option(
    "--batch", "batches", default="1,8", show_default=True, callback=_batch_list, help="Batch sizes."
)
@config_options(ProfileConfig, exclude=("batches",))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write a PNG: per-image latency boxes (whiskers min-p99) and accuracy with its 95 % interval.",
)
@click.option("--list-backends", is_flag=True, help="Show which backends are usable here and why not.")
def profile(artifacts, json_path, plot, list_backends, **options):
    """Latency percentiles, throughput, memory, power and accuracy of bundles, ONNX files, engines or runs.

    A bundle folder stands for each of its models. Ratios are against the first artifact.
    """
    from sladkit.runtime.profile_command import list_backends_text, run_profile

    config = ProfileConfig(**options)
    if list_backends:
        click.echo(list_backends_text())
        return
    if not artifacts:
        raise ConfigError(
            "give at least one artifact: a bundle folder, an .onnx or .engine file, or a run folder"
        )
    click.echo(run_profile(list(artifacts), config, json_path=json_path, plot=plot))


@cli.command("eval")
@click.argument("artifact", type=click.Path())
@click.option("--data", required=True, help="Labelled image folder (training layouts), or 'synthetic'.")
@click.option("--model", "model_file", help="Which model of a bundle (default model.onnx).")
@click.option("--backend", help="Backend to use.")
@config_options(EvalConfig)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the report as JSON (metric, per-class numbers, confusion matrix, split, images).",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the confusion matrix as a PNG.")
def eval_command(artifact, data, model_file, backend, json_path, plot, **options):
    """Accuracy (classification) or mIoU (segmentation) of an artifact on a labelled dataset.

    Prints the metric with the split and image count (classification: its 95 % Wilson interval, and top-5
    accuracy with more than 5 classes), per-class accuracy or IoU, and the confusion matrix.
    """
    import sladkit.runtime
    from sladkit.runtime.eval_report import format_eval, write_confusion_plot, write_eval_json
    from sladkit.runtime.evaluate import evaluate_report

    config = EvalConfig(**options)
    with sladkit.runtime.load(artifact, backend=backend, model=model_file) as model:
        report = evaluate_report(model, data, batch=config.batch, limit=config.limit)
    name = model.artifact.name
    click.echo(format_eval(name, report))
    if json_path:
        described = {"name": name, "backend": model.backend.name, "precision": model.artifact.precision}
        write_eval_json(report, json_path, artifact=described)
    if plot:
        write_confusion_plot(name, report, plot)


@cli.command()
@click.argument("artifact", type=click.Path())
@click.argument("images", nargs=-1, required=True)
@config_options(PredictConfig)
@click.option("--model", "model_file", help="Which model of a bundle (default model.onnx).")
@click.option("--backend", help="Backend to use.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write <stem>.overlay.png per image (the prediction on the original image, with a legend) and, "
    "for segmentation, <stem>.mask.png (class indices in the model's crop) here.",
)
def predict(artifact, images, model_file, backend, out, **options):
    """Predict IMAGES (files, folders, or quoted glob patterns such as 'photos/**/*.jpg'): one JSON line each.

    A folder stands for the images directly in it. Each line: {"image", "task": "cls", "top": [{"index",
    "label", "score"}]} or {"image", "task": "seg", "mask": {"height", "width", ...}, "classes": [{"index",
    "label", "pixels"}]}.
    """
    import sladkit.runtime
    from sladkit.runtime.predict import expand_images, predict_images

    config = PredictConfig(**options)
    paths = expand_images(list(images))
    with sladkit.runtime.load(artifact, backend=backend, model=model_file) as model:
        lines = predict_images(model, paths, top_k=config.top_k, batch=config.batch, out=out)
        for line in lines:
            click.echo(line)


def main() -> None:
    cli(prog_name="sladkit")


if __name__ == "__main__":
    main()
    sys.exit(0)

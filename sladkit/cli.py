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
from sladkit.config import ExportConfig, TrainConfig
from sladkit.errors import ConfigError, SladkitError
from sladkit.export.targets import TARGETS
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
            flag = "--" + f.name.replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs = {
                "default": default,
                "show_default": default not in (None, {}),
                "help": f.metadata["help"],
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
    """
    config = _resume_config(_explicit(ctx)) if options["resume"] else TrainConfig(**options)
    from sladkit.train import run

    result = run(config)
    click.echo(result.summary())


def _resume_config(explicit: dict) -> TrainConfig:
    """The saved run's config, with the options typed now on top (the run checks they still agree)."""
    from sladkit.train.rundir import read_run_config

    if explicit.get("overwrite"):
        raise ConfigError("--resume and --overwrite contradict each other: choose one")
    if "out" not in explicit:
        raise ConfigError("--resume needs --out RUN_FOLDER (the run to continue)")
    out = Path(explicit["out"])
    if not (out / "config.json").is_file():
        raise ConfigError(
            f"nothing to resume in {out} (no config.json); drop --resume to start a new run there"
        )
    saved = read_run_config(out)["train"]
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
    """Print a bundle's summary after verifying its schema and every file's SHA-256."""
    from sladkit.export.bundle import summary, verify_bundle

    click.echo(summary(verify_bundle(bundle)))
    click.echo("  all hashes verified")


def main() -> None:
    cli(prog_name="sladkit")


if __name__ == "__main__":
    main()
    sys.exit(0)

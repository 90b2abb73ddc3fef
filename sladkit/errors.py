"""Errors a user can act on. The CLI prints their message on one line and exits non-zero.

Each message says what was received, what was expected and how to fix it.
"""

from __future__ import annotations


class SladkitError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in sladkit."""

    exit_code = 1


class ConfigError(SladkitError):
    """An option or option combination is invalid."""


class DataError(SladkitError):
    """A dataset folder, image or mask is missing or malformed."""


class ModelError(SladkitError):
    """A model name, weights file or teacher/student pair is invalid."""


class RunDirError(SladkitError):
    """A run folder is missing, incomplete, or already holds another run."""


class TrainingError(SladkitError):
    """Training could not go on (e.g. the loss became NaN)."""


class MissingDependencyError(SladkitError):
    """An optional dependency is not installed."""


def require(module: str, extra: str):
    """Import `module` or raise a MissingDependencyError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{module} is not installed ({e}); install it with: pip install 'sladkit[{extra}]'"
        ) from None

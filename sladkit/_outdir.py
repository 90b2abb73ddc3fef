"""Output folders (`--out`): what `--overwrite` may replace, and one writer per folder at a time.

`check_out` is the one guard in front of every deletion of an output folder: `--overwrite` replaces only
an empty folder or a folder of the kind being written (a run folder for `train`, a bundle for `export`,
each recognised by its own marker file), and never a folder that contains or lies inside one of the
command's inputs. `locked` holds an exclusive lock on the folder while a command writes it, so a second
`sladkit train` or `export` on the same `--out` stops at once with one line naming the first.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sladkit.errors import RunDirError


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_out(
    out: Path,
    *,
    overwrite: bool,
    kind: str,
    is_kind: Callable[[Path], bool],
    inputs: Iterable[str | Path | None] = (),
    hint: str = "",
) -> None:
    """Refuse an `--out` that this command may not write, before anything is written.

    Args:
        out: the output folder.
        overwrite: whether `--overwrite` was passed (it may replace `out` only when `is_kind(out)`).
        kind: what the command writes, for messages ("run folder", "bundle").
        is_kind: whether a folder is a `kind` that sladkit wrote (its marker file).
        inputs: the command's input files and folders (None entries are ignored).
        hint: appended to the refusal of an occupied `out` without `--overwrite`.
    """
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; choose a folder")
    resolved = out.resolve()
    for item in inputs:
        if item is None:
            continue
        given = Path(item)
        path = given.resolve()
        if _inside(path, resolved):
            raise RunDirError(
                f"--out {out} holds {given}, an input of this command; writing there would destroy it: "
                "choose another --out"
            )
        if _inside(resolved, path):
            raise RunDirError(
                f"--out {out} lies inside {given}, an input of this command; choose a folder outside it"
            )
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not is_kind(out):
        raise RunDirError(
            f"{out} holds files that are not a sladkit {kind}; --overwrite replaces only a {kind} sladkit "
            "wrote: choose another --out, or empty the folder yourself"
        )
    if not overwrite:
        raise RunDirError(
            f"{out} already holds a {kind}; pass --overwrite to replace it{hint}, or choose another --out"
        )


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def locked(out: Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on `out` (a `.NAME.lock` file beside it, removed on exit).

    The lock is the operating system's (`flock`), so a killed process never leaves a stale lock. Where
    `fcntl` does not exist (Windows), there is no lock.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = _lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"{out} is being written by {holder}; wait for it to finish, or choose another --out"
            ) from None
        # The holder before us may have removed the file between our open and our lock: lock the live one.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"sladkit {command} (pid {os.getpid()}, started {stamp})".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)

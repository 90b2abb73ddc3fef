"""Atomic writes: a reader (or a resumed run) never sees a half-written file or folder.

Files are written to a temporary name in the same folder, flushed and fsynced, then renamed over the
target. Folders are written under a temporary name and swapped in with two renames; `recover_dir`
finishes a swap interrupted between them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows opening a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _honour_umask(path: str | Path, mode: int) -> None:
    """Give a file (0o666) or folder (0o777) made by mkstemp/mkdtemp (0600/0700) the user's usual permissions."""
    os.chmod(path, mode & ~_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _honour_umask(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_tree(path: Path) -> None:
    """fsync every file under `path`, then the folders."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def recover_dir(path: str | Path) -> None:
    """Finish or undo a folder swap that a killed process left half done."""
    path = Path(path)
    old = _old_name(path)
    if old.exists():
        if path.exists():
            shutil.rmtree(old)
        else:
            old.rename(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `path`, on failure it is removed.

    The previous `path` (if any) stays intact until the new folder is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        _honour_umask(tmp, 0o777)
        yield tmp
        fsync_tree(tmp)
        old = _old_name(path)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        _fsync_dir(path.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(path: str | Path) -> None:
    """Remove the `.NAME.*.tmp` folders a killed `atomic_dir(path)` left beside `path`.

    Call it only while holding the lock of whatever owns `path` (`sladkit._outdir.locked`): then no
    live writer is using them.
    """
    path = Path(path)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A private scratch folder `<tmp>/<prefix><pid>-*`, removed on exit.

    A process killed with SIGKILL cannot remove its own, so each call first removes the ones whose
    process no longer exists.
    """
    for old in Path(tempfile.gettempdir()).glob(f"{glob.escape(prefix)}*-*"):
        pid = old.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield Path(tmp)

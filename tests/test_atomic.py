"""Atomic files and folders: an interrupted write leaves the previous version intact."""

from __future__ import annotations

import os

import pytest

from sladkit._atomic import atomic_dir, atomic_write_text, recover_dir


def test_failed_folder_write_keeps_the_previous_folder(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("killed while writing")
    assert (target / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary left behind


def test_swap_interrupted_between_renames_is_recovered(tmp_path):
    target = tmp_path / "ckpt"
    old = tmp_path / ".ckpt.old"
    old.mkdir()
    (old / "a.txt").write_text("one")  # the process died after moving the old folder away
    recover_dir(target)
    assert (target / "a.txt").read_text() == "one" and not old.exists()


def test_atomic_text_replaces_whole_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_files_and_folders_get_the_users_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "b.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700


def test_a_killed_writers_leftovers_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from sladkit._atomic import remove_stale_temporaries, work_dir

    (tmp_path / ".bundle.abc.tmp").mkdir()
    (tmp_path / ".bundle-other.abc.tmp").mkdir()
    remove_stale_temporaries(tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle-other.abc.tmp"]

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / f"sladkit-x-{dead.stdout.strip()}-abc").mkdir()  # its process has exited
    (tmp_path / "sladkit-x-1-abc").mkdir()  # pid 1 is alive
    with work_dir("sladkit-x-") as work:
        assert work.name.startswith(f"sladkit-x-{os.getpid()}-")
        names = sorted(p.name for p in tmp_path.glob("sladkit-x-*"))
        assert names == sorted(["sladkit-x-1-abc", work.name])
    assert not work.exists()

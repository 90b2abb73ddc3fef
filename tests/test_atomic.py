"""Atomic files and folders: an interrupted write leaves the previous version intact."""

from __future__ import annotations

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

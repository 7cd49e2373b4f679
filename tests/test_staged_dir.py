"""Folders written as a whole: staged beside the destination, then swapped in; debris of killed writers removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from representer import _atomic
from representer.errors import OutputError


def _tree(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_a_folder_is_replaced_as_a_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    dest = tmp_path / "out"
    for generation in ("one", "two"):
        with _atomic.staged_dir(dest) as stage:
            (stage / "a.txt").write_text(generation)
            (stage / f"{generation}.txt").write_text("x")
        assert _tree(dest) == {"a.txt": generation, f"{generation}.txt": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failure_keeps_the_old_folder_and_removes_the_stage(tmp_path):
    dest = tmp_path / "out"
    with _atomic.staged_dir(dest) as stage:
        (stage / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with _atomic.staged_dir(dest) as stage:
            (stage / "a.txt").write_text("new")
            raise RuntimeError("killed")
    assert _tree(dest) == {"a.txt": "old"} and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_os_error_becomes_an_output_error_naming_the_file(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic, "_fsync", full)
    with pytest.raises(OutputError, match=r"Cannot write .*report\.html: No space left on device"):
        _atomic.write_text(tmp_path / "report.html", "x")
    assert list(tmp_path.iterdir()) == []


def test_symlinked_destination_folder_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        with _atomic.staged_dir(tmp_path / "link"):
            pass


def test_stages_of_dead_writers_are_removed_not_those_of_live_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f".out.{dead}.abc.staged").mkdir()
    (tmp_path / f".out.{os.getpid()}.def.staged").mkdir()
    (tmp_path / f".other.{dead}.ghi.staged").mkdir()
    with _atomic.staged_dir(tmp_path / "out") as stage:
        (stage / "a").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", f".out.{os.getpid()}.def.staged", f".other.{dead}.ghi.staged"])

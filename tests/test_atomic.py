"""Atomic writes: a failed write leaves the old file and no temporary; symlinks are replaced, not followed."""

from __future__ import annotations

import os

import pytest

from representer import _atomic
from representer._progress import progress_bar, progress_enabled


def test_write_text_replaces_whole_file(tmp_path):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    _atomic.write_text(dest, "new content")
    assert dest.read_text() == "new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "out.csv"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with _atomic.atomic_open(dest) as handle:
            handle.write("half of the new")
            raise RuntimeError("disk full")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_symlink_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "users_file.html"
    target.write_text("the user's own file")
    link = tmp_path / "report.html"
    os.symlink(target, link)
    _atomic.write_text(link, "report")
    assert target.read_text() == "the user's own file"
    assert not link.is_symlink() and link.read_text() == "report"


def test_write_with_passes_a_file_name(tmp_path):
    dest = tmp_path / "sub" / "state.bin"
    _atomic.write_with(dest, lambda name: open(name, "wb").write(b"\x00\x01"))
    assert dest.read_bytes() == b"\x00\x01"


def test_atomic_open_refuses_append():
    with pytest.raises(ValueError, match="whole files"):
        with _atomic.atomic_open("x", "a"):
            pass


def test_progress_switch():
    assert progress_enabled(True) and not progress_enabled(False)
    assert list(progress_bar(range(3), desc="x", progress=False)) == [0, 1, 2]
    assert list(progress_bar(range(3), desc="x", progress=True)) == [0, 1, 2]


def test_progress_reports_to_the_command_line_instead_of_drawing_bars(capsys):
    """Inside `reporting`, every long step tells the callback its count (the CLI's spinner shows it); no tqdm bar."""
    import numpy as np
    import torch

    from representer import TorchClassifier
    from representer._progress import reporting

    seen: list[tuple[str, int, int | None]] = []
    with reporting(lambda desc, done, total: seen.append((desc, done, total))):
        assert list(progress_bar(range(2), desc="x", total=2, progress=True)) == [0, 1]
        assert list(progress_bar(range(2), desc="off", progress=False)) == [0, 1]
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
        TorchClassifier(net, batch_size=4).features(np.ones((10, 3), dtype=np.float32))
    assert seen == [("x", 1, 2), ("x", 2, 2), ("features", 1, 3), ("features", 2, 3), ("features", 3, 3)]
    assert list(progress_bar(range(2), desc="after", progress=False)) == [0, 1] and len(seen) == 5
    assert "features" not in capsys.readouterr().err

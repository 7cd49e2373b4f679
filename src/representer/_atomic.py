"""Atomic file writes: every file the library writes goes to a temporary sibling, then ``os.replace``.

A reader therefore sees either the old file or the complete new one, never a torn one: a process
killed mid-write, or a full disk, leaves the previous file (or no file) in place and removes its
temporary. The temporary lives in the destination's folder so that ``os.replace`` is a rename on one
file system. If the destination is a symbolic link, the link itself is replaced by a regular file
(the link's target is never written through).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest``, on error it is removed.

    For writers that take a file name (``safetensors.save_file``, ``torch.save``, matplotlib).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(dest: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(dest, mode)`` through a temporary sibling (``mode`` ``"w"`` or ``"wb"``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}.")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(dest) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(dest: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically; returns ``dest``."""
    with atomic_open(dest, "w") as handle:
        handle.write(text)
    return Path(dest)


def write_bytes(dest: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically; returns ``dest``."""
    with atomic_open(dest, "wb") as handle:
        handle.write(data)
    return Path(dest)


def write_with(dest: str | Path, writer: Callable[[str], Any]) -> Path:
    """Call ``writer(temporary_file_name)`` and move the result to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        writer(str(tmp))
    return Path(dest)


def _fsync(path: Path) -> None:
    """Flush the file's data to disk before the rename makes it visible."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

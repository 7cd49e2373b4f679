"""Atomic file writes: every file the library writes goes to a temporary sibling, then ``os.replace``.

A reader therefore sees either the old file or the complete new one, never a torn one: a process
killed mid-write, or a full disk, leaves the previous file (or no file) in place and removes its
temporary. The temporary lives in the destination's folder so that ``os.replace`` is a rename on one
file system. If the destination is a symbolic link, the link itself is replaced by a regular file
(the link's target is never written through). An ``OSError`` while writing (a full disk, no
permission) is raised as :class:`~representer.errors.OutputError` naming the destination.

A folder of files that belong together (a saved explainer, a run folder) is written the same way
by :func:`staged_dir`: into a temporary sibling folder, which then replaces the destination folder
as a whole (an atomic exchange of the two names where the system offers it, Linux's
``renameat2(RENAME_EXCHANGE)``), so a reader sees the old folder or the new one, never a mixture.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import OutputError


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
        with _as_output_error(dest):
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


@contextmanager
def staged_dir(dest: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on success it replaces ``dest`` as a whole.

    On error the temporary folder is removed and ``dest`` is untouched. The caller checks that
    ``dest`` may be replaced (it is deleted: only pass a folder the library itself wrote). Temporary
    folders left beside ``dest`` by a process that was killed are removed first; their names carry
    the writer's process id.
    """
    dest = Path(dest)
    if dest.is_symlink():
        raise OutputError(f"{dest} is a symbolic link; pass the folder it points to, so that nothing is written through a link.")
    with _as_output_error(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(dest)
        stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.{os.getpid()}.", suffix=".staged"))
    try:
        with _as_output_error(dest):
            yield stage
            for file in stage.rglob("*"):
                if file.is_file():
                    _fsync(file)
            replace_dir(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def replace_dir(source: Path, dest: Path) -> None:
    """Move the folder ``source`` to ``dest``, replacing ``dest`` and everything in it.

    An empty or missing ``dest`` is replaced by one rename. Otherwise the two folders are exchanged
    atomically where the system can (then the old content, now at ``source``, is deleted); elsewhere
    ``dest`` is renamed aside first, which leaves a moment in which ``dest`` does not exist.
    """
    try:
        os.rename(source, dest)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if not _exchange(source, dest):
        aside = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.{os.getpid()}.", suffix=".staged"))
        os.rename(dest, aside / dest.name)
        os.rename(source, dest)
        shutil.rmtree(aside)
        return
    shutil.rmtree(source)


def _remove_abandoned(dest: Path) -> None:
    """Delete ``.<name>.<pid>.*.staged`` folders beside ``dest`` whose writing process no longer exists."""
    for stage in dest.parent.glob(f".{glob.escape(dest.name)}.*.staged"):
        pid = stage.name[len(dest.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def _as_output_error(dest: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of writing ``dest`` as :class:`OutputError` naming it."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        error = OutputError(f"Cannot write {dest}: {exc.strerror or exc}. Nothing was changed there; free space or fix the permissions and retry.")
        error.errno = exc.errno
        raise error from exc

"""Download a file into a cache with an integrity check; nothing unverified is ever left in place."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..errors import RepresenterError

DEFAULT_CACHE_DIR = Path("~/.cache/representer")


def cache_dir(path: str | Path | None) -> Path:
    """The cache folder: ``path``, else ``$REPRESENTER_CACHE``, else ``~/.cache/representer``."""
    chosen = path or os.environ.get("REPRESENTER_CACHE") or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def gunzipped_digest(path: Path) -> tuple[int, str]:
    """``(size, sha256)`` of the decompressed content of the gzip file ``path``.

    Checking the content rather than the ``.gz`` bytes accepts any faithful re-compression.
    """
    digest, size = hashlib.sha256(), 0
    with gzip.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def download_gz(url: str, dest: Path, expected: tuple[int, str], *, timeout: float = 60.0) -> Path:
    """Fetch the gzip file at ``url`` to ``dest`` if its decompressed ``(size, sha256)`` is ``expected``.

    The file is written to a temporary name beside ``dest`` and renamed only after the check, so a
    failed or interrupted download never leaves a file that a later call would trust.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        try:
            got = gunzipped_digest(tmp)
        except (OSError, EOFError) as exc:
            raise RepresenterError(f"Downloaded {url} is not a valid gzip file ({exc}).") from exc
        if got != tuple(expected):
            raise RepresenterError(
                f"Downloaded {url} failed its integrity check: decompressed (size, sha256) = {got}, "
                f"expected {tuple(expected)}. Nothing was saved; retry, or pass the files with `path=`."
            )
        tmp.replace(dest)
    except OSError as exc:
        raise RepresenterError(f"Could not download {url}: {exc}.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest

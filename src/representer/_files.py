"""Reading the library's own small files and fingerprinting arrays, without importing torch.

The command line's light commands (``report``, ``review --export``) read run folders through these,
so that they start without loading the methods or torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FileFormatError


def read_json(file: Path, what: str) -> Any:
    """JSON from ``file``; an unreadable or damaged file raises :class:`FileFormatError` naming ``what``."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"Cannot read {what} from {file} ({type(exc).__name__}: {exc}); the file is damaged or truncated.") from exc


def array_fingerprint(*arrays: np.ndarray) -> str:
    """A short content hash of arrays (shape, dtype and bytes)."""
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()

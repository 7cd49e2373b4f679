"""Reading the IDX format of (Fashion-)MNIST.

An IDX file starts with a big-endian header: two zero bytes, a type byte (0x08 = uint8), the number
of dimensions ``d``, then ``d`` big-endian uint32 sizes. Image files have ``d = 3`` (a 16-byte
header), label files ``d = 1`` (an 8-byte header). Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import InputError


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Return the uint8 array stored in the raw (uncompressed) IDX bytes ``data``."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"{source} is not an IDX file (it must start with two zero bytes).")
    if data[2] != 0x08:
        raise InputError(f"{source} holds IDX type 0x{data[2]:02x}; only unsigned bytes (0x08) are supported.")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise InputError(f"{source} is truncated or padded: header says shape {shape} ({expected} bytes), file has {len(data)}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return parse_idx(fh.read(), source=str(path))

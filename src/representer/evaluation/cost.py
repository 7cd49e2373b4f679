"""Cost of a method: wall time and peak memory growth of a call (the evaluation suites' cost columns).

Peak memory is the largest resident set size (RSS) above the one at entry, sampled every
millisecond from ``/proc/self/statm`` by a background thread. RSS covers what torch, numpy and
faiss allocate outside Python's allocator (``tracemalloc`` does not); allocations served from memory
the process already holds show as 0, and a spike shorter than the sampling interval can be missed.
On systems without ``/proc`` the peak is reported as NaN.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_STATM = "/proc/self/statm"


def resident_bytes() -> int | None:
    """The process's resident set size in bytes (``None`` where ``/proc`` is unavailable)."""
    try:
        with open(_STATM) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


class PeakRSS:
    """Context manager: ``peak.megabytes`` is the largest RSS growth seen inside the ``with`` block."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval

    def __enter__(self) -> "PeakRSS":
        self.base = resident_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if self.base is not None:
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, resident_bytes() or 0)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.base is not None:
            self._thread.join()
            self.peak = max(self.peak, resident_bytes() or 0)

    @property
    def megabytes(self) -> float:
        return float("nan") if self.base is None else (self.peak - self.base) / 2**20


@dataclass(frozen=True)
class Cost:
    """Wall-clock seconds and peak RSS growth (MiB) of one call."""

    seconds: float
    peak_mb: float


def measure(fn: Callable[[], T]) -> tuple[T, Cost]:
    """Call ``fn()`` and return its result with its :class:`Cost`."""
    with PeakRSS() as peak:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, Cost(seconds, peak.megabytes)

"""The cost meter sees a large allocation and the time a call takes."""

import mmap
import time

import numpy as np
import pytest

from representer.evaluation.cost import PeakRSS, measure, resident_bytes

pytestmark = pytest.mark.skipif(resident_bytes() is None, reason="needs /proc/self/statm (Linux)")


def test_peak_sees_an_allocation_that_is_freed_before_exit():
    def allocate_and_free() -> float:
        # fresh pages straight from the kernel (an anonymous map), so no allocator can serve them from
        # memory the process already holds; filling them makes them resident
        with mmap.mmap(-1, 64 * 2**20) as pages:
            block = np.frombuffer(pages, dtype=np.float64)
            block.fill(1.0)
            time.sleep(0.02)
            value = float(block[-1])
            del block
        return value

    value, cost = measure(allocate_and_free)
    assert value == 1.0
    assert 56 <= cost.peak_mb <= 200
    assert cost.seconds >= 0.02


def test_nothing_allocated_reads_near_zero():
    with PeakRSS() as peak:
        time.sleep(0.01)
    assert 0 <= peak.megabytes < 8

"""The cost meter sees a large allocation and the time a call takes."""

import time

import numpy as np
import pytest

from representer.evaluation.cost import PeakRSS, measure, resident_bytes

pytestmark = pytest.mark.skipif(resident_bytes() is None, reason="needs /proc/self/statm (Linux)")


def test_peak_sees_an_allocation_that_is_freed_before_exit():
    def allocate_and_free() -> float:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.02)
        return float(block[-1])

    value, cost = measure(allocate_and_free)
    assert value == 1.0
    assert 56 <= cost.peak_mb <= 200
    assert cost.seconds >= 0.02


def test_nothing_allocated_reads_near_zero():
    with PeakRSS() as peak:
        time.sleep(0.01)
    assert 0 <= peak.megabytes < 8

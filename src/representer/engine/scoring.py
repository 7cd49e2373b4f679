"""The scoring engine: blocked GEMMs over training shards with a running top-k of both signs.

For a batch of test points and a :class:`~representer.engine.kernels.BilinearKernel`, the engine
walks the training set in blocks of ``block_size`` rows, asks the kernel for the ``(m, b)`` block
of scores and either keeps the ``k`` largest and ``k`` smallest per test point (:func:`top_k`) or
writes the block into a dense output (:func:`dense`). Peak memory is ``m_batch × block_size``
scores, independent of ``n``; the test side is processed in batches of ``test_batch_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .kernels import BilinearKernel, TestFactors


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs: training rows per block, test rows per batch, device and dtype."""

    block_size: int = 16384
    test_batch_size: int = 1024
    device: str = "cpu"
    dtype: torch.dtype = torch.float32


def _merge(values: torch.Tensor, indices: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    kk = min(k, values.shape[1])
    top_values, pos = torch.topk(values, kk, dim=1, largest=largest, sorted=True)
    return top_values, torch.gather(indices, 1, pos)


def top_k(kernel: BilinearKernel, test: TestFactors, k: int, options: EngineOptions) -> tuple[np.ndarray, ...]:
    """The ``k`` largest and ``k`` smallest scores per test point, streamed over training blocks.

    Returns ``(exc_indices, exc_scores, inh_indices, inh_scores)`` as numpy arrays of shape
    ``(m, min(k, n))``; excitatory rows are sorted by decreasing score, inhibitory by increasing.
    """
    k = min(k, kernel.n)
    parts: list[tuple[torch.Tensor, ...]] = []
    for t0 in range(0, test.m, options.test_batch_size):
        batch = test.slice(t0, t0 + options.test_batch_size).to(torch.device(options.device), options.dtype)
        hi_v = hi_i = lo_v = lo_i = None
        for start in range(0, kernel.n, options.block_size):
            stop = min(start + options.block_size, kernel.n)
            scores = kernel.block(batch, start, stop)
            idx = torch.arange(start, stop, device=scores.device).expand(batch.m, -1)
            bh_v, bh_i = _merge(scores, idx, k, largest=True)
            bl_v, bl_i = _merge(scores, idx, k, largest=False)
            if hi_v is None:
                hi_v, hi_i, lo_v, lo_i = bh_v, bh_i, bl_v, bl_i
            else:
                hi_v, hi_i = _merge(torch.cat([hi_v, bh_v], 1), torch.cat([hi_i, bh_i], 1), k, largest=True)
                lo_v, lo_i = _merge(torch.cat([lo_v, bl_v], 1), torch.cat([lo_i, bl_i], 1), k, largest=False)
        parts.append((hi_i, hi_v, lo_i, lo_v))
    return tuple(torch.cat([p[j] for p in parts]).cpu().numpy() for j in range(4))


def dense(kernel: BilinearKernel, test: TestFactors, options: EngineOptions) -> np.ndarray:
    """The full ``(m, n)`` score matrix, computed block by block (opt-in: it is ``m × n``)."""
    out = np.empty((test.m, kernel.n), dtype=np.float64 if options.dtype == torch.float64 else np.float32)
    for t0, start, scores in stream_blocks(kernel, test, options):
        out[t0 : t0 + scores.shape[0], start : start + scores.shape[1]] = scores.cpu().numpy()
    return out


def stream_blocks(kernel: BilinearKernel, test: TestFactors, options: EngineOptions):
    """Yield ``(t0, start, scores)`` blocks of the score matrix, for metrics that reduce on the fly."""
    for t0 in range(0, test.m, options.test_batch_size):
        batch = test.slice(t0, t0 + options.test_batch_size).to(torch.device(options.device), options.dtype)
        for start in range(0, kernel.n, options.block_size):
            stop = min(start + options.block_size, kernel.n)
            yield t0, start, kernel.block(batch, start, stop)

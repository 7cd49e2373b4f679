"""The scoring engine: blocked GEMMs over training shards with a running top-k of both signs.

For a batch of test points and a :class:`~representer.engine.kernels.BilinearKernel`, the engine
walks the training set in blocks of ``block_size`` rows, asks the kernel for the ``(m, b)`` block
of scores and either keeps the ``k`` largest and ``k`` smallest per test point (:func:`top_k`) or
writes the block into a dense output (:func:`dense`). Peak memory is ``m_batch × block_size``
scores, independent of ``n``; the test side is processed in batches of ``test_batch_size``.

Speed: each test batch is sorted by the head output it explains (so class-dependent kernels scale
contiguous runs of rows) and scored into one reused block buffer; the per-block top-k first keeps
the ``k`` groups of ``_GROUP`` columns with the most extreme group maximum (minimum), which
contain the ``k`` most extreme scores, and selects among those candidates only. Scores are the
kernel's own; among tied scores, which training index is returned is unspecified.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .kernels import BilinearKernel, TestFactors

Tensor = torch.Tensor

#: Columns per group of the top-k prefilter.
_GROUP = 64
#: Candidate columns per test point gathered before they are cut back to the running top-k.
_POOL_WIDTH = 8192


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs: training rows per block, test rows per batch, device and dtype."""

    block_size: int = 16384
    test_batch_size: int = 1024
    device: str = "cpu"
    dtype: torch.dtype = torch.float32


def _candidates(scores: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Entries of each row that include its ``k`` largest (or smallest): ``(values, column positions)``.

    When the block is wide, rows are cut into groups of ``_GROUP`` columns; the ``k`` groups with
    the most extreme group extremum hold ``k`` entries at least as extreme as every entry outside
    them, so those ``k · _GROUP`` entries (plus the ragged tail) are the candidates. Otherwise the
    row's exact top-``k``.
    """
    m, b = scores.shape
    n_groups = b // _GROUP
    if 4 * k > n_groups:
        return torch.topk(scores, k, dim=1, largest=largest, sorted=False)
    grouped = scores[:, : n_groups * _GROUP].reshape(m, n_groups, _GROUP)
    group_extreme = grouped.amax(dim=2) if largest else grouped.amin(dim=2)
    groups = torch.topk(group_extreme, k, dim=1, largest=largest, sorted=False).indices
    offsets = torch.arange(_GROUP, device=scores.device)
    positions = (groups.unsqueeze(2) * _GROUP + offsets).reshape(m, k * _GROUP)
    if n_groups * _GROUP < b:
        tail = torch.arange(n_groups * _GROUP, b, device=scores.device).expand(m, -1)
        positions = torch.cat([positions, tail], dim=1)
    return torch.gather(scores, 1, positions), positions


class _RunningExtremes:
    """The ``k`` most extreme scores per row seen so far, kept as a pool of candidates.

    Candidates of each block are appended and the pool is cut back to ``k`` columns with one
    ``topk`` only when it grows past ``_POOL_WIDTH`` columns (``topk`` has a cost per row).
    """

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.values: list[Tensor] = []
        self.indices: list[Tensor] = []
        self.width = 0

    def add(self, values: Tensor, indices: Tensor) -> None:
        self.values.append(values)
        self.indices.append(indices)
        self.width += values.shape[1]
        if self.width > max(_POOL_WIDTH, 2 * self.k):
            self._compact()

    def _compact(self) -> None:
        values, indices = torch.cat(self.values, dim=1), torch.cat(self.indices, dim=1)
        kept, pos = torch.topk(values, min(self.k, values.shape[1]), dim=1, largest=self.largest, sorted=False)
        self.values, self.indices, self.width = [kept], [torch.gather(indices, 1, pos)], kept.shape[1]

    def result(self) -> tuple[Tensor, Tensor]:
        """``(indices, scores)``, rows sorted from the most extreme score."""
        self._compact()
        scores, pos = torch.sort(self.values[0], dim=1, descending=self.largest)
        return torch.gather(self.indices[0], 1, pos), scores


def _batches(test: TestFactors, options: EngineOptions) -> Iterator[tuple[int, Tensor, TestFactors]]:
    """Yield ``(t0, order, batch)``: each test batch on the scoring device, sorted by output.

    ``batch`` row ``j`` is test point ``t0 + order[j]``.
    """
    device = torch.device(options.device)
    for t0 in range(0, test.m, options.test_batch_size):
        batch = test.slice(t0, t0 + options.test_batch_size).to(device, options.dtype)
        order = torch.argsort(batch.out, stable=True)
        yield t0, order, batch.take(order)


def _block_buffer(batch: TestFactors, n: int, options: EngineOptions) -> Tensor:
    """Flat storage for one ``(batch.m, block_size)`` block of scores, reused across blocks."""
    return torch.empty(batch.m * min(options.block_size, n), dtype=options.dtype, device=torch.device(options.device))


def _block_view(buffer: Tensor, m: int, width: int) -> Tensor:
    return buffer[: m * width].view(m, width)


def top_k(kernel: BilinearKernel, test: TestFactors, k: int, options: EngineOptions) -> tuple[np.ndarray, ...]:
    """The ``k`` largest and ``k`` smallest scores per test point, streamed over training blocks.

    Returns ``(exc_indices, exc_scores, inh_indices, inh_scores)`` as numpy arrays of shape
    ``(m, min(k, n))``; excitatory rows are sorted by decreasing score, inhibitory by increasing.
    """
    k = min(k, kernel.n)
    score_dtype = np.float64 if options.dtype == torch.float64 else np.float32
    results = [np.empty((test.m, k), dtype=dtype) for dtype in (np.int64, score_dtype, np.int64, score_dtype)]
    for t0, order, batch in _batches(test, options):
        buffer = _block_buffer(batch, kernel.n, options)
        running = (_RunningExtremes(k, largest=True), _RunningExtremes(k, largest=False))
        for start in range(0, kernel.n, options.block_size):
            stop = min(start + options.block_size, kernel.n)
            scores = kernel.block(batch, start, stop, out=_block_view(buffer, batch.m, stop - start))
            for extremes in running:
                values, positions = _candidates(scores, min(k, stop - start), extremes.largest)
                extremes.add(values, positions + start)
        rows = (t0 + order).cpu().numpy()
        parts = (*running[0].result(), *running[1].result())
        for result, part in zip(results, parts):
            result[rows] = part.cpu().numpy()
    return tuple(results)


def dense(kernel: BilinearKernel, test: TestFactors, options: EngineOptions) -> np.ndarray:
    """The full ``(m, n)`` score matrix, computed block by block (opt-in: it is ``m × n``)."""
    out = torch.empty(test.m, kernel.n, dtype=torch.float64 if options.dtype == torch.float64 else torch.float32)
    on_host = torch.device(options.device).type == "cpu" and options.dtype == out.dtype
    for t0, order, batch in _batches(test, options):
        positions = order.cpu()
        in_place = on_host and bool((order == torch.arange(batch.m, device=order.device)).all())
        buffer = None if in_place else _block_buffer(batch, kernel.n, options)
        for start in range(0, kernel.n, options.block_size):
            stop = min(start + options.block_size, kernel.n)
            target = out[t0 : t0 + batch.m, start:stop]
            if in_place:
                scores = kernel.block(batch, start, stop, out=target)
                if scores is not target:
                    target.copy_(scores)
                continue
            scores = kernel.block(batch, start, stop, out=_block_view(buffer, batch.m, stop - start))
            target.index_copy_(0, positions, scores.to("cpu", out.dtype))
    return out.numpy()


def stream_blocks(kernel: BilinearKernel, test: TestFactors, options: EngineOptions):
    """Yield ``(t0, start, scores)`` blocks of the score matrix, for metrics that reduce on the fly."""
    for t0 in range(0, test.m, options.test_batch_size):
        batch = test.slice(t0, t0 + options.test_batch_size).to(torch.device(options.device), options.dtype)
        for start in range(0, kernel.n, options.block_size):
            stop = min(start + options.block_size, kernel.n)
            yield t0, start, kernel.block(batch, start, stop)

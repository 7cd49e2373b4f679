"""The scoring engine: blocked GEMMs over training shards with a running top-k of both signs.

For a batch of test points and a :class:`~representer.engine.kernels.BilinearKernel`, the engine
walks the training set in blocks of ``block_size`` rows, asks the kernel for the ``(m, b)`` block
of scores and either keeps the ``k`` largest and ``k`` smallest per test point (:func:`top_k`) or
writes the block into a dense output (:func:`dense`). Peak memory is ``m_batch × block_size``
scores, independent of ``n``; the test side is processed in batches of ``test_batch_size``.

Speed: each test batch is sorted by the head output it explains (so class-dependent kernels scale
contiguous runs of rows) and scored into one reused block buffer; each block only keeps the ``k``
groups of ``_GROUP`` columns with the most extreme group maximum (minimum), which contain its
``k`` most extreme scores; across blocks the pool of groups is cut back the same way, and the
final top-``k`` is selected among ``k · _GROUP`` candidates. Scores are the kernel's own; among
tied scores, which training index is returned is unspecified.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .._progress import progress_bar
from .kernels import BilinearKernel, TestFactors

Tensor = torch.Tensor

#: Columns per group of the top-k prefilter.
_GROUP = 64
#: Candidate column groups per test point kept before they are cut back to the ``k`` best groups.
_POOL_GROUPS = 64


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs: training rows per block, test rows per batch, device, dtype and progress bars.

    ``progress``: a bar over the training blocks of each test batch (``None``: when stderr is a
    terminal; ``False``, the default, for the fast head-only kernels).
    """

    block_size: int = 16384
    test_batch_size: int = 1024
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    progress: bool | None = False


def _block_starts(n: int, options: EngineOptions, desc: str) -> Iterator[int]:
    """Starts of the training blocks, with a progress bar when ``options.progress`` says so."""
    starts = range(0, n, options.block_size)
    return progress_bar(starts, desc=desc, total=len(starts), progress=options.progress)


def _top_groups(scores: Tensor, k: int, start: int, largest: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` column groups of a block whose extremum is most extreme, plus its ragged tail as a padded group.

    Rows are cut into groups of ``_GROUP`` columns. The ``k`` groups with the most extreme group
    extremum hold ``k`` entries at least as extreme as every entry outside them, so they contain the
    row's ``k`` most extreme entries. Returns ``(extrema (m, g), values (m, g, _GROUP), first column
    (m, g))`` with the first column counted from ``start``; the tail group is padded with ``∓inf``.
    """
    m, b = scores.shape
    n_full = b // _GROUP
    extrema, values, firsts = [], [], []
    if n_full:
        grouped = scores[:, : n_full * _GROUP].reshape(m, n_full, _GROUP)
        group_extreme = grouped.amax(dim=2) if largest else grouped.amin(dim=2)
        top, groups = torch.topk(group_extreme, min(k, n_full), dim=1, largest=largest, sorted=False)
        extrema.append(top)
        values.append(torch.gather(grouped, 1, groups.unsqueeze(2).expand(-1, -1, _GROUP)))
        firsts.append(groups * _GROUP + start)
    if n_full * _GROUP < b:
        pad = torch.full((m, _GROUP - (b - n_full * _GROUP)), -torch.inf if largest else torch.inf, dtype=scores.dtype, device=scores.device)
        tail = torch.cat([scores[:, n_full * _GROUP :], pad], dim=1)
        extrema.append(tail.amax(dim=1, keepdim=True) if largest else tail.amin(dim=1, keepdim=True))
        values.append(tail.unsqueeze(1))
        firsts.append(torch.full((m, 1), start + n_full * _GROUP, dtype=torch.long, device=scores.device))
    if len(extrema) == 1:
        return extrema[0], values[0], firsts[0]
    return torch.cat(extrema, dim=1), torch.cat(values, dim=1), torch.cat(firsts, dim=1)


class _RunningExtremes:
    """The ``k`` most extreme scores per row seen so far, kept as candidate column groups.

    Each block contributes its :func:`_top_groups`; the pool is cut back to the ``k`` groups with
    the most extreme extremum (the same argument across blocks as within one) when it holds more
    than ``_POOL_GROUPS`` groups, and the final top-``k`` is selected among ``k · _GROUP`` entries.
    """

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []
        self.width = 0

    def add(self, scores: Tensor, start: int) -> None:
        part = _top_groups(scores, self.k, start, self.largest)
        self.parts.append(part)
        self.width += part[0].shape[1]
        if self.width > max(_POOL_GROUPS, 2 * self.k):
            self._compact()

    def _compact(self) -> None:
        extrema, values, firsts = (torch.cat(x, dim=1) if len(self.parts) > 1 else x[0] for x in zip(*self.parts))
        if extrema.shape[1] > self.k:
            kept, pos = torch.topk(extrema, self.k, dim=1, largest=self.largest, sorted=False)
            values = torch.gather(values, 1, pos.unsqueeze(2).expand(-1, -1, _GROUP))
            extrema, firsts = kept, torch.gather(firsts, 1, pos)
        self.parts, self.width = [(extrema, values, firsts)], extrema.shape[1]

    def result(self) -> tuple[Tensor, Tensor]:
        """``(indices, scores)``, rows sorted from the most extreme score."""
        self._compact()
        _, values, firsts = self.parts[0]
        m, g = firsts.shape
        flat = values.reshape(m, g * _GROUP)
        top, pos = torch.topk(flat, self.k, dim=1, largest=self.largest, sorted=True)
        return torch.gather(firsts, 1, pos // _GROUP) + pos % _GROUP, top


def _batches(test: TestFactors, options: EngineOptions) -> Iterator[tuple[int, Tensor, TestFactors]]:
    """Yield ``(t0, order, batch)``: each test batch on the scoring device, sorted by output.

    ``batch`` row ``j`` is test point ``t0 + order[j]``.
    """
    device = torch.device(options.device)
    for t0 in range(0, test.m, options.test_batch_size):
        batch = test.slice(t0, t0 + options.test_batch_size).to(device, options.dtype)
        order = torch.argsort(batch.out, stable=True)
        identity = bool((order == torch.arange(batch.m, device=order.device)).all())
        yield t0, order, batch if identity else batch.take(order)


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
        for start in _block_starts(kernel.n, options, "scoring"):
            stop = min(start + options.block_size, kernel.n)
            scores = kernel.block(batch, start, stop, out=_block_view(buffer, batch.m, stop - start))
            for extremes in running:
                extremes.add(scores, start)
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
        for start in _block_starts(kernel.n, options, "scoring"):
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

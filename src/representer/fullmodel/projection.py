"""Seeded random projections of gradients, ``G ↦ G R`` with ``R ∈ R^{P × k}``, never stored whole.

``R`` has i.i.d. entries ``N(0, 1)/√k`` (``kind="gaussian"``) or ``±1/√k`` (``"rademacher"``), so
that ``E‖Rᵀg‖² = ‖g‖²`` and inner products are preserved in expectation (Johnson–Lindenstrauss).
It is generated in row chunks of ``chunk_rows`` parameters, chunk ``j`` from a generator seeded
with ``(seed, j)``: the same seed gives the same ``R`` whatever the batch size, memory holds one
``chunk_rows × k`` block at a time, and chunks are cached up to ``cache_bytes`` so that repeated
batches do not regenerate them (TRAK's CPU projector regenerates per call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from .._validation import check_positive
from ..errors import InputError

Tensor = torch.Tensor
ProjectionKind = Literal["gaussian", "rademacher"]


class RandomProjector:
    """``project(G)`` = ``G R`` for rows ``G`` ``(b, P)``; see the module docstring."""

    def __init__(
        self,
        n_params: int,
        dim: int,
        *,
        kind: ProjectionKind = "gaussian",
        seed: int = 0,
        chunk_rows: int = 4096,
        cache_bytes: int = 1 << 28,
    ) -> None:
        if int(dim) != dim or dim < 1:
            raise InputError(f"`projection_dim` must be a positive integer; got {dim!r}.")
        if kind not in ("gaussian", "rademacher"):
            raise InputError(f"`projection` must be 'gaussian' or 'rademacher'; got {kind!r}.")
        check_positive(chunk_rows, "chunk_rows")
        self.n_params = int(n_params)
        self.dim = int(dim)
        self.kind = kind
        self.seed = int(seed)
        self.chunk_rows = int(chunk_rows)
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}

    def chunk(self, j: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Rows ``j·chunk_rows …`` of ``R`` (``(rows, k)``), generated from seed ``(seed, j)``."""
        key = (j, dtype, device)
        if key in self._cache:
            return self._cache[key]
        rows = min(self.chunk_rows, self.n_params - j * self.chunk_rows)
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, j]).generate_state(1)[0]))
        if self.kind == "gaussian":
            block = torch.randn(rows, self.dim, generator=gen, dtype=torch.float32)
        else:
            block = torch.randint(0, 2, (rows, self.dim), generator=gen, dtype=torch.int8).to(torch.float32).mul_(2).sub_(1)
        block = block.div_(self.dim**0.5).to(device=device, dtype=dtype)
        if (len(self._cache) + 1) * block.numel() * block.element_size() <= self.cache_bytes:
            self._cache[key] = block
        return block

    def project(self, g: Tensor) -> Tensor:
        """``(b, P)`` → ``(b, k)``."""
        if g.shape[-1] != self.n_params:
            raise InputError(f"Gradients have {g.shape[-1]} columns but the projector was built for {self.n_params} parameters.")
        return self.project_columns(lambda c0, c1: g[:, c0:c1], g.shape[0], g.dtype, g.device)

    def project_columns(self, columns: Callable[[int, int], Tensor], b: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``G R`` for ``b`` rows whose columns ``c0:c1`` come from ``columns(c0, c1)``, one chunk of ``R`` at a time.

        Each chunk of ``R`` is generated (or fetched from the cache) once per call, and ``G`` is never
        made dense whole: factored gradients build only the columns a chunk needs.
        """
        out = torch.zeros(b, self.dim, dtype=dtype, device=device)
        for j, start in enumerate(range(0, self.n_params, self.chunk_rows)):
            stop = min(start + self.chunk_rows, self.n_params)
            out.addmm_(columns(start, stop), self.chunk(j, dtype, device))
        return out

    def matrix(self) -> Tensor:
        """The whole ``R`` (``(P, k)``, float32) — for tests and small ``P`` only."""
        n_chunks = -(-self.n_params // self.chunk_rows)
        return torch.cat([self.chunk(j, torch.float32, torch.device("cpu")) for j in range(n_chunks)])

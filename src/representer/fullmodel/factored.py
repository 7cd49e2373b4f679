"""Per-example gradients in factored form, and the train-side store the full-model explainers score.

The gradients of ``b`` examples over the selected parameters are kept as a list of *parts*:

* ``"outer"`` — a Linear layer called once per example on a vector input. Example ``i``'s gradient
  of the layer's matrix ``M = [W | b]`` is the rank-one ``δ_i ã_iᵀ`` (``δ`` the output gradient,
  ``ã = [a; 1]`` the input with a one for the bias), kept as its two factors: ``out + in'`` numbers
  instead of ``out·in'`` (1,041 instead of 200,960 for a 784 → 256 layer);
* ``"layer"`` — any other Linear / Conv2d layer: the dense ``out·in'`` entries of ``Σ_s δ_s ã_sᵀ``
  (summed over positions ``s``; small for convolutions, whose matrices are small);
* ``"flat"`` — the whole flat gradient ``(P,)``, for networks the layer route does not cover;
* ``"projected"`` — ``Rᵀg`` ``(k,)`` after a random projection.

Inner products factor part by part. For outer parts
``⟨δ_t ã_tᵀ, δ_i ã_iᵀ⟩ = (δ_t·δ_i)(ã_t·ã_i)`` and, for a dense test-side matrix ``U_t`` (such as
``(C + λI)⁻¹g_t``), ``⟨U_t, δ_i ã_iᵀ⟩ = δ_iᵀ U_t ã_i``; dense parts are plain inner products. So the
training side is stored once in ``n · Σ_parts width`` floats (:class:`GradientStore`), and the engine
scores it as a sum of small kernels (:class:`~representer.engine.SumKernel`, built by the explainers): a
:class:`~representer.engine.KroneckerKernel` per outer part for gradient dot products (TracIn, SIM,
identity influence), a :class:`~representer.engine.GradientKernel` per outer part when the test side
is a solved vector (influence, RelatIF), and an inner product per dense part. Scores are exact: the
factorisation is an identity, not an approximation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from .layers import LayerSlot

Tensor = torch.Tensor
PartKind = Literal["outer", "layer", "flat", "projected"]
#: Floats of flat gradient rows materialised at once when a block must be made dense.
FLAT_CHUNK_FLOATS = 1 << 23


@dataclass(frozen=True)
class Part:
    """One part of a factored gradient (see the module docstring); ``width`` = stored floats per example."""

    kind: PartKind
    width: int
    slot: LayerSlot | None = None

    @property
    def n_factors(self) -> int:
        return 2 if self.kind == "outer" else 1

    def describe(self) -> dict:
        """A JSON-able summary (for ``fit_report_``)."""
        return {"kind": self.kind, "module": None if self.slot is None else self.slot.module_name, "width": self.width}


def layer_part(slot: LayerSlot, positions: int) -> Part:
    """``"outer"`` when the layer sees one position per example, else ``"layer"`` (dense)."""
    cols = slot.in_features
    if positions == 1:
        return Part("outer", slot.out_features + cols, slot)
    return Part("layer", slot.out_features * cols, slot)


class GradientBlock:
    """Gradients of ``b`` examples: per part, ``(δ (b, out), ã (b, in'))`` for outer parts, ``(rows (b, width),)`` else.

    ``logits`` (optional): the network's ``(b, K)`` outputs at the parameters the gradients were taken at.
    """

    def __init__(self, parts: tuple[Part, ...], tensors: list[tuple[Tensor, ...]], n_params: int, logits: Tensor | None = None) -> None:
        self.parts = parts
        self.tensors = tensors
        self.n_params = n_params
        self.logits = logits

    @classmethod
    def from_rows(cls, rows: Tensor, kind: PartKind = "flat", logits: Tensor | None = None) -> "GradientBlock":
        """A block with one dense part: flat gradients ``(b, P)`` or projections ``(b, k)``."""
        return cls((Part(kind, int(rows.shape[1])),), [(rows,)], int(rows.shape[1]), logits)

    @property
    def b(self) -> int:
        return int(self.tensors[0][0].shape[0])

    def rows(self, start: int, stop: int) -> "GradientBlock":
        logits = None if self.logits is None else self.logits[start:stop]
        return GradientBlock(self.parts, [tuple(t[start:stop] for t in ts) for ts in self.tensors], self.n_params, logits)

    def matrices(self, j: int) -> Tensor:
        """``(b, out, in')`` matrices ``[W | b]`` of layer part ``j`` (outer or dense)."""
        part, ts = self.parts[j], self.tensors[j]
        if part.kind == "outer":
            return ts[0].unsqueeze(2) * ts[1].unsqueeze(1)
        if part.slot is None:
            raise InputError(f"Part {j} ({part.kind}) is not a layer matrix.")
        return ts[0].reshape(self.b, part.slot.out_features, -1)

    def flat(self) -> Tensor:
        """``(b, P)`` gradients in the flat layout of the parameter set (one dense copy: chunk ``b``)."""
        if len(self.parts) == 1 and self.parts[0].kind == "flat":
            return self.tensors[0][0]
        if any(p.slot is None for p in self.parts):
            raise InputError("Projected gradients cannot be made dense again.")
        ref = self.tensors[0][0]
        out = torch.empty(self.b, self.n_params, dtype=ref.dtype, device=ref.device)
        for j, part in enumerate(self.parts):
            part.slot.write(out, self.matrices(j))
        return out

    def _matrix_rows(self, j: int, r0: int, r1: int) -> Tensor:
        """Rows ``r0:r1`` of the ``(b, out, in')`` matrices of layer part ``j``."""
        part, ts = self.parts[j], self.tensors[j]
        if part.kind == "outer":
            return ts[0][:, r0:r1].unsqueeze(2) * ts[1].unsqueeze(1)
        return ts[0].reshape(self.b, part.slot.out_features, -1)[:, r0:r1]

    def flat_columns(self, c0: int, c1: int) -> Tensor:
        """Columns ``c0:c1`` of the flat ``(b, P)`` gradients, built from the parts that overlap them only."""
        if len(self.parts) == 1 and self.parts[0].slot is None:
            return self.tensors[0][0][:, c0:c1]
        ref = self.tensors[0][0]
        out = torch.zeros(self.b, c1 - c0, dtype=ref.dtype, device=ref.device)
        for j, part in enumerate(self.parts):
            slot = part.slot
            cols = slot.in_features - (slot.bias is not None)
            lo, hi = max(c0, slot.weight.start), min(c1, slot.weight.stop)
            if lo < hi:
                r0, r1 = (lo - slot.weight.start) // cols, (hi - 1 - slot.weight.start) // cols + 1
                rows = self._matrix_rows(j, r0, r1)[:, :, :cols].reshape(self.b, -1)
                first = slot.weight.start + r0 * cols
                out[:, lo - c0 : hi - c0] = rows[:, lo - first : hi - first]
            if slot.bias is not None:
                lo, hi = max(c0, slot.bias.start), min(c1, slot.bias.stop)
                if lo < hi:
                    r0, r1 = lo - slot.bias.start, hi - slot.bias.start
                    out[:, lo - c0 : hi - c0] = self._matrix_rows(j, r0, r1)[:, :, -1]
        return out

    def row_chunks(self) -> Iterable[tuple[int, "GradientBlock"]]:
        """``(start, rows)`` sub-blocks whose dense form holds at most :data:`FLAT_CHUNK_FLOATS` floats."""
        rows = max(1, FLAT_CHUNK_FLOATS // max(self.n_params, 1))
        if rows >= self.b:
            yield 0, self
            return
        for start in range(0, self.b, rows):
            yield start, self.rows(start, start + rows)

    def flat_chunks(self) -> Iterable[tuple[int, Tensor]]:
        """``(start, flat rows)`` in chunks of at most :data:`FLAT_CHUNK_FLOATS` floats."""
        for start, chunk in self.row_chunks():
            yield start, chunk.flat()

    def sq_norms(self) -> Tensor:
        """``‖g_i‖²`` per example (``‖δ‖²‖ã‖²`` for outer parts)."""
        total = torch.zeros(self.b, dtype=self.tensors[0][0].dtype, device=self.tensors[0][0].device)
        for part, ts in zip(self.parts, self.tensors):
            if part.kind == "outer":
                total += (ts[0] * ts[0]).sum(dim=1) * (ts[1] * ts[1]).sum(dim=1)
            else:
                total += (ts[0] * ts[0]).sum(dim=1)
        return total

    def scaled(self, factor: Tensor | float) -> "GradientBlock":
        """Every gradient times ``factor`` (a scalar or ``(b,)``), applied to the first factor of each part."""
        f = factor if not isinstance(factor, Tensor) else factor.reshape(-1, 1)
        return GradientBlock(self.parts, [(ts[0] * f, *ts[1:]) for ts in self.tensors], self.n_params, self.logits)

    def test_tensors(self, prefixes: list[str]) -> dict[str, Tensor]:
        """Test-side tensors of a gradient dot product: ``s``/``a`` for outer parts, ``x`` for dense ones."""
        out = {}
        for prefix, part, ts in zip(prefixes, self.parts, self.tensors):
            if part.kind == "outer":
                out[prefix + "s"], out[prefix + "a"] = ts
            else:
                out[prefix + "x"] = ts[0]
        return out


def part_prefixes(n_parts: int) -> list[str]:
    """Key prefix of each part's test tensors: none for a single part, ``"j."`` for part ``j`` of a sum of kernels."""
    return [""] if n_parts == 1 else [f"{j}." for j in range(n_parts)]


def solved_tensors(parts: tuple[Part, ...], solved: list, prefixes: list[str]) -> dict[str, Tensor]:
    """Test-side tensors of a solved vector per part: ``u`` ``(b, out, in')`` for outer parts, ``x`` else;
    a part given as the factors ``(s, a)`` of a low-rank matrix keeps them (``s`` ``(b, r, out)``, ``a`` ``(b, r, in')``)."""
    out = {}
    for prefix, part, u in zip(prefixes, parts, solved):
        if isinstance(u, tuple):
            out[prefix + "s"], out[prefix + "a"] = u
        elif part.kind == "outer":
            out[prefix + "u"] = u.reshape(u.shape[0], part.slot.out_features, -1)
        else:
            out[prefix + "x"] = u.reshape(u.shape[0], -1)
    return out


def join_flat(parts: tuple[Part, ...], per_part: list[Tensor], n_params: int) -> Tensor:
    """Inverse of :func:`split_flat`: per-part tensors (layer matrices, or flat rows) into ``(b, P)`` flat rows."""
    if len(parts) == 1 and parts[0].slot is None:
        return per_part[0]
    out = torch.empty(per_part[0].shape[0], n_params, dtype=per_part[0].dtype, device=per_part[0].device)
    for part, value in zip(parts, per_part):
        part.slot.write(out, value.reshape(value.shape[0], part.slot.out_features, -1))
    return out


def split_flat(parts: tuple[Part, ...], flat: Tensor) -> list[Tensor]:
    """Flat rows ``(b, P)`` cut into per-part tensors: ``(b, out, in')`` for layer parts, the rows for a flat part."""
    return [flat if p.slot is None else p.slot.matrices(flat) for p in parts]


class GradientStore:
    """Factored gradients of ``n`` training points in numpy arrays of one dtype, filled block by block.

    ``parts`` may repeat a network's layout (TracIn stores one copy per checkpoint); part ``j``'s
    arrays are ``arrays[j]`` (two for an outer part, one else). Memory: ``n · Σ width · itemsize``.
    """

    def __init__(self, parts: tuple[Part, ...], arrays: list[tuple[np.ndarray, ...]]) -> None:
        self.parts = parts
        self.arrays = arrays

    @classmethod
    def empty(cls, parts: tuple[Part, ...], n: int, dtype: np.dtype) -> "GradientStore":
        arrays = []
        for part in parts:
            if part.kind == "outer":
                out = part.slot.out_features
                arrays.append((np.empty((n, out), dtype), np.empty((n, part.width - out), dtype)))
            else:
                arrays.append((np.empty((n, part.width), dtype),))
        return cls(parts, arrays)

    @property
    def n(self) -> int:
        return int(self.arrays[0][0].shape[0])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for arrays in self.arrays for a in arrays))

    def put(self, start: int, block: GradientBlock, *, first_part: int = 0) -> None:
        """Write ``block`` into rows ``start:start + b`` of parts ``first_part, first_part + 1, …``."""
        for j, ts in enumerate(block.tensors, start=first_part):
            for array, t in zip(self.arrays[j], ts):
                array[start : start + t.shape[0]] = t.detach().cpu().numpy()

    def prefixes(self) -> list[str]:
        """Key prefix of each part's test tensors: none for a single part, ``"j."`` for part ``j`` of a sum."""
        return part_prefixes(len(self.parts))

    def named_arrays(self) -> dict[str, np.ndarray]:
        """Arrays under the persisted names ``grad{j}_{f}_`` (part ``j``, factor ``f``)."""
        return {f"grad{j}_{f}_": a for j, arrays in enumerate(self.arrays) for f, a in enumerate(arrays)}

    @classmethod
    def from_named(cls, parts: tuple[Part, ...], source: object) -> "GradientStore":
        """Rebuild from attributes ``grad{j}_{f}_`` of ``source`` (an explainer after ``load``)."""
        return cls(parts, [tuple(getattr(source, f"grad{j}_{f}_") for f in range(p.n_factors)) for j, p in enumerate(parts)])

    def block(self, start: int, stop: int, *, dtype: torch.dtype, device: torch.device, n_params: int) -> GradientBlock:
        """Rows ``start:stop`` as a :class:`GradientBlock` (for the parts of one layout copy)."""
        tensors = [tuple(torch.as_tensor(a[start:stop]).to(device, dtype) for a in arrays) for arrays in self.arrays]
        return GradientBlock(self.parts, tensors, n_params)


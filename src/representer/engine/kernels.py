"""Bilinear forms ``a(t, i) = ⟨u(t), v(i)⟩ · s_i``: how every method scores a test × train block.

A method builds the train-side factors once (at ``fit``) as one of the kernels below, and the
test-side factors per batch as a :class:`TestFactors`. The scoring engine
(:mod:`representer.engine.scoring`) only ever asks a kernel for one ``(m, b)`` block of scores at a
time, so memory is bounded by the block size.

* :class:`CoefficientKernel` — ``a(t, i, c) = coef[i, c] · ⟨x_t, x_i⟩`` (RPS-L2, DualView, SIM, kNN).
* :class:`ClassFactorKernel` — ``a(t, i, c) = ⟨x_t, V[i, c]⟩`` (RPS-LJE: ``V[i] = W_i``).
* :class:`GradientKernel` — ``a(t, i) = ⟨U_t, r_i ⊗ x_i⟩ = Σ_k r_ik ⟨U_t[k], x_i⟩``: a test-side
  ``(K, D)`` matrix against per-example head gradients ``g_i = r_i ⊗ x_i`` (influence with an
  exact or EK-FAC Hessian, RelatIF, gradient similarity).
* :class:`KroneckerKernel` — ``a(t, i) = ⟨s_t, r_i⟩ · ⟨a_t, x_i⟩``: the same form when
  ``U_t = s_t a_tᵀ`` has rank one (K-FAC influence), as a product of two small kernels.

Every kernel takes an optional per-training-point ``scale`` (``s_i``, e.g. RelatIF's
``1/‖H⁻¹g_i‖``). Class-dependent kernels read the test-side ``out`` (the head output explained)
and ``sign`` (``−1`` for class 0 of a binary head, whose logit is ``−z``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor

#: Runs of one output shorter than this on average are scaled by gathered coefficients instead.
_MIN_RUN = 8
#: Floats of the intermediate a :class:`GradientKernel` holds at once (gradient rows or projections):
#: 64 MiB in float32, so that a wide layer (200k entries per gradient) still gets ~80 training rows per
#: GEMM, which keeps it near full speed (a GEMM of 20 rows runs at about half speed).
_GRADIENT_CHUNK_FLOATS = 1 << 24


def _move(tensor: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``tensor`` on ``device``, cast to ``dtype`` only if it is floating (indices and keys keep theirs)."""
    return tensor.to(device=device, dtype=dtype) if tensor.is_floating_point() else tensor.to(device=device)


@dataclass
class TestFactors:
    """Test-side factors for a batch of ``m`` test points.

    ``tensors`` holds what the kernel reads (``x``, ``u``, ``a``, ``s`` ...), ``out`` the head
    output explained per test point and ``sign`` its sign (see module docstring).
    """

    tensors: dict[str, Tensor]
    out: Tensor
    sign: Tensor
    m: int = field(init=False)

    def __post_init__(self) -> None:
        self.m = int(self.out.shape[0])

    def slice(self, start: int, stop: int) -> "TestFactors":
        return TestFactors({k: v[start:stop] for k, v in self.tensors.items()}, self.out[start:stop], self.sign[start:stop])

    def take(self, rows: Tensor) -> "TestFactors":
        """The test points ``rows`` (a ``LongTensor``), in that order."""
        return TestFactors({k: v[rows] for k, v in self.tensors.items()}, self.out[rows], self.sign[rows])

    def to(self, device: torch.device, dtype: torch.dtype) -> "TestFactors":
        """On ``device``, floating tensors cast to ``dtype``; integer tensors (and ``out``) keep their dtype."""
        return TestFactors(
            {k: _move(v, device, dtype) for k, v in self.tensors.items()},
            self.out.to(device),
            _move(self.sign, device, dtype),
        )


class BilinearKernel(ABC):
    """Train-side factors of ``n`` training points. Subclasses implement :meth:`raw_block`."""

    scale: Tensor | None

    @property
    @abstractmethod
    def n(self) -> int:
        """Number of training points."""

    @abstractmethod
    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        """Unscaled scores ``(m, stop − start)`` of the test batch against training rows ``start:stop``."""

    @abstractmethod
    def tensors(self) -> dict[str, Tensor]:
        """The train-side tensors (for moving between devices)."""

    def block(self, test: TestFactors, start: int, stop: int, out: Tensor | None = None) -> Tensor:
        """Scores ``(m, stop − start)``, with the per-training-point ``scale`` applied.

        ``out`` (optional) is a buffer of that shape with unit column stride that a kernel may
        write the scores into, to spare an allocation per block; the returned tensor holds the
        scores either way.
        """
        scores = self.raw_block(test, start, stop) if out is None else self._raw_block_into(test, start, stop, out)
        if self.scale is None:
            return scores
        return scores.mul_(self.scale[start:stop]) if scores is out else scores * self.scale[start:stop]

    def _raw_block_into(self, test: TestFactors, start: int, stop: int, out: Tensor) -> Tensor:
        """:meth:`raw_block`, written into ``out`` where the kernel can; by default it ignores ``out``."""
        return self.raw_block(test, start, stop)

    def to(self, device: torch.device, dtype: torch.dtype) -> "BilinearKernel":
        """Move every tensor to ``device``, in place, casting the floating ones to ``dtype``; returns ``self``."""
        for name, value in self.tensors().items():
            setattr(self, name, _move(value, device, dtype))
        if self.scale is not None:
            self.scale = _move(self.scale, device, dtype)
        return self


@dataclass
class CoefficientKernel(BilinearKernel):
    """``a(t, i, c) = sign_t · coef[i, c] · ⟨x_t, x_i⟩``; ``coef`` has one column per head output."""

    x: Tensor
    coef: Tensor
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        return {"x": self.x, "coef": self.coef}

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        x = test.tensors["x"]
        return self._raw_block_into(test, start, stop, torch.empty(test.m, stop - start, dtype=x.dtype, device=x.device))

    def _raw_block_into(self, test: TestFactors, start: int, stop: int, out: Tensor) -> Tensor:
        """One GEMM of the signed test rows into ``out``, then the coefficients multiplied in place.

        The sign (±1) is folded into the test rows, which is exact. When the test rows come in runs
        of one output (the engine sorts each batch by output) each run is scaled by one coefficient
        column in place; otherwise by the gathered ``(m, b)`` coefficients.
        """
        x = test.tensors["x"]
        torch.mm(x * test.sign[:, None].to(x.dtype), self.x[start:stop].T, out=out)
        coef = self.coef[start:stop].T.contiguous()
        outputs, counts = torch.unique_consecutive(test.out, return_counts=True)
        if len(outputs) * _MIN_RUN > test.m:
            return out.mul_(coef.index_select(0, test.out))
        row = 0
        for c, count in zip(outputs.tolist(), counts.tolist()):
            out[row : row + count].mul_(coef[c])
            row += count
        return out


@dataclass
class ClassFactorKernel(BilinearKernel):
    """``a(t, i, c) = sign_t · ⟨x_t, V[i, c]⟩`` with ``V`` of shape ``(n, K, D)``."""

    v: Tensor
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.v.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        return {"v": self.v}

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        x = test.tensors["x"]
        result = torch.empty(test.m, stop - start, dtype=x.dtype, device=x.device)
        for c in torch.unique(test.out).tolist():
            rows = (test.out == c).nonzero(as_tuple=True)[0]
            result[rows] = x[rows] @ self.v[start:stop, c].T
        return result * test.sign[:, None]


@dataclass
class RankOneTrainKernel(BilinearKernel):
    """Training gradients held as the factors of ``r_i ⊗ x_i``: ``x`` ``(n, D)`` and ``r`` ``(n, K)``.

    The base of the kernels that differ only in their test side (:class:`GradientKernel`,
    :class:`KroneckerKernel`, :class:`LowRankGradientKernel`).
    """

    x: Tensor
    r: Tensor
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        return {"x": self.x, "r": self.r}


@dataclass
class GradientKernel(RankOneTrainKernel):
    """``a(t, i) = ⟨U_t, r_i ⊗ x_i⟩ = Σ_k r_ik ⟨U_t[k], x_i⟩`` with test-side ``u`` of shape ``(m, K, D)``.

    ``U_t`` (e.g. ``unvec(H⁻¹g_t)``) has full rank in general, so the score does not factor into
    ``⟨·, r_i⟩⟨·, x_i⟩`` (that is :class:`KroneckerKernel`, for rank-one ``U_t``). A block is one
    GEMM of ``m·b·K·D`` multiply-adds either way; what differs is the intermediate:

    * ``D ≤ m``: the training gradients ``G = r ⊗ x`` ``(b, K·D)``, then ``U (m, K·D) · Gᵀ``;
    * ``D > m`` (few test points): the projections ``X U_tᵀ`` ``(b, m, K)``, contracted with ``r``.

    The rule picks the smaller of ``b·K·D`` and ``b·m·K`` floats to write and read back; either is
    built for at most ``_GRADIENT_CHUNK_FLOATS`` floats' worth of training rows at a time, so a
    block's memory is its ``(m, b)`` scores plus one chunk (``benchmarks/bench_engine.py``).
    """

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        u = test.tensors["u"]
        return self._raw_block_into(test, start, stop, torch.empty(u.shape[0], stop - start, dtype=u.dtype, device=u.device))

    def _raw_block_into(self, test: TestFactors, start: int, stop: int, out: Tensor) -> Tensor:
        u = test.tensors["u"]
        m, k, d = u.shape
        by_gradients = d <= m
        rows = max(1, _GRADIENT_CHUNK_FLOATS // (k * d if by_gradients else m * k))
        flat = u.reshape(m, k * d) if by_gradients else u.reshape(m * k, d).T
        for c0 in range(start, stop, rows):
            c1 = min(c0 + rows, stop)
            x, r = self.x[c0:c1], self.r[c0:c1]
            target = out if c1 - c0 == stop - start else out[:, c0 - start : c1 - start]
            if by_gradients:
                gradients = (r.unsqueeze(2) * x.unsqueeze(1)).reshape(c1 - c0, k * d)
                scores = torch.mm(flat, gradients.T, out=target) if target is out else flat @ gradients.T
            else:
                scores = torch.einsum("bmk,bk->mb", (x @ flat).reshape(c1 - c0, m, k), r)
            if scores is not target:
                target.copy_(scores)
        return out


@dataclass
class KroneckerKernel(RankOneTrainKernel):
    """``a(t, i) = ⟨s_t, r_i⟩ · ⟨a_t, x_i⟩`` with test-side ``s`` ``(m, K)`` and ``a`` ``(m, D)``."""

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        return (test.tensors["a"] @ self.x[start:stop].T) * (test.tensors["s"] @ self.r[start:stop].T)

    def _raw_block_into(self, test: TestFactors, start: int, stop: int, out: Tensor) -> Tensor:
        torch.mm(test.tensors["a"], self.x[start:stop].T, out=out)
        return out.mul_(test.tensors["s"] @ self.r[start:stop].T)


@dataclass
class LowRankGradientKernel(RankOneTrainKernel):
    """``a(t, i) = ⟨U_t, r_i ⊗ x_i⟩`` for a test-side matrix of rank ``R`` given by its factors, ``U_t = Σ_k s_tk a_tkᵀ``.

    Test side ``s`` ``(m, R, K)`` and ``a`` ``(m, R, D)``: the score is ``Σ_k (s_tk·r_i)(a_tk·x_i)``, a sum of
    ``R`` :class:`KroneckerKernel` s over the same training factors — ``R·(K + D)`` multiply-adds per
    pair instead of the ``K·D`` of :class:`GradientKernel` (EK-FAC influence of rank-one layer gradients,
    whose damped inverse eigenvalues ``1/(E + λ)`` have low numerical rank). A block is two GEMMs with
    ``m·R`` rows per chunk of training rows, at most ``_GRADIENT_CHUNK_FLOATS`` floats of each.
    """

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        s = test.tensors["s"]
        return self._raw_block_into(test, start, stop, torch.empty(s.shape[0], stop - start, dtype=s.dtype, device=s.device))

    def _raw_block_into(self, test: TestFactors, start: int, stop: int, out: Tensor) -> Tensor:
        s, a = test.tensors["s"], test.tensors["a"]
        m, rank, _ = s.shape
        s_rows, a_rows = s.reshape(m * rank, -1), a.reshape(m * rank, -1)
        cols = max(1, _GRADIENT_CHUNK_FLOATS // (m * rank))
        for c0 in range(start, stop, cols):
            c1 = min(c0 + cols, stop)
            products = (s_rows @ self.r[c0:c1].T).mul_(a_rows @ self.x[c0:c1].T)
            out[:, c0 - start : c1 - start] = products.view(m, rank, c1 - c0).sum(dim=1)
        return out


@dataclass
class SumKernel(BilinearKernel):
    """``a(t, i) = Σ_j a_j(t, i) · s_i``: a sum of part kernels over the same ``n`` training points.

    Part ``j`` reads the test tensors whose names start with ``"j."`` (prefix removed), so parts of
    different kinds share one :class:`TestFactors` — e.g. the layers of a network's factored
    per-example gradients (:mod:`representer.fullmodel.factored`): Kronecker parts for rank-one
    layer gradients, dense inner products for the rest. The parts' own ``scale`` is ignored; the
    sum's ``scale`` applies to the total.
    """

    parts: list[BilinearKernel]
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return self.parts[0].n

    def tensors(self) -> dict[str, Tensor]:
        return {f"{j}.{name}": value for j, part in enumerate(self.parts) for name, value in part.tensors().items()}

    def _part_test(self, test: TestFactors, j: int) -> TestFactors:
        prefix = f"{j}."
        tensors = {name[len(prefix) :]: value for name, value in test.tensors.items() if name.startswith(prefix)}
        return TestFactors(tensors, test.out, test.sign)

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        first = self.parts[0].raw_block(self._part_test(test, 0), start, stop)
        return self._add_rest(test, start, stop, first)

    def _raw_block_into(self, test: TestFactors, start: int, stop: int, out: Tensor) -> Tensor:
        first = self.parts[0]._raw_block_into(self._part_test(test, 0), start, stop, out)
        return self._add_rest(test, start, stop, first)

    def _add_rest(self, test: TestFactors, start: int, stop: int, total: Tensor) -> Tensor:
        for j in range(1, len(self.parts)):
            total += self.parts[j].raw_block(self._part_test(test, j), start, stop)
        return total

    def to(self, device: torch.device, dtype: torch.dtype) -> "SumKernel":
        for part in self.parts:
            part.to(device, dtype)
        if self.scale is not None:
            self.scale = _move(self.scale, device, dtype)
        return self

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
        return TestFactors(
            {k: v.to(device=device, dtype=dtype) for k, v in self.tensors.items()},
            self.out.to(device),
            self.sign.to(device=device, dtype=dtype),
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
        """Move every tensor to ``device`` / ``dtype``, in place; returns ``self``."""
        for name, value in self.tensors().items():
            setattr(self, name, value.to(device=device, dtype=dtype))
        if self.scale is not None:
            self.scale = self.scale.to(device=device, dtype=dtype)
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
class GradientKernel(BilinearKernel):
    """``a(t, i) = Σ_k r_ik ⟨U_t[k], x_i⟩`` with test-side ``u`` of shape ``(m, K, D)``."""

    x: Tensor
    r: Tensor
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        return {"x": self.x, "r": self.r}

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        u = test.tensors["u"]
        m, k, d = u.shape
        projected = (self.x[start:stop] @ u.reshape(m * k, d).T).reshape(stop - start, m, k)
        return torch.einsum("bmk,bk->mb", projected, self.r[start:stop])


@dataclass
class KroneckerKernel(BilinearKernel):
    """``a(t, i) = ⟨s_t, r_i⟩ · ⟨a_t, x_i⟩`` with test-side ``s`` ``(m, K)`` and ``a`` ``(m, D)``."""

    x: Tensor
    r: Tensor
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        return {"x": self.x, "r": self.r}

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        return (test.tensors["a"] @ self.x[start:stop].T) * (test.tensors["s"] @ self.r[start:stop].T)

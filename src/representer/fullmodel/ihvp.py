"""Inverse curvature–vector products ``(C + λI)⁻¹ v`` over all (selected) parameters.

``C`` is the Gauss–Newton matrix or the Hessian of the mean training loss
(:class:`~representer.fullmodel.curvature.Curvature`), ``λ = damping``. Every backend maps rows
``V`` ``(m, P)`` to rows ``(C + λI)⁻¹ v_j`` and gives the two quadratic forms RelatIF needs,
``g_iᵀ(C + λI)⁻¹g_i`` and ``‖(C + λI)⁻¹g_i‖²``:

* :class:`ExactInverse` — the dense ``P × P`` matrix from ``P`` curvature products, Cholesky in the
  compute precision (``P`` up to about 20k: the matrix is ``8P²`` bytes in float64).
* :class:`ConjugateGradient` — CG on curvature products, all ``m`` right-hand sides at once
  (independent step sizes), stopped per column at relative residual ``‖(C + λI)x − v‖/‖v‖ ≤ tol``.
  ``C`` must be positive definite after damping (always so for ``"ggn"``).
* :class:`LiSSA` — Agarwal et al. / Koh & Liang's recursion
  ``h ← v + h − (C_B + λI)h / scale`` (``C_B`` on a mini-batch, or the full set), returning
  ``h / scale`` averaged over ``repeats``. Its fixed point is ``(C + λI)⁻¹v``; it converges when
  ``scale > λ_max(C) + λ`` at rate ``1 − λ/scale`` per step, so ``depth`` must be several times
  ``scale/λ``. ``scale=None`` sets it from a power-iteration estimate of ``λ_max``. After the
  recursion one full-data product measures the relative residual ``‖(C + λI)x − v‖/‖v‖``; a
  :class:`ConvergenceWarning` is raised when it exceeds ``tol`` — the recursion was truncated at
  ``depth`` before converging (the bias of spec pitfall 17) or mini-batch noise dominates.
* :class:`IdentityInverse` — ``C + λI`` replaced by ``I`` (gradient dot products).
* EK-FAC lives in :mod:`representer.fullmodel.ekfac`.

Each solver keeps diagnostics of its last call in ``report`` (iterations, residual norms).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import RepresenterError
from .factored import GradientBlock, split_flat

if TYPE_CHECKING:
    from .curvature import Curvature

Tensor = torch.Tensor


class ConvergenceWarning(RuntimeWarning):
    """An iterative inverse-curvature solver stopped before reaching its tolerance."""


class InverseCurvature(ABC):
    """``v ↦ (C + λI)⁻¹ v`` on rows, plus the quadratic forms RelatIF's denominators use."""

    report: dict[str, Any]

    @abstractmethod
    def solve(self, v: Tensor) -> Tensor:
        """Rows ``(m, P)`` → rows ``(C + λI)⁻¹ v_j``."""

    def forms(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """``(g_iᵀ(C + λI)⁻¹g_i, ‖(C + λI)⁻¹g_i‖²)`` per row of ``g``."""
        s = self.solve(g)
        return (s * g).sum(dim=1), (s * s).sum(dim=1)

    def solve_block(self, block: GradientBlock) -> list[Tensor]:
        """Per part of the factored gradients ``block``, ``(C + λI)⁻¹g`` (``(b, out, in')`` for layer parts).

        Made dense in row chunks of bounded size (:meth:`GradientBlock.flat_chunks`).
        """
        chunks = [split_flat(block.parts, self.solve(flat)) for _, flat in block.flat_chunks()]
        return [torch.cat([c[j] for c in chunks]) for j in range(len(block.parts))]

    def forms_block(self, block: GradientBlock) -> tuple[Tensor, Tensor]:
        """:meth:`forms` of the factored gradients ``block``, in row chunks of bounded size."""
        pairs = [self.forms(flat) for _, flat in block.flat_chunks()]
        return torch.cat([q for q, _ in pairs]), torch.cat([v for _, v in pairs])


class IdentityInverse(InverseCurvature):
    """``C + λI`` replaced by the identity: influence becomes the gradient dot product."""

    def __init__(self) -> None:
        self.report = {}

    def solve(self, v: Tensor) -> Tensor:
        return v

    def forms_block(self, block: GradientBlock) -> tuple[Tensor, Tensor]:
        norms = block.sq_norms()
        return norms, norms


class ExactInverse(InverseCurvature):
    """The Cholesky factor ``L`` of the dense ``C + λI`` (``P ≤ max_params``)."""

    def __init__(self, factor: Tensor) -> None:
        self.factor = factor
        self.report = {"n_params": int(factor.shape[0])}

    @staticmethod
    def check_size(curvature: Curvature, *, max_params: int = 20000) -> Curvature:
        """``curvature``, if its dense ``P × P`` matrix is affordable (``P ≤ max_params``); raise otherwise."""
        n_params = curvature.network.params.n_params
        if n_params > max_params:
            raise RepresenterError(
                f"hessian='exact' builds a {n_params}×{n_params} matrix; that is above max_params={max_params}. "
                "Use hessian='ekfac', 'cg' or 'lissa', or select fewer parameters with `params=`."
            )
        return curvature

    @classmethod
    def fit(cls, curvature: Curvature, damping: float, *, max_params: int = 20000) -> "ExactInverse":
        """Build ``C`` from ``P`` curvature products and factorise ``C + λI``."""
        matrix = cls.check_size(curvature, max_params=max_params).matrix()
        return cls.factorise(matrix, damping, kind=curvature.kind)

    @classmethod
    def factorise(cls, matrix: Tensor, damping: float, *, kind: str = "ggn") -> "ExactInverse":
        """Cholesky-factorise ``C + λI`` for the dense curvature ``matrix``; a clear error if it is not positive definite."""
        eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
        factor, info = torch.linalg.cholesky_ex(matrix + damping * eye)
        if int(info) != 0:
            smallest = float(torch.linalg.eigvalsh(matrix)[0])
            raise RepresenterError(
                f"The damped {kind} (damping={damping:g}) is not positive definite (smallest curvature "
                f"eigenvalue {smallest:.3g}); raise `damping` above {-smallest:.3g} or use curvature='ggn'."
            )
        return cls(factor)

    def solve(self, v: Tensor) -> Tensor:
        return torch.cholesky_solve(v.T.to(self.factor.dtype), self.factor).T

    def forms(self, g: Tensor) -> tuple[Tensor, Tensor]:
        w = torch.linalg.solve_triangular(self.factor, g.T.to(self.factor.dtype), upper=False)
        s = torch.linalg.solve_triangular(self.factor.T, w, upper=True)
        return (w * w).sum(dim=0), (s * s).sum(dim=0)


class ConjugateGradient(InverseCurvature):
    """Batched conjugate gradients on ``C + λI`` (one curvature product of all columns per iteration)."""

    def __init__(self, curvature: Curvature, damping: float, *, tol: float = 1e-10, max_iter: int = 500) -> None:
        self.curvature = curvature
        self.damping = float(damping)
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.report = {}

    def _apply(self, x: Tensor) -> Tensor:
        return self.curvature.matvec(x) + self.damping * x

    def solve(self, v: Tensor) -> Tensor:
        b = v.to(self.curvature.network.device, self.curvature.network.dtype)
        b_norm = b.norm(dim=1).clamp_min(torch.finfo(b.dtype).tiny)
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = (r * r).sum(dim=1)
        active = torch.ones(b.shape[0], dtype=torch.bool, device=b.device)
        history = []
        it = 0
        for it in range(1, self.max_iter + 1):
            idx = active.nonzero(as_tuple=True)[0]
            hp = self._apply(p[idx])
            curv = (p[idx] * hp).sum(dim=1)
            if bool((curv <= 0).any()):
                raise RepresenterError(
                    "CG met a direction of non-positive curvature: the damped Hessian is not positive definite. "
                    "Raise `damping` or use curvature='ggn'."
                )
            step = rr[idx] / curv
            x[idx] += step[:, None] * p[idx]
            r[idx] -= step[:, None] * hp
            rr_new = (r[idx] * r[idx]).sum(dim=1)
            p[idx] = r[idx] + (rr_new / rr[idx])[:, None] * p[idx]
            rr[idx] = rr_new
            relative = rr.sqrt() / b_norm
            history.append(float(relative.max()))
            active = relative > self.tol
            if not bool(active.any()):
                break
        final = (self._apply(x) - b).norm(dim=1) / b_norm
        converged = not bool(active.any())
        self.report = {
            "iterations": it,
            "residual_history": history,
            "final_relative_residuals": final.cpu().numpy().tolist(),
            "converged": converged,
        }
        if not converged:
            warnings.warn(
                f"CG stopped after {it} iterations with relative residual up to {float(final.max()):.2e} > tol={self.tol:g}; "
                "raise `max_iter` or `damping`.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return x


class LiSSA(InverseCurvature):
    """The LiSSA recursion (see the module docstring) with convergence diagnostics."""

    def __init__(
        self,
        curvature: Curvature,
        damping: float,
        *,
        depth: int = 1000,
        scale: float | None = None,
        repeats: int = 1,
        batch_size: int | None = None,
        tol: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.curvature = curvature
        self.damping = float(damping)
        self.depth = int(depth)
        self.repeats = int(repeats)
        self.batch_size = batch_size
        self.tol = float(tol)
        self.seed = int(seed)
        self.lambda_max = curvature.largest_eigenvalue(seed=seed) if scale is None else None
        self.scale = float(scale) if scale is not None else 1.2 * (self.lambda_max + self.damping)
        if self.scale <= 0:
            raise RepresenterError("`lissa_scale` must be > 0.")
        self.report = {"scale": self.scale, "lambda_max_estimate": self.lambda_max}

    def solve(self, v: Tensor) -> Tensor:
        v = v.to(self.curvature.network.device, self.curvature.network.dtype)
        rng = np.random.default_rng(self.seed)
        n = self.curvature.data.n
        estimates = []
        steps: list[float] = []
        for _ in range(self.repeats):
            h = v.clone()
            for _ in range(self.depth):
                rows = None if self.batch_size is None else rng.choice(n, size=min(int(self.batch_size), n), replace=False)
                h_new = v + h - (self.curvature.matvec(h, rows) + self.damping * h) / self.scale
                step = float(((h_new - h).norm(dim=1) / h_new.norm(dim=1).clamp_min(torch.finfo(h.dtype).tiny)).max())
                h = h_new
                steps.append(step)
            estimates.append(h / self.scale)
        x = torch.stack(estimates).mean(dim=0)
        residual = (self.curvature.matvec(x) + self.damping * x - v).norm(dim=1) / v.norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny)
        worst = float(residual.max())
        self.report.update({"final_relative_step": steps[-1], "final_relative_residuals": residual.cpu().numpy().tolist(), "depth": self.depth})
        if worst > self.tol:
            cause = "truncated before converging" if steps[-1] > self.tol else "noisy (mini-batch curvature)"
            warnings.warn(
                f"LiSSA did not converge: relative residual up to {worst:.2e} > tol={self.tol:g} after depth={self.depth} "
                f"(last relative step {steps[-1]:.2e}: the recursion was {cause}); its estimate is biased towards small "
                f"curvature directions. Raise `lissa_depth` (≳ several × scale/damping = {self.scale / self.damping:.0f}), "
                "`lissa_repeats` or `damping`.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return x

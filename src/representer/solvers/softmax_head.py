"""The L2-regularised softmax head fit shared by RPS-L2's refit and the convex evaluation models.

    Θ* = argmin_Θ (1/n) Σ_i CE(Θ x̃_i, q_i) + penalty · ‖Θ‖_F²

over ``Θ`` of shape ``(K, D+1)`` acting on training rows with the ones column already appended
(``x̃ = [φ; 1]``, so the bias is penalised too), for soft or one-hot targets ``q``. The problem is
strictly convex for ``penalty > 0``; it is solved in float64 by Newton–CG with exact
Hessian-vector products from :mod:`representer.head`. Conventions differ across the papers: RPS-L2
writes the penalty as ``λ‖Θ‖²`` (``penalty = λ``), the influence/RelatIF evaluation models as
``(λ/2)‖Θ‖²`` (``penalty = λ/2``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import head as hm
from .newton import NewtonResult, newton_cg


def fit_softmax_head(
    x_tilde: Tensor,
    targets: Tensor,
    penalty: float,
    *,
    theta0: Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    progress: bool | None = False,
) -> NewtonResult:
    """Minimise the mean cross-entropy of ``softmax(x̃ Θᵀ)`` against ``targets`` plus ``penalty·‖Θ‖²``.

    Args:
        x_tilde: ``(n, D+1)`` float64 rows with the ones column.
        targets: ``(n, K)`` float64 rows on the simplex (probabilities or one-hot labels).
        penalty: coefficient of ``‖Θ‖_F²`` (> 0).
        theta0: starting point ``(K, D+1)`` (default zeros).
        tol, max_iter, progress: passed to :func:`~representer.solvers.newton.newton_cg` (``‖∇F‖_F ≤ tol``;
            a bar over the Newton iterations).
    """

    def fun_grad(theta: Tensor) -> tuple[Tensor, Tensor]:
        z = hm.logits(x_tilde, theta)
        value = hm.mean_cross_entropy(z, targets) + penalty * (theta * theta).sum()
        return value, hm.gradient_of_mean_loss(x_tilde, hm.residuals(z, targets)) + 2 * penalty * theta

    def hessp_at(theta: Tensor):
        p = hm.probabilities(hm.logits(x_tilde, theta))
        return lambda v: hm.hessian_vector_product(x_tilde, p, v) + 2 * penalty * v

    start = torch.zeros(targets.shape[1], x_tilde.shape[1], dtype=x_tilde.dtype, device=x_tilde.device) if theta0 is None else theta0
    return newton_cg(fun_grad, hessp_at, start, tol=tol, max_iter=max_iter, progress=progress, desc="softmax head refit")

"""Inexact Newton–CG for smooth, strongly convex objectives (the L2-regularised head refits).

Each iteration solves ``∇²F(w) d = −∇F(w)`` with conjugate gradients on Hessian-vector products
to a relative tolerance ``min(0.5, √‖∇F‖)`` (superlinear convergence), then backtracks on ``d``
with an Armijo condition. It stops on the gradient norm, not an iteration count: the RPS-L2
representer identity is exact only at a stationary point, and its logit error is ``∇F / (2λ)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class NewtonResult:
    """Solution ``x``, final gradient norm ``grad_norm`` (Frobenius), iterations and CG steps."""

    x: Tensor
    value: float
    grad_norm: float
    n_iter: int
    n_cg: int
    converged: bool


def _cg(hessp: Callable[[Tensor], Tensor], b: Tensor, rtol: float, max_iter: int) -> tuple[Tensor, int]:
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum()
    target = (rtol * b.norm()) ** 2
    for it in range(1, max_iter + 1):
        hp = hessp(p)
        step = rr / (p * hp).sum()
        x = x + step * p
        r = r - step * hp
        rr_new = (r * r).sum()
        if rr_new <= target:
            return x, it
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, max_iter


def newton_cg(
    fun_grad: Callable[[Tensor], tuple[Tensor, Tensor]],
    hessp_at: Callable[[Tensor], Callable[[Tensor], Tensor]],
    x0: Tensor,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    max_cg: int = 250,
) -> NewtonResult:
    """Minimise a strongly convex ``F`` from ``x0`` until ``‖∇F‖ ≤ tol``.

    Args:
        fun_grad: ``x ↦ (F(x), ∇F(x))``.
        hessp_at: ``x ↦ (v ↦ ∇²F(x) v)``.
        x0: starting point (any shape; the algorithm works on the tensor as a vector).
    """
    x = x0.clone()
    value, grad = fun_grad(x)
    n_cg = 0
    for it in range(max_iter + 1):
        gnorm = float(grad.norm())
        if gnorm <= tol:
            return NewtonResult(x, float(value), gnorm, it, n_cg, True)
        if it == max_iter:
            break
        direction, steps = _cg(hessp_at(x), -grad, min(0.5, gnorm**0.5), max_cg)
        n_cg += steps
        slope = float((grad * direction).sum())
        if slope >= 0:
            direction, slope = -grad, -(gnorm**2)
        t = 1.0
        while True:
            new_value, new_grad = fun_grad(x + t * direction)
            if new_value <= value + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12 and new_value >= value:
            break
        x = x + t * direction
        value, grad = new_value, new_grad
    return NewtonResult(x, float(value), float(grad.norm()), it, n_cg, False)

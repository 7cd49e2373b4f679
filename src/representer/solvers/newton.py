"""Inexact Newton–CG for smooth, strongly convex objectives (the L2-regularised head refits).

Each iteration solves ``∇²F(w) d = −∇F(w)`` with conjugate gradients on Hessian-vector products
to a relative tolerance ``min(0.5, √‖∇F‖)`` (superlinear convergence), then backtracks on ``d``
from ``t = 1``. It stops on the gradient norm, not an iteration count: the RPS-L2 representer
identity is exact only at a stationary point, and its logit error is ``∇F / (2λ)``.

**Line search near the optimum.** The Armijo test ``F(w + td) ≤ F(w) + c₁ t ∇Fᵀd`` compares values
of ``F``, which float64 resolves only to about ``1e-16 · Σ|terms|``; the decrease a Newton step
still has to make, ``≈ ½ ∇Fᵀ∇²F⁻¹∇F``, falls below that once ``‖∇F‖`` is around ``1e-9`` (for
``λ = 0.003``), while the gradient itself is still accurate to ``1e-15``. A step is therefore also
accepted under the *approximate Wolfe* condition of Hager & Zhang (2005): ``F`` does not rise by
more than its round-off ``ε_F = 1e-10 · max(1, |F(w)|)`` and the directional derivative satisfies

    ∇F(w + td)ᵀd ≤ (2δ − 1) ∇F(w)ᵀd,    δ = 0.1,

which on the quadratic model of ``F`` along ``d`` is the Armijo condition with constant ``δ``, written
with derivatives (accurate) instead of values (round-off).

**Stalls.** Where the gradient itself hits its round-off floor (no step lowers ``F`` beyond ``ε_F``
or ``‖∇F‖`` by 10 % for ``stall_iter`` iterations, or the line search finds no acceptable step)
the solver stops early instead of spending its iteration budget, with ``converged=False`` and
``reason`` saying why; it warns only when the gradient norm it reached is more than 100× the
tolerance. It always returns the iterate with the smallest gradient norm, which for a
``μ``-strongly convex ``F`` is within ``‖∇F‖ / μ`` of the minimiser.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._progress import progress_bar

Tensor = torch.Tensor

CONVERGED = "converged"
STALLED = "stalled at round-off floor"
LINE_SEARCH_FAILED = "line search failed"
MAX_ITER = "max_iter reached"

#: Armijo constant of the value test.
_ARMIJO = 1e-4
#: ``δ`` of the approximate Wolfe test (Hager & Zhang's default).
_APPROX_WOLFE = 0.1
#: Relative round-off allowed in ``F`` by the approximate Wolfe test.
_VALUE_NOISE = 1e-10
#: Smallest step tried by the backtracking line search.
_MIN_STEP = 1e-12
#: An iteration makes progress if it lowers the best gradient norm by this factor (or ``F`` beyond ``ε_F``).
_PROGRESS = 0.9
#: Warn when the returned gradient norm exceeds the tolerance by more than this factor.
_WARN_FACTOR = 100.0


@dataclass(frozen=True)
class NewtonResult:
    """Solution ``x`` and its ``value``, gradient norm ``grad_norm`` (Frobenius), iterations and CG steps.

    ``converged`` is ``grad_norm ≤ threshold`` (``tol``, or ``tol · max(1, initial_grad_norm)``
    with ``relative=True``); ``reason`` is one of :data:`CONVERGED`, :data:`STALLED`,
    :data:`LINE_SEARCH_FAILED`, :data:`MAX_ITER`.
    """

    x: Tensor
    value: float
    grad_norm: float
    n_iter: int
    n_cg: int
    converged: bool
    reason: str = CONVERGED
    threshold: float = 0.0
    initial_grad_norm: float = 0.0


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


def _line_search(
    fun_grad: Callable[[Tensor], tuple[Tensor, Tensor]], x: Tensor, value: float, direction: Tensor, slope: float
) -> tuple[float, Tensor, Tensor] | None:
    """Backtrack from ``t = 1``: ``(t, F, ∇F)`` at the first step passing Armijo or approximate Wolfe, else ``None``."""
    noise = _VALUE_NOISE * max(1.0, abs(value))
    t = 1.0
    while t >= _MIN_STEP:
        new_value, new_grad = fun_grad(x + t * direction)
        v = float(new_value)
        if v <= value + _ARMIJO * t * slope:
            return t, new_value, new_grad
        if v <= value + noise and float((new_grad * direction).sum()) <= (2 * _APPROX_WOLFE - 1) * slope:
            return t, new_value, new_grad
        t *= 0.5
    return None


def newton_cg(
    fun_grad: Callable[[Tensor], tuple[Tensor, Tensor]],
    hessp_at: Callable[[Tensor], Callable[[Tensor], Tensor]],
    x0: Tensor,
    *,
    tol: float = 1e-10,
    relative: bool = False,
    max_iter: int = 100,
    max_cg: int = 250,
    stall_iter: int = 3,
    progress: bool | None = False,
    desc: str = "Newton–CG",
) -> NewtonResult:
    """Minimise a strongly convex ``F`` from ``x0`` until ``‖∇F‖ ≤ tol`` (see the module docstring).

    Args:
        fun_grad: ``x ↦ (F(x), ∇F(x))``.
        hessp_at: ``x ↦ (v ↦ ∇²F(x) v)``.
        x0: starting point (any shape; the algorithm works on the tensor as a vector).
        tol: gradient-norm tolerance.
        relative: stop at ``‖∇F‖ ≤ tol · max(1, ‖∇F(x0)‖)`` instead (scale-free for large gradients,
            the absolute ``tol`` for small ones).
        max_iter: Newton iterations at most.
        max_cg: CG steps per Newton iteration at most.
        stall_iter: stop as stalled after this many iterations without progress (module docstring).
        progress, desc: a progress bar labelled ``desc`` over the iterations (:mod:`representer._progress`;
            it stops early when the solver does).
    """
    x = x0.clone()
    value, grad = fun_grad(x)
    initial = float(grad.norm())
    threshold = tol * max(1.0, initial) if relative else tol
    best = (x, value, initial)
    reference, last_progress, n_cg, reason = float(value), 0, 0, MAX_ITER
    for it in progress_bar(range(max_iter + 1), desc=desc, total=max_iter + 1, progress=progress):
        gnorm = float(grad.norm())
        if float(value) < reference - _VALUE_NOISE * max(1.0, abs(reference)) or gnorm < _PROGRESS * best[2]:
            reference, last_progress = float(value), it
        if gnorm < best[2]:
            best = (x, value, gnorm)
        if gnorm <= threshold:
            reason = CONVERGED
            break
        if it - last_progress >= stall_iter:
            reason = STALLED
            break
        if it == max_iter:
            break
        direction, steps = _cg(hessp_at(x), -grad, min(0.5, gnorm**0.5), max_cg)
        n_cg += steps
        slope = float((grad * direction).sum())
        if slope >= 0:
            direction, slope = -grad, -(gnorm**2)
        step = _line_search(fun_grad, x, float(value), direction, slope)
        if step is None:
            reason = LINE_SEARCH_FAILED
            break
        t, value, grad = step
        x = x + t * direction
    x, value, gnorm = best
    if gnorm > _WARN_FACTOR * threshold:
        warnings.warn(
            f"Newton–CG stopped ({reason}) after {it} iterations with ‖∇F‖ = {gnorm:.3g}, more than "
            f"{_WARN_FACTOR:g}× the tolerance {threshold:g}; "
            + ("raise `max_iter`." if reason == MAX_ITER else "float64 resolves ∇F no better here; loosen `tol`."),
            RuntimeWarning,
            stacklevel=2,
        )
    return NewtonResult(x, float(value), gnorm, it, n_cg, gnorm <= threshold, reason, threshold, initial)

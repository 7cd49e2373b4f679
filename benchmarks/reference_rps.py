"""The reference RPS-L2 optimiser (spec §2.3), re-implemented as the comparison baseline.

This is the fine-tuning loop of ``compute_representer_vals.py`` (Yeh et al. 2018), which DualView and
quanda copy: full-batch gradient descent from the given head with a backtracking (Armijo constant
1/2, ``t0 = 10``, shrink 0.5) line search, in float32, for at most 3,000 iterations; it keeps the
iterate with the smallest mean absolute gradient entry and stops once that is 200× below its
value at the first iteration. Then ``A = (softmax(Φ̃ W_best) − Q) / (−2 λ n)``.

Faithful in the math and the control flow. One deliberate difference makes the baseline *faster*
than the original, so ratios against it are conservative: the loss and its gradient are computed
in closed form (``∇F = Φ̃ᵀ(P − Q)/n + 2λW``) instead of with autograd and numpy round trips.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class ReferenceResult:
    """``w_best`` ``(D, K)``, representer weights ``alpha`` ``(n, K)``, iterations run, wall time."""

    w_best: Tensor
    alpha: Tensor
    iterations: int
    stopped_early: bool
    seconds: float


def _objective(x: Tensor, q: Tensor, w: Tensor, lam: float) -> Tensor:
    """``F(W) = (1/n) Σ_i [logsumexp(Φ̃_i W) − q_iᵀ Φ̃_i W] + λ ‖W‖²`` (max-shifted as in the original)."""
    z = x @ w
    z = z - z.max(dim=1, keepdim=True).values
    return (torch.logsumexp(z, dim=1) - (z * q).sum(dim=1)).sum() / x.shape[0] + lam * (w * w).sum()


def _gradient(x: Tensor, q: Tensor, w: Tensor, lam: float) -> Tensor:
    return x.T @ (torch.softmax(x @ w, dim=1) - q) / x.shape[0] + 2 * lam * w


def reference_rps(phi_tilde: Tensor, teacher: Tensor, w0: Tensor, *, lam: float = 0.003, max_iter: int = 3000) -> ReferenceResult:
    """Run the reference optimiser on ``Φ̃`` ``(n, D)``, teacher probabilities ``Q`` ``(n, K)`` and
    the given head ``W0`` ``(D, K)`` (features × classes, as in the original), all in float32."""
    x, q, w = (t.to(torch.float32) for t in (phi_tilde, teacher, w0))
    start = time.perf_counter()
    best, best_grad, first_grad = w, float("inf"), None
    stopped_early = False
    iteration = 0
    for iteration in range(max_iter):
        value = _objective(x, q, w, lam)
        grad = _gradient(x, q, w, lam)
        mean_abs = float(grad.abs().mean())
        if iteration == 0:
            first_grad = mean_abs
        if mean_abs < best_grad:
            best_grad, best = mean_abs, w
            if best_grad < first_grad / 200:
                stopped_early = True
                break
        w = _line_search(x, q, w, grad, value, lam)
    alpha = (torch.softmax(x @ best, dim=1) - q) / (-2 * lam * x.shape[0])
    return ReferenceResult(best, alpha, iteration + 1, stopped_early, time.perf_counter() - start)


def _line_search(x: Tensor, q: Tensor, w: Tensor, grad: Tensor, value: Tensor, lam: float) -> Tensor:
    """Backtracking from ``t = 10``: accept when ``F(W − tG) < F(W) − (t/2)‖G‖²``; below ``t = 1e-10`` give up
    (the tiny step is still taken, as in the original)."""
    t = 10.0
    grad_sq = float((grad * grad).sum())
    while True:
        candidate = w - t * grad
        if t < 1e-10:
            return candidate
        if float(_objective(x, q, candidate, lam) - value + t * grad_sq / 2) >= 0:
            t *= 0.5
        else:
            return candidate

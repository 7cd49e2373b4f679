"""Compiled inner loops of the Crammer–Singer dual coordinate ascent (numba, ``cache=True``).

Everything here works in the *textbook* problem and in the "β form" of its dual (Keerthi et al.
2008, the form LIBLINEAR uses): for every example ``i`` the row ``β_i ∈ R^K`` satisfies

    β_im ≤ u_im := C δ_{m,y_i},        Σ_m β_im = 0,

and the dual is ``min_β f(β) = ½ ||W(β)||² + Σ_{i,m} e_im β_im`` with ``W(β) = βᵀ Z`` (row ``m`` of
``W`` is ``Σ_i β_im z_i``) and ``e_im = 1 − δ_{m,y_i}``. Its gradient is ``G_im = e_im + w_mᵀ z_i``.
The multipliers of the usual ``α`` form are ``α_im = −β_im`` for ``m ≠ y_i``.

Per-row optimality (KKT): there is a level ``ν_i`` with ``G_im = ν_i`` where ``β_im < u_im`` and
``G_im ≤ ν_i`` where ``β_im = u_im``; the row's violation is therefore

    v_i = max_m G_im − min_{m : β_im < u_im} G_im       (≤ 0 exactly at optimality).

Row sub-problem, solved exactly: with ``A = ||z_i||²`` and ``b_m = G_im − A β_im``, the new row
minimises ``½ A ||β||² + bᵀβ`` over the row's feasible set. Stationarity gives
``β_m = min(u_m, (ν − b_m)/A)`` and ``Σ_m β_m = 0`` fixes ``ν`` as the root of the decreasing
piecewise-linear ``Σ_m max(D_m − ν, 0) = A C`` with ``D_m = b_m + A u_m``; taking ``D``
in decreasing order, ``ν = (Σ_{k<r} D_(k) − A C) / r`` for the first ``r`` with
``ν ≥ D_(r)`` — a closed form (``O(K log K)`` by sorting, ``O(K r)`` by selection as here). The own-class entry is then set from the others
(``β_{i,y_i} = −Σ_{m≠y_i} β_im``, or exactly ``C`` with the others rescaled to sum to ``−C`` when
``(ν − b_{y_i})/A ≥ C`` says it is at its bound), so that rounding never breaks ``Σ_m β_im = 0`` or ``Σ_{m≠y_i} α_im ≤ C``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def solve_row_subproblem(A, b, y_i, C, taken, out):
    """Exact minimiser of ``½ A ||β||² + bᵀβ`` s.t. ``β_m ≤ C δ_{m,y_i}``, ``Σ_m β_m = 0`` (``A > 0``).

    The ``D_m`` are taken in decreasing order by selection (``O(K r)`` for ``r`` variables above the
    level, usually 1–3) rather than by a full sort. ``taken`` is boolean scratch of length ``K``; the
    solution is written into ``out``.
    """
    K = b.shape[0]
    for m in range(K):
        taken[m] = False
    level_sum = -A * C
    r = 0
    while r < K:
        best = -1
        best_d = -np.inf
        for m in range(K):
            if not taken[m]:
                d = b[m] + A * C if m == y_i else b[m]
                if best < 0 or d > best_d:
                    best = m
                    best_d = d
        if r > 0 and level_sum >= r * best_d:
            break
        taken[best] = True
        level_sum += best_d
        r += 1
    level = level_sum / r
    others = 0.0
    for m in range(K):
        if m != y_i:
            step = (level - b[m]) / A
            out[m] = step if step < 0.0 else 0.0
            others += out[m]
    own_at_bound = (level - b[y_i]) / A >= C or -others > C
    if own_at_bound and others < 0.0:
        out[y_i] = C
        for m in range(K):
            if m != y_i:
                out[m] *= C / -others
    else:
        out[y_i] = -others


@njit(cache=True, fastmath={"reassoc", "contract"})
def _gradient_row(W, z, y_i, grad):
    """``grad_m = (1 − δ_{m,y_i}) + w_mᵀ z``."""
    K, D = W.shape
    for m in range(K):
        s = 0.0
        for j in range(D):
            s += W[m, j] * z[j]
        grad[m] = s if m == y_i else s + 1.0


@njit(cache=True)
def run_epoch(Z, y, sq_norm, beta, W, order, C, active, shrinking):
    """One pass of exact row updates over ``order``; returns the largest row violation seen.

    Each row's violation is measured before its update. With ``shrinking``, a row is marked
    inactive when it is *locked*: at most one of its variables is either free (``β_im < u_im``) or
    has ``G_im ≥`` the free level ``min_{free} G_im``. A locked row has violation ≤ 0 and an update
    would leave it unchanged; the caller re-activates all rows before declaring convergence.
    ``beta`` and ``W`` are updated in place.
    """
    K, D = W.shape
    grad = np.empty(K)
    b = np.empty(K)
    taken = np.empty(K, dtype=np.bool_)
    new = np.empty(K)
    worst = -np.inf
    for t in range(order.shape[0]):
        i = order[t]
        A = sq_norm[i]
        if A <= 0.0:
            continue
        y_i = y[i]
        z = Z[i]
        _gradient_row(W, z, y_i, grad)
        max_g = -np.inf
        min_free_g = np.inf
        for m in range(K):
            g = grad[m]
            if g > max_g:
                max_g = g
            bound = C if m == y_i else 0.0
            if beta[i, m] < bound and g < min_free_g:
                min_free_g = g
        violation = max_g - min_free_g
        if violation > worst:
            worst = violation
        if shrinking:
            movable = 0
            for m in range(K):
                bound = C if m == y_i else 0.0
                if beta[i, m] < bound or grad[m] >= min_free_g:
                    movable += 1
            if movable <= 1:
                active[i] = False
                continue
        if violation <= 1e-14:
            continue
        for m in range(K):
            b[m] = grad[m] - A * beta[i, m]
        solve_row_subproblem(A, b, y_i, C, taken, new)
        for m in range(K):
            delta = new[m] - beta[i, m]
            if delta != 0.0:
                beta[i, m] = new[m]
                for j in range(D):
                    W[m, j] += delta * z[j]
    return worst


@njit(cache=True)
def seed_generator(seed):
    """Seed numba's generator (the one ``run_epochs`` draws its epoch orders from)."""
    np.random.seed(seed)


@njit(cache=True)
def run_epochs(Z, y, sq_norm, beta, W, C, tol, max_epochs, shrinking, unshrink_below):
    """Run epochs in fresh random orders until an unshrunk epoch sees no violation above ``tol``.

    Shrunk rows are all re-activated whenever the active rows' largest violation falls below
    ``unshrink_below``, which then halves down to ``tol`` (LIBLINEAR's schedule). Returns
    ``(epochs run, whether an unshrunk epoch reached tol, the current unshrink_below)``.
    """
    n = Z.shape[0]
    active = np.ones(n, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    for epoch in range(1, max_epochs + 1):
        size = 0
        for i in range(n):
            if active[i]:
                order[size] = i
                size += 1
        full_pass = size == n
        current = order[:size]
        np.random.shuffle(current)
        seen = run_epoch(Z, y, sq_norm, beta, W, current, C, active, shrinking)
        if seen > unshrink_below:
            continue
        if seen <= tol and full_pass:
            return epoch, True, unshrink_below
        for i in range(n):
            active[i] = True
        unshrink_below = max(unshrink_below / 2.0, tol)
    return max_epochs, False, unshrink_below


@njit(cache=True)
def weights_from_beta(Z, beta):
    """``W = βᵀ Z`` (single-threaded, so it does not fight for cores on shared machines)."""
    n, D = Z.shape
    K = beta.shape[1]
    W = np.zeros((K, D))
    for i in range(n):
        for m in range(K):
            coefficient = beta[i, m]
            if coefficient != 0.0:
                for j in range(D):
                    W[m, j] += coefficient * Z[i, j]
    return W


@njit(cache=True)
def gradients(Z, y, W):
    """The ``(n, K)`` matrix ``G_im = (1 − δ_{m,y_i}) + w_mᵀ z_i``."""
    n = Z.shape[0]
    G = np.empty((n, W.shape[0]))
    for i in range(n):
        _gradient_row(W, Z[i], y[i], G[i])
    return G

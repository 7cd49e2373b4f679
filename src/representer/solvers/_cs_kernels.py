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

Face steps (:func:`face_step`): once coordinate ascent has (nearly) found which variables are free,
the dual restricted to them — every bounded variable held at its bound — is a convex quadratic on
the affine set ``Σ_{m free} β_im = const_i``. Its Hessian is ``δ_{mm'} z_iᵀz_j`` (one Gram block
per class, coupled only through the row constraints), so a CG iteration costs two passes over the
free variables' features (``W`` of the direction, then its products with the ``z_i``), far less than
an epoch, and CG needs about ``√κ`` of them where coordinate ascent's tail needs ``κ`` epochs.
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
def _dot(u, v):
    """``uᵀv`` (reassociated, so that it vectorises)."""
    s = 0.0
    for j in range(u.shape[0]):
        s += u[j] * v[j]
    return s


@njit(cache=True)
def _gradient_row(W, z, y_i, grad):
    """``grad_m = (1 − δ_{m,y_i}) + w_mᵀ z``."""
    for m in range(W.shape[0]):
        s = _dot(W[m], z)
        grad[m] = s if m == y_i else s + 1.0


@njit(cache=True)
def _upper(m, y_i, C):
    """The upper bound ``u_im = C δ_{m,y_i}`` of ``β_im``."""
    return C if m == y_i else 0.0


@njit(cache=True)
def run_epoch(Z, y, sq_norm, beta, W, order, C, active, classes, n_live, shrinking):
    """One pass of exact row updates over ``order``; returns the largest row violation seen.

    Row ``i`` only looks at its *live* classes ``classes[i, :n_live[i]]`` (all ``K`` unless shrunk).
    Each row's violation is measured over them before its update. With ``shrinking`` (LIBLINEAR's
    MCSVM_CS rule, per variable): a class ``m ≠ y_i`` at its bound ``β_im = 0`` with ``G_im`` below
    the free level ``min_{free} G_im`` cannot enter the row's solution and is dropped from the live
    classes (its gradient is no longer computed); a row is marked inactive when it is *locked*: at
    most one live variable is free or has ``G_im ≥`` the free level, so its violation is ≤ 0 and an
    update would leave it unchanged. The sub-problem is solved over the live classes, the others
    staying at 0. The caller revives every row and class before declaring convergence. ``beta``
    and ``W`` are updated in place.
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
        live = n_live[i]
        max_g = -np.inf
        min_free_g = np.inf
        for k in range(live):
            m = classes[i, k]
            s = _dot(W[m], z)
            g = s if m == y_i else s + 1.0
            grad[k] = g
            if g > max_g:
                max_g = g
            if beta[i, m] < _upper(m, y_i, C) and g < min_free_g:
                min_free_g = g
        violation = max_g - min_free_g
        if violation > worst:
            worst = violation
        if shrinking:
            movable = 0
            k = 0
            while k < live:
                m = classes[i, k]
                if beta[i, m] < _upper(m, y_i, C) or grad[k] >= min_free_g:
                    movable += 1
                    k += 1
                elif m != y_i:
                    live -= 1
                    classes[i, k] = classes[i, live]
                    classes[i, live] = m
                    grad[k] = grad[live]
                else:
                    k += 1
            n_live[i] = live
            if movable <= 1:
                active[i] = False
                continue
        if violation <= 1e-14:
            continue
        own = 0
        for k in range(live):
            m = classes[i, k]
            if m == y_i:
                own = k
            b[k] = grad[k] - A * beta[i, m]
        solve_row_subproblem(A, b[:live], own, C, taken[:live], new[:live])
        for k in range(live):
            m = classes[i, k]
            delta = new[k] - beta[i, m]
            if delta != 0.0:
                beta[i, m] = new[k]
                for j in range(D):
                    W[m, j] += delta * z[j]
    return worst


@njit(cache=True)
def _collect_face(beta, y, sq_norm, C, rows, start, cls):
    """Rows with at least two free variables (``β_im < u_im``) and their free classes, CSR-style.

    Rows with one free variable cannot move (``Σ_m β_im = 0``). Returns ``(rows, free variables)``.
    """
    n, K = beta.shape
    n_rows = 0
    n_free = 0
    for i in range(n):
        if sq_norm[i] <= 0.0:
            continue
        count = 0
        for m in range(K):
            if beta[i, m] < _upper(m, y[i], C):
                count += 1
        if count < 2:
            continue
        rows[n_rows] = i
        start[n_rows] = n_free
        for m in range(K):
            if beta[i, m] < _upper(m, y[i], C):
                cls[n_free] = m
                n_free += 1
        n_rows += 1
    start[n_rows] = n_free
    return n_rows, n_free


@njit(cache=True)
def _projected_residual(n_rows, rows, start, sq_norm, grad, residual, scaled):
    """Face-projected gradient (row-wise minus its mean) and its ``1/||z_i||²``-preconditioned copy.

    Returns ``(residualᵀ scaled, max |residual|)``; a row's violation on the face is at most twice
    the latter.
    """
    inner = 0.0
    largest = 0.0
    for r in range(n_rows):
        lo, hi = start[r], start[r + 1]
        mean = 0.0
        for k in range(lo, hi):
            mean += grad[k]
        mean /= hi - lo
        inverse_curvature = 1.0 / sq_norm[rows[r]]
        for k in range(lo, hi):
            residual[k] = grad[k] - mean
            scaled[k] = residual[k] * inverse_curvature
            inner += residual[k] * scaled[k]
            if abs(residual[k]) > largest:
                largest = abs(residual[k])
    return inner, largest


@njit(cache=True, fastmath={"reassoc", "contract"})
def _weights_of_direction(Z, n_rows, rows, start, cls, direction, out):
    """``out = Σ_k direction_k e_{m_k} z_{i_k}ᵀ`` (the change of ``W`` along a face direction); returns ``||out||²``."""
    out[:] = 0.0
    D = Z.shape[1]
    for r in range(n_rows):
        i = rows[r]
        for k in range(start[r], start[r + 1]):
            coefficient = direction[k]
            m = cls[k]
            for j in range(D):
                out[m, j] += coefficient * Z[i, j]
    norm = 0.0
    for m in range(out.shape[0]):
        for j in range(D):
            norm += out[m, j] * out[m, j]
    return norm


@njit(cache=True)
def _repair_row(beta, i, y_i, C, own_at_bound):
    """Restore ``β_im ≤ 0`` (``m ≠ y_i``), ``Σ_m β_im = 0`` and ``β_{i,y_i} ≤ C`` after a rounded step.

    The own entry is set from the others, except that it is kept at exactly ``C`` (the others
    rescaled to sum to ``−C``) when ``own_at_bound`` or when it would exceed ``C``: a bounded
    entry must not become free by one rounding error, since the row's violation is measured over
    its free entries.
    """
    K = beta.shape[1]
    others = 0.0
    for m in range(K):
        if m != y_i:
            if beta[i, m] > 0.0:
                beta[i, m] = 0.0
            others += beta[i, m]
    if (own_at_bound or -others > C) and others < 0.0:
        for m in range(K):
            if m != y_i:
                beta[i, m] *= C / -others
        beta[i, y_i] = C
    else:
        beta[i, y_i] = -others


@njit(cache=True, fastmath={"reassoc", "contract"})
def _projected_segment(Z, y, C, n_rows, rows, values, W_face, target, delta):
    """Project ``target`` (full face rows, rows summing to 0) onto each row's feasible set; exact line
    search from ``values``.

    ``values`` holds the face rows' current ``β`` (feasible), ``W_face`` the matching weights. The
    projection of a row is the row sub-problem with ``A = 1`` and ``b = −target``; the segment to it
    is feasible by convexity, and the dual is quadratic along it. On success ``values`` moves to the
    minimiser on the segment, ``delta`` is the step taken, and the decrease is returned (0 if none).
    """
    K, D = W_face.shape
    taken = np.empty(K, dtype=np.bool_)
    b = np.empty(K)
    out = np.empty(K)
    slope = 0.0
    change = np.zeros((K, D))
    for r in range(n_rows):
        i = rows[r]
        feasible = True
        for m in range(K):
            out[m] = target[r, m]
            b[m] = -target[r, m]
            if target[r, m] > _upper(m, y[i], C):
                feasible = False
        if not feasible:
            solve_row_subproblem(1.0, b, y[i], C, taken, out)
        for m in range(K):
            step = out[m] - values[r, m]
            delta[r, m] = step
            if step != 0.0:
                g = 0.0 if m == y[i] else 1.0
                for j in range(D):
                    g += W_face[m, j] * Z[i, j]
                    change[m, j] += step * Z[i, j]
                slope += step * g
    curvature = 0.0
    for m in range(K):
        for j in range(D):
            curvature += change[m, j] * change[m, j]
    if slope >= 0.0 or curvature <= 0.0:
        return 0.0
    t = min(1.0, -slope / curvature)
    for r in range(n_rows):
        for m in range(K):
            delta[r, m] *= t
            values[r, m] += delta[r, m]
    return -(t * slope + 0.5 * t * t * curvature)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _stop_at_boundary(Z, y, C, n_rows, rows, start, cls, values, W_face, x, upper, direction, step, ratio, slope, curvature):
    """End a CG run whose next ``step`` along ``direction`` would cross a bound (at ``ratio < step``).

    Writes into ``values`` the better of the point cut at the first bound (decrease
    ``−(ratio · slope + ½ ratio² curvature)``) and the best point on the segment to the row-wise
    projection of the uncut step; both are feasible and no worse than the current point.
    """
    K = values.shape[1]
    cut_decrease = -(ratio * slope + 0.5 * ratio * ratio * curvature)
    target = values.copy()
    for r in range(n_rows):
        for k in range(start[r], start[r + 1]):
            target[r, cls[k]] = x[k] + step * direction[k]
    projected = values.copy()
    delta = np.empty((n_rows, K))
    if _projected_segment(Z, y, C, n_rows, rows, projected, W_face, target, delta) > cut_decrease:
        values[:, :] = projected
        return
    for r in range(n_rows):
        for k in range(start[r], start[r + 1]):
            moved = x[k] + ratio * direction[k]
            values[r, cls[k]] = upper[k] if direction[k] > 0.0 and moved >= upper[k] else moved


@njit(cache=True, fastmath={"reassoc", "contract"})
def face_step(Z, y, sq_norm, beta, W, C, cg_tol, max_cg, rows, start, cls):
    r"""Conjugate gradients on the current face of the dual, then back into the feasible set.

    The face fixes every variable at its bound and keeps the free ones (rows with ≥ 2 of them);
    on it the dual is the quadratic ``½||W||² + eᵀβ`` under one equality ``Σ_{m free} β_im = const``
    per row. Preconditioned CG (preconditioner ``||z_i||²`` per row, which commutes with the
    row-mean projection) minimises it from the current ``β`` until the projected gradient is below
    ``cg_tol``, ``max_cg`` iterations pass, or a step would leave the box. In the last case the
    better of two feasible points is kept: the step cut at the first bound (the ratio test), or the
    exact minimiser on the segment to the row-wise projection of the full step (which lets many
    variables reach their bounds at once, as in Moré–Toraldo's GPCG). The dual never increases.
    ``beta`` and ``W`` are updated in place (``W`` by the exact change of ``β``); ``rows``,
    ``start``, ``cls`` are scratch of sizes ``n``, ``n + 1``, ``n K``. Returns
    ``(CG iterations, work in multiply-adds)``.
    """
    K, D = W.shape
    n_rows, n_free = _collect_face(beta, y, sq_norm, C, rows, start, cls)
    if n_free == 0:
        return 0, 0
    values = np.empty((n_rows, K))
    x = np.empty(n_free)
    upper = np.empty(n_free)
    grad = np.empty(n_free)
    for r in range(n_rows):
        i = rows[r]
        for m in range(K):
            values[r, m] = beta[i, m]
        for k in range(start[r], start[r + 1]):
            m = cls[k]
            s = _dot(W[m], Z[i])
            grad[k] = s if m == y[i] else s + 1.0
            x[k] = beta[i, m]
            upper[k] = _upper(m, y[i], C)
    residual = np.empty(n_free)
    scaled = np.empty(n_free)
    direction = np.empty(n_free)
    change = np.empty((K, D))
    W_face = W.copy()
    inner, largest = _projected_residual(n_rows, rows, start, sq_norm, grad, residual, scaled)
    for k in range(n_free):
        direction[k] = -scaled[k]
    iterations = 0
    while iterations < max_cg and largest > cg_tol:
        curvature = _weights_of_direction(Z, n_rows, rows, start, cls, direction, change)
        if curvature <= 0.0:
            break
        slope = 0.0
        ratio = np.inf
        for k in range(n_free):
            slope += grad[k] * direction[k]
            if direction[k] > 0.0:
                ratio = min(ratio, (upper[k] - x[k]) / direction[k])
        step = inner / curvature
        iterations += 1
        if step > ratio:
            _stop_at_boundary(Z, y, C, n_rows, rows, start, cls, values, W_face, x, upper, direction,
                              step, ratio, slope, curvature)
            break
        for m in range(K):
            for j in range(D):
                W_face[m, j] += step * change[m, j]
        for r in range(n_rows):
            i = rows[r]
            for k in range(start[r], start[r + 1]):
                m = cls[k]
                x[k] += step * direction[k]
                grad[k] += step * _dot(change[m], Z[i])
                values[r, m] = x[k]
        new_inner, largest = _projected_residual(n_rows, rows, start, sq_norm, grad, residual, scaled)
        momentum = new_inner / inner
        inner = new_inner
        for k in range(n_free):
            direction[k] = -scaled[k] + momentum * direction[k]
    old = np.empty(K)
    for r in range(n_rows):
        i = rows[r]
        for m in range(K):
            old[m] = beta[i, m]
            beta[i, m] = values[r, m]
        _repair_row(beta, i, y[i], C, values[r, y[i]] >= C)
        for m in range(K):
            change_im = beta[i, m] - old[m]
            if change_im != 0.0:
                for j in range(D):
                    W[m, j] += change_im * Z[i, j]
    return iterations, (2 * iterations + 3) * n_free * D + 2 * n_rows * K * D


@njit(cache=True)
def seed_generator(seed):
    """Seed numba's generator (the one ``run_epochs`` draws its epoch orders from)."""
    np.random.seed(seed)


@njit(cache=True)
def _revive(active, classes, n_live):
    """Undo all shrinking: every row active, every class live."""
    n, K = classes.shape
    for i in range(n):
        active[i] = True
        n_live[i] = K
        for m in range(K):
            classes[i, m] = m


@njit(cache=True)
def run_epochs(Z, y, sq_norm, beta, W, C, tol, max_epochs, shrinking, unshrink_below, face_steps, face_ratio):
    """Run epochs in fresh random orders until an unshrunk epoch sees no violation above ``tol``.

    Shrunk rows and classes are all revived whenever the active rows' largest violation falls below
    ``unshrink_below``, which then halves down to ``tol`` (LIBLINEAR's schedule). With
    ``face_steps``, a :func:`face_step` (CG to ``tol / 4``) follows an epoch whenever the epochs'
    work since the last one has reached ``face_ratio`` times that step's work, which bounds
    the time spent on them. Returns ``(epochs run, whether an unshrunk epoch reached tol, the current
    unshrink_below)``.
    """
    n, D = Z.shape
    K = W.shape[0]
    active = np.ones(n, dtype=np.bool_)
    classes = np.empty((n, K), dtype=np.int64)
    n_live = np.empty(n, dtype=np.int64)
    _revive(active, classes, n_live)
    order = np.empty(n, dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    start = np.empty(n + 1, dtype=np.int64)
    cls = np.empty(n * K, dtype=np.int64)
    epoch_work = 0
    face_work = 0
    for epoch in range(1, max_epochs + 1):
        size = 0
        live_work = 0
        for i in range(n):
            if active[i]:
                order[size] = i
                size += 1
                live_work += n_live[i]
        full_pass = live_work == n * K
        current = order[:size]
        np.random.shuffle(current)
        seen = run_epoch(Z, y, sq_norm, beta, W, current, C, active, classes, n_live, shrinking)
        if seen <= tol and full_pass:
            return epoch, True, unshrink_below
        epoch_work += size * K * D
        if face_steps and epoch_work >= face_ratio * face_work:
            _, face_work = face_step(Z, y, sq_norm, beta, W, C, tol / 4.0, n * K, rows, start, cls)
            epoch_work = 0
        if seen > unshrink_below:
            continue
        _revive(active, classes, n_live)
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

"""Crammer–Singer dual solver: agreement with a generic QP (clarabel), closed forms, identities."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qpsolvers import solve_qp

from representer.errors import InputError
from representer.solvers import CrammerSingerResult, solve_crammer_singer
from representer.solvers import _cs_kernels

TIGHT = 1e-10


def reference_primal(Z, y, K, C, margin_scale):
    """Solve ``min ½||W||² + C Σ ξ`` s.t. ``margin_scale (w_y − w_c)ᵀz_i ≥ 1 − ξ_i``, ``ξ ≥ 0`` by QP.

    ``margin_scale = 1`` is the textbook problem, ``½`` is Shark's. Returns ``(W, objective)``.
    """
    n, D = Z.shape
    n_w = K * D
    rows, cols, vals = [], [], []
    h = []
    r = 0
    for i in range(n):
        for c in range(K):
            if c == y[i]:
                continue
            rows += [r] * (2 * D + 1)
            cols += list(range(c * D, (c + 1) * D)) + list(range(y[i] * D, (y[i] + 1) * D)) + [n_w + i]
            vals += list(margin_scale * Z[i]) + list(-margin_scale * Z[i]) + [-1.0]
            h.append(-1.0)
            r += 1
    G = sp.csc_matrix((vals, (rows, cols)), shape=(r, n_w + n))
    P = sp.diags(np.r_[np.ones(n_w), np.full(n, 1e-12)]).tocsc()
    q = np.r_[np.zeros(n_w), np.full(n, C)]
    lb = np.r_[np.full(n_w, -np.inf), np.zeros(n)]
    x = solve_qp(P, q, G, np.array(h), lb=lb, solver="clarabel",
                 tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    assert x is not None
    W = x[:n_w].reshape(K, D)
    margins = margin_scale * ((Z @ W.T)[np.arange(n), y][:, None] - Z @ W.T)
    margins[np.arange(n), y] = np.inf
    slack = np.maximum(0.0, 1.0 - margins.min(axis=1))
    return W, 0.5 * np.sum(W * W) + C * slack.sum()


def blobs(rng, n, K, D, spread=1.5):
    y = rng.integers(0, K, n)
    centres = rng.standard_normal((K, D)) * spread
    return centres[y] + rng.standard_normal((n, D)), y


def assert_identities(res: CrammerSingerResult, Z, y, C, convention="textbook"):
    n, K = res.alpha.shape
    assert np.all(res.alpha >= 0)
    assert np.all(res.alpha[np.arange(n), y] == 0)
    assert np.all(res.alpha.sum(axis=1) <= C * (1 + 1e-12))
    np.testing.assert_allclose(res.beta.sum(axis=1), 0.0, atol=1e-12 * max(C, 1.0))
    off = np.ones((n, K), dtype=bool)
    off[np.arange(n), y] = False
    np.testing.assert_array_equal(res.beta[off], -res.alpha[off])
    w_factor = 0.5 if convention == "shark" else 1.0
    np.testing.assert_allclose(res.weight, w_factor * res.beta.T @ Z, rtol=0, atol=1e-10 * max(1.0, np.abs(res.weight).max()))
    support = res.alpha.max(axis=1) > 0
    np.testing.assert_array_equal(res.n_support, np.bincount(y[support], minlength=K))


@pytest.mark.parametrize("case", range(24))
def test_matches_generic_qp_on_random_problems(case):
    rng = np.random.default_rng(case)
    n, K, D = int(rng.integers(5, 201)), int(rng.integers(2, 6)), int(rng.integers(1, 11))
    Z, y = blobs(rng, n, K, D, spread=rng.uniform(0.3, 3.0))
    C = float(10 ** rng.uniform(-3, 1))
    res = solve_crammer_singer(Z, y, K, C=C, convention="textbook", tol=TIGHT, seed=case, max_epochs=100_000)
    assert res.converged and res.kkt_violation <= TIGHT
    W_qp, obj_qp = reference_primal(Z, y, K, C, margin_scale=1.0)
    assert res.dual_objective == pytest.approx(obj_qp, rel=1e-6)
    assert res.primal_objective == pytest.approx(obj_qp, rel=1e-6)
    assert abs(res.duality_gap) <= 1e-7 * max(1.0, obj_qp)
    np.testing.assert_allclose(res.weight, W_qp, atol=1e-4 * max(1.0, np.abs(W_qp).max()))
    assert_identities(res, Z, y, C)


@pytest.mark.parametrize("case", range(4))
def test_shark_convention_is_textbook_with_quarter_C(case):
    rng = np.random.default_rng(100 + case)
    Z, y = blobs(rng, 60, 3, 4)
    C = [0.001, 0.05, 1.0, 20.0][case]
    shark = solve_crammer_singer(Z, y, 3, C=C, convention="shark", tol=TIGHT)
    W_qp, obj_qp = reference_primal(Z, y, 3, C, margin_scale=0.5)
    np.testing.assert_allclose(shark.weight, W_qp, atol=1e-4 * max(1.0, np.abs(W_qp).max()))
    assert shark.primal_objective == pytest.approx(obj_qp, rel=1e-6)
    assert shark.dual_objective == pytest.approx(obj_qp, rel=1e-6)
    assert_identities(shark, Z, y, C, convention="shark")
    text = solve_crammer_singer(Z, y, 3, C=C / 4, convention="textbook", tol=TIGHT)
    np.testing.assert_allclose(shark.beta, 4 * text.beta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(shark.weight, 2 * text.weight, rtol=1e-12, atol=1e-15)
    assert shark.dual_objective == pytest.approx(4 * text.dual_objective, rel=1e-12)


@pytest.mark.parametrize("K", [2, 3, 7])
@pytest.mark.parametrize("C", [1e-3, 0.05, 10.0])
def test_single_point_closed_form(K, C):
    """One point: α_c = s/(K−1) with s = min(C, (K−1)/(K ||z||²)) maximises s − ½||z||² s² K/(K−1)."""
    z = np.array([[0.7, -1.1, 0.4]])
    res = solve_crammer_singer(z, [1], K, C=C, convention="textbook", tol=1e-12)
    s = min(C, (K - 1) / (K * float(np.sum(z * z))))
    expected = np.full(K, s / (K - 1))
    expected[1] = 0.0
    np.testing.assert_allclose(res.alpha[0], expected, rtol=1e-10)


def test_tiny_C_makes_every_point_a_bounded_support_vector():
    rng = np.random.default_rng(7)
    Z, y = blobs(rng, 150, 4, 5)
    C = 1e-6
    res = solve_crammer_singer(Z, y, 4, C=C, convention="textbook", tol=1e-12)
    np.testing.assert_allclose(res.alpha.sum(axis=1), C, rtol=1e-12)
    assert res.n_support.sum() == 150
    np.testing.assert_array_equal(res.n_support, np.bincount(y, minlength=4))


def test_row_subproblem_matches_qp():
    rng = np.random.default_rng(3)
    for _ in range(30):
        K = int(rng.integers(2, 8))
        A, C, y_i = float(rng.uniform(0.1, 5)), float(10 ** rng.uniform(-2, 1)), int(rng.integers(K))
        b = rng.standard_normal(K) * rng.uniform(0.01, 5)
        out = np.empty(K)
        _cs_kernels.solve_row_subproblem(A, b, y_i, C, np.empty(K, dtype=bool), out)
        ub = np.zeros(K)
        ub[y_i] = C
        x = solve_qp(sp.csc_matrix(A * np.eye(K)), b, A=sp.csc_matrix(np.ones((1, K))), b=np.zeros(1),
                     ub=ub, solver="clarabel", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        np.testing.assert_allclose(out, x, atol=1e-7 * max(1.0, C))
        assert np.all(out <= ub) and abs(out.sum()) <= 1e-12 * max(1.0, C)


def test_shrinking_does_not_change_the_solution():
    rng = np.random.default_rng(11)
    Z, y = blobs(rng, 200, 5, 8)
    on = solve_crammer_singer(Z, y, 5, C=0.3, convention="textbook", tol=1e-9, shrinking=True)
    off = solve_crammer_singer(Z, y, 5, C=0.3, convention="textbook", tol=1e-9, shrinking=False)
    assert on.dual_objective == pytest.approx(off.dual_objective, rel=1e-9)
    np.testing.assert_allclose(on.weight, off.weight, atol=1e-5)


def test_warm_start_same_solution_fewer_epochs():
    rng = np.random.default_rng(5)
    Z, y = blobs(rng, 200, 4, 6, spread=0.8)
    cold = solve_crammer_singer(Z, y, 4, C=0.5, convention="shark", tol=1e-8)
    rough = solve_crammer_singer(Z, y, 4, C=0.5, convention="shark", tol=1e-2)
    warm = solve_crammer_singer(Z, y, 4, C=0.5, convention="shark", tol=1e-8, warm_start=rough.alpha)
    assert warm.converged and warm.n_iter < cold.n_iter
    assert warm.dual_objective == pytest.approx(cold.dual_objective, rel=1e-9)
    np.testing.assert_allclose(warm.weight, cold.weight, atol=1e-5)
    other_C = solve_crammer_singer(Z, y, 4, C=0.4, convention="shark", tol=1e-8)
    swept = solve_crammer_singer(Z, y, 4, C=0.5, convention="shark", tol=1e-8, warm_start=other_C.alpha * 1.25)
    assert swept.dual_objective == pytest.approx(cold.dual_objective, rel=1e-9)
    infeasible = solve_crammer_singer(Z, y, 4, C=0.5, convention="shark", tol=1e-8,
                                      warm_start=np.full((200, 4), 3.0))
    assert infeasible.dual_objective == pytest.approx(cold.dual_objective, rel=1e-9)


def test_single_class_and_absent_class():
    Z = np.random.default_rng(0).standard_normal((20, 3))
    one = solve_crammer_singer(Z, np.zeros(20, dtype=int))
    assert one.alpha.shape == (20, 1) and one.converged and not one.alpha.any() and not one.weight.any()
    absent = solve_crammer_singer(Z, np.zeros(20, dtype=int), 3, C=1.0, convention="textbook", tol=TIGHT)
    W_qp, obj_qp = reference_primal(Z, np.zeros(20, dtype=int), 3, 1.0, 1.0)
    assert absent.dual_objective == pytest.approx(obj_qp, rel=1e-6)
    assert_identities(absent, Z, np.zeros(20, dtype=int), 1.0)


@st.composite
def degenerate_problems(draw):
    K = draw(st.integers(2, 4))
    D = draw(st.integers(1, 4))
    n_distinct = draw(st.integers(1, 6))
    n = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((n_distinct, D)) * draw(st.sampled_from([0.1, 1.0, 5.0]))
    Z = pool[rng.integers(0, n_distinct, n)]
    if draw(st.booleans()):
        Z[:, rng.integers(D)] = draw(st.sampled_from([0.0, 2.5]))
    if draw(st.booleans()):
        Z[rng.integers(n)] = 0.0
    present = draw(st.lists(st.integers(0, K - 1), min_size=1, max_size=K, unique=True))
    y = np.array(present)[rng.integers(0, len(present), n)]
    C = draw(st.sampled_from([1e-4, 1e-2, 1.0, 30.0]))
    return Z, y, K, C


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(degenerate_problems())
def test_degenerate_inputs(problem):
    Z, y, K, C = problem
    res = solve_crammer_singer(Z, y, K, C=C, convention="textbook", tol=1e-9, max_epochs=200_000)
    assert res.converged and res.kkt_violation <= 1e-9
    assert_identities(res, Z, y, C)
    _, obj_qp = reference_primal(Z, y, K, C, 1.0)
    assert res.dual_objective == pytest.approx(obj_qp, rel=1e-6, abs=1e-8)
    assert res.duality_gap <= 1e-6 * max(1.0, obj_qp)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(Z=np.ones((3, 2)), y=[0, 1]), "`y` has 2 labels"),
        (dict(Z=np.ones(3), y=[0, 1, 1]), "`Z` must be 2-dimensional"),
        (dict(Z=np.array([[0.0, np.nan]] * 3), y=[0, 1, 1]), "`Z` contains 3 NaN"),
        (dict(Z=np.ones((3, 2)), y=[0, 1, 3], n_classes=3), "labels must be integers in"),
        (dict(Z=np.ones((3, 2)), y=[0, -1, 1]), "negative label"),
        (dict(Z=np.ones((3, 2)), y=[0, 1, 1], C=0.0), "`C` must be"),
        (dict(Z=np.ones((3, 2)), y=[0, 1, 1], convention="libsvm"), "`convention`"),
        (dict(Z=np.ones((3, 2)), y=[0, 1, 1], warm_start=np.zeros((3, 3))), "`warm_start` must have shape"),
        (dict(Z=np.ones((3, 2)), y=[0, 1, 1], n_classes=0), "`n_classes`"),
    ],
)
def test_bad_input_is_rejected(kwargs, match):
    with pytest.raises(InputError, match=match):
        solve_crammer_singer(**kwargs)


def test_max_epochs_reached_warns():
    rng = np.random.default_rng(2)
    Z, y = blobs(rng, 100, 3, 4, spread=0.5)
    with pytest.warns(RuntimeWarning, match="max_epochs=1"):
        res = solve_crammer_singer(Z, y, C=10.0, tol=1e-12, max_epochs=1)
    assert not res.converged and res.kkt_violation > 1e-12


def textbook_dual(Z, y, beta):
    """``f(β) = ½||βᵀZ||² + Σ_{i, m≠y_i} β_im`` (minimised; minus the textbook dual objective)."""
    off = np.ones_like(beta, dtype=bool)
    off[np.arange(len(y)), y] = False
    W = beta.T @ Z
    return 0.5 * np.sum(W * W) + beta[off].sum()


def assert_feasible(beta, y, C):
    n = len(y)
    upper = np.zeros_like(beta)
    upper[np.arange(n), y] = C
    assert np.all(beta <= upper)
    np.testing.assert_allclose(beta.sum(axis=1), 0.0, atol=1e-15 + 1e-13 * C)


def face_scratch(n, K):
    return np.empty(n, dtype=np.int64), np.empty(n + 1, dtype=np.int64), np.empty(n * K, dtype=np.int64)


def rough_duals(Z, y, K, C, seed, max_epochs):
    """A feasible, far-from-optimal β with many free variables: a few unshrunk epochs of the solver."""
    with pytest.warns(RuntimeWarning, match="max_epochs"):
        res = solve_crammer_singer(Z, y, K, C=C, convention="textbook", tol=1e-14, seed=seed, max_epochs=max_epochs)
    return res.beta.copy()


@pytest.mark.parametrize("case", range(8))
def test_face_step_never_increases_the_dual_and_stays_feasible(case):
    rng = np.random.default_rng(300 + case)
    K = int(rng.integers(2, 6))
    Z, y = blobs(rng, 120, K, 5, spread=0.7)
    C = float(10 ** rng.uniform(-2, 1))
    beta = rough_duals(Z, y, K, C, case, max_epochs=int(rng.integers(1, 6)))
    before = textbook_dual(Z, y, beta)
    W = beta.T @ Z
    for _ in range(5):
        _cs_kernels.face_step(Z, y, np.einsum("ij,ij->i", Z, Z), beta, W, C, 1e-10, 1000, *face_scratch(120, K))
        assert_feasible(beta, y, C)
        np.testing.assert_allclose(W, beta.T @ Z, atol=1e-11 * max(1.0, np.abs(W).max()))
        after = textbook_dual(Z, y, beta)
        assert after <= before + 1e-12 * max(1.0, abs(before))
        before = after


def test_face_step_recovers_the_optimum_from_a_point_on_its_face():
    """Perturbing the optimum slightly inside its face leaves a quadratic on an affine set, which CG
    minimises in one call (a larger perturbation can make a CG iterate cross a bound and stop early)."""
    rng = np.random.default_rng(21)
    Z, y = blobs(rng, 80, 4, 5, spread=1.0)
    C = 0.7
    opt = solve_crammer_singer(Z, y, 4, C=C, convention="textbook", tol=1e-12)
    beta = opt.beta.copy()
    upper = np.zeros_like(beta)
    upper[np.arange(80), y] = C
    free = beta < upper
    n_moved = 0
    for i in np.flatnonzero(free.sum(axis=1) >= 2):
        cols = np.flatnonzero(free[i])
        room = np.min(upper[i, cols] - beta[i, cols])
        noise = rng.standard_normal(cols.size)
        noise -= noise.mean()
        beta[i, cols] += 0.05 * room * noise / np.abs(noise).max()
        n_moved += 1
    assert n_moved >= 10
    assert textbook_dual(Z, y, beta) > textbook_dual(Z, y, opt.beta) + 1e-6
    W = beta.T @ Z
    iterations, _ = _cs_kernels.face_step(Z, y, np.einsum("ij,ij->i", Z, Z), beta, W, C, 1e-12, 10_000,
                                          *face_scratch(80, 4))
    assert iterations >= 1
    assert textbook_dual(Z, y, beta) == pytest.approx(textbook_dual(Z, y, opt.beta), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(W, opt.weight, atol=1e-8)


def test_face_steps_do_not_change_the_solution(monkeypatch):
    from representer.solvers import crammer_singer

    rng = np.random.default_rng(13)
    Z, y = blobs(rng, 300, 5, 6, spread=0.6)
    y[:45] = (y[:45] + 1) % 5
    with_faces = solve_crammer_singer(Z, y, 5, C=2.0, convention="textbook", tol=1e-9)
    monkeypatch.setattr(crammer_singer, "_FACE_STEPS", False)
    plain = solve_crammer_singer(Z, y, 5, C=2.0, convention="textbook", tol=1e-9, max_epochs=1_000_000)
    assert with_faces.converged and plain.converged
    assert with_faces.n_iter < plain.n_iter
    assert with_faces.dual_objective == pytest.approx(plain.dual_objective, rel=1e-10)
    np.testing.assert_allclose(with_faces.weight, plain.weight, atol=1e-6)


def test_noisy_labels_and_large_C_match_generic_qp():
    """The hard regime (flipped labels, many bounded and free support vectors) against clarabel."""
    rng = np.random.default_rng(17)
    Z, y = blobs(rng, 150, 4, 6, spread=1.0)
    y[:30] = (y[:30] + rng.integers(1, 4, 30)) % 4
    res = solve_crammer_singer(Z, y, 4, C=5.0, convention="textbook", tol=TIGHT, max_epochs=1_000_000)
    assert res.converged
    W_qp, obj_qp = reference_primal(Z, y, 4, 5.0, margin_scale=1.0)
    assert res.dual_objective == pytest.approx(obj_qp, rel=1e-6)
    np.testing.assert_allclose(res.weight, W_qp, atol=1e-4 * max(1.0, np.abs(W_qp).max()))
    assert_identities(res, Z, y, 5.0)


def test_same_seed_same_bits():
    rng = np.random.default_rng(4)
    Z, y = blobs(rng, 200, 4, 5, spread=0.5)
    first = solve_crammer_singer(Z, y, 4, C=1.0, tol=1e-6, seed=3)
    second = solve_crammer_singer(Z, y, 4, C=1.0, tol=1e-6, seed=3)
    np.testing.assert_array_equal(first.beta, second.beta)
    np.testing.assert_array_equal(first.weight, second.weight)
    assert first.n_iter == second.n_iter

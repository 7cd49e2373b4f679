"""Newton–CG: convergence below the objective's round-off, stall detection, relative tolerance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from representer import RPSL2, Features
from representer import head as hm
from representer.solvers.newton import CONVERGED, LINE_SEARCH_FAILED, STALLED, newton_cg

LAM = 0.003


def _softmax_refit(seed=3, n=300, d=8, k=4, scale=5.0, value_noise=0.0):
    """RPS-L2's refit objective on random ReLU features; ``F`` gets fresh noise in ``[0, value_noise)``."""
    g = torch.Generator().manual_seed(seed)
    phi = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64)) * scale
    x = hm.append_ones(phi)
    theta0 = torch.randn(k, d + 1, generator=g, dtype=torch.float64) / d**0.5
    q = hm.probabilities(hm.logits(x, theta0))

    def fun_grad(theta):
        z = hm.logits(x, theta)
        value = hm.mean_cross_entropy(z, q) + LAM * (theta * theta).sum()
        value = value + value_noise * float(torch.rand(1, generator=g, dtype=torch.float64))
        return value, hm.gradient_of_mean_loss(x, hm.residuals(z, q)) + 2 * LAM * theta

    def hessp_at(theta):
        p = hm.probabilities(hm.logits(x, theta))
        return lambda v: hm.hessian_vector_product(x, p, v) + 2 * LAM * v

    return fun_grad, hessp_at, theta0, phi


def _quadratic(dim=12, seed=0, scale=1.0):
    """``F(x) = ½ xᵀAx − bᵀx`` (eigenvalues of ``A`` in [1, 100]) and its minimiser ``A⁻¹b``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    a = (q * torch.logspace(0, 2, dim, dtype=torch.float64)) @ q.T
    b = scale * torch.randn(dim, generator=g, dtype=torch.float64)
    return a, b, torch.linalg.solve(a, b)


@pytest.mark.parametrize("seed", [0, 3])
def test_converges_when_the_objective_value_is_only_known_to_its_round_off(seed):
    # F carries noise of up to 1e-11 (round-off of a long sum), the gradient is exact. Once
    # ‖∇F‖ ≲ 1e-6 the decrease of a Newton step (≈ ‖∇F‖²/(2μ)) is below that noise: the value-only
    # Armijo search then took random tiny steps and stalled at ‖∇F‖ ≈ 1e-12–1e-11. The
    # approximate Wolfe test on directional derivatives still accepts the Newton steps.
    fun_grad, hessp_at, theta0, _ = _softmax_refit(seed=seed, value_noise=1e-11)
    result = newton_cg(fun_grad, hessp_at, theta0, tol=1e-13, max_iter=30)
    assert result.converged and result.reason == CONVERGED, result
    assert result.grad_norm <= 1e-13 and result.n_iter <= 8


def test_softmax_refit_that_stalled_on_value_round_off_now_converges():
    # Without the offset: this problem's fifth iterate lands at ‖∇F‖ ≈ 1e-11, where F's decrease
    # (≈ 1e-20) is below its round-off; the value-only Armijo search stalled there for all
    # iterations (‖∇F‖ = 8e-12 after 30). Through RPSL2, the representer identity then holds tightly.
    fun_grad, hessp_at, theta0, phi = _softmax_refit()
    result = newton_cg(fun_grad, hessp_at, theta0, tol=1e-13, max_iter=30)
    assert result.converged and result.grad_norm <= 1e-13 and result.n_iter <= 8, result
    theta = theta0.numpy()
    explainer = RPSL2(Features(theta[:, :-1], theta[:, -1]), tol=1e-13).fit(phi.numpy(), np.zeros(len(phi), dtype=int))
    report = explainer.fit_report_
    assert report["converged"] and report["reason"] == CONVERGED and report["tolerance"] == 1e-13
    w_rep = explainer.representer_weights()
    assert np.linalg.norm(w_rep - explainer.theta_) <= 1e-10 * np.linalg.norm(explainer.theta_)


def _noisy_quadratic(noise: float, seed=0):
    """Exact values of a quadratic, gradients with fresh noise of norm ``noise`` (a gradient round-off floor)."""
    a, b, x_star = _quadratic(seed=seed)
    g = torch.Generator().manual_seed(seed + 1)

    def fun_grad(x):
        e = torch.randn(x.shape, generator=g, dtype=torch.float64)
        return 0.5 * x @ a @ x - b @ x, a @ x - b + noise * e / e.norm()

    return fun_grad, (lambda x: (lambda v: a @ v)), x_star


def test_stall_at_a_gradient_floor_far_above_tol_stops_early_and_warns():
    fun_grad, hessp_at, x_star = _noisy_quadratic(1e-6)
    with pytest.warns(RuntimeWarning, match="stopped"):
        result = newton_cg(fun_grad, hessp_at, torch.zeros_like(x_star), tol=1e-10, max_iter=100)
    assert not result.converged and result.reason in (STALLED, LINE_SEARCH_FAILED), result
    assert result.n_iter <= 20
    assert result.grad_norm <= 2e-6
    # The returned iterate is the best one: within ‖∇F‖/μ (+ the noise) of the minimiser (μ = 1).
    assert float((result.x - x_star).norm()) <= result.grad_norm + 1e-6


def test_stall_just_above_tol_is_reported_without_warning():
    fun_grad, hessp_at, x_star = _noisy_quadratic(3e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = newton_cg(fun_grad, hessp_at, torch.zeros_like(x_star), tol=1e-10, max_iter=100)
    assert result.reason in (STALLED, LINE_SEARCH_FAILED, CONVERGED)
    assert result.n_iter <= 20 and result.grad_norm <= 1e-8
    assert result.converged == (result.grad_norm <= 1e-10)


def test_iteration_limit_far_above_tol_warns():
    a, b, x_star = _quadratic()
    fun_grad = lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="max_iter"):
        result = newton_cg(fun_grad, lambda x: (lambda v: a @ v), torch.zeros_like(x_star), tol=1e-12, max_iter=1, max_cg=1)
    assert result.reason == "max_iter reached" and not result.converged and result.n_iter == 1


@pytest.mark.parametrize("scale", [1e-3, 1e6])
def test_relative_tolerance_scales_with_the_initial_gradient(scale):
    a, b, x_star = _quadratic(scale=scale)
    fun_grad = lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b)  # noqa: E731
    result = newton_cg(fun_grad, lambda x: (lambda v: a @ v), torch.zeros_like(x_star), tol=1e-9, relative=True)
    initial = float(b.norm())
    assert result.initial_grad_norm == pytest.approx(initial, rel=1e-12)
    assert result.threshold == pytest.approx(1e-9 * max(1.0, initial), rel=1e-12)
    assert result.converged and result.grad_norm <= result.threshold
    assert float((result.x - x_star).norm()) <= result.grad_norm  # μ = 1


def test_softmax_head_fit_is_the_l2_logistic_optimum_and_matches_sklearn():
    """``fit_softmax_head`` with one-hot targets is multinomial logistic regression: compare with sklearn."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from representer.solvers.softmax_head import fit_softmax_head

    X, y = load_iris(return_X_y=True)
    n, lam = len(y), 0.01
    xt = hm.append_ones(torch.as_tensor(X, dtype=torch.float64))
    result = fit_softmax_head(xt, hm.one_hot_targets(torch.as_tensor(y), 3), lam / 2, tol=1e-12)
    assert result.converged
    # sklearn: C Σ_i CE_i + ½‖W‖² (bias unpenalised there, so append the ones column as a feature, no intercept)
    ref = LogisticRegression(C=1 / (n * lam), fit_intercept=False, tol=1e-12, max_iter=10_000)
    ref.fit(np.hstack([X, np.ones((n, 1))]), y)
    np.testing.assert_allclose(result.x.numpy(), ref.coef_, atol=1e-5)

"""RPS-LJE: identities, a naive numpy reference on tiny problems, engine consistency, signs."""

import numpy as np
import pytest
import torch

import representer.head as hm
from representer.errors import InputError, RepresenterError
from representer.methods.base import load
from representer.methods.rps_lje import RPSLJE
from representer.models import Features
from representer.solvers.newton import newton_cg


def _problem(n=40, d=3, k=3, seed=0):
    """Overlapping Gaussian classes (not separable) and a random head."""
    rng = np.random.default_rng(seed)
    n_classes = 2 if k == 1 else k
    y = rng.integers(0, n_classes, size=n)
    phi = rng.normal(size=(n, d)) + 0.8 * rng.normal(size=(n_classes, d))[y]
    return phi, y, rng.normal(size=(k, d)), rng.normal(size=k)


def _naive_lje(phi, y, weight, bias, gamma, with_bias=True):
    """W_i = (Θ* − unvec(H⁺g_i))/n with H built as an explicit sum of Kronecker products."""
    n = phi.shape[0]
    k = weight.shape[0]
    x = np.c_[phi, np.ones(n)] if with_bias else phi
    theta = np.c_[weight, bias] if with_bias else weight
    targets = y[:, None].astype(float) if k == 1 else np.eye(k)[y]

    def probabilities(th):
        z = x @ th.T
        if k == 1:
            return 1 / (1 + np.exp(-z))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    theta_star = theta + gamma * (probabilities(theta) - targets).T @ x / n
    p = probabilities(theta_star)
    r = p - targets
    curvature = [np.diag(pi) - np.outer(pi, pi) if k > 1 else np.array([[pi[0] * (1 - pi[0])]]) for pi in p]
    h = sum(np.kron(c, np.outer(xi, xi)) for c, xi in zip(curvature, x)) / n
    h_pinv = np.linalg.pinv(h, rcond=1e-10, hermitian=True)
    grads = np.stack([np.kron(ri, xi) for ri, xi in zip(r, x)])
    w = (theta_star[None] - (grads @ h_pinv).reshape(n, k, -1)) / n
    newton = theta_star - (h_pinv @ grads.mean(axis=0)).reshape(k, -1)
    return x, w, newton


def _optimum(phi, y, k):
    """The unregularised cross-entropy optimum of a linear head (non-separable data), by Newton–CG."""
    x = hm.append_ones(torch.as_tensor(phi))
    q = hm.one_hot_targets(torch.as_tensor(y), k)

    def fun_grad(theta):
        z = hm.logits(x, theta)
        return hm.mean_cross_entropy(z, q), hm.gradient_of_mean_loss(x, hm.residuals(z, q))

    def hessp_at(theta):
        p = hm.probabilities(hm.logits(x, theta))
        return lambda v: hm.hessian_vector_product(x, p, v)

    result = newton_cg(fun_grad, hessp_at, torch.zeros(k, x.shape[1], dtype=torch.float64), tol=1e-12, max_iter=200)
    assert result.converged
    theta = result.x.numpy()
    return theta[:, :-1], theta[:, -1]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_weights_and_dense_attribution_match_naive_numpy(k, with_bias):
    phi, y, weight, bias = _problem(k=k)
    model = Features(weight, bias if with_bias else None)
    ex = RPSLJE(model, gamma=0.3, damping=0.0, dtype="float64").fit(phi, y)
    x, w, _ = _naive_lje(phi, y, weight, bias, 0.3, with_bias=with_bias)
    np.testing.assert_allclose(ex.weights_, w, rtol=1e-8, atol=1e-10)

    rng = np.random.default_rng(1)
    phi_test = rng.normal(size=(5, phi.shape[1]))
    x_test = np.c_[phi_test, np.ones(5)] if with_bias else phi_test
    n_classes = 2 if k == 1 else k
    target = rng.integers(0, n_classes, size=5)
    if k == 1:
        expected = np.where(target == 1, 1.0, -1.0)[:, None] * (x_test @ w[:, 0].T)
    else:
        expected = np.einsum("td,tnd->tn", x_test, w[:, target].transpose(1, 0, 2))
    np.testing.assert_allclose(ex.attribute(phi_test, target=target), expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_sum_of_weights_is_the_newton_iterate_from_theta_star(k):
    phi, y, weight, bias = _problem(n=60, d=4, k=k, seed=2)
    ex = RPSLJE(Features(weight, bias), gamma=0.5, damping=0.0).fit(phi, y)
    _, _, newton = _naive_lje(phi, y, weight, bias, 0.5)
    np.testing.assert_allclose(ex.reconstructed_head(), newton, rtol=1e-8, atol=1e-8)
    assert ex.fit_report_["newton_identity_error"] < 1e-10
    theta_star = np.c_[weight, bias] + 0.5 * _mean_gradient(phi, y, weight, bias)
    np.testing.assert_allclose(ex.theta_star_, theta_star, rtol=1e-12, atol=1e-12)


def _mean_gradient(phi, y, weight, bias):
    x = hm.append_ones(torch.as_tensor(phi))
    theta = torch.as_tensor(np.c_[weight, bias])
    q = hm.one_hot_targets(torch.as_tensor(y), weight.shape[0])
    return hm.gradient_of_mean_loss(x, hm.residuals(hm.logits(x, theta), q)).numpy()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("gamma", [1e-5, 1e-2])
def test_scores_sum_to_the_model_logits_at_its_optimum(k, gamma):
    phi, y, _, _ = _problem(n=80, d=3, k=k, seed=3)
    weight, bias = _optimum(phi, y, k)
    model = Features(weight, bias)
    ex = RPSLJE(model, gamma=gamma, dtype="float64").fit(phi, y)
    assert ex.fit_report_["train"]["max_logit_error_vs_model"] < 1e-6
    assert ex.fit_report_["train"]["prediction_agreement"] == 1.0

    phi_test = np.random.default_rng(4).normal(size=(6, 3))
    logits = model.logits_from_features(phi_test)
    for c in range(2 if k == 1 else k):
        summed = ex.attribute(phi_test, target=c).sum(axis=1)
        expected = (logits[:, 0] if c == 1 else -logits[:, 0]) if k == 1 else logits[:, c]
        np.testing.assert_allclose(summed, expected, atol=1e-6)


def test_two_class_softmax_matches_the_binary_head_with_twice_gamma():
    """A K=2 softmax head is the sigmoid head θ₁ − θ₀; its ascent step moves θ₁ − θ₀ by 2γḡ."""
    phi, y, weight, bias = _problem(k=2, seed=5)
    softmax = RPSLJE(Features(weight, bias), gamma=0.1, damping=0.0).fit(phi, y)
    binary = RPSLJE(Features(weight[1:] - weight[:1], bias[1:] - bias[:1]), gamma=0.2, damping=0.0).fit(phi, y)
    np.testing.assert_allclose(softmax.weights_[:, 1] - softmax.weights_[:, 0], binary.weights_[:, 0], atol=1e-10)


def test_explain_top_k_equals_dense_argsort():
    phi, y, weight, bias = _problem(n=50, k=3, seed=6)
    ex = RPSLJE(Features(weight, bias), dtype="float64", block_size=7, test_batch_size=3).fit(phi, y)
    phi_test = np.random.default_rng(7).normal(size=(8, 3))
    dense = ex.attribute(phi_test)
    exp = ex.explain(phi_test, top_k=4)
    np.testing.assert_array_equal(exp.excitatory.indices, np.argsort(-dense, axis=1)[:, :4])
    np.testing.assert_array_equal(exp.inhibitory.indices, np.argsort(dense, axis=1)[:, :4])
    np.testing.assert_allclose(exp.excitatory.scores, -np.sort(-dense, axis=1)[:, :4])


def test_binary_class_zero_is_the_negated_class_one():
    phi, y, weight, bias = _problem(k=1, seed=8)
    ex = RPSLJE(Features(weight, bias), dtype="float64").fit(phi, y)
    np.testing.assert_array_equal(ex.attribute(phi[:5], target=0), -ex.attribute(phi[:5], target=1))
    assert np.abs(ex.attribute(phi[:5], target=1)).max() > 0


@pytest.mark.parametrize("k", [1, 3])
def test_self_influence_is_abs_own_label_score(k):
    phi, y, weight, bias = _problem(k=k, seed=9)
    ex = RPSLJE(Features(weight, bias), damping=0.0).fit(phi, y)
    x, w, _ = _naive_lje(phi, y, weight, bias, 0.01)
    out = np.zeros_like(y) if k == 1 else y
    np.testing.assert_allclose(ex.self_influence(), np.abs(np.einsum("nd,nd->n", w[np.arange(len(y)), out], x)), rtol=1e-8)


def test_damping_is_needed_only_for_rank_deficient_features():
    phi, y, weight, bias = _problem(k=3, seed=10)
    phi = np.c_[phi, np.zeros(len(y))]  # a dead feature
    weight = np.c_[weight, np.zeros(3)]
    with pytest.raises(RepresenterError, match="damping"):
        RPSLJE(Features(weight, bias), damping=0.0).fit(phi, y)
    ex = RPSLJE(Features(weight, bias), damping=1e-8).fit(phi, y)
    np.testing.assert_array_equal(ex.weights_[:, :, 3], 0.0)
    assert ex.fit_report_["newton_identity_error"] < 1e-10


def test_save_load_round_trip(tmp_path):
    phi, y, weight, bias = _problem(k=3, seed=11)
    model = Features(weight, bias)
    ex = RPSLJE(model, gamma=1e-3).fit(phi, y)
    loaded = load(ex.save(tmp_path / "lje"), model)
    assert loaded.get_params() == ex.get_params()
    np.testing.assert_array_equal(loaded.attribute(phi[:4]), ex.attribute(phi[:4]))
    np.testing.assert_array_equal(loaded.self_influence(), ex.self_influence())


@pytest.mark.parametrize("bad", [{"gamma": -1.0}, {"damping": float("nan")}])
def test_bad_hyper_parameters_are_named(bad):
    phi, y, weight, bias = _problem()
    with pytest.raises(InputError, match=next(iter(bad))):
        RPSLJE(Features(weight, bias), **bad).fit(phi, y)

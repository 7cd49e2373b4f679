"""Influence functions on the head: brute force, exact cases of the backends, leave-one-out ground truth."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_breast_cancer, load_digits

from representer import head as hm
from representer.errors import InputError, NotFittedError, RepresenterError
from representer.methods.base import load
from representer.methods.influence import InfluenceFunction
from representer.models import Features, TorchClassifier
from representer.solvers.newton import newton_cg

BACKENDS = ("exact", "kfac", "ekfac", "identity")


# ---------------------------------------------------------------------------- naive reference
def _probabilities(z):
    if z.shape[1] == 1:
        return 1 / (1 + np.exp(-z))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _residuals(p, labels):
    if p.shape[1] == 1:
        return p - labels[:, None]
    return p - np.eye(p.shape[1])[labels]


def naive_hessian(theta, phi, hessian, damping):
    """Explicit ``K·D × K·D`` matrix of each backend, from per-example curvatures (numpy)."""
    x = np.c_[phi, np.ones(len(phi))]
    n, d = x.shape
    k = theta.shape[0]
    p = _probabilities(x @ theta.T)
    lam = [np.array([[pi[0] * (1 - pi[0])]]) if k == 1 else np.diag(pi) - np.outer(pi, pi) for pi in p]
    h_data = sum(np.kron(lam_i, np.outer(xi, xi)) for lam_i, xi in zip(lam, x)) / n
    s, a = sum(lam) / n, x.T @ x / n
    if hessian == "exact":
        return h_data + damping * np.eye(k * d)
    if hessian == "kfac":
        pi_ = np.sqrt((np.trace(s) / k) / (np.trace(a) / d))
        return np.kron(s + pi_ * np.sqrt(damping) * np.eye(k), a + np.sqrt(damping) / pi_ * np.eye(d))
    if hessian == "ekfac":
        q = np.kron(np.linalg.eigh(s)[1], np.linalg.eigh(a)[1])
        return q @ np.diag(np.diag(q.T @ h_data @ q) + damping) @ q.T
    return np.eye(k * d)


def naive_gradients(theta, phi, labels):
    x = np.c_[phi, np.ones(len(phi))]
    r = _residuals(_probabilities(x @ theta.T), labels)
    return np.stack([np.kron(ri, xi) for ri, xi in zip(r, x)])


def naive_scores(theta, phi, y, phi_test, target, hessian, damping):
    """``(I, g_iᵀH⁻¹g_i, ‖H⁻¹g_i‖, g_tᵀH⁻¹g_t)`` by explicit gradients and ``np.linalg.solve``."""
    h = naive_hessian(theta, phi, hessian, damping)
    g, g_t = naive_gradients(theta, phi, y), naive_gradients(theta, phi_test, target)
    h_inv_g = np.linalg.solve(h, g.T)
    return g_t @ h_inv_g, np.einsum("ij,ji->i", g, h_inv_g), np.linalg.norm(h_inv_g, axis=0), np.einsum(
        "ij,ji->i", g_t, np.linalg.solve(h, g_t.T)
    )


def random_problem(k, n=30, d=4, seed=0):
    rng = np.random.default_rng(seed)
    n_classes = 2 if k == 1 else k
    y = rng.integers(0, n_classes, size=n)
    phi = rng.normal(size=(n, d)) + rng.normal(size=(n_classes, d))[y]
    theta = rng.normal(size=(k, d + 1)) * 0.7
    return phi, y, rng.normal(size=(6, d)), theta


def predicted(theta, phi):
    z = np.c_[phi, np.ones(len(phi))] @ theta.T
    return (z[:, 0] > 0).astype(int) if theta.shape[0] == 1 else z.argmax(axis=1)


# ---------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("hessian", BACKENDS)
@pytest.mark.parametrize("k", [1, 3])
def test_attribute_and_self_influence_match_naive_numpy(hessian, k):
    phi, y, phi_test, theta = random_problem(k)
    model = Features(theta[:, :-1], theta[:, -1])
    ex = InfluenceFunction(model, hessian=hessian, damping=0.05, dtype="float64", block_size=7).fit(phi, y)
    infl, quad, norms, test_quad = naive_scores(theta, phi, y, phi_test, predicted(theta, phi_test), hessian, 0.05)
    np.testing.assert_allclose(ex.attribute(phi_test), infl, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ex.self_influence(), quad, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ex.inverse_gradient_norms_, norms, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ex.test_self_influence(phi_test), test_quad, rtol=1e-8)
    labels = np.arange(len(phi_test)) % (2 if k == 1 else k)
    np.testing.assert_allclose(
        ex.attribute(phi_test, target="label", y=labels),
        naive_scores(theta, phi, y, phi_test, labels, hessian, 0.05)[0],
        rtol=1e-8,
        atol=1e-10,
    )


@pytest.mark.parametrize("hessian", BACKENDS)
def test_explain_top_k_is_the_dense_argsort(hessian):
    phi, y, phi_test, theta = random_problem(3, n=50)
    ex = InfluenceFunction(Features(theta[:, :-1], theta[:, -1]), hessian=hessian, damping=0.05, dtype="float64", block_size=16)
    dense = ex.fit(phi, y).attribute(phi_test)
    exp = ex.explain(phi_test, top_k=5)
    np.testing.assert_array_equal(exp.excitatory.indices, np.argsort(-dense, axis=1)[:, :5])
    np.testing.assert_array_equal(exp.inhibitory.indices, np.argsort(dense, axis=1)[:, :5])
    np.testing.assert_allclose(exp.excitatory.scores, -np.sort(-dense, axis=1)[:, :5])


def test_float32_scoring_matches_float64():
    phi, y, phi_test, theta = random_problem(3)
    model = Features(theta[:, :-1], theta[:, -1])
    a64 = InfluenceFunction(model, dtype="float64").fit(phi, y).attribute(phi_test)
    a32 = InfluenceFunction(model).fit(phi, y).attribute(phi_test)
    np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=1e-4 * np.abs(a64).max())


# ---------------------------------------------------------------------------- where backends must agree
@pytest.mark.parametrize("k", [1, 4])
def test_ekfac_equals_exact_and_kfac_tends_to_it_when_curvature_is_constant(k):
    """Θ = 0 gives uniform probabilities, so Λ_i ≡ Λ and the undamped H is exactly S ⊗ A."""
    phi, y, phi_test, _ = random_problem(k, n=40)
    model = Features(np.zeros((k, phi.shape[1])), np.zeros(k))
    target = np.zeros(len(phi_test), dtype=int)

    def scores(hessian, damping):
        ex = InfluenceFunction(model, hessian=hessian, damping=damping, dtype="float64").fit(phi, y)
        return ex.attribute(phi_test, target=target), ex.self_influence()

    for damping in (1e-3, 1.0):
        exact, ekfac = scores("exact", damping), scores("ekfac", damping)
        np.testing.assert_allclose(ekfac[0], exact[0], rtol=1e-9, atol=1e-9 * np.abs(exact[0]).max())
        np.testing.assert_allclose(ekfac[1], exact[1], rtol=1e-9)
    exact, kfac = scores("exact", 1e-12), scores("kfac", 1e-12)
    np.testing.assert_allclose(kfac[0], exact[0], rtol=1e-4, atol=1e-4 * np.abs(exact[0]).max())
    with pytest.raises(AssertionError):  # the factored damping is not λI: kfac ≠ exact at moderate λ
        np.testing.assert_allclose(scores("kfac", 1e-2)[0], scores("exact", 1e-2)[0], rtol=1e-3)


@pytest.mark.parametrize("k", [1, 3])
def test_identity_is_exact_when_the_hessian_is_proportional_to_identity(k):
    """λ → ∞ makes H ≈ λI: λ·(exact influence) → gradient dot product."""
    phi, y, phi_test, theta = random_problem(k)
    model = Features(theta[:, :-1], theta[:, -1])
    identity = InfluenceFunction(model, hessian="identity", dtype="float64").fit(phi, y).attribute(phi_test)
    exact = InfluenceFunction(model, hessian="exact", damping=1e9, dtype="float64").fit(phi, y).attribute(phi_test)
    np.testing.assert_allclose(1e9 * exact, identity, rtol=1e-6, atol=1e-9 * np.abs(identity).max())


# ---------------------------------------------------------------------------- leave-one-out ground truth
def _fit_l2_head(x, q, lam, n, theta0):
    """argmin (1/n) Σ_{rows of x} ℓ + (λ/2)‖Θ‖² (the 1/n of the full set: leave-one-out drops one term)."""
    m = x.shape[0]

    def fun_grad(th):
        z = hm.logits(x, th)
        value = hm.mean_cross_entropy(z, q) * m / n + lam / 2 * (th * th).sum()
        return value, hm.gradient_of_mean_loss(x, hm.residuals(z, q)) * m / n + lam * th

    def hessp_at(th):
        p = hm.probabilities(hm.logits(x, th))
        return lambda v: hm.hessian_vector_product(x, p, v) * m / n + lam * v

    result = newton_cg(fun_grad, hessp_at, theta0, tol=1e-9, max_iter=50)
    assert result.converged, result.grad_norm
    return result.x


def _real_problem(name, n):
    rng = np.random.default_rng(0)
    if name == "digits":
        data = load_digits()
        phi, y, k = data.data / 16.0, data.target, 10
    else:
        data = load_breast_cancer()
        phi, y, k = (data.data - data.data.mean(0)) / data.data.std(0), data.target, 1
    idx = rng.permutation(len(y))[:n]
    return phi[idx], y[idx], k


@pytest.mark.parametrize("name,n", [("digits", 280), ("breast_cancer", 200)])
def test_influence_predicts_leave_one_out_retraining(name, n):
    """Δℓ_t(LOO of i) ≈ +I(t, i)/n when damping = the L2 coefficient: Spearman ≥ 0.9 on the top 50."""
    lam, n_test, top = 1e-2, 3, 50
    phi, y, k = _real_problem(name, n + n_test)
    x = hm.append_ones(torch.as_tensor(phi))
    q = hm.one_hot_targets(torch.as_tensor(y), k)
    theta = _fit_l2_head(x[:n], q[:n], lam, n, torch.zeros(k, x.shape[1], dtype=torch.float64))
    model = Features(theta[:, :-1].numpy(), theta[:, -1].numpy())
    ex = InfluenceFunction(model, hessian="exact", damping=lam, dtype="float64").fit(phi[:n], y[:n])
    scores = ex.attribute(phi[n:], target="label", y=y[n:])

    def test_loss(th, t):
        return float(hm.mean_cross_entropy(hm.logits(x[n + t : n + t + 1], th), q[n + t : n + t + 1]))

    refits = {}
    for t in range(n_test):
        chosen = np.argsort(-np.abs(scores[t]))[:top]
        actual = []
        for i in chosen:
            if i not in refits:
                keep = np.arange(n) != i
                refits[i] = _fit_l2_head(x[:n][keep], q[:n][keep], lam, n, theta)
            actual.append(test_loss(refits[i], t) - test_loss(theta, t))
        predicted_change = scores[t, chosen] / n
        assert spearmanr(predicted_change, actual)[0] >= 0.9
        ratio = np.median(np.asarray(actual) / predicted_change)
        assert 0.8 < ratio < 1.3, ratio  # sign and 1/n scale (second-order terms make LOO a bit larger)


# ---------------------------------------------------------------------------- API
def test_bad_arguments_raise_clear_errors():
    phi, y, phi_test, theta = random_problem(3)
    model = Features(theta[:, :-1], theta[:, -1])
    with pytest.raises(InputError, match="hessian"):
        InfluenceFunction(model, hessian="lissa").fit(phi, y)
    with pytest.raises(InputError, match="damping"):
        InfluenceFunction(model, damping=-1.0).fit(phi, y)
    with pytest.raises(NotFittedError):
        InfluenceFunction(model).explain(phi_test)
    for hessian in ("exact", "kfac", "ekfac"):
        with pytest.raises(InputError, match="damping"):
            InfluenceFunction(model, hessian=hessian, damping=0.0).fit(phi, y)
    binary = Features(np.zeros((1, 2)), np.zeros(1))
    dead_feature = np.c_[np.arange(6.0), np.zeros(6)]
    with pytest.raises(RepresenterError, match="damping"):
        InfluenceFunction(binary, damping=0.0).fit(dead_feature, np.arange(6) % 2)


def test_torch_model_gives_the_scores_of_its_features_and_head(digits_mlp):
    clf = TorchClassifier(digits_mlp.net)
    X, y, X_test = digits_mlp.X_train[:150], digits_mlp.y_train[:150], digits_mlp.X_test[:5]
    on_net = InfluenceFunction(digits_mlp.net, hessian="ekfac", damping=0.01, dtype="float64").fit(X, y)
    on_features = InfluenceFunction(Features(clf.weight, clf.bias), hessian="ekfac", damping=0.01, dtype="float64")
    on_features.fit(clf.features(X), y)
    np.testing.assert_allclose(on_net.attribute(X_test), on_features.attribute(clf.features(X_test)), rtol=1e-10)


@pytest.mark.parametrize("hessian", BACKENDS)
def test_save_and_load_round_trip(tmp_path, hessian):
    phi, y, phi_test, theta = random_problem(3)
    model = Features(theta[:, :-1], theta[:, -1])
    ex = InfluenceFunction(model, hessian=hessian, damping=0.1).fit(phi, y)
    again = load(ex.save(tmp_path / hessian), model)
    assert again.get_params() == ex.get_params()
    np.testing.assert_array_equal(again.attribute(phi_test), ex.attribute(phi_test))
    np.testing.assert_array_equal(again.self_influence(), ex.self_influence())

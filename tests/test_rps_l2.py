"""RPS-L2: fidelity on a digits MLP, representer identities, exact solutions, binary heads, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq, minimize, root
from scipy.special import expit, log_expit, log_softmax, softmax
from torch import nn

from representer import RPSL2, Features, TorchClassifier
from representer.errors import InputError, ModelError, NotFittedError

LAM = 0.003


@pytest.fixture(scope="module")
def digits_rps(digits_mlp):
    return RPSL2(TorchClassifier(digits_mlp.net), dtype="float64").fit(
        digits_mlp.X_train, digits_mlp.y_train, eval_X=digits_mlp.X_test
    )


# ---------------------------------------------------------------------------------------- digits MLP
def test_reconstruction_reproduces_the_teacher_on_train_and_test(digits_rps):
    # Pearson between the teacher's probabilities and those of Σ_i φ̃_i α_iᵀ measures how far the
    # teacher is from what an L2 head with λ = 0.003 can represent, not only the solver: the MLP is
    # trained with weight decay 0.02 so its head stays near that family (without weight decay the
    # same MLP gives ≈ 0.998). At the solver's stationary point the student is reproduced exactly.
    report = digits_rps.fit_report_
    assert report["converged"] and report["grad_norm"] <= 1e-10
    for split in ("train", "eval"):
        assert report[split]["pearson"] >= 0.999, report[split]
        assert report[split]["max_logit_error_vs_student"] < 1e-8


def test_alpha_rows_sum_to_zero(digits_rps):
    assert np.abs(digits_rps.alpha_.sum(axis=1)).max() < 1e-10


def test_representer_weights_reproduce_the_student_head(digits_rps):
    w_rep = digits_rps.representer_weights()
    assert np.linalg.norm(w_rep - digits_rps.theta_) <= 1e-8 * np.linalg.norm(digits_rps.theta_)


def test_attributions_sum_to_the_student_logit_of_the_explained_class(digits_mlp, digits_rps):
    X = digits_mlp.X_test[:20]
    target = np.arange(20) % 10
    scores = digits_rps.attribute(X, target=target)
    phi_tilde = np.hstack([digits_rps.model_.features(X), np.ones((20, 1))])
    student = phi_tilde @ digits_rps.theta_.T
    error = np.abs(scores.sum(axis=1) - student[np.arange(20), target])
    assert np.all(error <= _logit_error_bound(digits_rps, phi_tilde))


def _logit_error_bound(explainer, phi_tilde):
    """``Θ* − Σ_i φ̃_i α_iᵀ = ∇F(Θ*) / (2λ)`` (spec §2.6), so a logit is off by ≤ ‖∇F‖ ‖φ̃_t‖ / (2λ)."""
    stationarity = explainer.fit_report_["grad_norm"] / (2 * explainer.lam) * np.linalg.norm(phi_tilde, axis=1)
    return stationarity + 1e-10 * (1 + np.abs(phi_tilde @ explainer.theta_.T).max())


def test_explain_is_the_top_k_of_attribute(digits_mlp, digits_rps):
    X = digits_mlp.X_test[:30]
    explanation = digits_rps.explain(X, top_k=5)
    dense = digits_rps.attribute(X)
    np.testing.assert_array_equal(explanation.target, digits_rps.model_.predict(X))
    np.testing.assert_array_equal(explanation.excitatory.indices, np.argsort(-dense, axis=1)[:, :5])
    np.testing.assert_array_equal(explanation.inhibitory.indices, np.argsort(dense, axis=1)[:, :5])
    np.testing.assert_allclose(explanation.excitatory.scores, -np.sort(-dense, axis=1)[:, :5], rtol=1e-12)


def test_target_label_int_and_array_agree(digits_mlp, digits_rps):
    X, y = digits_mlp.X_test[:10], digits_mlp.y_test[:10]
    by_label = digits_rps.attribute(X, target="label", y=y)
    np.testing.assert_array_equal(by_label, digits_rps.attribute(X, target=y))
    np.testing.assert_array_equal(digits_rps.attribute(X, target=3)[4], digits_rps.attribute(X, target=np.full(10, 3))[4])


def test_self_influence_modes(digits_mlp, digits_rps):
    alpha = digits_rps.alpha_
    n = alpha.shape[0]
    np.testing.assert_array_equal(digits_rps.self_influence(), np.abs(alpha[np.arange(n), digits_rps.y_]))
    teacher = RPSL2(digits_rps.model_, self_influence_mode="teacher").fit(digits_mlp.X_train, digits_mlp.y_train)
    np.testing.assert_allclose(teacher.self_influence(), (np.abs(alpha) * digits_rps.teacher_).sum(axis=1), rtol=1e-12)


# ------------------------------------------------------------------------------- exact solutions
def _independent_objective(phi_tilde, q, lam):
    """``F(vec Θ)`` and its gradient in numpy/scipy, for a softmax head (independent of the library)."""
    n, d = phi_tilde.shape
    k = q.shape[1]

    def fun(theta_vec):
        theta = theta_vec.reshape(k, d)
        z = phi_tilde @ theta.T
        value = -(q * log_softmax(z, axis=1)).sum() / n + lam * (theta**2).sum()
        return value, ((softmax(z, axis=1) - q).T @ phi_tilde / n + 2 * lam * theta).ravel()

    return fun


def _random_head(n=60, d=5, k=4, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n, d))
    return phi, Features(scale * rng.normal(size=(k, d)), rng.normal(size=k))


def test_matches_an_independent_lbfgs_solution():
    phi, model = _random_head()
    explainer = RPSL2(model, dtype="float64").fit(phi, np.zeros(len(phi), dtype=int))
    phi_tilde = np.hstack([phi, np.ones((len(phi), 1))])
    q = softmax(phi @ model.weight.T + model.bias, axis=1)
    fun = _independent_objective(phi_tilde, q, LAM)
    reference = minimize(fun, model.theta.ravel(), jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 0, "maxiter": 20000})
    assert np.linalg.norm(reference.jac) < 1e-8
    assert np.linalg.norm(fun(explainer.theta_.ravel())[1]) < 1e-10
    np.testing.assert_allclose(explainer.theta_.ravel(), reference.x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(explainer.alpha_, -(softmax(phi_tilde @ explainer.theta_.T, axis=1) - q) / (2 * LAM * len(phi)), atol=1e-12)


def _orthogonal_tilde_features(n: int, seed: int = 0) -> np.ndarray:
    """``n`` features in ``R^n`` with ``φ_iᵀφ_j = n δ_ij − 1``, so that the ``φ̃_i = [φ_i; 1]`` are orthogonal.

    ``φ_i = √n · Q (e_i − 1/n)`` for a random orthogonal ``Q`` (scaled, centred simplex vertices).
    """
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return np.sqrt(n) * (np.eye(n) - 1.0 / n) @ q.T


def test_exact_alpha_when_the_features_are_orthogonal_softmax():
    # With orthogonal φ̃ (‖φ̃‖² = n), Θ* = Σ_i α_i φ̃_iᵀ gives the logits z_j = n α_j, so stationarity
    # decouples into one K-dimensional equation per point: α_j = −(softmax(n α_j) − q_j) / (2λn).
    n, k = 8, 3
    phi = _orthogonal_tilde_features(n)
    phi_tilde = np.hstack([phi, np.ones((n, 1))])
    np.testing.assert_allclose(phi_tilde @ phi_tilde.T, n * np.eye(n), atol=1e-12)
    rng = np.random.default_rng(1)
    model = Features(2 * rng.normal(size=(k, n)), rng.normal(size=k))
    q = softmax(phi @ model.weight.T + model.bias, axis=1)
    exact = np.stack([
        root(lambda a, qj=qj: softmax(n * a) - qj + 2 * LAM * n * a, np.zeros(k), method="hybr", options={"xtol": 1e-15}).x
        for qj in q
    ])
    explainer = RPSL2(model, dtype="float64").fit(phi, np.zeros(n, dtype=int))
    np.testing.assert_allclose(explainer.alpha_, exact, atol=1e-12)
    np.testing.assert_allclose(explainer.theta_, exact.T @ phi_tilde, atol=1e-10)


def test_exact_alpha_when_the_features_are_orthogonal_binary():
    n = 7
    phi = _orthogonal_tilde_features(n, seed=2)
    rng = np.random.default_rng(3)
    model = Features(2 * rng.normal(size=(1, n)), rng.normal(size=1))
    q = expit(phi @ model.weight[0] + model.bias[0])
    bound = 1 / (2 * LAM * n)
    exact = np.array([brentq(lambda a, qj=qj: expit(n * a) - qj + 2 * LAM * n * a, -bound, bound, xtol=1e-15) for qj in q])
    explainer = RPSL2(model, dtype="float64").fit(phi, np.arange(n) % 2)
    np.testing.assert_allclose(explainer.alpha_[:, 0], exact, atol=1e-12)


# ------------------------------------------------------------------------------------ binary head
@pytest.fixture(scope="module")
def binary_rps():
    rng = np.random.default_rng(4)
    phi = rng.normal(size=(50, 3))
    model = Features(rng.normal(size=(1, 3)), rng.normal(size=1))
    return RPSL2(model, dtype="float64").fit(phi, (phi[:, 0] > 0).astype(int)), rng.normal(size=(9, 3))


def test_binary_head_is_a_logistic_refit(binary_rps):
    explainer, _ = binary_rps
    phi_tilde = explainer.train_features_tilde()
    q = expit(phi_tilde @ explainer.model_.theta[0])
    theta = explainer.theta_[0]

    def fun(t):
        z = phi_tilde @ t
        loss = -(q * log_expit(z) + (1 - q) * log_expit(-z)).mean() + LAM * t @ t
        return loss, phi_tilde.T @ (expit(z) - q) / len(z) + 2 * LAM * t

    assert np.linalg.norm(fun(theta)[1]) < 1e-10
    reference = minimize(fun, np.zeros_like(theta), jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 0})
    np.testing.assert_allclose(theta, reference.x, rtol=1e-6, atol=1e-6)


def test_binary_class_zero_scores_are_the_negated_class_one_scores(binary_rps):
    explainer, X = binary_rps
    one, zero = explainer.attribute(X, target=1), explainer.attribute(X, target=0)
    np.testing.assert_array_equal(zero, -one)
    phi_tilde = np.hstack([X, np.ones((len(X), 1))])
    bound = _logit_error_bound(explainer, phi_tilde)
    assert np.all(np.abs(one.sum(axis=1) - phi_tilde @ explainer.theta_[0]) <= bound)
    exp1, exp0 = explainer.explain(X, top_k=4, target=1), explainer.explain(X, top_k=4, target=0)
    np.testing.assert_array_equal(exp0.excitatory.indices, exp1.inhibitory.indices)
    np.testing.assert_array_equal(exp0.excitatory.scores, -exp1.inhibitory.scores)


def test_binary_self_influence_uses_class_columns(binary_rps):
    explainer, _ = binary_rps
    alpha = explainer.alpha_[:, 0]
    np.testing.assert_array_equal(explainer.self_influence(), np.abs(alpha))  # |−α| = |α| for either label


# ------------------------------------------------------------------------------------------ errors
@pytest.fixture(scope="module")
def small_features():
    phi, model = _random_head(n=20, d=4, k=3)
    return RPSL2(model).fit(phi, np.arange(20) % 3), phi


def test_unfitted_explainer_raises_not_fitted():
    explainer = RPSL2(Features(np.ones((3, 2))))
    for call in (lambda: explainer.explain(np.ones((1, 2))), lambda: explainer.attribute(np.ones((1, 2))),
                 explainer.self_influence, explainer.representer_weights, lambda: explainer.save("unused")):
        with pytest.raises(NotFittedError, match="fit"):
            call()


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones((2, 5)), "columns"),
        (np.ones(4), "2-dimensional"),
        (np.full((2, 4), np.nan), "NaN"),
        (np.ones((0, 4)), "empty"),
        ("text", "numeric"),
    ],
    ids=["wrong-width", "1-d", "nan", "empty", "not-numeric"],
)
def test_bad_inputs_are_named(small_features, X, match):
    explainer, _ = small_features
    with pytest.raises(InputError, match=match):
        explainer.explain(X)
    with pytest.raises(InputError, match=match):
        RPSL2(explainer.model_).fit(X, np.zeros(2, dtype=int))


@pytest.mark.parametrize(
    ("y", "match"),
    [(np.array([0, 1, 3] * 6 + [0, 1]), r"\[0, 2\]"), (np.zeros(19, dtype=int), "rows"), (np.full(20, 0.5), "integer"),
     (np.zeros((20, 1), dtype=int), "1-d"), (np.array([], dtype=int), "empty")],
    ids=["label>=K", "wrong-length", "non-integer", "2-d", "empty"],
)
def test_bad_labels_are_named(small_features, y, match):
    explainer, phi = small_features
    with pytest.raises(InputError, match=match):
        RPSL2(explainer.model_).fit(phi, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"target": "foo"}, "target"), ({"target": 3}, r"\[0, 2\]"), ({"target": -1}, "target"),
     ({"target": np.zeros(3, dtype=int)}, "rows"), ({"target": "label"}, "y="), ({"top_k": 0}, "top_k")],
    ids=["unknown-string", "class>=K", "negative", "wrong-length", "label-without-y", "top_k<1"],
)
def test_bad_targets_and_top_k_are_named(small_features, kwargs, match):
    explainer, phi = small_features
    with pytest.raises(InputError, match=match):
        explainer.explain(phi[:5], **kwargs)


@pytest.mark.parametrize(("params", "match"), [({"lam": 0}, "lam"), ({"lam": -1.0}, "lam"), ({"self_influence_mode": "x"}, "self_influence_mode"), ({"dtype": "float16"}, "dtype")])
def test_bad_hyper_parameters_are_named(small_features, params, match):
    explainer, phi = small_features
    with pytest.raises(InputError, match=match):
        RPSL2(explainer.model_, **params).fit(phi, np.arange(20) % 3)


def test_model_without_a_linear_head_is_refused():
    with pytest.raises(ModelError, match="no nn.Linear"):
        RPSL2(nn.Sequential(nn.Flatten(), nn.ReLU())).fit(np.ones((4, 3)), np.zeros(4, dtype=int))
    with pytest.raises(ModelError, match="Cannot explain"):
        RPSL2("not a model").fit(np.ones((4, 3)), np.zeros(4, dtype=int))


def test_model_in_training_mode_is_refused():
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    with pytest.raises(ModelError, match="eval"):
        RPSL2(net).fit(np.ones((4, 3), dtype=np.float32), np.zeros(4, dtype=int))


def test_input_that_does_not_fit_the_network_is_named():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with pytest.raises(InputError, match="`X`"):
        RPSL2(net).fit(np.ones((4, 5), dtype=np.float32), np.zeros(4, dtype=int))


def test_get_params_and_repr():
    explainer = RPSL2(Features(np.ones((3, 2))), lam=0.01, block_size=7)
    params = explainer.get_params()
    assert params["lam"] == 0.01 and params["block_size"] == 7 and params["dtype"] == "float32"
    assert "lam=0.01" in repr(explainer)


# ------------------------------------------------------------------ refit to the given labels (Eq. 3)
def test_labels_refit_matches_an_independent_solution_and_ignores_the_given_head():
    # Eq. (3): the student fits one-hot labels, so the given head only sets the starting point.
    phi, model = _random_head(seed=5)
    y = np.random.default_rng(6).integers(0, 4, size=len(phi))
    explainer = RPSL2(model, refit="labels", dtype="float64").fit(phi, y)
    phi_tilde = np.hstack([phi, np.ones((len(phi), 1))])
    onehot = np.eye(4)[y]
    fun = _independent_objective(phi_tilde, onehot, LAM)
    reference = minimize(fun, np.zeros(4 * phi_tilde.shape[1]),
                         jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 0, "maxiter": 20000})
    np.testing.assert_allclose(explainer.theta_.ravel(), reference.x, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(explainer.teacher_, onehot)
    p = softmax(phi_tilde @ explainer.theta_.T, axis=1)
    rows = np.arange(len(y))
    np.testing.assert_allclose(explainer.alpha_[rows, y], (1 - p[rows, y]) / (2 * LAM * len(y)), atol=1e-12)
    np.testing.assert_allclose(explainer.alpha_.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(explainer.representer_weights(), explainer.theta_, atol=1e-8)
    other = Features(-3 * model.weight, model.bias + 1)
    np.testing.assert_allclose(RPSL2(other, refit="labels", dtype="float64").fit(phi, y).alpha_, explainer.alpha_, atol=1e-9)
    assert explainer.fit_report_["refit"] == "labels"


def test_labels_refit_is_sklearns_l2_logistic_regression():
    # (1/n) Σ CE + λ‖Θ‖² = 2λ [C Σ CE + ½‖Θ‖²] with C = 1/(2λn): sklearn's multinomial logistic
    # regression on [φ, 1] without a separate intercept has the same minimiser.
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    phi = rng.normal(size=(80, 4))
    y = (phi[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(int) + (phi[:, 1] > 1)
    explainer = RPSL2(Features(np.zeros((3, 4))), refit="labels", dtype="float64").fit(phi, y)
    phi_tilde = np.hstack([phi, np.ones((80, 1))])
    ref = LogisticRegression(C=1 / (2 * LAM * 80), fit_intercept=False, tol=1e-12, max_iter=10000).fit(phi_tilde, y)
    np.testing.assert_allclose(explainer.theta_, ref.coef_, atol=1e-5)


def test_labels_refit_on_a_binary_head_ranks_by_one_minus_the_label_probability():
    rng = np.random.default_rng(8)
    phi = rng.normal(size=(40, 3))
    y = (phi[:, 0] > 0).astype(int)
    y[:4] = 1 - y[:4]
    explainer = RPSL2(Features(rng.normal(size=(1, 3)), rng.normal(size=1)), refit="labels", dtype="float64").fit(phi, y)
    p1 = expit(np.hstack([phi, np.ones((40, 1))]) @ explainer.theta_[0])
    p_label = np.where(y == 1, p1, 1 - p1)
    np.testing.assert_allclose(explainer.self_influence(), (1 - p_label) / (2 * LAM * 40), atol=1e-12)


def test_unknown_refit_is_named():
    with pytest.raises(InputError, match="refit"):
        RPSL2(Features(np.ones((3, 2))), refit="model").fit(np.ones((5, 2)), np.arange(5) % 3)

"""Every head method runs on boosted trees through TreeEnsemble, and the closed forms hold there.

Boosters: xgboost, lightgbm, sklearn GradientBoosting and HistGradientBoosting; binary (breast
cancer) and multi-class (iris). Features: exact per-tree margins (and one-hot leaves where noted).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

from representer import RPSL2, RPSLJE, FeatureSimilarity, ModelError, TreeEnsemble
from representer.methods.dualview import DualView
from representer.methods.influence import InfluenceFunction
from representer.methods.relatif import RelatIF

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

KINDS = ("xgboost", "lightgbm", "sklearn-gb", "sklearn-hgb")
TASKS = ("binary", "multiclass")
DAMPING = 1e-6


def _data(task: str):
    X, y = (load_breast_cancer if task == "binary" else load_iris)(return_X_y=True)
    step = 4 if task == "binary" else 2
    return X[::step], y[::step], X[1::step][:15]


def _booster(kind: str, X, y):
    if kind == "xgboost":
        return xgb.XGBClassifier(n_estimators=8, max_depth=3, learning_rate=0.3, n_jobs=1, random_state=0).fit(X, y)
    if kind == "lightgbm":
        return lgb.LGBMClassifier(n_estimators=8, num_leaves=6, min_child_samples=5, n_jobs=1, verbose=-1).fit(X, y)
    if kind == "sklearn-gb":
        return GradientBoostingClassifier(n_estimators=8, max_depth=2, learning_rate=0.3, random_state=0).fit(X, y)
    return HistGradientBoostingClassifier(max_iter=8, max_leaf_nodes=6, early_stopping=False, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def fitted():
    cache: dict = {}

    def get(kind: str, task: str):
        if (kind, task) not in cache:
            X, y, X_test = _data(task)
            cache[kind, task] = (_booster(kind, X, y), X, y, X_test)
        return cache[kind, task]

    return get


METHODS = {
    "rps_lje": lambda a: RPSLJE(a, gamma=0.01),
    "influence": lambda a: InfluenceFunction(a, hessian="exact", damping=DAMPING),
    "influence_ekfac": lambda a: InfluenceFunction(a, hessian="ekfac", damping=DAMPING),
    "relatif_theta": lambda a: RelatIF(a, kind="theta", hessian="exact", damping=DAMPING),
    "relatif_loss": lambda a: RelatIF(a, kind="loss", hessian="exact", damping=DAMPING),
    "knn_margins": lambda a: FeatureSimilarity(a, metric="l2", n_neighbors=5),
    "dualview": lambda a: DualView(a, C=0.01),
}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_method_explains_a_booster(fitted, kind, task, method):
    model, X, y, X_test = fitted(kind, task)
    adapter = TreeEnsemble(model, "margins")
    ex = METHODS[method](adapter).fit(X, y)
    dense = ex.attribute(X_test)
    assert dense.shape == (len(X_test), len(X)) and np.all(np.isfinite(dense))
    explanation = ex.explain(X_test, top_k=3)
    np.testing.assert_array_equal(explanation.target, model.predict(X_test))  # the head predicts as the booster
    best = np.take_along_axis(dense, explanation.excitatory.indices, axis=1)
    np.testing.assert_allclose(explanation.excitatory.scores, best, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(best[:, 0], dense.max(axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explanation.inhibitory.scores[:, 0], dense.min(axis=1), rtol=1e-5, atol=1e-7)
    influence = ex.self_influence()
    assert influence.shape == (len(X),) and np.all(np.isfinite(influence))


# ------------------------------------------------------------------------------------ RPS-LJE


def _naive_newton_system(x: np.ndarray, theta: np.ndarray, y: np.ndarray, gamma: float):
    """Θ* = Θ† + γḡ(Θ†), and the undamped Newton system at Θ*: H (explicit Kronecker sum) and ḡ(Θ*)."""
    n, k = x.shape[0], theta.shape[0]
    targets = y[:, None].astype(float) if k == 1 else np.eye(k)[y]

    def probabilities(th):
        z = x @ th.T
        if k == 1:
            return 1 / (1 + np.exp(-z))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    theta_star = theta + gamma * (probabilities(theta) - targets).T @ x / n
    p = probabilities(theta_star)
    curvature = [np.diag(pi) - np.outer(pi, pi) if k > 1 else np.array([[pi[0] * (1 - pi[0])]]) for pi in p]
    h = sum(np.kron(c, np.outer(xi, xi)) for c, xi in zip(curvature, x)) / n
    grad = ((p - targets).T @ x / n).reshape(-1)
    return theta_star, h, grad


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_lje_identities_on_margin_features(fitted, kind, task):
    """Θ† is the booster's own head; Σ_i W_i is one Newton step from Θ*; Σ_i scores = that head's logits."""
    model, X, y, X_test = fitted(kind, task)
    adapter = TreeEnsemble(model, "margins")
    gamma = 0.01
    damping = 0.0 if adapter.is_binary else 1e-8  # binary margins: H is positive definite
    ex = RPSLJE(adapter, gamma=gamma, damping=damping).fit(X, y)
    x = np.c_[adapter.features(X), np.ones(len(X))]
    theta_star, h, grad = _naive_newton_system(x, adapter.theta, y, gamma)
    np.testing.assert_allclose(ex.theta_star_, theta_star, rtol=1e-10, atol=1e-12)
    assert ex.fit_report_["newton_identity_error"] < 1e-8
    step = (ex.reconstructed_head() - theta_star).reshape(-1)
    # Σ_i W_i solves the (damped) Newton system; the step has no component along the softmax shifts.
    roundoff = 1e-12 * np.abs(h).max() * np.abs(step).max() * h.shape[0]
    np.testing.assert_allclose(h @ step + grad, -damping * step, atol=roundoff + 1e-12)
    if adapter.is_binary:  # H is positive definite: the Newton iterate is unique
        np.testing.assert_allclose(step, -np.linalg.solve(h, grad), rtol=1e-6, atol=1e-8)

    x_test = np.c_[adapter.features(X_test), np.ones(len(X_test))]
    reconstructed_logits = x_test @ ex.reconstructed_head().T
    for c in range(adapter.n_classes):
        total = ex.attribute(X_test, target=c).sum(axis=1)
        expected = (reconstructed_logits[:, 0] * (1 if c == 1 else -1)) if adapter.is_binary else reconstructed_logits[:, c]
        np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-4)  # float32 scoring

    own = np.zeros(len(X), dtype=np.int64) if adapter.is_binary else y
    expected_self = np.abs(np.einsum("id,id->i", ex.weights_[np.arange(len(X)), own], x))
    np.testing.assert_allclose(ex.self_influence(), expected_self, rtol=1e-12)


def test_lje_gamma_zero_expands_around_the_booster_head(fitted):
    model, X, y, _ = fitted("xgboost", "binary")
    adapter = TreeEnsemble(model, "margins")
    ex = RPSLJE(adapter, gamma=0.0).fit(X, y)
    np.testing.assert_array_equal(ex.theta_star_, adapter.theta)
    np.testing.assert_allclose(ex.theta_star_[0, :-1], 1.0)  # every tree adds to the one logit


def test_lje_binary_class_zero_is_the_negated_class_one(fitted):
    model, X, y, X_test = fitted("lightgbm", "binary")
    ex = RPSLJE(TreeEnsemble(model, "margins")).fit(X, y)
    np.testing.assert_allclose(ex.attribute(X_test, target=0), -ex.attribute(X_test, target=1))


@pytest.mark.parametrize("task", TASKS)
def test_lje_on_leaves_needs_only_the_default_damping(fitted, task):
    """One-hot leaves of each tree sum to the ones column, so H is singular; damping 1e-8 resolves it."""
    from representer.errors import RepresenterError

    model, X, y, X_test = fitted("xgboost", task)
    leaves = TreeEnsemble(model, "leaves")
    ex = RPSLJE(leaves).fit(X, y, eval_X=X_test)
    assert ex.fit_report_["newton_identity_error"] < 1e-6
    assert np.all(np.isfinite(ex.self_influence()))
    with pytest.raises(RepresenterError, match="damping"):
        RPSLJE(leaves, damping=0.0).fit(X, y)


# ------------------------------------------------------------------------------ influence, RelatIF


def _naive_influence_parts(adapter: TreeEnsemble, X, y, damping: float):
    """Per-example head gradients g_i and the damped exact Hessian at the booster's head."""
    x = np.c_[adapter.features(X), np.ones(len(X))]
    z = x @ adapter.theta.T
    k = adapter.n_outputs
    if k == 1:
        p = 1 / (1 + np.exp(-z))
        r = p - y[:, None]
        curvature = [np.array([[pi[0] * (1 - pi[0])]]) for pi in p]
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        r = p - np.eye(k)[y]
        curvature = [np.diag(pi) - np.outer(pi, pi) for pi in p]
    grads = np.stack([np.kron(ri, xi) for ri, xi in zip(r, x)])
    h = sum(np.kron(c, np.outer(xi, xi)) for c, xi in zip(curvature, x)) / len(X) + damping * np.eye(grads.shape[1])
    return grads, h


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ("xgboost", "sklearn-hgb"))
def test_influence_and_relatif_self_influence_match_brute_force(fitted, kind, task):
    model, X, y, _ = fitted(kind, task)
    adapter = TreeEnsemble(model, "margins")
    grads, h = _naive_influence_parts(adapter, X, y, DAMPING)
    solved = np.linalg.solve(h, grads.T).T
    quad = np.einsum("ij,ij->i", grads, solved)
    np.testing.assert_allclose(InfluenceFunction(adapter, damping=DAMPING).fit(X, y).self_influence(), quad, rtol=1e-6)
    theta = RelatIF(adapter, kind="theta", damping=DAMPING).fit(X, y).self_influence()
    np.testing.assert_allclose(theta, quad / np.linalg.norm(solved, axis=1), rtol=1e-6)
    loss = RelatIF(adapter, kind="loss", damping=DAMPING).fit(X, y).self_influence()
    np.testing.assert_allclose(loss, np.sqrt(quad), rtol=1e-6)  # ℓ-RelatIF ranks exactly as influence


# ------------------------------------------------------------------------------------- DualView


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ("lightgbm", "sklearn-gb"))
def test_dualview_on_margins_decomposes_its_svm(fitted, kind, task):
    """β rows sum to 0 and Σ_i DV(t, i, c) = 2 w_cᵀz_t (Shark scale) on z-scored per-tree margins."""
    model, X, y, X_test = fitted(kind, task)
    adapter = TreeEnsemble(model, "margins")
    ex = DualView(adapter, C=0.01, tol=1e-6).fit(X, y)
    np.testing.assert_allclose(ex.beta_.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(ex.representer_weights(), ex.weight_, rtol=1e-8, atol=1e-10)
    z_test = ex.standardize(adapter.features(X_test))
    for c in range(adapter.n_classes):
        np.testing.assert_allclose(ex.attribute(X_test, target=c).sum(axis=1), 2 * z_test @ ex.weight_[c], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ kNN


def _leaf_ids(kind: str, model, X) -> np.ndarray:
    """Leaf index of every tree, through each library's public API."""
    if kind == "xgboost":
        return model.get_booster().predict(xgb.DMatrix(X), pred_leaf=True)
    if kind == "lightgbm":
        return model.predict(X, pred_leaf=True)
    return model.apply(X).reshape(len(X), -1)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ("xgboost", "lightgbm", "sklearn-gb"))
def test_knn_dot_on_leaves_counts_shared_leaves(fitted, kind, task):
    """⟨φ_t, φ_i⟩ of one-hot leaves is the number of trees in which t and i share a leaf (forest proximity)."""
    model, X, y, X_test = fitted(kind, task)
    ex = FeatureSimilarity(TreeEnsemble(model, "leaves"), metric="dot").fit(X, y)
    shared = (_leaf_ids(kind, model, X_test)[:, None, :] == _leaf_ids(kind, model, X)[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(ex.attribute(X_test), shared)


def test_rps_l2_refuses_tree_ensembles_with_a_reason():
    X, y = load_breast_cancer(return_X_y=True)
    booster = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y)
    with pytest.raises(ModelError, match="does not apply to tree ensembles"):
        RPSL2(TreeEnsemble(booster)).fit(X, y)


@pytest.mark.parametrize("features", ["margins", "paper"])
def test_self_influence_does_not_depend_on_which_class_is_coded_one(features):
    # Recoding the classes (y → 1 − y) with base_score 0.5 grows exactly negated trees; every head
    # method's self-influence (its label-issue ranking) must come out the same.
    X, y, _ = _data("binary")
    params = {"n_estimators": 12, "max_depth": 3, "learning_rate": 0.1, "base_score": 0.5, "n_jobs": 1, "random_state": 0}
    one = TreeEnsemble(xgb.XGBClassifier(**params).fit(X, y), features=features)
    other = TreeEnsemble(xgb.XGBClassifier(**params).fit(X, 1 - y), features=features)
    np.testing.assert_allclose(one.features(X) @ one.weight.T + one.bias, -(other.features(X) @ other.weight.T + other.bias), atol=1e-5)
    for make in (lambda a: InfluenceFunction(a, hessian="exact", damping=1e-3), lambda a: RPSLJE(a, gamma=0.01),
                 lambda a: RelatIF(a, kind="loss", hessian="exact", damping=1e-3)):
        first, second = make(one).fit(X, y).self_influence(), make(other).fit(X, 1 - y).self_influence()
        np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-9 * np.abs(first).max())

"""TreeEnsemble: features × head + bias must reproduce each booster's raw margin on held-out data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import expit, logit
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.linear_model import LogisticRegression

from representer.errors import InputError, ModelError
from representer.models.trees import TreeEnsemble

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

KINDS = ("xgboost", "lightgbm", "sklearn-gb", "sklearn-hgb")
TASKS = ("binary", "iris", "wine")


def _split(task: str):
    loader = {"binary": load_breast_cancer, "iris": load_iris, "wine": load_wine}[task]
    X, y = loader(return_X_y=True)
    return X[::2], y[::2], X[1::2]


def _fit(kind: str, X, y, **kw):
    if kind == "xgboost":
        return xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, **kw).fit(X, y)
    if kind == "lightgbm":
        return lgb.LGBMClassifier(n_estimators=20, num_leaves=8, min_child_samples=5, n_jobs=1, verbose=-1, **kw).fit(X, y)
    if kind == "sklearn-gb":
        return GradientBoostingClassifier(n_estimators=20, max_depth=2, learning_rate=0.3, random_state=0, **kw).fit(X, y)
    return HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=8, early_stopping=False, **kw).fit(X, y)


def _raw_margin(kind: str, model, X) -> np.ndarray:
    """The booster's own raw margin, through each library's public API."""
    if kind == "xgboost":
        out = model.get_booster().predict(xgb.DMatrix(X, enable_categorical=True), output_margin=True)
    elif kind == "lightgbm":
        out = model.predict(X, raw_score=True)
    else:
        out = model.decision_function(X)
    return np.asarray(out, dtype=np.float64).reshape(len(X), -1)


def _assert_margin_close(kind: str, z: np.ndarray, raw: np.ndarray) -> None:
    # xgboost predicts in float32: its own output carries a relative rounding error of ~1e-7.
    if kind == "xgboost":
        np.testing.assert_allclose(z, raw, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(z, raw, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def fitted():
    cache: dict = {}

    def get(kind: str, task: str):
        if (kind, task) not in cache:
            Xtr, ytr, Xte = _split(task)
            cache[kind, task] = (_fit(kind, Xtr, ytr), Xte)
        return cache[kind, task]

    return get


@pytest.mark.parametrize("features", ["margins", "leaves"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_head_reproduces_raw_margin(fitted, kind, task, features):
    model, Xte = fitted(kind, task)
    adapter = TreeEnsemble(model, features=features)
    phi = adapter.features(Xte)
    assert phi.dtype == np.float64 and phi.shape == (len(Xte), adapter.n_features)
    raw = _raw_margin(kind, model, Xte)
    assert adapter.model_kind == kind
    assert adapter.n_outputs == (1 if task == "binary" else 3)
    _assert_margin_close(kind, phi @ adapter.weight.T + adapter.bias, raw)
    np.testing.assert_allclose(adapter.predict_proba(Xte), model.predict_proba(Xte), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_margins_head_routes_each_tree_to_its_class(fitted, kind):
    model, _ = fitted(kind, "iris")
    adapter = TreeEnsemble(model)
    assert adapter.n_trees == 60 and adapter.weight.shape == (3, 60)
    assert set(np.unique(adapter.weight)) == {0.0, 1.0}
    np.testing.assert_array_equal(adapter.weight.sum(axis=0), np.ones(60))
    np.testing.assert_array_equal(adapter.weight.argmax(axis=0), np.tile([0, 1, 2], 20))


@pytest.mark.parametrize("kind", KINDS)
def test_leaves_are_one_hot_per_tree_and_sparse_matches_dense(fitted, kind):
    model, Xte = fitted(kind, "wine")
    adapter = TreeEnsemble(model, features="leaves")
    sparse = adapter.features_sparse(Xte)
    assert sp.isspmatrix_csr(sparse) and sparse.shape == (len(Xte), adapter.n_leaves)
    dense = adapter.features(Xte)
    np.testing.assert_array_equal(sparse.toarray(), dense)
    np.testing.assert_array_equal(dense.sum(axis=1), np.full(len(Xte), adapter.n_trees))
    assert set(np.unique(dense)) == {0.0, 1.0}
    margins = TreeEnsemble(model).features(Xte)
    per_tree_from_leaves = np.add.reduceat(dense * (adapter.weight.sum(axis=0)), _leaf_starts(adapter), axis=1)
    np.testing.assert_allclose(per_tree_from_leaves, margins, atol=1e-12)


def _leaf_starts(adapter: TreeEnsemble) -> np.ndarray:
    """First leaf column of each tree (leaf columns are grouped by tree, in tree order)."""
    counts = np.array([int(leaf.sum()) for leaf in adapter._forest.is_leaf])
    return np.concatenate([[0], np.cumsum(counts)[:-1]])


def test_xgboost_per_tree_margin_matches_single_tree_prediction(fitted):
    model, Xte = fitted("xgboost", "binary")
    booster = model.get_booster()
    adapter = TreeEnsemble(model)
    phi = adapter.features(Xte)
    for m in (0, 7, 19):
        one_tree = booster.predict(xgb.DMatrix(Xte), output_margin=True, iteration_range=(m, m + 1))
        np.testing.assert_allclose(phi[:, m], one_tree - adapter.bias[0], atol=1e-6)


def test_sklearn_gb_per_tree_margin_matches_staged_differences(fitted):
    model, Xte = fitted("sklearn-gb", "iris")
    staged = np.stack(list(model.staged_decision_function(Xte)))  # (rounds, n, K)
    bias = np.broadcast_to(TreeEnsemble(model).bias, (1, *staged.shape[1:]))
    per_round = np.diff(staged, axis=0, prepend=bias)
    phi = TreeEnsemble(model).features(Xte)
    np.testing.assert_allclose(phi, per_round.transpose(1, 0, 2).reshape(len(Xte), -1), atol=1e-12)


def test_lightgbm_per_tree_margin_matches_single_iteration(fitted):
    model, Xte = fitted("lightgbm", "binary")
    phi = TreeEnsemble(model).features(Xte)
    for m in (0, 5, 19):
        one_tree = model.booster_.predict(Xte, raw_score=True, start_iteration=m, num_iteration=1)
        np.testing.assert_allclose(phi[:, m], one_tree, atol=1e-12)


def test_xgboost_bias_is_logit_of_estimated_base_score(fitted):
    import json

    model, _ = fitted("xgboost", "binary")
    base_score = json.loads(model.get_booster().save_config())["learner"]["learner_model_param"]["base_score"]
    p = float(base_score.strip("[]"))
    assert abs(p - 0.5) > 0.05, "xgboost 3 estimates base_score from the labels"
    np.testing.assert_allclose(TreeEnsemble(model).bias, [logit(np.float32(p))], rtol=1e-6)


def test_xgboost_raw_booster_dart_and_logitraw():
    Xtr, ytr, Xte = _split("binary")
    for params in ({"objective": "binary:logitraw", "base_score": 0.3}, {"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.3}):
        booster = xgb.train({**params, "max_depth": 3, "nthread": 1}, xgb.DMatrix(Xtr, label=ytr), num_boost_round=15)
        adapter = TreeEnsemble(booster)
        raw = booster.predict(xgb.DMatrix(Xte), output_margin=True)[:, None]
        _assert_margin_close("xgboost", adapter.logits(Xte), raw)


def test_early_stopped_models_use_the_best_iteration():
    """XGBClassifier.predict and lightgbm Booster.predict both stop at the best iteration."""
    Xtr, ytr, Xte = _split("binary")
    yte = load_breast_cancer(return_X_y=True)[1][1::2]
    xm = xgb.XGBClassifier(n_estimators=200, learning_rate=0.5, max_depth=3, early_stopping_rounds=3, n_jobs=1)
    xm.fit(Xtr, ytr, eval_set=[(Xte, yte)], verbose=False)
    params = {"objective": "binary", "learning_rate": 0.5, "num_leaves": 8, "verbose": -1, "num_threads": 1}
    train, valid = lgb.Dataset(Xtr, label=ytr), lgb.Dataset(Xte, label=yte)
    lb = lgb.train(params, train, 200, valid_sets=[valid], callbacks=[lgb.early_stopping(3, verbose=False)], keep_training_booster=True)
    assert xm.best_iteration + 1 < xm.get_booster().num_boosted_rounds()
    assert lb.best_iteration < lb.current_iteration()
    ax, al = TreeEnsemble(xm), TreeEnsemble(lb)
    assert ax.n_trees == xm.best_iteration + 1 and al.n_trees == lb.best_iteration
    _assert_margin_close("xgboost", ax.logits(Xte), xm.predict(Xte, output_margin=True)[:, None])
    _assert_margin_close("lightgbm", al.logits(Xte), lb.predict(Xte, raw_score=True)[:, None])


def test_lightgbm_random_forest_head_gives_the_averaged_log_odds():
    Xtr, ytr, Xte = _split("binary")
    model = lgb.LGBMClassifier(boosting_type="rf", n_estimators=10, bagging_freq=1, bagging_fraction=0.6, verbose=-1, n_jobs=1)
    model.fit(Xtr, ytr)
    adapter = TreeEnsemble(model)
    np.testing.assert_allclose(adapter.predict_proba(Xte), model.predict_proba(Xte), atol=1e-12)


def _categorical_frame():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :6].copy()
    X["band"] = pd.Categorical(pd.qcut(X["mean radius"], 4, labels=["a", "b", "c", "d"]).astype(str))
    X = X.drop(columns="mean radius")
    return X.iloc[::2], y.iloc[::2], X.iloc[1::2]


@pytest.mark.parametrize("kind", ["xgboost", "lightgbm", "sklearn-hgb"])
@pytest.mark.parametrize("features", ["margins", "leaves"])
def test_pandas_input_with_a_categorical_column(kind, features):
    Xtr, ytr, Xte = _categorical_frame()
    kw = {"enable_categorical": True, "tree_method": "hist"} if kind == "xgboost" else {}
    if kind == "sklearn-hgb":
        kw = {"categorical_features": "from_dtype"}
    model = _fit(kind, Xtr, ytr, **kw)
    adapter = TreeEnsemble(model, features=features)
    z = adapter.features(Xte) @ adapter.weight.T + adapter.bias
    _assert_margin_close(kind, z, _raw_margin(kind, model, Xte))
    if kind == "lightgbm":
        assert model.booster_.dump_model()["pandas_categorical"], "the categorical column must reach lightgbm"


def test_paper_features_are_centred_sigmoids_of_tree_margins(fitted):
    model, Xte = fitted("xgboost", "binary")
    paper = TreeEnsemble(model, features="paper")
    margins = TreeEnsemble(model).features(Xte)
    np.testing.assert_allclose(paper.features(Xte), expit(margins) - 0.5, atol=1e-15)
    M = paper.n_trees
    np.testing.assert_array_equal(paper.weight, np.ones((1, M)))
    np.testing.assert_array_equal(paper.bias, [0.0])
    # the paper's head σ(f_m), bias −(M − 1)/2 is this one plus ½
    np.testing.assert_allclose(paper.logits(Xte)[:, 0] + 0.5, expit(margins).sum(1) - (M - 1) / 2, atol=1e-12)
    assert not np.allclose(paper.logits(Xte), _raw_margin("xgboost", model, Xte), atol=1e-3), "paper head is not faithful"


def test_paper_features_equal_single_tree_probabilities_at_base_score_half():
    Xtr, ytr, Xte = _split("binary")
    booster = xgb.train({"objective": "binary:logistic", "base_score": 0.5, "nthread": 1}, xgb.DMatrix(Xtr, label=ytr), 8)
    phi = TreeEnsemble(booster, features="paper").features(Xte) + 0.5
    reference = np.column_stack([booster.predict(xgb.DMatrix(Xte), iteration_range=(m, m + 1)) for m in range(8)])
    np.testing.assert_allclose(phi, reference, atol=1e-6)


def test_paper_refuses_multiclass(fitted):
    model, _ = fitted("lightgbm", "iris")
    with pytest.raises(ModelError, match="binary"):
        TreeEnsemble(model, features="paper")


def test_fingerprint_depends_on_the_trees_not_only_the_head(fitted):
    Xtr, ytr, _ = _split("binary")
    a = TreeEnsemble(_fit("lightgbm", Xtr, ytr))
    b = TreeEnsemble(_fit("lightgbm", Xtr[::-1], ytr[::-1], colsample_bytree=0.5, random_state=1))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert a.fingerprint() != b.fingerprint()
    model, _ = fitted("xgboost", "binary")
    assert TreeEnsemble(model).fingerprint() == TreeEnsemble(model).fingerprint()
    assert TreeEnsemble(model).fingerprint() != TreeEnsemble(model, features="leaves").fingerprint()


@pytest.mark.parametrize(
    "make",
    [
        lambda X, y: xgb.XGBRegressor(n_estimators=2).fit(X, y),
        lambda X, y: lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, y),
        lambda X, y: GradientBoostingRegressor(n_estimators=2).fit(X, y),
        lambda X, y: HistGradientBoostingRegressor(max_iter=2).fit(X, y),
    ],
    ids=["XGBRegressor", "LGBMRegressor", "GradientBoostingRegressor", "HistGradientBoostingRegressor"],
)
def test_regressors_are_refused(make):
    Xtr, ytr, _ = _split("binary")
    with pytest.raises(ModelError, match="regressor"):
        TreeEnsemble(make(Xtr, ytr))


@pytest.mark.parametrize("objective", ["reg:squarederror", "rank:pairwise", "binary:hinge", "reg:logistic"])
def test_xgboost_objectives_outside_log_loss_are_refused(objective):
    Xtr, ytr, _ = _split("binary")
    booster = xgb.train({"objective": objective, "nthread": 1}, xgb.DMatrix(Xtr, label=ytr, qid=np.zeros(len(ytr))), 2)
    with pytest.raises(ModelError, match=objective):
        TreeEnsemble(booster)


@pytest.mark.parametrize("objective", ["regression", "lambdarank", "multiclassova"])
def test_lightgbm_objectives_outside_log_loss_are_refused(objective):
    Xtr, ytr, _ = _split("iris")
    params = {"objective": objective, "verbose": -1, "num_threads": 1}
    if objective == "multiclassova":
        params["num_class"] = 3
    data = lgb.Dataset(Xtr, label=ytr, group=[len(ytr)] if objective == "lambdarank" else None)
    booster = lgb.train(params, data, num_boost_round=2)
    with pytest.raises(ModelError, match=objective):
        TreeEnsemble(booster)


def test_other_refusals():
    Xtr, ytr, _ = _split("binary")
    for unfitted in (xgb.XGBClassifier(), lgb.LGBMClassifier(), GradientBoostingClassifier(), HistGradientBoostingClassifier()):
        with pytest.raises(ModelError, match="not fitted"):
            TreeEnsemble(unfitted)
    with pytest.raises(ModelError, match="not supported"):
        TreeEnsemble(LogisticRegression().fit(Xtr[:, :3], ytr))
    with pytest.raises(ModelError, match="exponential"):
        TreeEnsemble(GradientBoostingClassifier(loss="exponential", n_estimators=2).fit(Xtr, ytr))
    with pytest.raises(ModelError, match="init"):
        TreeEnsemble(GradientBoostingClassifier(init=LogisticRegression(max_iter=5000), n_estimators=2).fit(Xtr[:, :3], ytr))
    with pytest.raises(InputError, match="features"):
        TreeEnsemble(_fit("lightgbm", Xtr, ytr), features="trees")


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_number_of_columns_is_an_input_error(fitted, kind):
    model, Xte = fitted(kind, "binary")
    adapter = TreeEnsemble(model)
    with pytest.raises(InputError, match="30"):
        adapter.features(Xte[:, :-1])
    with pytest.raises(InputError, match="2-dimensional"):
        adapter.features(Xte[0])

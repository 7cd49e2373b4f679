"""The declarative constraint tables: what each constraint accepts, and that fit checks them first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import representer as rp
from representer._params import Boolean, Device, InstanceOf, Interval, NoneValue, Options, Strings, check_value, constraints_of, validate_params
from representer.errors import InputError


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        (Interval(int, 1, None), [1, 7, np.int64(3)], [0, -1, 2.0, 2.7, True, np.bool_(True), "3", None]),
        (Interval(float, 0, None, "neither"), [1e-9, 3, np.float32(0.5)], [0, -1e-9, float("nan"), float("inf"), True, "1"]),
        (Interval(float, 0, 1, "both"), [0, 0.5, 1], [-0.1, 1.1]),
        (Interval(float, 0, 1, "left"), [0, 0.99], [1]),
        (Interval(float, 0, 1, "right"), [1, 0.01], [0]),
        (Options(("a", "b")), ["a", np.str_("b")], ["c", None, 1]),
        (Options((1, 2)), [1, np.int64(2)], [True, 1.5, "1"]),
        (Boolean(), [True, False, np.bool_(False)], [0, 1, "True", None]),
        (NoneValue(), [None], [0, "", False]),
        (Strings(unique=True), [["a", "b"], ("x",)], ["ab", [], ["a", "a"], ["a", ""], ["a", 1], None]),
        (Strings(), [["a", "a"]], ["ab"]),
        (Device(), ["cpu", "cuda:1", torch.device("cpu")], ["gpu", 0, None]),
        (InstanceOf(rp.fullmodel.Measurement, "a Measurement"), [rp.fullmodel.Margin(), rp.fullmodel.CrossEntropy()], ["margin", None, len]),
    ],
)
def test_what_each_constraint_accepts(constraint, good, bad):
    assert all(constraint.accepts(v) for v in good), [v for v in good if not constraint.accepts(v)]
    assert not any(constraint.accepts(v) for v in bad), [v for v in bad if constraint.accepts(v)]


def test_descriptions_read_as_the_end_of_a_sentence():
    assert Interval(int, 1, None).describe() == "an integer >= 1"
    assert Interval(float, 0, None, "neither").describe() == "a finite number > 0"
    assert Interval(int, 0, 2**64 - 1).describe() == "an integer in [0, 18446744073709551615]"
    assert Interval(float, 0, 1, "left").describe() == "a finite number in [0, 1)"
    assert Options(("x", "y")).describe() == "one of 'x', 'y'"
    with pytest.raises(InputError, match=r"^RPSL2: `lam` must be None or a finite number > 0; got -1 \(int\)\.$"):
        check_value(-1, "lam", [NoneValue(), Interval(float, 0, None, "neither")], "RPSL2")


def test_tables_merge_along_the_class_hierarchy():
    merged = constraints_of(rp.RelatIF)
    assert {"block_size", "dtype", "class_names", "hessian", "damping", "kind"} <= set(merged)
    assert rp.RelatIF.parameter_constraints() == merged
    with pytest.raises(KeyError):
        validate_params("X", {"undeclared": 1}, merged)


def test_every_default_satisfies_its_own_table():
    pending = list(rp.Explainer.__subclasses__())
    while pending:
        klass = pending.pop()
        pending.extend(klass.__subclasses__())
        if not klass.__name__.startswith("_"):
            klass(None).validate_params()


def test_a_failed_fit_leaves_a_fitted_explainer_as_it_was(digits_mlp):
    explainer = rp.RPSL2(digits_mlp.net).fit(digits_mlp.X_train[:200], digits_mlp.y_train[:200])
    alpha, state = explainer.alpha_, dict(explainer.__dict__)
    explainer.lam = -1.0
    with pytest.raises(InputError, match="`lam`"):
        explainer.fit(digits_mlp.X_train[:100], digits_mlp.y_train[:100])
    explainer.lam = 0.003
    with pytest.raises(InputError, match="labels"):
        explainer.fit(digits_mlp.X_train[:100], digits_mlp.y_train[:99])
    assert explainer.__dict__.keys() == state.keys() and explainer.alpha_ is alpha
    assert explainer.explain(digits_mlp.X_test[:2], top_k=3).excitatory.indices.max() < 200


def test_sklearn_clone_gives_an_unfitted_copy_on_the_same_model(digits_mlp):
    from sklearn.base import clone

    X, y = digits_mlp.X_train[:300], digits_mlp.y_train[:300]
    names = [str(c) for c in range(10)]
    explainer = rp.DualView(digits_mlp.net, C=0.01, seed=3, class_names=names).fit(X, y)
    copy = clone(explainer)
    assert type(copy) is rp.DualView and copy.get_params() == explainer.get_params()
    assert copy.model is explainer.model and copy.class_names is not explainer.class_names
    with pytest.raises(rp.NotFittedError):
        copy.explain(digits_mlp.X_test[:2])
    again = copy.fit(X, y).explain(digits_mlp.X_test[:3], top_k=4)
    first = explainer.explain(digits_mlp.X_test[:3], top_k=4)
    np.testing.assert_array_equal(again.excitatory.indices, first.excitatory.indices)
    np.testing.assert_allclose(again.excitatory.scores, first.excitatory.scores)


def test_a_parameter_search_with_clone_and_set_params_matches_direct_construction(digits_mlp):
    from sklearn.base import clone
    from sklearn.model_selection import ParameterGrid

    X, y = digits_mlp.X_train[:200], digits_mlp.y_train[:200]
    base = rp.RPSL2(digits_mlp.net)
    for params in ParameterGrid({"lam": [1e-3, 1e-1], "refit": ["teacher", "labels"]}):
        searched = clone(base).set_params(**params).fit(X, y)
        direct = rp.RPSL2(digits_mlp.net, **params).fit(X, y)
        np.testing.assert_allclose(searched.alpha_, direct.alpha_, rtol=1e-10, atol=1e-12)
    assert base.get_params()["lam"] == 0.003


def test_set_params_checks_first_and_discards_a_fit_it_invalidates(digits_mlp):
    X, y, X_test = digits_mlp.X_train[:200], digits_mlp.y_train[:200], digits_mlp.X_test[:3]
    explainer = rp.RPSL2(digits_mlp.net).fit(X, y)
    before = explainer.explain(X_test, top_k=3)
    with pytest.raises(InputError, match="has no parameter 'lamda'; its parameters are"):
        explainer.set_params(lamda=0.1)
    with pytest.raises(InputError, match="`lam` must be a finite number > 0"):
        explainer.set_params(max_iter=50, lam=0.0)
    assert explainer.max_iter == 100 and explainer.lam == 0.003
    # batching the scoring keeps the fit and the scores
    explainer.set_params(block_size=7, test_batch_size=2)
    after = explainer.explain(X_test, top_k=3)
    np.testing.assert_array_equal(after.excitatory.indices, before.excitatory.indices)
    np.testing.assert_allclose(after.excitatory.scores, before.excitatory.scores, rtol=1e-6)
    # the same value again changes nothing; a new λ discards the fit until fit runs again
    explainer.set_params(lam=0.003)
    explainer.explain(X_test, top_k=1)
    explainer.set_params(lam=0.05)
    assert not hasattr(explainer, "alpha_") and explainer.block_size == 7
    with pytest.raises(rp.NotFittedError, match="set_params"):
        explainer.explain(X_test)
    refit = explainer.fit(X, y)
    np.testing.assert_allclose(refit.alpha_, rp.RPSL2(digits_mlp.net, lam=0.05).fit(X, y).alpha_, rtol=1e-10, atol=1e-12)

"""find_label_issues: the cumulative score against a dense brute force, rankings, errors."""

import numpy as np
import pytest

from representer import RPSL2, Features
from representer.debugging import LabelIssues, cumulative_attribution, find_label_issues
from representer.errors import InputError, NotFittedError


def _problem(n=50, d=4, k=3, m=11, seed=0):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    phi = centers[y] + rng.normal(size=(n, d))
    phi_test = centers[rng.integers(0, k, size=m)] + rng.normal(size=(m, d))
    weight = centers / 3
    return phi, y, phi_test, Features(weight, -0.5 * (weight * centers).sum(1) / 3)


@pytest.mark.parametrize("block_size, test_batch_size", [(7, 3), (1000, 1000), (1, 4)])
def test_cumulative_matches_dense_brute_force(block_size, test_batch_size):
    phi, y, phi_test, model = _problem()
    ex = RPSL2(model, dtype="float64", block_size=block_size, test_batch_size=test_batch_size).fit(phi, y)
    dense = np.abs(ex.attribute(phi_test))
    expected = (dense / dense.max(axis=1, keepdims=True)).sum(axis=0)
    np.testing.assert_allclose(cumulative_attribution(ex, phi_test), expected, rtol=1e-12)
    issues = find_label_issues(ex, ranking="cumulative", X_test=phi_test)
    np.testing.assert_array_equal(issues.indices, np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose(issues.scores, expected[issues.indices], rtol=1e-12)


def test_cumulative_uses_the_target_class():
    phi, y, phi_test, model = _problem()
    ex = RPSL2(model, dtype="float64").fit(phi, y)
    target = np.arange(len(phi_test)) % 3
    dense = np.abs(ex.attribute(phi_test, target=target))
    expected = (dense / dense.max(axis=1, keepdims=True)).sum(axis=0)
    np.testing.assert_allclose(cumulative_attribution(ex, phi_test, target=target), expected, rtol=1e-12)


def test_self_influence_ranking_and_top():
    phi, y, _, model = _problem()
    ex = RPSL2(model).fit(phi, y)
    si = ex.self_influence()
    issues = find_label_issues(ex)
    assert isinstance(issues, LabelIssues) and issues.ranking == "self_influence" and len(issues) == len(y)
    np.testing.assert_array_equal(issues.indices, np.argsort(-si, kind="stable"))
    np.testing.assert_array_equal(issues.scores, si[issues.indices])
    np.testing.assert_array_equal(issues.given_labels, y[issues.indices])
    top = find_label_issues(ex, top=5)
    np.testing.assert_array_equal(top.indices, issues.indices[:5])


def test_errors():
    phi, y, phi_test, model = _problem()
    with pytest.raises(NotFittedError):
        find_label_issues(RPSL2(model))
    ex = RPSL2(model).fit(phi, y)
    with pytest.raises(InputError, match="X_test"):
        find_label_issues(ex, ranking="cumulative")
    with pytest.raises(InputError, match="only by"):
        find_label_issues(ex, X_test=phi_test)
    with pytest.raises(InputError, match="ranking"):
        find_label_issues(ex, ranking="loss")
    with pytest.raises(InputError, match="top"):
        find_label_issues(ex, top=0)

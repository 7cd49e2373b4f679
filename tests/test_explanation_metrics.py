"""Explanation-quality metrics on hand-made features with known answers, and retraining faithfulness
of influence on a tight L2 logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from representer import FeatureSimilarity, Features, InfluenceFunction, RandomAttribution
from representer import head as hm
from representer.errors import InputError
from representer.evaluation.explanation_metrics import (
    attribution_columns,
    domain_mismatch,
    domain_mismatch_candidates,
    explanation_individuality,
    identical_class,
    identical_class_score,
    identical_subclass,
    influential_sets,
    knn_overlap,
    knn_overlap_score,
    label_probability,
    lds,
    log_likelihood_measure,
    loo_correlation,
    margin_measure,
    marked_hit_score,
    rowwise_spearman,
    sample_subsets,
    subset_attribution_sums,
)
from representer.solvers.newton import newton_cg

# ----------------------------------------------------------------------------- DualView metrics
# Training features are the unit vectors e1, e2, e3; kNN with the dot product ranks training
# points by the matching coordinate of the test feature, so the top training point is known.
PHI_TRAIN = np.eye(3)
Y_TRAIN = np.array([0, 1, 2])
PHI_TEST = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.2]])  # top points 0, 2, 1


def dot_knn(phi=PHI_TRAIN, y=Y_TRAIN, n_classes=3):
    return FeatureSimilarity(Features(np.eye(n_classes, phi.shape[1])), metric="dot", n_neighbors=1).fit(phi, y)


def test_identical_class_uses_the_true_test_label():
    # top training labels 0, 2, 1 against true labels 0, 1, 1: rows 0 and 2 pass
    assert identical_class(dot_knn(), PHI_TEST, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert identical_class_score(np.array([[0, 5], [2, 5], [1, 5]]), Y_TRAIN, [0, 1, 1]) == pytest.approx(2 / 3)


def test_identical_subclass_compares_original_classes():
    fine_train = np.array([0, 1, 2])
    coarse_train = np.array([0, 0, 1])  # explainer and model see only superclasses
    explainer = dot_knn(y=coarse_train, n_classes=2)
    # top points 0, 2, 1 have original classes 0, 2, 1; the test points are originally 1, 2, 1
    assert identical_subclass(explainer, PHI_TEST, np.array([1, 2, 1]), fine_train) == pytest.approx(2 / 3)


def test_identical_class_rejects_mismatched_rows():
    with pytest.raises(InputError, match="one row per test point"):
        identical_class_score(np.array([0, 1]), Y_TRAIN, [0, 1, 1])


def test_domain_mismatch_candidates_follow_the_paper():
    y_test = np.array([0, 1, 0, 0, 2])
    predicted = np.array([1, 1, 1, 0, 1])
    np.testing.assert_array_equal(domain_mismatch_candidates(y_test, predicted, cls=1), [0, 2, 4])
    assert marked_hit_score(np.array([3, 4, 1]), np.array([0, 1, 0, 1, 0], bool)) == pytest.approx(2 / 3)


def test_domain_mismatch_scores_only_candidates():
    # Head: class = larger coordinate. Marked training points 1 and 3 (class 1).
    phi_train = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [0.1, 3.0], [5.0, 5.0]])
    y_train = np.array([0, 1, 0, 1, 0])
    explainer = FeatureSimilarity(Features(np.eye(2)), metric="cosine", n_neighbors=1).fit(phi_train, y_train)
    phi_test = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 1.1], [3.0, 0.0]])
    y_test = np.array([0, 1, 0, 0])
    # candidates: true class ≠ 1 and predicted 1 → rows 0 and 2; cosine tops: 1 (marked), 4 (not)
    result = domain_mismatch(explainer, phi_test, y_test, marked=[1, 3], cls=1)
    np.testing.assert_array_equal(result.candidates, [0, 2])
    assert result.score == pytest.approx(0.5)
    assert np.isnan(domain_mismatch(explainer, phi_test[[3]], y_test[[3]], marked=[1, 3], cls=1).score)


# ----------------------------------------------------------------------------- RelatIF studies
def test_individuality_on_hand_made_sets():
    top = np.array([[0, 1], [0, 2], [5, 6], [6, 5], [7, 8]])
    groups = np.array([0, 0, 1, 1, 2])  # group 2 has no pair
    assert explanation_individuality(top, groups) == pytest.approx((1 / 3 + 1.0) / 2)


def test_individuality_matches_python_sets():
    rng = np.random.default_rng(0)
    top = np.stack([rng.choice(12, size=4, replace=False) for _ in range(30)])
    groups = rng.integers(0, 3, size=30)
    brute = [
        len(set(top[a]) & set(top[b])) / len(set(top[a]) | set(top[b]))
        for a in range(30) for b in range(a + 1, 30) if groups[a] == groups[b]
    ]
    assert explanation_individuality(top, groups) == pytest.approx(np.mean(brute))


def test_influential_sets_cardinality_and_probability():
    top = np.array([[0, 1], [0, 2], [3, 1]])
    scores = np.array([[2.0, 1.0], [1.0, 0.5], [-1.0, -2.0]])  # row 2 has no positive point
    prob = np.array([0.1, 0.2, 0.3, 0.4])
    one, two = influential_sets(top, prob, scores=scores, ks=(1, 2))
    assert (one.k, one.cardinality, one.mean_probability, one.std_probability) == (1, 1, pytest.approx(0.1), pytest.approx(0.0))
    assert (two.cardinality, two.mean_probability) == (3, pytest.approx(0.2))
    assert influential_sets(top, prob, ks=(1,))[0].cardinality == 2


def test_label_probability_is_softmax_of_own_label():
    weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    phi = np.array([[np.log(2.0), 0.0], [0.0, 0.0]])
    p = label_probability(Features(weight), phi, np.array([0, 2]))
    np.testing.assert_allclose(p, [2 / 4, 1 / 3])


def test_knn_overlap_score_by_hand():
    top = np.array([[1, 2, 3], [4, 5, 6]])
    neighbours = np.array([[1, 9, 2], [7, 8, 6]])
    assert knn_overlap_score(top, neighbours, ks=(1, 3)) == {1: pytest.approx(0.5), 3: pytest.approx((2 / 3 + 1 / 3) / 2)}


def test_knn_overlap_of_l2_neighbours_in_input_space_is_one():
    rng = np.random.default_rng(1)
    X_train, X_test = rng.normal(size=(40, 5)), rng.normal(size=(7, 5))
    explainer = FeatureSimilarity(Features(rng.normal(size=(3, 5))), metric="l2").fit(X_train, rng.integers(0, 3, 40))
    assert knn_overlap(explainer, X_test, X_train, ks=(1, 5, 10, 20)) == {k: pytest.approx(1.0) for k in (1, 5, 10, 20)}


# ----------------------------------------------------------------------------- streaming sums
@pytest.fixture(scope="module")
def influence_on_random_features():
    rng = np.random.default_rng(2)
    phi, y = rng.normal(size=(37, 4)), rng.integers(0, 3, 37)
    model = Features(rng.normal(size=(3, 4)), rng.normal(size=3))
    explainer = InfluenceFunction(model, damping=0.1, block_size=8, test_batch_size=3, dtype="float64").fit(phi, y)
    return explainer, rng.normal(size=(7, 4))


def test_subset_sums_and_columns_match_the_dense_matrix(influence_on_random_features):
    explainer, phi_test = influence_on_random_features
    dense = explainer.attribute(phi_test)
    weights = np.random.default_rng(3).random((5, 37))
    np.testing.assert_allclose(subset_attribution_sums(explainer, phi_test, weights), dense @ weights.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(attribution_columns(explainer, phi_test, [4, 0, 36]), dense[:, [4, 0, 36]], rtol=1e-10)


def test_rowwise_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 9)), rng.normal(size=(3, 9))
    expected = [spearmanr(a[r], b[r])[0] for r in range(3)]
    np.testing.assert_allclose(rowwise_spearman(a, b), expected)
    assert np.isnan(rowwise_spearman(np.ones((1, 4)), b[:1, :4])[0])


def test_sample_subsets_are_seeded_and_sized():
    masks = sample_subsets(11, 6, 0.5, seed=7)
    assert masks.shape == (6, 11) and set(masks.sum(1)) == {5}
    np.testing.assert_array_equal(masks, sample_subsets(11, 6, 0.5, seed=7))
    with pytest.raises(InputError, match="alpha"):
        sample_subsets(11, 6, 1.0, seed=7)


def test_lds_is_one_for_an_exactly_additive_model():
    """If retraining on S changes the measure by exactly Σ_{i∈S} a(t, i), LDS = 1 (and −1 if negated)."""
    rng = np.random.default_rng(5)
    phi_train, phi_test = rng.normal(size=(30, 3)), rng.normal(size=(6, 3))
    explainer = dot_knn(phi_train, rng.integers(0, 3, 30))
    A = phi_test @ phi_train.T

    def retrain(keep, seed):
        return keep

    additive = lds(explainer, phi_test, np.zeros(6, int), retrain, subsets=20, measure=lambda keep: A[:, keep].sum(1))
    assert additive.score == pytest.approx(1.0)
    assert additive.predicted.shape == additive.actual.shape == (6, 20)
    negated = lds(explainer, phi_test, np.zeros(6, int), retrain, subsets=20, measure=lambda keep: -A[:, keep].sum(1))
    assert negated.score == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- faithfulness on logistic regression
LAM = 0.05


def fit_logistic(phi: np.ndarray, y: np.ndarray, weights: np.ndarray, n_classes: int) -> Features:
    """argmin (1/n) Σ_i w_i ℓ_i + (λ/2)‖Θ‖² (n fixed: removing a point zeroes its weight)."""
    x = hm.append_ones(torch.as_tensor(phi, dtype=torch.float64))
    q = hm.one_hot_targets(torch.as_tensor(y), n_classes)
    w = torch.as_tensor(weights, dtype=torch.float64)[:, None]
    n = x.shape[0]

    def fun_grad(theta):
        z = hm.logits(x, theta)
        loss = -(w[:, 0] * (q * torch.log_softmax(z, 1)).sum(1)).sum() / n
        return loss + LAM / 2 * (theta * theta).sum(), (w * (torch.softmax(z, 1) - q)).T @ x / n + LAM * theta

    def hessp_at(theta):
        p = torch.softmax(hm.logits(x, theta), 1)

        def hvp(v):
            zv = x @ v.T
            return (w * p * (zv - (p * zv).sum(1, keepdim=True))).T @ x / n + LAM * v

        return hvp

    result = newton_cg(fun_grad, hessp_at, torch.zeros(n_classes, x.shape[1], dtype=torch.float64), tol=1e-10)
    assert result.converged
    theta = result.x.numpy()
    return Features(theta[:, :-1], theta[:, -1])


@pytest.fixture(scope="module")
def logistic_problem():
    rng = np.random.default_rng(6)
    n, K = 60, 3
    centres = rng.normal(scale=1.5, size=(K, 2))
    y = rng.integers(0, K, n)
    phi = centres[y] + rng.normal(size=(n, 2))
    y_test = rng.integers(0, K, 8)
    phi_test = centres[y_test] + rng.normal(size=(8, 2))

    def retrain(keep, seed):
        weights = np.zeros(n)
        weights[keep] = 1.0
        return fit_logistic(phi, y, weights, K)

    model = retrain(np.arange(n), 0)
    return model, phi, y, phi_test, y_test, retrain


def test_influence_correlates_with_leave_one_out(logistic_problem):
    model, phi, y, phi_test, y_test, retrain = logistic_problem
    explainer = InfluenceFunction(model, damping=LAM, dtype="float64").fit(phi, y)
    result = loo_correlation(explainer, phi_test, y_test, retrain, indices=np.arange(len(y)), measure=log_likelihood_measure(phi_test, y_test))
    assert result.actual.shape == (8, 60)
    assert result.pearson > 0.99 and result.spearman > 0.98
    random = RandomAttribution(model, seed=0).fit(phi, y)
    assert abs(loo_correlation(random, phi_test, y_test, retrain, indices=np.arange(20)).pearson) < 0.3


def test_lds_ranks_influence_above_random(logistic_problem):
    model, phi, y, phi_test, y_test, retrain = logistic_problem
    influence = InfluenceFunction(model, damping=LAM, dtype="float64").fit(phi, y)
    random = RandomAttribution(model, seed=0).fit(phi, y)
    score_if = lds(influence, phi_test, y_test, retrain, subsets=30, seed=1, measure=log_likelihood_measure(phi_test, y_test)).score
    score_rand = lds(random, phi_test, y_test, retrain, subsets=30, seed=1, measure=log_likelihood_measure(phi_test, y_test)).score
    assert score_if > 0.5 and score_if > score_rand + 0.4


def test_margin_measure_by_hand():
    model = Features(np.eye(3))
    z = np.array([[1.0, 2.0, 0.0]])
    expected = 2.0 - np.log(np.exp(1.0) + np.exp(0.0))
    np.testing.assert_allclose(margin_measure(z, [1])(model), [expected])

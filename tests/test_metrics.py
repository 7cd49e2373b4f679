"""Data-debugging metrics on hand-made rankings whose answers are known."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from representer.errors import InputError
from representer.evaluation.metrics import (
    average_precision,
    corruption_mask,
    detection_curve,
    fraction_found_at,
    label_poisoning_auc,
    rank_by_score,
    roc_auc,
)

N, CORRUPT = 20, np.array([3, 7, 11, 19])


def _mask():
    return corruption_mask(CORRUPT, N)


def _perfect_ranking():
    return np.concatenate([CORRUPT, np.setdiff1d(np.arange(N), CORRUPT)])


def test_corruption_mask_and_rank_by_score():
    mask = _mask()
    assert mask.dtype == bool and mask.sum() == 4 and mask[CORRUPT].all()
    # ties keep the lower index first
    np.testing.assert_array_equal(rank_by_score([0.5, 2.0, 0.5, 3.0]), [3, 1, 0, 2])


def test_detection_curve_perfect_and_reversed():
    perfect = detection_curve(_perfect_ranking(), _mask())
    k = np.arange(N + 1)
    np.testing.assert_allclose(perfect.inspected, k / N)
    np.testing.assert_allclose(perfect.found, np.minimum(k / 4, 1.0))
    reversed_ = detection_curve(_perfect_ranking()[::-1], _mask())
    np.testing.assert_allclose(reversed_.found, np.maximum(k - (N - 4), 0) / 4)


def test_detection_curve_at_fractions_hand_computed():
    mask = corruption_mask([2, 5], 10)
    ranking = np.array([5, 0, 2, 1, 3, 4, 6, 7, 8, 9])
    curve = detection_curve(ranking, mask, fractions=[0.0, 0.1, 0.2, 0.3, 1.0])
    np.testing.assert_array_equal(curve.n_inspected, [0, 1, 2, 3, 10])
    np.testing.assert_allclose(curve.found, [0.0, 0.5, 0.5, 1.0, 1.0])
    assert fraction_found_at(ranking, mask, 0.25) == 0.5  # ⌊2.5⌋ = 2 points
    # 0.29 · 100 is 28.999…: still 29 points
    order = np.arange(100)
    assert fraction_found_at(order, corruption_mask([28], 100), 0.29) == 1.0


def test_label_poisoning_auc_perfect_reversed_and_hand_computed():
    n, m = N, len(CORRUPT)
    perfect_scores = np.zeros(N)
    perfect_scores[CORRUPT] = 1.0
    assert label_poisoning_auc(perfect_scores, _mask()) == pytest.approx(1.0, abs=1e-12)
    worst = label_poisoning_auc(-perfect_scores, _mask())
    best, low = ((m + 1) / 2 + n - m) / n, m / (2 * n)
    assert worst == pytest.approx((1 / (2 * n)) / (best - low), abs=1e-12)  # DualView's min is off by 1/(2n)
    assert worst < 0.04
    assert label_poisoning_auc(-perfect_scores, _mask(), exact_min=True) == pytest.approx(0.0, abs=1e-12)
    # n = 4, m = 1, corrupted point ranked second: curve = [0, 1, 1, 1], AUC = 3/4, max = 1, min = 1/8
    assert label_poisoning_auc([0.9, 0.5, 0.1, 0.0], [False, True, False, False]) == pytest.approx((0.75 - 0.125) / 0.875)


def test_label_poisoning_auc_random_is_about_half():
    rng = np.random.default_rng(0)
    n, m = 200, 20
    mask = corruption_mask(rng.choice(n, m, replace=False), n)
    values = [label_poisoning_auc(rng.random(n), mask) for _ in range(400)]
    expected = (n + 1 - m) / (2 * n + 1 - 2 * m)  # E[curve[k]] = (k+1)/n exactly
    assert np.mean(values) == pytest.approx(expected, abs=0.01)


def test_label_poisoning_auc_averaged_over_every_order_is_the_closed_form():
    """Exact, not sampled: over all 5! orders of 5 points with 2 corrupted, the mean AUC is (n+1−m)/(2n+1−2m)."""
    from itertools import permutations

    n, m = 5, 2
    mask = corruption_mask([1, 3], n)
    values = [label_poisoning_auc(-np.array(order, dtype=float), mask) for order in permutations(range(n))]
    assert np.mean(values) == pytest.approx((n + 1 - m) / (2 * n + 1 - 2 * m), abs=1e-12)


def test_roc_auc_and_average_precision():
    mask = np.array([False, True, False, True])
    scores = np.array([0.9, 0.8, 0.1, 0.3])  # order: 0, 1, 3, 2 → hits at ranks 2 and 3
    assert average_precision(scores, mask) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert roc_auc(scores, mask) == pytest.approx(roc_auc_score(mask, scores))
    perfect = _mask().astype(float)
    assert roc_auc(perfect, _mask()) == 1.0 and roc_auc(-perfect, _mask()) == 0.0
    assert average_precision(perfect, _mask()) == 1.0
    rng = np.random.default_rng(1)
    big = corruption_mask(rng.choice(1000, 100, replace=False), 1000)
    assert roc_auc(rng.random(1000), big) == pytest.approx(0.5, abs=0.06)
    assert average_precision(rng.random(1000), big) == pytest.approx(0.1, abs=0.04)


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="corruption_mask"):
        detection_curve(np.arange(N), CORRUPT)  # indices instead of a mask
    with pytest.raises(InputError, match="no training point"):
        detection_curve(np.arange(N), np.zeros(N, bool))
    with pytest.raises(InputError, match="permutation"):
        detection_curve(np.arange(N - 1), _mask())
    with pytest.raises(InputError, match="fractions"):
        detection_curve(np.arange(N), _mask(), fractions=[1.5])
    with pytest.raises(InputError, match="both kinds"):
        roc_auc(np.ones(3), np.ones(3, bool))
    with pytest.raises(InputError, match="one per training point"):
        label_poisoning_auc(np.ones(3), _mask())
    with pytest.raises(InputError, match="indices"):
        corruption_mask([N], N)

"""Retraining protocols: debugging curves of hand-made rankings whose curves are known, and LOO vs closed form."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from representer.errors import InputError
from representer.evaluation.corruption import flip_labels
from representer.evaluation.protocols import (
    DebuggingCurve,
    accuracy,
    data_debugging_curve,
    labels_after_checking,
    leave_one_out_effects,
    order_by_score,
)

N, N_TEST, FLIP = 60, 200, 0.3
FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 1.0)


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, 2)) + 1.5 * np.where(y[:, None] == 1, 1.0, -1.0)
    return X, y


@pytest.fixture(scope="module")
def problem():
    X, y = _blobs(N, 0)
    X_test, y_test = _blobs(N_TEST, 1)
    y_noisy, flipped = flip_labels(y, FLIP, 2, seed=3)
    return X, y, y_noisy, flipped, X_test, y_test


def _retrain(X):
    return lambda labels, seed: LogisticRegression(C=1.0, random_state=seed).fit(X, labels)


def _perfect(n, flipped):
    rest = np.setdiff1d(np.arange(n), flipped)
    return np.concatenate([flipped, rest])


def _worst(n, flipped):
    rest = np.setdiff1d(np.arange(n), flipped)
    return np.concatenate([rest, flipped])


def test_perfect_and_worst_rankings_have_the_known_fraction_found(problem):
    _, y, y_noisy, flipped, _, _ = problem
    n_flip = flipped.size
    k = np.floor(np.array(FRACTIONS) * N + 1e-9).astype(int)
    best = data_debugging_curve(_perfect(N, flipped), y_noisy, y, fractions=FRACTIONS)
    worst = data_debugging_curve(_worst(N, flipped), y_noisy, y, fractions=FRACTIONS)
    np.testing.assert_array_equal(best.n_checked, k)
    np.testing.assert_allclose(best.fraction_found, np.minimum(k, n_flip) / n_flip)
    np.testing.assert_allclose(worst.fraction_found, np.maximum(0, k - (N - n_flip)) / n_flip)
    np.testing.assert_array_equal(best.flipped, flipped)
    assert best.test_accuracy is None


def test_fraction_found_counts_the_flipped_points_among_the_checked(problem):
    _, y, y_noisy, flipped, _, _ = problem
    order = np.random.default_rng(7).permutation(N)
    curve = data_debugging_curve(order, y_noisy, y, fractions=FRACTIONS)
    for f, k, found in zip(FRACTIONS, curve.n_checked, curve.fraction_found):
        assert found == np.isin(order[:k], flipped).sum() / flipped.size, f


def test_retrained_accuracy_of_perfect_and_worst_rankings(problem):
    X, y, y_noisy, flipped, X_test, y_test = problem
    clean_acc = accuracy(_retrain(X)(y, 0), X_test, y_test)
    noisy_acc = accuracy(_retrain(X)(y_noisy, 0), X_test, y_test)
    assert clean_acc > noisy_acc  # the corruption must hurt for this test to mean anything
    best = data_debugging_curve(_perfect(N, flipped), y_noisy, y, _retrain(X), X_test, y_test, fractions=FRACTIONS)
    worst = data_debugging_curve(_worst(N, flipped), y_noisy, y, _retrain(X), X_test, y_test, fractions=FRACTIONS)
    all_found = best.n_checked >= flipped.size
    none_found = worst.n_checked <= N - flipped.size
    np.testing.assert_allclose(best.test_accuracy[all_found], clean_acc)
    np.testing.assert_allclose(worst.test_accuracy[none_found], noisy_acc)
    assert best.test_accuracy[0] == worst.test_accuracy[0] == noisy_acc
    assert best.test_accuracy[-1] == worst.test_accuracy[-1] == clean_acc
    assert np.all(best.test_accuracy >= worst.test_accuracy)


def test_labels_after_checking_restores_only_checked_flipped_points(problem):
    _, y, y_noisy, flipped, _, _ = problem
    order = np.random.default_rng(1).permutation(N)
    fixed = labels_after_checking(order, 25, y_noisy, y)
    checked = order[:25]
    expected = y_noisy.copy()
    expected[np.intersect1d(checked, flipped)] = y[np.intersect1d(checked, flipped)]
    np.testing.assert_array_equal(fixed, expected)
    assert np.array_equal(y_noisy, flip_labels(y, FLIP, 2, seed=3)[0])  # input untouched


def test_multiclass_fix_restores_the_clean_class():
    y = np.arange(30) % 3
    y_noisy, flipped = flip_labels(y, 0.5, 3, seed=0)
    fixed = labels_after_checking(_perfect(30, flipped), flipped.size, y_noisy, y)
    np.testing.assert_array_equal(fixed, y)


def test_retrains_are_seeded_and_identical_across_checkpoints(problem):
    X, y, y_noisy, flipped, X_test, y_test = problem
    calls: list[tuple[int, int]] = []

    def retrain(labels, seed):
        calls.append((int(seed), int((labels != y).sum())))
        return _retrain(X)(labels, seed)

    curve = data_debugging_curve(
        _perfect(N, flipped), y_noisy, y, retrain, X_test, y_test, fractions=(0.1, 0.2), seed=11, n_retrains=2
    )
    remaining = [flipped.size - 6, flipped.size - 12]
    assert calls == [(11, remaining[0]), (12, remaining[0]), (11, remaining[1]), (12, remaining[1])]
    again = data_debugging_curve(_perfect(N, flipped), y_noisy, y, _retrain(X), X_test, y_test, fractions=(0.1, 0.2), seed=11, n_retrains=2)
    np.testing.assert_array_equal(curve.test_accuracy, again.test_accuracy)


def test_rank_fn_is_called_with_the_noisy_labels(problem):
    _, y, y_noisy, flipped, _, _ = problem
    seen = {}

    def rank_fn(labels):
        seen["labels"] = labels
        return order_by_score((labels != y).astype(float), seed=0)  # an oracle score

    curve = data_debugging_curve(rank_fn, y_noisy, y, fractions=(0.3,))
    np.testing.assert_array_equal(seen["labels"], y_noisy)
    assert curve.fraction_found[0] == 1.0  # 18 flips, 18 checked, oracle finds them all
    assert isinstance(curve, DebuggingCurve)


def test_order_by_score_is_descending_with_seeded_ties():
    scores = np.array([0.1, 5.0, 2.0, 2.0, 2.0, -1.0])
    order = order_by_score(scores, seed=0)
    assert order[0] == 1 and order[-2:].tolist() == [0, 5]
    assert sorted(order[1:4].tolist()) == [2, 3, 4]
    np.testing.assert_array_equal(order, order_by_score(scores, seed=0))
    ties = {tuple(order_by_score(np.zeros(8), seed=s)) for s in range(5)}
    assert len(ties) > 1  # ties are not broken by index


def test_accuracy_reads_2d_scores_with_argmax():
    class Scores:
        def predict(self, X):
            return np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])

    assert accuracy(Scores(), None, [1, 0, 0]) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ranking": np.arange(N - 1)}, "permutation"),
        ({"ranking": np.zeros(N, dtype=int)}, "permutation"),
        ({"ranking": np.arange(N, dtype=float)}, "permutation"),
        ({"fractions": (0.2, 0.1)}, "increasing"),
        ({"fractions": (0.5, 1.5)}, "increasing"),
        ({"X_test": np.zeros((2, 2))}, "retrain_fn"),
        ({"retrain_fn": lambda labels, seed: None}, "X_test"),
        ({"n_retrains": 0}, "n_retrains"),
    ],
)
def test_bad_input_is_named(problem, kwargs, match):
    X, y, y_noisy, _, _, _ = problem
    args = {"ranking": np.arange(N), "y_noisy": y_noisy, "y_clean": y, "retrain_fn": _retrain(X) if "n_retrains" in kwargs else None}
    if "n_retrains" in kwargs:
        args.update(X_test=X, y_test=y)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        data_debugging_curve(**args)


def test_no_corruption_is_refused():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(InputError, match="nothing to find"):
        data_debugging_curve(np.arange(4), y, y)


def test_leave_one_out_matches_the_ridge_closed_form():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(15, 3)), rng.normal(size=15)
    X_test = rng.normal(size=(4, 3))
    lam = 0.7

    def retrain(keep, seed):
        return Ridge(alpha=lam, fit_intercept=False).fit(X[keep], y[keep])

    effects = leave_one_out_effects(retrain, 15, lambda m: m.predict(X_test), indices=[0, 4, 9])
    a_inv = np.linalg.inv(X.T @ X + lam * np.eye(3))
    w = a_inv @ X.T @ y
    for row, i in zip(effects, [0, 4, 9]):
        leverage = X[i] @ a_inv @ X[i]
        w_minus_i = w - a_inv @ X[i] * (y[i] - X[i] @ w) / (1 - leverage)  # Sherman–Morrison
        np.testing.assert_allclose(row, X_test @ (w_minus_i - w), atol=1e-10)


def test_leave_one_out_passes_the_kept_rows_and_seed():
    seen = []
    leave_one_out_effects(lambda keep, seed: seen.append((keep.tolist(), seed)) or 0.0, 3, lambda m: [1.0], seed=5)
    assert seen == [([0, 1, 2], 5), ([1, 2], 5), ([0, 2], 5), ([0, 1], 5)]
    with pytest.raises(InputError, match="indices"):
        leave_one_out_effects(lambda keep, seed: 0.0, 3, lambda m: [1.0], indices=[3])

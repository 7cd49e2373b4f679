"""Model-agnostic retraining protocols: data-debugging curves and leave-one-out effects.

**Data debugging** (RPS §4.3, RPS-LJE §5.3; spec §2.5, §3.9). Some training labels were corrupted
(``y_noisy`` differs from ``y_clean`` at the flipped points ``F``). A method ranks the training
points, most suspicious first. A simulated user checks them in that order and, after each fraction
``f`` of the ``n`` points, every flipped point checked so far gets its clean label back. At each
checkpoint with ``k = ⌊f · n⌋`` points checked (as :func:`~representer.evaluation.metrics.detection_curve`) the protocol records

    fraction_found(f) = |order[:k] ∩ F| / |F|

and, when a ``retrain_fn`` is given, the test accuracy of a model retrained from scratch on the
partly fixed labels ``y_fixed = y_noisy`` with ``y_fixed[order[:k] ∩ F] = y_clean``. The ranking
is computed once, on the corrupted model, as in the papers. Retraining is seeded: every checkpoint
of one curve calls ``retrain_fn(labels, seed)`` with the same seeds, so two checkpoints differ only
by their labels (the reference XGBoost code retrained with a fixed seed too).

**Leave-one-out** (the ground truth of influence functions). ``leave_one_out_effects`` retrains
without each training point ``i`` in turn and returns ``measure(model_{−i}) − measure(model)``,
for any model and any vector-valued measure (test losses, logits, …).

Nothing here knows about a model family: a retrain callback returns a fitted model, and test
accuracy is ``mean(predict(model, X_test) == y_test)`` with ``predict(model, X) = model.predict(X)``
by default (a ``ClassifierAdapter`` and every scikit-learn, XGBoost or LightGBM classifier have it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import as_labels
from ..errors import InputError
from .metrics import detection_curve

DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40)

RetrainFn = Callable[[np.ndarray, int], Any]
RankFn = Callable[[np.ndarray], np.ndarray]
PredictFn = Callable[[Any, Any], np.ndarray]


@dataclass(frozen=True)
class DebuggingCurve:
    """One data-debugging curve.

    Attributes:
        fractions: ``(C,)`` fractions of the training set checked at each checkpoint.
        n_checked: ``(C,)`` number of points checked, ``⌊fraction · n⌋``.
        fraction_found: ``(C,)`` share of the flipped labels among the checked points.
        test_accuracy: ``(C,)`` test accuracy after retraining on the fixed labels (mean over the
            ``n_retrains`` seeds), or ``None`` when no ``retrain_fn`` was given.
        order: ``(n,)`` the ranking that was walked, most suspicious first.
        flipped: ``(|F|,)`` sorted indices of the corrupted labels.
    """

    fractions: np.ndarray
    n_checked: np.ndarray
    fraction_found: np.ndarray
    test_accuracy: np.ndarray | None
    order: np.ndarray
    flipped: np.ndarray


def order_by_score(scores: Any, *, seed: int = 0) -> np.ndarray:
    """Indices sorted by ``scores`` descending (most suspicious first); ties in a seeded random order.

    Ties matter for scores with plateaus (counts, clipped values): :func:`~representer.evaluation.metrics.rank_by_score`
    breaks them by index, which leaks the data's order into a curve averaged over repeats.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"`scores` must be a non-empty 1-d array, one score per training point; got shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise InputError("`scores` contains NaN or infinite values; a ranking needs finite scores.")
    tie_break = np.random.default_rng(seed).permutation(values.size)
    return np.lexsort((tie_break, -values))


def labels_after_checking(order: Any, n_checked: int, y_noisy: Any, y_clean: Any) -> np.ndarray:
    """``y_noisy`` with the labels of the first ``n_checked`` points of ``order`` restored from ``y_clean``.

    Checking a point whose label was not corrupted changes nothing, so this is exactly "fix the
    checked flipped labels".
    """
    noisy = as_labels(y_noisy, "y_noisy")
    clean = as_labels(y_clean, "y_clean", n=noisy.size)
    checked = _check_order(order, noisy.size)[: int(n_checked)]
    fixed = noisy.copy()
    fixed[checked] = clean[checked]
    return fixed


def data_debugging_curve(
    ranking: np.ndarray | RankFn,
    y_noisy: Any,
    y_clean: Any,
    retrain_fn: RetrainFn | None = None,
    X_test: Any = None,
    y_test: Any = None,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    n_retrains: int = 1,
    predict: PredictFn | None = None,
) -> DebuggingCurve:
    """Walk a ranking of the training set, fix the flipped labels found, and retrain (see module docstring).

    Args:
        ranking: the order in which a user checks the training points (a permutation of
            ``range(n)``, most suspicious first), or a callable ``rank_fn(y_noisy) -> order``
            (use :func:`order_by_score` to turn self-influence scores into an order).
        y_noisy: ``(n,)`` the corrupted training labels the ranked model was trained on.
        y_clean: ``(n,)`` the true labels; the flipped points are those where the two differ.
        retrain_fn: ``retrain_fn(labels, seed) -> fitted model``, trained from scratch on the
            training inputs with ``labels``. Optional: without it only ``fraction_found`` is computed.
        X_test, y_test: the test set the retrained models are scored on (needed with ``retrain_fn``).
        fractions: fractions of ``n`` checked at each checkpoint, in ``[0, 1]``, increasing
            (``0`` records the corrupted model itself).
        seed: retrain seed; retrain ``j`` of every checkpoint uses ``seed + j``.
        n_retrains: retrains per checkpoint, their accuracies averaged (``≥ 1``).
        predict: ``predict(model, X) -> labels``; default ``model.predict(X)``. A 2-d output is
            read as class scores and reduced by ``argmax``.

    Returns:
        A :class:`DebuggingCurve`.
    """
    noisy = as_labels(y_noisy, "y_noisy")
    clean = as_labels(y_clean, "y_clean", n=noisy.size)
    flipped = np.flatnonzero(noisy != clean)
    if flipped.size == 0:
        raise InputError("`y_noisy` equals `y_clean`: no label is corrupted, so there is nothing to find.")
    order = _check_order(ranking(noisy.copy()) if callable(ranking) else ranking, noisy.size)
    checkpoints = _check_fractions(fractions)
    detection = detection_curve(order, noisy != clean, checkpoints)

    retrained = None
    if retrain_fn is not None:
        retrained = _retrained_accuracies(
            order, detection.n_inspected, noisy, clean, retrain_fn, X_test, y_test, int(seed), _check_retrains(n_retrains), predict
        )
    elif X_test is not None or y_test is not None:
        raise InputError("`X_test`/`y_test` were given without `retrain_fn`; pass retrain_fn(labels, seed) -> model.")
    return DebuggingCurve(checkpoints, detection.n_inspected, detection.found, retrained, order, flipped)


def accuracy(model: Any, X: Any, y: Any, predict: PredictFn | None = None) -> float:
    """``mean(predict(model, X) == y)``; ``predict`` defaults to ``model.predict`` (2-d output → argmax)."""
    labels = as_labels(y, "y_test")
    pred = np.asarray(model.predict(X) if predict is None else predict(model, X))
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    if pred.shape != labels.shape:
        raise InputError(f"the model predicted {pred.shape} labels for `X_test` but `y_test` has shape {labels.shape}.")
    return float(np.mean(pred == labels))


def leave_one_out_effects(
    retrain_fn: Callable[[np.ndarray, int], Any],
    n_train: int,
    measure: Callable[[Any], Any],
    *,
    indices: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Exact leave-one-out effects by retraining: ``measure(model_{−i}) − measure(model_full)``.

    Args:
        retrain_fn: ``retrain_fn(keep, seed) -> fitted model`` trained on the training rows ``keep``
            (sorted int indices). The full model gets ``keep = arange(n_train)``.
        n_train: number of training points ``n``.
        measure: ``measure(model) -> (m,)`` the quantity whose change is wanted (test losses, logits…).
        indices: which points to leave out (default: all ``n``).
        seed: the same seed is passed to every retrain, so the differences are due to the removed
            point only.

    Returns:
        ``(len(indices), m)`` array; row ``j`` is the effect of removing ``indices[j]``.
    """
    n = int(n_train)
    if n < 2:
        raise InputError(f"`n_train` must be at least 2 to leave one point out; got {n_train!r}.")
    rows = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if rows.size == 0 or rows.min() < 0 or rows.max() >= n:
        raise InputError(f"`indices` must be a non-empty list of training indices in [0, {n - 1}].")
    everyone = np.arange(n)
    base = np.atleast_1d(np.asarray(measure(retrain_fn(everyone, int(seed))), dtype=np.float64))
    effects = np.empty((rows.size, base.size), dtype=np.float64)
    for j, i in enumerate(rows):
        keep = np.delete(everyone, i)
        effects[j] = np.asarray(measure(retrain_fn(keep, int(seed))), dtype=np.float64).reshape(-1) - base
    return effects


def _retrained_accuracies(
    order: np.ndarray,
    n_checked: np.ndarray,
    noisy: np.ndarray,
    clean: np.ndarray,
    retrain_fn: RetrainFn,
    X_test: Any,
    y_test: Any,
    seed: int,
    n_retrains: int,
    predict: PredictFn | None,
) -> np.ndarray:
    if X_test is None or y_test is None:
        raise InputError("`retrain_fn` needs the test set: pass `X_test` and `y_test` to score the retrained models.")
    out = np.empty(n_checked.size, dtype=np.float64)
    for c, k in enumerate(n_checked):
        labels = labels_after_checking(order, k, noisy, clean)
        out[c] = np.mean([accuracy(retrain_fn(labels.copy(), seed + j), X_test, y_test, predict) for j in range(n_retrains)])
    return out


def _check_order(order: Any, n: int) -> np.ndarray:
    arr = np.asarray(order)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.size != n or not np.array_equal(np.sort(arr), np.arange(n)):
        raise InputError(
            f"`ranking` must be a permutation of range({n}) (training indices, most suspicious first); got "
            f"{arr.dtype} array of shape {arr.shape}. Turn scores into an order with order_by_score(scores)."
        )
    return arr.astype(np.int64)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1 or np.any(np.diff(values) <= 0):
        raise InputError(f"`fractions` must be increasing numbers in [0, 1], e.g. (0.05, 0.10, …); got {list(fractions)!r}.")
    return values


def _check_retrains(n_retrains: int) -> int:
    if isinstance(n_retrains, bool) or int(n_retrains) != n_retrains or n_retrains < 1:
        raise InputError(f"`n_retrains` must be a positive integer; got {n_retrains!r}.")
    return int(n_retrains)

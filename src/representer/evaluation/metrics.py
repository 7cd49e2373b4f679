"""Metrics of the papers' evaluation protocols.

Data debugging (finding corrupted training labels)
--------------------------------------------------
A *ranking* is a permutation of the training indices, most suspicious first; ``is_corrupted`` is a
boolean mask over the training set (build it from the indices a corruption returned with
:func:`corruption_mask`). A simulated user inspects the training points in ranked order:

* :func:`detection_curve` — fraction of the corrupted points found after inspecting each fraction
  of the training set (RPS, RPS-LJE figures). A random order finds, in expectation, the fraction
  inspected: the diagonal.
* :func:`fraction_found_at` — one point of that curve.
* :func:`label_poisoning_auc` — DualView's normalised area under the curve (1 = all corrupted
  points first, about 0.5 = random).
* :func:`roc_auc`, :func:`average_precision` — the usual detection scores, from scikit-learn.

Scores are ranked descending; ties keep the lower training index first (a stable sort), so every
metric is deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from .._validation import as_float_array
from ..rankings import DetectionCurve
from ..errors import InputError


def corruption_mask(indices: Any, n: int) -> np.ndarray:
    """Boolean mask of length ``n`` that is ``True`` at ``indices`` (e.g. those :func:`flip_labels` returned)."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise InputError(f"`indices` must be a 1-d array of integer training indices; got shape {idx.shape}, dtype {idx.dtype}.")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InputError(f"`indices` must lie in [0, {n - 1}] for a training set of {n} points; got [{idx.min()}, {idx.max()}].")
    mask = np.zeros(int(n), dtype=bool)
    mask[idx] = True
    return mask


def rank_by_score(scores: Any) -> np.ndarray:
    """Training indices sorted by decreasing score (ties: lower index first)."""
    values = as_float_array(scores, "scores", ndim=1)
    return np.argsort(-values, kind="stable")


def _as_mask(is_corrupted: Any) -> np.ndarray:
    mask = np.asarray(is_corrupted)
    if mask.ndim != 1 or mask.size == 0:
        raise InputError(f"`is_corrupted` must be a non-empty 1-d boolean mask over the training set; got shape {mask.shape}.")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iu" or not np.isin(mask, (0, 1)).all():
            raise InputError(
                "`is_corrupted` must be a boolean mask (one entry per training point); to pass corrupted indices "
                "use `corruption_mask(indices, n)`."
            )
        mask = mask.astype(bool)
    if not mask.any():
        raise InputError("`is_corrupted` marks no training point as corrupted; the detection metrics are undefined.")
    return mask


def _as_ranking(ranking: Any, n: int) -> np.ndarray:
    order = np.asarray(ranking)
    if order.ndim != 1 or order.dtype.kind not in "iu":
        raise InputError(f"`ranking` must be a 1-d array of integer training indices; got shape {order.shape}, dtype {order.dtype}.")
    if order.size != n or not np.array_equal(np.sort(order), np.arange(n)):
        raise InputError(
            f"`ranking` must be a permutation of all {n} training indices (most suspicious first); got {order.size} "
            "entries. Rank every training point, e.g. `rank_by_score(scores)`."
        )
    return order


def _as_fractions(fractions: Any) -> np.ndarray:
    values = as_float_array(fractions, "fractions", ndim=1)
    if values.min() < 0 or values.max() > 1:
        raise InputError(f"`fractions` must lie in [0, 1]; got [{values.min()}, {values.max()}].")
    return values


def _n_inspected(fractions: np.ndarray, n: int) -> np.ndarray:
    """``⌊f · n⌋`` points, with a tolerance so that 0.29 · 100 counts 29 points, not 28."""
    return np.floor(fractions * n + 1e-9).astype(np.int64)


def detection_curve(ranking: Any, is_corrupted: Any, fractions: Any = None) -> DetectionCurve:
    """Fraction of corrupted points among the first ``⌊f·n⌋`` of ``ranking``, for each fraction ``f``.

    ``found(f) = |{corrupted} ∩ ranking[:⌊f·n⌋]| / |{corrupted}|``. With ``fractions=None`` the curve
    has every step ``k = 0, 1, …, n`` (``inspected = k / n``).
    """
    mask = _as_mask(is_corrupted)
    n = mask.size
    order = _as_ranking(ranking, n)
    if fractions is None:
        counts = np.arange(n + 1)
        inspected = counts / n
    else:
        inspected = _as_fractions(fractions)
        counts = _n_inspected(inspected, n)
    found_after = np.concatenate([[0], np.cumsum(mask[order])])
    return DetectionCurve(inspected=inspected, found=found_after[counts] / mask.sum(), n_inspected=counts)


def fraction_found_at(ranking: Any, is_corrupted: Any, fraction: float) -> float:
    """Fraction of the corrupted points among the first ``⌊fraction·n⌋`` points of ``ranking``."""
    return float(detection_curve(ranking, is_corrupted, [fraction]).found[0])


def _scores_and_mask(scores: Any, is_corrupted: Any, *, need_clean: bool = True) -> tuple[np.ndarray, np.ndarray]:
    mask = _as_mask(is_corrupted)
    values = as_float_array(scores, "scores", ndim=1)
    if values.size != mask.size:
        raise InputError(f"`scores` has {values.size} entries but `is_corrupted` has {mask.size}; pass one per training point.")
    if need_clean and mask.all():
        raise InputError("`is_corrupted` marks every training point as corrupted; ROC AUC and AP need both kinds.")
    return values, mask


def label_poisoning_auc(scores: Any, is_corrupted: Any, *, exact_min: bool = False) -> float:
    """DualView's label-poisoning score: the normalised area under the detection curve.

    Sort ``scores`` descending; with ``m`` corrupted among ``n`` points,
    ``curve[k] = (# corrupted among the first k+1) / m`` for ``k = 0 … n−1`` and
    ``AUC = Σ_k curve[k] / n``. The DualView code normalises with

        max = ((m+1)/2 + n − m) / n     (all corrupted points first),
        min = m / (2n),
        score = (AUC − min) / (max − min),

    so a perfect ranking scores 1 and a random one about 0.5. The exact worst case (all corrupted
    points last) is ``AUC = (m+1)/(2n)``, so with the code's ``min`` the worst ranking scores
    ``(1/(2n)) / (max − min)``, slightly above 0. ``exact_min=True`` uses ``(m+1)/(2n)`` instead,
    which maps the worst ranking to exactly 0.
    """
    values, mask = _scores_and_mask(scores, is_corrupted, need_clean=False)
    n, m = mask.size, int(mask.sum())
    curve = np.cumsum(mask[rank_by_score(values)]) / m
    auc = curve.sum() / n
    best = ((m + 1) / 2 + n - m) / n
    worst = (m + 1) / (2 * n) if exact_min else m / (2 * n)
    return float((auc - worst) / (best - worst))


def roc_auc(scores: Any, is_corrupted: Any) -> float:
    """Area under the ROC curve of ``scores`` as a detector of corrupted points (0.5 = random)."""
    from sklearn.metrics import roc_auc_score  # imported here: `import representer` stays light

    values, mask = _scores_and_mask(scores, is_corrupted)
    return float(roc_auc_score(mask, values))


def average_precision(scores: Any, is_corrupted: Any) -> float:
    """Average precision of ``scores`` as a detector of corrupted points (random ≈ fraction corrupted)."""
    from sklearn.metrics import average_precision_score

    values, mask = _scores_and_mask(scores, is_corrupted)
    return float(average_precision_score(mask, values))

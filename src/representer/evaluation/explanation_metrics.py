"""Quality metrics of sample-based explanations (DualView Table 2, RelatIF §4, faithfulness).

Every metric reads explanations through the explainer's streaming interface and never holds the
``m × n`` test × train attribution matrix: metrics that need only the top of each row use
:meth:`~representer.Explainer.explain` (top-k), the others accumulate over
:meth:`~representer.Explainer.attribution_blocks` into ``m × (columns or subsets)`` arrays. Each
explainer-level metric has a pure counterpart on arrays (``*_score``), which is what it computes.

Sign convention (:mod:`representer.explanation`): positive = helpful. "The top training point" of
test point ``t`` is ``argmax_i a(t, i)``, the signed maximum, as in the DualView code.

DualView's Table 2 (spec §4.4)
------------------------------
* **Identical class**: pass if ``y_train[argmax_i a(t, i)] == y_test[t]``, the *true* test label as
  in the reference code (the paper says "the decision being explained"; the two agree on correctly
  classified points). Random ≈ 1/K.
* **Identical subclass**: model and explainer are trained on superclass labels (e.g. pairs of
  classes); pass if the top training point has the test point's *original* class.
* **Domain mismatch**: training points of class ``cls`` were marked; every test image is marked.
  Candidate test points (paper definition) are those whose true class is not ``cls`` and that the
  model assigns to ``cls``; pass if the top training point is marked. (The paper's definition; the
  reference code's ``explain_marked.py`` explains only these candidates, so its metric scores them
  too.) Random ≈ fraction marked.

RelatIF §4 (spec §5.6)
----------------------
* **Influential sets**: the union over test points of each point's top-1 (top-5) positively
  influential training points; its cardinality, and the mean ± std of the model's probability of
  each member's own label ``p(y_i | x_i)``.
* **kNN overlap**: ``|top-k(t) ∩ NN-k(t)| / k`` averaged over test points, with ``NN-k`` the k
  nearest training points in input space (Euclidean).
* **Explanation individuality**: mean Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of the top-k sets of
  every unordered pair of test points in the same class (spec §2.7: RPS-L2 explanations are
  class-level, so its pairs overlap far more than a method that explains each point individually).

Faithfulness against retraining (convex models)
-----------------------------------------------
A ``retrain_fn(keep, seed)`` returns a model trained on the training rows ``keep``; a ``measure``
maps a model to one number per test point that helpful training points *raise* (default
:func:`margin_measure`: the true-class logit minus the log-sum-exp of the others, as in TRAK).

* **Leave-one-out correlation**: the effect of training point ``i`` on test point ``t`` is
  ``measure(θ) − measure(θ_{−i})`` (how much including ``i`` raises the measure); reported are the
  Pearson and Spearman correlations with ``a(t, i)`` over all pairs, and the mean per-test Spearman.
* **Linear datamodeling score** (Park et al. 2023): draw ``S`` random subsets of ``⌊α n⌋``
  training points (seeded), retrain on each, and for every test point take the Spearman correlation
  across subsets between the predicted ``Σ_{i∈S} a(t, i)`` and ``measure(θ_S)[t]``; LDS is its mean
  over test points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.stats import rankdata

from .._validation import as_float_array, as_labels
from ..errors import InputError
from ..methods.base import Explainer
from .protocols import leave_one_out_effects

RetrainFn = Callable[[np.ndarray, int], Any]
Measure = Callable[[Any], Any]

KNN_KS: tuple[int, ...] = (1, 5, 10, 20)


# ----------------------------------------------------------------------------- top-1 metrics
def top_training_points(explainer: Explainer, X_test: Any, *, k: int = 1, target: Any = "predicted", y: Any = None) -> np.ndarray:
    """``(m, k)`` training indices of the ``k`` largest (signed) attributions per test point."""
    return explainer.explain(X_test, top_k=k, target=target, y=y).excitatory.indices


def _top1(top: Any, n_rows: int | None = None) -> np.ndarray:
    arr = np.asarray(top)
    arr = arr[:, 0] if arr.ndim == 2 else arr
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InputError(f"`top` must hold integer training indices, shape (m,) or (m, k); got {np.asarray(top).shape}.")
    if n_rows is not None and arr.size != n_rows:
        raise InputError(f"`top` has {arr.size} rows but the test labels have {n_rows}; pass one row per test point.")
    return arr


def identical_class_score(top: Any, y_train: Any, y_test: Any) -> float:
    """Fraction of test points whose top training point has the test point's (true) label."""
    labels_test = as_labels(y_test, "y_test")
    first = _top1(top, labels_test.size)
    labels_train = as_labels(y_train, "y_train")
    return float(np.mean(labels_train[first] == labels_test))


def identical_class(explainer: Explainer, X_test: Any, y_test: Any, *, target: Any = "predicted") -> float:
    """DualView's identical-class metric against the labels the explainer was fitted with."""
    return identical_class_score(top_training_points(explainer, X_test, target=target), explainer.y_, y_test)


def identical_subclass(
    explainer: Explainer, X_test: Any, y_test_original: Any, y_train_original: Any, *, target: Any = "predicted"
) -> float:
    """DualView's identical-subclass metric.

    ``explainer`` (and its model) were fitted on superclass labels; ``y_*_original`` are the
    original classes. Pass if the top training point's original class is the test point's.
    """
    top = top_training_points(explainer, X_test, target=target)
    return identical_class_score(top, y_train_original, y_test_original)


def domain_mismatch_candidates(y_test: Any, predicted: Any, cls: int) -> np.ndarray:
    """Test indices whose true class is not ``cls`` and that the model assigns to ``cls``."""
    labels = as_labels(y_test, "y_test")
    pred = as_labels(predicted, "predicted", n=labels.size)
    return np.flatnonzero((labels != cls) & (pred == cls))


@dataclass(frozen=True)
class DomainMismatch:
    """Domain-mismatch result: ``score`` (``nan`` when there is no candidate) over ``candidates``."""

    score: float
    candidates: np.ndarray


def marked_hit_score(top: Any, is_marked: Any) -> float:
    """Fraction of rows of ``top`` whose top training point is marked (``nan`` for no rows)."""
    first = _top1(top)
    mask = np.asarray(is_marked, dtype=bool)
    return float(np.mean(mask[first])) if first.size else float("nan")


def domain_mismatch(explainer: Explainer, X_test_marked: Any, y_test: Any, marked: Any, *, cls: int) -> DomainMismatch:
    """DualView's domain-mismatch metric on the paper's candidates (see the module docstring).

    ``X_test_marked`` are the marked test inputs, ``marked`` the indices of the marked training
    points, ``cls`` the class whose training points were marked. The explained class is the
    prediction, which is ``cls`` for every candidate.
    """
    predicted = explainer.model_.predict(X_test_marked)
    candidates = domain_mismatch_candidates(y_test, predicted, cls)
    mask = np.zeros(explainer.n_train_, dtype=bool)
    mask[np.asarray(marked, dtype=np.int64)] = True
    if candidates.size == 0:
        return DomainMismatch(float("nan"), candidates)
    top = top_training_points(explainer, _take_rows(X_test_marked, candidates))
    return DomainMismatch(marked_hit_score(top, mask), candidates)


def _take_rows(X: Any, rows: np.ndarray) -> Any:
    if isinstance(X, dict):
        return {key: np.asarray(v)[rows] for key, v in X.items()}
    return np.asarray(X)[rows]


# ----------------------------------------------------------------------------- RelatIF studies
def explanation_individuality(top: Any, groups: Any) -> float:
    """Mean top-k Jaccard similarity over all unordered pairs of test points in the same group.

    ``top`` is ``(m, k)`` training indices; ``groups`` ``(m,)`` (e.g. the test labels). Computed per
    group with a sparse indicator matrix, so memory is ``O(largest group²)``. Lower = more
    individual explanations; 1 = every point of a class gets the same set.
    """
    sets = np.asarray(top)
    if sets.ndim != 2 or sets.dtype.kind not in "iu":
        raise InputError(f"`top` must be an (m, k) array of training indices; got shape {sets.shape}.")
    labels = as_labels(groups, "groups", n=sets.shape[0])
    total, n_pairs = 0.0, 0
    width = int(sets.max()) + 1
    for g in np.unique(labels):
        rows = sets[labels == g]
        if rows.shape[0] < 2:
            continue
        indicator = csr_matrix((np.ones(rows.size), (np.repeat(np.arange(rows.shape[0]), rows.shape[1]), rows.ravel())), shape=(rows.shape[0], width))
        indicator.sum_duplicates()
        indicator.data[:] = 1.0
        inter = (indicator @ indicator.T).toarray()
        sizes = np.diag(inter)
        union = sizes[:, None] + sizes[None, :] - inter
        upper = np.triu_indices(rows.shape[0], k=1)
        total += float(np.sum(inter[upper] / union[upper]))
        n_pairs += upper[0].size
    if n_pairs == 0:
        raise InputError("`groups` has no group with two or more test points; individuality needs pairs.")
    return total / n_pairs


def label_probability(model: Any, X_train: Any, y_train: Any) -> np.ndarray:
    """``p(y_i | x_i)`` of each training point's own label under ``model`` (a classifier adapter)."""
    from .. import head as hm

    logits = torch.as_tensor(model.logits(X_train), dtype=torch.float64)
    probs = hm.probabilities(logits).numpy()
    if probs.shape[1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    labels = as_labels(y_train, "y_train", n=probs.shape[0], n_classes=probs.shape[1])
    return probs[np.arange(labels.size), labels]


@dataclass(frozen=True)
class InfluentialSet:
    """Union of the top-``k`` positively influential training points over all test points."""

    k: int
    cardinality: int
    mean_probability: float
    std_probability: float


def influential_sets(top: Any, probability: Any, *, scores: Any = None, ks: Sequence[int] = (1, 5)) -> list[InfluentialSet]:
    """RelatIF Table 1: cardinality and ``p(y_i|x_i)`` (mean ± std) of the union of top-``k`` sets.

    ``top`` ``(m, K)`` training indices sorted by decreasing attribution, ``probability`` ``(n,)``
    from :func:`label_probability`. With ``scores`` (the matching attributions), only *positive*
    entries enter a set.
    """
    sets = np.asarray(top)
    prob = as_float_array(probability, "probability", ndim=1)
    positive = np.ones(sets.shape, dtype=bool) if scores is None else np.asarray(scores) > 0
    out = []
    for k in ks:
        if not 1 <= int(k) <= sets.shape[1]:
            raise InputError(f"`ks` entries must lie in [1, {sets.shape[1]}] (the columns of `top`); got {k}.")
        members = np.unique(sets[:, :k][positive[:, :k]])
        values = prob[members]
        out.append(
            InfluentialSet(
                int(k), int(members.size), float(values.mean()) if values.size else float("nan"), float(values.std()) if values.size else float("nan")
            )
        )
    return out


def knn_overlap_score(top: Any, neighbours: Any, ks: Sequence[int] = KNN_KS) -> dict[int, float]:
    """Mean over rows of ``|top[:, :k] ∩ neighbours[:, :k]| / k`` for each ``k``."""
    a, b = np.asarray(top), np.asarray(neighbours)
    if a.shape[0] != b.shape[0]:
        raise InputError(f"`top` has {a.shape[0]} rows but `neighbours` has {b.shape[0]}.")
    result = {}
    for k in ks:
        if not 1 <= int(k) <= min(a.shape[1], b.shape[1]):
            raise InputError(f"k={k} exceeds the columns of `top` ({a.shape[1]}) or `neighbours` ({b.shape[1]}).")
        hits = [np.intersect1d(a[t, :k], b[t, :k]).size for t in range(a.shape[0])]
        result[int(k)] = float(np.mean(hits) / k)
    return result


def knn_overlap(explainer: Explainer, X_test: Any, X_train: Any, *, ks: Sequence[int] = KNN_KS, target: Any = "predicted") -> dict[int, float]:
    """Overlap of the explainer's top-k with the k nearest training inputs (Euclidean, flattened)."""
    from sklearn.neighbors import NearestNeighbors

    k_max = max(int(k) for k in ks)
    train = np.asarray(X_train, dtype=np.float64).reshape(len(X_train), -1)
    test = np.asarray(X_test, dtype=np.float64).reshape(len(X_test), -1)
    neighbours = NearestNeighbors(n_neighbors=k_max).fit(train).kneighbors(test, return_distance=False)
    return knn_overlap_score(top_training_points(explainer, X_test, k=k_max, target=target), neighbours, ks)


# ----------------------------------------------------------------------------- faithfulness
def margin_measure(X_test: Any, y_test: Any) -> Measure:
    """A measure: ``z_y(x_t) − logsumexp_{c≠y} z_c(x_t)`` per test point (binary: ``±z``)."""
    labels = as_labels(y_test, "y_test")

    def measure(model: Any) -> np.ndarray:
        z = np.asarray(model.logits(X_test), dtype=np.float64)
        if z.shape[1] == 1:
            return np.where(labels == 1, z[:, 0], -z[:, 0])
        rows = np.arange(labels.size)
        others = z.copy()
        others[rows, labels] = -np.inf
        return z[rows, labels] - np.logaddexp.reduce(others, axis=1)

    return measure


def log_likelihood_measure(X_test: Any, y_test: Any) -> Measure:
    """A measure: ``log p(y_t | x_t)`` per test point (minus the test cross-entropy)."""
    from .. import head as hm

    labels = as_labels(y_test, "y_test")

    def measure(model: Any) -> np.ndarray:
        probs = hm.probabilities(torch.as_tensor(model.logits(X_test), dtype=torch.float64)).numpy()
        if probs.shape[1] == 1:
            probs = np.concatenate([1.0 - probs, probs], axis=1)
        return np.log(probs[np.arange(labels.size), labels])

    return measure


def attribution_columns(explainer: Explainer, X_test: Any, columns: Any, *, target: Any = "predicted", y: Any = None) -> np.ndarray:
    """``(m, len(columns))`` attributions ``a(t, i)`` for the training indices ``columns`` (streamed)."""
    cols = np.asarray(columns, dtype=np.int64).reshape(-1)
    selector = np.zeros((explainer.n_train_, cols.size))
    selector[cols, np.arange(cols.size)] = 1.0
    return subset_attribution_sums(explainer, X_test, selector.T, target=target, y=y)


def subset_attribution_sums(explainer: Explainer, X_test: Any, weights: Any, *, target: Any = "predicted", y: Any = None) -> np.ndarray:
    """``(m, S)`` array ``Σ_i weights[s, i] · a(t, i)``, accumulated over attribution blocks.

    ``weights`` is ``(S, n)`` (e.g. subset indicator rows). Memory ``O(m·S)`` plus one block.
    """
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if w.ndim != 2 or w.shape[1] != explainer.n_train_:
        raise InputError(f"`weights` must be (S, n_train={explainer.n_train_}); got {tuple(w.shape)}.")
    parts: dict[int, torch.Tensor] = {}
    for t0, start, block in explainer.attribution_blocks(X_test, target=target, y=y):
        contrib = block.to(torch.float64).cpu() @ w[:, start : start + block.shape[1]].T
        parts[t0] = parts[t0] + contrib if t0 in parts else contrib
    return torch.cat([parts[t0] for t0 in sorted(parts)]).numpy()


def rowwise_spearman(predicted: Any, actual: Any) -> np.ndarray:
    """Spearman correlation of each row of ``predicted`` with the same row of ``actual`` (``nan`` if constant)."""
    a, b = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"`predicted` {a.shape} and `actual` {b.shape} must be equal-shaped 2-d arrays.")
    ra = rankdata(a, axis=1) - (a.shape[1] + 1) / 2
    rb = rankdata(b, axis=1) - (b.shape[1] + 1) / 2
    denom = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)


@dataclass(frozen=True)
class LeaveOneOutCorrelation:
    """Agreement of attributions with leave-one-out retraining.

    ``predicted`` and ``actual`` are ``(m, len(indices))``: ``a(t, i)`` and
    ``measure(θ) − measure(θ_{−i})``.
    """

    pearson: float
    spearman: float
    mean_test_spearman: float
    indices: np.ndarray
    predicted: np.ndarray
    actual: np.ndarray


def loo_correlation(
    explainer: Explainer,
    X_test: Any,
    y_test: Any,
    retrain_fn: RetrainFn,
    *,
    indices: Any,
    measure: Measure | None = None,
    target: Any = "label",
    seed: int = 0,
) -> LeaveOneOutCorrelation:
    """Correlate ``a(t, i)`` with the actual leave-one-out effect on ``measure`` (default :func:`margin_measure`).

    ``retrain_fn(keep, seed)`` must return a model with ``logits(X)`` (or whatever ``measure``
    reads); the same ``seed`` is passed to every retrain. Explains the true class (``target="label"``)
    by default, the class the margin measures.
    """
    from scipy.stats import pearsonr, spearmanr

    rows = np.asarray(indices, dtype=np.int64).reshape(-1)
    measure = margin_measure(X_test, y_test) if measure is None else measure
    actual = -leave_one_out_effects(retrain_fn, explainer.n_train_, measure, indices=rows, seed=seed).T
    predicted = attribution_columns(explainer, X_test, rows, target=target, y=y_test)
    if actual.shape != predicted.shape:
        raise InputError(f"`measure` returned {actual.shape[0]} values per model; it must return one per test point.")
    per_test = rowwise_spearman(predicted, actual)
    return LeaveOneOutCorrelation(
        pearson=float(pearsonr(predicted.ravel(), actual.ravel())[0]),
        spearman=float(spearmanr(predicted.ravel(), actual.ravel())[0]),
        mean_test_spearman=float(np.nanmean(per_test)),
        indices=rows,
        predicted=predicted,
        actual=actual,
    )


def sample_subsets(n: int, subsets: int, alpha: float, seed: int) -> np.ndarray:
    """``(subsets, n)`` boolean masks, each with exactly ``⌊α n⌋`` points, from ``default_rng(seed)``."""
    if not 0.0 < float(alpha) < 1.0:
        raise InputError(f"`alpha` must lie strictly between 0 and 1; got {alpha!r}.")
    if int(subsets) != subsets or subsets < 2:
        raise InputError(f"`subsets` must be an integer >= 2 (Spearman across subsets); got {subsets!r}.")
    size = int(np.floor(alpha * n))
    if size < 1:
        raise InputError(f"`alpha`={alpha} keeps no point of the {n} training points.")
    rng = np.random.default_rng(seed)
    masks = np.zeros((int(subsets), n), dtype=bool)
    for s in range(int(subsets)):
        masks[s, rng.permutation(n)[:size]] = True
    return masks


@dataclass(frozen=True)
class DatamodelingScore:
    """Linear datamodeling score: ``score`` = mean over test points of ``per_test`` (Spearman across subsets)."""

    score: float
    per_test: np.ndarray
    masks: np.ndarray
    predicted: np.ndarray
    actual: np.ndarray


def lds(
    explainer: Explainer,
    X_test: Any,
    y_test: Any,
    retrain_fn: RetrainFn,
    *,
    subsets: int = 50,
    alpha: float = 0.5,
    seed: int = 0,
    measure: Measure | None = None,
    target: Any = "label",
) -> DatamodelingScore:
    """Linear datamodeling score of ``explainer`` (see the module docstring).

    Subsets come from :func:`sample_subsets` (``seed``); every retrain is called as
    ``retrain_fn(sorted indices of the subset, seed)``, so differences between subsets come from
    the data only. ``measure`` defaults to :func:`margin_measure`; the explained class defaults to the
    true label, the class the margin measures. Test points whose measure or prediction is constant
    across subsets are left out of the mean.
    """
    measure = margin_measure(X_test, y_test) if measure is None else measure
    masks = sample_subsets(explainer.n_train_, subsets, alpha, seed)
    actual = np.stack([np.asarray(measure(retrain_fn(np.flatnonzero(mask), int(seed))), dtype=np.float64).reshape(-1) for mask in masks], axis=1)
    predicted = subset_attribution_sums(explainer, X_test, masks, target=target, y=y_test)
    if actual.shape != predicted.shape:
        raise InputError(f"`measure` returned {actual.shape[0]} values per model; it must return one per test point.")
    per_test = rowwise_spearman(predicted, actual)
    return DatamodelingScore(float(np.nanmean(per_test)), per_test, masks, predicted, actual)

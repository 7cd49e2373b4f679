"""Data debugging: rank training points by how likely their label is wrong.

:func:`find_label_issues` takes either

* a **model** (``nn.Module``, :class:`~representer.TorchClassifier`, :class:`~representer.TreeEnsemble`,
  a booster or :class:`~representer.Features`) with its training data, and optionally the
  checkpoints of its training run: ``method="auto"`` (default) picks the route validated by the
  label-issue benchmark for what it is given, and records which and why
  (:mod:`representer.label_routes`; ``docs/label_issues.md``); or
* a fitted **explainer**, ranked by its own score:

  * ``"self_influence"`` — :meth:`Explainer.self_influence`, sorted descending (RPS-L2: ``|α_{i,y_i}|``;
    RPS-LJE: ``|w_iᵀφ_i|``; influence: ``g_iᵀH⁻¹g_i``), ties broken by the explainer's
    :meth:`~representer.methods.base.Explainer.ranking_tiebreak` when it has one;
  * ``"cumulative"`` — the global score of the DualView paper's label-poisoning metric over test
    points ``X_test`` (each explained for ``target``, by default the predicted class)::

        S_i = Σ_t |a(t, i)| / max_j |a(t, j)|

    i.e. the absolute attributions normalised per test row by the row's largest absolute value,
    then summed over test points. Test rows whose attributions are all zero contribute nothing
    (the reference code would divide by zero).

The cumulative score never holds the ``m × n`` attribution matrix. The engine yields it in blocks of
(test batch × training block), and a row's maximum is known only after all its training blocks, so
the score is computed in two streamed passes over :meth:`Explainer.attribution_blocks`: the first
keeps the per-row maxima ``M_t`` (``m`` numbers), the second accumulates ``Σ_t |a(t, i)| / M_t``
into ``n`` numbers. Memory is ``O(m + n)`` plus one block; the compute is twice that of scoring
(the training and test features are cached by the adapters, so they are computed once).

Every ranking is a total order: ties in the score are broken by the route's secondary score, then
by index.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from .errors import InputError
from .methods.base import Explainer
from .rankings import LabelIssues, rank_with_tiebreak, tie_share

Ranking = Literal["self_influence", "cumulative"]
RANKINGS: tuple[str, ...] = ("self_influence", "cumulative")
#: Share of training points sharing one score above which a ranking is reported as mostly tied.
MOSTLY_TIED = 0.5


def cumulative_attribution(explainer: Explainer, X_test: Any, target: Any = "predicted", y: Any = None) -> np.ndarray:
    """DualView's global score ``S_i = Σ_t |a(t, i)| / max_j |a(t, j)|`` over the rows of ``X_test``.

    Computed in two streamed passes (row maxima, then the normalised sum); see the module docstring.

    Parameters
    ----------
    explainer : Explainer
        Fitted.
    X_test : array, tensor, Dataset or DataLoader of m inputs
        The points whose attributions are summed.
    target : "predicted", "label", int, str or array-like of shape (m,), default "predicted"
        The class each test point is explained for.
    y : array-like of shape (m,), optional
        Labels of ``X_test``, for ``target="label"``.

    Returns
    -------
    ndarray of shape (n,)
        ``S_i`` per training point, float64 (larger = more suspicious).

    Raises
    ------
    NotFittedError
        If ``explainer`` is not fitted.
    """
    maxima: dict[int, torch.Tensor] = {}
    for t0, _, block in explainer.attribution_blocks(X_test, target=target, y=y):
        block_max = block.abs().amax(dim=1).to(torch.float64).cpu()
        maxima[t0] = torch.maximum(maxima[t0], block_max) if t0 in maxima else block_max
    row_max = torch.cat([maxima[t0] for t0 in sorted(maxima)])
    inverse = torch.where(row_max > 0, 1.0 / row_max, torch.zeros_like(row_max))
    total = torch.zeros(explainer.n_train_, dtype=torch.float64)
    for t0, start, block in explainer.attribution_blocks(X_test, target=target, y=y):
        weights = inverse[t0 : t0 + block.shape[0]].to(block.device)
        total[start : start + block.shape[1]] += (weights @ block.abs().to(torch.float64)).cpu()
    return total.numpy()


def find_label_issues(
    model: Any,
    X: Any = None,
    y: Any = None,
    *,
    checkpoints: Any = None,
    learning_rates: Sequence[float] | None = None,
    method: str = "auto",
    params: Sequence[str] | None = None,
    top: int | None = None,
    ranking: Ranking = "self_influence",
    X_test: Any = None,
    target: Any = "predicted",
    progress: bool | None = None,
    seed: int = 0,
) -> LabelIssues:
    """Rank training points by how likely their label is wrong, most suspicious first.

    Two ways to call it::

        issues = rp.find_label_issues(net.eval(), X_train, y_train, checkpoints="checkpoints")
        issues = rp.find_label_issues(fitted_explainer)            # the explainer's own ranking

    Parameters
    ----------
    model : nn.Module, ClassifierAdapter, booster or Explainer
        An ``nn.Module`` (eval mode), :class:`~representer.TorchClassifier`,
        :class:`~representer.TreeEnsemble`, an xgboost / lightgbm / scikit-learn booster or
        :class:`~representer.Features`, with ``X`` and ``y``; or a fitted explainer alone.
    X : array, tensor, Dataset or DataLoader of n inputs, optional
        The training inputs (model calls).
    y : array-like of shape (n,), optional
        Their given, possibly wrong, labels (model calls).
    checkpoints : str, Path or list, optional
        The training trajectory of a network: a folder written by :class:`~representer.CheckpointRecorder`,
        a list of :class:`~representer.Checkpoint`, or a list of state dicts in training order (with
        ``learning_rates``, used by ``"tracin"``).
    learning_rates : list of float, optional
        The learning rate at each checkpoint, for ``"tracin"`` with state dicts.
    method : str, default "auto"
        ``"auto"`` (the validated route for what is given, see :mod:`representer.label_routes`) or a route
        name: ``"trajectory-loss"``, ``"trajectory-margin"``, ``"tracin"``, ``"cross-fit"``, ``"loss"``,
        ``"influence"``, ``"rps-l2"``, ``"rps-lje"``, ``"dualview"``.
    params : list of str, optional
        Layers for ``method="tracin"`` (default: the head, in closed form).
    top : int, optional
        Keep only the ``top`` most suspicious points (default: all).
    ranking : {"self_influence", "cumulative"}, default "self_influence"
        Explainer calls only: the explainer's own score (no test data), or DualView's normalised
        cumulative attribution over ``X_test`` (:func:`cumulative_attribution`).
    X_test : array-like of m inputs, optional
        Explainer calls with ``ranking="cumulative"``.
    target : "predicted", "label", int, str or array-like, default "predicted"
        The class each test point is explained for (``ranking="cumulative"``).
    progress : bool, optional
        Progress bars for long steps (``None``: when standard error is a terminal).
    seed : int, default 0
        Seed of the cross-fit folds and DualView's solver.

    Returns
    -------
    LabelIssues
        Indices (iterating or slicing it gives them), scores, the given labels, and ``method`` /
        ``reason`` / ``caveat`` saying what ranked them and how far to trust it.

    Raises
    ------
    InputError
        A bad ``top`` or ``method``, mismatched ``X`` / ``y``, arguments of the other call form, or
        checkpoints that do not fit the network.
    ModelError
        A model that cannot be split into features and a linear head, or in training mode.
    """
    if top is not None and (isinstance(top, bool) or int(top) != top or top < 1):
        raise InputError(f"`top` must be a positive integer or None; got {top!r}.")
    if isinstance(model, Explainer):
        for name, value in (("X", X), ("y", y), ("checkpoints", checkpoints), ("learning_rates", learning_rates), ("params", params)):
            if value is not None:
                raise InputError(f"`{name}` is for ranking a model; a fitted explainer ranks the data it was fitted on.")
        if method != "auto":
            raise InputError("`method` chooses a route for a model; a fitted explainer ranks by `ranking=`.")
        return _explainer_issues(model, ranking, X_test, target, top)
    if X_test is not None or ranking != "self_influence":
        raise InputError("`ranking` and `X_test` apply to a fitted explainer; for a model choose `method=`.")
    if X is None or y is None:
        raise InputError("Pass the training data: find_label_issues(model, X_train, y_train, ...).")
    return _model_issues(model, X, y, checkpoints, learning_rates, method, params, top, progress, seed)


def _model_issues(model: Any, X: Any, y: Any, checkpoints: Any, learning_rates: Any, method: str, params: Any,
                  top: int | None, progress: bool | None, seed: int) -> LabelIssues:
    from .label_routes import choose, resolve_inputs, run_route

    inputs = resolve_inputs(model, X, y, checkpoints, learning_rates, params, progress, seed)
    if method == "auto":
        choice = choose(inputs)
        chosen, reason, caveat = choice.method, choice.reason, choice.caveat
    else:
        chosen, reason, caveat = method, "requested", None
    result = run_route(chosen, inputs)
    if result.tiebreak is None and tie_share(result.scores) > MOSTLY_TIED:
        warnings.warn(
            f"{100 * tie_share(result.scores):.0f} % of the training points share one {chosen} score; they rank by index.",
            RuntimeWarning, stacklevel=3,
        )
    return _issues(result.scores, result.tiebreak, inputs.y, top, ranking=chosen, method=chosen, reason=reason,
                   caveat=caveat, details=result.details)


def _explainer_issues(explainer: Explainer, ranking: str, X_test: Any, target: Any, top: int | None) -> LabelIssues:
    if ranking not in RANKINGS:
        raise InputError(f"`ranking` must be one of {RANKINGS}; got {ranking!r}.")
    tiebreak = None
    if ranking == "cumulative":
        if X_test is None:
            raise InputError('`ranking="cumulative"` sums attributions over test points: pass them as `X_test=`.')
        scores = cumulative_attribution(explainer, X_test, target=target)
    else:
        if X_test is not None:
            raise InputError('`X_test` is used only by `ranking="cumulative"`; drop it or choose that ranking.')
        scores = explainer.self_influence()
        tiebreak = explainer.ranking_tiebreak()
        share = tie_share(scores)
        if share > MOSTLY_TIED:
            hint = " Ties are broken by its secondary score." if tiebreak is not None else " Tied points keep index order."
            warnings.warn(
                f"{100 * share:.0f} % of the training points share one {explainer.name} self-influence value, so this "
                f"ranking barely separates them.{hint}"
                + (" For DualView, a larger C (about 60 / n) leaves most points off the bound." if explainer.name == "dualview" else ""),
                RuntimeWarning, stacklevel=3,
            )
    return _issues(scores, tiebreak, np.asarray(explainer.y_), top, ranking=ranking, method=explainer.name,
                   reason=f"{explainer.name} {ranking.replace('_', '-')}", caveat=None,
                   details=dict(getattr(explainer, "fit_report_", {})))


def _issues(scores: np.ndarray, tiebreak: np.ndarray | None, labels: np.ndarray, top: int | None, **record: Any) -> LabelIssues:
    order = rank_with_tiebreak(scores, tiebreak)
    if top is not None:
        order = order[: int(top)]
    return LabelIssues(indices=order, scores=np.asarray(scores)[order], given_labels=labels[order], **record)

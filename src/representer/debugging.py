"""Data debugging: rank training points by how likely their label is wrong.

Two rankings of a fitted explainer are offered:

* ``"self_influence"`` — the method's own per-point score, :meth:`Explainer.self_influence`,
  sorted descending (RPS-L2: ``|α_{i,y_i}|``; RPS-LJE: ``|w_iᵀφ_i|``; influence: ``g_iᵀH⁻¹g_i``).
* ``"cumulative"`` — the global score of the DualView paper's label-poisoning metric, over a set of
  test points ``X_test`` (each explained for ``target``, by default the predicted class)::

      S_i = Σ_t |a(t, i)| / max_j |a(t, j)|

  i.e. the absolute attributions normalised per test row by the row's largest absolute value, then
  summed over test points. Test rows whose attributions are all zero contribute nothing (the
  reference code would divide by zero).

The cumulative score never holds the ``m × n`` attribution matrix. The engine yields it in blocks of
(test batch × training block), and a row's maximum is known only after all its training blocks, so
the score is computed in two streamed passes over :meth:`Explainer.attribution_blocks`: the first
keeps the per-row maxima ``M_t`` (``m`` numbers), the second accumulates ``Σ_t |a(t, i)| / M_t``
into ``n`` numbers. Memory is ``O(m + n)`` plus one block; the compute is twice that of scoring
(the training and test features are cached by the adapters, so they are computed once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .errors import InputError
from .evaluation.metrics import rank_by_score
from .methods.base import Explainer

Ranking = Literal["self_influence", "cumulative"]
RANKINGS: tuple[str, ...] = ("self_influence", "cumulative")


@dataclass(frozen=True)
class LabelIssues:
    """Training points ranked by suspicion, most suspicious first.

    Attributes:
        indices: training indices, most suspicious first (all ``n``, or the ``top`` requested).
        scores: the ranking score of each of those points (descending).
        ranking: ``"self_influence"`` or ``"cumulative"``.
        given_labels: the training label the explainer was fitted with, for each of ``indices``.
    """

    indices: np.ndarray
    scores: np.ndarray
    ranking: str
    given_labels: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def cumulative_attribution(explainer: Explainer, X_test: Any, target: Any = "predicted", y: Any = None) -> np.ndarray:
    """DualView's global score ``S_i = Σ_t |a(t, i)| / max_j |a(t, j)|`` over the rows of ``X_test``, ``(n,)``.

    Computed in two streamed passes (row maxima, then the normalised sum); see the module docstring.
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
    explainer: Explainer,
    *,
    ranking: Ranking = "self_influence",
    X_test: Any = None,
    target: Any = "predicted",
    top: int | None = None,
) -> LabelIssues:
    """Rank the explainer's training points by how suspicious their label is.

    Args:
        explainer: a fitted explainer (its training labels are the ones checked).
        ranking: ``"self_influence"`` (no test data needed) or ``"cumulative"`` (DualView's
            normalised cumulative attribution over ``X_test``).
        X_test: test inputs for ``ranking="cumulative"``; not used by ``"self_influence"``.
        target: the class explained for each test point (``"predicted"``, an int or an array).
        top: keep only the ``top`` most suspicious points (default: all).

    Ties in the score keep the lower training index first.
    """
    if ranking not in RANKINGS:
        raise InputError(f"`ranking` must be one of {RANKINGS}; got {ranking!r}.")
    if top is not None and (int(top) != top or top < 1):
        raise InputError(f"`top` must be a positive integer or None; got {top!r}.")
    if ranking == "cumulative":
        if X_test is None:
            raise InputError('`ranking="cumulative"` sums attributions over test points: pass them as `X_test=`.')
        scores = cumulative_attribution(explainer, X_test, target=target)
    else:
        if X_test is not None:
            raise InputError('`X_test` is used only by `ranking="cumulative"`; drop it or choose that ranking.')
        scores = explainer.self_influence()
    order = rank_by_score(scores)
    if top is not None:
        order = order[: int(top)]
    return LabelIssues(indices=order, scores=scores[order], ranking=ranking, given_labels=np.asarray(explainer.y_)[order])

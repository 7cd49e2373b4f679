"""What a label-issue ranking is, independent of how it was computed: :class:`LabelIssues`, the
total order of :func:`rank_with_tiebreak` and a :class:`DetectionCurve`.

NumPy only, so that the report and the command line read rankings without importing torch or the
methods (:mod:`representer.debugging` computes them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DetectionCurve:
    """Fraction of corrupted points found (``found``) after inspecting ``inspected`` of the training set.

    Both arrays have the same length; ``n_inspected`` holds the number of points inspected. Built by
    :func:`representer.evaluation.metrics.detection_curve`, drawn by the report (so it lives here,
    below both).
    """

    inspected: np.ndarray
    found: np.ndarray
    n_inspected: np.ndarray


@dataclass(frozen=True)
class LabelIssues(Sequence):
    """Training points ranked by suspicion, most suspicious first.

    A ``LabelIssues`` indexes, slices and iterates like its ``indices``: ``issues[:10]`` are the ten
    most suspicious training indices, ``list(issues)`` all of them, ``np.asarray(issues)`` the array.

    Attributes
    ----------
    indices : ndarray of shape (r,)
        Training indices, most suspicious first (all ``n``, or the ``top`` requested).
    scores : ndarray of shape (r,)
        The ranking score of each of those points (descending; ties broken as described in
        :mod:`representer.debugging`).
    ranking : str
        For an explainer, ``"self_influence"`` or ``"cumulative"``; for a model, the route.
    given_labels : ndarray of shape (r,)
        The training label of each of ``indices``.
    method : str
        What produced the ranking: a route of :mod:`representer.label_routes` (``"trajectory-loss"``,
        ``"cross-fit"``, …) or the explainer's name.
    reason : str
        Why that method (for ``method="auto"``: why it was chosen), in words.
    caveat : str or None
        A warning in words when the ranking is known to be weak in this situation.
    details : dict
        What the route computed on the way (checkpoints, fitted fractions, fit reports).
    """

    indices: np.ndarray
    scores: np.ndarray
    ranking: str
    given_labels: np.ndarray
    method: str = ""
    reason: str = ""
    caveat: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, item: Any) -> Any:
        value = self.indices[item]
        return int(value) if np.ndim(value) == 0 else value

    def __iter__(self) -> Iterator[int]:
        return (int(i) for i in self.indices)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.indices if dtype is None else self.indices.astype(dtype)

    def __repr__(self) -> str:
        head = ", ".join(str(int(i)) for i in self.indices[:5])
        more = ", …" if len(self) > 5 else ""
        return f"LabelIssues(method={self.method!r}, n={len(self)}, indices=[{head}{more}])"


def _quantised(scores: np.ndarray) -> np.ndarray:
    """``scores`` rounded to 1e-9 of their largest magnitude: values equal up to round-off tie."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    scale = float(np.abs(scores[finite]).max()) if finite.any() else 0.0
    return np.where(finite, np.round(scores / scale, 9), scores) if scale > 0 else scores


def rank_with_tiebreak(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Indices by decreasing ``scores``, ties (equal to 1e-9 relative) by decreasing ``tiebreak``, then by index."""
    scores = _quantised(scores)
    index = np.arange(scores.shape[0])
    if tiebreak is None:
        return np.lexsort((index, -scores))
    return np.lexsort((index, -np.asarray(tiebreak, dtype=np.float64), -scores))


def tie_share(scores: np.ndarray) -> float:
    """Share of points holding the most common score value."""
    _, counts = np.unique(_quantised(scores), return_counts=True)
    return float(counts.max() / scores.shape[0])

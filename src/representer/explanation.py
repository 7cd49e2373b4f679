"""Result types, and the one sign and orientation convention of the whole library.

**Orientation.** Attributions are always *test × train*: row ``t`` is a test point, column ``i`` a
training point. ``explainer.attribute(X_test)`` has shape ``(m, n)``.

**Sign.** A positive score means the training point is *excitatory* (helpful): it raises the logit
of the explained class (RPS-L2, RPS-LJE, DualView, similarity) or lowers the loss of the explained
class at the test point (influence functions, RelatIF). A negative score means *inhibitory*
(harmful). Koh & Liang's ``I_up,loss`` has the opposite sign; we negate it.

**Which class.** Each test point is explained for one class ``target[t]``: the model's prediction
(default), the given label, or a class the caller names.

For a binary (one-logit, sigmoid) head, class 1 is the logit ``z`` and class 0 is ``−z``, so the
scores for class 0 are the negated scores for class 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TopK:
    """The ``k`` training points with the most extreme scores of one sign, per test point.

    For excitatory points the rows are sorted by decreasing score, for inhibitory points by
    increasing score (most negative first). When fewer than ``k`` points have the sign in question,
    the remaining columns hold the next points in that order, so check ``scores`` before calling a
    point excitatory.

    Attributes
    ----------
    indices : ndarray of shape (m, k)
        ``indices[t, j]`` is a training index (int64).
    scores : ndarray of shape (m, k)
        Its score (test × train, positive = excitatory).
    """

    indices: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class Explanation:
    """Top-k training points of both signs for each of ``m`` test points.

    Attributes
    ----------
    excitatory : TopK
        The ``k`` largest scores per test point (helpful points), ``(m, k)``.
    inhibitory : TopK
        The ``k`` smallest scores per test point (harmful points), ``(m, k)``.
    target : ndarray of shape (m,)
        The class explained for each test point.
    method : str
        The explainer's name.
    meta : dict
        Free-form information (e.g. the top-k requested, the explainer parameters).
    """

    excitatory: TopK
    inhibitory: TopK
    target: np.ndarray
    method: str
    meta: dict = field(default_factory=dict)

    @property
    def top_k(self) -> int:
        """``k``, the training points kept per sign."""
        return int(self.excitatory.indices.shape[1])

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to_dict(self) -> dict:
        """The explanation as plain lists, ready for ``json.dumps``.

        Returns
        -------
        dict
            ``method``, ``target`` (m ints), ``excitatory`` / ``inhibitory`` ``{"indices", "scores"}``
            (m lists of k), and ``meta``.
        """
        return {
            "method": self.method,
            "target": self.target.tolist(),
            "excitatory": {"indices": self.excitatory.indices.tolist(), "scores": self.excitatory.scores.tolist()},
            "inhibitory": {"indices": self.inhibitory.indices.tolist(), "scores": self.inhibitory.scores.tolist()},
            "meta": self.meta,
        }

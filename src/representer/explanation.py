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

    ``indices[t, j]`` is a training index and ``scores[t, j]`` its score. For excitatory points the
    rows are sorted by decreasing score, for inhibitory points by increasing score (most negative
    first). When fewer than ``k`` points have the sign in question, the remaining columns hold the
    next points in that order, so check ``scores`` before calling a point excitatory.
    """

    indices: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class Explanation:
    """Top-k training points of both signs for each of ``m`` test points.

    Attributes:
        excitatory: the ``k`` largest scores per test point (helpful points).
        inhibitory: the ``k`` smallest scores per test point (harmful points).
        target: ``(m,)`` the class explained for each test point.
        method: the explainer's name.
        meta: free-form information (e.g. the top-k requested, the explainer parameters).
    """

    excitatory: TopK
    inhibitory: TopK
    target: np.ndarray
    method: str
    meta: dict = field(default_factory=dict)

    @property
    def top_k(self) -> int:
        return int(self.excitatory.indices.shape[1])

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to_dict(self) -> dict:
        """A JSON-ready dictionary (lists of ints and floats)."""
        return {
            "method": self.method,
            "target": self.target.tolist(),
            "excitatory": {"indices": self.excitatory.indices.tolist(), "scores": self.excitatory.scores.tolist()},
            "inhibitory": {"indices": self.inhibitory.indices.tolist(), "scores": self.inhibitory.scores.tolist()},
            "meta": self.meta,
        }

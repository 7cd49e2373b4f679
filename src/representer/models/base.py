"""The adapter contract: a classifier split into features φ(x) and a linear head (W, b).

Every adapter exposes

* ``features(X) -> np.ndarray`` of shape ``(n, D)``: the input of the linear head (no ones column),
* ``weight`` of shape ``(K, D)`` and ``bias`` of shape ``(K,)`` (zeros when the head has none),

so that ``features(X) @ weight.T + bias`` are the model's logits (raw margins for boosters).
A head with ``K = 1`` output is a binary sigmoid head; it has ``n_classes = 2``, class 1 is the
logit ``z`` and class 0 is ``-z``. Otherwise the head is softmax over ``K = n_classes`` logits.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .._files import array_fingerprint


class ClassifierAdapter(ABC):
    """Base class of model adapters. Subclasses set ``weight``, ``bias`` and implement ``features``."""

    weight: np.ndarray
    bias: np.ndarray
    has_bias: bool

    @abstractmethod
    def features(self, X: Any) -> np.ndarray:
        """φ(X): the head's input for each row of ``X``.

        Parameters
        ----------
        X : array-like of n inputs
            What the model takes, rows first.

        Returns
        -------
        ndarray of shape (n, D)
            float64 features, without a ones column.

        Raises
        ------
        InputError
            ``X`` of the wrong shape or dtype, empty, or with NaN / infinite values.
        """

    @property
    def n_outputs(self) -> int:
        """Number of logits of the head, K (1 for a binary sigmoid head)."""
        return int(self.weight.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes: K for a softmax head, 2 for a one-logit sigmoid head."""
        return 2 if self.n_outputs == 1 else self.n_outputs

    @property
    def is_binary(self) -> bool:
        """True for a one-logit sigmoid head."""
        return self.n_outputs == 1

    @property
    def n_features(self) -> int:
        """Width D of the head's input."""
        return int(self.weight.shape[1])

    @property
    def theta(self) -> np.ndarray:
        """Head with the bias folded in as the last column: ``(K, D + 1)`` float64, ``[W | b]``."""
        return np.concatenate([self.weight, self.bias[:, None]], axis=1).astype(np.float64)

    def logits_from_features(self, phi: np.ndarray) -> np.ndarray:
        """The head applied to features: ``phi @ W.T + b``.

        Parameters
        ----------
        phi : ndarray of shape (n, D)
            Features, as :meth:`features` returns them.

        Returns
        -------
        ndarray of shape (n, K)
            Logits (raw margins for boosters).
        """
        return phi @ self.weight.T + self.bias

    def logits(self, X: Any) -> np.ndarray:
        """The model's logits (raw margins) for ``X``, computed through the head.

        Parameters
        ----------
        X : array-like of n inputs
            As for :meth:`features`.

        Returns
        -------
        ndarray of shape (n, K)
            ``features(X) @ W.T + b``.
        """
        return self.logits_from_features(self.features(X))

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class of each row of ``X``.

        Parameters
        ----------
        X : array-like of n inputs
            As for :meth:`features`.

        Returns
        -------
        ndarray of shape (n,)
            Class ids (int64): the arg-max logit, or ``z > 0`` for a one-logit head.
        """
        return predicted_class(self.logits(X))

    def parameter_hashes(self) -> dict[str, str]:
        """A content hash of each named part of the model (here the head's weight and bias).

        Adapters that know more of the model add its other parts (a network's every parameter and
        buffer, a booster's trees), so a saved explainer can name what changed.

        Returns
        -------
        dict of str to str
            Part name → hash of its dtype, shape and bytes.
        """
        return {
            "head.weight": array_fingerprint(np.asarray(self.weight, dtype=np.float64)),
            "head.bias": array_fingerprint(np.asarray(self.bias, dtype=np.float64)),
        }

    def fingerprint(self) -> str:
        """A short hash of the whole model (every part of :meth:`parameter_hashes`).

        Used to refuse a saved explainer, cache or store loaded with another model.

        Returns
        -------
        str
            24 hex digits.
        """
        h = hashlib.blake2b(digest_size=12)
        for name, digest in sorted(self.parameter_hashes().items()):
            h.update(f"{name}={digest};".encode())
        return h.hexdigest()


def predicted_class(logits: np.ndarray) -> np.ndarray:
    """argmax class of ``(n, K)`` logits; for ``K = 1`` the class is ``1`` where the logit is > 0."""
    logits = np.asarray(logits)
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int64)
    return logits.argmax(axis=1).astype(np.int64)



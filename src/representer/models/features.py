"""Adapter for users who already have features φ(x) and a linear head (W, b)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import as_float_array
from ..errors import InputError
from .base import ClassifierAdapter


class Features(ClassifierAdapter):
    """A classifier given as features and a linear head: ``logits = φ(X) @ weight.T + bias``.

    Parameters
    ----------
    weight : array-like of shape (K, D)
        Head weights; ``K = 1`` means a binary sigmoid head.
    bias : array-like of shape (K,), optional
        Head bias; ``None`` for a head without bias.
    phi : callable, optional
        Maps inputs to ``(n, D)`` features. ``None`` (default) means the inputs passed to ``fit`` /
        ``explain`` already *are* the features.

    Raises
    ------
    InputError
        ``weight`` not 2-d or not finite, or ``bias`` of another length than ``weight``'s rows.
    """

    def __init__(self, weight: Any, bias: Any = None, phi: Callable[[Any], Any] | None = None) -> None:
        self.weight = as_float_array(weight, "weight", ndim=2)
        self.has_bias = bias is not None
        if bias is None:
            self.bias = np.zeros(self.weight.shape[0])
        else:
            self.bias = as_float_array(bias, "bias", ndim=1)
            if self.bias.shape[0] != self.weight.shape[0]:
                raise InputError(
                    f"`bias` has {self.bias.shape[0]} entries but `weight` has {self.weight.shape[0]} rows; "
                    "pass one bias per output."
                )
        self.phi = phi

    def features(self, X: Any) -> np.ndarray:
        """``phi(X)``, or ``X`` itself when no ``phi`` was given.

        Parameters
        ----------
        X : array-like
            Inputs of ``phi``, or ``(n, D)`` features.

        Returns
        -------
        ndarray of shape (n, D)
            float64 features.

        Raises
        ------
        InputError
            Features that are not 2-d, not finite, or not ``D`` wide.
        """
        phi = as_float_array(self.phi(X) if self.phi is not None else X, "X (features)", ndim=2)
        if phi.shape[1] != self.n_features:
            raise InputError(
                f"The features have {phi.shape[1]} columns but `weight` expects D={self.n_features}; "
                "pass features of the head's input width."
            )
        return phi

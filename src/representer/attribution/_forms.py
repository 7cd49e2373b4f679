r"""A pair score as a linear function of either side's raw features — the seed of every feature-level view.

For the kernel explainers the score of training point ``i`` for class ``c`` at test point ``t`` is a
bilinear form in the two feature vectors, so with one side fixed it is affine in the other's raw
features ``φ``:

    score(t, i) = a_iᵀ φ(x_t) + a⁰_i  =  b_tᵀ φ(x_i) + b⁰_t.

* RPS-L2: ``α_ic ⟨φ̃_i, φ̃_t⟩``, so ``a_i = α_ic φ_i``, ``b_t = α_ic φ_t`` and both offsets are
  ``α_ic`` (the ``+1`` of the folded bias).
* DualView, ``seed="standardized"``: ``β_ic ⟨z_i, z_t⟩`` with ``z = (φ − μ)/s``, so
  ``a_i = β_ic z_i / s`` and ``a⁰_i = −β_ic ⟨z_i, μ/s⟩`` (and symmetrically). The per-feature terms
  ``a_ij φ_j(x_t)`` sum to the exact DualView score minus an input-independent offset, which is
  the part of the surrogate that no input feature can explain (it acts like a bias).
* DualView, ``seed="raw"``: Eq. 7 of the paper read literally, ``β_ic φ_j(x_i) φ_j(x_t)``, i.e. the
  unstandardised kernel: ``a_i = β_ic φ_i``, no offset. Its total is not the DualView score.

The per-feature terms ``a_ij φ_j(x_t)`` are the relevances at the penultimate layer that LRP
propagates, and ``a_i`` is the vector whose product with ``∂φ(x_t)/∂x_t`` is the sensitivity map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InputError
from ..methods.base import Explainer
from ..head import class_columns

Seed = Literal["standardized", "raw"]


@dataclass(frozen=True)
class PairForms:
    """Affine forms of the scores of ``k`` (test, training) pairs in one side's raw features.

    ``score[p] = test_weights[p] · φ(x_test) + test_offset[p] = train_weights[p] · φ(x_train[p]) + train_offset[p]``
    (exactly for RPS-L2 and DualView ``"standardized"``; ``"raw"`` has no offsets and another total).
    """

    test_weights: np.ndarray
    test_offset: np.ndarray
    train_weights: np.ndarray
    train_offset: np.ndarray
    coefficients: np.ndarray
    score: np.ndarray


def class_coefficients(explainer: Explainer, target: int) -> np.ndarray:
    """Per-training-point coefficients ``(n,)`` of class ``target``: RPS-L2's ``α_·c`` or DualView's ``β_·c``."""
    from ..methods.dualview import DualView
    from ..methods.rps_l2 import RPSL2

    if isinstance(explainer, DualView):
        return explainer.beta_[:, target]
    if isinstance(explainer, RPSL2):
        return class_columns(explainer.alpha_)[:, target]
    raise InputError(
        f"Feature-level views need a kernel explainer (representer.RPSL2 or representer.DualView); "
        f"got {type(explainer).__name__}."
    )


def pair_forms(explainer: Explainer, phi_test: np.ndarray, train_indices: np.ndarray, target: int, seed: Seed = "standardized") -> PairForms:
    """:class:`PairForms` of one test point (features ``phi_test`` ``(D,)``) with training points ``train_indices``."""
    from ..methods.dualview import DualView

    if seed not in ("standardized", "raw"):
        raise InputError(f'`seed` must be "standardized" or "raw"; got {seed!r}.')
    coef = class_coefficients(explainer, target)[train_indices]
    phi_train = explainer.train_features_[train_indices]
    if isinstance(explainer, DualView) and seed == "standardized":
        z_train = explainer.standardize(phi_train)
        z_test = explainer.standardize(phi_test[None, :])[0]
        shift = explainer.mean_ * explainer.inv_scale_
        test_weights = coef[:, None] * z_train * explainer.inv_scale_
        train_weights = coef[:, None] * (z_test * explainer.inv_scale_)[None, :]
        return PairForms(
            test_weights=test_weights,
            test_offset=-coef * (z_train @ shift),
            train_weights=train_weights,
            train_offset=-coef * (z_test @ shift),
            coefficients=coef,
            score=coef * (z_train @ z_test),
        )
    offset = coef if not isinstance(explainer, DualView) else np.zeros_like(coef)
    return PairForms(
        test_weights=coef[:, None] * phi_train,
        test_offset=offset,
        train_weights=coef[:, None] * phi_test[None, :],
        train_offset=offset,
        coefficients=coef,
        score=coef * (phi_train @ phi_test) + offset,
    )

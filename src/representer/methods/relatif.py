"""RelatIF: influence relative to a training point's global effect (Barshan, Brunet, Dziugaite 2020).

With the influence ``I(t, i) = g_tᵀH⁻¹g_i`` of :mod:`representer.methods.influence` (positive =
helpful; same Hessian backends and damping), spec §5.1 defines

* θ-RelatIF (``kind="theta"``): ``I(t, i) / ‖H⁻¹g_i‖`` — influence per unit of parameter change
  caused by up-weighting ``i`` (a cosine between ``−g_t`` and ``−H⁻¹g_i`` times ``‖g_t‖``);
* ℓ-RelatIF (``kind="loss"``): ``I(t, i) / √(g_iᵀH⁻¹g_i)`` — a cosine in the ``H⁻¹`` inner
  product times ``√(g_tᵀH⁻¹g_t)``. For a linear softmax head with cross-entropy the Fisher equals
  the Hessian, so the paper's Fisher form and this one coincide.

Bounds (tested, for every backend since each is a positive definite ``H``):
``|ℓ-RelatIF| ≤ √(g_tᵀH⁻¹g_t)`` (Cauchy–Schwarz in the ``H⁻¹`` inner product) and
``|θ-RelatIF| ≤ ‖g_t‖`` (Euclidean Cauchy–Schwarz on ``g_tᵀ(H⁻¹g_i)``); with ``H = I``
(``hessian="identity"``) the two kinds coincide. Denominators are positive, so signs and the "top positively
influential" reading of the paper are those of influence.

The denominators are computed once per training point at ``fit`` (blockwise, every backend) and
applied as the kernel's per-column ``scale``. Tiny denominators are clamped as in dattri:
``max(‖H⁻¹g_i‖, 1e-12)`` and ``√max(g_iᵀH⁻¹g_i, 1e-12)``, with a warning that counts them (a
training point with a zero gradient then scores 0).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import numpy as np

from .._params import Options
from .influence import HessianName, InfluenceFunction

#: Denominator floor, as in dattri's ``relatif_method``.
DENOMINATOR_FLOOR = 1e-12


class RelatIF(InfluenceFunction):
    """Relative influence: ``I(t, i) / ‖H⁻¹g_i‖`` (``kind="theta"``) or ``I(t, i) / √(g_iᵀH⁻¹g_i)`` (``"loss"``).

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        The classifier to explain (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    kind : {"theta", "loss"}, default "theta"
        The normaliser: ``"theta"`` (θ-RelatIF, ``‖H⁻¹g_i‖``) or ``"loss"`` (ℓ-RelatIF, ``√(g_iᵀH⁻¹g_i)``).
    hessian, damping
        As for :class:`~representer.InfluenceFunction`.
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).

    Attributes
    ----------
    denominators_ : ndarray of shape (n,)
        The normalisers (clamped), besides those of influence; ``fit_report_["n_clamped"]`` counts the
        clamped ones. :meth:`self_influence` is the relative score of a point on itself,
        ``g_iᵀH⁻¹g_i / denominator_i``.
    """

    name = "relatif"
    _parameter_constraints: ClassVar[dict[str, list]] = {"kind": [Options(("theta", "loss"))]}

    def __init__(
        self,
        model: Any,
        *,
        kind: Literal["theta", "loss"] = "theta",
        hessian: HessianName = "exact",
        damping: float = 1e-3,
        **engine: Any,
    ) -> None:
        super().__init__(model, hessian=hessian, damping=damping, **engine)
        self.kind = kind

    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*super()._fitted_arrays, "denominators_")

    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        super()._fit(phi, y)
        if self.kind == "theta":
            raw = self.inverse_gradient_norms_
            clamped = raw < DENOMINATOR_FLOOR
            self.denominators_ = np.maximum(raw, DENOMINATOR_FLOOR)
        else:
            raw = self.train_self_influence_
            clamped = raw < DENOMINATOR_FLOOR
            self.denominators_ = np.sqrt(np.maximum(raw, DENOMINATOR_FLOOR))
        n_clamped = int(clamped.sum())
        if n_clamped:
            warnings.warn(
                f"RelatIF({self.kind!r}): {n_clamped} of {raw.shape[0]} training points have a denominator below "
                f"{DENOMINATOR_FLOOR:g} (zero or negligible gradient); clamped to it as in dattri.",
                RuntimeWarning,
                stacklevel=3,
            )
        self.fit_report_.update({"kind": self.kind, "n_clamped": n_clamped})

    def _train_scale(self) -> np.ndarray:
        return 1.0 / self.denominators_

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_ / self.denominators_

r"""DualView (Yolcu, Wiegand, Lapuschkin, Höhne et al. 2024): a Crammer–Singer SVM surrogate head.

The training features are z-scored with the training mean ``μ`` and *population* std ``s``::

    z(x) = (φ(x) − μ) / s,

and a bias-free Crammer–Singer multiclass SVM is fit to ``(z_i, y_i)`` with the *training labels*
(noisy ones included, as in the paper). Its dual multipliers ``α_ic ≥ 0`` (``α_{i,y_i} = 0``,
``Σ_c α_ic ≤ C``) give the coefficients (spec §4.1)

    β_{i,y_i} = Σ_{c≠y_i} α_ic ≥ 0,      β_ic = −α_ic ≤ 0  (c ≠ y_i),      Σ_c β_ic = 0,

and the attribution of training point ``i`` to class ``c`` at test point ``t`` (paper Eq. 6) is

    DV(t, i, c) = β_ic · ⟨z_i, z_t⟩        (positive = excitatory).

Only support vectors (points on or inside the margin) have non-zero rows of ``β``: the
explanations are sparse, and ``C`` tunes how sparse.

**The C convention** (spec §4.2). The reference code (Shark 4.0.0) uses a ½ relative margin. Shark
with ``C`` is the textbook problem with ``C / 4``; its ``β`` is 4× the textbook ``β`` and its weights
``W = ½ Σ_i β_i z_iᵀ`` are 2× the textbook ones. ``convention="shark"`` (default) takes the paper's
``C = 0.001`` and returns Shark's scale, so scores equal the reference code's and
``Σ_i DV(t, i, c) = 2 w_cᵀ z_t``; ``convention="textbook"`` takes the textbook ``C`` (use ``C/4`` for
the same support set) and gives ``W = Σ_i β_i z_iᵀ`` and ``Σ_i DV(t, i, c) = w_cᵀ z_t``. Rankings and
every metric are invariant to the ×4.

**The default C** (``C=None``). The primal ``½‖W‖² + C Σ_i ξ_i`` divided by ``n`` is
``‖W‖²/(2Cn) + mean_i ξ_i``: the surrogate depends on ``C`` only through ``C·n``. A fixed ``C``
therefore means a different surrogate at every training-set size; the paper's ``C = 0.001`` was
chosen at ``n = 60,000`` (``C·n = 60``). ``None`` sets ``C = AUTO_C_TIMES_N / n`` (Shark convention;
a quarter of it in the textbook convention), chosen from the trade-off curve of every DualView metric
against ``C`` (docs/evaluation.md, "Choosing C"): with ``C·n`` much below it nearly every training
point sits at the bound ``Σ_c α_ic = C``, all ``|β_i|`` are equal and the cumulative label-poisoning
score falls below random; much above it, the marked points of the domain-mismatch test leave the
support and that metric drops to 0. ``fit_report_["C"]`` and ``["C_rule"]`` record the value used.

**Departure from the reference.** Features whose population std is at most
``eps · (1 + |μ_j|)`` (dead ReLU units, constant columns) are *dropped*: their z-score is set to 0,
so they enter no inner product. The reference divides by a zero std and produces NaN.

**Binary heads.** A one-logit model (``n_outputs = 1``) still has ``n_classes = 2``, and the SVM has
one weight row — one column of ``β`` — per class, so class 0 is explained with its own column
(no sign flip, unlike the methods that decompose the model's single logit).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .._params import NoneValue, Options, non_negative, positive
from ..engine import CoefficientKernel, TestFactors
from ..solvers.crammer_singer import solve_crammer_singer
from .base import Explainer

_SELF_INFLUENCE_MODES = ("coefs", "self")
#: ``C · n`` of the default ``C=None`` (Shark convention): see the module docstring.
AUTO_C_TIMES_N = 12.0


class DualView(Explainer):
    """DualView: sparse attributions from the dual of a Crammer–Singer SVM on z-scored features.

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        The classifier to explain (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    C : float or None, default None
        The SVM's box constraint in ``convention``; ``None`` means ``12 / n`` in Shark's convention for
        ``n`` training points (``AUTO_C_TIMES_N``; the paper used 0.001 at n = 60,000). Smaller ``C`` =
        softer margin = more support vectors; see the module docstring for how the default was chosen.
    convention : {"shark", "textbook"}, default "shark"
        ``"shark"`` (the reference code, ½-margin) or ``"textbook"`` (Crammer & Singer); Shark's ``C``
        equals the textbook ``C/4`` and Shark's ``β`` is 4× the textbook ``β``.
    tol : float, default 0.001
        Stop when every example's KKT violation is ≤ ``tol`` (Shark's default).
    max_epochs : int, default 10000
        Cap on the solver's passes over the data (a ``RuntimeWarning`` when reached).
    seed : int, default 0
        Seed of the solver's example order (results are deterministic given it).
    eps : float, default 1e-12
        Features with population std ≤ ``eps · (1 + |mean|)`` are dropped (z set to 0).
    self_influence_mode : {"coefs", "self"}, default "coefs"
        What :meth:`self_influence` ranks by: ``"coefs"`` ``Σ_c |β_ic|`` (the paper's "coefs" variant; it
        equals ``2 β_{i,y_i}``, twice the point's total multiplier, so it orders points by how far inside the
        margin they are pushed); ``"self"`` ``β_{i,y_i} ⟨z_i, z_i⟩``, the point's own-label attribution at
        itself.
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).

    Attributes
    ----------
    beta_, alpha_ : ndarray of shape (n, K)
        The dual variables (attributions) and the solver's multipliers.
    weight_ : ndarray of shape (K, D)
        The surrogate's weights in ``convention``.
    mean_, inv_scale_ : ndarray of shape (D,)
        The z-scoring: mean and ``1/s`` (0 for dropped features).
    fit_report_ : dict
        The ``C`` used and why (``"C"``, ``"C_rule"``), solver diagnostics, time, surrogate accuracy;
        and the derived ``C_`` and ``sparsity_report_``.
    """

    name = "dualview"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ("beta_", "alpha_", "weight_", "mean_", "inv_scale_")
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "C": [positive(float), NoneValue()],
        "convention": [Options(("shark", "textbook"))],
        "tol": [positive(float)],
        "max_epochs": [positive(int)],
        "seed": [non_negative(int)],
        "eps": [non_negative(float)],
        "self_influence_mode": [Options(_SELF_INFLUENCE_MODES)],
    }

    def __init__(
        self,
        model: Any,
        *,
        C: float | None = None,
        convention: Literal["shark", "textbook"] = "shark",
        tol: float = 1e-3,
        max_epochs: int = 10_000,
        seed: int = 0,
        eps: float = 1e-12,
        self_influence_mode: Literal["coefs", "self"] = "coefs",
        **engine: Any,
    ) -> None:
        super().__init__(model, **engine)
        self.C = C
        self.convention = convention
        self.tol = tol
        self.max_epochs = max_epochs
        self.seed = seed
        self.eps = eps
        self.self_influence_mode = self_influence_mode

    # ------------------------------------------------------------------ fitting
    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        eps = float(self.eps)
        self.mean_ = phi.mean(axis=0)
        std = phi.std(axis=0)
        kept = std > eps * (1.0 + np.abs(self.mean_))
        self.inv_scale_ = np.where(kept, 1.0 / np.where(kept, std, 1.0), 0.0)
        Z = self.standardize(phi)
        start = time.perf_counter()
        C, rule = self._resolve_C(Z.shape[0])
        result = solve_crammer_singer(
            Z, y, self.model_.n_classes, C=C, convention=self.convention, tol=self.tol,
            max_epochs=self.max_epochs, seed=self.seed,
        )
        seconds = time.perf_counter() - start
        self.beta_ = result.beta
        self.alpha_ = result.alpha
        self.weight_ = result.weight
        surrogate_pred = np.argmax(Z @ result.weight.T, axis=1)
        model_pred = self.resolve_target("predicted", phi)
        at_bound = np.isclose(result.alpha.sum(axis=1), C, rtol=1e-9, atol=0.0)
        self.fit_report_ = {
            "C": C,
            "C_rule": rule,
            "at_bound_fraction": float(at_bound.mean()),
            "solver_seconds": seconds,
            "epochs": result.n_iter,
            "kkt_violation": result.kkt_violation,
            "primal_objective": result.primal_objective,
            "dual_objective": result.dual_objective,
            "duality_gap": result.duality_gap,
            "converged": result.converged,
            "n_dropped_features": int((~kept).sum()),
            "surrogate_train_accuracy": float(np.mean(surrogate_pred == y)),
            "surrogate_agreement_with_model": float(np.mean(surrogate_pred == model_pred)),
        }

    def _resolve_C(self, n: int) -> tuple[float, str]:
        """The box constraint used for ``n`` training points, and why."""
        if self.C is not None:
            return float(self.C), "given"
        scale = 1.0 if self.convention == "shark" else 0.25
        return scale * AUTO_C_TIMES_N / n, f"default: C·n = {AUTO_C_TIMES_N:g} (Shark convention) for n = {n}"

    @property
    def C_(self) -> float:
        """The box constraint the fit used (``C``, or the default ``C=None`` resolved for the training-set size)."""
        self._check_fitted()
        return float(self.fit_report_["C"])

    def standardize(self, phi: np.ndarray) -> np.ndarray:
        """z-score features as the fit did: ``z = (φ − μ) · (1/s)``, dropped (constant) features set to 0.

        Parameters
        ----------
        phi : ndarray of shape (m, D)
            Features.

        Returns
        -------
        ndarray of shape (m, D)
            ``z``, float64.
        """
        return (np.asarray(phi, dtype=np.float64) - self.mean_) * self.inv_scale_

    def train_z(self) -> np.ndarray:
        """The z-scored training features.

        Returns
        -------
        ndarray of shape (n, D)
            ``Z``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        return self.standardize(self.train_features_)

    # ------------------------------------------------------------------ scoring
    def _build_kernel(self) -> CoefficientKernel:
        return CoefficientKernel(x=torch.as_tensor(self.standardize(self.train_features_)), coef=torch.as_tensor(self.beta_))

    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors:
        out = torch.as_tensor(np.asarray(target, dtype=np.int64))
        return TestFactors({"x": torch.as_tensor(self.standardize(phi))}, out, torch.ones(len(out), dtype=torch.float64))

    def ranking_tiebreak(self) -> np.ndarray:
        """The negated surrogate margin ``−(w_{y_i} − max_{c≠y_i} w_c)ᵀ z_i``: orders tied self-influence.

        Every point at the bound has the same ``Σ_c |β_ic| = 2C``; among them, the one the surrogate
        classifies worst (deepest margin violation, ``ξ_i`` largest) is the most suspicious. Points
        with ``β_i = 0`` are ordered by how close they are to the margin.

        Returns
        -------
        ndarray of shape (n,)
            Larger = more suspicious.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        scores = self.train_z() @ self.weight_.T
        rows = np.arange(scores.shape[0])
        own = scores[rows, self.y_]
        scores[rows, self.y_] = -np.inf
        return -(own - scores.max(axis=1))

    def _self_influence(self) -> np.ndarray:
        if self.self_influence_mode == "coefs":
            return np.abs(self.beta_).sum(axis=1)
        z = self.train_z()
        own = self.beta_[np.arange(self.beta_.shape[0]), self.y_]
        return own * np.einsum("ij,ij->i", z, z)

    # ------------------------------------------------------------------ reports
    def representer_weights(self) -> np.ndarray:
        """The surrogate's weights rebuilt from the duals: ``Σ_i β_i z_iᵀ`` (textbook) or ``½ Σ_i β_i z_iᵀ`` (Shark).

        ``Σ_i DV(t, i, c)`` is ``w_cᵀ z_t`` (textbook) or ``2 w_cᵀ z_t`` (Shark).

        Returns
        -------
        ndarray of shape (K, D)
            Equals ``weight_`` (what the solver returned) to rounding.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        factor = 0.5 if self.convention == "shark" else 1.0
        return factor * (self.beta_.T @ self.train_z())

    @property
    def support_(self) -> np.ndarray:
        """Indices of the support vectors (training points with a non-zero row of ``β``)."""
        self._check_fitted()
        return np.flatnonzero(np.any(self.beta_ != 0, axis=1))

    @property
    def sparsity_report_(self) -> dict[str, Any]:
        """Support vectors per training label, their total and fraction, and how many are at the bound.

        A support vector "at the bound" has ``Σ_c α_ic = C`` (it violates the margin, ``ξ_i > 0``);
        the others lie exactly on the margin.
        """
        self._check_fitted()
        support = np.any(self.beta_ != 0, axis=1)
        total = self.alpha_.sum(axis=1)
        at_bound = support & np.isclose(total, self.C_, rtol=1e-9, atol=0.0)
        n_classes = self.beta_.shape[1]
        return {
            "n_support": int(support.sum()),
            "support_fraction": float(support.mean()),
            "support_per_class": np.bincount(self.y_[support], minlength=n_classes).tolist(),
            "n_at_bound": int(at_bound.sum()),
            "n_on_margin": int((support & ~at_bound).sum()),
        }

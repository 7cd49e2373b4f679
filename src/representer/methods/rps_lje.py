"""RPS-LJE: Representer Point Selection via Local Jacobian Expansion (Sui, Wu, Sanner, NeurIPS 2021).

Notation (spec §1, §3): ``x̃ = φ̃ = [φ; 1]`` when the head has a bias (folded in as the last column
of ``Θ``), ``x̃ = φ`` when it has none; ``Θ†`` is the model's ``(K, D)`` head; labels are the TRUE
training labels ``y`` (one-hot ``e_y``, or ``y ∈ {0, 1}`` for a one-logit sigmoid head).

1. **Ascent step.** One full-batch gradient-*ascent* step on the mean cross-entropy (spec §3.2)::

       Θ* = Θ† + γ ḡ(Θ†),      ḡ(Θ) = (1/n) Σ_i g_i(Θ),   g_i = vec(r_i x̃_iᵀ),   r_i = p_i − e_{y_i}.

2. **Hessian at Θ*.** The exact Kronecker sum ``H = (1/n) Σ_i Λ_i ⊗ x̃_i x̃_iᵀ`` (float64,
   :func:`representer.head.exact_hessian`), factorised once by Cholesky.

3. **Representer weights.** One Newton step from ``Θ*``, ``Θ* − H⁻¹ḡ(Θ*)``, distributed over the
   training points (spec §3.1)::

       W_i = (Θ* − unvec(H⁻¹ g_i)) / n   ∈ R^{K×D},      Σ_i W_i = Θ* − unvec(H⁻¹ ḡ(Θ*)).

4. **Scores.** ``a(t, i, c) = sign_c · W_i[out_c] · x̃_t`` — positive = training point ``i`` raises
   the explained class's logit (binary head: class 1 is ``+z``, class 0 is ``−z``). Summed over
   ``i`` the scores give the Newton iterate's logit, which approximates the model's logit
   ``Θ†x̃_t`` when ``Θ†`` is near a stationary point of the training loss (``fit_report_``).

Eq. 11 of the paper writes ``α_i = Θ*/(n φ_i) − …`` (elementwise division by ``φ_i``) so that a
kernel ``φ_iᵀφ_t`` factors out; that division is undefined for zero features (ReLU) and is never
formed here: ``W_i`` is scored directly, as in the reference code.

**Softmax null space.** Softmax logits are shift-invariant, so ``H`` is singular along
``N = {1_K ⊗ v}``. Rather than a reference class (which would make the per-class scores depend on
which class is dropped) or a damping bias, the solve uses ``H + c·P_N`` with ``P_N = (1_K 1_Kᵀ/K) ⊗ I``
the orthogonal projector onto ``N`` and ``c`` the mean diagonal of ``H``. Every ``g_i`` is orthogonal
to ``N`` (``Σ_k r_ik = 0``) and ``N`` is an invariant subspace, so this returns exactly the
Moore–Penrose solution ``H⁺g_i``: the minimum-norm, class-symmetric ``W_i`` that leaves the
model's own shift component of ``Θ†`` untouched. ``damping`` (``H + damping·I``, default ``1e-8``)
is only for rank-deficient features (dead ReLU units, collinear columns); the reference code has
none and inverts in float32.

**Kernel.** :class:`~representer.engine.ClassFactorKernel` with ``V = W`` of shape
``(n, K, D)``: ``n·K·D`` floats on the scoring device and ``D`` multiply-adds per score. The exact
Hessian already limits ``K·D`` to a few thousand (``(K·D)²`` memory, ``(K·D)³`` Cholesky), so ``W``
stays affordable (60,000 × 10 × 65 float32 ≈ 156 MB). The equivalent gradient form
``⟨g_i, H⁻¹(e_c ⊗ x̃_t)⟩`` would store only ``n·(D + K)`` numbers but costs ``K + 1`` times more
per score, one ``K·D`` solve per test point, and needs the Cholesky factor kept with the state.

**γ.** Default ``0.01`` (the paper's CLI default and CNN case studies); the data-debugging
experiments used ``γ = 1e-5``, at which ``Θ* ≈ Θ†`` and LJE is one Newton step from the model.
``γ = 0`` is allowed and means exactly that.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from .. import head as hm
from .._progress import progress_bar
from .._params import non_negative
from ..engine import ClassFactorKernel, TestFactors
from ..models import predicted_class
from .base import _RefitExplainer
from ..head import output_and_sign

_SOLVE_BLOCK_FLOATS = 1 << 22


class RPSLJE(_RefitExplainer):
    """Representer points from a local Jacobian (one Newton step) expansion of the head.

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        The classifier to explain (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    gamma : float, default 0.01
        Learning rate ``γ ≥ 0`` of the single full-batch ascent step that gives ``Θ*`` (0.01 as in the paper's
        case studies; 1e-5 in its data-debugging runs).
    damping : float, default 1e-8
        Added to the Hessian's diagonal before the Cholesky factorisation (``≥ 0``). The softmax shift null
        space is handled exactly without it (module docstring); raise it if the features are rank deficient
        and the factorisation fails.
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).

    Attributes
    ----------
    weights_ : ndarray of shape (n, K, D)
        The ``W_i``, bias last when the head has one.
    theta_star_ : ndarray of shape (K, D)
        The head after the ascent step.
    fit_report_ : dict
        ``newton_identity_error``: ``max |Σ_i W_i − (Θ* − unvec(H⁻¹ḡ(Θ*)))|`` (≈ 1e-12: bookkeeping);
        ``grad_norm_at_model`` / ``grad_norm_at_reconstruction``: ``‖ḡ‖_F`` at ``Θ†`` and at ``Σ_i W_i``;
        ``train``: :meth:`fidelity` on the training set (``Σ_i W_i x̃_t`` against the model's logits).
    """

    name = "rps_lje"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ("weights_", "theta_star_")
    _parameter_constraints: ClassVar[dict[str, list]] = {"gamma": [non_negative(float)], "damping": [non_negative(float)]}

    def __init__(self, model: Any, *, gamma: float = 0.01, damping: float = 1e-8, **engine: Any) -> None:
        super().__init__(model, **engine)
        self.gamma = gamma
        self.damping = damping


    # ------------------------------------------------------------------ head inputs
    def _head_inputs(self, phi: np.ndarray) -> torch.Tensor:
        """``x̃ = [φ, 1]`` for a head with bias, ``φ`` otherwise; float64 on the head device."""
        x = torch.as_tensor(phi, dtype=torch.float64, device=self.head_device)
        return hm.append_ones(x) if self.model_.has_bias else x

    def _head_theta(self) -> torch.Tensor:
        """The model's head ``Θ†`` matching :meth:`_head_inputs`: ``[W | b]`` or ``W``."""
        theta = self._theta()
        return theta if self.model_.has_bias else theta[:, :-1]

    # ------------------------------------------------------------------ fitting
    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        gamma, damping = float(self.gamma), float(self.damping)
        x = self._head_inputs(phi)
        theta_model = self._head_theta()
        k = theta_model.shape[0]
        targets = hm.one_hot_targets(torch.as_tensor(y, device=x.device), k)

        grad_model = hm.gradient_of_mean_loss(x, hm.residuals(hm.logits(x, theta_model), targets))
        theta_star = theta_model + gamma * grad_model
        p = hm.probabilities(hm.logits(x, theta_star))
        r = p - targets
        solver = hm.CholeskySolver.from_matrix(_hessian_without_shift_null_space(x, p), damping)

        weights = self._representer_weights(x, r, theta_star, solver, progress=self.progress)
        newton = theta_star - solver.solve(hm.gradient_of_mean_loss(x, r).reshape(-1)).reshape(theta_star.shape)
        reconstruction = weights.sum(dim=0)
        grad_rec = hm.gradient_of_mean_loss(x, hm.residuals(hm.logits(x, reconstruction), targets))

        self.weights_ = weights.cpu().numpy()
        self.theta_star_ = theta_star.cpu().numpy()
        self.fit_report_ = {
            "gamma": gamma,
            "damping": damping,
            "newton_identity_error": float((reconstruction - newton).abs().max()),
            "grad_norm_at_model": float(grad_model.norm()),
            "grad_norm_at_reconstruction": float(grad_rec.norm()),
            "train": self._fidelity_from_inputs(x),
        }

    @staticmethod
    def _representer_weights(
        x: torch.Tensor, r: torch.Tensor, theta_star: torch.Tensor, solver: hm.CholeskySolver, *, progress: bool | None
    ) -> torch.Tensor:
        """``W_i = (Θ* − unvec(H⁻¹g_i))/n`` for all ``i``, solved in row blocks against one factor (a bar over the blocks)."""
        n, d = x.shape
        k = r.shape[1]
        weights = torch.empty(n, k, d, dtype=torch.float64, device=x.device)
        rows = max(1, _SOLVE_BLOCK_FLOATS // (k * d))
        starts = range(0, n, rows)
        for start in progress_bar(starts, desc="RPS-LJE weights", total=len(starts), progress=progress):
            grads = hm.per_example_gradients(x[start : start + rows], r[start : start + rows])
            newton_parts = solver.solve(grads.T).T.reshape(-1, k, d)
            weights[start : start + rows] = (theta_star.unsqueeze(0) - newton_parts) / n
        return weights

    def _build_kernel(self) -> ClassFactorKernel:
        return ClassFactorKernel(v=torch.as_tensor(self.weights_))

    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors:
        out, sign = output_and_sign(target, self.model_.n_outputs)
        return TestFactors({"x": self._head_inputs(phi).cpu()}, out, sign)

    def _self_influence(self) -> np.ndarray:
        """``|W_i[y_i] · x̃_i|`` (spec §3.6; the paper's ``|α_i K(x_i, x_i)|``), larger = more suspicious."""
        x = self._head_inputs(self.train_features_).cpu().numpy()
        out = output_and_sign(self.y_, self.model_.n_outputs)[0].numpy()
        own_class_rows = self.weights_[np.arange(x.shape[0]), out]
        return np.abs((own_class_rows * x).sum(axis=1))

    # ------------------------------------------------------------------ faithfulness
    def reconstructed_head(self) -> np.ndarray:
        """The head the ``W_i`` rebuild: ``Σ_i W_i``, the Newton iterate ``Θ* − unvec(H⁻¹ḡ(Θ*))``.

        Returns
        -------
        ndarray of shape (K, D)
            Bias last when the head has one.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        return self.weights_.sum(axis=0)

    def fidelity(self, X: Any) -> dict[str, float]:
        """How well ``Σ_i W_i x̃_t`` (the sum of all scores for every class) reproduces the model on ``X``.

        Parameters
        ----------
        X : array-like of m inputs
            As for :meth:`explain`.

        Returns
        -------
        dict of str to float
            ``max_logit_error_vs_model`` and ``mean_abs_logit_error_vs_model`` against the model's logits ``Θ†x̃_t``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        return self._fidelity_from_inputs(self._head_inputs(self.model_.features(X)))

    def _fidelity_from_inputs(self, x: torch.Tensor) -> dict[str, float]:
        x = x.cpu()
        z_model = hm.logits(x, self._head_theta().cpu()).numpy()
        z_rep = hm.logits(x, torch.as_tensor(self.weights_.sum(axis=0))).numpy()
        error = np.abs(z_rep - z_model)
        return {
            "max_logit_error_vs_model": float(error.max()),
            "mean_abs_logit_error_vs_model": float(error.mean()),
            "prediction_agreement": float((predicted_class(z_rep) == predicted_class(z_model)).mean()),
        }


def _hessian_without_shift_null_space(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The exact head Hessian, plus ``c·P_N`` on the softmax shift null space ``N = {1_K ⊗ v}``.

    ``P_N = (1_K 1_Kᵀ / K) ⊗ I_D`` and ``c`` is the mean diagonal of ``H``. For ``b ⊥ N`` the solve
    of the shifted matrix equals ``H⁺b`` (see the module docstring). Binary heads have no such
    null space and get ``H`` unchanged.
    """
    h = hm.exact_hessian(x, p)
    k, d = p.shape[1], x.shape[1]
    if k == 1:
        return h
    scale = float(torch.diagonal(h).mean()) or 1.0
    projector = torch.kron(
        torch.full((k, k), 1.0 / k, dtype=h.dtype, device=h.device), torch.eye(d, dtype=h.dtype, device=h.device)
    )
    return h + scale * projector

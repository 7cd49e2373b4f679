"""Influence functions on the linear head (Koh & Liang 2017), with four Hessian backends.

**Math** (notation of :mod:`representer.head`; spec §5.1). The head ``Θ`` (``K × D``, bias folded
in as the last column) is taken to minimise ``F(Θ) = (1/n) Σ_i ℓ(Θφ̃_i, y_i) + (λ/2)‖Θ‖²_F``.
With per-example gradients ``g_i = r_i ⊗ φ̃_i`` (``r_i = p_i − e_{y_i}``; binary: ``p_i − y_i``)
and the damped Hessian ``H = (1/n) Σ_i Λ_i ⊗ φ̃_iφ̃_iᵀ + λI`` (``λ = damping``),

    I(t, i) = g_tᵀ H⁻¹ g_i,     g_t = (p_t − e_c) ⊗ φ̃_t,

the gradient of the test loss *for the explained class* ``c`` (predicted by default).

**Sign** (spec pitfall 20): up-weighting ``i`` by ``ε`` moves the head by ``−ε H⁻¹g_i`` and the
test loss by ``−ε I(t, i)``, so a positive score is *helpful* (Koh & Liang's ``I_up,loss = −I``).
Leave-one-out (``ε = −1/n``: drop ``ℓ_i/n`` from ``F``, keep ``λ``) changes the test loss by

    Δℓ_t = ℓ_t(Θ_{−i}) − ℓ_t(Θ*) ≈ +I(t, i) / n

when ``H`` is the Hessian of the objective the head minimised, i.e. ``damping`` equals the L2
coefficient ``λ`` of ``F`` above (bias included). Removing a helpful point raises the test loss.

**Backends** (``hessian=``), all acting on rank-one gradients ``g = r ⊗ φ̃`` without forming a
``K·D`` vector per training point:

* ``"exact"``: Cholesky of the ``K·D × K·D`` matrix ``H`` (fine up to K·D ≈ 10k). The test side is
  ``U_t = unvec(H⁻¹g_t)`` and a score is ``r_iᵀ U_t φ̃_i`` (:class:`~representer.engine.GradientKernel`).
* ``"ekfac"``: EK-FAC (George et al. 2018): ``H ≈ (Q_S ⊗ Q_A) diag(E + λ) (Q_S ⊗ Q_A)ᵀ`` with
  ``Q_S``, ``Q_A`` the eigenvectors of ``S = (1/n)Σ Λ_i`` and ``A = (1/n)Σ φ̃φ̃ᵀ`` and ``E`` the exact
  diagonal of the undamped ``H`` in that basis. The cheapest exact evaluation rotates only the
  *test* side: ``U_t = Q_S [(Q_Sᵀr_t)(Q_Aᵀφ̃_t)ᵀ ⊘ (E + λ)] Q_Aᵀ``, and since the basis is orthogonal
  the training gradients stay in raw coordinates — same kernel and scoring cost as ``"exact"``, no
  rotated copy of the training set, fit in ``O(n(K² + D²) + K³ + D³)``.
* ``"kfac"``: K-FAC with factored Tikhonov damping (Martens & Grosse 2015 §6.3),
  ``H ≈ (S + π√λ I) ⊗ (A + √λ/π I)`` with ``π = √((tr S / K) / (tr A / D))``. Its inverse is a
  Kronecker product, so a score is the product of two small kernels,
  ``(r_tᵀ S_π⁻¹ r_i)(φ̃_tᵀ A_π⁻¹ φ̃_i)`` (:class:`~representer.engine.KroneckerKernel`): ``K + D``
  multiply-adds per pair instead of ``K·D``.
* ``"identity"``: ``H = I`` (``damping`` does not enter): ``I(t, i) = g_tᵀg_i = (r_t·r_i)(φ̃_t·φ̃_i)``.

**When they agree exactly.** If the per-example curvature is constant, ``Λ_i ≡ Λ`` (e.g. a head
with ``Θ = 0``, whose probabilities are uniform), the undamped ``H`` is ``Λ ⊗ A``: ``"ekfac"``
equals ``"exact"`` for every ``λ`` and ``"kfac"`` equals it in the limit ``λ → 0`` (the factored
damping adds ``π√λ I⊗A + (√λ/π) S⊗I``). ``"identity"`` equals ``λ ×`` ``"exact"`` in the limit
``λ → ∞`` (``H ∝ I``). A binary head (``K = 1``) has a scalar ``S``: K-FAC and EK-FAC then differ
from exact only through the per-example weights ``p_i(1 − p_i)``.

Self-influence ``g_iᵀH⁻¹g_i`` (and ``‖H⁻¹g_i‖``, used by RelatIF) is computed at fit time, in
blocks of training rows, without forming the matrix of all gradients.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .. import head as hm
from .._progress import progress_bar
from .._params import Options, non_negative
from ..engine import BilinearKernel, GradientKernel, KroneckerKernel, TestFactors
from ..errors import InputError, RepresenterError
from .base import Explainer
from ..head import output_and_sign

Tensor = torch.Tensor
HessianName = Literal["exact", "kfac", "ekfac", "identity"]

#: Floats of gradient rows held at once when computing self-influence (``rows · K·D``).
_FORM_BLOCK_FLOATS = 1 << 22


class InverseHessian(ABC):
    """A damped head Hessian ``H``, seen through what influence needs: ``H⁻¹`` on rank-one gradients.

    Gradients are passed factored, ``g = r ⊗ x`` with ``r`` ``(m, K)`` and ``x`` ``(m, D)``. The
    tensors of a backend are its dataclass fields (persisted by the explainer).
    """

    @classmethod
    @abstractmethod
    def fit(cls, x: Tensor, p: Tensor, damping: float) -> "InverseHessian":
        """Build from training features ``x`` (``Φ̃``) and probabilities ``p`` at the fitted head."""

    @abstractmethod
    def test_tensors(self, r: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Test-side tensors of :meth:`kernel` representing ``H⁻¹g_t`` for each row."""

    @abstractmethod
    def kernel(self, x: Tensor, r: Tensor, scale: Tensor | None) -> BilinearKernel:
        """Train-side kernel scoring ``⟨H⁻¹g_t, g_i⟩`` (times ``scale_i``)."""

    @abstractmethod
    def forms(self, r: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(g_iᵀH⁻¹g_i, ‖H⁻¹g_i‖²)`` for each row ``g_i = r_i ⊗ x_i``."""

    def arrays(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


def _check_spectrum(eigenvalues: Tensor, damping: float, backend: str) -> None:
    if not bool((eigenvalues > 0).all()):
        raise RepresenterError(
            f"The damped {backend} Hessian is singular (damping={damping:g}); increase `damping` "
            "(softmax heads need damping > 0 because their Hessian is singular along shifts of all logits)."
        )


@dataclass(frozen=True)
class ExactInverse(InverseHessian):
    """``H`` exactly, through the Cholesky factor ``L`` of ``H + λI``."""

    factor: Tensor

    @classmethod
    def fit(cls, x: Tensor, p: Tensor, damping: float) -> "ExactInverse":
        return cls(hm.CholeskySolver.from_matrix(hm.exact_hessian(x, p), damping).factor)

    def test_tensors(self, r: Tensor, x: Tensor) -> dict[str, Tensor]:
        u = torch.cholesky_solve(hm.per_example_gradients(x, r).T, self.factor).T
        return {"u": u.reshape(r.shape[0], r.shape[1], x.shape[1])}

    def kernel(self, x: Tensor, r: Tensor, scale: Tensor | None) -> BilinearKernel:
        return GradientKernel(x=x, r=r, scale=scale)

    def forms(self, r: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        w = torch.linalg.solve_triangular(self.factor, hm.per_example_gradients(x, r).T, upper=False)
        v = torch.linalg.solve_triangular(self.factor.T, w, upper=True)
        return (w * w).sum(dim=0), (v * v).sum(dim=0)


@dataclass(frozen=True)
class KFACInverse(InverseHessian):
    """``H ≈ (S + π√λ I) ⊗ (A + √λ/π I)``, kept as the two inverted factors."""

    s_inverse: Tensor
    a_inverse: Tensor

    @classmethod
    def fit(cls, x: Tensor, p: Tensor, damping: float) -> "KFACInverse":
        f = hm.KroneckerFactors.fit(x, p)
        tiny = torch.finfo(torch.float64).tiny
        pi = (max(float(f.s.mean()), tiny) / max(float(f.a.mean()), tiny)) ** 0.5
        s_damped = f.s + pi * damping**0.5
        a_damped = f.a + damping**0.5 / pi
        _check_spectrum(s_damped, damping, "K-FAC")
        _check_spectrum(a_damped, damping, "K-FAC")
        return cls(s_inverse=(f.q_s / s_damped) @ f.q_s.T, a_inverse=(f.q_a / a_damped) @ f.q_a.T)

    def test_tensors(self, r: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"s": r @ self.s_inverse, "a": x @ self.a_inverse}

    def kernel(self, x: Tensor, r: Tensor, scale: Tensor | None) -> BilinearKernel:
        return KroneckerKernel(x=x, r=r, scale=scale)

    def forms(self, r: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        rs, xa = r @ self.s_inverse, x @ self.a_inverse
        quad = (rs * r).sum(dim=1) * (xa * x).sum(dim=1)
        return quad, (rs * rs).sum(dim=1) * (xa * xa).sum(dim=1)


@dataclass(frozen=True)
class EKFACInverse(InverseHessian):
    """``H ≈ (Q_S ⊗ Q_A) diag(E + λ) (Q_S ⊗ Q_A)ᵀ``, ``E`` the exact diagonal in that basis."""

    q_s: Tensor
    q_a: Tensor
    eigenvalues: Tensor

    @classmethod
    def fit(cls, x: Tensor, p: Tensor, damping: float) -> "EKFACInverse":
        f = hm.KroneckerFactors.fit(x, p)
        eigenvalues = f.ekfac_eigenvalues(x, p) + damping
        _check_spectrum(eigenvalues, damping, "EK-FAC")
        return cls(q_s=f.q_s, q_a=f.q_a, eigenvalues=eigenvalues)

    def test_tensors(self, r: Tensor, x: Tensor) -> dict[str, Tensor]:
        rotated = (r @ self.q_s).unsqueeze(2) * (x @ self.q_a).unsqueeze(1) / self.eigenvalues
        return {"u": self.q_s @ rotated @ self.q_a.T}

    def kernel(self, x: Tensor, r: Tensor, scale: Tensor | None) -> BilinearKernel:
        return GradientKernel(x=x, r=r, scale=scale)

    def forms(self, r: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        r2, x2 = (r @ self.q_s) ** 2, (x @ self.q_a) ** 2
        quad = ((r2 @ (1 / self.eigenvalues)) * x2).sum(dim=1)
        return quad, ((r2 @ self.eigenvalues**-2) * x2).sum(dim=1)


@dataclass(frozen=True)
class IdentityInverse(InverseHessian):
    """``H = I``: influence is the gradient dot product ``(r_t·r_i)(φ̃_t·φ̃_i)``."""

    @classmethod
    def fit(cls, x: Tensor, p: Tensor, damping: float) -> "IdentityInverse":
        return cls()

    def test_tensors(self, r: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"s": r, "a": x}

    def kernel(self, x: Tensor, r: Tensor, scale: Tensor | None) -> BilinearKernel:
        return KroneckerKernel(x=x, r=r, scale=scale)

    def forms(self, r: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        squared_norm = (r * r).sum(dim=1) * (x * x).sum(dim=1)
        return squared_norm, squared_norm


BACKENDS: dict[str, type[InverseHessian]] = {
    "exact": ExactInverse,
    "kfac": KFACInverse,
    "ekfac": EKFACInverse,
    "identity": IdentityInverse,
}


def _backend(name: str) -> type[InverseHessian]:
    if name not in BACKENDS:
        raise InputError(f"`hessian` must be one of {sorted(BACKENDS)}; got {name!r}.")
    return BACKENDS[name]


def blockwise_forms(inverse: InverseHessian, r: Tensor, x: Tensor, *, progress: bool | None = False) -> tuple[Tensor, Tensor]:
    """:meth:`InverseHessian.forms` over all rows, in blocks of at most ``2²²`` gradient floats (a bar over the blocks)."""
    rows = max(1, _FORM_BLOCK_FLOATS // (r.shape[1] * x.shape[1]))
    starts = range(0, r.shape[0], rows)
    parts = [
        inverse.forms(r[s : s + rows], x[s : s + rows])
        for s in progress_bar(starts, desc="self-influence", total=len(starts), progress=progress)
    ]
    return torch.cat([q for q, _ in parts]), torch.cat([v for _, v in parts])


class InfluenceFunction(Explainer):
    """Influence of training points on the test loss, ``I(t, i) = g_tᵀH⁻¹g_i`` (positive = helpful).

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        The classifier to explain (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    hessian : {"exact", "ekfac", "kfac", "identity"}, default "exact"
        How ``H`` is represented and inverted: exactly (Cholesky), by Kronecker factors (K-FAC, or EK-FAC with
        eigenvalue corrections), or as the identity (plain gradient dot products).
    damping : float, default 0.001
        ``λ`` added to the Hessian. Set it to the head's L2 coefficient (objective ``mean loss + (λ/2)‖Θ‖²``)
        to make ``H`` the true Hessian; softmax heads need ``λ > 0``. Not used by ``"identity"``.
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).

    Attributes
    ----------
    residuals_ : ndarray of shape (n, K)
        The ``r_i``.
    train_self_influence_ : ndarray of shape (n,)
        ``g_iᵀH⁻¹g_i``.
    inverse_gradient_norms_ : ndarray of shape (n,)
        ``‖H⁻¹g_i‖``, which is ``n ‖Δθ‖`` of leave-one-out to first order.
    hessian_<name>_ : Tensor
        The backend's tensors.
    """

    name = "influence"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "hessian": [Options(("exact", "kfac", "ekfac", "identity"))],
        "damping": [non_negative(float)],
    }

    def __init__(self, model: Any, *, hessian: HessianName = "exact", damping: float = 1e-3, **engine: Any) -> None:
        super().__init__(model, **engine)
        self.hessian = hessian
        self.damping = damping

    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        names = tuple(f"hessian_{f.name}_" for f in fields(_backend(self.hessian)))  # type: ignore[arg-type]
        return ("residuals_", "train_self_influence_", "inverse_gradient_norms_", *names)

    def _check_model(self, adapter: Any) -> None:
        if self.damping == 0 and adapter.n_outputs > 1 and self.hessian != "identity":
            raise InputError(
                "`damping` must be > 0 for a softmax head: its Hessian is singular along shifts of all logits "
                "(use the head's L2 coefficient, or e.g. 1e-3)."
            )

    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        backend = _backend(self.hessian)
        damping = float(self.damping)
        x = self._train_tilde()
        p = hm.probabilities(hm.logits(x, self._theta()))
        r = p - hm.one_hot_targets(torch.as_tensor(y, device=x.device), self.model_.n_outputs)
        inverse = backend.fit(x, p, damping)
        quad, norm_sq = blockwise_forms(inverse, r, x, progress=self.progress)
        self.residuals_ = r.cpu().numpy()
        self.train_self_influence_ = quad.cpu().numpy()
        self.inverse_gradient_norms_ = norm_sq.clamp_min(0).sqrt().cpu().numpy()
        for name, value in inverse.arrays().items():
            setattr(self, f"hessian_{name}_", value.cpu().numpy())
        self.fit_report_ = {"hessian": self.hessian, "damping": damping, "train_loss": _mean_loss(p, y)}

    def _inverse(self) -> InverseHessian:
        backend = _backend(self.hessian)
        tensors = {
            f.name: torch.as_tensor(getattr(self, f"hessian_{f.name}_"), dtype=torch.float64, device=self.head_device)
            for f in fields(backend)  # type: ignore[arg-type]
        }
        return backend(**tensors)

    def _train_scale(self) -> np.ndarray | None:
        """Per-training-point multiplier of the scores (``None``: plain influence)."""
        return None

    def _build_kernel(self) -> BilinearKernel:
        self.inverse_hessian_ = self._inverse()
        x = np.concatenate([self.train_features_, np.ones((self.train_features_.shape[0], 1))], axis=1)
        scale = self._train_scale()
        return self.inverse_hessian_.kernel(
            torch.as_tensor(x), torch.as_tensor(self.residuals_), None if scale is None else torch.as_tensor(scale)
        )

    def _test_gradient_factors(self, phi: np.ndarray, target: np.ndarray) -> tuple[Tensor, Tensor]:
        """``(r_t, φ̃_t)`` with ``r_t = p_t − e_c`` the loss residual for the explained class ``c``."""
        x = hm.append_ones(torch.as_tensor(phi, dtype=torch.float64, device=self.head_device))
        p = hm.probabilities(hm.logits(x, self._theta()))
        return p - hm.one_hot_targets(torch.as_tensor(target, device=x.device), self.model_.n_outputs), x

    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors:
        r, x = self._test_gradient_factors(phi, target)
        out, sign = output_and_sign(target, self.model_.n_outputs)
        return TestFactors(self.inverse_hessian_.test_tensors(r, x), out, sign)

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_

    def test_self_influence(self, X: Any, target: Any = "predicted", y: Any = None) -> np.ndarray:
        """``g_tᵀH⁻¹g_t`` for each row of ``X``: a test point's influence on itself.

        Its square root bounds ``|ℓ-RelatIF(t, i)|`` (Cauchy–Schwarz in the ``H⁻¹`` inner product).

        Parameters
        ----------
        X, target, y
            As for :meth:`explain` (the gradient is that of the explained class's loss).

        Returns
        -------
        ndarray of shape (m,)
            Non-negative, float64.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        InputError
            ``X`` of the wrong shape or dtype, or a bad ``target``.
        """
        self._check_fitted()
        phi = self.model_.features(X)
        r, x = self._test_gradient_factors(phi, self.resolve_target(target, phi, y))
        return blockwise_forms(self.inverse_hessian_, r, x, progress=self.progress)[0].cpu().numpy()


def _mean_loss(p: Tensor, y: np.ndarray) -> float:
    """Mean cross-entropy of the training labels under ``p`` (a fit-report diagnostic)."""
    p, y_t = p.cpu(), torch.as_tensor(y)
    rows = torch.arange(p.shape[0])
    if p.shape[1] == 1:
        p_label = torch.where(y_t == 1, p[:, 0], 1 - p[:, 0])
    else:
        p_label = p[rows, y_t]
    return float(-torch.log(p_label.clamp_min(1e-300)).mean())

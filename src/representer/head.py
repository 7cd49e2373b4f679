"""Math of a linear classification head trained with cross-entropy, in float64.

Notation (``spec/algorithms.md`` §1): ``φ̃ = [φ; 1]`` is a feature row with the bias folded in as a
ones column, ``Θ`` is the ``(K, D)`` head (``D`` counts the ones column), logits are
``z = Θ φ̃``.

* ``K >= 2``: softmax head, ``p = softmax(z)``, targets are one-hot labels or soft teacher
  probabilities ``q``; residual ``r = p − q`` (``∂ℓ/∂z``); per-example curvature
  ``Λ = diag(p) − p pᵀ`` (``∂²ℓ/∂z²``, independent of the target).
* ``K == 1``: binary sigmoid head, ``p = σ(z)``, target ``q ∈ [0, 1]``; ``r = p − q``,
  ``Λ = p (1 − p)``.

A parameter vector is ``vec(Θ)``, rows stacked: index ``k·D + j``. The per-example head gradient is
``g_i = vec(r_i φ̃_iᵀ) = r_i ⊗ φ̃_i`` and the (Gauss–Newton = true) Hessian of the mean loss is the
Kronecker sum ``H = (1/n) Σ_i Λ_i ⊗ φ̃_i φ̃_iᵀ``. Everything here works on torch tensors so that it
runs on CPU or CUDA; callers pass float64.

Classes and head outputs: a binary head has one logit ``z`` for class 1 and ``−z`` for class 0;
:func:`output_and_sign` and :func:`class_columns` map between the two (shared by the methods and
the engine's index, which sit above this module).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor


def append_ones(phi: Tensor) -> Tensor:
    """``φ̃ = [φ, 1]``: append a ones column (bias folding)."""
    return torch.cat([phi, torch.ones(phi.shape[0], 1, dtype=phi.dtype, device=phi.device)], dim=1)


def logits(phi_tilde: Tensor, theta: Tensor) -> Tensor:
    """Logits ``Φ̃ Θᵀ`` of shape ``(n, K)``."""
    return phi_tilde @ theta.T


def probabilities(z: Tensor) -> Tensor:
    """Softmax over the last axis for ``K >= 2``; sigmoid for a single logit."""
    return torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)


def one_hot_targets(y: Tensor, n_outputs: int) -> Tensor:
    """Targets for labels ``y``: one-hot ``(n, K)`` for softmax, ``y`` as a ``(n, 1)`` float for binary."""
    if n_outputs == 1:
        return y.to(torch.float64).reshape(-1, 1)
    return torch.nn.functional.one_hot(y.long(), n_outputs).to(torch.float64)


def mean_cross_entropy(z: Tensor, q: Tensor) -> Tensor:
    """Mean over rows of ``ℓ(z, q)``: ``logsumexp(z) − qᵀz`` (softmax) or BCE-with-logits (binary)."""
    if z.shape[1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(z, q, reduction="mean")
    return (torch.logsumexp(z, dim=1) - (q * z).sum(dim=1)).mean()


def residuals(z: Tensor, q: Tensor) -> Tensor:
    """``r = p − q = ∂ℓ/∂z`` for every row, shape ``(n, K)``."""
    return probabilities(z) - q


def curvature_apply(p: Tensor, v: Tensor) -> Tensor:
    """Row-wise ``Λ_i v_i`` with ``Λ_i = diag(p_i) − p_i p_iᵀ`` (softmax) or ``p_i(1 − p_i)`` (binary)."""
    if p.shape[1] == 1:
        return p * (1 - p) * v
    return p * v - p * (p * v).sum(dim=1, keepdim=True)


def curvature_matrices(p: Tensor) -> Tensor:
    """The ``(n, K, K)`` per-example curvatures ``Λ_i``."""
    if p.shape[1] == 1:
        return (p * (1 - p)).unsqueeze(-1)
    return torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)


def per_example_gradients(phi_tilde: Tensor, r: Tensor) -> Tensor:
    """``G`` with rows ``g_i = vec(r_i φ̃_iᵀ)``, shape ``(n, K·D)``. Call on blocks only: it is n·K·D."""
    return (r.unsqueeze(2) * phi_tilde.unsqueeze(1)).reshape(phi_tilde.shape[0], -1)


def gradient_of_mean_loss(phi_tilde: Tensor, r: Tensor) -> Tensor:
    """``(1/n) Σ_i r_i φ̃_iᵀ`` as a ``(K, D)`` matrix (the gradient of the mean loss in Θ)."""
    return r.T @ phi_tilde / phi_tilde.shape[0]


def hessian_vector_product(phi_tilde: Tensor, p: Tensor, v: Tensor) -> Tensor:
    """``unvec(H vec(V))`` for ``V`` of shape ``(K, D)``, with ``H = (1/n) Σ_i Λ_i ⊗ φ̃_iφ̃_iᵀ``."""
    zv = phi_tilde @ v.T
    return curvature_apply(p, zv).T @ phi_tilde / phi_tilde.shape[0]


def exact_hessian(phi_tilde: Tensor, p: Tensor, *, block_rows: int = 8192) -> Tensor:
    """The exact ``(K·D, K·D)`` Hessian ``(1/n) Σ_i Λ_i ⊗ φ̃_iφ̃_iᵀ`` of the mean loss (undamped).

    Built blockwise over rows: ``Σ_i diag(p_i) ⊗ φ̃φ̃ᵀ`` gives the block diagonal ``Φ̃ᵀ diag(p_k) Φ̃``
    and ``Σ_i p_ip_iᵀ ⊗ φ̃φ̃ᵀ = MᵀM`` with ``M_i = p_i ⊗ φ̃_i``. Memory: ``block_rows · K·D`` floats.
    """
    n, d = phi_tilde.shape
    k = p.shape[1]
    h = torch.zeros(k * d, k * d, dtype=phi_tilde.dtype, device=phi_tilde.device)
    for start in range(0, n, block_rows):
        x = phi_tilde[start : start + block_rows]
        pb = p[start : start + block_rows]
        if k == 1:
            h += (x * (pb * (1 - pb))).T @ x
            continue
        m = (pb.unsqueeze(2) * x.unsqueeze(1)).reshape(x.shape[0], k * d)
        h -= m.T @ m
        for c in range(k):
            h[c * d : (c + 1) * d, c * d : (c + 1) * d] += (x * pb[:, c : c + 1]).T @ x
    return h / n


@dataclass(frozen=True)
class CholeskySolver:
    """Solves ``(H + damping·I) x = b`` with one Cholesky factorisation, in float64.

    ``damping`` is needed for softmax heads: their Hessian is singular along ``1_K ⊗ v`` (logits are
    shift-invariant). The factor ``L`` is kept; ``solve`` takes right-hand sides as columns.
    """

    factor: Tensor
    damping: float

    @classmethod
    def from_matrix(cls, h: Tensor, damping: float) -> "CholeskySolver":
        """Factorise ``h + damping·I``; raise a clear error if it is not positive definite."""
        from .errors import RepresenterError

        eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
        hd = (h + h.T) / 2 + damping * eye
        factor, info = torch.linalg.cholesky_ex(hd)
        if int(info) != 0:
            raise RepresenterError(
                f"The damped Hessian (damping={damping:g}) is not positive definite; increase `damping` "
                "(softmax heads need damping > 0 because their Hessian is singular along shifts of all logits)."
            )
        return cls(factor=factor, damping=damping)

    def solve(self, b: Tensor) -> Tensor:
        """``(H + damping·I)⁻¹ b`` for ``b`` of shape ``(K·D,)`` or ``(K·D, m)``."""
        squeeze = b.ndim == 1
        x = torch.cholesky_solve(b.reshape(b.shape[0], -1), self.factor)
        return x[:, 0] if squeeze else x


@dataclass(frozen=True)
class KroneckerFactors:
    """K-FAC factors of the head Hessian, ``H ≈ S ⊗ A``.

    ``A = (1/n) Σ_i φ̃_iφ̃_iᵀ`` (``D × D``) and ``S = (1/n) Σ_i Λ_i`` (``K × K``, the expected
    curvature of the logits, which for cross-entropy is the true Fisher's output factor). The
    eigendecompositions ``S = Q_S diag(s) Q_Sᵀ`` and ``A = Q_A diag(a) Q_Aᵀ`` are kept so that
    K-FAC (eigenvalues ``s_k a_j``) and EK-FAC (eigenvalues re-fitted in the Kronecker eigenbasis,
    George et al. 2018) share one representation.
    """

    q_s: Tensor
    s: Tensor
    q_a: Tensor
    a: Tensor

    @classmethod
    def fit(cls, phi_tilde: Tensor, p: Tensor) -> "KroneckerFactors":
        n = phi_tilde.shape[0]
        a_mat = phi_tilde.T @ phi_tilde / n
        s_mat = curvature_matrices(p).mean(dim=0)
        s, q_s = torch.linalg.eigh((s_mat + s_mat.T) / 2)
        a, q_a = torch.linalg.eigh((a_mat + a_mat.T) / 2)
        return cls(q_s=q_s, s=s.clamp_min(0), q_a=q_a, a=a.clamp_min(0))

    def kfac_eigenvalues(self) -> Tensor:
        """``(K, D)`` eigenvalues ``s_k a_j`` of ``S ⊗ A`` in the Kronecker eigenbasis."""
        return self.s[:, None] * self.a[None, :]

    def ekfac_eigenvalues(self, phi_tilde: Tensor, p: Tensor) -> Tensor:
        """``(K, D)`` EK-FAC eigenvalues: the exact diagonal of ``H`` in the Kronecker eigenbasis.

        ``λ_kj = (1/n) Σ_i (q_kᵀ Λ_i q_k)(a_jᵀ φ̃_i)²`` with ``q_k``, ``a_j`` the eigenvectors of
        ``S`` and ``A``; this is the best diagonal fit of the exact Hessian in that basis.
        """
        n = phi_tilde.shape[0]
        lam_q = (self.q_s * curvature_apply_batched(p, self.q_s)).sum(dim=1)
        proj = (phi_tilde @ self.q_a) ** 2
        return lam_q.T @ proj / n

    def rotate(self, m: Tensor) -> Tensor:
        """``Q_Sᵀ M Q_A`` for ``M`` of shape ``(..., K, D)``: coordinates in the Kronecker eigenbasis."""
        return self.q_s.T @ m @ self.q_a

    def unrotate(self, m: Tensor) -> Tensor:
        """Inverse of :meth:`rotate`: ``Q_S M Q_Aᵀ``."""
        return self.q_s @ m @ self.q_a.T


def curvature_apply_batched(p: Tensor, vectors: Tensor) -> Tensor:
    """``Λ_i v`` for every row ``i`` and every column ``v`` of ``vectors`` (``(K, J)``): ``(n, K, J)``."""
    if p.shape[1] == 1:
        return (p * (1 - p)).unsqueeze(-1) * vectors.unsqueeze(0)
    pv = p @ vectors
    return p.unsqueeze(2) * vectors.unsqueeze(0) - p.unsqueeze(2) * pv.unsqueeze(1)


# ---------------------------------------------------------------------- classes ↔ head outputs (binary heads)
def output_and_sign(target: np.ndarray, n_outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Head output index and sign per explained class.

    Softmax heads: output ``c``, sign ``+1``. Binary (one-logit) heads: class 1 is ``+z`` and
    class 0 is ``−z``, so the output is 0 and the sign is ``+1`` or ``−1``.
    """
    target = np.asarray(target, dtype=np.int64)
    if n_outputs == 1:
        return torch.zeros(len(target), dtype=torch.long), torch.as_tensor(np.where(target == 1, 1.0, -1.0))
    return torch.as_tensor(target), torch.ones(len(target), dtype=torch.float64)


def class_columns(per_output: np.ndarray, *, probabilities: bool = False) -> np.ndarray:
    """Expand a ``(n, 1)`` per-output array of a binary head to ``(n, 2)`` per-class columns.

    Coefficients of the class-0 logit ``−z`` are the negated class-1 ones; probabilities are
    ``(1 − p, p)``. Softmax arrays ``(n, K ≥ 2)`` are returned unchanged.
    """
    if per_output.shape[1] != 1:
        return per_output
    col = per_output[:, 0]
    return np.stack([1 - col, col] if probabilities else [-col, col], axis=1)

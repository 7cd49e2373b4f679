"""Head math against torch.autograd / torch.func and brute force, for softmax and sigmoid heads."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, vmap

import representer.head as hm
from representer.errors import RepresenterError

HEADS = [pytest.param(3, id="softmax-K3"), pytest.param(1, id="sigmoid-K1")]


def _problem(k: int, n: int = 13, d: int = 4, seed: int = 0):
    """Random ``φ̃`` (with ones column), head ``Θ`` (K, d+1) and soft targets ``q`` (rows sum to 1)."""
    g = torch.Generator().manual_seed(seed)
    phi_tilde = hm.append_ones(torch.randn(n, d, generator=g, dtype=torch.float64))
    theta = torch.randn(k, d + 1, generator=g, dtype=torch.float64)
    q = hm.probabilities(3 * torch.randn(n, k, generator=g, dtype=torch.float64))
    return phi_tilde, theta, q


def _mean_loss(phi_tilde: torch.Tensor, q: torch.Tensor):
    """``vec(Θ) ↦`` mean cross-entropy, written with torch's own losses (independent of ``head``)."""
    k = q.shape[1]

    def loss(theta_vec: torch.Tensor) -> torch.Tensor:
        z = phi_tilde @ theta_vec.reshape(k, -1).T
        if k == 1:
            return torch.nn.functional.binary_cross_entropy_with_logits(z, q)
        return torch.nn.functional.cross_entropy(z, q)

    return loss


def test_append_ones_and_logits():
    phi = torch.arange(6, dtype=torch.float64).reshape(3, 2)
    x = hm.append_ones(phi)
    assert torch.equal(x[:, :2], phi) and torch.equal(x[:, 2], torch.ones(3, dtype=torch.float64))
    theta = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    assert torch.allclose(hm.logits(x, theta)[:, 0], phi @ theta[0, :2] + 3.0)


@pytest.mark.parametrize("k", HEADS)
def test_mean_cross_entropy_matches_torch_losses(k):
    phi_tilde, theta, q = _problem(k)
    expected = _mean_loss(phi_tilde, q)(theta.reshape(-1))
    assert torch.allclose(hm.mean_cross_entropy(hm.logits(phi_tilde, theta), q), expected, rtol=1e-14)


@pytest.mark.parametrize("k", HEADS)
def test_residuals_and_curvatures_are_the_logit_derivatives(k):
    _, _, q = _problem(k)
    z = torch.randn(q.shape, dtype=torch.float64)

    def loss_of_logits(zi, qi):
        if k == 1:
            return torch.nn.functional.binary_cross_entropy_with_logits(zi, qi)
        return torch.nn.functional.cross_entropy(zi[None], qi[None])

    grads = vmap(grad(loss_of_logits))(z, q)
    hessians = vmap(hessian(loss_of_logits))(z, q)
    p = hm.probabilities(z)
    assert torch.allclose(hm.residuals(z, q), grads, atol=1e-14)
    assert torch.allclose(hm.curvature_matrices(p), hessians, atol=1e-14)
    v = torch.randn(q.shape, dtype=torch.float64)
    assert torch.allclose(hm.curvature_apply(p, v), torch.einsum("nij,nj->ni", hessians, v), atol=1e-14)
    vectors = torch.randn(k, 5, dtype=torch.float64)
    assert torch.allclose(hm.curvature_apply_batched(p, vectors), hessians @ vectors, atol=1e-14)


def test_one_hot_targets():
    y = torch.tensor([2, 0, 1])
    assert torch.equal(hm.one_hot_targets(y, 3), torch.eye(3, dtype=torch.float64)[[2, 0, 1]])
    assert torch.equal(hm.one_hot_targets(torch.tensor([1, 0]), 1), torch.tensor([[1.0], [0.0]], dtype=torch.float64))


@pytest.mark.parametrize("k", HEADS)
def test_per_example_and_mean_gradients_match_autograd(k):
    phi_tilde, theta, q = _problem(k)
    r = hm.residuals(hm.logits(phi_tilde, theta), q)

    def loss_one(theta_vec, x, qi):
        return _mean_loss(x[None], qi[None])(theta_vec)

    expected = vmap(grad(loss_one), in_dims=(None, 0, 0))(theta.reshape(-1), phi_tilde, q)
    assert torch.allclose(hm.per_example_gradients(phi_tilde, r), expected, atol=1e-13)
    mean_grad = grad(_mean_loss(phi_tilde, q))(theta.reshape(-1))
    assert torch.allclose(hm.gradient_of_mean_loss(phi_tilde, r).reshape(-1), mean_grad, atol=1e-14)


@pytest.mark.parametrize("k", HEADS)
@pytest.mark.parametrize("block_rows", [3, 8192])
def test_exact_hessian_and_hvp_match_torch_func_hessian(k, block_rows):
    phi_tilde, theta, q = _problem(k)
    expected = hessian(_mean_loss(phi_tilde, q))(theta.reshape(-1))
    p = hm.probabilities(hm.logits(phi_tilde, theta))
    h = hm.exact_hessian(phi_tilde, p, block_rows=block_rows)
    assert torch.allclose(h, expected, atol=1e-13)
    v = torch.randn(theta.shape, dtype=torch.float64)
    assert torch.allclose(hm.hessian_vector_product(phi_tilde, p, v).reshape(-1), expected @ v.reshape(-1), atol=1e-13)


def test_softmax_hessian_is_singular_along_logit_shifts():
    phi_tilde, theta, _ = _problem(3)
    p = hm.probabilities(hm.logits(phi_tilde, theta))
    shift = torch.ones(3, 1, dtype=torch.float64) * torch.randn(1, phi_tilde.shape[1], dtype=torch.float64)
    assert hm.hessian_vector_product(phi_tilde, p, shift).abs().max() < 1e-14


@pytest.mark.parametrize("k", HEADS)
def test_cholesky_solver_solves_the_damped_system(k):
    phi_tilde, theta, _ = _problem(k)
    p = hm.probabilities(hm.logits(phi_tilde, theta))
    h = hm.exact_hessian(phi_tilde, p)
    damped = h + 0.01 * torch.eye(h.shape[0], dtype=torch.float64)
    solver = hm.CholeskySolver.from_matrix(h, damping=0.01)
    b = torch.randn(h.shape[0], 4, dtype=torch.float64)
    assert torch.allclose(solver.solve(b), torch.linalg.solve(damped, b), rtol=1e-10, atol=1e-12)
    assert torch.allclose(solver.solve(b[:, 0]), torch.linalg.solve(damped, b[:, 0]), rtol=1e-10, atol=1e-12)
    assert solver.solve(b[:, 0]).shape == (h.shape[0],)


def test_cholesky_solver_refuses_an_indefinite_matrix():
    with pytest.raises(RepresenterError, match="damping"):
        hm.CholeskySolver.from_matrix(-torch.eye(4, dtype=torch.float64), damping=0.5)


def _kron_basis(factors: hm.KroneckerFactors) -> torch.Tensor:
    """``Q_S ⊗ Q_A``: columns are the Kronecker eigenvectors in the row-stacked ``vec`` order."""
    return torch.kron(factors.q_s, factors.q_a)


@pytest.mark.parametrize("k", HEADS)
def test_kfac_factors_and_eigenvalues_match_brute_force(k):
    phi_tilde, theta, _ = _problem(k, n=30)
    p = hm.probabilities(hm.logits(phi_tilde, theta))
    factors = hm.KroneckerFactors.fit(phi_tilde, p)
    n = phi_tilde.shape[0]
    a_mat = phi_tilde.T @ phi_tilde / n
    s_mat = sum(hm.curvature_matrices(p)[i] for i in range(n)) / n
    assert torch.allclose(factors.q_a @ torch.diag(factors.a) @ factors.q_a.T, a_mat, atol=1e-13)
    assert torch.allclose(factors.q_s @ torch.diag(factors.s) @ factors.q_s.T, s_mat, atol=1e-13)
    kfac = torch.kron(s_mat, a_mat)
    basis = _kron_basis(factors)
    assert torch.allclose(basis.T @ kfac @ basis, torch.diag(factors.kfac_eigenvalues().reshape(-1)), atol=1e-13)
    expected = torch.linalg.eigvalsh(kfac).clamp_min(0).sort().values
    assert torch.allclose(factors.kfac_eigenvalues().reshape(-1).sort().values, expected, atol=1e-13)


@pytest.mark.parametrize("k", HEADS)
def test_ekfac_eigenvalues_are_the_diagonal_of_the_rotated_exact_hessian(k):
    phi_tilde, theta, _ = _problem(k, n=30)
    p = hm.probabilities(hm.logits(phi_tilde, theta))
    factors = hm.KroneckerFactors.fit(phi_tilde, p)
    basis = _kron_basis(factors)
    rotated = basis.T @ hm.exact_hessian(phi_tilde, p) @ basis
    assert torch.allclose(factors.ekfac_eigenvalues(phi_tilde, p).reshape(-1), torch.diagonal(rotated), atol=1e-13)


def test_rotate_is_the_kronecker_change_of_basis_and_unrotate_inverts_it():
    phi_tilde, theta, _ = _problem(3, n=30)
    factors = hm.KroneckerFactors.fit(phi_tilde, hm.probabilities(hm.logits(phi_tilde, theta)))
    m = torch.randn(2, 3, phi_tilde.shape[1], dtype=torch.float64)
    rotated = factors.rotate(m)
    assert torch.allclose(rotated[1].reshape(-1), _kron_basis(factors).T @ m[1].reshape(-1), atol=1e-13)
    assert torch.allclose(factors.unrotate(rotated), m, atol=1e-13)

"""The full-model machinery: per-example gradients, projections, curvature products and inverse backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from representer.errors import ModelError
from representer.fullmodel import (
    ConjugateGradient,
    ConvergenceWarning,
    Curvature,
    EKFACInverse,
    ExactInverse,
    GradientComputer,
    LabelledData,
    LiSSA,
    Network,
    ParameterSet,
    RandomProjector,
    fit_ekfac,
)
from representer.fullmodel.network import curvature_factors, sampled_curvature_factors
from representer.zoo import BiLSTMClassifier

CPU = torch.device("cpu")


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 10)).eval()


def network(net: nn.Module, params=None) -> Network:
    return Network(net, ParameterSet.select(net, params), device=CPU, dtype=torch.float64)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.random((24, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 24)


def brute_force_gradient(net: Network, x, c: int) -> np.ndarray:
    leaves = [t.detach().requires_grad_(True) for t in net.tensors]
    z = net.forward(leaves, net.prepare(x))
    loss = nn.functional.cross_entropy(z, torch.tensor([c]))
    return net.params.flatten(torch.autograd.grad(loss, leaves)).numpy()


def test_layer_route_matches_vmap_and_brute_force(images):
    X, y = images
    net = network(tiny_cnn())
    data = LabelledData(X, y, batch_size=10)
    layers = GradientComputer(net)
    g_layers = layers.matrix(data, dtype=np.float64)
    assert layers.route == "layers"
    vmapped = GradientComputer(net)
    vmapped._slots = None
    g_vmap = vmapped.matrix(data, dtype=np.float64)
    assert vmapped.route == "vmap"
    np.testing.assert_allclose(g_layers, g_vmap, atol=1e-12)
    np.testing.assert_allclose(g_layers[5], brute_force_gradient(net, torch.as_tensor(X[5:6]), int(y[5])), atol=1e-12)


def test_lstm_with_packed_sequences_falls_back_to_a_loop():
    torch.manual_seed(0)
    model = BiLSTMClassifier(vocab_size=15, embed_dim=4, hidden=3, n_classes=2).eval()
    X = {"input_ids": np.random.default_rng(0).integers(1, 15, (5, 6)), "lengths": np.array([6, 2, 3, 1, 4])}
    net = network(model)
    computer = GradientComputer(net)
    g = computer.matrix(LabelledData(X, np.array([0, 1, 1, 0, 1]), batch_size=5), dtype=np.float64)
    assert computer.route == "loop"
    row = {k: torch.as_tensor(v[1:2]) for k, v in X.items()}
    np.testing.assert_allclose(g[1], brute_force_gradient(net, row, 1), atol=1e-12)


def test_parameter_subset_is_the_matching_block(images):
    X, y = images
    full = network(tiny_cnn())
    head = network(tiny_cnn(), params=["4"])
    data = LabelledData(X, y, batch_size=24)
    g_full = GradientComputer(full).matrix(data, dtype=np.float64)
    g_head = GradientComputer(head).matrix(data, dtype=np.float64)
    assert head.params.names == ("4.weight", "4.bias")
    np.testing.assert_allclose(g_head, g_full[:, -g_head.shape[1] :], atol=1e-12)


def test_projection_is_seeded_chunked_and_norm_preserving():
    g = torch.randn(3, 1000, dtype=torch.float64)
    a = RandomProjector(1000, 64, seed=3, chunk_rows=128, cache_bytes=0)
    b = RandomProjector(1000, 64, seed=3, chunk_rows=128)
    torch.testing.assert_close(a.project(g), b.project(g))
    torch.testing.assert_close(a.project(g), g @ a.matrix().double())
    assert not torch.equal(RandomProjector(1000, 64, seed=4, chunk_rows=128).matrix(), a.matrix())
    rademacher = RandomProjector(1000, 64, kind="rademacher").matrix()
    assert set(np.unique(rademacher.numpy() * 8).tolist()) == {-1.0, 1.0}
    wide = RandomProjector(1000, 4000, seed=0, chunk_rows=300)
    ratio = (wide.project(g).norm(dim=1) / g.norm(dim=1)).numpy()
    np.testing.assert_allclose(ratio, 1.0, atol=0.06)


def test_ggn_routes_agree_and_equal_hessian_for_a_linear_model(images):
    X, y = images
    net = network(tiny_cnn())
    data = LabelledData(X, y, batch_size=10)
    pseudo = Curvature(net, data, "ggn")
    autograd = Curvature(net, data, "ggn")
    autograd.pseudo = False
    v = torch.randn(2, net.params.n_params, dtype=torch.float64)
    torch.testing.assert_close(pseudo.matvec(v), autograd.matvec(v))
    torch.manual_seed(1)
    linear = network(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval())
    ggn = Curvature(linear, data, "ggn").matrix()
    hessian = Curvature(linear, data, "hessian").matrix(chunk=256)
    torch.testing.assert_close(ggn, hessian)


def test_cg_matches_exact_and_lissa_converges_or_warns(images):
    X, y = images
    net = network(tiny_cnn())
    curvature = Curvature(net, LabelledData(X, y, batch_size=24), "ggn")
    v = torch.randn(3, net.params.n_params, dtype=torch.float64)
    exact = ExactInverse.fit(curvature, damping=0.1).solve(v)
    cg = ConjugateGradient(curvature, 0.1, tol=1e-12, max_iter=2000)
    x = cg.solve(v)
    assert cg.report["converged"]
    assert float((x - exact).norm() / exact.norm()) < 1e-6
    lissa = LiSSA(curvature, 0.1, depth=4000)
    np.testing.assert_allclose(lissa.solve(v).numpy(), exact.numpy(), rtol=0, atol=1e-6 * float(exact.abs().max()))
    with pytest.warns(ConvergenceWarning, match="truncated"):
        LiSSA(curvature, 0.1, depth=5).solve(v)


def test_ekfac_is_exact_when_the_curvature_is_a_kronecker_product():
    """One Linear layer with zero weights: p is uniform, Λ_i ≡ Λ, so the GGN is Λ ⊗ A exactly."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    layer = nn.Linear(5, 3)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    net = network(layer.eval())
    data = LabelledData(X, y, batch_size=16)
    ekfac = EKFACInverse(fit_ekfac(net, data), damping=0.01)
    exact = ExactInverse.fit(Curvature(net, data, "ggn"), damping=0.01)
    v = torch.randn(4, net.params.n_params, dtype=torch.float64)
    torch.testing.assert_close(ekfac.solve(v), exact.solve(v))
    quad, norm_sq = ekfac.forms(v)
    solved = ekfac.solve(v)
    torch.testing.assert_close(quad, (solved * v).sum(dim=1))
    torch.testing.assert_close(norm_sq, (solved * solved).sum(dim=1))


def test_sampled_curvature_factors_are_unbiased_and_sampled_ekfac_converges(images):
    z = torch.tensor([[0.3, -1.0, 2.0], [0.0, 0.5, -0.5]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    c = sampled_curvature_factors(z, 200000, gen)
    exact = curvature_factors(z)
    torch.testing.assert_close(c.transpose(1, 2) @ c, exact.transpose(1, 2) @ exact, atol=3e-3, rtol=0)
    X, y = images
    net = network(tiny_cnn())
    data = LabelledData(X, y, batch_size=24)
    v = torch.randn(2, net.params.n_params, dtype=torch.float64)
    reference = EKFACInverse(fit_ekfac(net, data), 0.1).solve(v)
    sampled = EKFACInverse(fit_ekfac(net, data, samples=400, seed=1), 0.1).solve(v)
    assert float((sampled - reference).norm() / reference.norm()) < 0.1


def test_ekfac_refuses_layers_it_does_not_model():
    model = BiLSTMClassifier(vocab_size=15, embed_dim=4, hidden=3, n_classes=2).eval()
    data = LabelledData({"input_ids": np.ones((2, 3), dtype=np.int64), "lengths": np.array([3, 2])}, np.array([0, 1]), 2)
    with pytest.raises(ModelError, match="nn.Linear and nn.Conv2d"):
        fit_ekfac(network(model), data)
    with pytest.raises(ModelError, match="weight and bias together"):
        fit_ekfac(network(tiny_cnn(), params=["4.weight"]), LabelledData(np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1]), 2))

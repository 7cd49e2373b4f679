"""Feature-level views: LRP conservation and seeds, the sensitivity-sum identity, figures, errors."""

import copy

import numpy as np
import pytest
import torch
from captum.attr._utils.lrp_rules import EpsilonRule
from torch import nn

from representer.attribution import (
    SmoothGrad,
    figure_png,
    lrp_figure,
    lrp_pair_relevance,
    pair_figure,
    sensitivity_figure,
    sensitivity_maps,
)
from representer.errors import InputError, ModelError, StaleStateError
from representer.head import class_columns
from representer.methods.dualview import DualView
from representer.methods.rps_l2 import RPSL2
from representer.models import Features, TorchClassifier


def images(n, seed, side=6):
    return np.random.default_rng(seed).random((n, 1, side, side)).astype(np.float32)


def mlp(bias: bool, n_out: int = 3, seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(36, 16, bias=bias), nn.ReLU(), nn.Linear(16, 8, bias=bias), nn.ReLU(), nn.Linear(8, n_out, bias=bias)
        ).eval()


def cnn() -> nn.Sequential:
    """Bias-free conv → ReLU → max-pool → adaptive avg-pool → flatten → linear → ReLU → head."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(3),
            nn.Flatten(), nn.Linear(36, 10, bias=False), nn.ReLU(), nn.Linear(10, 3, bias=False),
        ).eval()


def labels_of(net, X):
    with torch.no_grad():
        return net(torch.as_tensor(X)).argmax(1).numpy()


@pytest.fixture(scope="module")
def dualview_mlp():
    net = mlp(bias=False)
    X = images(40, 0)
    y = labels_of(net, X)
    y[:6] = (y[:6] + 1) % 3  # a few margin violators so that β has mass
    return DualView(TorchClassifier(net), C=0.5, tol=1e-6, dtype="float64").fit(X, y), X, images(3, 1)


def support(ex, k=4):
    return ex.support_[:k]


# ---------------------------------------------------------------------------- LRP
def test_lrp_conserves_the_standardized_seed_on_a_bias_free_relu_mlp(dualview_mlp):
    ex, X, X_test = dualview_mlp
    idx = support(ex)
    rel = lrp_pair_relevance(ex, X_test[:1], X, idx, target=1)
    seed_totals = np.stack([rel.test_seed.sum(1), rel.train_seed.sum(1)], axis=1)
    np.testing.assert_allclose(rel.conservation_delta, 0.0, atol=1e-6 * np.abs(seed_totals).max())
    np.testing.assert_allclose(rel.test_maps.reshape(len(idx), -1).sum(1), seed_totals[:, 0], rtol=1e-6)
    np.testing.assert_allclose(rel.scores, ex.attribute(X_test[:1], target=1)[0, idx], rtol=1e-9)
    # the seed is the DualView score split per feature: β (z_i/s) ⊙ φ_t, plus an input-free offset
    phi_t = ex.model_.features(X_test[:1])[0]
    z_i = ex.train_z()[idx]
    expected = ex.beta_[idx, 1][:, None] * z_i * ex.inv_scale_ * phi_t
    np.testing.assert_allclose(rel.test_seed, expected, rtol=1e-12)
    np.testing.assert_allclose(rel.test_offset, -ex.beta_[idx, 1] * (z_i @ (ex.mean_ * ex.inv_scale_)), rtol=1e-9)
    assert np.all(rel.test_seed[:, phi_t == 0] == 0)  # inactive units get no relevance
    np.testing.assert_allclose(rel.train_seed.sum(1) + rel.train_offset, rel.scores, rtol=1e-9)


def test_lrp_raw_seed_is_equation_7_read_literally(dualview_mlp):
    ex, X, X_test = dualview_mlp
    idx = support(ex, 3)
    rel = lrp_pair_relevance(ex, X_test[1:2], X, idx, target=0, seed="raw")
    phi_t = ex.model_.features(X_test[1:2])[0]
    phi_i = ex.train_features_[idx]
    np.testing.assert_allclose(rel.test_seed, ex.beta_[idx, 0][:, None] * phi_i * phi_t, rtol=1e-12)
    np.testing.assert_allclose(rel.train_seed, rel.test_seed, rtol=1e-12)
    np.testing.assert_allclose(rel.conservation_delta, 0.0, atol=1e-6 * np.abs(rel.test_seed.sum(1)).max())


def test_lrp_conserves_relevance_through_conv_and_pooling_layers():
    net = cnn()
    X = images(30, 2)
    y = labels_of(net, X)
    y[:5] = (y[:5] + 2) % 3
    ex = DualView(TorchClassifier(net), C=0.5, tol=1e-6).fit(X, y)
    idx = support(ex, 3)
    rel = lrp_pair_relevance(ex, images(1, 3), X, idx)
    totals = np.abs(np.stack([rel.test_seed.sum(1), rel.train_seed.sum(1)], axis=1)).max()
    np.testing.assert_allclose(rel.conservation_delta, 0.0, atol=1e-6 * totals)
    assert rel.test_maps.shape == (3, 1, 6, 6) and rel.train_maps.shape == (3, 1, 6, 6)


def test_lrp_train_map_of_a_pair_is_its_test_map_with_roles_swapped(dualview_mlp):
    """Seeding pair (t, i) on the training side equals seeding pair (i, t) on the test side (raw kernel is symmetric)."""
    ex, X, _ = dualview_mlp
    i, j = support(ex, 2)
    forward = lrp_pair_relevance(ex, X[j : j + 1], X, [i], target=0, seed="raw")
    backward = lrp_pair_relevance(ex, X[i : i + 1], X, [j], target=0, seed="raw")
    scale = ex.beta_[j, 0] / ex.beta_[i, 0]
    np.testing.assert_allclose(forward.train_maps[0] * scale, backward.test_maps[0], rtol=1e-6, atol=1e-12)


def test_lrp_rejects_layers_without_a_rule_unless_one_is_given():
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 8, bias=False), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3, bias=False)).eval()
    X = images(20, 4)
    ex = DualView(TorchClassifier(net), C=0.5).fit(X, labels_of(net, X))
    with pytest.raises(ModelError, match="LayerNorm"):
        lrp_pair_relevance(ex, X[:1], X, [0, 1])
    rel = lrp_pair_relevance(ex, X[:1], X, [0, 1], rules={nn.LayerNorm: EpsilonRule})
    assert np.all(np.isfinite(rel.test_maps))


def test_lrp_input_errors(dualview_mlp):
    ex, X, X_test = dualview_mlp
    with pytest.raises(InputError, match="x_test"):
        lrp_pair_relevance(ex, X_test[:2], X, [0])
    with pytest.raises(InputError, match="train_indices"):
        lrp_pair_relevance(ex, X_test[:1], X, [len(X)])
    with pytest.raises(StaleStateError, match="X_train"):
        lrp_pair_relevance(ex, X_test[:1], X[::-1].copy(), [0, 1])
    with pytest.raises(InputError, match="seed"):
        lrp_pair_relevance(ex, X_test[:1], X, [0], seed="zennit")
    rng = np.random.default_rng(0)
    plain = DualView(Features(rng.normal(size=(3, 4)))).fit(rng.normal(size=(20, 4)), rng.integers(0, 3, 20))
    with pytest.raises(ModelError, match="TorchClassifier"):
        lrp_pair_relevance(plain, np.zeros((1, 4)), np.zeros((20, 4)), [0])


# ---------------------------------------------------------------------------- sensitivity
@pytest.fixture(scope="module")
def rps_mlp():
    net = mlp(bias=True, seed=3)
    X = images(30, 5)
    return RPSL2(TorchClassifier(net), lam=0.01, dtype="float64").fit(X, labels_of(net, X)), net, X, images(2, 6)


def reconstructed_logit_gradient(net, alpha_c, phi_tilde_train, x):
    """∂/∂x of (Σ_i α_ic φ̃_i)ᵀ φ̃(x), by autograd through the network's feature part."""
    w = torch.as_tensor(alpha_c @ phi_tilde_train, dtype=torch.float64)
    features = copy.deepcopy(nn.Sequential(*list(net.children())[:-1])).double()
    x = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)
    (features(x)[0] @ w[:-1] + w[-1]).backward()
    return x.grad[0].numpy()


def test_sensitivity_maps_sum_to_the_gradient_of_the_reconstructed_logit(rps_mlp):
    ex, net, X, X_test = rps_mlp
    maps = sensitivity_maps(ex, X_test[:1], np.arange(len(X)), target=2)
    expected = reconstructed_logit_gradient(net, ex.alpha_[:, 2], ex.train_features_tilde(), X_test[:1])
    np.testing.assert_allclose(maps.total, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(maps.maps.sum(0), maps.total, rtol=1e-9, atol=1e-12 * np.abs(maps.total).max())
    np.testing.assert_allclose(maps.scores, ex.attribute(X_test[:1], target=2)[0], rtol=1e-9)
    one = sensitivity_maps(ex, X_test[:1], [7], target=2)
    np.testing.assert_allclose(one.maps[0], maps.maps[7], rtol=1e-12)


def test_smoothgrad_keeps_the_decomposition_exact(rps_mlp):
    ex, _, X, X_test = rps_mlp
    smooth = sensitivity_maps(ex, X_test[1:2], np.arange(len(X)), smoothgrad=SmoothGrad(n_samples=4, noise_level=0.2, seed=3))
    np.testing.assert_allclose(smooth.maps.sum(0), smooth.total, rtol=1e-9, atol=1e-12 * np.abs(smooth.total).max())
    plain = sensitivity_maps(ex, X_test[1:2], [0, 5])
    assert not np.allclose(smooth.maps[[0, 5]], plain.maps)  # the noise does something ...
    noiseless = sensitivity_maps(ex, X_test[1:2], [0, 5], smoothgrad=SmoothGrad(n_samples=2, noise_level=0.0))
    np.testing.assert_allclose(noiseless.maps, plain.maps, rtol=1e-12)  # ... and without noise it is the gradient


def test_dualview_sensitivity_total_is_the_gradient_of_the_svm_surrogate(dualview_mlp):
    ex, X, X_test = dualview_mlp
    maps = sensitivity_maps(ex, X_test[2:3], np.arange(len(X)), target=0)
    net = ex.model_.net
    features = copy.deepcopy(nn.Sequential(*list(net.children())[:-1])).double()
    x = torch.as_tensor(X_test[2:3], dtype=torch.float64).requires_grad_(True)
    w = torch.as_tensor(2 * ex.weight_[0] * ex.inv_scale_)  # Σ_i DV = 2 w_cᵀ z (Shark), z affine in φ
    (features(x)[0] @ w).backward()
    np.testing.assert_allclose(maps.total, x.grad[0].numpy(), rtol=1e-6, atol=1e-9 * np.abs(maps.total).max())
    np.testing.assert_allclose(maps.maps.sum(0), maps.total, rtol=1e-9, atol=1e-12 * np.abs(maps.total).max())


def test_binary_head_class_zero_maps_are_negated_class_one_maps():
    net = mlp(bias=True, n_out=1, seed=5)
    X = images(25, 7)
    with torch.no_grad():
        y = (net(torch.as_tensor(X))[:, 0] > 0).long().numpy()
    ex = RPSL2(TorchClassifier(net), lam=0.01).fit(X, y)
    zero = sensitivity_maps(ex, X[:1], [1, 2, 3], target=0)
    one = sensitivity_maps(ex, X[:1], [1, 2, 3], target=1)
    np.testing.assert_allclose(zero.maps, -one.maps, rtol=1e-12)
    np.testing.assert_allclose(one.coefficients, class_columns(ex.alpha_)[[1, 2, 3], 1])


# ---------------------------------------------------------------------------- figures
def test_figures_render_to_png(dualview_mlp, rps_mlp):
    ex, X, X_test = dualview_mlp
    rel = lrp_pair_relevance(ex, X_test[:1], X, support(ex, 3))
    fig = lrp_figure(rel, X_test[:1], X, class_names=["a", "b", "c"])
    assert len(fig.axes) == 3 * 4
    assert figure_png(fig).startswith(b"\x89PNG")
    rps, _, X_rps, X_rps_test = rps_mlp
    sens = sensitivity_maps(rps, X_rps_test[:1], [0, 1])
    fig = sensitivity_figure(sens, X_rps_test[:1], X_rps)
    assert len(fig.axes) == 2 * 3
    flat = pair_figure(np.zeros(64), np.zeros((2, 64)), np.ones((2, 64)), np.ones((2, 64)))
    assert figure_png(flat).startswith(b"\x89PNG")
    with pytest.raises(InputError, match="image_shape"):
        pair_figure(np.zeros(10), np.zeros((1, 10)), np.ones((1, 10)))

"""TracInCP against an independent oracle: plain autograd at each of several distinct checkpoints.

TracIn (Pruthi et al. 2020) is ``Σ_c η_c ⟨∇_θ ℓ(θ_c; z_t), ∇_θ ℓ(θ_c; z_i)⟩`` over saved checkpoints
``θ_c`` with learning rates ``η_c``. The oracle below loads each checkpoint into a fresh copy of the
network, takes one ``torch.autograd.grad`` per example, and sums the weighted dot products; the
checkpoints differ (recorded during real training) and the learning rates are unequal, so an
implementation that ignored either, or used the final weights for the layers it does not
attribute over, fails.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import representer as rp
from representer.errors import InputError

LEARNING_RATES = [0.5, 0.2, 0.05]


@pytest.fixture(scope="module")
def trained():
    """A 16-8-3 MLP and three checkpoints taken during SGD training on 40 points (distinct states)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    checkpoints = []
    for lr in LEARNING_RATES:
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(net(torch.as_tensor(X)), torch.as_tensor(y)).backward()
            opt.step()
        checkpoints.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return net.eval(), X, y, checkpoints


def _oracle(net, checkpoints, rates, X, y, Xt, yt, params):
    """``(m, n)`` TracIn scores and ``(n,)`` self-influence by brute-force autograd."""
    scores = np.zeros((len(Xt), len(X)))
    self_scores = np.zeros(len(X))
    for state, lr in zip(checkpoints, rates):
        model = copy.deepcopy(net).double()
        model.load_state_dict(state)
        chosen = [p for name, p in model.named_parameters() if any(name == q or name.startswith(q + ".") for q in params)]

        def grad(x, label):
            loss = nn.functional.cross_entropy(model(torch.as_tensor(x, dtype=torch.float64)[None]), torch.as_tensor([label]))
            return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, chosen)]).numpy()

        train = np.stack([grad(x, label) for x, label in zip(X, y)])
        test = np.stack([grad(x, label) for x, label in zip(Xt, yt)])
        scores += lr * test @ train.T
        self_scores += lr * (train * train).sum(axis=1)
    return scores, self_scores


@pytest.mark.parametrize("params", [None, ["2"], ["0"]], ids=["all", "head", "first-layer"])
def test_tracin_equals_weighted_autograd_dot_products(trained, params):
    net, X, y, checkpoints = trained
    Xt, yt = X[:5] + 0.1, np.array([0, 1, 2, 0, 1])
    names = params or ["0", "2"]
    expected, expected_self = _oracle(net, checkpoints, LEARNING_RATES, X, y, Xt, yt, names)
    tracin = rp.TracInCP(net, params=params, dtype="float64").fit(X, y, checkpoints=checkpoints, learning_rates=LEARNING_RATES)
    np.testing.assert_allclose(tracin.attribute(Xt, target=yt), expected, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(tracin.self_influence(), expected_self, rtol=1e-7, atol=1e-12)


def test_oracle_is_sensitive_to_checkpoints_and_rates(trained):
    # The oracle itself must see a difference, or the test above could not fail.
    net, X, y, checkpoints = trained
    base = _oracle(net, checkpoints, LEARNING_RATES, X, y, X[:3], y[:3], ["2"])[1]
    equal_rates = _oracle(net, checkpoints, [1.0, 1.0, 1.0], X, y, X[:3], y[:3], ["2"])[1]
    final_only = _oracle(net, [checkpoints[-1]] * 3, LEARNING_RATES, X, y, X[:3], y[:3], ["2"])[1]
    assert np.abs(base - equal_rates).max() > 1e-2 * base.max()
    assert np.abs(base - final_only).max() > 1e-2 * base.max()


def test_head_trajectory_statistics_equal_tracin_on_the_head(trained):
    from representer.checkpoints import as_checkpoints
    from representer.trajectory import network_trajectory

    net, X, y, checkpoints = trained
    trajectory = network_trajectory(rp.TorchClassifier(net), X, y, as_checkpoints(checkpoints, LEARNING_RATES))
    tracin = rp.TracInCP(net, params=["2"], dtype="float64").fit(X, y, checkpoints=checkpoints, learning_rates=LEARNING_RATES)
    np.testing.assert_allclose(trajectory.tracin_head(), tracin.self_influence(), rtol=1e-6)


def test_checkpoints_of_another_architecture_are_refused(trained):
    net, X, y, checkpoints = trained
    other = nn.Sequential(nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 3)).eval()
    with pytest.raises(InputError, match="another architecture|lacks parameters|shape"):
        rp.TracInCP(other).fit(X, y, checkpoints=checkpoints, learning_rates=LEARNING_RATES)
    with pytest.raises(InputError, match="one learning rate per checkpoint"):
        rp.TracInCP(net).fit(X, y, checkpoints=checkpoints, learning_rates=LEARNING_RATES[:2])


def test_a_saved_tracin_scores_at_each_checkpoints_other_layers(trained, tmp_path):
    # the head-only explainer keeps each checkpoint's first layer (checkpoint_context_); a save must too
    net, X, y, checkpoints = trained
    Xt, yt = X[:5] + 0.1, np.array([0, 1, 2, 0, 1])
    expected, _ = _oracle(net, checkpoints, LEARNING_RATES, X, y, Xt, yt, ["2"])
    tracin = rp.TracInCP(net, params=["2"], dtype="float64").fit(X, y, checkpoints=checkpoints, learning_rates=LEARNING_RATES)
    assert tracin.checkpoint_context_.shape == (3, 16 * 8 + 8)
    loaded = rp.load(tracin.save(tmp_path / "tracin"), net)
    np.testing.assert_allclose(loaded.attribute(Xt, target=yt), expected, rtol=1e-7, atol=1e-10)

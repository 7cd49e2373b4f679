"""Full-model explainers: influence against leave-one-out retraining, backend agreement, RelatIF, SIM, TracIn."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import representer as rp
from representer import head as hm
from representer.errors import InputError, ModelError, StaleStateError
from representer.fullmodel.measurement import ClassLogit
from representer.methods.full_model import FullModelInfluence, FullModelRelatIF, FullModelSimilarity, TracInCP
from representer.solvers.softmax_head import fit_softmax_head
from representer.zoo import BiLSTMClassifier, train_classifier

F64 = {"dtype": "float64"}


@pytest.fixture(scope="module")
def digits():
    from representer.datasets import load_digits

    d = load_digits()
    return d.X_train[:160], d.y_train[:160], d.X_test[:6], d.y_test[:6]


@pytest.fixture(scope="module")
def cnn(digits):
    X, y, _, _ = digits
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)
    )
    return train_classifier(net, X, y, epochs=40, lr=1e-2, batch_size=32, weight_decay=1e-3)


def fit_logistic(x: np.ndarray, y: np.ndarray, lam: float, theta0: torch.Tensor | None = None) -> torch.Tensor:
    """argmin (1/n) Σ CE + (λ/2)‖Θ‖² over Θ = [W | b] (bias included), to ‖∇‖ ≤ 1e-12."""
    xt = hm.append_ones(torch.as_tensor(x, dtype=torch.float64))
    q = hm.one_hot_targets(torch.as_tensor(y), 10)

    result = fit_softmax_head(xt, q, lam / 2, theta0=theta0, tol=1e-12)
    assert result.converged
    return result.x


def test_influence_predicts_leave_one_out_on_logistic_regression(digits):
    """Convex case: Δℓ_t(remove i) ≈ I(t, i)/n with damping = the L2 coefficient: rank and scale.

    Removing ``i`` from ``(1/n) Σ_j ℓ_j + (λ/2)‖Θ‖²`` keeps the other points' weights ``1/n``; the
    refit on ``n − 1`` points (a mean over them) does that with the L2 coefficient ``λ·n/(n − 1)``.
    The rank check (Spearman ≥ 0.9 over removals spread across the influence range) and the scale
    check (median ratio of the actual change to ``I/n`` over the most influential removals, as in the
    head test) together catch a wrong sign or a wrong factor in the test or training vectors.
    """
    from representer.datasets import load_digits

    d = load_digits(flat=True)
    x, y, xt = d.X_train[:200], d.y_train[:200], d.X_test[:3]
    lam = 0.01
    theta = fit_logistic(x, y, lam)
    model = nn.Linear(64, 10).double()
    with torch.no_grad():
        model.weight.copy_(theta[:, :-1])
        model.bias.copy_(theta[:, -1])
    explainer = FullModelInfluence(model.eval(), hessian="exact", damping=lam, **F64).fit(x, y)
    scores = explainer.attribute(xt, target="label", y=d.y_test[:3])
    xtt = hm.append_ones(torch.as_tensor(xt, dtype=torch.float64))

    def test_losses(th):
        z = hm.logits(xtt, th)
        return (torch.logsumexp(z, 1) - z[torch.arange(3), torch.as_tensor(d.y_test[:3])]).numpy()

    base = test_losses(theta)
    n = len(y)
    for t in range(3):
        spread = np.argsort(scores[t])[np.linspace(0, n - 1, 16).astype(int)]
        strongest = np.argsort(-np.abs(scores[t]))[:8]
        removed = np.unique(np.concatenate([spread, strongest]))
        refit = lambda i: fit_logistic(np.delete(x, i, 0), np.delete(y, i), lam * n / (n - 1), theta)  # noqa: E731
        actual = dict(zip(removed, (test_losses(refit(i))[t] - base[t] for i in removed)))
        predicted = scores[t] / n
        assert spearmanr([actual[i] for i in spread], predicted[spread])[0] >= 0.9
        ratio = np.median([actual[i] / predicted[i] for i in strongest])
        assert 0.8 < ratio < 1.3, ratio  # the 1/n scale and the sign (second-order terms make LOO a bit larger)


def test_backends_agree_with_exact_on_a_small_cnn(digits, cnn):
    X, y, Xt, _ = digits
    exact = FullModelInfluence(cnn, hessian="exact", damping=0.1, **F64).fit(X, y)
    a_exact = exact.attribute(Xt)
    cg = FullModelInfluence(cnn, hessian="cg", damping=0.1, cg_tol=1e-12, cg_max_iter=2000, **F64).fit(X, y)
    a_cg = cg.attribute(Xt)
    assert np.abs(a_cg - a_exact).max() <= 1e-6 * np.abs(a_exact).max()
    assert cg.solver_report_["converged"]
    lissa = FullModelInfluence(cnn, hessian="lissa", damping=0.1, lissa_depth=1200, lissa_tol=0.05, **F64).fit(X, y).attribute(Xt)
    ekfac = FullModelInfluence(cnn, hessian="ekfac", damping=0.1, **F64).fit(X, y).attribute(Xt)
    identity = FullModelInfluence(cnn, hessian="identity", **F64).fit(X, y).attribute(Xt)
    rho = lambda a: np.mean([spearmanr(a[t], a_exact[t])[0] for t in range(len(Xt))])  # noqa: E731
    assert rho(lissa) > 0.98
    # EK-FAC is block-diagonal over layers; on this 1.4k-parameter net the exact block-diagonal GGN
    # itself reaches only ≈ 0.7 (EK-FAC ≈ 0.87 against that): it must beat the identity (≈ 0.4).
    assert rho(ekfac) > rho(identity) + 0.05
    g = exact._gradients().matrix(rp.fullmodel.LabelledData(X, y, 64), dtype=np.float64)
    np.testing.assert_allclose(exact.self_influence(), np.einsum("ij,ij->i", g, exact.inverse().solve(torch.as_tensor(g)).numpy()))


def test_head_only_parameters_reproduce_head_influence(digits, cnn):
    X, y, Xt, _ = digits
    full = FullModelInfluence(cnn, hessian="exact", damping=0.01, params=["6"], **F64).fit(X, y).attribute(Xt)
    head = rp.methods.influence.InfluenceFunction(cnn, hessian="exact", damping=0.01, **F64).fit(X, y).attribute(Xt)
    # the head explainer reads float32 features from the float32 network; ours runs a float64 copy
    np.testing.assert_allclose(full, head, rtol=0, atol=1e-4 * np.abs(head).max())


def test_relatif_bounds_and_denominators(digits, cnn):
    X, y, Xt, _ = digits
    influence = FullModelInfluence(cnn, hessian="exact", damping=0.1, **F64).fit(X, y)
    scores = influence.attribute(Xt)
    theta = FullModelRelatIF(cnn, kind="theta", hessian="exact", damping=0.1, **F64).fit(X, y)
    loss = FullModelRelatIF(cnn, kind="loss", hessian="exact", damping=0.1, **F64).fit(X, y)
    np.testing.assert_allclose(theta.attribute(Xt), scores / influence.inverse_gradient_norms_, rtol=1e-9)
    np.testing.assert_allclose(loss.attribute(Xt), scores / np.sqrt(influence.train_self_influence_), rtol=1e-9)
    target = influence.network().logits(Xt, 64).argmax(1)
    g_t = influence._gradients().matrix(rp.fullmodel.LabelledData(Xt, target, 64), dtype=np.float64)
    quad_t = np.einsum("ij,ij->i", g_t, influence.inverse().solve(torch.as_tensor(g_t)).numpy())
    assert np.all(np.abs(loss.attribute(Xt)) <= np.sqrt(quad_t)[:, None] * (1 + 1e-9))
    assert np.all(np.abs(theta.attribute(Xt)) <= np.linalg.norm(g_t, axis=1)[:, None] * (1 + 1e-9))
    same = [FullModelRelatIF(cnn, kind=k, hessian="identity", **F64).fit(X, y).attribute(Xt) for k in ("theta", "loss")]
    np.testing.assert_allclose(same[0], same[1])
    cg = FullModelRelatIF(cnn, kind="theta", hessian="cg", damping=0.1, **F64).fit(X, y)
    assert cg.fit_report_["denominators"] == "ekfac"
    ekfac = FullModelRelatIF(cnn, kind="theta", hessian="ekfac", damping=0.1, **F64).fit(X, y)
    np.testing.assert_allclose(cg.denominators_, ekfac.denominators_)


def test_similarity_is_one_sided_cosine_of_logit_gradients(digits, cnn):
    X, y, Xt, _ = digits
    sim = FullModelSimilarity(cnn, **F64).fit(X, y)
    g_train = sim._gradients().matrix(rp.fullmodel.LabelledData(X, y, 64), objective=ClassLogit(), dtype=np.float64)
    target = sim.network().logits(Xt, 64).argmax(1)
    g_test = sim._gradients().matrix(rp.fullmodel.LabelledData(Xt, target, 64), objective=ClassLogit(), dtype=np.float64)
    expected = g_test @ (g_train / np.linalg.norm(g_train, axis=1, keepdims=True)).T
    np.testing.assert_allclose(sim.attribute(Xt), expected, rtol=1e-9)
    np.testing.assert_allclose(sim.self_influence(), np.linalg.norm(g_train, axis=1))
    rp_sim = FullModelSimilarity(cnn, projection_dim=32, seed=1, **F64).fit(X, y)
    R = rp_sim.projector().matrix().double().numpy()
    pt, pi = g_test @ R, g_train @ R
    np.testing.assert_allclose(rp_sim.attribute(Xt), pt @ (pi / np.linalg.norm(pi, axis=1, keepdims=True)).T, rtol=1e-6)


def test_tracin_with_the_final_weights_is_the_gradient_dot_product(digits, cnn):
    X, y, Xt, _ = digits
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    tracin = TracInCP(cnn, **F64).fit(X, y, checkpoints=[state, state], learning_rates=[0.5, 1.5])
    identity = FullModelInfluence(cnn, hessian="identity", **F64).fit(X, y)
    np.testing.assert_allclose(tracin.attribute(Xt), 2 * identity.attribute(Xt), rtol=1e-9)
    np.testing.assert_allclose(tracin.self_influence(), 2 * identity.self_influence(), rtol=1e-9)
    with pytest.raises(InputError, match="one learning rate per checkpoint"):
        TracInCP(cnn).fit(X, y, checkpoints=[state], learning_rates=[])


def test_save_load_and_stale_network(tmp_path, digits, cnn):
    X, y, Xt, _ = digits
    for hessian in ("ekfac", "exact"):
        ex = FullModelRelatIF(cnn, kind="loss", hessian=hessian, damping=0.1, **F64).fit(X, y)
        loaded = rp.load(ex.save(tmp_path / hessian), cnn)
        np.testing.assert_allclose(loaded.attribute(Xt), ex.attribute(Xt))
    changed = copy.deepcopy(cnn)
    with torch.no_grad():
        changed[0].weight.add_(0.1)
    with pytest.raises(StaleStateError, match="different parameters"):
        rp.load(tmp_path / "ekfac", changed)


def test_lstm_and_errors(digits):
    torch.manual_seed(0)
    lstm = BiLSTMClassifier(vocab_size=12, embed_dim=4, hidden=3, n_classes=2).eval()
    rng = np.random.default_rng(0)
    X = {"input_ids": rng.integers(1, 12, (8, 5)), "lengths": rng.integers(1, 6, 8)}
    y = rng.integers(0, 2, 8)
    ex = FullModelInfluence(lstm, hessian="cg", damping=0.1, denominators="backend", **F64).fit(X, y)
    assert ex.fit_report_["gradient_route"] == "loop"
    exact = FullModelInfluence(lstm, hessian="exact", damping=0.1, **F64).fit(X, y)
    np.testing.assert_allclose(ex.attribute(X), exact.attribute(X), rtol=1e-6, atol=1e-9)
    with pytest.raises(ModelError, match="denominators='backend'"):
        FullModelRelatIF(lstm, hessian="cg", damping=0.1).fit(X, y)
    with pytest.raises(InputError, match="only array or tensor"):
        ex.save("/tmp/never-written")
    with pytest.raises(ModelError, match="needs a torch nn.Module"):
        FullModelInfluence(rp.Features(np.ones((2, 3)))).fit(np.ones((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(InputError, match="`hessian` must be one of"):
        FullModelInfluence(lstm, hessian="kfac").fit(X, y)

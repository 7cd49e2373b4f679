"""Measurements and losses of the full-model explainers: values, gradients against brute-force autograd, persistence."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import representer as rp
from representer.errors import InputError
from representer.fullmodel import GradientComputer, LabelledData, Network, ParameterSet
from representer.fullmodel.measurement import ClassLogit, CrossEntropy, Margin, Measurement, is_built_in, loss_form
from representer.methods.full_model import FullModelInfluence, FullModelRelatIF, FullModelSimilarity, TracInCP

F64 = {"dtype": "float64"}


@dataclass(frozen=True)
class OneHotSquaredError:
    """A regression-style loss on the logits: ``½‖z − e_c‖²`` (smaller is better)."""

    name: ClassVar[str] = "one_hot_squared_error"
    larger_is_better: ClassVar[bool] = False

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)
        return 0.5 * ((logits - onehot) ** 2).sum(dim=1)


@pytest.fixture(scope="module")
def tiny():
    """A 4-6-3 tanh MLP (51 parameters), 24 training and 5 test points."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(24, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=gen).numpy()
    Xt = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    return net, X.numpy(), y, Xt.numpy()


def _flat_params(net):
    return [p for p in net.parameters()]


def _brute_gradients(net, X, classes, scalar) -> np.ndarray:
    """Per-example ``∇_θ scalar(z(x_i), c_i)`` by one dense autograd call per example."""
    params = _flat_params(net)
    rows = []
    for x, c in zip(torch.as_tensor(X), torch.as_tensor(np.asarray(classes))):
        value = scalar(net(x[None]), c[None]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)]))
    return torch.stack(rows).detach().numpy()


def _brute_hessian(net, X, y, loss) -> np.ndarray:
    """The dense Hessian of the mean ``loss`` over ``(X, y)`` with respect to all parameters."""
    params = _flat_params(net)
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    names = [n for n, _ in net.named_parameters()]

    def mean_loss(theta):
        tensors, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            tensors[name] = theta[start : start + size].reshape(shape)
            start += size
        z = torch.func.functional_call(net, tensors, (torch.as_tensor(X),))
        return loss(z, torch.as_tensor(y)).mean()

    return torch.autograd.functional.hessian(mean_loss, flat).numpy()


def test_the_built_in_measurements_have_their_closed_forms():
    z = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([0, 0])
    np.testing.assert_allclose(Margin()(z, c).numpy(), [1.0 - 3.0, 0.5 - 0.0])
    np.testing.assert_allclose(Margin()(z, torch.tensor([1, 2])).numpy(), [3.0 - 2.0, 0.0 - 0.5])
    np.testing.assert_allclose(ClassLogit()(z, torch.tensor([2, 1])).numpy(), [2.0, -1.0])
    np.testing.assert_allclose(CrossEntropy()(z, c).numpy(), torch.logsumexp(z, 1).numpy() - z[:, 0].numpy())
    one = torch.tensor([[0.7], [-0.2]], dtype=torch.float64)
    np.testing.assert_allclose(Margin()(one, torch.tensor([1, 0])).numpy(), [0.7, 0.2])
    assert not CrossEntropy.larger_is_better and Margin.larger_is_better and ClassLogit.larger_is_better
    assert loss_form(Margin())(z, c).tolist() == (-Margin()(z, c)).tolist()
    assert isinstance(OneHotSquaredError(), Measurement) and not is_built_in(OneHotSquaredError())
    assert all(is_built_in(m) for m in (CrossEntropy(), ClassLogit(), Margin()))


@pytest.mark.parametrize("measurement", [Margin(), OneHotSquaredError(), CrossEntropy()])
def test_per_example_gradients_of_a_measurement_equal_brute_force_autograd(tiny, measurement):
    net, X, y, _ = tiny
    network = Network(net, ParameterSet.select(net, None), device=torch.device("cpu"), dtype=torch.float64)
    computed = GradientComputer(network)
    got = computed.matrix(LabelledData(X, y, 7), objective=measurement, dtype=np.float64)
    assert computed.route == "layers"
    np.testing.assert_allclose(got, _brute_gradients(net, X, y, measurement), rtol=1e-10, atol=1e-13)


def test_the_defaults_are_cross_entropy_and_the_class_logit(tiny):
    """Default scores equal explicit built-ins, and the brute-force cross-entropy / logit formulas of the papers."""
    net, X, y, Xt = tiny
    target = net(torch.as_tensor(Xt)).argmax(1).numpy()
    g = _brute_gradients(net, X, y, lambda z, c: nn.functional.cross_entropy(z, c, reduction="none"))
    g_t = _brute_gradients(net, Xt, target, lambda z, c: nn.functional.cross_entropy(z, c, reduction="none"))
    default = FullModelInfluence(net, hessian="identity", **F64).fit(X, y)
    explicit = FullModelInfluence(net, hessian="identity", loss=CrossEntropy(), measurement=CrossEntropy(), **F64).fit(X, y)
    np.testing.assert_array_equal(default.attribute(Xt), explicit.attribute(Xt))
    np.testing.assert_allclose(default.attribute(Xt), g_t @ g.T, rtol=1e-10)
    assert default.fit_report_["loss"] == "cross_entropy" and default.fit_report_["measurement"] == "cross_entropy"
    sim = FullModelSimilarity(net, **F64).fit(X, y)
    assert sim.loss == ClassLogit() and sim.measurement == ClassLogit()
    l_i = _brute_gradients(net, X, y, lambda z, c: z.gather(1, c[:, None])[:, 0])
    l_t = _brute_gradients(net, Xt, target, lambda z, c: z.gather(1, c[:, None])[:, 0])
    np.testing.assert_allclose(sim.attribute(Xt), l_t @ (l_i / np.linalg.norm(l_i, axis=1, keepdims=True)).T, rtol=1e-10)


def test_a_margin_measurement_is_oriented_so_that_positive_is_helpful(tiny):
    """``a(t, i) = ⟨∇(−margin_t), ∇ℓ_i⟩``: positive when a step on ``i`` raises the margin at ``t``."""
    net, X, y, Xt = tiny
    ex = FullModelInfluence(net, hessian="identity", measurement=Margin(), **F64).fit(X, y)
    target = net(torch.as_tensor(Xt)).argmax(1).numpy()
    g = _brute_gradients(net, X, y, CrossEntropy())
    m_t = _brute_gradients(net, Xt, target, Margin())
    np.testing.assert_allclose(ex.attribute(Xt), -m_t @ g.T, rtol=1e-10)
    step = 1e-4
    i = int(np.argmax(np.abs(ex.attribute(Xt)[0])))
    moved = _gradient_step(net, X[i : i + 1], y[i : i + 1], step)
    with torch.no_grad():
        before, after = (float(Margin()(model(torch.as_tensor(Xt[:1])), torch.as_tensor(target[:1]))[0]) for model in (net, moved))
    assert np.sign(after - before) == np.sign(ex.attribute(Xt)[0, i])


def _gradient_step(net, X, y, lr):
    import copy

    moved = copy.deepcopy(net)
    loss = nn.functional.cross_entropy(moved(torch.as_tensor(X)), torch.as_tensor(y))
    grads = torch.autograd.grad(loss, list(moved.parameters()))
    with torch.no_grad():
        for p, g in zip(moved.parameters(), grads):
            p -= lr * g
    return moved


def test_a_regression_loss_works_through_sim_tracin_and_influence(tiny):
    """A loss of your own (½‖z − e_c‖²) gives the brute-force scores of every method that can use it."""
    net, X, y, Xt = tiny
    se = OneHotSquaredError()
    target = net(torch.as_tensor(Xt)).argmax(1).numpy()
    g = _brute_gradients(net, X, y, se)
    g_t = _brute_gradients(net, Xt, target, se)

    sim = FullModelSimilarity(net, loss=se, measurement=se, **F64).fit(X, y)
    np.testing.assert_allclose(sim.attribute(Xt), g_t @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T, rtol=1e-10)

    state = {k: v.clone() for k, v in net.state_dict().items()}
    tracin = TracInCP(net, loss=se, measurement=se, **F64).fit(X, y, checkpoints=[state], learning_rates=[0.25])
    np.testing.assert_allclose(tracin.attribute(Xt), 0.25 * g_t @ g.T, rtol=1e-10)
    np.testing.assert_allclose(tracin.self_influence(), 0.25 * (g * g).sum(1), rtol=1e-10)

    damping = 2.0  # the untrained net's Hessian has eigenvalues down to −1.1
    hessian = _brute_hessian(net, X, y, se) + damping * np.eye(g.shape[1])
    solved = np.linalg.solve(hessian, g.T).T
    exact = FullModelInfluence(net, hessian="exact", curvature="hessian", damping=damping, loss=se, measurement=se, **F64).fit(X, y)
    np.testing.assert_allclose(exact.attribute(Xt), g_t @ solved.T, rtol=1e-8)
    np.testing.assert_allclose(exact.self_influence(), (g * solved).sum(1), rtol=1e-8)
    cg = FullModelRelatIF(
        net, hessian="cg", curvature="hessian", damping=damping, denominators="backend", loss=se, measurement=se, **F64
    ).fit(X, y)
    np.testing.assert_allclose(cg.attribute(Xt), g_t @ solved.T / np.linalg.norm(solved, axis=1), rtol=1e-6)
    identity = FullModelInfluence(net, hessian="identity", loss=se, measurement=se, **F64).fit(X, y)
    np.testing.assert_allclose(identity.attribute(Xt), g_t @ g.T, rtol=1e-10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hessian": "ekfac"}, "EK-FAC approximates the cross-entropy"),
        ({"hessian": "exact"}, "pass curvature='hessian'"),
        ({"hessian": "cg", "curvature": "hessian"}, "denominators='backend'"),
        ({"hessian": "exact", "curvature": "hessian", "denominators": "ekfac"}, "denominators='backend'"),
    ],
)
def test_the_cross_entropy_curvature_is_refused_for_another_loss(tiny, options, message):
    net, X, y, _ = tiny
    with pytest.raises(InputError, match=message):
        FullModelInfluence(net, loss=OneHotSquaredError(), damping=0.1, **options).fit(X, y)


def test_measurements_are_hyper_parameters(tiny):
    from sklearn.base import clone

    net, X, y, Xt = tiny
    ex = FullModelSimilarity(net, measurement=Margin(), **F64).fit(X, y)
    assert clone(ex).measurement == Margin()
    ex.set_params(measurement=Margin())
    assert hasattr(ex, "kernel_")
    ex.set_params(measurement=ClassLogit())
    assert not hasattr(ex, "kernel_")
    with pytest.raises(InputError, match="`loss` must be a Measurement"):
        FullModelSimilarity(net).set_params(loss="cross_entropy")
    explanation = FullModelSimilarity(net, measurement=Margin(), **F64).fit(X, y).explain(Xt, top_k=2)
    assert explanation.meta["params"]["measurement"] == "margin"


def test_built_in_measurements_are_saved_by_name_and_custom_ones_refused(tiny, tmp_path):
    net, X, y, Xt = tiny
    ex = FullModelInfluence(net, hessian="identity", measurement=Margin(), **F64).fit(X, y)
    ex.save(tmp_path / "margin")
    config = json.loads((tmp_path / "margin" / "config.json").read_text())
    assert config["params"]["measurement"] == "margin" and config["params"]["loss"] == "cross_entropy"
    loaded = rp.load(tmp_path / "margin", net)
    assert loaded.measurement == Margin() and loaded.loss == CrossEntropy()
    np.testing.assert_array_equal(loaded.attribute(Xt), ex.attribute(Xt))
    custom = FullModelInfluence(net, hessian="identity", loss=OneHotSquaredError(), **F64).fit(X, y)
    with pytest.raises(InputError, match="measurement of your own"):
        custom.save(tmp_path / "custom")
    assert not (tmp_path / "custom").exists()

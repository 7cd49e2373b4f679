"""TorchClassifier: every input kind, head detection, CNN / float64 nets, caching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import representer as rp
from representer import TorchClassifier
from representer.errors import InputError, ModelError
from representer.zoo import MLP, SmallCNN


def _mlp(seed: int = 0, **kwargs) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(5, hidden=(6,), n_classes=3, **kwargs).eval()


def _inputs(n: int = 11, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _expected_features(net: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.features(torch.as_tensor(X)).double().numpy()


def test_features_and_head_reproduce_the_logits():
    net, X = _mlp(), _inputs()
    clf = TorchClassifier(net)
    assert clf.head_name == "classifier" and clf.n_outputs == 3 and clf.n_features == 6 and clf.has_bias
    with torch.no_grad():
        logits = net(torch.as_tensor(X)).double().numpy()
    np.testing.assert_allclose(clf.logits(X), logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(clf.theta, np.hstack([clf.weight, clf.bias[:, None]]))
    np.testing.assert_array_equal(clf.predict(X), logits.argmax(axis=1))


@pytest.mark.parametrize("kind", ["tensor", "dataset-xy", "dataset-x", "dataloader-xy", "batch-size-4"])
def test_every_input_kind_gives_the_same_features(kind):
    net, X = _mlp(), _inputs()
    y = torch.arange(len(X)) % 3
    inputs = {
        "tensor": torch.as_tensor(X),
        "dataset-xy": TensorDataset(torch.as_tensor(X), y),
        "dataset-x": TensorDataset(torch.as_tensor(X)),
        "dataloader-xy": DataLoader(TensorDataset(torch.as_tensor(X), y), batch_size=4),
        "batch-size-4": X,
    }[kind]
    clf = TorchClassifier(net, batch_size=4 if kind == "batch-size-4" else 256)
    phi = clf.features(inputs)
    assert phi.dtype == np.float64 and phi.shape == (len(X), 6)
    np.testing.assert_allclose(phi, _expected_features(net, X), rtol=1e-6, atol=1e-7)


class DictNet(nn.Module):
    """Takes ``{"ids": (B, L) int64, "x": (B, 2) float}``: mean token embedding ⊕ x → Linear → ReLU → head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 3)
        self.body = nn.Linear(5, 4)
        self.out = nn.Linear(4, 2)

    def body_features(self, batch: dict) -> torch.Tensor:
        assert batch["ids"].dtype == torch.int64, "integer inputs must stay integer"
        return torch.relu(self.body(torch.cat([self.embed(batch["ids"]).mean(dim=1), batch["x"]], dim=1)))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.out(self.body_features(batch))


class DictDataset(Dataset):
    def __init__(self, ids: np.ndarray, x: np.ndarray) -> None:
        self.ids, self.x = ids, x

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"ids": torch.as_tensor(self.ids[i]), "x": torch.as_tensor(self.x[i])}


def test_dict_batches():
    torch.manual_seed(0)
    net = DictNet().eval()
    rng = np.random.default_rng(0)
    ids, x = rng.integers(0, 10, size=(9, 4)), rng.normal(size=(9, 2)).astype(np.float32)
    with torch.no_grad():
        expected = net.body_features({"ids": torch.as_tensor(ids), "x": torch.as_tensor(x)}).double().numpy()
    clf = TorchClassifier(net, batch_size=4)
    assert clf.head_name == "out"
    np.testing.assert_allclose(clf.features({"ids": ids, "x": x}), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(clf.features(DataLoader(DictDataset(ids, x), batch_size=2)), expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="same number of rows"):
        clf.features({"ids": ids, "x": x[:5]})


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 3))
        self.aux = nn.Linear(4, 1)  # registered last, never applied

    def forward(self, x):
        return self.classifier(self.trunk(x))


def test_dotted_head_name_and_a_registered_but_unused_linear():
    net, X = Nested().eval(), _inputs()
    with pytest.raises(ModelError, match="head='classifier.1'"):
        TorchClassifier(net).features(X)
    clf = TorchClassifier(net, head="classifier.1")
    with torch.no_grad():
        expected = net.trunk(torch.as_tensor(X)).double().numpy()
    np.testing.assert_allclose(clf.features(X), expected, rtol=1e-6, atol=1e-7)
    assert clf.n_outputs == 3


class HeadRegisteredFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Linear(5, 4)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_the_last_registered_linear_must_be_the_last_applied():
    net, X = HeadRegisteredFirst().eval(), _inputs()
    with pytest.raises(ModelError, match="head='head'"):
        TorchClassifier(net).features(X)
    assert TorchClassifier(net, head="head").features(X).shape == (len(X), 4)


@pytest.mark.parametrize(("head", "match"), [("trunk.1", "not an nn.Linear"), ("nope.0", "not a submodule")])
def test_bad_head_names(head, match):
    with pytest.raises(ModelError, match=match):
        TorchClassifier(Nested().eval(), head=head)


def test_cnn_features_are_the_flattened_head_input():
    torch.manual_seed(0)
    net = SmallCNN(n_classes=4, width=4, feature_dim=8).eval()
    X = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    clf = TorchClassifier(net)
    assert clf.head_name == "classifier"
    with torch.no_grad():
        expected = net.features(torch.as_tensor(X)).double().numpy()
    np.testing.assert_allclose(clf.features(X), expected, rtol=1e-6, atol=1e-7)


class ConvHead(nn.Module):
    """The head is applied to a (B, T, D) tensor: its input is not one feature row per example."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(x.reshape(x.shape[0], 2, 3)).sum(dim=1)


def test_a_head_that_does_not_see_one_row_per_example_is_refused():
    with pytest.raises(ModelError, match="in_features=3"):
        TorchClassifier(ConvHead().eval()).features(np.ones((2, 6), dtype=np.float32))


def test_float64_network():
    net, X = _mlp().double(), _inputs()
    clf = TorchClassifier(net)
    with torch.no_grad():
        expected = net.features(torch.as_tensor(X, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(clf.features(X), expected, rtol=1e-15, atol=0)
    np.testing.assert_allclose(clf.logits(X), net(torch.as_tensor(X, dtype=torch.float64)).detach().numpy(), rtol=1e-14)


def test_features_are_cached_by_content():
    net, X = _mlp(), _inputs()
    clf = TorchClassifier(net)
    first = clf.features(X)
    assert clf.features(X.copy()) is first
    assert clf.features(torch.as_tensor(X)) is first
    other = clf.features(X + 1)
    assert other is not first and not np.allclose(other, first)
    for shift in range(2, 6):
        clf.features(X + shift)
    again = clf.features(X)
    assert again is not first  # evicted: at most four inputs are cached
    np.testing.assert_array_equal(again, first)


def test_head_without_bias():
    clf = TorchClassifier(_mlp(head_bias=False))
    assert not clf.has_bias
    np.testing.assert_array_equal(clf.bias, np.zeros(3))


def test_errors():
    with pytest.raises(ModelError, match="nn.Module"):
        TorchClassifier("net")
    with pytest.raises(ModelError, match="no nn.Linear"):
        TorchClassifier(nn.Sequential(nn.ReLU()))
    net = _mlp()
    clf = TorchClassifier(net)
    with pytest.raises(InputError, match="empty"):
        clf.features(np.ones((0, 5), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        clf.features(np.full((2, 5), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="numeric"):
        clf.features(np.array([["a"] * 5]))
    with pytest.raises(InputError, match=r"shape \(2, 4\)"):
        clf.features(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(InputError, match="no batches"):
        clf.features(DataLoader(TensorDataset(torch.ones(0, 5)), batch_size=2))
    net.train()
    with pytest.raises(ModelError, match="eval"):
        clf.features(np.ones((2, 5), dtype=np.float32))
    net.eval()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_cuda_device_is_refused_clearly():
    W = np.random.default_rng(0).normal(size=(3, 4))
    X, y = np.zeros((6, 4), dtype=np.float32), np.arange(6) % 3
    with pytest.raises(InputError, match="no usable CUDA device"):
        rp.RPSL2(rp.Features(W), device="cuda").fit(X, y)
    with pytest.raises(InputError, match="no usable CUDA device"):
        rp.TorchClassifier(torch.nn.Linear(4, 3), device="cuda")
    with pytest.raises(InputError, match="torch device"):
        rp.RPSL2(rp.Features(W), device="gpu0").fit(X, y)


def test_a_layer_after_the_head_is_refused_but_softmax_outputs_are_accepted():
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    relu_after = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    with pytest.raises(ModelError, match="not its head"):
        TorchClassifier(relu_after).features(X)
    for net in (nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)), nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)),
                nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())):
        clf = TorchClassifier(net.eval())
        np.testing.assert_allclose(clf.features(X), X.astype(np.float64), rtol=1e-6)


def test_one_example_without_its_batch_dimension_is_named():
    """A CNN accepts a (C, H, W) image as unbatched input, then fails further on: the error says to add the batch axis."""
    torch.manual_seed(0)
    clf = TorchClassifier(SmallCNN(n_classes=3, width=4, feature_dim=8).eval())
    image = np.random.default_rng(0).random((1, 28, 28), dtype=np.float32)
    with pytest.raises(InputError, match=r"single example without its batch dimension \(shape \(1, 28, 28\)\).*X\[None\]"):
        clf.features(image)
    assert clf.features(image[None]).shape == (1, 8)
    with pytest.raises(InputError, match="The network failed on a batch"):  # not one example either: no such claim
        clf.features(image[0])
    with pytest.raises(ModelError, match=r"in_features=3\. If `X` is a single example, add the batch dimension"):
        TorchClassifier(ConvHead().eval()).features(np.ones((2, 6), dtype=np.float32))


def test_read_only_inputs_and_data_frames_give_no_torch_warning():
    """pandas' copy-on-write and memory maps give read-only arrays; they are read without torch's 'not writable' warning."""
    import warnings

    import pandas as pd

    net, X = _mlp(), _inputs()
    expected = TorchClassifier(net).features(X)
    frozen = X.copy()
    frozen.setflags(write=False)
    y = np.arange(len(X)) % 3
    y.setflags(write=False)
    for given in (frozen, pd.DataFrame(X), {"x": frozen}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            clf = TorchClassifier(net if not isinstance(given, dict) else _DictNet(net).eval())
            np.testing.assert_allclose(clf.features(given), expected, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rp.RPSL2(net).fit(pd.DataFrame(X), pd.Series(y)).explain(frozen[:2], top_k=2)


class _DictNet(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch):
        return self.net(batch["x"])

import numpy as np
import pytest
import torch
from torch import nn

from representer.errors import InputError
from representer.zoo import MLP, BasicConv, BiLSTMClassifier, SmallCNN, predict_logits, train_classifier


def _blobs(n=240, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    centres = rng.normal(scale=3.0, size=(k, d))
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def _text(n=160, seed=0):
    """Class 1 iff token 3 occurs; token ids 2..9, random lengths, padded with 0."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n)
    ids = np.zeros((n, 8), dtype=np.int64)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.choice([2, 4, 5, 6, 7, 8, 9], size=length)
    y = rng.integers(0, 2, size=n)
    positions = (rng.random(n) * lengths).astype(int)
    ids[y == 1, positions[y == 1]] = 3
    return {"input_ids": ids, "lengths": lengths}, y


@pytest.mark.parametrize(
    "make, x",
    [
        (lambda: MLP(64, n_classes=10), torch.rand(5, 1, 8, 8)),
        (lambda: SmallCNN(n_classes=10), torch.rand(5, 1, 28, 28)),
        (lambda: SmallCNN(n_classes=3, width=4, feature_dim=8, head_bias=False), torch.rand(5, 1, 8, 8)),
        (lambda: BasicConv(n_classes=10, mean=0.3, std=0.4), torch.rand(5, 1, 28, 28)),
    ],
)
def test_forward_is_classifier_of_features(make, x):
    net = make().eval()
    assert isinstance(net.classifier, nn.Linear)
    with torch.no_grad():
        phi = net.features(x)
        torch.testing.assert_close(net(x), phi @ net.classifier.weight.T + (0 if net.classifier.bias is None else net.classifier.bias))
    assert phi.shape == (5, net.classifier.in_features)


def test_basic_conv_is_the_papers_network_and_standardises_its_input():
    torch.manual_seed(0)
    net = BasicConv(n_classes=10, mean=0.2860, std=0.3530).eval()
    # conv 1→5→10→5 (3×3, bias), fc 2420→500→100 (bias), classifier 100→10 without bias (spec §4.6)
    assert sum(p.numel() for p in net.parameters()) == (45 + 5) + (450 + 10) + (450 + 5) + (2420 * 500 + 500) + (500 * 100 + 100) + 1000
    assert net.classifier.bias is None and net.classifier.in_features == 100
    plain = BasicConv(n_classes=10).eval()
    plain.load_state_dict(net.state_dict())
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain((x - 0.2860) / 0.3530))
    with pytest.raises(InputError, match="std"):
        BasicConv(std=0.0)
    with pytest.raises(InputError, match="image_size"):
        BasicConv(image_size=6)


def test_bilstm_features_ignore_padding_and_match_unpadded_run():
    torch.manual_seed(0)
    net = BiLSTMClassifier(vocab_size=12, embed_dim=5, hidden=4).eval()
    assert net.classifier.bias is None and net.classifier.in_features == 8
    ids = torch.tensor([[2, 5, 7, 0, 0], [3, 4, 0, 0, 0]])
    batch = {"input_ids": ids, "lengths": torch.tensor([3, 2])}
    with torch.no_grad():
        phi = net.features(batch)
        longer = net.features({"input_ids": torch.cat([ids, torch.full((2, 4), 9)], 1), "lengths": batch["lengths"]})
        out, (h_n, _) = net.features.lstm(net.features.embedding(ids[:1, :3]))
    torch.testing.assert_close(phi, longer)
    torch.testing.assert_close(phi[0, :4], out[0, -1, :4])
    torch.testing.assert_close(phi[0, 4:], out[0, 0, 4:])
    with pytest.raises(InputError, match="lengths"):
        net.features({"input_ids": ids, "lengths": torch.tensor([3, 0])})


def test_training_is_deterministic_and_leaves_global_rng_alone():
    X, y = _blobs()
    weights = []
    for _ in range(2):
        torch.manual_seed(1)
        net = MLP(6, hidden=(16,), n_classes=3)
        state = torch.get_rng_state()
        train_classifier(net, X, y, epochs=3, batch_size=32, seed=5)
        assert torch.equal(torch.get_rng_state(), state)
        weights.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*weights, strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    other = train_classifier(MLP(6, hidden=(16,), n_classes=3), X, y, epochs=3, batch_size=32, seed=6)
    assert not torch.equal(next(other.parameters()), weights[0][0])


def test_training_learns_separable_blobs_with_adam_and_sgd():
    X, y = _blobs()
    for optimizer, lr in (("adam", 1e-2), ("sgd", 5e-2)):
        torch.manual_seed(0)
        net = train_classifier(MLP(6, hidden=(16,), n_classes=3), torch.from_numpy(X), y, epochs=20, lr=lr, optimizer=optimizer)
        assert not net.training
        assert (predict_logits(net, X).argmax(1) == y).mean() > 0.95


def test_training_text_dict_inputs():
    X, y = _text()
    torch.manual_seed(0)
    net = train_classifier(BiLSTMClassifier(10, embed_dim=8, hidden=8), X, y, epochs=25, lr=2e-2, batch_size=32)
    assert (predict_logits(net, X).argmax(1) == y).mean() > 0.9


def test_training_rejects_bad_arguments():
    X, y = _blobs(n=20)
    net = MLP(6, hidden=(4,), n_classes=3)
    with pytest.raises(InputError, match="epochs"):
        train_classifier(net, X, y, epochs=0)
    with pytest.raises(InputError, match="optimizer"):
        train_classifier(net, X, y, epochs=1, optimizer="lbfgs")
    with pytest.raises(InputError, match="one label per row"):
        train_classifier(net, X, y[:5], epochs=1)
    with pytest.raises(InputError, match="same number of rows"):
        train_classifier(BiLSTMClassifier(10), {"input_ids": np.ones((4, 3), dtype=np.int64), "lengths": np.ones(3, dtype=np.int64)}, [0, 1, 0, 1], epochs=1)

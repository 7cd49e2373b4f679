"""Small reference classifiers. Each is ``forward(x) = classifier(features(x))`` where ``features``
produces the representation φ(x) and ``classifier`` is the linear head (an ``nn.Linear``), the split
that every explainer in this package works on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..errors import InputError


class _FeaturesThenHead(nn.Module):
    features: nn.Module
    classifier: nn.Linear

    def forward(self, x):
        return self.classifier(self.features(x))


class MLP(_FeaturesThenHead):
    """Flatten → [Linear → ReLU] per hidden width → Linear head; φ is the last ReLU output."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 32), n_classes: int = 10, head_bias: bool = True):
        super().__init__()
        if not hidden:
            raise InputError("`hidden` must list at least one layer width, e.g. (64, 32).")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, n_classes, bias=head_bias)


class SmallCNN(_FeaturesThenHead):
    """Two 3×3 conv blocks (``width``, ``2·width`` channels, ReLU, 2×2 max-pool), adaptive average pooling
    to 7×7, then Linear → ReLU to ``feature_dim`` = φ; linear head on φ.

    The pooling is the identity on 28×28 inputs (28 → 14 → 7) and lets the same network accept
    smaller images such as 8×8 (8 → 4 → 2, repeated to 7×7).
    """

    def __init__(self, n_classes: int = 10, in_channels: int = 1, width: int = 16, feature_dim: int = 64, head_bias: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(2 * width * 49, feature_dim),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(feature_dim, n_classes, bias=head_bias)


class Standardize(nn.Module):
    """``(x − mean) / std`` with fixed scalars (no parameters): the input normalisation of the paper's networks."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        if not std > 0:
            raise InputError(f"`std` must be positive; got {std!r}.")
        self.mean = float(mean)
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean:g}, std={self.std:g}"


class BasicConv(_FeaturesThenHead):
    """DualView's MNIST network ``basic_conv`` (spec §4.6): input standardisation, three 3×3 convolutions
    without padding (``in_channels`` → 5 → 10 → 5, ReLU), flatten (5·22·22 = 2,420 on 28×28 inputs),
    Linear → ReLU to 500, Linear → ReLU to 100 = φ, and a linear head **without bias**.

    ``mean`` and ``std`` are the input normalisation (the reference code uses the training set's pixel
    statistics: 0.1307 / 0.3081 on MNIST, 0.2860 / 0.3530 on Fashion-MNIST); the default (0, 1) leaves
    inputs unchanged. ``image_size`` is the side of the square inputs (28).
    """

    def __init__(self, n_classes: int = 10, in_channels: int = 1, *, mean: float = 0.0, std: float = 1.0, image_size: int = 28):
        super().__init__()
        side = int(image_size) - 6
        if side < 1:
            raise InputError(f"`image_size` must be at least 7 (three unpadded 3×3 convolutions); got {image_size!r}.")
        self.features = nn.Sequential(
            Standardize(mean, std),
            nn.Conv2d(in_channels, 5, 3),
            nn.ReLU(),
            nn.Conv2d(5, 10, 3),
            nn.ReLU(),
            nn.Conv2d(10, 5, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(5 * side * side, 500),
            nn.ReLU(),
            nn.Linear(500, 100),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(100, n_classes, bias=False)


class BiLSTMFeatures(nn.Module):
    """Embedding → bidirectional LSTM over packed sequences; φ = [h_forward_last ; h_backward_last] of the top layer.

    Takes a dict batch ``{"input_ids": (B, L) int64, "lengths": (B,) int64}`` (lengths ≥ 1, padding id 0).
    The forward state is read at each sequence's true last token and the backward state after reading
    back to its first token, so padding never enters φ.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, num_layers: int = 1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(batch, Mapping) or "input_ids" not in batch or "lengths" not in batch:
            raise InputError('BiLSTM input must be a dict with "input_ids" (B, L) and "lengths" (B,).')
        lengths = torch.as_tensor(batch["lengths"]).to("cpu", torch.int64)
        if lengths.numel() and int(lengths.min()) < 1:
            raise InputError("every entry of `lengths` must be >= 1; encode empty texts as one <unk> token.")
        input_ids = torch.as_tensor(batch["input_ids"])[:, : int(lengths.max())]
        packed = pack_padded_sequence(self.embedding(input_ids), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return torch.cat([h_n[-2], h_n[-1]], dim=1)


class BiLSTMClassifier(_FeaturesThenHead):
    """:class:`BiLSTMFeatures` (φ of size ``2·hidden``) followed by a linear head (no bias by default, as in RPS-LJE)."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 64, n_classes: int = 2, head_bias: bool = False, num_layers: int = 1):
        super().__init__()
        self.features = BiLSTMFeatures(vocab_size, embed_dim, hidden, num_layers)
        self.classifier = nn.Linear(2 * hidden, n_classes, bias=head_bias)

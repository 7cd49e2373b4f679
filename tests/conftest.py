"""Shared tiny fixtures: a seeded digits MLP trained with weight decay, cached for the session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from representer.datasets import load_digits
from representer.zoo import MLP, train_classifier

# The test machines are small and shared: one intra-op thread avoids oversubscription stalls.
torch.set_num_threads(1)


@dataclass(frozen=True)
class DigitsModel:
    """A trained digits MLP (64 → 64 ReLU → 10) with its data split (flat float32 pixels)."""

    net: torch.nn.Module
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def digits_mlp() -> DigitsModel:
    """1,347 / 450 digits; 30 Adam epochs with weight decay 0.02 (≈ 0.5 s on one core).

    Weight decay keeps the head close to what an L2-penalised head can represent, which is what
    RPS-L2's fidelity depends on (see ``test_rps_l2.py``). Test accuracy ≈ 0.95.
    """
    split = load_digits(flat=True, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = MLP(64, hidden=(64,), n_classes=10)
    train_classifier(net, split.X_train, split.y_train, epochs=30, lr=3e-3, weight_decay=0.02, seed=0)
    return DigitsModel(net.eval(), split.X_train, split.y_train, split.X_test, split.y_test)

"""Shared tiny fixtures: a seeded digits MLP trained with weight decay, cached for the session.

With ``REPRESENTER_NO_SKIP=1`` (set by ``.ci/run``) a skipped test fails instead: CI installs every
optional dependency and data package, so a skip there means a test silently did not run.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from representer.datasets import load_digits
from representer.zoo import MLP, train_classifier

# The test machines are small and shared: one intra-op thread avoids oversubscription stalls.
torch.set_num_threads(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("REPRESENTER_NO_SKIP") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped with REPRESENTER_NO_SKIP=1 (CI installs everything the tests need): {reason}"


@pytest.fixture(scope="session")
def tool():
    """``tool("gen_api_docs")``: a script of tools/ loaded as a module (the generated docs' tests use them)."""
    root = Path(__file__).resolve().parents[1] / "tools"

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


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

"""The Python examples in README.md and docs/guide.md run as written, on a small digits MLP."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from representer.datasets import load_digits
from representer.zoo import MLP, train_classifier

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def namespace():
    data = load_digits()
    X_train, y_train = data.X_train[:400].astype(np.float32), data.y_train[:400]  # (n, 1, 8, 8) images
    X_test = data.X_test[:60].astype(np.float32)
    net = nn.Sequential(nn.Flatten(), MLP(64, hidden=(32,), n_classes=10))
    train_classifier(net, X_train, y_train, epochs=3, seed=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def train_one_epoch(net, optimizer):
        net.train()
        for rows in torch.randperm(len(y_train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(torch.as_tensor(X_train[rows])), torch.as_tensor(y_train[rows])).backward()
            optimizer.step()

    return {"net": net, "X_train": X_train, "y_train": y_train, "X_test": X_test, "X_val": X_test,
            "optimizer": optimizer, "train_one_epoch": train_one_epoch}


def test_readme_example_runs(namespace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = [b for b in _python_blocks(ROOT / "README.md") if "import representer" in b]
    scope = dict(namespace)
    exec(compile(block, "README.md", "exec"), scope)
    issues, exp = scope["issues"], scope["exp"]
    assert sorted(issues.indices.tolist()) == list(range(len(namespace["y_train"])))
    assert issues.method.startswith("trajectory-") and list(issues[:10]) == issues.indices[:10].tolist()
    assert exp.excitatory.indices.shape == (len(namespace["X_test"]), 10)
    assert np.all(np.diff(exp.excitatory.scores, axis=1) <= 0)


def test_guide_examples_run(namespace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope = dict(namespace)
    for block in _python_blocks(ROOT / "docs" / "guide.md"):
        block = block.replace("    ...\n", "    pass\n")
        exec(compile(block, "docs/guide.md", "exec"), scope)
    assert (tmp_path / "report.html").stat().st_size > 0
    assert scope["A"].shape == (50, len(namespace["y_train"]))

"""A tiny reviewed run for the review tests: digits as 8 × 8 images, named classes, flipped labels.

``make_run(folder)`` writes the user's files (an ``.npz`` with ``class_names``, a model module with
``build_model`` and a training function ``train``, trained weights) and runs ``representer fit`` and
``representer debug`` through the command line, as a user would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import save_file
from typer.testing import CliRunner

from representer.cli import app
from representer.datasets import load_digits
from representer.evaluation.corruption import flip_labels

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
N_TRAIN, N_TEST = 240, 120
MODEL_FILE = '''
import torch
from torch import nn

from representer.zoo import train_classifier


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def train(X, y, seed):
    return train_classifier(build_model(), X, y, epochs=25, lr=1e-2, batch_size=32, seed=seed)
'''


@dataclass(frozen=True)
class TinyRun:
    root: Path
    run: Path
    data: Path
    model: Path
    X: np.ndarray
    y: np.ndarray
    y_clean: np.ndarray
    flipped: np.ndarray


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def make_run(root: Path) -> TinyRun:
    split = load_digits(seed=0)
    X, y_clean = split.X_train[:N_TRAIN], split.y_train[:N_TRAIN]
    y, flipped = flip_labels(y_clean, 0.1, 10, seed=0)
    np.savez(root / "digits.npz", X_train=X, y_train=np.array(NAMES)[y], X_test=split.X_test[:N_TEST],
             y_test=np.array(NAMES)[split.y_test[:N_TEST]], class_names=np.array(NAMES))
    (root / "digits_net.py").write_text(MODEL_FILE)
    namespace: dict = {}
    exec(MODEL_FILE, namespace)
    net = namespace["train"](X, y, 0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "weights.safetensors"))
    run = root / "run"
    common = ["--model", f"{root / 'digits_net.py'}:build_model", "--weights", root / "weights.safetensors"]
    result, _ = invoke("fit", *common, "--data", root / "digits.npz", "--method", "rps-l2", "--out", run)
    assert result.exit_code == 0, result.output
    result, _ = invoke("debug", run, "--top", "40")
    assert result.exit_code == 0, result.output
    return TinyRun(root, run, root / "digits.npz", root / "digits_net.py", X, y, y_clean, np.asarray(flipped))


def model_args(tiny: TinyRun) -> list:
    return ["--model", f"{tiny.model}:build_model", "--weights", tiny.root / "weights.safetensors"]


"""Which L2 penalty for cross-fitting on frozen features: ROC-AUC of the held-out ranking against λ.

A 784-256-128-10 MLP on 3,000 Fashion-MNIST images with 20 % of the labels flipped (uniform, and to
the confusable class), trained with Adam (lr 1e-3, batches of 64) for 5 epochs (not memorised) and
then on to 60 epochs (memorised). For each, the 5-fold cross-fitted head of
:mod:`representer.crossfit` at several ``λ``: ROC-AUC of ``1 − p̂_{y_i}`` against the true flips, and
the held-out negative log-likelihood and accuracy of the given labels (which do *not* pick the
best ``λ`` on memorised features). This is the evidence behind
:func:`representer.crossfit.choose_lam`.

Run (about 10 minutes on 2 busy cores)::

    python benchmarks/bench_crossfit_lambda.py
"""

from __future__ import annotations

import numpy as np
import torch

import representer as rp
from representer.crossfit import crossfit_probabilities
from representer.datasets import load_fashion_mnist
from representer.evaluation.corruption import FASHION_MNIST_CONFUSABLE, confusable_flip_labels, flip_labels
from representer.evaluation.metrics import roc_auc
from representer.zoo import MLP, train_classifier

N = 3000
LAMS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def main() -> None:
    torch.set_num_threads(1)
    data = load_fashion_mnist()
    rows = np.sort(np.random.default_rng(0).permutation(len(data.y_train))[:N])
    X, clean = data.X_train[rows].reshape(N, -1).astype(np.float32), data.y_train[rows]
    print("| noise | epochs | fits its labels | " + " | ".join(f"λ = {lam:g}: ROC-AUC ↑ (held-out NLL)" for lam in LAMS) + " |")
    print("|---|---|---|" + "---|" * len(LAMS))
    for noise in ("uniform", "confusable"):
        if noise == "uniform":
            y, flipped = flip_labels(clean, 0.2, 10, seed=0)
        else:
            y, flipped = confusable_flip_labels(clean, 0.2, FASHION_MNIST_CONFUSABLE, seed=0)
        mask = np.zeros(N, dtype=bool)
        mask[flipped] = True
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = MLP(784, hidden=(256, 128), n_classes=10)
        done = 0
        for epochs in (5, 60):
            train_classifier(net, X, y, epochs=epochs - done, lr=1e-3, batch_size=64, seed=done)
            done = epochs
            clf = rp.TorchClassifier(net.eval())
            phi = clf.features(X)
            fitted = float((clf.predict(X) == y).mean())
            cells = []
            for lam in LAMS:
                p = crossfit_probabilities(phi, y, 10, lam=lam)[np.arange(N), y]
                cells.append(f"{roc_auc(1 - p, mask):.3f} ({-np.log(np.clip(p, 1e-12, 1)).mean():.3f})")
            print(f"| {noise} | {epochs} | {100 * fitted:.0f} % | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

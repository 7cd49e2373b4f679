"""The auto rule of ``find_label_issues`` on data and a network it was not chosen on.

``method="auto"`` ranks a network with checkpoints by the area under the margin while it fits
< 95 % of its labels and by the loss trajectory once it has memorised them; the rule was chosen on
``bench_label_issues.py`` (an MLP on Fashion-MNIST). This script checks it elsewhere: the zoo
``SmallCNN`` (convolutional) on the MNIST subset (``load_mnist_subset``), 30 % uniform or
asymmetric noise (MNIST's confusable digits), trained by ``bench_label_issues.train_until`` (Adam,
lr 2e-3) for 3 epochs (not memorised) or until it predicts ≥ 99 % of its noisy labels (memorised,
checked every 5 epochs), checkpoints on the recorder's default log schedule. Columns: ROC-AUC of ``auto``, both trajectory routes and the final loss, mean ± std
over the seeds; one torch thread.

    python benchmarks/bench_label_rule_holdout.py [--seeds 3] [--rate 0.3]
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import numpy as np
import torch

import representer as rp
from bench_label_issues import train_until
from representer.datasets import load_mnist_subset
from representer.evaluation.corruption import confusable_flip_labels, flip_labels
from representer.evaluation.metrics import corruption_mask, roc_auc
from representer.zoo import SmallCNN

#: Each digit to the one it is most often written like (every class to a different class).
MNIST_CONFUSABLE = {0: 6, 1: 7, 2: 7, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}
ROUTES = ("auto", "trajectory-loss", "trajectory-margin", "loss")


def _cnn(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SmallCNN(n_classes=10)


def run(noise: str, memorise: bool, seed: int, rate: float) -> dict[str, Any]:
    data = load_mnist_subset()
    X, y_clean = data.X_train.astype(np.float32), data.y_train.astype(np.int64)
    if noise == "uniform":
        y, flipped = flip_labels(y_clean, rate, 10, seed=seed)
    else:
        y, flipped = confusable_flip_labels(y_clean, rate, MNIST_CONFUSABLE, seed=seed)
    mask = corruption_mask(flipped, len(y))
    with tempfile.TemporaryDirectory() as folder:
        recorder = rp.CheckpointRecorder(folder)
        if memorise:
            net, epochs = train_until(X, y, seed, recorder, target=0.99, max_epochs=150, build=_cnn, lr=2e-3)
        else:
            net, epochs = train_until(X, y, seed, recorder, target=1.0, max_epochs=3, fixed_epochs=3, build=_cnn, lr=2e-3)
        aucs, chosen = {}, None
        for method in ROUTES:
            issues = rp.find_label_issues(net, X, y, checkpoints=folder if method != "loss" else None, method=method)
            score = np.empty(len(y))
            score[issues.indices] = -np.arange(len(y))
            aucs[method] = roc_auc(score, mask)
            chosen = issues.method if method == "auto" else chosen
    fitted = float((rp.TorchClassifier(net).predict(X) == y).mean())
    return {"auc": aucs, "route": chosen, "epochs": epochs, "fitted": fitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| setting | fits its labels | epochs | auto (route) | {' | '.join(ROUTES[1:])} |")
    print("|---|---|---|---|" + "---|" * (len(ROUTES) - 1))
    for memorise in (False, True):
        for noise in ("uniform", "asym"):
            runs = [run(noise, memorise, seed, args.rate) for seed in range(args.seeds)]
            cell = {m: f"{np.mean([r['auc'][m] for r in runs]):.3f} ± {np.std([r['auc'][m] for r in runs]):.3f}" for m in ROUTES}
            routes = sorted({r["route"] for r in runs})
            fitted = f"{100 * min(r['fitted'] for r in runs):.0f}–{100 * max(r['fitted'] for r in runs):.0f} %"
            epochs = ", ".join(str(r["epochs"]) for r in runs)
            name = f"mnist-{'mem' if memorise else 'early'}-{noise}-{round(100 * args.rate)}"
            print(f"| {name} | {fitted} | {epochs} | {cell['auto']} ({'/'.join(routes)}) | "
                  + " | ".join(cell[m] for m in ROUTES[1:]) + " |", flush=True)


if __name__ == "__main__":
    main()

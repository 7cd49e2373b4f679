"""DualView on real features: solver cost and sparsity vs C, and label-poisoning detection vs RPS-L2 and random.

Part 1 — C sweep (paper Appendix B, Table 3 in spirit). Penultimate features of two trained models:

* scikit-learn digits, 1,347 train / 450 test, MLP 64 → 64 → 32 (φ: 32-d ReLU);
* the shipped Fashion-MNIST subset, 3,000 train / 1,000 test, MLP 784 → 128 → 64 (φ: 64-d ReLU).

For each C on a log grid (Shark convention, paper default 1e-3) it prints the solver's epochs and
seconds, the number and fraction of support vectors, the KKT violation and duality gap, and the
accuracy of the SVM surrogate on train and test and its agreement with the model on test.

Part 2 — label poisoning (paper §5.1.3, spec §4.4). Each Fashion-MNIST subset training label is
flipped with probability 0.3 to another class (seed 420, DualView's protocol); the MLP is trained on
the corrupted labels; DualView (C = 1e-3 … 1), RPS-L2 (λ = 3e-3) and RAND rank the training points by
the paper's cumulative normalised |attribution| over the 1,000 test points (``find_label_issues(...,
ranking="cumulative")``) and by their own self-influence. Score: the paper's normalised AUC of the
detection curve (``label_poisoning_auc``; 1 = every corrupted point first, ≈ 0.5 = random).

Run:  python benchmarks/bench_dualview.py [--part sweep|poison|all] [--epochs 15] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from representer.datasets import load_digits, load_fashion_mnist_subset
from representer.debugging import find_label_issues
from representer.evaluation.corruption import bernoulli_flip_labels
from representer.evaluation.metrics import label_poisoning_auc
from representer.methods.dualview import DualView
from representer.methods.random import RandomAttribution
from representer.methods.rps_l2 import RPSL2
from representer.models import Features, TorchClassifier
from representer.solvers import solve_crammer_singer
from representer.zoo import MLP, train_classifier

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
POISON_C = (1e-3, 1e-2, 1e-1, 1.0)


def trained_mlp(X, y, in_features: int, hidden: tuple[int, ...], epochs: int, seed: int):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = MLP(in_features, hidden=hidden, n_classes=10)
    return train_classifier(net, X, y, epochs=epochs, lr=2e-3, weight_decay=1e-4, seed=seed)


def feature_sets(epochs: int, seed: int):
    digits = load_digits(flat=True, seed=seed)
    fashion = load_fashion_mnist_subset()
    yield "digits", digits, trained_mlp(digits.X_train, digits.y_train, 64, (64, 32), 3 * epochs, seed)
    yield "fashion-mnist", fashion, trained_mlp(fashion.X_train, fashion.y_train, 784, (128, 64), epochs, seed)


def sweep(epochs: int, seed: int, max_epochs: int) -> None:
    solve_crammer_singer(np.eye(3), np.arange(3), C=1.0)  # compile / load the numba kernels once
    print("\n## DualView C sweep (Shark convention; solver time only)\n")
    print("| data | n × D | C | epochs | seconds | support vectors | fraction | KKT violation | duality gap | SVM train acc | SVM test acc | agrees with model (test) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, data, net in feature_sets(epochs, seed):
        adapter = TorchClassifier(net)
        phi, phi_test = adapter.features(data.X_train), adapter.features(data.X_test)
        model_test = phi_test @ adapter.weight.T + adapter.bias
        for C in C_GRID:
            ex = DualView(Features(adapter.weight, adapter.bias), C=C, max_epochs=max_epochs, seed=seed).fit(phi, data.y_train)
            report, sparsity = ex.fit_report_, ex.sparsity_report_
            svm_test = np.argmax(ex.standardize(phi_test) @ ex.weight_.T, axis=1)
            print(
                f"| {name} | {phi.shape[0]} × {phi.shape[1]} | {C:g} | {report['epochs']}{'' if report['converged'] else ' (cap)'} | "
                f"{report['solver_seconds']:.2f} | {sparsity['n_support']} | {sparsity['support_fraction']:.3f} | "
                f"{report['kkt_violation']:.1e} | {report['duality_gap']:.1e} | {report['surrogate_train_accuracy']:.3f} | "
                f"{np.mean(svm_test == data.y_test):.3f} | {np.mean(svm_test == model_test.argmax(1)):.3f} |"
            )


def poison(epochs: int, seed: int, max_epochs: int) -> None:
    data = load_fashion_mnist_subset()
    noisy, flipped = bernoulli_flip_labels(data.y_train, p=0.3, n_classes=10, seed=420)
    is_corrupted = np.zeros(len(noisy), dtype=bool)
    is_corrupted[flipped] = True
    net = trained_mlp(data.X_train, noisy, 784, (128, 64), epochs, seed)
    clf = TorchClassifier(net)
    logits = clf.features(data.X_test) @ clf.weight.T + clf.bias
    test_acc = float(np.mean(logits.argmax(1) == data.y_test))
    print(f"\n## Label poisoning, Fashion-MNIST subset: {len(flipped)} of {len(noisy)} labels flipped "
          f"({len(flipped) / len(noisy):.1%}); model test accuracy on clean labels {test_acc:.3f}\n")
    explainers = {f"DualView (C={C:g})": DualView(clf, C=C, max_epochs=max_epochs, seed=seed) for C in POISON_C}
    explainers.update({"RPS-L2 (λ=3e-3)": RPSL2(clf, lam=3e-3), "RAND": RandomAttribution(clf, seed=seed)})
    print("| method | support vectors | ranking | normalised AUC | fit + rank seconds |")
    print("|---|---|---|---|---|")
    for name, explainer in explainers.items():
        start = time.perf_counter()
        explainer.fit(data.X_train, noisy)
        fit_seconds = time.perf_counter() - start
        n_support = explainer.sparsity_report_["n_support"] if isinstance(explainer, DualView) else len(noisy)
        for ranking in ("cumulative", "self_influence"):
            start = time.perf_counter()
            kwargs = {"X_test": data.X_test} if ranking == "cumulative" else {}
            issues = find_label_issues(explainer, ranking=ranking, **kwargs)
            scores = np.empty(len(noisy))
            scores[issues.indices] = issues.scores
            auc = label_poisoning_auc(scores, is_corrupted)
            print(f"| {name} | {n_support} | {ranking} | {auc:.3f} | {fit_seconds + time.perf_counter() - start:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("sweep", "poison", "all"), default="all")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=3000, help="solver epoch cap per C")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("sweep", "all"):
        sweep(args.epochs, args.seed, args.max_epochs)
    if args.part in ("poison", "all"):
        poison(args.epochs, args.seed, args.max_epochs)


if __name__ == "__main__":
    main()

"""Are explanations individual to the test point, and stable across the method's hyper-parameter?

Reproduces, on real data, the central qualitative claim of the RPS-LJE paper (Sui et al. 2021,
Fig. 1–3; spec §2.7 and §3.11): RPS-L2's top explanations are nearly the same training points for
every test point of a class (they are dominated by the largest ``‖α_i φ_i‖``) and change with the
L2 strength λ, while LJE's differ from test point to test point and are stable across the ascent
step γ.

Task: a binary Fashion-MNIST pair from the shipped subset (300 + 300 training images, 100 + 100
test images), a :class:`~representer.zoo.SmallCNN` (64-d ReLU features, like ResNet-20's) trained
with two logits, then turned into the equivalent one-logit sigmoid head ``θ₁ − θ₀`` (the
paper's binary setting). Each test point is explained for its true label (the LJE notebooks' choice).

Metrics, over the top-5 excitatory training points:

* individuality: mean pairwise Jaccard index of the top-5 sets of test points of the same class
  (1 = every test point gets the same explanation), and the number of distinct training points in
  the union of those sets;
* sanity: the fraction of top-5 training points that share the test point's label (individual
  explanations are only interesting if they are not noise);
* stability: mean top-5 overlap ``|A ∩ B| / 5`` with the default setting (γ = 0.01 for LJE,
  λ = 0.003 for RPS-L2) across γ ∈ {5e-4, 1e-3, 5e-3, 1e-2} and λ ∈ {1e-5, 1e-4, 1e-2, 1e-1}.

Run:  python benchmarks/lje_vs_rps_individuality.py [--classes 2 4] [--epochs 15] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time

import numpy as np
import torch
from torch import nn

import representer as rp
from representer.datasets import load_fashion_mnist_subset
from representer.methods.rps_lje import RPSLJE
from representer.zoo import SmallCNN, predict_logits, train_classifier

TOP = 5
GAMMAS = (5e-4, 1e-3, 5e-3, 1e-2)
LAMBDAS = (1e-5, 1e-4, 1e-2, 1e-1)
DEFAULT_GAMMA = 1e-2
DEFAULT_LAMBDA = 3e-3


def binary_pair(classes: tuple[int, int]):
    data = load_fashion_mnist_subset()
    keep_train = np.isin(data.y_train, classes)
    keep_test = np.isin(data.y_test, classes)
    to_binary = lambda y: (y == classes[1]).astype(np.int64)  # noqa: E731
    names = (data.class_names[classes[0]], data.class_names[classes[1]])
    return (
        data.X_train[keep_train],
        to_binary(data.y_train[keep_train]),
        data.X_test[keep_test],
        to_binary(data.y_test[keep_test]),
        names,
    )


def one_logit_copy(net: SmallCNN) -> SmallCNN:
    """The same classifier with the sigmoid head ``z = (w₁ − w₀)·φ + (b₁ − b₀)``."""
    binary = copy.deepcopy(net)
    head = nn.Linear(net.classifier.in_features, 1)
    with torch.no_grad():
        head.weight.copy_(net.classifier.weight[1:] - net.classifier.weight[:1])
        head.bias.copy_(net.classifier.bias[1:] - net.classifier.bias[:1])
    binary.classifier = head
    return binary.eval()


def top_sets(explainer, X, y) -> np.ndarray:
    return explainer.explain(X, top_k=TOP, target="label", y=y).excitatory.indices


def mean_pairwise_jaccard(indices: np.ndarray) -> float:
    sets = [set(row) for row in indices]
    values = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(values))


def mean_overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(r) & set(s)) / TOP for r, s in zip(a, b)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs=2, default=(2, 4), help="Fashion-MNIST class ids (default Pullover vs Coat)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)

    X_train, y_train, X_test, y_test, names = binary_pair(tuple(args.classes))
    torch.manual_seed(args.seed)
    net = train_classifier(SmallCNN(n_classes=2, feature_dim=64), X_train, y_train, epochs=args.epochs, lr=1e-3, seed=args.seed)
    accuracy = float((predict_logits(net, X_test).argmax(1) == y_test).mean())
    train_accuracy = float((predict_logits(net, X_train).argmax(1) == y_train).mean())
    clf = rp.TorchClassifier(one_logit_copy(net))

    start = time.perf_counter()
    lje = {g: RPSLJE(clf, gamma=g).fit(X_train, y_train) for g in GAMMAS}
    rps = {lam: rp.RPSL2(clf, lam=lam).fit(X_train, y_train) for lam in (*LAMBDAS, DEFAULT_LAMBDA)}
    lje_top = {g: top_sets(ex, X_test, y_test) for g, ex in lje.items()}
    rps_top = {lam: top_sets(ex, X_test, y_test) for lam, ex in rps.items()}
    elapsed = time.perf_counter() - start

    print(f"Fashion-MNIST {names[0]} (0) vs {names[1]} (1): {len(y_train)} train / {len(y_test)} test, "
          f"SmallCNN φ ∈ R^64, train / test accuracy {train_accuracy:.3f} / {accuracy:.3f}; fits and explanations {elapsed:.1f} s\n")
    lje_fit, rps_fit = lje[DEFAULT_GAMMA].fit_report_, rps[DEFAULT_LAMBDA].fit_report_
    print(f"LJE (γ=0.01) Σ_i W_i vs model on train: max |Δlogit| {lje_fit['train']['max_logit_error_vs_model']:.3g}, "
          f"mean {lje_fit['train']['mean_abs_logit_error_vs_model']:.3g}, prediction agreement "
          f"{lje_fit['train']['prediction_agreement']:.3f}; ‖ḡ(Θ†)‖ = {lje_fit['grad_norm_at_model']:.3g}")
    print(f"RPS-L2 (λ=0.003) vs model on train: Pearson {rps_fit['train']['pearson']:.4f}, "
          f"max |Δlogit| {rps_fit['train']['max_logit_error_vs_model']:.3g}\n")

    print(f"| method | class | mean pairwise top-{TOP} Jaccard | distinct train points in union of top-{TOP} "
          f"| top-{TOP} with the test point's label |")
    print("|---|---|---|---|---|")
    for label, top in (("RPS-L2 (λ=0.003)", rps_top[DEFAULT_LAMBDA]), ("RPS-LJE (γ=0.01)", lje_top[DEFAULT_GAMMA])):
        for c in (0, 1):
            rows = top[y_test == c]
            same_label = float((y_train[rows] == c).mean())
            print(f"| {label} | {names[c]} ({(y_test == c).sum()} test) | {mean_pairwise_jaccard(rows):.3f} "
                  f"| {len(np.unique(rows))} | {same_label:.2f} |")

    print(f"\n| method | setting | mean top-{TOP} overlap with default |")
    print("|---|---|---|")
    for lam in LAMBDAS:
        print(f"| RPS-L2 | λ = {lam:g} (vs 0.003) | {mean_overlap(rps_top[lam], rps_top[DEFAULT_LAMBDA]):.3f} |")
    for g in GAMMAS:
        print(f"| RPS-LJE | γ = {g:g} (vs 0.01) | {mean_overlap(lje_top[g], lje_top[DEFAULT_GAMMA]):.3f} |")


if __name__ == "__main__":
    main()

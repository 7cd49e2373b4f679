"""RelatIF's full-model ConvNet study in spirit (Barshan et al. 2020, §4.1, Table 1; spec §5.6 item 1).

A SmallCNN(width=8, feature_dim=32) (≈ 26k parameters, like the paper's 24,234-parameter CIFAR ConvNet)
trained on N_TRAIN Fashion-MNIST images (CIFAR-10 is not available offline). For each of N_TEST test
images and the *predicted* class, the top-1 and top-5 *positively* influential training points under
IF, θ-RelatIF and ℓ-RelatIF over all parameters (EK-FAC inverse for the numerator and the
denominators, damping λ = 0.1 as in the paper's ConvNet). Reported per method and k:

* cardinality of the union of the top-k sets over all test points (maximum ``k · N_TEST``, capped at n);
* mean ± std over the union of the model's probability of each training point's own label,
  ``p(y_i | x_i)`` (spec: our reading of "class probabilities … indicative of the loss").

Paper (CNN-CIFAR, 10,000 test × 50,000 train): IF 2279 / 4869, p 0.431 / 0.511; θ-RelatIF 8264 / 26381,
p 0.918 / 0.910; ℓ-RelatIF 8336 / 26550, p 0.931 / 0.920.

    python benchmarks/relatif_fullmodel_table1.py [--n-train 5000] [--n-test 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from representer.datasets import load_fashion_mnist
from representer.methods.full_model import FullModelInfluence, FullModelRelatIF
from representer.zoo import SmallCNN, predict_logits, train_classifier

DAMPING = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    args = parser.parse_args()
    d = load_fashion_mnist()
    Xtr, ytr, Xte, yte = d.X_train[: args.n_train], d.y_train[: args.n_train], d.X_test[: args.n_test], d.y_test[: args.n_test]
    torch.manual_seed(0)
    net = train_classifier(SmallCNN(width=8, feature_dim=32), Xtr, ytr, epochs=5, lr=3e-3, weight_decay=1e-4)
    accuracy = float((predict_logits(net, Xte).argmax(1) == yte).mean())
    n_params = sum(p.numel() for p in net.parameters())
    print(f"SmallCNN(width=8, feature_dim=32): {n_params} parameters, test accuracy {accuracy:.3f}, "
          f"{args.n_test} test × {args.n_train} train, EK-FAC, damping {DAMPING}")
    explainers = {
        "IF": FullModelInfluence(net, hessian="ekfac", damping=DAMPING, compute_dtype="float32"),
        "θ-RelatIF": FullModelRelatIF(net, kind="theta", hessian="ekfac", damping=DAMPING, compute_dtype="float32"),
        "ℓ-RelatIF": FullModelRelatIF(net, kind="loss", hessian="ekfac", damping=DAMPING, compute_dtype="float32"),
    }
    print("| method | card. top-1 | card. top-5 | p(y_i|x_i) top-1 | p(y_i|x_i) top-5 | seconds |")
    print("|---|---|---|---|---|---|")
    for name, explainer in explainers.items():
        start = time.perf_counter()
        explainer.fit(Xtr, ytr)
        z = explainer.train_features_
        p_label = np.exp(z - z.max(1, keepdims=True))
        p_label = (p_label / p_label.sum(1, keepdims=True))[np.arange(len(ytr)), ytr]
        top = explainer.explain(Xte, top_k=5).excitatory.indices
        cells = []
        for k in (1, 5):
            union = np.unique(top[:, :k])
            cells.append((len(union), p_label[union].mean(), p_label[union].std()))
        seconds = time.perf_counter() - start
        print(f"| {name} | {cells[0][0]} | {cells[1][0]} | {cells[0][1]:.3f} ± {cells[0][2]:.3f} | "
              f"{cells[1][1]:.3f} ± {cells[1][2]:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

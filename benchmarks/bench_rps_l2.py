"""RPS-L2 fit: our Newton–CG (float64) against the reference optimiser (spec §2.3, float32, 3,000 iterations).

Both refit the same head to the same teacher with λ = 0.003, on the same features, in one run:

* digits: 1,500 training points, 64-d penultimate features of a 64-64-10 MLP trained without
  weight decay (and, with ``--weight-decay-case``, one trained with weight decay 0.02), 297 test points;
* Fashion-MNIST: 60,000 training points, PCA-128 of the pixels and a linear head trained on them,
  10,000 test points (needs ``apt-get install dataset-fashion-mnist``; skipped with ``--no-fashion``).

Reported per method: fit time, speed-up of ours, iterations, and the stationarity each reaches:
‖∇F‖_F at the returned head (float64), the largest train logit error of the representer
reconstruction Σ_i φ̃_i α_iᵀ against that head (= ‖∇F‖/(2λ)-sized), and the Pearson correlation of
teacher vs reconstructed probabilities on train and test (spec §2.6).

The reference runs in full by default (up to 3,000 iterations or its 200× stopping rule; on
Fashion-MNIST the rule stops it after ≈ 300 iterations, ≈ 1 min on one core). With
``--fashion-reference-iters N`` (N < 3,000) it runs N iterations and its time is projected to 3,000:
an upper bound, since the 200× rule may stop the full run much earlier (its stationarity is then
the one after N iterations). One thread by default: the benchmark machines are shared, and tiny
GEMMs stall on oversubscribed OpenMP threads.

    python benchmarks/bench_rps_l2.py [--no-fashion] [--weight-decay-case] [--fashion-reference-iters N] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_rps import reference_rps  # noqa: E402

from representer import RPSL2, Features  # noqa: E402
from representer.datasets import load_digits, load_fashion_mnist  # noqa: E402
from representer.zoo import MLP, train_classifier  # noqa: E402

LAM = 0.003


def digits_problem(weight_decay: float):
    """Penultimate features of a digits MLP (1,500 train / 297 test) and its head."""
    split = load_digits(flat=True, test_size=297, seed=0)
    torch.manual_seed(0)
    net = MLP(64, hidden=(64,), n_classes=10)
    train_classifier(net, split.X_train, split.y_train, epochs=30, lr=3e-3, weight_decay=weight_decay, seed=0)
    with torch.no_grad():
        phi_train = net.features(torch.as_tensor(split.X_train)).double().numpy()
        phi_test = net.features(torch.as_tensor(split.X_test)).double().numpy()
    head = net.classifier
    return phi_train, split.y_train, phi_test, head.weight.detach().double().numpy(), head.bias.detach().double().numpy()


def fashion_problem():
    """PCA-128 of Fashion-MNIST pixels (60,000 / 10,000) and a linear head trained on it (3 Adam epochs)."""
    split = load_fashion_mnist()
    train = torch.as_tensor(split.X_train.reshape(len(split.X_train), -1))
    test = torch.as_tensor(split.X_test.reshape(len(split.X_test), -1))
    mean = train.mean(dim=0)
    _, _, v = torch.pca_lowrank(train - mean, q=128, center=False, niter=3)
    phi_train, phi_test = ((x - mean) @ v for x in (train, test))
    torch.manual_seed(0)
    head = nn.Linear(128, 10)
    train_classifier(head, phi_train.numpy(), split.y_train, epochs=3, lr=1e-2, batch_size=256, seed=0)
    return (phi_train.double().numpy(), split.y_train, phi_test.double().numpy(),
            head.weight.detach().double().numpy(), head.bias.detach().double().numpy())


def stationarity(phi_tilde, phi_tilde_test, teacher, teacher_test, theta, alpha):
    """‖∇F(Θ)‖, max train logit error of Φ̃ᵀA vs Θ, Pearson (train, test) of teacher vs reconstruction."""
    n = phi_tilde.shape[0]
    z = phi_tilde @ theta.T
    p = _softmax(z)
    grad = (p - teacher).T @ phi_tilde / n + 2 * LAM * theta
    w_rep = alpha.T @ phi_tilde
    pearson = [float(np.corrcoef(q.ravel(), _softmax(x @ w_rep.T).ravel())[0, 1])
               for x, q in ((phi_tilde, teacher), (phi_tilde_test, teacher_test))]
    return float(np.linalg.norm(grad)), float(np.abs(phi_tilde @ w_rep.T - z).max()), pearson


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def run(name, phi, y, phi_test, weight, bias, ref_iters=3000):
    with_ones = lambda a: np.hstack([a, np.ones((a.shape[0], 1))])  # noqa: E731
    x, x_test = with_ones(phi), with_ones(phi_test)
    theta_given = np.hstack([weight, bias[:, None]])
    teacher, teacher_test = _softmax(x @ theta_given.T), _softmax(x_test @ theta_given.T)

    start = time.perf_counter()
    ours = RPSL2(Features(weight, bias), lam=LAM).fit(phi, y)
    ours_seconds = time.perf_counter() - start
    ours_stats = stationarity(x, x_test, teacher, teacher_test, ours.theta_, ours.alpha_)

    ref = reference_rps(torch.as_tensor(x), torch.as_tensor(teacher), torch.as_tensor(theta_given.T), lam=LAM, max_iter=ref_iters)
    ref_stats = stationarity(x, x_test, teacher, teacher_test, ref.w_best.double().numpy().T, ref.alpha.double().numpy())
    size = f"{phi.shape[0]:,} × {phi.shape[1]}"
    iters = f"{ours.fit_report_['newton_iterations']} Newton / {ours.fit_report_['cg_iterations']} CG"
    if ref.stopped_early:
        ref_seconds, ref_iters_text = ref.seconds, f"{ref.iterations} GD (200× rule)"
    elif ref_iters < 3000:  # truncated run: time projected to the full 3,000 iterations
        ref_seconds = ref.seconds / ref.iterations * 3000
        ref_iters_text = f"{ref.iterations} of 3,000 GD (time projected, upper bound)"
    else:
        ref_seconds, ref_iters_text = ref.seconds, f"{ref.iterations} GD (cap)"
    return [
        (name, size, "ours (Newton–CG, float64)", ours_seconds, ref_seconds / ours_seconds, iters, *ours_stats),
        (name, size, "reference (§2.3, float32)", ref_seconds, 1.0, ref_iters_text, *ref_stats),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-fashion", action="store_true", help="skip the 60,000-point Fashion-MNIST case")
    parser.add_argument("--fashion-reference-iters", type=int, default=3000,
                        help="reference iteration cap on Fashion-MNIST (below 3000: time projected to 3,000, "
                             "an upper bound because the 200× rule may stop the full run earlier)")
    parser.add_argument("--weight-decay-case", action="store_true",
                        help="also the digits MLP trained with weight decay 0.02 (≈ +1 min)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both methods")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    rows += run("digits MLP, no weight decay", *digits_problem(0.0))
    if args.weight_decay_case:
        rows += run("digits MLP, weight decay 0.02", *digits_problem(0.02))
    if not args.no_fashion:
        rows += run("Fashion-MNIST PCA-128 + linear head", *fashion_problem(), ref_iters=args.fashion_reference_iters)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {load}, λ = {LAM}\n")
    print("| data | n × D | method | fit s | speed-up | iterations | ‖∇F‖ | max logit err | Pearson train | Pearson test |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|---:|")
    for name, size, method, seconds, speedup, iters, grad, logit_err, (p_train, p_test) in rows:
        print(f"| {name} | {size} | {method} | {seconds:.3f} | {speedup:.1f}× | {iters} | {grad:.1e} | {logit_err:.1e} "
              f"| {p_train:.5f} | {p_test:.5f} |")


if __name__ == "__main__":
    main()

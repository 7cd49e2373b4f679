"""Crammer–Singer dual solver: fit time vs C on real features, and ours vs ``dualxda`` 0.1.0.

    python benchmarks/bench_crammer_singer.py [--no-fashion]

Table 1 sweeps Shark's C (DualView convention, as in the paper's Appendix B) on z-scored sklearn
digits (1,797 × 64, clean and with 10 % of labels flipped) and, when the Debian package
``dataset-fashion-mnist`` is installed, on Fashion-MNIST pixels → PCA-128 → z-score (60,000 × 128).
Table 2 times the DualView authors' solver (``dualxda`` 0.1.0 → ``dualxda_skl``'s patched
LIBLINEAR Crammer–Singer, called exactly as ``DualDA.train`` calls it: ``LinearSVC(
multi_class="crammer_singer", C, max_iter=1_000_000, fit_intercept=True)``, tol 1e-4) against ours
on the same 1,500 × 64 digits features. LIBLINEAR's intercept is a regularised weight on a constant
feature 1, so ours is given ``[Z, 1]``, ``convention="textbook"`` and the same C and tol; LIBLINEAR's
dual variables are then our textbook β directly. ``dualxda`` runs in a throwaway venv (it pulls
torchvision), as a subprocess exchanging .npy files; create it with

    python3 -m venv /tmp/dxvenv && /tmp/dxvenv/bin/pip install --no-deps dualxda==0.1.0 \\
        && /tmp/dxvenv/bin/pip install dualxda_skl numpy scipy

(only the solver package ``sklearn_dual`` is imported, to avoid torch/zennit).
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from representer.solvers import solve_crammer_singer

DXVENV_PYTHON = Path("/tmp/dxvenv/bin/python")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DUALXDA_FIT = """
import sys, time
import numpy as np
from sklearn_dual.svm import LinearSVC
folder, C = sys.argv[1], float(sys.argv[2])
Z, y = np.load(folder + "/Z.npy"), np.load(folder + "/y.npy")
seconds = []
for _ in range(int(sys.argv[3])):
    model = LinearSVC(multi_class="crammer_singer", C=C, max_iter=1_000_000, fit_intercept=True)
    start = time.perf_counter()
    model.fit(Z, y)
    seconds.append(time.perf_counter() - start)
print(min(seconds))
np.save(folder + "/beta.npy", model.alpha_.T)
"""


def zscore(X: np.ndarray) -> np.ndarray:
    """DualView's standardisation (population std), with constant features left at 0."""
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)


def flip_labels(y: np.ndarray, fraction: float, n_classes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flipped = y.copy()
    idx = rng.choice(y.size, int(round(fraction * y.size)), replace=False)
    flipped[idx] = (flipped[idx] + rng.integers(1, n_classes, idx.size)) % n_classes
    return flipped


def load_fashion_pca128() -> tuple[np.ndarray, np.ndarray] | None:
    images, labels = FASHION_DIR / "train-images-idx3-ubyte.gz", FASHION_DIR / "train-labels-idx1-ubyte.gz"
    if not (images.exists() and labels.exists()):
        return None
    with gzip.open(images) as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784) / 255.0
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return zscore(PCA(128, svd_solver="randomized", random_state=0).fit_transform(X)), y


def timed_fit(Z, y, K, repeats=1, **kwargs):
    """Best wall time over ``repeats`` fits (the machine is shared), and the last result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = solve_crammer_singer(Z, y, K, **kwargs)
        seconds.append(time.perf_counter() - start)
    return min(seconds), result


def sweep(name: str, Z: np.ndarray, y: np.ndarray, grid: list[float], max_epochs: int) -> None:
    K = int(y.max()) + 1
    for C in grid:
        seconds, res = timed_fit(Z, y, K, C=C, convention="shark", tol=1e-3, max_epochs=max_epochs)
        accuracy = float(np.mean(np.argmax(Z @ res.weight.T, axis=1) == y))
        print(f"| {name:<23} | {C:8.0e} | {seconds:9.3f} | {res.n_iter:7d} | {res.n_support.sum():7d} "
              f"| {accuracy:9.3f} | {res.kkt_violation:9.2e} | {str(res.converged):5} |")


def run_dualxda(Z: np.ndarray, y: np.ndarray, C: float, repeats: int) -> tuple[float, np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        np.save(f"{folder}/Z.npy", Z)
        np.save(f"{folder}/y.npy", y)
        out = subprocess.run([str(DXVENV_PYTHON), "-c", DUALXDA_FIT, folder, repr(C), str(repeats)],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1]), np.load(f"{folder}/beta.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-fashion", action="store_true", help="skip the 60,000 × 128 Fashion-MNIST sweep")
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    Z = zscore(X)
    y_flipped = flip_labels(y, 0.1, 10)
    solve_crammer_singer(Z[:50], y[:50], 10)  # compile / load the numba cache outside the timings

    print("\nTable 1. Fit time vs Shark C (tol 1e-3, Shark's default; accuracy on the training labels)\n")
    print("| features                |  Shark C |  time (s) |  epochs |     #SV | train acc |  KKT viol | conv  |")
    print("|-------------------------|----------|-----------|---------|---------|-----------|-----------|-------|")
    grid = [10.0**k for k in range(-5, 4)]
    sweep("digits 1797x64", Z, y, grid, max_epochs=50_000)
    sweep("digits 1797x64 10% flip", Z, y_flipped, grid, max_epochs=50_000)
    fashion = None if args.no_fashion else load_fashion_pca128()
    if fashion is not None:
        sweep("fashion 60000x128", *fashion, [10.0**k for k in range(-5, 1)], max_epochs=2_000)
    elif not args.no_fashion:
        print(f"(Fashion-MNIST skipped: {FASHION_DIR} not found; `apt-get install dataset-fashion-mnist`)")

    print("\nTable 2. Ours vs dualxda 0.1.0 (LIBLINEAR CS, fit_intercept=True) on digits[:1500], tol 1e-4;")
    print("best of 3 runs (1 for the slowest row)\n")
    if not DXVENV_PYTHON.exists():
        print(f"(dualxda column skipped: {DXVENV_PYTHON} missing; create it as in this script's docstring)")
        return
    Z15 = Z[:1500]
    Z15_bias = np.c_[Z15, np.ones(1500)]
    print("| labels     | textbook C | dualxda (s) | ours (s) | speed-up | ours epochs | max|Δβ| | max|Δβ|/C |")
    print("|------------|------------|-------------|----------|----------|-------------|---------|-----------|")
    for labels_name, labels in (("clean", y[:1500]), ("10% flip", y_flipped[:1500])):
        for C in (1e-3, 0.1, 1.0):
            repeats = 3 if C < 1.0 or labels_name == "clean" else 1
            dx_seconds, dx_beta = run_dualxda(Z15, labels, C, repeats)
            seconds, res = timed_fit(Z15_bias, labels, 10, repeats=repeats, C=C, convention="textbook",
                                     tol=1e-4, max_epochs=1_000_000)
            gap = float(np.abs(res.beta - dx_beta).max())
            print(f"| {labels_name:<10} | {C:10.0e} | {dx_seconds:11.3f} | {seconds:8.3f} | "
                  f"{dx_seconds / seconds:7.1f}x | {res.n_iter:11d} | {gap:7.1e} | {gap / C:9.1e} |")


if __name__ == "__main__":
    sys.exit(main())

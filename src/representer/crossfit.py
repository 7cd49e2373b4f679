"""Cross-fitting on frozen features: held-out probabilities at the cost of K convex head fits.

Confident learning (cleanlab) scores each training point with a model that never saw it: K-fold
cross-validation, K full retrains. Keeping the trained network's features ``φ`` fixed, the same
idea costs K fits of an L2-regularised softmax head instead: for each fold ``F_k``,

    Θ_k = argmin_Θ (1/|∖F_k|) Σ_{i ∉ F_k} CE(Θ φ̃_i, e_{y_i}) + λ ‖Θ‖_F²,     p_i = softmax(Θ_k φ̃_i), i ∈ F_k,

on features z-scored with the training mean and standard deviation (so one ``λ`` suits any
network). It helps only as far as the features themselves have not memorised the wrong labels:
a network trained to fit its noise places a mislabelled point among the points of its *given*
class, and a head refit on those features follows (see the label-issue benchmark in
``docs/label_issues.md``).
"""

from __future__ import annotations

import numpy as np
import torch

from . import head as hm
from .errors import InputError
from .solvers.softmax_head import fit_softmax_head

#: L2 strength of the cross-fitted heads (objective: mean CE + λ‖Θ‖² on z-scored features).
DEFAULT_LAM = 1e-3


def fold_ids(phi: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold id of each point, independent of the order of the rows.

    Within each class the points are sorted by a seeded random projection of their features,
    ``φ_i · u`` with ``u ~ N(0, I)``, and dealt round-robin; so a point's fold depends on its content
    and its class, not on where it sits in the data (reordering the rows reorders the scores).
    """
    u = np.random.default_rng(seed).normal(size=phi.shape[1])
    key = phi @ u
    ids = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        ids[members[np.argsort(key[members], kind="stable")]] = np.arange(members.size) % folds
    return ids


def crossfit_probabilities(phi: np.ndarray, y: np.ndarray, n_outputs: int, *, folds: int = 5, lam: float = DEFAULT_LAM,
                           seed: int = 0) -> np.ndarray:
    """Held-out class probabilities ``(n, n_classes)`` from K-fold refits of an L2 softmax head on ``phi``.

    ``n_outputs = 1`` fits a binary sigmoid head (probabilities ``[1 − p, p]``).
    """
    if int(folds) != folds or folds < 2:
        raise InputError(f"`folds` must be an integer >= 2; got {folds!r}.")
    if len(y) < 2 * folds:
        raise InputError(f"cross-fitting with {folds} folds needs at least {2 * folds} training points; got {len(y)}.")
    mean, std = phi.mean(axis=0), phi.std(axis=0)
    z = (phi - mean) / np.where(std > 0, std, 1.0)
    x = hm.append_ones(torch.as_tensor(z, dtype=torch.float64))
    targets = hm.one_hot_targets(torch.as_tensor(y), n_outputs)
    ids = fold_ids(phi, y, int(folds), seed)
    n_classes = 2 if n_outputs == 1 else n_outputs
    held_out = np.zeros((len(y), n_classes))
    theta = None
    for k in range(int(folds)):
        train, test = torch.as_tensor(ids != k), torch.as_tensor(ids == k)
        # each fold starts from the previous fold's head: the folds share (K−2)/(K−1) of their data
        theta = fit_softmax_head(x[train], targets[train], lam, theta0=theta, tol=1e-8, max_iter=50).x
        p = hm.probabilities(hm.logits(x[test], theta)).numpy()
        held_out[ids == k] = np.column_stack([1 - p[:, 0], p[:, 0]]) if n_outputs == 1 else p
    return held_out

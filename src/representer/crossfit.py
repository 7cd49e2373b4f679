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

**The penalty** (:func:`choose_lam`, validated by ``benchmarks/bench_crossfit_lambda.py``). On
features that have memorised the labels a strong penalty matters most: it keeps the held-out head
from following the few feature directions that separate the memorised points (Fashion-MNIST MLP,
20 % noise, ROC-AUC at λ = 1e-3 / 1e-2 / 0.1 / 1: uniform 0.715 / 0.779 / 0.852 / 0.873, confusable
0.679 / 0.729 / 0.778 / 0.734). On features that have not, a weak one is as good or better
(uniform 0.979 / 0.981 / 0.982 / 0.978, confusable 0.893 / 0.890 / 0.865 / 0.752). The held-out
likelihood cannot choose between them: on memorised features it prefers the weakest penalty, the
features leak the memorised labels into the held-out folds. So ``λ`` follows the memorisation
itself: :data:`LAM_MEMORISED` when the model predicts at least :data:`MEMORISED_SHARE` of its
training labels, :data:`LAM_NOT_MEMORISED` otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

from . import head as hm
from .errors import InputError
from .solvers.softmax_head import fit_softmax_head

#: L2 strength of the cross-fitted heads (objective: mean CE + λ‖Θ‖² on z-scored features) on
#: features that have / have not memorised the labels, and the share of training labels the model
#: must predict to count as memorised.
LAM_MEMORISED = 0.1
LAM_NOT_MEMORISED = 0.01
MEMORISED_SHARE = 0.95


def choose_lam(fitted_share: float) -> tuple[float, str]:
    """``(λ, reason)`` for a model that predicts ``fitted_share`` of its training labels."""
    if fitted_share >= MEMORISED_SHARE:
        return LAM_MEMORISED, (f"the model predicts {100 * fitted_share:.1f} % of its training labels (memorised): a strong "
                               "penalty keeps the held-out heads from following the memorised feature directions")
    return LAM_NOT_MEMORISED, (f"the model predicts {100 * fitted_share:.1f} % of its training labels (not memorised): a "
                               "weak penalty keeps the held-out heads close to the model")


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


def crossfit_probabilities(phi: np.ndarray, y: np.ndarray, n_outputs: int, *, folds: int = 5, lam: float = LAM_NOT_MEMORISED,
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

"""Training trajectories: how each training point's given label fared over training.

For checkpoints ``c = 1 … C`` of a network (or boosting stages of a tree ensemble) with logits
``z_i(c)``, this module computes, for every training point ``i`` and its *given* label ``y_i``:

* the loss ``ℓ_i(c) = −log p_{i,y_i}(c)`` (softmax; binary heads: ``log(1 + e^{−s})`` with the signed
  logit ``s = ±z``);
* the margin ``m_i(c) = z_{y_i} − max_{k≠y_i} z_k`` (binary: ``s``, the log-odds of the given label),
  as in area-under-the-margin (Pleiss et al. 2020);
* the squared residual ``‖r_i(c)‖² = ‖p_i(c) − e_{y_i}‖²`` and, for networks, the head input's
  squared norm ``‖φ̃_i(c)‖²`` (with the bias's 1 when the head has a bias), whose product is the
  squared norm of the head's loss gradient ``‖∇_Θ ℓ_i‖² = ‖r_i‖² ‖φ̃_i‖²``.

Scores (larger = more suspicious), each an average over log-spaced epochs with the checkpoints'
weights ``w_c`` (:func:`~representer.checkpoints.log_grid_weights`):

* :meth:`Trajectory.mean_loss` ``= Σ_c w_c ℓ_i(c)`` — the default ranking: a mislabelled point keeps
  a high loss until the network memorises it, a clean one is fitted early;
* :meth:`Trajectory.mean_margin_score` ``= −Σ_c w_c m_i(c)`` (AUM, sign flipped so larger is worse);
* :meth:`Trajectory.tracin_head` ``= Σ_c η_c ‖r_i(c)‖² ‖φ̃_i(c)‖²`` — TracIn self-influence of the
  head (Pruthi et al. 2020) with the checkpoints' learning rates ``η_c``; it equals
  ``TracInCP(params=[head]).self_influence()``.

A tree ensemble's trajectory needs no recording: its boosting rounds are the checkpoints, read off
the per-tree margins of one prediction (:func:`boosting_trajectory`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._progress import progress_bar
from ._validation import to_tensor
from .checkpoints import Checkpoint, check_architecture, log_grid_weights, log_schedule_epochs
from .errors import InputError, ModelError
from .models import TorchClassifier, TreeEnsemble


@dataclass(frozen=True)
class Trajectory:
    """Per-checkpoint statistics of every training point on its given label (rows: checkpoints).

    Attributes:
        epochs: ``(C,)`` completed epochs (boosting rounds for trees) at each checkpoint.
        learning_rates: ``(C,)`` learning rate of each checkpoint (1 for trees).
        losses, margins, residual_norms: ``(C, n)``; see the module docstring.
        feature_norms: ``(C, n)`` squared norms of the head's input (with the bias's 1), or ``None``
            for tree ensembles.
    """

    epochs: np.ndarray
    learning_rates: np.ndarray
    losses: np.ndarray
    margins: np.ndarray
    residual_norms: np.ndarray
    feature_norms: np.ndarray | None = None

    @property
    def weights(self) -> np.ndarray:
        """Weights of the checkpoints in an average over log-spaced epochs (:func:`~representer.checkpoints.log_grid_weights`)."""
        return log_grid_weights(self.epochs)

    def mean_loss(self) -> np.ndarray:
        """``Σ_c w_c ℓ_i(c)``, ``(n,)``: the loss on the given label averaged over log-spaced epochs."""
        return self.weights @ self.losses

    def mean_margin_score(self) -> np.ndarray:
        """``−Σ_c w_c m_i(c)``, ``(n,)``: area under the margin, negated (larger = more suspicious)."""
        return -(self.weights @ self.margins)

    def tracin_head(self) -> np.ndarray:
        """``Σ_c η_c ‖r_i(c)‖² ‖φ̃_i(c)‖²``, ``(n,)``: TracIn self-influence of the linear head."""
        if self.feature_norms is None:
            raise InputError("TracIn on the head needs a network's checkpoints; a tree ensemble's trajectory has none.")
        return self.learning_rates @ (self.residual_norms * self.feature_norms)

    def fitted_fraction(self) -> np.ndarray:
        """``(C,)`` fraction of training points whose given label has a positive margin at each checkpoint."""
        return (self.margins > 0).mean(axis=1)


def label_statistics(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(loss, margin, ‖p − e_y‖²)`` of each row of ``logits`` ``(n, K)`` on the labels ``y`` (float64).

    ``K = 1`` is a binary sigmoid head, ``p(1) = σ(z)``: the signed logit ``s = ±z`` is the log-odds of the label.
    """
    z = to_tensor(np.asarray(logits, dtype=np.float64))
    labels = to_tensor(np.asarray(y, dtype=np.int64))
    if z.shape[1] == 1:
        s = torch.where(labels == 1, z[:, 0], -z[:, 0])
        loss = torch.nn.functional.softplus(-s)
        residual = torch.sigmoid(z[:, 0]) - labels.to(torch.float64)
        return loss.numpy(), s.numpy(), (residual * residual).numpy()
    rows = torch.arange(z.shape[0])
    log_p = torch.log_softmax(z, dim=1)
    loss = -log_p[rows, labels]
    others = z.clone()
    others[rows, labels] = -torch.inf
    margin = z[rows, labels] - others.max(dim=1).values
    residual = log_p.exp()
    residual[rows, labels] -= 1.0
    return loss.numpy(), margin.numpy(), (residual * residual).sum(dim=1).numpy()


def network_trajectory(adapter: TorchClassifier, X: Any, y: np.ndarray, checkpoints: Sequence[Checkpoint], *,
                       progress: bool | None = None) -> Trajectory:
    """Run the network at every checkpoint (on a private copy; ``adapter.net`` is not touched).

    One forward pass over ``X`` per checkpoint, in eval mode. Every checkpoint must be a full state
    dict of this architecture (checked, with the first mismatch named).
    """
    if not checkpoints:
        raise InputError("Pass at least one checkpoint.")
    net = copy.deepcopy(adapter.net)
    rows: dict[str, list[np.ndarray]] = {"loss": [], "margin": [], "residual": [], "feature": []}
    bias_term = 1.0 if adapter.has_bias else 0.0
    for checkpoint in progress_bar(checkpoints, desc="checkpoints", total=len(checkpoints), progress=progress):
        check_architecture(net, checkpoint, full=True)
        net.load_state_dict(dict(checkpoint.state), strict=True)
        net.eval()
        at = TorchClassifier(net, head=adapter.head_name, device=adapter.device, batch_size=adapter.batch_size)
        phi = at.features(X)
        loss, margin, residual = label_statistics(at.logits_from_features(phi), y)
        rows["loss"].append(loss)
        rows["margin"].append(margin)
        rows["residual"].append(residual)
        rows["feature"].append(np.einsum("ij,ij->i", phi, phi) + bias_term)
    return Trajectory(
        epochs=np.array([c.epoch for c in checkpoints], dtype=np.int64),
        learning_rates=np.array([c.learning_rate for c in checkpoints], dtype=np.float64),
        losses=np.stack(rows["loss"]), margins=np.stack(rows["margin"]), residual_norms=np.stack(rows["residual"]),
        feature_norms=np.stack(rows["feature"]),
    )


def boosting_rounds(trees: TreeEnsemble) -> int:
    """Number of boosting rounds (trees per class) of a boosted ensemble; refuses random forests."""
    if trees.averages_trees:
        raise ModelError(
            "The model is a random forest (its trees are averaged, not boosted): partial sums of its trees are not a "
            "training trajectory. Use method='influence' or 'loss' for it."
        )
    k = trees.n_outputs
    expected = np.tile(np.arange(k), trees.n_trees // k) if trees.n_trees % k == 0 else None
    if expected is None or not np.array_equal(trees.tree_class, expected):
        raise ModelError("The ensemble's trees are not stored round by round (class 0, 1, …, K−1 per round).")
    return trees.n_trees // k


def boosting_trajectory(trees: TreeEnsemble, X: Any, y: np.ndarray, rounds: Sequence[int] | None = None) -> Trajectory:
    """The ensemble's logits after each of ``rounds`` boosting rounds (default: the log schedule
    ``1, 2, 3, 4, 6, 8, 11, …`` and the last round), from one prediction of the per-tree margins.

    Round ``r``'s logits are the base margin plus the trees of rounds ``1 … r``: exactly the model a
    booster stopped after ``r`` rounds would be (``iteration_range=(0, r)``).
    """
    n_rounds = boosting_rounds(trees)
    if rounds is None:
        rounds = sorted(set(log_schedule_epochs(n_rounds)) | {n_rounds})
    rounds = [int(r) for r in rounds]
    if not rounds or rounds[0] < 1 or rounds[-1] > n_rounds or any(b <= a for a, b in zip(rounds, rounds[1:])):
        raise InputError(f"`rounds` must be increasing integers in [1, {n_rounds}]; got {rounds}.")
    margins_adapter = trees if trees.feature_kind == "margins" else TreeEnsemble(trees.model, features="margins")
    per_tree = margins_adapter.features(X)
    k = trees.n_outputs
    logits = np.tile(margins_adapter.bias, (per_tree.shape[0], 1))
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    done = 0
    for r in rounds:
        block = per_tree[:, done * k : r * k]
        logits = logits + block.reshape(block.shape[0], r - done, k).sum(axis=1)
        stats.append(label_statistics(logits, y))
        done = r
    return Trajectory(
        epochs=np.asarray(rounds, dtype=np.int64),
        learning_rates=np.ones(len(rounds)),
        losses=np.stack([s[0] for s in stats]), margins=np.stack([s[1] for s in stats]),
        residual_norms=np.stack([s[2] for s in stats]),
    )

"""RPS-L2 fitted on Ray: the explainer's side of :mod:`representer.engine.distributed`.

The engine shards the features and the head's sums; this module turns its solution into a fitted
:class:`~representer.RPSL2`, equal to ``RPSL2.fit`` (α to about 1e-10).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.distributed import ShardedHead, feature_shards, ray_module, solve_rps_l2
from ..errors import InputError
from .rps_l2 import RPSL2


def fit_rps_l2_distributed(explainer: RPSL2, X: Any, y: Any, *, n_shards: int, max_retries: int = 3) -> RPSL2:
    """Fit a :class:`~representer.RPSL2` like ``explainer.fit(X, y)``, with features and refit on Ray.

    Features are extracted per shard by Ray tasks and stay in the object store; the head actors
    read them there, and the driver runs Newton–CG on reductions. The features are then gathered
    once for the in-memory scoring kernel (use a :class:`~representer.engine.store.FactorStore`
    for training sets larger than memory).

    Parameters
    ----------
    explainer : RPSL2
        Unfitted, with ``refit="teacher"`` (the sharded head fits the model's own probabilities).
    X : array or tensor of shape (n, ...)
        Training inputs; must support ``len`` and row slicing.
    y : array of shape (n,)
        Training labels (class ids, or names with ``class_names``), as for ``fit``.
    n_shards : int
        Row ranges the training set is cut into (one Ray task and one head actor each).
    max_retries : int, default 3
        Retries of a task, restarts of an actor, when its worker dies.

    Returns
    -------
    RPSL2
        ``explainer``, fitted; ``fit_report_`` holds the Newton report and ``n_shards``.

    Raises
    ------
    InputError
        If ``explainer`` is not an RPSL2 with ``refit="teacher"``, or a hyper-parameter or ``y`` is invalid.
    """
    if not isinstance(explainer, RPSL2):
        raise InputError(f"`explainer` must be an unfitted RPSL2; got {type(explainer).__name__}.")
    if explainer.refit != "teacher":
        raise InputError(
            f"fit_rps_l2_distributed refits the head to the model's probabilities (refit='teacher'); got refit={explainer.refit!r}. "
            "Fit refit='labels' with RPSL2.fit."
        )
    with explainer._fitting() as adapter:
        refs = feature_shards(adapter, X, n_shards, max_retries=max_retries)
        with ShardedHead(refs, adapter.theta, max_restarts=max_retries) as head:
            solution = solve_rps_l2(head, explainer.lam, tol=explainer.tol, max_iter=explainer.max_iter)
        phi = np.concatenate(ray_module().get(refs))
        explainer.model_ = adapter
        explainer.y_ = explainer._labels(y, phi.shape[0])
        explainer.train_features_ = phi
        explainer.alpha_, explainer.theta_, explainer.teacher_ = solution.alpha, solution.theta, solution.teacher
        r = solution.result
        explainer.fit_report_ = {
            "refit": "teacher",
            "grad_norm": r.grad_norm,
            "objective": r.value,
            "newton_iterations": r.n_iter,
            "cg_iterations": r.n_cg,
            "converged": r.converged,
            "reason": r.reason,
            "tolerance": r.threshold,
            "n_shards": len(refs),
        }
        explainer._finish_fit()
    return explainer

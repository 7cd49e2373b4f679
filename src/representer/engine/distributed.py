"""Scale-out on Ray: sharded feature extraction, a sharded head for RPS-L2's refit, sharded scoring.

The training set is cut into ``n_shards`` contiguous row ranges (:func:`shard_bounds`); shard ``s``
holds rows ``start_s:stop_s`` and every result is reassembled in row order, so each function
returns what its single-process counterpart returns.

* :func:`feature_shards` / :func:`distributed_features` — ``adapter.features`` of each shard in a
  Ray task (shards stay in the object store with ``feature_shards``).
* :class:`ShardedHead` — the mean cross-entropy ``F(Θ) = (1/n) Σ_i ℓ(Θφ̃_i, q_i)`` of a linear head
  against teacher probabilities ``q_i = softmax(Θ_teacher φ̃_i)``, with each shard's ``φ̃`` held by
  one Ray actor. Values, gradients and Hessian-vector products are per-shard sums reduced on the
  driver: ``∇F = (1/n) Σ_s Σ_{i∈s} r_i φ̃_iᵀ``, ``∇²F v = (1/n) Σ_s Σ_{i∈s} Λ_i (v φ̃_i) φ̃_iᵀ``, and
  the exact Hessian is ``Σ_s (n_s/n) H_s`` with ``H_s`` = :func:`representer.head.exact_hessian`
  of the shard. Only ``(K, D+1)`` matrices (or one ``K(D+1)`` square) travel.
* :func:`solve_rps_l2` — RPS-L2's refit ``min_Θ F(Θ) + λ‖Θ‖²`` by :func:`~representer.solvers.newton.newton_cg`
  on the driver over a :class:`ShardedHead`; ``α_i = −(p_i − q_i)/(2λn)`` is computed per shard.
  :func:`representer.methods.distributed.fit_rps_l2_distributed` fits a :class:`~representer.RPSL2`
  this way (the explainer's side lives with the explainers, so that the engine imports none of them).
* :func:`distributed_top_k` — each task scores one row range of the explainer's kernel with the
  engine and returns its local top-k of both signs; the driver merges them (a global top-k is a
  top-k of the shards' top-k).

Fault tolerance is Ray's: tasks are retried ``max_retries`` times when their worker dies, and head
actors are restarted ``max_restarts`` times (their shard is re-read from the object store and the
calls in flight are retried). Every call is a pure function of its arguments, so a retry returns
the same result. Ray is initialised by the caller (``ray.init(...)``; Ray starts a local cluster
on first use otherwise). See ``docs/scale.md`` for a multi-node cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import head as hm
from .._validation import check_positive
from ..errors import InputError, RepresenterError
from ..explanation import Explanation, TopK
from ..solvers.newton import NewtonResult, newton_cg
from .kernels import BilinearKernel, TestFactors
from .scoring import EngineOptions
from .scoring import top_k as engine_top_k
from .store import kernel_rows


def ray_module():
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise RepresenterError("Distributed execution needs Ray: `pip install representer[scale]` (ray[default]).") from exc
    return ray


def shard_bounds(n: int, n_shards: int) -> list[tuple[int, int]]:
    """``min(n, n_shards)`` contiguous, non-empty row ranges of near-equal size covering ``0:n``."""
    if int(n_shards) < 1:
        raise InputError(f"`n_shards` must be a positive integer; got {n_shards!r}.")
    if int(n) < 1:
        raise InputError(f"Cannot shard {n} rows; pass at least one training row.")
    edges = np.linspace(0, n, min(int(n), int(n_shards)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _check_retries(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) < 0:
        raise InputError(f"`{name}` must be a non-negative integer; got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------------- features
def _features_task(adapter: Any, rows: Any) -> np.ndarray:
    return adapter.features(rows)


def feature_shards(adapter: Any, X: Any, n_shards: int, *, max_retries: int = 3) -> list[Any]:
    """Ray object references to ``adapter.features(X[start:stop])`` for each shard, in row order.

    ``X`` must support ``len`` and row slicing (numpy array, torch tensor); ``adapter`` is any
    :class:`~representer.models.ClassifierAdapter` (or model :func:`~representer.models.as_adapter`
    accepts), shipped once through the object store.
    """
    from ..models import as_adapter

    ray = ray_module()
    adapter = as_adapter(adapter)
    task = ray.remote(max_retries=_check_retries(max_retries, "max_retries"))(_features_task)
    adapter_ref = ray.put(adapter)
    return [task.remote(adapter_ref, X[start:stop]) for start, stop in shard_bounds(len(X), n_shards)]


def distributed_features(adapter: Any, X: Any, n_shards: int, *, max_retries: int = 3) -> np.ndarray:
    """``adapter.features(X)`` computed shard by shard on Ray workers, ``(n, D)`` float64."""
    ray = ray_module()
    return np.concatenate(ray.get(feature_shards(adapter, X, n_shards, max_retries=max_retries)))


# ---------------------------------------------------------------------------- sharded head
class _HeadShard:
    """One shard of ``φ̃`` and its teacher ``q`` (a Ray actor); returns per-shard sums."""

    def __init__(self, phi: np.ndarray, theta_teacher: np.ndarray) -> None:
        self.x = hm.append_ones(torch.as_tensor(np.asarray(phi), dtype=torch.float64))
        self.q = hm.probabilities(hm.logits(self.x, torch.as_tensor(theta_teacher, dtype=torch.float64)))
        self._theta: torch.Tensor | None = None
        self._p: torch.Tensor | None = None

    def _probabilities(self, theta: torch.Tensor) -> torch.Tensor:
        if self._theta is None or not torch.equal(theta, self._theta):
            self._theta, self._p = theta.clone(), hm.probabilities(hm.logits(self.x, theta))
        return self._p

    def size(self) -> int:
        return int(self.x.shape[0])

    def loss_and_gradient_sums(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        z = hm.logits(self.x, theta)
        n = self.x.shape[0]
        return float(hm.mean_cross_entropy(z, self.q)) * n, hm.residuals(z, self.q).T @ self.x

    def hessian_vector_product_sum(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return hm.hessian_vector_product(self.x, self._probabilities(theta), v) * self.x.shape[0]

    def exact_hessian_sum(self, theta: torch.Tensor) -> torch.Tensor:
        return hm.exact_hessian(self.x, self._probabilities(theta)) * self.x.shape[0]

    def residuals(self, theta: torch.Tensor) -> torch.Tensor:
        return self._probabilities(theta) - self.q

    def teacher(self) -> torch.Tensor:
        return self.q


class ShardedHead:
    """Mean cross-entropy of a linear head against teacher probabilities, data sharded on Ray actors.

    Args:
        shards: the training features ``φ`` (no ones column) of each shard, in row order, as arrays
            or Ray object references (e.g. from :func:`feature_shards`: the data never visits the driver).
        theta_teacher: ``(K, D+1)`` head ``[W | b]`` whose probabilities are the targets ``q``.
        max_restarts: how often a dead actor is restarted (its pending calls are retried).

    Methods take ``Θ`` as a float64 ``(K, D+1)`` tensor and return the reductions described in
    the module docstring. Call :meth:`shutdown` (or use ``with``) to free the actors.
    """

    def __init__(self, shards: Sequence[Any], theta_teacher: Any, *, max_restarts: int = 1) -> None:
        ray = ray_module()
        if len(shards) == 0:
            raise InputError("`shards` is empty; pass the feature rows of at least one shard.")
        self._ray = ray
        restarts = _check_retries(max_restarts, "max_restarts")
        actor = ray.remote(max_restarts=restarts, max_task_retries=restarts)(_HeadShard)
        theta = np.asarray(theta_teacher, dtype=np.float64)
        self.shards = list(shards)  # keeps object-store shards alive for actor restarts
        self.actors = [actor.remote(shard, theta) for shard in shards]
        self.sizes = self._ray.get([a.size.remote() for a in self.actors])
        self.n = int(sum(self.sizes))
        self.theta_teacher = torch.as_tensor(theta)

    @classmethod
    def from_features(cls, phi: np.ndarray, theta_teacher: Any, n_shards: int, **options: Any) -> "ShardedHead":
        """Shard an in-memory ``(n, D)`` feature matrix into ``n_shards`` row ranges."""
        ray = ray_module()
        return cls([ray.put(np.ascontiguousarray(phi[a:b])) for a, b in shard_bounds(len(phi), n_shards)], theta_teacher, **options)

    def _sum(self, method: str, *args: Any) -> Any:
        parts = self._ray.get([getattr(a, method).remote(*args) for a in self.actors])
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def value_and_gradient(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F(Θ), ∇F(Θ))`` of the mean cross-entropy."""
        parts = self._ray.get([a.loss_and_gradient_sums.remote(theta) for a in self.actors])
        value = sum(p[0] for p in parts) / self.n
        grad = parts[0][1]
        for part in parts[1:]:
            grad = grad + part[1]
        return torch.tensor(value, dtype=torch.float64), grad / self.n

    def hessian_vector_product(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``unvec(∇²F(Θ) vec(V))`` for ``V`` of shape ``(K, D+1)``."""
        return self._sum("hessian_vector_product_sum", theta, v) / self.n

    def exact_hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The exact ``(K(D+1), K(D+1))`` Hessian of ``F`` at ``Θ``, summed over shards with weights ``n_s/n``."""
        return self._sum("exact_hessian_sum", theta) / self.n

    def residuals(self, theta: torch.Tensor) -> torch.Tensor:
        """``p_i(Θ) − q_i`` for every training row, ``(n, K)``, gathered in row order."""
        return torch.cat(self._ray.get([a.residuals.remote(theta) for a in self.actors]))

    def teacher(self) -> torch.Tensor:
        """The teacher probabilities ``q``, ``(n, K)``."""
        return torch.cat(self._ray.get([a.teacher.remote() for a in self.actors]))

    def shutdown(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        self.shards = []

    def __enter__(self) -> "ShardedHead":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


@dataclass(frozen=True)
class RPSL2Solution:
    """RPS-L2's refit on a :class:`ShardedHead`: ``alpha`` ``(n, K)``, student head ``theta``, ``teacher`` ``q``."""

    alpha: np.ndarray
    theta: np.ndarray
    teacher: np.ndarray
    result: NewtonResult


def solve_rps_l2(head: ShardedHead, lam: float = 0.003, *, tol: float = 1e-10, max_iter: int = 100) -> RPSL2Solution:
    """``Θ* = argmin F(Θ) + λ‖Θ‖²`` by Newton–CG from the teacher head, and ``α = −(P − Q)/(2λn)``.

    The same objective, start and solver as :class:`~representer.RPSL2`, so the same ``α`` up to
    the rounding of the sharded sums.
    """
    lam = check_positive(lam, "lam")

    def fun_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = head.value_and_gradient(theta)
        return value + lam * (theta * theta).sum(), grad + 2 * lam * theta

    def hessp_at(theta: torch.Tensor):
        return lambda v: head.hessian_vector_product(theta, v) + 2 * lam * v

    result = newton_cg(fun_grad, hessp_at, head.theta_teacher.clone(), tol=float(tol), max_iter=int(max_iter))
    alpha = -head.residuals(result.x) / (2 * lam * head.n)
    return RPSL2Solution(alpha.numpy(), result.x.numpy(), head.teacher().numpy(), result)


# ---------------------------------------------------------------------------- scoring
def _top_k_task(kernel: BilinearKernel, test: TestFactors, k: int, options: EngineOptions, offset: int) -> tuple[np.ndarray, ...]:
    exc_i, exc_s, inh_i, inh_s = engine_top_k(kernel, test, k, options)
    return exc_i + offset, exc_s, inh_i + offset, inh_s


def _merge(indices: np.ndarray, scores: np.ndarray, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best candidates (by score, then by smaller index), sorted."""
    key = -scores if largest else scores
    order = np.lexsort((indices, key), axis=1)[:, :k]
    return np.take_along_axis(indices, order, 1), np.take_along_axis(scores, order, 1)


def merge_top_k(parts: Sequence[tuple[np.ndarray, ...]], k: int) -> tuple[np.ndarray, ...]:
    """Merge per-shard ``(exc_i, exc_s, inh_i, inh_s)`` (global indices) into the global top-``k``."""
    exc_i, exc_s = _merge(np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1), k, True)
    inh_i, inh_s = _merge(np.concatenate([p[2] for p in parts], 1), np.concatenate([p[3] for p in parts], 1), k, False)
    return exc_i, exc_s, inh_i, inh_s


def distributed_top_k(
    explainer: Any,
    X_test: Any,
    k: int = 10,
    *,
    n_shards: int,
    target: Any = "predicted",
    y: Any = None,
    max_retries: int = 3,
) -> Explanation:
    """``explainer.explain(X_test, top_k=k, target=target, y=y)`` with the training rows scored in ``n_shards`` Ray tasks.

    Test factors are computed once on the driver; each task receives one row range of the
    explainer's kernel (a copy, or for a store-backed kernel just its path and range: workers
    read their rows from disk) and runs the engine on it.
    """
    ray = ray_module()
    if int(k) < 1:
        raise InputError(f"`k` must be a positive integer; got {k!r}.")
    tgt, test = explainer._prepare(X_test, target, y)
    kernel = explainer.kernel_
    k = min(int(k), kernel.n)
    task = ray.remote(max_retries=_check_retries(max_retries, "max_retries"))(_top_k_task)
    test_ref = ray.put(test)
    futures = [
        task.remote(kernel_rows(kernel, start, stop, copy=True), test_ref, k, explainer.options, start)
        for start, stop in shard_bounds(kernel.n, n_shards)
    ]
    exc_i, exc_s, inh_i, inh_s = merge_top_k(ray.get(futures), k)
    return Explanation(
        excitatory=TopK(exc_i, exc_s),
        inhibitory=TopK(inh_i, inh_s),
        target=tgt,
        method=explainer.name,
        meta={"top_k": k, "n_shards": len(futures), "params": explainer.get_params()},
    )

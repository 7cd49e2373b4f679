"""Inner-product index: top-k retrieval as a maximum-inner-product search (faiss).

Every kernel scores ``a(t, i, c) = ⟨u_c(t), v_c(i)⟩``. For a fixed head output ``c`` the ``k``
most excitatory training points of ``t`` are the ``k`` largest inner products of the query
``u_c(t)`` with the vectors ``v_c(i)``, and the ``k`` most inhibitory are the ``k`` largest inner
products of the negated query ``−u_c(t)`` (their scores negated back). The vectors, per kernel
(``s_i`` is the optional per-point ``scale``, ``sign_t`` is ``−1`` for class 0 of a binary head):

=====================  ================================  ===============================  ===============
kernel                 train vector ``v_c(i)``           query ``u_c(t)``                 indexes
=====================  ================================  ===============================  ===============
CoefficientKernel      ``s_i · coef[i, c] · x_i``        ``sign_t · x_t``                 one per output
ClassFactorKernel      ``s_i · V[i, c]``                 ``sign_t · x_t``                 one per output
GradientKernel         ``s_i · vec(r_i ⊗ x_i)`` (K·D)    ``vec(U_t)``                     one
KroneckerKernel        ``s_i · vec(r_i ⊗ x_i)`` (K·D)    ``vec(s_t ⊗ a_t)``               one
=====================  ================================  ===============================  ===============

(``⟨s_t, r_i⟩⟨a_t, x_i⟩ = ⟨s_t ⊗ a_t, r_i ⊗ x_i⟩``, so a K-FAC kernel is a gradient kernel with a
rank-one test side.) Gradient-type vectors have ``K·D`` entries, so their index holds
``n·K·D`` floats. Other kernels (e.g. the random baseline) have no inner-product form and are
refused. Store-backed kernels are indexed block by block, without loading them whole.

Index kinds: ``"flat"`` (``IndexFlatIP``, exact: the same top-k as the engine, up to float32
rounding and ties), ``"ivf"`` (``IndexIVFFlat`` with inner-product metric: ``nlist`` k-means
cells, ``nprobe`` of them scanned per query) and ``"hnsw"`` (``IndexHNSWFlat``, inner-product
metric, ``hnsw_m`` links, ``ef_search`` candidates). Approximate kinds can return fewer than
``k`` points when the scanned cells hold fewer; missing slots get index ``-1`` and score NaN.
Vectors are indexed in float32. Measure the recall of an approximate index against the exact
engine with :func:`recall_at_k`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, RepresenterError
from ..explanation import Explanation, TopK
from .kernels import BilinearKernel, ClassFactorKernel, CoefficientKernel, GradientKernel, KroneckerKernel, TestFactors
from .store import kernel_kind, kernel_rows

KINDS = ("flat", "ivf", "hnsw")
_PER_OUTPUT = ("CoefficientKernel", "ClassFactorKernel")


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise RepresenterError("The inner-product index needs faiss: `pip install representer[index]` (faiss-cpu).") from exc
    return faiss


def _numpy32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def _in_memory(kernel: BilinearKernel) -> BilinearKernel:
    """An in-memory kernel (a store-backed one is read whole: call on row blocks only)."""
    from .store import StoreKernel

    return kernel.rows(0, kernel.n) if isinstance(kernel, StoreKernel) else kernel


def n_outputs(kernel: BilinearKernel) -> int | None:
    """Number of per-output indexes the kernel needs (``None``: one class-independent index)."""
    kind = kernel_kind(kernel)
    if kind not in _PER_OUTPUT:
        return None
    head = _in_memory(kernel_rows(kernel, 0, min(1, kernel.n)))
    return int(head.coef.shape[1] if isinstance(head, CoefficientKernel) else head.v.shape[1])


def train_vectors(kernel: BilinearKernel, output: int | None) -> np.ndarray:
    """``v_c(i)`` for every row of ``kernel`` (see the module table), float32 ``(n, d)``.

    ``output`` is the head output ``c`` for per-output kernels and must be ``None`` otherwise.
    """
    kernel = _in_memory(kernel)
    kind = kernel_kind(kernel)
    if (output is None) != (kind not in _PER_OUTPUT):
        raise InputError(f"`output` must be {'an int' if kind in _PER_OUTPUT else 'None'} for a {kind}; got {output!r}.")
    if isinstance(kernel, CoefficientKernel):
        weight = kernel.coef[:, output]
        vectors = kernel.x * (weight if kernel.scale is None else weight * kernel.scale)[:, None]
    elif isinstance(kernel, ClassFactorKernel):
        vectors = kernel.v[:, output]
        vectors = vectors if kernel.scale is None else vectors * kernel.scale[:, None]
    else:
        vectors = (kernel.r.unsqueeze(2) * kernel.x.unsqueeze(1)).reshape(kernel.n, -1)
        vectors = vectors if kernel.scale is None else vectors * kernel.scale[:, None]
    return _numpy32(vectors)


def query_vectors(kind: str, test: TestFactors) -> np.ndarray:
    """``u_c(t)`` for every test point (see the module table), float32 ``(m, d)``, sign folded in.

    ``kind`` is the kernel class name (:func:`~representer.engine.store.kernel_kind`).
    """
    if kind in _PER_OUTPUT:
        return _numpy32(test.tensors["x"] * test.sign[:, None].to(test.tensors["x"].dtype))
    if kind == GradientKernel.__name__:
        return _numpy32(test.tensors["u"].reshape(test.m, -1))
    if kind == KroneckerKernel.__name__:
        return _numpy32((test.tensors["s"].unsqueeze(2) * test.tensors["a"].unsqueeze(1)).reshape(test.m, -1))
    raise InputError(f"A {kind} has no inner-product form.")


class InnerProductIndex:
    """faiss indexes over the train vectors ``v_c(i)`` of a fitted explainer's kernel.

    Build with :meth:`build` (from an explainer) or :meth:`from_kernel`; query with :meth:`search`
    (raw inputs, like ``explainer.explain``) or :meth:`search_factors` (test factors, like
    ``engine.scoring.top_k``). ``nprobe`` (IVF) and ``ef_search`` (HNSW) may be changed between
    searches to trade speed for recall.
    """

    def __init__(
        self,
        indexes: dict[int | None, Any],
        *,
        kernel_kind: str,
        kind: str,
        n: int,
        nprobe: int,
        ef_search: int,
        explainer: Any = None,
    ) -> None:
        self.indexes = indexes
        self.kernel_kind = kernel_kind
        self.kind = kind
        self.n = n
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.explainer = explainer

    @classmethod
    def build(cls, explainer: Any, *, classes: Sequence[int] | None = None, **options: Any) -> "InnerProductIndex":
        """Index a fitted explainer's kernel; ``classes`` limits per-class indexes to those classes.

        ``options`` are those of :meth:`from_kernel` (``kind``, ``nlist``, ``nprobe`` ...).
        """
        from ..head import output_and_sign

        explainer._check_fitted()
        outputs = None
        if classes is not None:
            labels = np.asarray(classes, dtype=np.int64)
            if labels.ndim != 1 or labels.size == 0 or labels.min() < 0 or labels.max() >= explainer.model_.n_classes:
                raise InputError(f"`classes` must be a non-empty list of classes in [0, {explainer.model_.n_classes}); got {classes!r}.")
            outputs = sorted(set(output_and_sign(labels, explainer.model_.n_outputs)[0].tolist()))
        index = cls.from_kernel(explainer.kernel_, outputs=outputs, **options)
        index.explainer = explainer
        return index

    @classmethod
    def from_kernel(
        cls,
        kernel: BilinearKernel,
        *,
        kind: str = "flat",
        outputs: Sequence[int] | None = None,
        nlist: int | None = None,
        nprobe: int = 32,
        train_size: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 64,
        ef_search: int = 128,
        chunk_rows: int = 65536,
        seed: int = 0,
    ) -> "InnerProductIndex":
        """Index the train vectors of ``kernel``, read in blocks of ``chunk_rows`` rows.

        Args:
            kind: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate).
            outputs: head outputs to index for per-output kernels (default: all).
            nlist: IVF cells (default ``round(√n)``); trained by k-means on ``train_size`` rows
                sampled with ``seed`` (default ``min(n, 64·nlist)``).
            nprobe: IVF cells scanned per query.
            hnsw_m, ef_construction, ef_search: HNSW graph degree and candidate-list sizes.
        """
        faiss = _faiss()
        if kind not in KINDS:
            raise InputError(f"`kind` must be one of {KINDS}; got {kind!r}.")
        for name, value in {"nprobe": nprobe, "hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search, "chunk_rows": chunk_rows}.items():
            if int(value) < 1:
                raise InputError(f"`{name}` must be a positive integer; got {value!r}.")
        kernel_name = kernel_kind(kernel)
        n = kernel.n
        total = n_outputs(kernel)
        if total is None:
            if outputs is not None:
                raise InputError(f"A {kernel_name} is class-independent (one index); do not pass `outputs`/`classes`.")
            keys: list[int | None] = [None]
        else:
            keys = list(range(total)) if outputs is None else [int(c) for c in outputs]
            if any(not 0 <= c < total for c in keys):
                raise InputError(f"`outputs` must be head outputs in [0, {total}); got {list(outputs)}.")
        if kind == "ivf":
            nlist = int(nlist) if nlist is not None else max(1, round(n**0.5))
            if not 1 <= nlist <= n:
                raise InputError(f"`nlist` must be in [1, n={n}]; got {nlist}.")
            train_size = min(n, int(train_size) if train_size is not None else 64 * nlist)
            if train_size < nlist:
                raise InputError(f"`train_size` ({train_size}) must be at least `nlist` ({nlist}) to train the IVF cells.")
        indexes = {}
        for key in keys:
            first = train_vectors(kernel_rows(kernel, 0, min(chunk_rows, n)), key)
            d = first.shape[1]
            if kind == "flat":
                index = faiss.IndexFlatIP(d)
            elif kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = int(ef_construction)
            else:
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.cp.seed = int(seed)
                index.train(_sample_rows(kernel, key, train_size, chunk_rows, seed))
            index.add(first)
            for start in range(chunk_rows, n, chunk_rows):
                index.add(train_vectors(kernel_rows(kernel, start, min(start + chunk_rows, n)), key))
            indexes[key] = index
        return cls(indexes, kernel_kind=kernel_name, kind=kind, n=n, nprobe=int(nprobe), ef_search=int(ef_search))

    def _search_one(self, index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "ivf":
            index.nprobe = int(self.nprobe)
        elif self.kind == "hnsw":
            index.hnsw.efSearch = max(int(self.ef_search), k)
        scores, indices = index.search(queries, k)
        scores[indices < 0] = np.nan
        return indices, scores

    def search_factors(self, test: TestFactors, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(exc_indices, exc_scores, inh_indices, inh_scores)`` of shape ``(m, min(k, n))``, like ``engine.scoring.top_k``.

        Excitatory rows are sorted by decreasing score, inhibitory rows by increasing score.
        """
        if int(k) < 1:
            raise InputError(f"`k` must be a positive integer; got {k!r}.")
        k = min(int(k), self.n)
        queries = query_vectors(self.kernel_kind, test)
        keys = np.zeros(test.m, dtype=np.int64) if None in self.indexes else test.out.cpu().numpy()
        exc_i = np.empty((test.m, k), dtype=np.int64)
        inh_i = np.empty((test.m, k), dtype=np.int64)
        exc_s = np.empty((test.m, k), dtype=np.float32)
        inh_s = np.empty((test.m, k), dtype=np.float32)
        for key in np.unique(keys).tolist():
            index_key = None if None in self.indexes else key
            if index_key not in self.indexes:
                raise InputError(
                    f"No index for head output {key}; build the index with `classes`/`outputs` including it (built: "
                    f"{sorted(self.indexes)})."
                )
            rows = np.nonzero(keys == key)[0]
            q = queries[rows]
            exc_i[rows], exc_s[rows] = self._search_one(self.indexes[index_key], q, k)
            inh_i[rows], neg = self._search_one(self.indexes[index_key], -q, k)
            inh_s[rows] = -neg
        return exc_i, exc_s, inh_i, inh_s

    def search(self, X: Any, k: int = 10, target: Any = "predicted", y: Any = None) -> Explanation:
        """Top-``k`` excitatory and inhibitory training points per row of ``X``, as ``explainer.explain`` gives."""
        if self.explainer is None:
            raise RepresenterError("This index was built from a kernel; use `search_factors`, or build it with `InnerProductIndex.build(explainer)`.")
        tgt, test = self.explainer._prepare(X, target, y)
        exc_i, exc_s, inh_i, inh_s = self.search_factors(test, k)
        return Explanation(
            excitatory=TopK(exc_i, exc_s),
            inhibitory=TopK(inh_i, inh_s),
            target=tgt,
            method=self.explainer.name,
            meta={"top_k": int(k), "index": self.kind, "nprobe": self.nprobe, "ef_search": self.ef_search},
        )


def _sample_rows(kernel: BilinearKernel, key: int | None, size: int, chunk_rows: int, seed: int) -> np.ndarray:
    """Train vectors of ``size`` rows drawn without replacement (k-means training set of IVF)."""
    picks = np.sort(np.random.default_rng(seed).choice(kernel.n, size=size, replace=False))
    parts = []
    for start in range(0, kernel.n, chunk_rows):
        stop = min(start + chunk_rows, kernel.n)
        local = picks[(picks >= start) & (picks < stop)] - start
        if local.size:
            parts.append(train_vectors(kernel_rows(kernel, start, stop), key)[local])
    return np.concatenate(parts)


def recall_at_k(approx: Explanation, exact: Explanation, *, side: str = "excitatory") -> float:
    """Mean over test points of ``|approx top-k ∩ exact top-k| / k`` on one side (``"excitatory"``/``"inhibitory"``)."""
    if side not in ("excitatory", "inhibitory"):
        raise InputError(f"`side` must be 'excitatory' or 'inhibitory'; got {side!r}.")
    a, e = getattr(approx, side).indices, getattr(exact, side).indices
    if a.shape != e.shape:
        raise InputError(f"The explanations have top-k shapes {a.shape} and {e.shape}; compare the same queries and k.")
    hits = [len(set(row_a.tolist()) & set(row_e.tolist())) for row_a, row_e in zip(a, e)]
    return float(np.mean(hits) / e.shape[1])

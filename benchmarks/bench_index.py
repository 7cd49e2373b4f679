"""Top-k retrieval over a large training set: exact engine vs faiss flat vs faiss IVF / HNSW.

Synthetic RPS-like train-side factors: ``n`` clustered float32 feature rows ``x_i`` (``n_centers``
Gaussian clusters, like a network's penultimate features) with one signed coefficient per row
(a binary head), i.e. a :class:`~representer.engine.CoefficientKernel`. ``queries`` test points
are drawn from the same clusters. Every method returns the top-``k`` of both signs (excitatory
and inhibitory) per query; recall@k is measured against the exact engine
(``engine.scoring.top_k``). Times are wall-clock seconds in one run; peak memory is the process's
maximum resident set size (``resource.getrusage``: torch and faiss allocate outside
``tracemalloc``'s view), read after each stage, so it only grows.

    python benchmarks/bench_index.py                       # 1,000,000 × 512, 100 queries, top-10
    python benchmarks/bench_index.py --n 200000 --hnsw     # smaller, with HNSW as well
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import faiss
import numpy as np
import torch

from representer.engine import CoefficientKernel, EngineOptions, TestFactors, top_k
from representer.engine.index import InnerProductIndex
from representer.explanation import Explanation, TopK


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic(n: int, d: int, n_queries: int, n_centers: int, seed: int) -> tuple[CoefficientKernel, TestFactors]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, d), dtype=np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        x[start:stop] = rng.standard_normal((stop - start, d), dtype=np.float32) * 0.7
        x[start:stop] += centers[rng.integers(0, n_centers, size=stop - start)]
    coef = rng.standard_normal((n, 1), dtype=np.float32)
    queries = centers[rng.integers(0, n_centers, size=n_queries)] + 0.7 * rng.standard_normal((n_queries, d), dtype=np.float32)
    test = TestFactors({"x": torch.from_numpy(queries)}, torch.zeros(n_queries, dtype=torch.long), torch.ones(n_queries))
    return CoefficientKernel(torch.from_numpy(x), torch.from_numpy(coef)), test


def as_explanation(parts: tuple[np.ndarray, ...]) -> Explanation:
    return Explanation(TopK(parts[0], parts[1]), TopK(parts[2], parts[3]), np.zeros(len(parts[0]), dtype=np.int64), "bench")


def recall(approx: Explanation, exact: Explanation, side: str) -> float:
    a, e = getattr(approx, side).indices, getattr(exact, side).indices
    return float(np.mean([len(set(ra) & set(re)) for ra, re in zip(a.tolist(), e.tolist())]) / e.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--centers", type=int, default=1000)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--hnsw", action="store_true", help="also build an HNSW index (slow to build for large n)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    t = time.perf_counter()
    kernel, test = synthetic(args.n, args.d, args.queries, args.centers, args.seed)
    print(f"data: {args.n:,} × {args.d} float32 ({args.n * args.d * 4 / 2**30:.2f} GiB) in {time.perf_counter() - t:.1f} s; "
          f"{args.queries} queries, top-{args.k}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    rows = []

    t = time.perf_counter()
    exact = as_explanation(top_k(kernel, test, args.k, EngineOptions(block_size=16384, test_batch_size=args.queries)))
    engine_s = time.perf_counter() - t
    rows.append(("exact engine (`engine.scoring.top_k`)", 0.0, engine_s, 1.0, 1.0, peak_rss_gib()))

    def run(label: str, index: InnerProductIndex, build_s: float) -> None:
        index.search_factors(test.slice(0, 1), args.k)
        t = time.perf_counter()
        got = as_explanation(index.search_factors(test, args.k))
        search_s = time.perf_counter() - t
        rows.append((label, build_s, search_s, recall(got, exact, "excitatory"), recall(got, exact, "inhibitory"), peak_rss_gib()))

    t = time.perf_counter()
    flat = InnerProductIndex.from_kernel(kernel, kind="flat")
    run("faiss flat (`IndexFlatIP`)", flat, time.perf_counter() - t)
    del flat

    t = time.perf_counter()
    ivf = InnerProductIndex.from_kernel(kernel, kind="ivf", nlist=args.nlist, seed=args.seed)
    build_s = time.perf_counter() - t
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        run(f"faiss IVF nlist={args.nlist} nprobe={nprobe}", ivf, build_s)
    del ivf

    if args.hnsw:
        t = time.perf_counter()
        hnsw = InnerProductIndex.from_kernel(kernel, kind="hnsw", hnsw_m=32, ef_search=128)
        build_s = time.perf_counter() - t
        for ef in (64, 128, 256):
            hnsw.ef_search = ef
            run(f"faiss HNSW M=32 efSearch={ef}", hnsw, build_s)

    print()
    print(f"| method | build (s) | search {args.queries} queries, both signs (s) | speed-up vs engine | "
          f"recall@{args.k} excitatory | recall@{args.k} inhibitory | peak RSS (GiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, build_s, search_s, r_exc, r_inh, rss in rows:
        print(f"| {label} | {build_s:.1f} | {search_s:.3f} | {engine_s / search_s:.1f}× | {r_exc:.3f} | {r_inh:.3f} | {rss:.2f} |")


if __name__ == "__main__":
    main()

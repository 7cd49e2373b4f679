"""Scoring-engine throughput as a fraction of a plain ``torch.matmul`` of the same shapes.

For a :class:`~representer.engine.CoefficientKernel` (RPS-L2, DualView, similarity) with ``n``
training rows of width ``D``, ``K`` classes and ``m`` test rows, one run times

* ``torch.matmul(X_test, X_train.T)``: the bare ``(m, n)`` GEMM, output allocated fresh;
* the engine's streaming top-10 of both signs (``engine.top_k``, default block sizes);
* the engine's dense ``(m, n)`` attribution (``engine.dense``);

interleaved, best of ``--repeats``, float32, and prints each engine time as a fraction of the
GEMM's (throughput = GEMM time / engine time; 100 % means the engine costs one GEMM).

    python benchmarks/bench_engine.py [--threads 1] [--repeats 3] [--small]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from representer.engine import CoefficientKernel, EngineOptions, TestFactors, dense, top_k

SHAPES = [(1_000, 60_000, 129, 10), (100, 1_000_000, 512, 10)]
SMALL_SHAPES = [(1_000, 60_000, 129, 10), (100, 250_000, 512, 10)]


def _problem(m: int, n: int, d: int, k: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    kernel = CoefficientKernel(x=x, coef=torch.randn(n, k, generator=g))
    test_x = torch.randn(m, d, generator=g)
    test = TestFactors({"x": test_x}, torch.randint(0, k, (m,), generator=g), torch.ones(m))
    return kernel, test, test_x, x


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(shape, repeats: int) -> dict[str, float]:
    kernel, test, test_x, x = _problem(*shape)
    options = EngineOptions()
    runs = {
        "matmul": lambda: torch.matmul(test_x, x.T),
        "top-10": lambda: top_k(kernel, test, 10, options),
        "dense": lambda: dense(kernel, test, options),
    }
    best = dict.fromkeys(runs, np.inf)
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], _time(fn))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="250,000 instead of 1,000,000 rows for the wide case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {load}, float32, best of {args.repeats}\n")
    print("| m × n × D (K) | matmul s | top-10 s | top-10 throughput | dense s | dense throughput |")
    print("|---|---:|---:|---:|---:|---:|")
    for m, n, d, k in SMALL_SHAPES if args.small else SHAPES:
        t = bench((m, n, d, k), args.repeats)
        print(f"| {m:,} × {n:,} × {d} ({k}) | {t['matmul']:.3f} | {t['top-10']:.3f} | {t['matmul'] / t['top-10']:.0%} "
              f"| {t['dense']:.3f} | {t['matmul'] / t['dense']:.0%} |")


if __name__ == "__main__":
    main()

"""Scoring-engine throughput as a fraction of a plain ``torch.matmul`` of the same shapes.

For a :class:`~representer.engine.CoefficientKernel` (RPS-L2, DualView, similarity) with ``n``
training rows of width ``D``, ``K`` classes and ``m`` test rows, one run times

* ``torch.matmul(X_test, X_train.T)``: the bare ``(m, n)`` GEMM, output allocated fresh;
* the engine's streaming top-10 of both signs (``engine.top_k``, default block sizes);
* the engine's dense ``(m, n)`` attribution (``engine.dense``);

interleaved, best of ``--repeats``, float32, and prints each engine time as a fraction of the
GEMM's (throughput = GEMM time / engine time; 100 % means the engine costs one GEMM).

A second table times the :class:`~representer.engine.GradientKernel` (influence / RelatIF with an
exact or EK-FAC head Hessian: test side ``U_t`` ``(K, D)``, train side ``r_i ⊗ x_i``) against its
previous form, which contracted ``(b, m, K)`` projections with an einsum: top-10 and dense time
(interleaved, best of ``--repeats``) and peak memory (the largest growth of the resident set while
scoring, sampled every millisecond; dense includes its ``(m, n)`` output; allocations the process
can serve from memory it already holds show as 0), with new/previous ratios.

    python benchmarks/bench_engine.py [--threads 1] [--repeats 3] [--small] [--no-gradient]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from representer.engine import CoefficientKernel, EngineOptions, GradientKernel, TestFactors, dense, top_k
from representer.evaluation.cost import PeakRSS

SHAPES = [(1_000, 60_000, 129, 10), (100, 1_000_000, 512, 10)]
SMALL_SHAPES = [(1_000, 60_000, 129, 10), (100, 250_000, 512, 10)]
#: ``(m, n, D, K)`` of the GradientKernel rows: many test points (gradient rows), few (projections).
GRADIENT_SHAPES = [(1_000, 60_000, 129, 10), (1_000, 20_000, 129, 100), (16, 250_000, 513, 10)]


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


@dataclass
class _EinsumGradientKernel(GradientKernel):
    """The previous GradientKernel block: ``(b, m, K)`` projections contracted with ``r`` by einsum."""

    def _raw_block_into(self, test, start, stop, out):
        u = test.tensors["u"]
        m, k, d = u.shape
        projected = (self.x[start:stop] @ u.reshape(m * k, d).T).reshape(stop - start, m, k)
        return torch.einsum("bmk,bk->mb", projected, self.r[start:stop])


def bench_gradient(shape, repeats: int) -> dict[str, dict[str, float]]:
    """Per form: best time of top-10 and dense, interleaved, and the peak memory growth of each."""
    m, n, d, k = shape
    g = torch.Generator().manual_seed(0)
    x, r = torch.randn(n, d, generator=g), torch.randn(n, k, generator=g)
    test = TestFactors({"u": torch.randn(m, k, d, generator=g)}, torch.zeros(m, dtype=torch.long), torch.ones(m))
    options = EngineOptions()
    kernels = {"previous": _EinsumGradientKernel(x=x, r=r), "new": GradientKernel(x=x, r=r)}
    runs = {"top-10": lambda kernel: top_k(kernel, test, 10, options), "dense": lambda kernel: dense(kernel, test, options)}
    result = {form: {key: np.inf for key in ("top-10", "dense")} for form in kernels}
    for _ in range(repeats):
        for form, kernel in kernels.items():
            for name, run in runs.items():
                gc.collect()
                with PeakRSS() as peak:
                    result[form][name] = min(result[form][name], _time(lambda: run(kernel)))
                result[form][name + " MB"] = peak.megabytes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="250,000 instead of 1,000,000 rows for the wide case")
    parser.add_argument("--no-gradient", action="store_true", help="skip the GradientKernel table")
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
    if args.no_gradient:
        return
    print("\nGradientKernel (exact / EK-FAC influence): new vs previous (einsum over (b, m, K) projections)\n")
    print("| m × n × D (K) | form | top-10 s | top-10 peak MB | dense s | dense peak MB |")
    print("|---|---|---:|---:|---:|---:|")
    for m, n, d, k in GRADIENT_SHAPES:
        t = bench_gradient((m, n, d, k), args.repeats)
        new, old = t["new"], t["previous"]
        form = "gradient rows (b, K·D)" if d <= m else "projections (b, m, K)"
        for name, row in (("previous", old), (f"new: {form}", new)):
            print(f"| {m:,} × {n:,} × {d} ({k}) | {name} | {row['top-10']:.3f} | {row['top-10 MB']:.0f} "
                  f"| {row['dense']:.3f} | {row['dense MB']:.0f} |")
        ratios = {key: new[key] / max(old[key], 1e-9) for key in ("top-10", "top-10 MB", "dense", "dense MB")}
        print(f"| | new / previous | {ratios['top-10']:.2f}× | {ratios['top-10 MB']:.2f}× | {ratios['dense']:.2f}× "
              f"| {ratios['dense MB']:.2f}× |")


if __name__ == "__main__":
    main()

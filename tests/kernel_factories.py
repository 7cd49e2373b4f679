"""Random bilinear kernels with matching test factors, shared by the index and store tests."""

import torch

from representer.engine import ClassFactorKernel, CoefficientKernel, GradientKernel, KroneckerKernel
from representer.engine import TestFactors as Factors

KERNEL_KINDS = ("CoefficientKernel", "ClassFactorKernel", "GradientKernel", "KroneckerKernel")


def random_kernel_and_test(kind: str, scaled: bool, *, n: int, m: int, k: int, d: int, seed: int = 0):
    """A random kernel of ``kind`` (float32, ``n`` train rows) and ``m`` test factors with random classes and signs."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    scale = rnd(n).abs() + 0.1 if scaled else None
    out = torch.randint(0, k, (m,), generator=g)
    sign = torch.where(torch.rand(m, generator=g) < 0.5, -1.0, 1.0)
    if kind == "CoefficientKernel":
        return CoefficientKernel(rnd(n, d), rnd(n, k), scale), Factors({"x": rnd(m, d)}, out, sign)
    if kind == "ClassFactorKernel":
        return ClassFactorKernel(rnd(n, k, d), scale), Factors({"x": rnd(m, d)}, out, sign)
    if kind == "GradientKernel":
        return GradientKernel(rnd(n, d), rnd(n, k), scale), Factors({"u": rnd(m, k, d)}, out, sign)
    return KroneckerKernel(rnd(n, d), rnd(n, k), scale), Factors({"s": rnd(m, k), "a": rnd(m, d)}, out, sign)

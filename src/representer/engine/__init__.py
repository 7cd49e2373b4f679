"""Scoring engine: bilinear kernels and blocked, streaming top-k / dense scoring."""

from .kernels import (
    BilinearKernel,
    ClassFactorKernel,
    CoefficientKernel,
    GradientKernel,
    KroneckerKernel,
    LowRankGradientKernel,
    SumKernel,
    TestFactors,
)
from .scoring import EngineOptions, dense, stream_blocks, top_k

__all__ = [
    "BilinearKernel",
    "ClassFactorKernel",
    "CoefficientKernel",
    "EngineOptions",
    "GradientKernel",
    "KroneckerKernel",
    "LowRankGradientKernel",
    "SumKernel",
    "TestFactors",
    "dense",
    "stream_blocks",
    "top_k",
]

"""RAND: the random-attribution baseline, seeded and deterministic.

The score of training point ``i`` for test point ``t`` is a counter-based hash of
``(seed, content of φ_t, i)`` mapped to ``[−1, 1)``::

    a(t, i) = 2 · u(key_t, i) − 1,     key_t = blake2b(seed, φ_t bytes),   u ∈ [0, 1): 24 bits of a 32-bit mix.

Because the hash depends only on the seed, the test point's features and the training index, the
same test point always gets the same scores — in ``explain`` and ``attribute``, in any batch, block
size or order — and scores of different test points are independent draws. The hash runs inside a
small engine kernel (:class:`RandomKernel`), so no ``m × n`` matrix is ever stored. Scores ignore the
explained class.

Self-influence is a seeded random score per training point (``numpy`` ``default_rng(seed)``): a
random debugging order, the baseline of the data-debugging curves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..engine import BilinearKernel, TestFactors
from .._params import Interval
from .base import Explainer

Tensor = torch.Tensor

_MASK32 = 0xFFFFFFFF
_KEY_BITS = 24  # key parts and uniform draws are integers < 2**24: exact in float32


def _mul_mod32(x: Tensor, c: int) -> Tensor:
    """``(x · c) mod 2³²`` for ``x < 2³²`` in int64 without overflow (``c`` split into 16-bit halves)."""
    hi, lo = c >> 16, c & 0xFFFF
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit avalanche hash (Wellons' ``lowbias32``) on int64 tensors holding values < 2³²."""
    x = x ^ (x >> 16)
    x = _mul_mod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul_mod32(x, 0x846CA68B)
    return x ^ (x >> 16)


@dataclass
class RandomKernel(BilinearKernel):
    """``a(t, i) = 2·u(key_t, i) − 1`` for ``n`` training points; test tensor ``key`` ``(m, 2)``.

    ``key`` holds two integers below ``2²⁴`` per test point (exact in float32, so the engine may
    cast test factors to the scoring dtype).
    """

    n_train: int
    scale: Tensor | None = None

    @property
    def n(self) -> int:
        return self.n_train

    def tensors(self) -> dict[str, Tensor]:
        return {}

    def raw_block(self, test: TestFactors, start: int, stop: int) -> Tensor:
        key = test.tensors["key"]
        parts = key.to(torch.int64)
        test_hash = _mix32((parts[:, 0] << 8) ^ _mix32(parts[:, 1]))
        rows = torch.arange(start, stop, dtype=torch.int64, device=key.device)
        bits = _mix32((test_hash[:, None] + _mix32(rows)[None, :]) & _MASK32)
        return (bits >> 8).to(key.dtype) * (2.0 / 2**_KEY_BITS) - 1.0


class RandomAttribution(Explainer):
    """Random scores in ``[−1, 1)``, reproducible from ``seed`` (see the module docstring).

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        Only used to compute the features that identify a test point.
    seed : int, default 0
        The same seed gives the same scores and the same self-influence order.
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).
    """

    name = "random"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ()
    _parameter_constraints: ClassVar[dict[str, list]] = {"seed": [Interval(int, 0, 2**64 - 1)]}

    def __init__(self, model: Any, *, seed: int = 0, **engine: Any) -> None:
        super().__init__(model, **engine)
        self.seed = seed

    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        self.fit_report_ = {"seed": int(self.seed)}

    def _build_kernel(self) -> RandomKernel:
        return RandomKernel(n_train=int(self.train_features_.shape[0]))

    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors:
        seed = int(self.seed).to_bytes(8, "little")
        keys = np.empty((phi.shape[0], 2), dtype=np.float64)
        for t, row in enumerate(np.ascontiguousarray(phi, dtype=np.float64)):
            digest = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8, key=seed).digest(), "little")
            keys[t] = (digest & ((1 << _KEY_BITS) - 1), (digest >> _KEY_BITS) & ((1 << _KEY_BITS) - 1))
        m = phi.shape[0]
        return TestFactors({"key": torch.as_tensor(keys)}, torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=torch.float64))

    def _self_influence(self) -> np.ndarray:
        return np.random.default_rng(int(self.seed)).random(self.train_features_.shape[0])

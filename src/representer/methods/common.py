"""Small helpers shared by the methods: class ↔ head-output mapping for binary heads."""

from __future__ import annotations

import numpy as np
import torch


def output_and_sign(target: np.ndarray, n_outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Head output index and sign per explained class.

    Softmax heads: output ``c``, sign ``+1``. Binary (one-logit) heads: class 1 is ``+z`` and
    class 0 is ``−z``, so the output is 0 and the sign is ``+1`` or ``−1``.
    """
    target = np.asarray(target, dtype=np.int64)
    if n_outputs == 1:
        return torch.zeros(len(target), dtype=torch.long), torch.as_tensor(np.where(target == 1, 1.0, -1.0))
    return torch.as_tensor(target), torch.ones(len(target), dtype=torch.float64)


def class_columns(per_output: np.ndarray, *, probabilities: bool = False) -> np.ndarray:
    """Expand a ``(n, 1)`` per-output array of a binary head to ``(n, 2)`` per-class columns.

    Coefficients of the class-0 logit ``−z`` are the negated class-1 ones; probabilities are
    ``(1 − p, p)``. Softmax arrays ``(n, K ≥ 2)`` are returned unchanged.
    """
    if per_output.shape[1] != 1:
        return per_output
    col = per_output[:, 0]
    return np.stack([1 - col, col] if probabilities else [-col, col], axis=1)

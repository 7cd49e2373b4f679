"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes, BSD-3)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

from ._split import TrainTestSplit


def load_digits(test_size: float = 0.25, seed: int = 0, *, flat: bool = False) -> TrainTestSplit:
    """Stratified, seeded split of the digits; pixels scaled from 0..16 to float32 in [0, 1].

    Images have shape ``(N, 1, 8, 8)``, or ``(N, 64)`` with ``flat=True``.
    """
    bunch = _sklearn_digits()
    X = (bunch.images / 16.0).astype(np.float32)
    X = X.reshape(len(X), 64) if flat else X[:, None, :, :]
    y = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    return TrainTestSplit(
        X[idx_train], y[idx_train], X[idx_test], y[idx_test],
        tuple(str(c) for c in range(10)), "digits",
        {"source": "sklearn", "seed": seed, "train_index": idx_train, "test_index": idx_test},
    )

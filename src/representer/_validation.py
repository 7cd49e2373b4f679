"""Input checks shared by adapters and explainers. Each raises :class:`InputError` naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InputError


def as_float_array(x: Any, name: str, *, ndim: int | None = None, dtype=np.float64) -> np.ndarray:
    """Return ``x`` as a finite numpy array of ``dtype``; raise :class:`InputError` otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` must be numeric array-like; got {type(x).__name__} ({exc}).") from exc
    if ndim == 2 and arr.ndim == 1:
        raise InputError(
            f"`{name}` must be 2-dimensional, one row each; got a 1-d array of shape {arr.shape}. Add the row axis "
            "(`a[None]` for a single row)."
        )
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"`{name}` must be {ndim}-dimensional; got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"`{name}` is empty (shape {arr.shape}); pass at least one row.")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise InputError(f"`{name}` contains {bad} NaN or infinite values; clean or impute them first.")
    return np.ascontiguousarray(arr)


def as_labels(y: Any, name: str, *, n: int | None = None, n_classes: int | None = None) -> np.ndarray:
    """Return integer class labels in ``[0, n_classes)`` as an ``int64`` vector."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"`{name}` must be a 1-d vector of integer class labels; got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"`{name}` is empty; pass one label per example.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(f"`{name}` must hold integer class labels; got non-integer floats.")
    elif arr.dtype.kind not in "iub":
        raise InputError(f"`{name}` must hold integer class labels 0..K-1; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise InputError(f"`{name}` has {arr.shape[0]} labels but the data has {n} rows; pass one label per row.")
    if n_classes is not None and (arr.min() < 0 or arr.max() >= n_classes):
        raise InputError(
            f"`{name}` has labels in [{arr.min()}, {arr.max()}] but the model has {n_classes} classes; "
            f"labels must be integers in [0, {n_classes - 1}]."
        )
    return arr


def to_tensor(array: Any) -> torch.Tensor:
    """``array`` as a tensor that shares its memory where numpy allows; a read-only array is copied.

    Read-only arrays are common (``DataFrame.to_numpy()`` under pandas' copy-on-write, memory maps,
    ``np.frombuffer``); torch cannot wrap one without a "not writable" warning, so it gets its own copy.
    Pass a batch, not a whole data set, to bound that copy.
    """
    if isinstance(array, torch.Tensor):
        return array
    array = np.asarray(array)
    return torch.as_tensor(np.ascontiguousarray(array) if array.flags.writeable else np.array(array, order="C"))


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is > 0 (or >= 0 with ``allow_zero``)."""
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"`{name}` must be a finite number {bound}; got {value!r}.")
    return v


def check_device(device: Any, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device`, refused with a clear message if this torch cannot use it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"`{name}` must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got {device!r}.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"`{name}`={device!r} asks for CUDA, but this torch ({torch.__version__}) has no usable CUDA device; "
                "use device='cpu' or install a CUDA build of torch."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"`{name}`={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
    return dev

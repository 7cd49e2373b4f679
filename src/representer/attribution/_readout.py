"""The model's feature extractor with its head swapped for a per-row linear readout of φ.

``readout_network(adapter, weights)`` deep-copies the torch network (the user's network is never
touched), casts it to ``dtype`` and replaces the head by :class:`PairedReadout`, so that for a batch
``X`` the network computes ``out[r] = ⟨weights[r], φ(X_r)⟩`` (or ``⟨weights[0], φ(X_r)⟩`` when one row
of weights is given). Gradients of ``out`` with respect to ``X`` are sensitivity maps, and LRP of
``out`` distributes the penultimate relevances ``weights[r, j] · φ_j(X_r)``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, ModelError, StaleStateError
from ..methods.base import Explainer
from ..models.torch import TorchClassifier

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class PairedReadout(nn.Module):
    """Bias-free readout ``out[r] = Σ_j weights[r, j] · φ[r, j]``, shape ``(batch, 1)``."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return (phi.reshape(phi.shape[0], -1) * self.weights).sum(dim=1, keepdim=True)


def torch_adapter(explainer: Explainer) -> TorchClassifier:
    """The explainer's :class:`TorchClassifier`; input-level views need the network itself."""
    explainer._check_fitted()
    adapter = explainer.model_
    if not isinstance(adapter, TorchClassifier):
        raise ModelError(
            f"Input-level maps need the torch network: fit the explainer on a representer.TorchClassifier "
            f"(or an nn.Module); got a {type(adapter).__name__}."
        )
    return adapter


def torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in _DTYPES:
        raise InputError(f"`dtype` must be 'float32' or 'float64'; got {dtype!r}.")
    return _DTYPES[dtype]


def readout_network(adapter: TorchClassifier, weights: np.ndarray, dtype: torch.dtype) -> tuple[nn.Module, PairedReadout]:
    """A copy of ``adapter.net`` in ``dtype`` and eval mode whose head is a :class:`PairedReadout` of ``weights``."""
    readout = PairedReadout(torch.as_tensor(weights, dtype=dtype, device=adapter.device))
    if adapter.head_name == "":
        return readout, readout
    net = copy.deepcopy(adapter.net).to(device=adapter.device, dtype=dtype).eval()
    parent_name, _, child_name = adapter.head_name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child_name, readout)
    return net, readout


def one_example(x: Any, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``x`` as a float tensor with a leading batch dimension of 1."""
    tensor = _as_input_tensor(x, name, dtype, device)
    if tensor.shape[0] != 1:
        raise InputError(
            f"`{name}` must be one example with its batch dimension (shape (1, ...), e.g. X_test[i:i+1]); "
            f"got shape {tuple(tensor.shape)}."
        )
    return tensor


def training_rows(explainer: Explainer, X_train: Any, indices: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Rows ``indices`` of the training inputs, checked against the features the explainer was fitted on."""
    rows = _as_input_tensor(X_train, "X_train", None, torch.device("cpu"))
    if rows.shape[0] != explainer.n_train_:
        raise InputError(
            f"`X_train` has {rows.shape[0]} rows but the explainer was fitted on {explainer.n_train_}; pass the "
            "training inputs in the order given to `fit`."
        )
    rows = rows[torch.as_tensor(indices)]
    phi = explainer.model_.features(rows)
    stored = explainer.train_features_[indices]
    if not np.allclose(phi, stored, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(stored).max()))):
        raise StaleStateError(
            "The features of `X_train` at the requested indices differ from those the explainer was fitted on; "
            "pass the training inputs in the order given to `fit`, and the model it was fitted with."
        )
    return rows.to(device=device, dtype=dtype)


def valid_indices(indices: Any, n: int) -> np.ndarray:
    """Training indices as an ``int64`` vector in ``[0, n)``."""
    idx = np.atleast_1d(np.asarray(indices))
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise InputError(f"`train_indices` must be a non-empty 1-d array of integer training indices; got {indices!r}.")
    if idx.min() < 0 or idx.max() >= n:
        raise InputError(f"`train_indices` must lie in [0, {n - 1}]; got values in [{idx.min()}, {idx.max()}].")
    return idx.astype(np.int64)


def _as_input_tensor(x: Any, name: str, dtype: torch.dtype | None, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        tensor = x.detach()
    elif isinstance(x, np.ndarray) and x.dtype.kind in "fiub":
        tensor = torch.as_tensor(x)
    else:
        raise InputError(f"`{name}` must be a numeric numpy array or tensor of model inputs; got {type(x).__name__}.")
    if tensor.ndim == 0:
        raise InputError(f"`{name}` must have a batch dimension; got a scalar.")
    return tensor.to(device=device) if dtype is None else tensor.to(device=device, dtype=dtype)

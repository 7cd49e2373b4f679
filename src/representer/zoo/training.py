"""A small, seeded training loop (softmax cross-entropy) for the reference models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._validation import as_labels, check_positive
from ..errors import InputError

if TYPE_CHECKING:
    from ..checkpoints import CheckpointRecorder

Inputs = Any  # numpy array, torch tensor, or a dict of them (text batches)


def _to_tensors(X: Inputs) -> torch.Tensor | dict[str, torch.Tensor]:
    if isinstance(X, Mapping):
        return {key: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v) for key, v in X.items()}
    tensor = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    return tensor.float() if tensor.is_floating_point() else tensor


def _n_rows(X: torch.Tensor | dict[str, torch.Tensor]) -> int:
    if isinstance(X, dict):
        sizes = {key: int(v.shape[0]) for key, v in X.items()}
        if len(set(sizes.values())) != 1:
            raise InputError(f"every array of a dict input must have the same number of rows; got {sizes}.")
        return next(iter(sizes.values()))
    return int(X.shape[0])


def _take(X: torch.Tensor | dict[str, torch.Tensor], rows: torch.Tensor, device: torch.device):
    if isinstance(X, dict):
        return {key: (v[rows] if key == "lengths" else v[rows].to(device)) for key, v in X.items()}
    return X[rows].to(device)


def _optimizer(net: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise InputError(f'`optimizer` must be "adam" or "sgd"; got {name!r}.')


def train_classifier(
    net: nn.Module,
    X: Inputs,
    y: Any,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    optimizer: str = "adam",
    show_progress: bool = False,
    recorder: CheckpointRecorder | None = None,
) -> nn.Module:
    """Minimise mean cross-entropy of ``net(X)`` against ``y`` with mini-batches; return ``net`` in eval mode.

    Each epoch visits the rows in a fresh permutation drawn from a generator seeded with ``seed``;
    all other randomness (dropout) runs under ``torch.manual_seed(seed)`` inside a forked RNG, so the
    caller's global RNG is untouched and two calls on identically initialised nets give identical
    weights. ``optimizer`` is ``"adam"`` or ``"sgd"`` (momentum 0.9); ``weight_decay`` is the L2
    coefficient passed to the optimiser. ``lengths`` of dict (text) inputs stay on the CPU.
    ``recorder`` (a :class:`~representer.CheckpointRecorder`) is offered the weights after every
    epoch (it keeps those on its schedule) and always records the last one.
    """
    if int(epochs) != epochs or epochs < 1:
        raise InputError(f"`epochs` must be a positive integer; got {epochs!r}.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", allow_zero=True)
    inputs = _to_tensors(X)
    n = _n_rows(inputs)
    labels = torch.as_tensor(as_labels(y, "y", n=n))
    device = torch.device(device)
    net.to(device)
    opt = _optimizer(net, optimizer, lr, weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net.train()
        for epoch in tqdm(range(1, int(epochs) + 1), desc="training", disable=not show_progress):
            for rows in torch.randperm(n, generator=generator).split(int(batch_size)):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(_take(inputs, rows, device)), labels[rows].to(device))
                loss.backward()
                opt.step()
            if recorder is not None:
                recorder.save(net, epoch=epoch, learning_rate=lr, force=epoch == int(epochs))
    return net.eval()


@torch.no_grad()
def predict_logits(net: nn.Module, X: Inputs, *, batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    """Logits of ``net`` (in eval mode) on ``X`` as a float32 ``(N, K)`` numpy array, computed in batches."""
    inputs = _to_tensors(X)
    n = _n_rows(inputs)
    device = torch.device(device)
    net.to(device).eval()
    out = [net(_take(inputs, rows, device)).float().cpu() for rows in torch.arange(n).split(int(batch_size))]
    return torch.cat(out).numpy()

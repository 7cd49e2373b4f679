"""A network seen as a function of a chosen subset of its parameters, in a chosen precision.

Full-model attribution works with the gradient of a per-example loss with respect to *all* (or a
named subset of) the network's parameters, flattened into one vector of length ``P``. The layout of
that vector is fixed once by :class:`ParameterSet`: the selected parameters in
``named_parameters()`` order, each flattened row-major. :class:`Network` holds a private copy of the
network in the compute precision (float64 by default) so that the user's model is never modified,
and :class:`LabelledData` gives batches of ``(inputs, labels)`` of any input type the adapters
accept (arrays, tensors, dict batches, ``Dataset``, ``DataLoader``).

Losses (the sign convention of :mod:`representer.explanation`): the per-example loss is the
cross-entropy of the logits ``z`` against a class ``c`` — ``logsumexp(z) − z_c`` for a softmax head
and ``BCE(z, c)`` for a one-logit head — and the "logit" of class ``c`` is ``z_c`` (softmax) or
``±z`` (one-logit head: class 1 is ``+z``, class 0 is ``−z``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError, ModelError
from ..models.torch import _iterate_batches, _to_device

Tensor = torch.Tensor
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def compute_dtype(name: str) -> torch.dtype:
    """``"float32"`` / ``"float64"`` → torch dtype, with a clear error otherwise."""
    if name not in _DTYPES:
        raise InputError(f"`compute_dtype` must be 'float32' or 'float64'; got {name!r}.")
    return _DTYPES[name]


@dataclass(frozen=True)
class ParameterSet:
    """Names, shapes and flat offsets of the parameters attribution is taken over."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def select(cls, net: nn.Module, params: Sequence[str] | None) -> "ParameterSet":
        """All trainable parameters (``params=None``) or those whose name equals or starts with an entry of ``params``.

        An entry names a parameter (``"classifier.weight"``) or a module prefix (``"features.0"``).
        """
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        if params is None:
            chosen = named
        else:
            if isinstance(params, str) or not all(isinstance(s, str) for s in params):
                raise InputError(f"`params` must be a list of parameter names or module prefixes; got {params!r}.")
            chosen = [(n, p) for n, p in named if any(n == s or n.startswith(s + ".") for s in params)]
            unmatched = [s for s in params if not any(n == s or n.startswith(s + ".") for n, _ in named)]
            if unmatched:
                raise InputError(
                    f"`params` entries {unmatched} match no trainable parameter; names are e.g. {[n for n, _ in named[:4]]}."
                )
        if not chosen:
            raise ModelError("The network has no trainable parameters to attribute over (all have requires_grad=False).")
        return cls(tuple(n for n, _ in chosen), tuple(tuple(p.shape) for _, p in chosen))

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(s)) for s in self.shapes]

    @property
    def n_params(self) -> int:
        """``P``, the length of a flattened gradient."""
        return int(sum(self.sizes))

    def offsets(self) -> dict[str, slice]:
        """Slice of each parameter in the flat vector."""
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes):
            out[name] = slice(start, start + size)
            start += size
        return out

    def flatten(self, tensors: Sequence[Tensor], batch_dims: int = 0) -> Tensor:
        """Concatenate per-parameter tensors (with ``batch_dims`` leading dims) into ``(..., P)``."""
        return torch.cat([t.reshape(*t.shape[:batch_dims], -1) for t in tensors], dim=-1)

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """Split a ``(..., P)`` tensor into per-parameter tensors of the parameters' shapes."""
        lead = flat.shape[:-1]
        return [part.reshape(*lead, *shape) for part, shape in zip(flat.split(self.sizes, dim=-1), self.shapes)]


class Network:
    """A private copy of ``net`` in eval mode and ``dtype``, as a function of the parameters in ``params``."""

    def __init__(self, net: nn.Module, params: ParameterSet, *, device: torch.device, dtype: torch.dtype) -> None:
        if net.training:
            raise ModelError(
                "`net` is in training mode, so dropout / batch-norm would make gradients random; call `net.eval()` first."
            )
        self.module = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
        self.params = params
        self.device = device
        self.dtype = dtype
        named = dict(self.module.named_parameters())
        self.tensors: list[Tensor] = [named[n].detach() for n in params.names]
        self.frozen = {n: p.detach() for n, p in named.items() if n not in params.names}
        self.buffers = {n: b for n, b in self.module.named_buffers()}

    def flat_parameters(self) -> Tensor:
        """The selected parameters as one ``(P,)`` vector."""
        return self.params.flatten(self.tensors)

    def load_flat(self, flat: Tensor) -> None:
        """Replace the selected parameters by the ``(P,)`` vector ``flat`` (used for checkpoints)."""
        self.tensors = [t.to(self.device, self.dtype) for t in self.params.unflatten(flat)]

    def prepare(self, batch: Any) -> Any:
        """Move a batch of inputs to the device; floating tensors take the compute dtype."""
        return _to_device(batch, self.device, self.dtype)

    def forward(self, tensors: Sequence[Tensor], batch: Any) -> Tensor:
        """Logits ``(b, K)`` of a prepared batch with the selected parameters set to ``tensors``."""
        state = {**self.frozen, **self.buffers, **dict(zip(self.params.names, tensors))}
        z = torch.func.functional_call(self.module, state, (batch,))
        if z.ndim != 2:
            raise ModelError(f"The network must return logits of shape (batch, K); got shape {tuple(z.shape)}.")
        return z

    @torch.no_grad()
    def logits(self, X: Any, batch_size: int) -> np.ndarray:
        """Logits of all of ``X`` as a float64 ``(n, K)`` array."""
        out = [self.forward(self.tensors, self.prepare(b)).to(torch.float64).cpu() for b in _iterate_batches(X, batch_size, False)]
        if not out:
            raise InputError("`X` produced no batches; pass at least one example.")
        return torch.cat(out).numpy()


def example_loss(z: Tensor, c: Tensor) -> Tensor:
    """Per-example cross-entropy ``(b,)`` of logits ``(b, K)`` against classes ``c`` ``(b,)``."""
    if z.shape[1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], c.to(z.dtype), reduction="none")
    return torch.nn.functional.cross_entropy(z, c, reduction="none")


def class_logit(z: Tensor, c: Tensor) -> Tensor:
    """The logit of class ``c`` per row ``(b,)``: ``z_c``, or ``±z`` for a one-logit head."""
    if z.shape[1] == 1:
        return torch.where(c == 1, z[:, 0], -z[:, 0])
    return z.gather(1, c[:, None])[:, 0]


def curvature_factors(z: Tensor) -> Tensor:
    """``(b, K', K)`` rows ``c_k`` with ``Σ_k c_k c_kᵀ = Λ = ∂²ℓ/∂z²`` (independent of the label).

    Softmax: ``c_k = √p_k (e_k − p)`` (``Σ_k p_k(e_k − p)(e_k − p)ᵀ = diag p − ppᵀ``), ``K' = K``;
    one logit: ``c = √(p(1 − p))``, ``K' = 1``. Backpropagating each ``c_k`` gives the
    pseudo-gradients whose outer products sum to the Gauss–Newton matrix (the true Fisher).
    """
    if z.shape[1] == 1:
        p = torch.sigmoid(z)
        return (p * (1 - p)).sqrt()[:, None, :]
    p = torch.softmax(z, dim=1)
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return p.sqrt()[:, :, None] * (eye[None] - p[:, None, :])


def sampled_curvature_factors(z: Tensor, samples: int, generator: torch.Generator) -> Tensor:
    """``(b, samples, K)`` Monte-Carlo rows ``c_s = (p − e_{y_s})/√samples`` with ``y_s ~ p``.

    ``E_y[(p − e_y)(p − e_y)ᵀ] = Λ``, so ``Σ_s c_s c_sᵀ`` is an unbiased estimate of the curvature —
    the sampled true Fisher of K-FAC / kronfluence, ``samples`` backward passes instead of ``K``.
    One-logit head: ``c = (σ(z) − y)/√samples`` with ``y ~ Bernoulli(σ(z))``.
    """
    if z.shape[1] == 1:
        p = torch.sigmoid(z)
        y = torch.bernoulli(p.expand(-1, samples).cpu(), generator=generator).to(z)
        return ((p - y) / samples**0.5).unsqueeze(-1)
    p = torch.softmax(z, dim=1)
    y = torch.multinomial(p.cpu().to(torch.float64), samples, replacement=True, generator=generator).to(z.device)
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).to(z.dtype)
    return (p.unsqueeze(1) - onehot) / samples**0.5


class LabelledData:
    """Inputs with one class per row (training labels, or explained classes), batched the same way every pass."""

    def __init__(self, X: Any, y: np.ndarray, batch_size: int) -> None:
        self.X = X
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        self.batch_size = int(batch_size)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_batches(self) -> int | None:
        """How many batches :meth:`batches` yields (for progress bars; ``None`` when a DataLoader may not say)."""
        if isinstance(self.X, DataLoader):
            return len(self.X) if hasattr(self.X, "__len__") else None
        return -(-self.n // self.batch_size)

    def batches(self) -> Iterator[tuple[Any, Tensor]]:
        """``(inputs, labels)`` batches in order; raises if ``X`` and ``y`` disagree on the row count."""
        start = 0
        for batch in _iterate_batches(self.X, self.batch_size, False):
            b = _batch_length(batch)
            if start + b > self.n:
                raise InputError(f"`X` has more than {self.n} rows but `y` has {self.n} labels; pass one label per row.")
            yield batch, self.y[start : start + b]
            start += b
        if start != self.n:
            raise InputError(f"`X` has {start} rows but `y` has {self.n} labels; pass one label per row.")

    def take(self, rows: np.ndarray) -> tuple[Any, Tensor]:
        """The rows ``rows`` as one batch (array, tensor or dict inputs only; used by stochastic LiSSA)."""
        index = torch.as_tensor(rows)
        if isinstance(self.X, (DataLoader, Dataset)):
            raise InputError("Mini-batch LiSSA needs array, tensor or dict inputs; pass `lissa_batch_size=None`.")
        if isinstance(self.X, Mapping):
            return {k: torch.as_tensor(np.asarray(v))[index] for k, v in self.X.items()}, self.y[index]
        return torch.as_tensor(np.asarray(self.X))[index], self.y[index]


def _batch_length(batch: Any) -> int:
    if isinstance(batch, Mapping):
        return int(next(iter(batch.values())).shape[0])
    return int(batch.shape[0])

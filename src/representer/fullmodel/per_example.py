"""Per-example gradients of a network's loss (or of one logit) with respect to its parameters.

For a batch of ``b`` examples the result is the ``(b, P)`` matrix whose row ``i`` is
``∇_θ ℓ(z(x_i; θ), c_i)`` (``what="loss"``) or ``∇_θ z_{c_i}(x_i; θ)`` (``what="logit"``), in the
flat layout of :class:`~representer.fullmodel.network.ParameterSet`.

Routes, tried in this order (the one taken is :attr:`GradientComputer.route`; all give the same
numbers, to rounding):

* ``"layers"`` — when every selected parameter belongs to an ``nn.Linear`` or ``nn.Conv2d`` called
  once per forward pass: one batched forward and backward pass, with the layers' inputs ``a``
  (im2col patches for convolutions) and output gradients ``δ`` recorded by hooks, and
  ``∇M_i = Σ_s δ_is a_isᵀ`` per example (the trick of Goodfellow 2015 / Opacus / BackPACK).
* ``"vmap"`` — ``torch.func.vmap`` over ``torch.func.grad`` of a single-example function (each
  example runs as a batch of one, so the network sees the shapes it was written for).
* ``"loop"`` — one autograd backward pass per example, for networks vmap cannot trace (an LSTM over
  ``pack_padded_sequence`` reads the lengths as Python integers).

Memory is bounded by the batch: ``b · P`` floats at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch.utils._pytree import tree_map

from ..errors import ModelError
from .layers import Recorder, layer_slots, output_rows
from .network import LabelledData, Network, class_logit, curvature_factors, example_loss

Tensor = torch.Tensor
Quantity = Literal["loss", "logit", "direction"]


def objective(z: Tensor, c: Tensor, what: Quantity) -> Tensor:
    """Per-example scalar ``(b,)``: the loss of class ``c``, the logit of class ``c``, or ``⟨z, c⟩`` for rows ``c``."""
    if what == "loss":
        return example_loss(z, c)
    if what == "logit":
        return class_logit(z, c)
    return (z * c.to(z.dtype)).sum(dim=1)


def _unsqueeze(batch: Any) -> Any:
    return tree_map(lambda t: t.unsqueeze(0) if isinstance(t, Tensor) else t, batch)


def _row(batch: Any, i: int) -> Any:
    if isinstance(batch, Mapping):
        return {k: v[i : i + 1] for k, v in batch.items()}
    return batch[i : i + 1]


class GradientComputer:
    """Computes per-example gradients of ``network``; remembers which route works for it."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.route: str | None = None
        try:
            self._slots = layer_slots(network)
        except ModelError:
            self._slots = None

    @property
    def has_layer_route(self) -> bool:
        """Whether every selected parameter sits in a Linear / Conv2d layer (the ``"layers"`` route applies)."""
        return self._slots is not None

    def batch(self, inputs: Any, classes: Tensor, what: Quantity = "loss") -> Tensor:
        """``(b, P)`` gradients for one batch of raw inputs and the classes ``(b,)`` (or rows ``(b, K)``) they use."""
        x = self.network.prepare(inputs)
        c = classes.to(self.network.device)
        if self._slots is not None and self.route in (None, "layers"):
            g = self._layers_batch(x, c, what)
            if g is not None:
                self.route = "layers"
                return g
            self._slots = None
        if self.route in (None, "vmap"):
            try:
                g = self._vmap_batch(x, c, what)
                self.route = "vmap"
                return g
            except (RuntimeError, NotImplementedError, ValueError, TypeError):
                if self.route == "vmap":
                    raise
                self.route = "loop"
        return torch.stack([self._autograd_row(_row(x, i), c[i : i + 1], what) for i in range(int(c.shape[0]))])

    def _layers_batch(self, x: Any, c: Tensor, what: Quantity) -> Tensor | None:
        """The ``"layers"`` route; ``None`` when a layer is not called exactly once per forward pass."""
        modules = dict(self.network.module.named_modules())
        names = [slot[0] for slot in self._slots]
        recorder = Recorder([(n, modules[n]) for n in names])
        try:
            leaves = [t.detach().requires_grad_(True) for t in self.network.tensors]
            z = self.network.forward(leaves, x)
            if any(recorder.calls[n] != 1 for n in names):
                return None
            deltas = torch.autograd.grad(objective(z, c, what).sum(), [recorder.outputs[n] for n in names])
        finally:
            recorder.remove()
        out = torch.empty(z.shape[0], self.network.params.n_params, dtype=z.dtype, device=z.device)
        for (name, weight, bias, n_out), delta in zip(self._slots, deltas):
            grad = torch.einsum("blo,bli->boi", output_rows(modules[name], delta), recorder.inputs[name])
            if bias is None:
                out[:, weight] = grad.reshape(grad.shape[0], -1)
            else:
                out[:, weight] = grad[:, :, :-1].reshape(grad.shape[0], -1)
                out[:, bias] = grad[:, :, -1]
        return out

    def _vmap_batch(self, x: Any, c: Tensor, what: Quantity) -> Tensor:
        network = self.network

        def value(tensors: list[Tensor], xi: Any, ci: Tensor) -> Tensor:
            return objective(network.forward(tensors, _unsqueeze(xi)), ci.unsqueeze(0), what).sum()

        tensors = network.tensors
        per_param = torch.func.vmap(lambda xi, ci: torch.func.grad(value)(tensors, xi, ci))(x, c)
        return network.params.flatten(per_param, batch_dims=1)

    def _autograd_row(self, x: Any, c: Tensor, what: Quantity) -> Tensor:
        """One example's gradient with plain autograd (the ``"loop"`` route)."""
        leaves = [t.detach().requires_grad_(True) for t in self.network.tensors]
        value = objective(self.network.forward(leaves, x), c, what).sum()
        return self.network.params.flatten(torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True))

    def pseudo_batch(self, inputs: Any) -> Tensor:
        """``(b, K', P)`` pseudo-gradients ``ψ_ik = J_iᵀc_ik`` with ``Σ_k ψ_ik ψ_ikᵀ = J_iᵀΛ_iJ_i`` (GGN rows)."""
        with torch.no_grad():
            z = self.network.forward(self.network.tensors, self.network.prepare(inputs))
        factors = curvature_factors(z)
        return torch.stack([self.batch(inputs, factors[:, k], "direction") for k in range(factors.shape[1])], dim=1)

    def iterate(self, data: LabelledData, classes: np.ndarray | None = None, what: Quantity = "loss") -> Iterator[tuple[int, Tensor]]:
        """``(start, G_block)`` over ``data`` in its batches; ``classes`` defaults to the labels."""
        start = 0
        for inputs, labels in data.batches():
            b = int(labels.shape[0])
            c = labels if classes is None else torch.as_tensor(classes[start : start + b])
            yield start, self.batch(inputs, c, what)
            start += b

    def matrix(self, data: LabelledData, classes: np.ndarray | None = None, what: Quantity = "loss", *, dtype=np.float32) -> np.ndarray:
        """All per-example gradients as an ``(n, P)`` numpy array of ``dtype`` (filled batch by batch)."""
        out = np.empty((data.n, self.network.params.n_params), dtype=dtype)
        for start, block in self.iterate(data, classes, what):
            out[start : start + block.shape[0]] = block.detach().cpu().numpy()
        return out

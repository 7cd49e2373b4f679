"""Per-example gradients of a per-example scalar of a network's logits with respect to its parameters.

For a batch of ``b`` examples the result is the ``(b, P)`` matrix whose row ``i`` is
``∇_θ f(z(x_i; θ), c_i)``, for an objective ``f`` of the logits and a class
(:data:`~representer.fullmodel.measurement.Objective`: by default the cross-entropy; the explainers
pass the loss form of their ``loss`` / ``measurement``, :mod:`.measurement`), in the flat layout of
:class:`~representer.fullmodel.network.ParameterSet`.

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

On the ``"layers"`` route a Linear layer that sees one position per example (an MLP layer, a
classifier head) keeps its gradients as the two factors of ``δ ãᵀ`` (:mod:`.factored`); dense rows
are only built when asked (:meth:`GradientComputer.batch`). Memory is bounded by the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_map

from .._progress import progress_bar
from ..errors import ModelError
from .factored import GradientBlock, Part, layer_part
from .layers import Recorder, layer_slots, output_rows
from .measurement import CrossEntropy, Objective
from .network import LabelledData, Network, curvature_factors

Tensor = torch.Tensor


def _direction(z: Tensor, c: Tensor) -> Tensor:
    """``⟨z_i, c_i⟩`` per row ``(b,)`` for rows ``c`` ``(b, K)``: its gradient is ``J_iᵀc_i``."""
    return (z * c.to(z.dtype)).sum(dim=1)


def _unsqueeze(batch: Any) -> Any:
    return tree_map(lambda t: t.unsqueeze(0) if isinstance(t, Tensor) else t, batch)


def _row(batch: Any, i: int) -> Any:
    if isinstance(batch, Mapping):
        return {k: v[i : i + 1] for k, v in batch.items()}
    return batch[i : i + 1]


class GradientComputer:
    """Computes per-example gradients of ``network``; remembers which route works for it.

    :meth:`factors` gives them in factored form (:class:`~representer.fullmodel.factored.GradientBlock`:
    rank-one ``δ ãᵀ`` for Linear layers seen once per example on the ``"layers"`` route), :meth:`batch`
    as dense ``(b, P)`` rows.
    """

    def __init__(self, network: Network) -> None:
        self.network = network
        self.route: str | None = None
        self.parts: tuple[Part, ...] | None = None
        try:
            self._slots = layer_slots(network)
        except ModelError:
            self._slots = None

    @property
    def has_layer_route(self) -> bool:
        """Whether every selected parameter sits in a Linear / Conv2d layer (the ``"layers"`` route applies)."""
        return self._slots is not None

    def factors(self, inputs: Any, classes: Tensor, objective: Objective = CrossEntropy()) -> GradientBlock:
        """Gradients of ``objective`` (default cross-entropy) for one batch of raw inputs and the classes ``(b,)`` (or rows ``(b, K)``) they use, factored."""
        x = self.network.prepare(inputs)
        c = classes.to(self.network.device)
        if self._slots is not None and self.route in (None, "layers"):
            block = self._layer_factors(x, c, objective)
            if block is not None:
                self.route = "layers"
                return block
            self._slots = None
        if self.route in (None, "vmap"):
            try:
                g = self._vmap_batch(x, c, objective)
                self.route = "vmap"
                return self._flat_block(g, x)
            except (RuntimeError, NotImplementedError, ValueError, TypeError):
                if self.route == "vmap":
                    raise
                self.route = "loop"
        return self._flat_block(torch.stack([self._autograd_row(_row(x, i), c[i : i + 1], objective) for i in range(int(c.shape[0]))]), x)

    def batch(self, inputs: Any, classes: Tensor, objective: Objective = CrossEntropy()) -> Tensor:
        """``(b, P)`` gradients of ``objective`` for one batch of raw inputs and the classes ``(b,)`` (or rows ``(b, K)``) they use."""
        return self.factors(inputs, classes, objective).flat()

    def _flat_block(self, g: Tensor, x: Any) -> GradientBlock:
        with torch.no_grad():
            logits = self.network.forward(self.network.tensors, x)
        block = GradientBlock.from_rows(g, logits=logits)
        self.parts = block.parts
        return block

    def _layer_factors(self, x: Any, c: Tensor, objective: Objective) -> GradientBlock | None:
        """The ``"layers"`` route; ``None`` when a layer is not called exactly once per forward pass."""
        modules = dict(self.network.module.named_modules())
        names = [slot.module_name for slot in self._slots]
        recorder = Recorder([(n, modules[n]) for n in names])
        try:
            leaves = [t.detach().requires_grad_(True) for t in self.network.tensors]
            z = self.network.forward(leaves, x)
            if any(recorder.calls[n] != 1 for n in names):
                return None
            deltas = torch.autograd.grad(objective(z, c).sum(), [recorder.outputs[n] for n in names])
        finally:
            recorder.remove()
        rows = [output_rows(modules[n], d) for n, d in zip(names, deltas)]
        inputs = [recorder.inputs[n] for n in names]
        if self.parts is None:
            self.parts = tuple(layer_part(slot, int(a.shape[1])) for slot, a in zip(self._slots, inputs))
        tensors: list[tuple[Tensor, ...]] = []
        for part, delta, a in zip(self.parts, rows, inputs):
            if part.kind == "outer":
                if a.shape[1] != 1:
                    raise ModelError(
                        f"Layer `{part.slot.module_name}` saw one position per example in an earlier batch and "
                        f"{a.shape[1]} now; pass inputs of one shape."
                    )
                tensors.append((delta[:, 0], a[:, 0]))
            else:
                tensors.append((torch.einsum("blo,bli->boi", delta, a).reshape(a.shape[0], -1),))
        return GradientBlock(self.parts, tensors, self.network.params.n_params, z.detach())

    def _vmap_batch(self, x: Any, c: Tensor, objective: Objective) -> Tensor:
        network = self.network

        def value(tensors: list[Tensor], xi: Any, ci: Tensor) -> Tensor:
            return objective(network.forward(tensors, _unsqueeze(xi)), ci.unsqueeze(0)).sum()

        tensors = network.tensors
        per_param = torch.func.vmap(lambda xi, ci: torch.func.grad(value)(tensors, xi, ci))(x, c)
        return network.params.flatten(per_param, batch_dims=1)

    def _autograd_row(self, x: Any, c: Tensor, objective: Objective) -> Tensor:
        """One example's gradient with plain autograd (the ``"loop"`` route)."""
        leaves = [t.detach().requires_grad_(True) for t in self.network.tensors]
        value = objective(self.network.forward(leaves, x), c).sum()
        return self.network.params.flatten(torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True))

    def pseudo_blocks(self, inputs: Any) -> list[GradientBlock]:
        """Per ``k``, the factored pseudo-gradients ``ψ_ik = J_iᵀc_ik`` (``Σ_k ψ_ik ψ_ikᵀ = J_iᵀΛ_iJ_i``, the GGN rows)."""
        with torch.no_grad():
            z = self.network.forward(self.network.tensors, self.network.prepare(inputs))
        factors = curvature_factors(z)
        return [self.factors(inputs, factors[:, k], _direction) for k in range(factors.shape[1])]

    def pseudo_batch(self, inputs: Any) -> Tensor:
        """``(b, K', P)`` dense pseudo-gradients (see :meth:`pseudo_blocks`)."""
        return torch.stack([block.flat() for block in self.pseudo_blocks(inputs)], dim=1)

    def iterate(
        self, data: LabelledData, classes: np.ndarray | None = None, objective: Objective = CrossEntropy(), *, progress: bool | None = False, desc: str = "gradients"
    ) -> Iterator[tuple[int, GradientBlock]]:
        """``(start, block)`` of factored gradients of ``objective`` over ``data`` in its batches; ``classes`` defaults to the labels."""
        start = 0
        for inputs, labels in progress_bar(data.batches(), desc=desc, total=data.n_batches, progress=progress):
            b = int(labels.shape[0])
            c = labels if classes is None else torch.as_tensor(classes[start : start + b])
            yield start, self.factors(inputs, c, objective)
            start += b

    def matrix(self, data: LabelledData, classes: np.ndarray | None = None, objective: Objective = CrossEntropy(), *, dtype=np.float32) -> np.ndarray:
        """All per-example gradients as a dense ``(n, P)`` numpy array of ``dtype`` (for small problems and tests)."""
        out = np.empty((data.n, self.network.params.n_params), dtype=dtype)
        for start, block in self.iterate(data, classes, objective):
            out[start : start + block.b] = block.flat().detach().cpu().numpy()
        return out

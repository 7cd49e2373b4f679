"""Curvature–vector products of the mean training loss over all (selected) parameters.

With ``z_i = f(x_i; θ)`` the logits, ``ℓ_i`` the training loss with label ``y_i`` (the cross-entropy
by default; the loss form of any :class:`~representer.fullmodel.measurement.Measurement` for the
Hessian) and ``J_i = ∂z_i/∂θ`` (``K × P``):

* ``kind="hessian"``: ``H v = (1/n) Σ_i ∇²ℓ_i v`` (the true Hessian; indefinite away from a minimum
  of a non-convex net);
* ``kind="ggn"``: ``G v = (1/n) Σ_i J_iᵀ Λ_i J_i v`` with ``Λ_i = ∂²ℓ/∂z²`` — the Gauss–Newton
  matrix, positive semi-definite, equal to the true Fisher for cross-entropy and to ``H`` for a
  network linear in its parameters (logistic regression). Its ``Λ_i`` is the cross-entropy's
  (:func:`~representer.fullmodel.network.curvature_factors`), so ``"ggn"`` refuses another loss.

Products run on ``m`` vectors at once (rows of ``V``, ``(m, P)``). ``G v`` for networks made of
Linear / Conv2d layers uses the per-example pseudo-gradients ``ψ_ik = J_iᵀc_ik`` with
``Σ_k c_ik c_ikᵀ = Λ_i`` (:meth:`GradientComputer.pseudo_batch`): ``G v = (1/n) Σ_ik ψ_ik (ψ_ikᵀ v)``,
``K`` batched backward passes per batch whatever ``m``, made dense in row chunks of bounded size (the
factored rows of :mod:`.factored`); the dense ``G`` is ``(1/n) ΨᵀΨ``. When
``Ψ`` (``n·K × P``) fits in ``cache_bytes`` it is computed once and kept, so that CG and LiSSA
iterations are two matrix products each. Otherwise,
and for ``H v``, products use reverse-over-reverse autograd, which works for any differentiable
network (LSTMs over packed sequences included): the forward and first backward pass of a batch
are shared by all ``m`` vectors, the ``m`` second backward passes are vectorised with
``is_grads_batched`` where the network allows it (a loop otherwise), and ``J v`` comes from the
double-backward trick ``J v = ∂⟨Jᵀu, v⟩/∂u``; the dense matrix then takes ``P`` products. Damping is
not added here; the solvers add ``λ v``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from .. import head as hm
from ..errors import InputError
from .measurement import CrossEntropy, Measurement, loss_form
from .network import LabelledData, Network
from .per_example import GradientComputer

Tensor = torch.Tensor
CurvatureKind = Literal["ggn", "hessian"]


class Curvature:
    """``V ↦ V Cᵀ`` for the curvature ``C`` (``"ggn"`` or ``"hessian"``) of the mean training ``loss``."""

    def __init__(
        self, network: Network, data: LabelledData, kind: CurvatureKind = "ggn", *, loss: Measurement = CrossEntropy(),
        cache_bytes: int = 1 << 29,
    ) -> None:
        if kind not in ("ggn", "hessian"):
            raise InputError(f"`curvature` must be 'ggn' (Gauss–Newton) or 'hessian'; got {kind!r}.")
        if kind == "ggn" and type(loss) is not CrossEntropy:
            raise InputError(
                f"curvature='ggn' is the Gauss–Newton matrix of the cross-entropy; loss={loss!r} has another. Use "
                "curvature='hessian' (the Hessian of that loss), or hessian='identity'."
            )
        self.network = network
        self.data = data
        self.kind = kind
        self.loss = loss_form(loss)
        self.batched = True
        self.n_products = 0
        self.gradients = GradientComputer(network)
        self.pseudo = kind == "ggn" and self.gradients.has_layer_route
        self.cache_bytes = int(cache_bytes)
        self._psi: Tensor | None = None
        self._psi_too_large = False

    def _psi_chunks(self, inputs) -> Iterator[Tensor]:
        """Dense pseudo-gradient rows of a batch, in chunks of bounded size (``FLAT_CHUNK_FLOATS`` floats)."""
        for block in self.gradients.pseudo_blocks(inputs):
            for _, flat in block.flat_chunks():
                yield flat

    def cached_psi(self) -> Tensor | None:
        """All pseudo-gradients ``(n, K', P)`` when the GGN route applies and they fit in ``cache_bytes``."""
        if not self.pseudo or self._psi_too_large:
            return None
        if self._psi is None:
            first, _ = next(self.data.batches())
            k = int(self.gradients.pseudo_batch(_first_row(first)).shape[1])
            size = self.data.n * k * self.network.params.n_params * torch.finfo(self.network.dtype).bits // 8
            if size > self.cache_bytes:
                self._psi_too_large = True
                return None
            self._psi = torch.cat([self.gradients.pseudo_batch(inputs) for inputs, _ in self.data.batches()])
        return self._psi

    def _grad(self, outputs: Tensor, inputs: list[Tensor] | Tensor, grad_outputs: Tensor) -> list[Tensor]:
        """``autograd.grad`` for a batch of cotangents ``grad_outputs`` (leading dim ``m``)."""
        inputs = inputs if isinstance(inputs, list) else [inputs]
        if self.batched:
            try:
                return list(
                    torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=True, is_grads_batched=True, allow_unused=True, materialize_grads=True)
                )
            except (RuntimeError, NotImplementedError):
                self.batched = False
        parts = [
            torch.autograd.grad(outputs, inputs, g, retain_graph=True, allow_unused=True, materialize_grads=True) for g in grad_outputs
        ]
        return [torch.stack([p[k] for p in parts]) for k in range(len(inputs))]

    def _batch_product(self, inputs, labels: Tensor, v: Tensor) -> Tensor:
        """``Σ_{i ∈ batch} C_i vᵀ`` for ``v`` of shape ``(m, P)``."""
        params = self.network.params
        if self.pseudo:
            total = torch.zeros_like(v)
            for psi in self._psi_chunks(inputs):
                total += (v @ psi.T) @ psi
            return total
        leaves = [t.detach().requires_grad_(True) for t in self.network.tensors]
        z = self.network.forward(leaves, self.network.prepare(inputs))
        if self.kind == "hessian":
            loss = self.loss(z, labels.to(z.device)).sum()
            g = params.flatten(torch.autograd.grad(loss, leaves, create_graph=True))
            return params.flatten(self._grad(g, leaves, v), batch_dims=1)
        u = torch.zeros_like(z, requires_grad=True)
        w = params.flatten(torch.autograd.grad(z, leaves, u, create_graph=True))
        jv = self._grad(w, u, v)[0]
        p = hm.probabilities(z.detach())
        lam_jv = torch.stack([hm.curvature_apply(p, row) for row in jv])
        return params.flatten(self._grad(z, leaves, lam_jv), batch_dims=1)

    def matvec(self, v: Tensor, rows: np.ndarray | None = None) -> Tensor:
        """``(m, P)`` products ``C v_j`` averaged over the training set (or over ``rows`` only)."""
        v = v.to(self.network.device, self.network.dtype)
        self.n_products += int(v.shape[0])
        psi = self.cached_psi()
        if psi is not None:
            block = (psi if rows is None else psi[torch.as_tensor(rows)]).flatten(0, 1)
            return (v @ block.T) @ block / (self.data.n if rows is None else len(rows))
        if rows is not None:
            inputs, labels = self.data.take(rows)
            return self._batch_product(inputs, labels, v) / len(rows)
        total = torch.zeros_like(v)
        for inputs, labels in self.data.batches():
            total += self._batch_product(inputs, labels, v)
        return total / self.data.n

    def matrix(self, chunk: int = 128) -> Tensor:
        """The dense ``(P, P)`` curvature: ``ΨᵀΨ/n`` (pseudo-gradient route) or products with ``chunk`` basis vectors at a time."""
        n_params = self.network.params.n_params
        if self.pseudo:
            psi = self.cached_psi()
            if psi is not None:
                flat = psi.flatten(0, 1)
                return flat.T @ flat / self.data.n
            out = torch.zeros(n_params, n_params, dtype=self.network.dtype, device=self.network.device)
            for inputs, _ in self.data.batches():
                for psi in self._psi_chunks(inputs):
                    out += psi.T @ psi
            return out / self.data.n
        out = torch.empty(n_params, n_params, dtype=self.network.dtype, device=self.network.device)
        for start in range(0, n_params, chunk):
            stop = min(start + chunk, n_params)
            basis = torch.zeros(stop - start, n_params, dtype=self.network.dtype, device=self.network.device)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            out[start:stop] = self.matvec(basis)
        return (out + out.T) / 2

    def largest_eigenvalue(self, n_iter: int = 20, seed: int = 0) -> float:
        """Power-iteration estimate of the largest-magnitude eigenvalue (sets LiSSA's scale and the default damping)."""
        return power_iteration(self.matvec, self.network.params.n_params, dtype=self.network.dtype, device=self.network.device, n_iter=n_iter, seed=seed)


def power_iteration(apply, n_params: int, *, dtype: torch.dtype, device: torch.device, n_iter: int = 20, seed: int = 0) -> float:
    """``|λ|`` of the largest-magnitude eigenvalue of a symmetric operator ``apply`` on rows ``(1, P)``, by power iteration."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(1, n_params, generator=gen, dtype=torch.float64).to(device, dtype)
    v /= v.norm()
    value = 0.0
    for _ in range(n_iter):
        w = apply(v)
        value = float((w * v).sum())
        v = w / w.norm().clamp_min(torch.finfo(w.dtype).tiny)
    return abs(value)


def _first_row(batch):
    """The first example of a batch, still batched (to learn ``K'`` cheaply)."""
    if isinstance(batch, dict):
        return {k: v[:1] for k, v in batch.items()}
    return batch[:1]

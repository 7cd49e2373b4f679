"""EK-FAC for the ``nn.Linear`` and ``nn.Conv2d`` layers of a network (George et al. 2018).

For a layer with input activations ``a`` (an im2col patch for a convolution, with a trailing 1 when
the layer has a bias) and pre-activation gradients ``δ``, the per-example gradient of the layer's
parameter matrix ``M = [W | b]`` (``W`` reshaped to ``out × in·kh·kw``) is ``∇M_i = Σ_s δ_is a_isᵀ``
(``s`` runs over spatial positions or sequence steps). The layer block of the Gauss–Newton matrix
``G = (1/n) Σ_i J_iᵀΛ_iJ_i`` is approximated by

    G_l ≈ (Q_S ⊗ Q_A) diag(E) (Q_S ⊗ Q_A)ᵀ,

with ``Q_A`` and ``Q_S`` the eigenvectors of ``A = Σ a aᵀ`` and ``S = Σ δ δᵀ`` (K-FAC's factors,
``S`` taken over the ``K`` pseudo-gradients of :func:`~representer.fullmodel.network.curvature_factors`,
the exact expectation over labels of the true Fisher, or over ``samples`` labels drawn from the
model as kronfluence does), and
``E`` the *exact* diagonal of ``G_l`` in that basis:
``E = (1/n) Σ_i Σ_k (Q_Sᵀ ∇M_ik Q_A)²``. Layers are independent (block-diagonal), so

    (G + λI)⁻¹ v  =  per layer  Q_S [(Q_Sᵀ V_l Q_A) ⊘ (E + λ)] Q_Aᵀ,

and the RelatIF denominators are per layer sums of ``R²/(E + λ)`` (``g_iᵀH⁻¹g_i``) and
``R²/(E + λ)²`` (``‖H⁻¹g_i‖²``) with ``R = Q_Sᵀ ∇M_i Q_A`` — RelatIF's Appendix C recipe.
Two passes over the training data: factors, then eigenvalue correction. The ``K`` pseudo-gradients
of a batch are one batched backward pass (``is_grads_batched``), and when a layer sees one position
per example (an MLP layer, a classifier head) ``∇M_ik = δ_ik ã_iᵀ`` has rank one, so its rotation
is ``(Q_Sᵀδ_ik)(Q_Aᵀã_i)ᵀ`` and the eigenvalue correction is one GEMM,
``E = (1/n) (Σ_k (δ_k Q_S)²)ᵀ (ã Q_A)²`` (squares elementwise) — no per-example matrix is formed.
The same rank-one structure gives the solves and quadratic forms of factored gradients
(:meth:`EKFACInverse.solve_block`, :meth:`EKFACInverse.forms_block`) without densifying them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._progress import progress_bar
from ..errors import RepresenterError
from .factored import GradientBlock
from .ihvp import InverseCurvature
from .layers import LayerSlot, Recorder, layer_slots, layers_of, output_rows
from .network import LabelledData, Network, curvature_factors, sampled_curvature_factors

Tensor = torch.Tensor


@dataclass
class LayerFactors:
    """One layer's EK-FAC factors and where its parameters sit in the flat gradient."""

    slot: LayerSlot
    q_s: Tensor
    q_a: Tensor
    eigenvalues: Tensor

    @property
    def module_name(self) -> str:
        return self.slot.module_name

    def rotate(self, matrices: Tensor) -> Tensor:
        """``Q_Sᵀ M Q_A`` for matrices ``(m, out, in')``."""
        return self.q_s.T @ matrices @ self.q_a


def _pseudo_deltas(network: Network, recorder: Recorder, layers: list, inputs, samples: int | None, generator: torch.Generator) -> list[Tensor]:
    """Forward one batch; per layer the output-gradient rows ``(K', b, positions, out)`` of its ``K'`` pseudo-gradients."""
    leaves = [t.detach().requires_grad_(True) for t in network.tensors]
    z = network.forward(leaves, network.prepare(inputs))
    factors = curvature_factors(z.detach()) if samples is None else sampled_curvature_factors(z.detach(), samples, generator)
    cotangents = factors.transpose(0, 1)
    outputs = [recorder.outputs[name] for name, _ in layers]
    try:
        grads = torch.autograd.grad(z, outputs, cotangents, is_grads_batched=True)
    except (RuntimeError, NotImplementedError):
        k = cotangents.shape[0]
        per_k = [torch.autograd.grad(z, outputs, cotangents[j], retain_graph=j + 1 < k) for j in range(k)]
        grads = tuple(torch.stack([g[i] for g in per_k]) for i in range(len(outputs)))
    deltas = []
    for (_, module), g in zip(layers, grads):
        rows = output_rows(module, g.flatten(0, 1))
        deltas.append(rows.reshape(g.shape[0], -1, *rows.shape[1:]))
    return deltas


def fit_ekfac(
    network: Network, data: LabelledData, *, samples: int | None = None, seed: int = 0, progress: bool | None = False
) -> list[LayerFactors]:
    """Fit EK-FAC factors of every selected Linear / Conv2d layer (two passes over ``data``).

    ``samples=None`` uses the exact expectation over labels (``K`` pseudo-gradients per example);
    an integer draws that many labels per example from the model (the sampled Fisher), which is
    ``K/samples`` times cheaper and unbiased.
    """
    generator = torch.Generator().manual_seed(int(seed))
    layers = layers_of(network)
    recorder = Recorder(layers)
    try:
        a_sum: dict[str, Tensor] = {}
        s_sum: dict[str, Tensor] = {}
        for inputs, _ in progress_bar(data.batches(), desc="EK-FAC factors", total=data.n_batches, progress=progress):
            deltas = _pseudo_deltas(network, recorder, layers, inputs, samples, generator)
            for (name, _), d in zip(layers, deltas):
                a = recorder.inputs[name].flatten(0, 1)
                d = d.flatten(0, 2)
                a_sum[name] = a_sum.get(name, 0) + a.T @ a
                s_sum[name] = s_sum.get(name, 0) + d.T @ d
        bases = {name: (torch.linalg.eigh(s_sum[name])[1], torch.linalg.eigh(a_sum[name])[1]) for name, _ in layers}
        eig: dict[str, Tensor] = {}
        for inputs, _ in progress_bar(data.batches(), desc="EK-FAC eigenvalues", total=data.n_batches, progress=progress):
            deltas = _pseudo_deltas(network, recorder, layers, inputs, samples, generator)
            for (name, _), d in zip(layers, deltas):
                q_s, q_a = bases[name]
                a = recorder.inputs[name] @ q_a
                d = d @ q_s
                if a.shape[1] == 1:
                    eig[name] = eig.get(name, 0) + (d[:, :, 0] ** 2).sum(dim=0).T @ (a[:, 0] ** 2)
                    continue
                for dk in d:
                    rotated = torch.bmm(dk.transpose(1, 2), a)
                    eig[name] = eig.get(name, 0) + (rotated * rotated).sum(dim=0)
    finally:
        recorder.remove()
    return [LayerFactors(slot, *bases[slot.module_name], eig[slot.module_name] / data.n) for slot in layer_slots(network)]


#: Relative Frobenius error allowed when ``1/(E + λ)`` is replaced by its truncated SVD for scoring
#: (below the float32 storage error of the scores, tested to agree with the dense solve to 1e-5).
LOW_RANK_TOL = 1e-6


def low_rank_factors(inverse_eigenvalues: Tensor, tol: float = LOW_RANK_TOL) -> tuple[Tensor, Tensor] | None:
    """``(L, R)`` with ``L Rᵀ ≈ D`` to relative Frobenius error ``tol`` (truncated SVD), or ``None`` when not cheaper.

    A rank-``r`` ``D`` turns the score of rank-one gradients, ``Σ_oj s_o D_oj α_j`` per pair, into
    ``Σ_k (s ⊙ L_k)·(α ⊙ R_k)``: ``r·(out + in')`` instead of ``out·in'`` operations; worth it while
    ``r·(out + in') ≤ out·in' / 2``.
    """
    u, sv, vh = torch.linalg.svd(inverse_eigenvalues, full_matrices=False)
    tail = torch.sqrt(torch.flip(torch.cumsum(torch.flip(sv * sv, [0]), 0), [0]))
    rank = max(1, int((tail > tol * tail[0]).sum()))
    n_out, n_in = inverse_eigenvalues.shape
    if 2 * rank * (n_out + n_in) > n_out * n_in:
        return None
    root = sv[:rank].sqrt()
    return u[:, :rank] * root, vh[:rank].T * root


def largest_eigenvalue(layers: list[LayerFactors]) -> float:
    """The largest EK-FAC eigenvalue over all layers (the curvature's scale; sets the default damping)."""
    return max(float(layer.eigenvalues.max()) for layer in layers)


class EKFACInverse(InverseCurvature):
    """``(G_EKFAC + λI)⁻¹`` on flat gradient rows or factored gradients, layer by layer."""

    def __init__(self, layers: list[LayerFactors], damping: float) -> None:
        if not layers:
            raise RepresenterError("EK-FAC found no Linear or Conv2d layer among the selected parameters.")
        self.layers = layers
        self.damping = float(damping)
        self.report = {"layers": [layer.module_name for layer in layers]}
        for layer in layers:
            if not bool((layer.eigenvalues + self.damping > 0).all()):
                raise RepresenterError(f"EK-FAC eigenvalues of layer `{layer.module_name}` are zero; use `damping` > 0.")

    def _inverse_eigenvalues(self, layer: LayerFactors, dtype: torch.dtype) -> Tensor:
        return 1 / (layer.eigenvalues + self.damping).to(dtype)

    def low_rank(self, module_name: str) -> tuple[Tensor, Tensor] | None:
        """The :func:`low_rank_factors` of layer ``module_name``'s ``1/(E + λ)`` (cached), or ``None``."""
        cache = self.__dict__.setdefault("_low_rank", {})
        if module_name not in cache:
            layer = next(layer for layer in self.layers if layer.module_name == module_name)
            cache[module_name] = low_rank_factors(self._inverse_eigenvalues(layer, layer.eigenvalues.dtype))
        return cache[module_name]

    def solve(self, v: Tensor) -> Tensor:
        """``(m, P)`` rows ``(G + λI)⁻¹ v_j``."""
        out = torch.empty_like(v)
        for layer in self.layers:
            rotated = layer.rotate(layer.slot.matrices(v)) * self._inverse_eigenvalues(layer, v.dtype)
            layer.slot.write(out, layer.q_s @ rotated @ layer.q_a.T)
        return out

    def _rotated_parts(self, block: GradientBlock):
        """Per layer ``(layer, s, α)`` with ``R = s αᵀ`` for a rank-one part, or ``(layer, R, None)``."""
        by_name = {layer.module_name: layer for layer in self.layers}
        for j, part in enumerate(block.parts):
            if part.slot is None or part.slot.module_name not in by_name:
                raise RepresenterError(f"EK-FAC has no factors for gradient part {part.describe()}.")
            layer = by_name[part.slot.module_name]
            if part.kind == "outer":
                delta, act = block.tensors[j]
                yield layer, delta @ layer.q_s, act @ layer.q_a
            else:
                yield layer, layer.rotate(block.matrices(j)), None

    def solve_block(self, block: GradientBlock, *, low_rank: bool = False) -> list[Tensor | tuple[Tensor, Tensor]]:
        """Per part, ``(b, out, in')`` matrices of ``(G + λI)⁻¹ g`` for the factored gradients ``block``.

        ``Q_S R Q_Aᵀ`` for all ``b`` matrices at once as two plain GEMMs (``(b·out, in')·Q_Aᵀ``, then
        ``Q_S·(out, b·in')``) rather than ``b`` small batched products. With ``low_rank``, a rank-one
        part whose layer has :meth:`low_rank` factors ``D ≈ L Rᵀ`` is returned as the factors
        ``(Q_S(s ⊙ L_k), Q_A(α ⊙ R_k))`` ``((b, r, out), (b, r, in'))`` of a rank-``r`` matrix instead.
        """
        out: list[Tensor | tuple[Tensor, Tensor]] = []
        for layer, r, alpha in self._rotated_parts(block):
            factors = self.low_rank(layer.module_name) if low_rank and alpha is not None else None
            if factors is not None:
                left, right = (f.to(r.dtype) for f in factors)
                out.append(((r.unsqueeze(1) * left.T) @ layer.q_s.T, (alpha.unsqueeze(1) * right.T) @ layer.q_a.T))
                continue
            rotated = r.unsqueeze(2) * alpha.unsqueeze(1) if alpha is not None else r
            rotated = rotated * self._inverse_eigenvalues(layer, r.dtype)
            b, n_out, n_in = rotated.shape
            right = (rotated.reshape(b * n_out, n_in) @ layer.q_a.T).reshape(b, n_out, n_in)
            left = layer.q_s @ right.transpose(0, 1).reshape(n_out, b * n_in)
            out.append(left.reshape(n_out, b, n_in).transpose(0, 1))
        return out

    def forms(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """``(g_iᵀH⁻¹g_i, ‖H⁻¹g_i‖²)`` per row of ``g`` ``(b, P)``."""
        quad = torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)
        norm_sq = torch.zeros_like(quad)
        for layer in self.layers:
            r2 = layer.rotate(layer.slot.matrices(g)) ** 2
            inv = self._inverse_eigenvalues(layer, g.dtype)
            quad += (r2 * inv).sum(dim=(1, 2))
            norm_sq += (r2 * inv * inv).sum(dim=(1, 2))
        return quad, norm_sq

    def forms_block(self, block: GradientBlock) -> tuple[Tensor, Tensor]:
        """:meth:`forms` of factored gradients; a rank-one part costs two GEMMs, ``(s²)ᵀ D (α²)`` with ``D = 1/(E + λ)``."""
        ref = block.tensors[0][0]
        quad = torch.zeros(block.b, dtype=ref.dtype, device=ref.device)
        norm_sq = torch.zeros_like(quad)
        for layer, r, alpha in self._rotated_parts(block):
            inv = self._inverse_eigenvalues(layer, ref.dtype)
            if alpha is None:
                r2 = r * r
                quad += (r2 * inv).sum(dim=(1, 2))
                norm_sq += (r2 * inv * inv).sum(dim=(1, 2))
            else:
                s2, a2 = r * r, alpha * alpha
                quad += ((s2 @ inv) * a2).sum(dim=1)
                norm_sq += ((s2 @ (inv * inv)) * a2).sum(dim=1)
        return quad, norm_sq

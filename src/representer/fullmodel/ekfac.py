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
Two passes over the training data: factors, then eigenvalue correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import RepresenterError
from .ihvp import InverseCurvature
from .layers import Recorder, layer_slots, layers_of, output_rows
from .network import LabelledData, Network, curvature_factors, sampled_curvature_factors

Tensor = torch.Tensor


@dataclass
class LayerFactors:
    """One layer's EK-FAC factors and where its parameters sit in the flat gradient."""

    module_name: str
    weight: slice
    bias: slice | None
    out_features: int
    q_s: Tensor
    q_a: Tensor
    eigenvalues: Tensor

    def matrices(self, flat: Tensor) -> Tensor:
        """``(m, out, in')`` parameter matrices ``[W | b]`` of flat rows ``(m, P)``."""
        w = flat[:, self.weight].reshape(flat.shape[0], self.out_features, -1)
        return w if self.bias is None else torch.cat([w, flat[:, self.bias].unsqueeze(2)], dim=2)

    def write(self, flat: Tensor, m: Tensor) -> None:
        """Store matrices ``m`` back into the flat rows (inverse of :meth:`matrices`)."""
        if self.bias is None:
            flat[:, self.weight] = m.reshape(m.shape[0], -1)
        else:
            flat[:, self.weight] = m[:, :, :-1].reshape(m.shape[0], -1)
            flat[:, self.bias] = m[:, :, -1]

    def rotate(self, flat: Tensor) -> Tensor:
        return self.q_s.T @ self.matrices(flat) @ self.q_a


def _pseudo_gradients(
    network: Network, recorder: Recorder, names: list[str], inputs, samples: int | None, generator: torch.Generator
) -> list[dict[str, Tensor]]:
    """Forward one batch; per pseudo-gradient ``k`` the output gradients ``δ`` of every layer."""
    leaves = [t.detach().requires_grad_(True) for t in network.tensors]
    z = network.forward(leaves, network.prepare(inputs))
    factors = curvature_factors(z.detach()) if samples is None else sampled_curvature_factors(z.detach(), samples, generator)
    outputs = [recorder.outputs[n] for n in names]
    deltas = []
    for k in range(factors.shape[1]):
        grads = torch.autograd.grad(z, outputs, factors[:, k], retain_graph=k + 1 < factors.shape[1])
        deltas.append(dict(zip(names, grads)))
    return deltas


def fit_ekfac(network: Network, data: LabelledData, *, samples: int | None = None, seed: int = 0) -> list[LayerFactors]:
    """Fit EK-FAC factors of every selected Linear / Conv2d layer (two passes over ``data``).

    ``samples=None`` uses the exact expectation over labels (``K`` backward passes per batch);
    an integer draws that many labels per example from the model (the sampled Fisher), which is
    ``K/samples`` times cheaper and unbiased.
    """
    generator = torch.Generator().manual_seed(int(seed))
    layers = layers_of(network)
    names = [n for n, _ in layers]
    modules = dict(layers)
    recorder = Recorder(layers)
    try:
        a_sum: dict[str, Tensor] = {}
        s_sum: dict[str, Tensor] = {}
        for inputs, _ in data.batches():
            deltas = _pseudo_gradients(network, recorder, names, inputs, samples, generator)
            for n in names:
                a = recorder.inputs[n].flatten(0, 1)
                a_sum[n] = a_sum.get(n, 0) + a.T @ a
                for d in deltas:
                    s = output_rows(modules[n], d[n]).flatten(0, 1)
                    s_sum[n] = s_sum.get(n, 0) + s.T @ s
        bases = {n: (torch.linalg.eigh(s_sum[n])[1], torch.linalg.eigh(a_sum[n])[1]) for n in names}
        eig: dict[str, Tensor] = {}
        for inputs, _ in data.batches():
            deltas = _pseudo_gradients(network, recorder, names, inputs, samples, generator)
            for n in names:
                q_s, q_a = bases[n]
                a = recorder.inputs[n] @ q_a
                for d in deltas:
                    rotated = torch.einsum("blo,bli->boi", output_rows(modules[n], d[n]) @ q_s, a)
                    eig[n] = eig.get(n, 0) + (rotated * rotated).sum(dim=0)
    finally:
        recorder.remove()
    return [LayerFactors(*slot, *bases[slot[0]], eig[slot[0]] / data.n) for slot in layer_slots(network)]


class EKFACInverse(InverseCurvature):
    """``(G_EKFAC + λI)⁻¹`` on flat gradient rows, layer by layer."""

    def __init__(self, layers: list[LayerFactors], damping: float) -> None:
        if not layers:
            raise RepresenterError("EK-FAC found no Linear or Conv2d layer among the selected parameters.")
        self.layers = layers
        self.damping = float(damping)
        self.report = {"layers": [layer.module_name for layer in layers]}
        for layer in layers:
            if not bool((layer.eigenvalues + self.damping > 0).all()):
                raise RepresenterError(f"EK-FAC eigenvalues of layer `{layer.module_name}` are zero; use `damping` > 0.")

    def solve(self, v: Tensor) -> Tensor:
        """``(m, P)`` rows ``(G + λI)⁻¹ v_j``."""
        out = torch.empty_like(v)
        for layer in self.layers:
            rotated = layer.rotate(v) / (layer.eigenvalues + self.damping)
            layer.write(out, layer.q_s @ rotated @ layer.q_a.T)
        return out

    def forms(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """``(g_iᵀH⁻¹g_i, ‖H⁻¹g_i‖²)`` per row of ``g`` ``(b, P)``."""
        quad = torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)
        norm_sq = torch.zeros_like(quad)
        for layer in self.layers:
            r2 = layer.rotate(g) ** 2
            inv = 1 / (layer.eigenvalues + self.damping)
            quad += (r2 * inv).sum(dim=(1, 2))
            norm_sq += (r2 * inv * inv).sum(dim=(1, 2))
        return quad, norm_sq

r"""Sensitivity-map decomposition (Yeh et al. 2018, §4.4): the test input's gradient, split per training point.

The representer theorem writes the class-``c`` logit of the refit head as
``Φ_c(x_t) = Σ_i α_ic φ̃(x_i)ᵀ φ̃(x_t)``. Differentiating both sides with respect to the test input,

    ∂Φ_c(x_t)/∂x_t = Σ_i  α_ic φ̃(x_i)ᵀ ∂φ̃(x_t)/∂x_t,

so the sensitivity map of the test point (left) is a sum of per-training-point maps (right),
``M_i = α_ic φ(x_i)ᵀ J(x_t)`` with ``J = ∂φ/∂x`` (the constant ``1`` of ``φ̃`` has no gradient).
Each ``M_i`` is one vector–Jacobian product, computed by autograd; all requested points share one
batched forward/backward pass.

The same decomposition holds for DualView, whose score ``β_ic ⟨z_i, z_t⟩`` has test-side gradient
``β_ic (z_i / s)ᵀ J(x_t)`` (``s``: the feature stds); the maps then sum to the gradient of the
DualView surrogate's total ``Σ_i β_ic ⟨z_i, z_t⟩``.

With ``smoothgrad=SmoothGrad(...)`` every map is averaged over noisy copies of the test input
(Smilkov et al. 2017, via captum's ``NoiseTunnel``), as in the paper's Figure 6. The *same* noise
draws are used for every training point and for the total, so the decomposition stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_positive
from ..errors import InputError
from ..methods.base import Explainer
from ._forms import class_coefficients, pair_forms
from ._readout import one_example, readout_network, torch_adapter, torch_dtype, valid_indices


@dataclass(frozen=True)
class SmoothGrad:
    """SmoothGrad settings: ``n_samples`` noisy copies with std ``noise_level · (max x − min x)``."""

    n_samples: int = 50
    noise_level: float = 0.15
    seed: int = 0


@dataclass(frozen=True)
class SensitivityMaps:
    """Per-training-point sensitivity maps of one test point.

    Attributes:
        maps: ``(k, *input_shape)``; ``maps[p]`` is training point ``train_indices[p]``'s share of the
            test input's gradient.
        total: ``(*input_shape)`` the gradient of the reconstructed class score (the sum of the maps
            over *all* training points).
        train_indices: ``(k,)`` the training points.
        coefficients: ``(k,)`` their ``α_ic`` (RPS-L2) or ``β_ic`` (DualView).
        scores: ``(k,)`` their attribution scores at the test point.
        target: the class explained.
    """

    maps: np.ndarray
    total: np.ndarray
    train_indices: np.ndarray
    coefficients: np.ndarray
    scores: np.ndarray
    target: int


def sensitivity_maps(
    explainer: Explainer,
    x_test: Any,
    train_indices: Any,
    *,
    target: Any = "predicted",
    y: Any = None,
    smoothgrad: SmoothGrad | None = None,
    dtype: str = "float64",
) -> SensitivityMaps:
    """Decompose the test input's sensitivity map over the training points ``train_indices``.

    Args:
        explainer: a fitted :class:`~representer.RPSL2` or :class:`~representer.DualView` whose model is
            a :class:`~representer.TorchClassifier`.
        x_test: one test input with its batch dimension, shape ``(1, ...)``.
        train_indices: training points whose maps are returned (e.g. ``explanation.excitatory.indices[t]``).
        target: the class explained: ``"predicted"``, ``"label"`` (with ``y``) or an int.
        y: the test label, for ``target="label"``.
        smoothgrad: average the maps over noisy inputs (:class:`SmoothGrad`), or ``None`` for plain gradients.
        dtype: precision of the backward passes (``"float64"`` makes the decomposition exact to rounding).
    """
    adapter = torch_adapter(explainer)
    torch_type = torch_dtype(dtype)
    x = one_example(x_test, "x_test", torch_type, adapter.device)
    indices = valid_indices(train_indices, explainer.n_train_)
    phi_test = adapter.features(x)[0]
    tgt = int(explainer.resolve_target(target, phi_test[None, :], None if y is None else np.atleast_1d(y))[0])
    forms = pair_forms(explainer, phi_test, indices, tgt)
    weights = np.concatenate([forms.test_weights, reconstructed_test_weight(explainer, tgt)[None, :]])
    grads = _gradients(adapter, x, weights, torch_type, smoothgrad)
    return SensitivityMaps(
        maps=grads[:-1],
        total=grads[-1],
        train_indices=indices,
        coefficients=forms.coefficients,
        scores=forms.score,
        target=tgt,
    )


def reconstructed_test_weight(explainer: Explainer, target: int) -> np.ndarray:
    """``Σ_i a_i`` over all training points: the raw-feature weight of the reconstructed class score, ``(D,)``."""
    from ..methods.dualview import DualView

    coef = class_coefficients(explainer, target)
    if isinstance(explainer, DualView):
        return (coef @ explainer.train_z()) * explainer.inv_scale_
    return coef @ explainer.train_features_


def _gradients(adapter, x: torch.Tensor, weights: np.ndarray, dtype: torch.dtype, smoothgrad: SmoothGrad | None) -> np.ndarray:
    """``∂⟨weights[r], φ(x)⟩/∂x`` for every row ``r``, ``(rows, *input_shape)``."""
    if smoothgrad is None:
        net, _ = readout_network(adapter, weights, dtype)
        batch = x.expand(weights.shape[0], *x.shape[1:]).clone().requires_grad_(True)
        with torch.enable_grad():
            net(batch).sum().backward()
        return batch.grad.detach().cpu().numpy()
    return np.concatenate([_smoothgrad(adapter, x, row[None, :], dtype, smoothgrad) for row in weights])


def _smoothgrad(adapter, x: torch.Tensor, weight: np.ndarray, dtype: torch.dtype, settings: SmoothGrad) -> np.ndarray:
    from captum.attr import NoiseTunnel, Saliency

    n_samples = int(settings.n_samples)
    if n_samples < 1 or n_samples != settings.n_samples:
        raise InputError(f"`SmoothGrad.n_samples` must be a positive integer; got {settings.n_samples!r}.")
    noise = check_positive(settings.noise_level, "SmoothGrad.noise_level", allow_zero=True)
    stdev = noise * float(x.max() - x.min())
    net, _ = readout_network(adapter, weight, dtype)
    devices = [adapter.device] if adapter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(int(settings.seed))
        grads = NoiseTunnel(Saliency(net)).attribute(
            x.clone(), nt_type="smoothgrad", nt_samples=n_samples, stdevs=stdev, target=0, abs=False
        )
    return grads.detach().cpu().numpy()

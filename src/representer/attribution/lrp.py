r"""DualView × LRP (Yolcu et al. 2024, §6, Eq. 7): where in the test *and* the training image a pair score comes from.

A pair score is a sum over penultimate features ``j`` (see :mod:`representer.attribution._forms`):

    score(t, i) = Σ_j a_ij φ_j(x_t) + a⁰_i = Σ_j b_tj φ_j(x_i) + b⁰_t.

The initial relevance of feature ``j`` is its term: ``R_j = a_ij φ_j(x_t)`` on the test side and
``R_j = b_tj φ_j(x_i)`` on the training side. For DualView with the default
``seed="standardized"`` that is ``β_ic (z_ij / s_j) φ_j(x_t)`` — the DualView score itself, split per
feature, with the standardisation's shift ``a⁰_i = −β_ic ⟨z_i, μ/s⟩`` left unattributed like a
bias, because it does not depend on the input. It vanishes on inactive ReLU units
(``φ_j(x_t) = 0``). ``seed="raw"`` is the literal reading of Eq. 7, ``β_ic φ_j(x_i) φ_j(x_t)``:
the unstandardised kernel, whose total is not the DualView score (spec §4.3; the reference code
seeds with ``φ(x_other)`` alone, through zennit). RPS-L2 pairs are seeded with ``α_ic φ_j(x_i) φ_j(x_t)``
(offset ``α_ic``).

Propagation uses captum's LRP on a copy of the network whose head is replaced by a bias-free
readout with weights ``a_i`` (or ``b_t``), so that the ε-rule at the readout distributes exactly
``R_j``. Every layer gets captum's ε-rule (``epsilon``) unless ``rules`` maps its type to another
captum rule (e.g. ``{nn.Conv2d: GammaRule}``); ``nn.Flatten``/``nn.Unflatten``/``nn.Identity`` pass
relevance through unchanged; ReLU, Tanh and Dropout pass it through as captum does. The input
relevances sum to the seed total up to the absorption by biases and by ε (captum also scales all
relevances by ``out/(out + ε)``). On a bias-free ReLU network the only other gap is that the seed uses
the explainer's stored features (the model's own precision, often float32) while the propagation
runs in ``dtype``: ``conservation_delta`` is then about 1e-7 of the seed total.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import check_positive
from ..errors import ModelError
from ..methods.base import Explainer
from ._forms import Seed, pair_forms
from ._readout import PairedReadout, one_example, readout_network, torch_adapter, torch_dtype, training_rows, valid_indices

RuleFactory = Callable[[], Any]

_PASS_THROUGH = (nn.Flatten, nn.Unflatten, nn.Identity)


@dataclass(frozen=True)
class PairRelevance:
    """LRP heat-maps of ``k`` (test, training) pairs.

    Attributes:
        test_maps: ``(k, *input_shape)`` relevance on the test input, one map per training point.
        train_maps: ``(k, *input_shape)`` relevance on each training input.
        test_seed: ``(k, D)`` initial penultimate relevances of the test side, ``a_ij φ_j(x_t)``.
        train_seed: ``(k, D)`` initial penultimate relevances of the training side, ``b_tj φ_j(x_i)``.
        scores: ``(k,)`` the explainer's pair scores (DualView: ``β_ic ⟨z_i, z_t⟩``).
        test_offset: ``(k,)`` ``scores − test_seed.sum(1)`` (unattributed, input-independent part).
        train_offset: ``(k,)`` the same for the training side.
        conservation_delta: ``(k, 2)`` seed total minus input relevance total, test and train sides.
        train_indices: ``(k,)``; target: the class explained.
    """

    test_maps: np.ndarray
    train_maps: np.ndarray
    test_seed: np.ndarray
    train_seed: np.ndarray
    scores: np.ndarray
    test_offset: np.ndarray
    train_offset: np.ndarray
    conservation_delta: np.ndarray
    train_indices: np.ndarray
    target: int


def lrp_pair_relevance(
    explainer: Explainer,
    x_test: Any,
    X_train: Any,
    train_indices: Any,
    *,
    target: Any = "predicted",
    y: Any = None,
    seed: Seed = "standardized",
    epsilon: float = 1e-9,
    rules: Mapping[type[nn.Module], RuleFactory] | None = None,
    dtype: str = "float64",
) -> PairRelevance:
    """LRP heat-maps on the test input and on each training input for the pairs ``(x_test, train_indices)``.

    Args:
        explainer: a fitted :class:`~representer.DualView` (or :class:`~representer.RPSL2`) on a
            :class:`~representer.TorchClassifier`.
        x_test: one test input with its batch dimension, shape ``(1, ...)``.
        X_train: the training inputs, in the order given to ``fit`` (rows are checked against the
            stored features).
        train_indices: the training points to explain (e.g. ``explanation.excitatory.indices[t]``).
        target: the class explained: ``"predicted"``, ``"label"`` (with ``y``) or an int.
        y: the test label, for ``target="label"``.
        seed: ``"standardized"`` (the DualView score split per feature; default) or ``"raw"``
            (Eq. 7 literally, the unstandardised kernel); ignored by RPS-L2.
        epsilon: ε of captum's ε-rule in every layer without an entry in ``rules``.
        rules: ``{layer type: zero-argument factory of a captum PropagationRule}``, e.g.
            ``{nn.Conv2d: lambda: GammaRule(0.25)}``.
        dtype: precision of the propagation.
    """
    adapter = torch_adapter(explainer)
    torch_type = torch_dtype(dtype)
    eps = check_positive(epsilon, "epsilon")
    x = one_example(x_test, "x_test", torch_type, adapter.device)
    indices = valid_indices(train_indices, explainer.n_train_)
    x_train = training_rows(explainer, X_train, indices, torch_type, adapter.device)
    phi_test = adapter.features(x)[0]
    tgt = int(explainer.resolve_target(target, phi_test[None, :], None if y is None else np.atleast_1d(y))[0])
    forms = pair_forms(explainer, phi_test, indices, tgt, seed)
    test_seed = forms.test_weights * phi_test[None, :]
    train_seed = forms.train_weights * explainer.train_features_[indices]
    k = len(indices)
    test_maps = _propagate(adapter, x.expand(k, *x.shape[1:]).clone(), forms.test_weights, torch_type, eps, rules)
    train_maps = _propagate(adapter, x_train, forms.train_weights, torch_type, eps, rules)
    delta = np.stack(
        [test_seed.sum(1) - test_maps.reshape(k, -1).sum(1), train_seed.sum(1) - train_maps.reshape(k, -1).sum(1)], axis=1
    )
    return PairRelevance(
        test_maps=test_maps,
        train_maps=train_maps,
        test_seed=test_seed,
        train_seed=train_seed,
        scores=forms.score,
        test_offset=forms.score - test_seed.sum(1),
        train_offset=forms.score - train_seed.sum(1),
        conservation_delta=delta,
        train_indices=indices,
        target=tgt,
    )


def _propagate(adapter, inputs: torch.Tensor, weights: np.ndarray, dtype: torch.dtype, epsilon: float, rules) -> np.ndarray:
    """captum LRP of ``⟨weights[r], φ(inputs[r])⟩`` down to ``inputs``, ``(rows, *input_shape)``."""
    from captum.attr import LRP

    net, readout = readout_network(adapter, weights, dtype)
    if net is readout:
        return (readout.weights.reshape(inputs.shape) * inputs).cpu().numpy()  # φ is the input itself
    _attach_rules(net, epsilon, dict(rules or {}))
    with torch.enable_grad():
        relevance = LRP(net).attribute(inputs.requires_grad_(True), target=0)
    return relevance.detach().cpu().numpy()


def _attach_rules(net: nn.Module, epsilon: float, rules: dict[type[nn.Module], RuleFactory]) -> None:
    """Give every leaf module of ``net`` a captum rule (captum removes them after each call)."""
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
    from captum.attr._utils.lrp_rules import EpsilonRule

    leaves = [m for m in net.modules() if not list(m.children())]
    for module in leaves:
        kind = type(module)
        if kind in rules:
            module.rule = rules[kind]()
        elif kind in SUPPORTED_LAYERS_WITH_RULES or isinstance(module, (PairedReadout, *_PASS_THROUGH)):
            module.rule = EpsilonRule(epsilon)
        elif kind not in SUPPORTED_NON_LINEAR_LAYERS:
            raise ModelError(
                f"captum's LRP has no rule for the layer type {kind.__name__}; pass one with "
                f"`rules={{{kind.__name__}: lambda: EpsilonRule()}}` (a captum PropagationRule) if it is linear, "
                "or use `sensitivity_maps` instead."
            )

"""Model adapters: split a classifier into features φ(x) and a linear head (W, b)."""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from .base import ClassifierAdapter, predicted_class
from .features import Features
from .torch import TorchClassifier
from .trees import TreeEnsemble

_BOOSTER_MODULES = ("xgboost", "lightgbm", "sklearn.ensemble")


def as_adapter(model: Any) -> ClassifierAdapter:
    """Return ``model`` if it is an adapter; wrap an ``nn.Module`` in :class:`TorchClassifier`."""
    if isinstance(model, ClassifierAdapter):
        return model
    from torch import nn

    if isinstance(model, nn.Module):
        return TorchClassifier(model)
    if type(model).__module__.startswith(_BOOSTER_MODULES):
        return TreeEnsemble(model)
    raise ModelError(
        f"Cannot explain a {type(model).__name__}: pass a torch nn.Module, `representer.TorchClassifier`, "
        "`representer.TreeEnsemble` (boosters) or `representer.Features` (your own features and head)."
    )


__all__ = ["ClassifierAdapter", "Features", "TorchClassifier", "TreeEnsemble", "as_adapter", "predicted_class"]

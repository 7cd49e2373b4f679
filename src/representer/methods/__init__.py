"""Explainers: one module per method, all built on :class:`~representer.methods.base.Explainer`."""

from .base import Explainer, load
from .dualview import DualView
from .random import RandomAttribution
from .rps_l2 import RPSL2
from .rps_lje import RPSLJE
from .similarity import FeatureSimilarity, GradientSimilarity

__all__ = [
    "DualView",
    "Explainer",
    "FeatureSimilarity",
    "GradientSimilarity",
    "RPSL2",
    "RPSLJE",
    "RandomAttribution",
    "load",
]

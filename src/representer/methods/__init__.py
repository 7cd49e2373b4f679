"""Explainers: one module per method, all built on :class:`~representer.methods.base.Explainer`."""

from .base import Explainer, load
from .dualview import DualView
from .influence import InfluenceFunction
from .random import RandomAttribution
from .relatif import RelatIF
from .rps_l2 import RPSL2
from .rps_lje import RPSLJE
from .similarity import FeatureSimilarity, GradientSimilarity

__all__ = [
    "DualView",
    "Explainer",
    "FeatureSimilarity",
    "GradientSimilarity",
    "InfluenceFunction",
    "RPSL2",
    "RPSLJE",
    "RandomAttribution",
    "RelatIF",
    "load",
]

"""Explainers: one module per method, all built on :class:`~representer.methods.base.Explainer`."""

from .base import Explainer, load
from .dualview import DualView
from .full_model import FullModelInfluence, FullModelRelatIF, FullModelSimilarity, TracInCP
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
    "FullModelInfluence",
    "FullModelRelatIF",
    "FullModelSimilarity",
    "GradientSimilarity",
    "InfluenceFunction",
    "RPSL2",
    "RPSLJE",
    "RandomAttribution",
    "RelatIF",
    "TracInCP",
    "load",
]

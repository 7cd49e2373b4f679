"""Explainers: one module per method, all built on :class:`~representer.methods.base.Explainer`."""

from .base import Explainer, load
from .rps_l2 import RPSL2

__all__ = ["Explainer", "RPSL2", "load"]

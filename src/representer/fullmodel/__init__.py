"""Full-model attribution machinery: per-example gradients over all parameters of any differentiable
network, random projections, curvature products and inverse-curvature backends (exact, CG, LiSSA,
EK-FAC), and the measurements whose gradients they take (:mod:`.measurement`). The explainers built
on it are in :mod:`representer.methods.full_model`.
"""

from .curvature import Curvature
from .ekfac import EKFACInverse, fit_ekfac
from .ihvp import ConjugateGradient, ConvergenceWarning, ExactInverse, IdentityInverse, InverseCurvature, LiSSA
from .measurement import ClassLogit, CrossEntropy, Margin, Measurement
from .network import LabelledData, Network, ParameterSet
from .per_example import GradientComputer
from .projection import RandomProjector

__all__ = [
    "ClassLogit",
    "ConjugateGradient",
    "ConvergenceWarning",
    "CrossEntropy",
    "Curvature",
    "EKFACInverse",
    "ExactInverse",
    "GradientComputer",
    "IdentityInverse",
    "InverseCurvature",
    "LabelledData",
    "LiSSA",
    "Margin",
    "Measurement",
    "Network",
    "ParameterSet",
    "RandomProjector",
    "fit_ekfac",
]

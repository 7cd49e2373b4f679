"""Feature-level views of sample-based explanations: which input pixels a (test, training) pair score comes from.

* :func:`lrp_pair_relevance` — DualView × LRP (Yolcu et al. 2024, §6): the pair score split per
  penultimate feature and propagated by captum's LRP to the test and the training input.
* :func:`sensitivity_maps` — RPS's sensitivity-map decomposition (Yeh et al. 2018, §4.4): the test
  input's gradient as a sum of per-training-point maps, optionally with SmoothGrad.
* :func:`pair_figure`, :func:`lrp_figure`, :func:`sensitivity_figure`, :func:`figure_png` —
  matplotlib figures of both.

Both work with :class:`~representer.RPSL2` and :class:`~representer.DualView` fitted on a
:class:`~representer.TorchClassifier`.
"""

from .figures import figure_png, lrp_figure, pair_figure, sensitivity_figure
from .lrp import PairRelevance, lrp_pair_relevance
from .sensitivity import SensitivityMaps, SmoothGrad, sensitivity_maps

__all__ = [
    "PairRelevance",
    "SensitivityMaps",
    "SmoothGrad",
    "figure_png",
    "lrp_figure",
    "lrp_pair_relevance",
    "pair_figure",
    "sensitivity_figure",
    "sensitivity_maps",
]

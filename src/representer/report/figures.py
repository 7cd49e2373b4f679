"""Matplotlib figures of the report (plain :class:`~matplotlib.figure.Figure` objects, no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from ..rankings import DetectionCurve
from ..errors import InputError


def detection_curve_figure(curves: Mapping[str, DetectionCurve], *, random_baseline: bool = True, title: str | None = None) -> Figure:
    """Fraction of corrupted training points found vs fraction of the training set inspected.

    One line per method; with ``random_baseline`` the diagonal (what a random inspection order
    finds in expectation) is drawn dashed.
    """
    if not curves:
        raise InputError("`curves` is empty; pass a mapping of method name → DetectionCurve.")
    fig = Figure(figsize=(8.0, 4.0))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(100 * curve.inspected, 100 * curve.found, label=name, linewidth=2)
    if random_baseline:
        ax.plot([0, 100], [0, 100], linestyle="--", color="0.45", label="random (expected)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("training points inspected (%)")
    ax.set_ylabel("corrupted labels found (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig

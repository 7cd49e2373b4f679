"""Matplotlib figures of feature-level explanations (plain :class:`~matplotlib.figure.Figure`, no pyplot).

Layout of :func:`pair_figure`: the first row shows the test image and the training images; the
second the heat-map of each pair on the *test* image (first column: the whole score's map when
given); the third the heat-map of each pair on the *training* image. Heat-maps use a diverging
colour map centred at 0 (red = positive relevance / gradient, blue = negative), each scaled to its
own largest absolute value. :func:`figure_png` turns a figure into PNG bytes for the HTML report.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError
from ..report.images import as_heatmap, as_planar
from .lrp import PairRelevance
from .sensitivity import SensitivityMaps


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def lrp_figure(relevance: PairRelevance, x_test: Any, X_train: Any, *, class_names: Sequence[str] | None = None, image_shape: tuple[int, ...] | None = None) -> Figure:
    """:func:`pair_figure` of a :class:`~representer.attribution.PairRelevance` (DualView × LRP)."""
    train_images = _numpy(X_train)[relevance.train_indices]
    return pair_figure(
        x_test, train_images, relevance.test_maps, relevance.train_maps,
        scores=relevance.scores, train_indices=relevance.train_indices, target=relevance.target,
        class_names=class_names, image_shape=image_shape, title="LRP of each pair score",
    )


def sensitivity_figure(maps: SensitivityMaps, x_test: Any, X_train: Any, *, class_names: Sequence[str] | None = None, image_shape: tuple[int, ...] | None = None) -> Figure:
    """:func:`pair_figure` of a :class:`~representer.attribution.SensitivityMaps` (RPS §4.4); the first column holds the total map."""
    train_images = _numpy(X_train)[maps.train_indices]
    return pair_figure(
        x_test, train_images, maps.maps, None, test_total=maps.total,
        scores=maps.scores, train_indices=maps.train_indices, target=maps.target,
        class_names=class_names, image_shape=image_shape, title="sensitivity map decomposition",
    )


def pair_figure(
    x_test: Any,
    train_images: Any,
    test_maps: Any,
    train_maps: Any = None,
    *,
    test_total: Any = None,
    scores: Any = None,
    train_indices: Any = None,
    target: int | None = None,
    class_names: Sequence[str] | None = None,
    image_shape: tuple[int, ...] | None = None,
    title: str | None = None,
) -> Figure:
    """Test image, ``k`` training images and the heat-maps of each pair, side by side.

    Args:
        x_test: the test input (``(1, ...)`` or ``(...)``).
        train_images: ``(k, ...)`` the training inputs.
        test_maps: ``(k, ...)`` heat-maps on the test input, one per training image.
        train_maps: ``(k, ...)`` heat-maps on the training inputs, or ``None``.
        test_total: one heat-map of the whole score on the test input, shown under it.
        scores, train_indices: ``(k,)`` shown in the training images' titles.
        target, class_names: the explained class, shown in the test image's title.
        image_shape: ``(H, W)`` or ``(C, H, W)`` to reshape flat inputs (square flat inputs are
            reshaped automatically).
    """
    images = _numpy(train_images)
    k = images.shape[0]
    test_rows = _numpy(test_maps)
    if test_rows.shape[0] != k or (train_maps is not None and _numpy(train_maps).shape[0] != k):
        raise InputError(f"`test_maps` and `train_maps` need one map per training image ({k}); got {test_rows.shape[0]}.")
    rows = 2 if train_maps is None else 3
    fig = Figure(figsize=(1.9 * (k + 1), 2.0 * rows))
    axes = fig.subplots(rows, k + 1, squeeze=False)
    label = "" if target is None else f"class {class_names[target] if class_names else target}"
    test_image = _numpy(x_test)
    _show_image(axes[0, 0], test_image[0] if test_image.ndim == images.ndim else test_image, image_shape, f"test\n{label}")
    for p in range(k):
        caption = "" if train_indices is None else f"#{int(np.asarray(train_indices)[p])}"
        if scores is not None:
            caption += f"\nscore {float(np.asarray(scores)[p]):+.3g}"
        _show_image(axes[0, p + 1], images[p], image_shape, caption)
        _show_heatmap(axes[1, p + 1], test_rows[p], image_shape, "on test" if p == 0 else "")
        if train_maps is not None:
            _show_heatmap(axes[2, p + 1], _numpy(train_maps)[p], image_shape, "on train" if p == 0 else "")
    if test_total is not None:
        _show_heatmap(axes[1, 0], _numpy(test_total), image_shape, "total")
    else:
        axes[1, 0].axis("off")
    if train_maps is not None:
        axes[2, 0].axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _picture(x: Any, image_shape: tuple[int, ...] | None) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, 3)`` array for ``imshow`` (one channel squeezed, RGB clipped to [0, 1])."""
    x = as_planar(x, image_shape)
    if x.ndim == 3:
        if x.shape[0] == 1:
            return x[0]
        if x.shape[0] == 3:
            return np.clip(np.moveaxis(x, 0, -1), 0.0, 1.0)
        raise InputError(f"Images must have 1 or 3 channels first (C, H, W); got shape {x.shape}.")
    if x.ndim != 2:
        raise InputError(f"Cannot show an input of shape {x.shape} as an image; pass `image_shape`.")
    return x


def _show_image(ax, x: np.ndarray, image_shape, title: str) -> None:
    picture = _picture(x, image_shape)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _show_heatmap(ax, x: np.ndarray, image_shape, title: str) -> None:
    heat = as_heatmap(x, image_shape)
    bound = float(np.abs(heat).max()) or 1.0
    ax.imshow(heat, cmap="bwr", vmin=-bound, vmax=bound)
    ax.set_title(title, fontsize=8)
    ax.axis("off")

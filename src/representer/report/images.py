"""PNG encoding for the HTML report: matplotlib figures and image arrays become ``data:`` URIs.

Everything is rendered in memory and inlined, so a report is one self-contained HTML file. No
``pyplot`` state is touched: figures are plain :class:`matplotlib.figure.Figure` objects.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.image import imsave
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the optional extra
    raise ModuleNotFoundError("The HTML report needs matplotlib: `pip install 'representer[report]'`.") from exc

from ..errors import InputError


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,…`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_to_data_uri(fig: Figure, *, dpi: int = 110) -> str:
    """Render a matplotlib figure to an inline PNG ``data:`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def as_image_stack(images: Any) -> np.ndarray:
    """Images as ``(N, H, W)`` (grey) or ``(N, H, W, 3|4)`` (colour) float arrays.

    Accepts ``(N, H, W)``, ``(N, 1|3, H, W)`` (channels first, as in torch) and ``(N, H, W, 1|3|4)``.
    """
    arr = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images, dtype=np.float64)
    if arr.ndim == 3:
        return arr
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        arr = np.moveaxis(arr, 1, -1)
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4):
        return arr[..., 0] if arr.shape[-1] == 1 else arr
    raise InputError(
        f"`images` must have shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C in 1, 3, 4; got {arr.shape}."
    )


def as_planar(values: Any, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``values`` as a float64 array laid out as an image: ``image_shape`` if given, a flat square map as ``(H, W)``.

    Tensors are detached and moved to the CPU; other layouts are returned as they are.
    """
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)
    if image_shape is not None:
        return arr.reshape(image_shape)
    if arr.ndim == 1:
        side = math.isqrt(arr.size)
        if side * side != arr.size:
            raise InputError(f"Cannot show a flat array of {arr.size} values as an image; pass `image_shape=(H, W)`.")
        return arr.reshape(side, side)
    return arr


def as_heatmap(values: Any, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """One relevance / gradient map as an ``(H, W)`` array: channels are summed, square flat maps reshaped.

    Accepts ``(H, W)``, ``(C, H, W)`` (channels first, as in torch) and flat ``(H·W,)`` maps;
    ``image_shape`` reshapes any other layout first.
    """
    arr = as_planar(values, image_shape)
    if arr.ndim == 3:
        arr = arr.sum(axis=0)
    if arr.ndim != 2:
        raise InputError(f"A heat-map must have shape (H, W), (C, H, W) or (H·W,); got {arr.shape}.")
    return arr


def heatmap_to_data_uri(heat: np.ndarray, *, cmap: str = "bwr") -> str:
    """An ``(H, W)`` signed map as an inline PNG on a diverging colour map centred at 0.

    The map is scaled to its own largest absolute value, so red = the largest positive value,
    white = 0, blue = the largest negative value (an all-zero map is white).
    """
    bound = float(np.abs(heat).max()) or 1.0
    return image_to_data_uri(heat, vmin=-bound, vmax=bound, cmap=cmap)


def image_to_data_uri(image: np.ndarray, *, vmin: float, vmax: float, cmap: str = "gray") -> str:
    """One ``(H, W)`` grey or ``(H, W, 3|4)`` colour image as an inline PNG, scaled from ``[vmin, vmax]``."""
    scaled = np.clip((image - vmin) / (vmax - vmin if vmax > vmin else 1.0), 0.0, 1.0)
    buffer = io.BytesIO()
    imsave(buffer, scaled, cmap=cmap, vmin=0.0, vmax=1.0, format="png")
    return png_data_uri(buffer.getvalue())

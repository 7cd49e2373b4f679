"""PNG encoding for the HTML report: matplotlib figures and image arrays become ``data:`` URIs.

Everything is rendered in memory and inlined, so a report is one self-contained HTML file. No
``pyplot`` state is touched: figures are plain :class:`matplotlib.figure.Figure` objects.
"""

from __future__ import annotations

import base64
import io
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


def image_to_data_uri(image: np.ndarray, *, vmin: float, vmax: float, cmap: str = "gray") -> str:
    """One ``(H, W)`` grey or ``(H, W, 3|4)`` colour image as an inline PNG, scaled from ``[vmin, vmax]``."""
    scaled = np.clip((image - vmin) / (vmax - vmin if vmax > vmin else 1.0), 0.0, 1.0)
    buffer = io.BytesIO()
    imsave(buffer, scaled, cmap=cmap, vmin=0.0, vmax=1.0, format="png")
    return png_data_uri(buffer.getvalue())

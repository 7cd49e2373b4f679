"""How one data item (a training or test example) is drawn in the report.

An item renderer is any callable ``renderer(index) -> str`` returning an HTML fragment, already
escaped. Three are provided, so the same report works for images, tabular rows and text:

* :class:`ImageRenderer` — grey or colour image arrays, inlined as PNG;
* :class:`TableRenderer` — a row of a table (a pandas DataFrame or a sequence of dicts);
* :class:`TextRenderer` — a text snippet, truncated.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .images import as_image_stack, image_to_data_uri


class ItemRenderer(Protocol):
    def __call__(self, index: int) -> str: ...


def format_value(value: Any) -> str:
    """A short, escaped text for a table cell (floats with 4 significant digits)."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return html.escape(f"{float(value):.4g}")
    return html.escape(str(value))


def _check_index(index: int, n: int) -> int:
    i = int(index)
    if not 0 <= i < n:
        raise InputError(f"item index {index} is out of range for a renderer of {n} items.")
    return i


class ImageRenderer:
    """Draw item ``i`` of ``images`` (``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``).

    Intensities are scaled from ``[vmin, vmax]`` (default: the minimum and maximum over all
    ``images``, so items are comparable); grey images use ``cmap``. ``size`` is the displayed
    width in CSS pixels (small images are enlarged without smoothing).
    """

    def __init__(self, images: Any, *, cmap: str = "gray", vmin: float | None = None, vmax: float | None = None, size: int = 84):
        self.images = as_image_stack(images)
        self.cmap = cmap
        self.vmin = float(self.images.min()) if vmin is None else float(vmin)
        self.vmax = float(self.images.max()) if vmax is None else float(vmax)
        self.size = int(size)

    def __call__(self, index: int) -> str:
        image = self.images[_check_index(index, len(self.images))]
        uri = image_to_data_uri(image, vmin=self.vmin, vmax=self.vmax, cmap=self.cmap)
        return f'<img class="thumb" src="{uri}" width="{self.size}" height="{self.size}" alt="item {int(index)}">'


class TableRenderer:
    """Draw row ``i`` of a table as a small two-column (name, value) table.

    ``rows`` is a pandas DataFrame or a sequence of mappings (column → value); ``columns`` picks
    and orders the columns shown (default: all, at most ``max_columns``).
    """

    def __init__(self, rows: Any, *, columns: Sequence[str] | None = None, max_columns: int = 8):
        self.rows = rows.to_dict("records") if hasattr(rows, "to_dict") and hasattr(rows, "columns") else list(rows)
        if self.rows and not isinstance(self.rows[0], Mapping):
            raise InputError("`rows` must be a pandas DataFrame or a sequence of dicts (column → value).")
        self.columns = list(columns) if columns is not None else None
        self.max_columns = int(max_columns)

    def __call__(self, index: int) -> str:
        row = self.rows[_check_index(index, len(self.rows))]
        names = self.columns if self.columns is not None else list(row)[: self.max_columns]
        cells = "".join(f"<tr><th>{html.escape(str(c))}</th><td>{format_value(row[c])}</td></tr>" for c in names)
        return f'<table class="row">{cells}</table>'


class TextRenderer:
    """Draw text ``i`` of ``texts`` as an escaped snippet of at most ``max_chars`` characters."""

    def __init__(self, texts: Sequence[str], *, max_chars: int = 280):
        self.texts = list(texts)
        self.max_chars = int(max_chars)

    def __call__(self, index: int) -> str:
        text = str(self.texts[_check_index(index, len(self.texts))])
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1].rstrip() + "…"
        return f'<p class="snippet">{html.escape(text)}</p>'

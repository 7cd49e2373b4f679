"""Matplotlib figures and a self-contained HTML report (needs the ``report`` extra: matplotlib)."""

from .figures import detection_curve_figure
from .html import Report
from .images import figure_to_data_uri, image_to_data_uri
from .renderers import ImageRenderer, ItemRenderer, TableRenderer, TextRenderer

__all__ = [
    "ImageRenderer",
    "ItemRenderer",
    "Report",
    "TableRenderer",
    "TextRenderer",
    "detection_curve_figure",
    "figure_to_data_uri",
    "image_to_data_uri",
]

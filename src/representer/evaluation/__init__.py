"""Evaluation protocols of the papers: label corruptions, metrics and retraining curves."""

from .protocols import (
    DebuggingCurve,
    accuracy,
    data_debugging_curve,
    labels_after_checking,
    leave_one_out_effects,
    order_by_score,
)

__all__ = [
    "DebuggingCurve",
    "accuracy",
    "data_debugging_curve",
    "labels_after_checking",
    "leave_one_out_effects",
    "order_by_score",
]

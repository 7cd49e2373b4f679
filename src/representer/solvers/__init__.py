"""Solvers written for representer: the Crammer–Singer multiclass SVM dual (DualView's surrogate)."""

from .crammer_singer import CrammerSingerResult, solve_crammer_singer

__all__ = ["CrammerSingerResult", "solve_crammer_singer"]

"""Exceptions raised by representer.

Every error the library raises on purpose derives from :class:`RepresenterError`, and its message
names the offending argument and says how to fix it.
"""

from __future__ import annotations


class RepresenterError(Exception):
    """Base class of all errors raised by representer on purpose."""


class NotFittedError(RepresenterError, AttributeError):
    """An explainer was used before ``fit`` was called."""


class InputError(RepresenterError, ValueError):
    """An argument has the wrong shape, dtype, values (NaN, inf) or type."""


class ModelError(RepresenterError, ValueError):
    """The model cannot be split into features and a linear head, or is in the wrong state."""


class StaleStateError(RepresenterError):
    """A saved explainer was loaded with a model or data that differs from the one it was fitted on."""

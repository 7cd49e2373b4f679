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


class FileFormatError(RepresenterError, ValueError):
    """A file cannot be read: damaged, truncated, not the format its name says, or from a newer representer."""


class UntrustedCodeError(RepresenterError):
    """A run folder names code that differs from, or lies elsewhere than, the code ``fit`` ran."""


class OutputError(RepresenterError, OSError):
    """An output could not be written (disk full, no permission); the previous file, if any, is intact."""


class RepresenterWarning(UserWarning):
    """Legal but degenerate input (one class, one sample, ``top_k`` above the training size …)."""

"""Declarative hyper-parameter constraints, checked before an explainer does any work.

Every explainer class declares ``_parameter_constraints``: a dict from each of its ``__init__``
keywords to a list of :class:`Constraint` objects, any one of which the value must satisfy
(scikit-learn's ``_parameter_constraints`` idea). A subclass's table extends its parents';
:func:`constraints_of` merges them along the MRO. ``Explainer.fit`` calls :func:`validate_params`
first, before features are computed, so a bad value fails fast and leaves the explainer unchanged.

The constraints are plain data, so a command line can be generated from them:
:attr:`Interval.kind` is the option's Python type, :attr:`Interval.low` / ``high`` its range,
:attr:`Options.choices` its choices and :meth:`Constraint.describe` its help text.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import InputError


class Constraint(ABC):
    """One acceptable form of a parameter value."""

    @abstractmethod
    def accepts(self, value: Any) -> bool:
        """Whether ``value`` satisfies this constraint."""

    @abstractmethod
    def describe(self) -> str:
        """What the constraint accepts, as the end of a sentence: ``"an integer >= 1"``."""


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _kind(value: Any) -> str:
    """bool, int, number, str or another type's name (numpy scalars count as their Python kind)."""
    if _is_bool(value):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "number"
    return "str" if isinstance(value, str) else type(value).__name__


@dataclass(frozen=True)
class Interval(Constraint):
    """A number of type ``kind`` (``int`` or ``float``; booleans never count) in a range.

    ``closed`` says which ends are included. A ``float`` interval accepts integers too (``lam=1``)
    and refuses NaN and infinities; an ``int`` interval refuses floats (``top_k=2.7``) and booleans.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def accepts(self, value: Any) -> bool:
        if _is_bool(value):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        return not (self.high is not None and (value > self.high or (value == self.high and self.closed in ("left", "neither"))))

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        left_in, right_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        low, high = (None if v is None else str(int(v)) if self.kind is int else f"{v:g}" for v in (self.low, self.high))
        if low is not None and high is not None:
            return f"{noun} in {'[' if left_in else '('}{low}, {high}{']' if right_in else ')'}"
        if low is not None:
            return f"{noun} {'>=' if left_in else '>'} {low}"
        if high is not None:
            return f"{noun} {'<=' if right_in else '<'} {high}"
        return noun


@dataclass(frozen=True)
class Options(Constraint):
    """One of ``choices``, compared with its kind: ``1`` is not ``True`` and ``"1"`` is not ``1``."""

    choices: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(_kind(value) == _kind(choice) and value == choice for choice in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclass(frozen=True)
class Boolean(Constraint):
    """``True`` or ``False`` (numpy booleans too; not ``0`` / ``1``)."""

    def accepts(self, value: Any) -> bool:
        return _is_bool(value)

    def describe(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class NoneValue(Constraint):
    """``None`` (meaning: the documented default behaviour)."""

    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


@dataclass(frozen=True)
class Strings(Constraint):
    """A non-empty list or tuple of non-empty strings, all different if ``unique``."""

    unique: bool = False

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
            return False
        if not all(isinstance(v, str) and v for v in value):
            return False
        return not self.unique or len(set(value)) == len(value)

    def describe(self) -> str:
        return "a non-empty list of " + ("different " if self.unique else "") + "non-empty strings"


@dataclass(frozen=True)
class Device(Constraint):
    """A device torch can parse: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.

    Whether a CUDA device is actually usable is checked next, by :func:`representer._validation.check_device`.
    """

    def accepts(self, value: Any) -> bool:
        import torch

        if not isinstance(value, (str, torch.device)):
            return False
        try:
            torch.device(value)
        except (RuntimeError, TypeError):
            return False
        return True

    def describe(self) -> str:
        return "a torch device such as 'cpu', 'cuda' or 'cuda:1'"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``kind`` (a class, or a ``runtime_checkable`` protocol), described as ``description``."""

    kind: type
    description: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def describe(self) -> str:
        return self.description


def positive(kind: type) -> Interval:
    """``kind`` > 0 (``int``: >= 1)."""
    return Interval(kind, 1, None) if kind is int else Interval(kind, 0, None, "neither")


def non_negative(kind: type) -> Interval:
    """``kind`` >= 0."""
    return Interval(kind, 0, None)


def constraints_of(cls: type) -> dict[str, list[Constraint]]:
    """The merged ``_parameter_constraints`` of ``cls`` and its bases (a subclass's entries win)."""
    merged: dict[str, list[Constraint]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("_parameter_constraints", {}))
    return merged


def check_value(value: Any, name: str, constraints: Sequence[Constraint], owner: str | None = None) -> Any:
    """Return ``value`` if one of ``constraints`` accepts it; raise :class:`InputError` naming ``name`` otherwise."""
    if any(c.accepts(value) for c in constraints):
        return value
    accepted = " or ".join(c.describe() for c in constraints)
    where = f"{owner}: " if owner else ""
    raise InputError(f"{where}`{name}` must be {accepted}; got {value!r} ({type(value).__name__}).")


def validate_params(owner: str, params: Mapping[str, Any], constraints: Mapping[str, Sequence[Constraint]]) -> None:
    """Check every entry of ``params`` against its constraints (a missing table entry is a bug: KeyError)."""
    for name, value in params.items():
        check_value(value, name, constraints[name], owner)

"""Class ids and class names: one mapping shared by the Python API, the command line and saved runs.

A classifier with ``K`` classes numbers them ``0 … K-1`` in the order of its outputs. A
:class:`ClassMapping` names them: ``names[c]`` is the name of class ``c``. It is recorded when an
explainer is fitted (``explainer.classes_``), saved with it and checked when it is loaded, and the
command line reads image folders and text labels through it, so a label always means the model's
output of that name, never "the k-th name that happens to be present in this data".

Where the names come from (:attr:`ClassMapping.origin`):

* ``"given"`` — passed by the user (``class_names=`` / ``--class-names``, or a ``class_names``
  array in an ``.npz``);
* ``"sorted labels"`` — no names were given and the labels are strings (or image folders): the
  names are the sorted distinct labels, the convention of scikit-learn's ``LabelEncoder`` and
  torchvision's ``ImageFolder``. Accepted only when their number equals the model's number of
  classes; otherwise a class absent from the data would shift every later id, so it is refused;
* ``"class ids"`` — integer labels and no names: class ``c`` is called ``"c"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import InputError

Origin = Literal["given", "sorted labels", "class ids"]
ORIGINS: tuple[str, ...] = ("given", "sorted labels", "class ids")


@dataclass(frozen=True)
class ClassMapping:
    """The names of a classifier's classes in the order of its outputs: class id ``c`` ↔ ``names[c]``.

    Parameters
    ----------
    names : sequence of str
        One distinct, non-empty name per class.
    origin : {"given", "sorted labels", "class ids"}, default "given"
        Where the names come from (see the module docstring).

    Raises
    ------
    InputError
        Empty or repeated names, or an unknown ``origin``.
    """

    names: tuple[str, ...]
    origin: Origin = "given"

    def __post_init__(self) -> None:
        names = tuple(self.names) if not isinstance(self.names, str) else (self.names,)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise InputError(f"`class_names` must be a non-empty list of non-empty strings; got {self.names!r}.")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"`class_names` must all be different; {repeated[:5]} appear more than once.")
        if self.origin not in ORIGINS:
            raise InputError(f"`origin` must be one of {ORIGINS}; got {self.origin!r}.")
        object.__setattr__(self, "names", names)

    # ------------------------------------------------------------------ construction
    @classmethod
    def class_ids(cls, n_classes: int) -> "ClassMapping":
        """Classes named by their ids, ``"0" … "K-1"``.

        Parameters
        ----------
        n_classes : int
            ``K``.

        Returns
        -------
        ClassMapping
            With origin ``"class ids"``.
        """
        return cls(tuple(str(c) for c in range(n_classes)), "class ids")

    @classmethod
    def sorted_labels(cls, labels: Iterable[Any]) -> "ClassMapping":
        """The sorted distinct string labels as names (``LabelEncoder`` / ``ImageFolder`` order).

        Parameters
        ----------
        labels : iterable
            Labels; their distinct string forms become the names.

        Returns
        -------
        ClassMapping
            With origin ``"sorted labels"``.
        """
        return cls(tuple(sorted({str(v) for v in labels})), "sorted labels")

    @classmethod
    def for_labels(cls, y: Any, n_classes: int, names: Sequence[str] | None = None) -> "ClassMapping":
        """The mapping for labels ``y`` of a model with ``n_classes`` classes (see the module docstring).

        Parameters
        ----------
        y : array-like of shape (n,)
            Labels: class ids, or names.
        n_classes : int
            The model's number of classes ``K``.
        names : sequence of str, optional
            The class names in the order of the model's outputs.

        Returns
        -------
        ClassMapping
            ``names`` when given; else the sorted string labels; else the class ids.

        Raises
        ------
        InputError
            ``names`` of another length than ``n_classes``, or string labels without ``names`` that name
            another number of classes than the model has.
        """
        if names is not None:
            mapping = cls(tuple(names), "given")
        elif _is_text(np.asarray(y)):
            mapping = cls.sorted_labels(_text_values(np.asarray(y), "y"))
        else:
            return cls.class_ids(n_classes)
        mapping.check_classes(n_classes)
        return mapping

    # ------------------------------------------------------------------ reading
    @property
    def n_classes(self) -> int:
        """Number of classes ``K``."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def name(self, class_id: int) -> str:
        """The name of class ``class_id``.

        Parameters
        ----------
        class_id : int
            In ``[0, K)``.

        Returns
        -------
        str

        Raises
        ------
        InputError
            ``class_id`` outside ``[0, K)``.
        """
        if not 0 <= int(class_id) < self.n_classes:
            raise InputError(f"Class id {class_id} is outside [0, {self.n_classes - 1}].")
        return self.names[int(class_id)]

    def decode(self, class_ids: Iterable[int]) -> list[str]:
        """The names of ``class_ids``.

        Parameters
        ----------
        class_ids : iterable of int
            Each in ``[0, K)``.

        Returns
        -------
        list of str

        Raises
        ------
        InputError
            An id outside ``[0, K)``.
        """
        return [self.name(c) for c in class_ids]

    def encode(self, labels: Any, what: str = "y") -> np.ndarray:
        """Labels as class ids: names are looked up, integers are checked to lie in ``[0, K)``.

        Parameters
        ----------
        labels : array-like of shape (n,)
            Class names or ids.
        what : str, default "y"
            The argument's name, for error messages.

        Returns
        -------
        ndarray of shape (n,)
            int64 class ids.

        Raises
        ------
        InputError
            Naming ``what``, for an unknown name, an id out of range, missing values or non-integer numbers.
        """
        arr = np.asarray(labels)
        if arr.ndim != 1:
            raise InputError(f"`{what}` must be a 1-d vector of labels; got shape {arr.shape}.")
        if arr.size == 0:
            raise InputError(f"`{what}` is empty; pass one label per example.")
        if _is_text(arr):
            lookup = {name: c for c, name in enumerate(self.names)}
            values = _text_values(arr, what)
            unknown = sorted({v for v in values if v not in lookup})
            if unknown:
                raise InputError(
                    f"`{what}` has labels {unknown[:5]} that are not class names of the model "
                    f"({_preview(self.names)}); fix the labels, or pass every class name in the order of the model's outputs."
                )
            return np.array([lookup[v] for v in values], dtype=np.int64)
        ids = _integer_ids(arr, what)
        bad = ids[(ids < 0) | (ids >= self.n_classes)]
        if bad.size:
            named = "" if self.origin == "class ids" else f" ({_preview(self.names)})"
            raise InputError(
                f"`{what}` has class ids in [{ids.min()}, {ids.max()}] but there are {self.n_classes} classes{named}; "
                f"labels must be integers in [0, {self.n_classes - 1}]."
            )
        return ids

    def check_classes(self, n_classes: int, model: str = "the model") -> None:
        """Refuse a mapping whose number of classes differs from ``n_classes`` (the model's).

        Parameters
        ----------
        n_classes : int
            The model's number of classes.
        model : str, default "the model"
            How the message names the model.

        Raises
        ------
        InputError
            Saying why a missing class would shift the ids, and how to name every class.
        """
        if self.n_classes == n_classes:
            return
        if self.origin == "sorted labels":
            raise InputError(
                f"The labels name {self.n_classes} classes ({_preview(self.names)}) but {model} has {n_classes}; a class "
                f"absent from the data would shift the ids of every class after it. Pass all {n_classes} class names in "
                "the order of the model's outputs (class_names= in Python, --class-names on the command line)."
            )
        raise InputError(
            f"{self.n_classes} class names were given ({_preview(self.names)}) but {model} has {n_classes} classes; "
            f"pass exactly {n_classes} names, in the order of the model's outputs."
        )

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The mapping as JSON-ready data.

        Returns
        -------
        dict
            ``{"names": [...], "origin": ...}``.
        """
        return {"names": list(self.names), "origin": self.origin}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassMapping":
        """The inverse of :meth:`to_dict`.

        Parameters
        ----------
        data : dict
            ``{"names": [...], "origin": ...}``.

        Returns
        -------
        ClassMapping

        Raises
        ------
        InputError
            ``data`` without ``"names"``, or names that are not valid.
        """
        if not isinstance(data, dict) or "names" not in data:
            raise InputError(f"A saved class mapping must be a dict with 'names'; got {data!r}.")
        return cls(tuple(data["names"]), data.get("origin", "given"))


def _is_text(arr: np.ndarray) -> bool:
    """Whether labels are names (strings, or an object array holding any string)."""
    if arr.dtype.kind in "US":
        return True
    return arr.dtype.kind == "O" and any(isinstance(v, str) for v in arr.ravel().tolist())


def read_labels(labels: Any, what: str, classes: ClassMapping | None) -> tuple[np.ndarray, ClassMapping | None]:
    """Labels read from a file as class ids, and the mapping they were read with.

    With ``classes``, labels are encoded by it. Without, string labels get the sorted-labels mapping
    (checked against the model later, by :meth:`ClassMapping.check_classes`) and integer labels stay
    ids with no mapping (None).
    """
    if classes is not None:
        return classes.encode(labels, what), classes
    arr = np.asarray(labels)
    if arr.ndim == 1 and _is_text(arr):
        classes = ClassMapping.sorted_labels(_text_values(arr, what))
        return classes.encode(arr, what), classes
    if arr.ndim != 1:
        raise InputError(f"`{what}` must be a 1-d vector of labels; got shape {arr.shape}.")
    ids = _integer_ids(arr, what)
    if ids.size and ids.min() < 0:
        raise InputError(f"`{what}` has negative class ids ({ids.min()}); class ids are integers 0 … K-1.")
    return ids, None


def _text_values(arr: np.ndarray, what: str) -> list[str]:
    """String labels as ``str``; a missing value (None, NaN) is refused rather than named ``"nan"``."""
    values = arr.ravel().tolist()
    missing = sum(v is None or (isinstance(v, float) and v != v) for v in values)
    if missing:
        raise InputError(f"`{what}` has {missing} missing labels (empty cells, None or NaN); drop those rows or label them.")
    return [str(v) for v in values]


def _integer_ids(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        missing = int(np.isnan(arr).sum())
        if missing:
            raise InputError(f"`{what}` has {missing} missing (NaN) labels; drop those rows or label them.")
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(f"`{what}` must hold integer class ids or class names; got non-integer numbers.")
        return arr.astype(np.int64)
    if arr.dtype.kind == "O":
        values = arr.tolist()
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            return np.array(values, dtype=np.int64)
        if any(v is None for v in values):
            raise InputError(f"`{what}` has missing (None) labels; drop those rows or label them.")
    raise InputError(f"`{what}` must hold integer class ids or class names; got dtype {arr.dtype}.")


def _preview(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}]"

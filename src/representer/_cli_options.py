"""The explainers on the command line: which method names exist and which options each one takes.

One source of truth: an explainer's hyper-parameters are its ``__init__`` keywords (names and
defaults), its ``_parameter_constraints`` table (types, ranges, choices) and the ``Parameters``
section of its numpy-style docstring (help text). :func:`describe_explainer` reads those three;
``python tools/gen_cli_docs.py`` stores the result in :mod:`representer._cli_option_table` (a test
checks it is current), so that ``representer --help`` builds ``fit``'s method options without
importing torch. Only :data:`METHODS`, the command-line name of each explainer, is written here.

This module imports neither numpy nor torch.
"""

from __future__ import annotations

import inspect
from typing import Any

from ._cli_option_table import OPTION_TABLE
from .errors import InputError

#: Method name on the command line → explainer class (exported by :mod:`representer`).
METHODS: dict[str, str] = {
    "rps-l2": "RPSL2",
    "rps-lje": "RPSLJE",
    "dualview": "DualView",
    "influence": "InfluenceFunction",
    "relatif": "RelatIF",
    "similarity": "GradientSimilarity",
    "knn": "FeatureSimilarity",
}
#: Label-ranking routes of ``representer debug --method`` (those of :mod:`representer.label_routes`).
ROUTES = ("trajectory-loss", "trajectory-margin", "tracin", "cross-fit", "loss", "influence", "rps-l2", "rps-lje", "dualview")
#: Keywords every explainer takes (:class:`~representer.Explainer`); ``fit`` sets them itself (``progress``
#: stays ``None``, so the library's progress reports go to the command line's spinner).
ENGINE_PARAMS = ("block_size", "test_batch_size", "device", "dtype", "class_names", "progress")


def option_flag(name: str) -> str:
    """The command-line flag of the explainer keyword ``name``: ``n_neighbors`` → ``--n-neighbors``."""
    return "--" + name.replace("_", "-")


def method_options() -> dict[str, dict[str, Any]]:
    """Every method option: name → ``{"kind", "methods": {method: {"default", "help", "accepts"}}}``.

    An option several methods share (``--damping``) appears once, with each method's default and help.
    """
    options: dict[str, dict[str, Any]] = {}
    for method, class_name in METHODS.items():
        for name, spec in OPTION_TABLE[class_name].items():
            entry = options.setdefault(name, {"kind": spec["kind"], "methods": {}})
            entry["methods"][method] = {k: spec[k] for k in ("default", "help", "accepts")}
    return options


def option_help(entry: dict[str, Any]) -> str:
    """Help text of a method option: for each method (methods that say the same are grouped), what it is and its default."""
    groups: dict[tuple[str, str], list[str]] = {}
    for method, spec in entry["methods"].items():
        text = spec["help"].rstrip(".")
        accepts = "" if entry["kind"] == "bool" else f"{spec['accepts']}; "
        groups.setdefault((text, accepts, _default_text(spec["default"])), []).append(method)
    return " ".join(f"{', '.join(methods)}: {text} ({accepts}default {default})."
                    for (text, accepts, default), methods in groups.items())


def _default_text(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def method_params(method: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The explainer class name of ``method`` and the options of ``given`` that were set (not None).

    An unknown method, or a set option that ``method`` does not accept, raises :class:`InputError`.
    """
    if method not in METHODS:
        raise InputError(f"`--method` must be one of {', '.join(METHODS)}; got {method!r}.")
    class_name = METHODS[method]
    accepted = OPTION_TABLE[class_name]
    chosen = {k: v for k, v in given.items() if v is not None}
    foreign = [option_flag(k) for k in chosen if k not in accepted]
    if foreign:
        takes = ", ".join(option_flag(k) for k in accepted) or "no method options"
        raise InputError(f"{', '.join(foreign)} does not apply to --method {method} (it takes {takes}).")
    return class_name, chosen


# ---------------------------------------------------------------------- reading an explainer class
def describe_explainer(cls: type) -> dict[str, dict[str, Any]]:
    """The options of explainer class ``cls``, read from its signature, constraint table and docstring.

    Returns ``{name: {"kind", "default", "help", "accepts"}}`` for each hyper-parameter ``cls`` adds
    to the common ones (:data:`ENGINE_PARAMS`), in signature order. ``kind`` is ``"int"``,
    ``"float"``, ``"str"`` or ``"bool"``; ``help`` is the first sentence of the parameter's
    description in the ``Parameters`` section of ``cls``'s docstring or, if it is documented there as
    a group ("hessian, damping: as for …"), of the first base class that documents it alone.

    Raises :class:`ValueError` (a bug in the explainer, caught by the test of the generated table)
    for an undocumented parameter or a constraint that has no command-line form.
    """
    from . import _docstrings

    constraints = cls.parameter_constraints()  # type: ignore[attr-defined]
    options: dict[str, dict[str, Any]] = {}
    for name, default in _init_defaults(cls).items():
        if name in ENGINE_PARAMS:
            continue
        options[name] = {
            "kind": _kind(constraints[name], f"{cls.__name__}.{name}"),
            "default": default,
            "help": _docstrings.plain(_docstrings.first_sentence(_parameter_doc(cls, name))),
            "accepts": " or ".join(c.describe() for c in constraints[name]),
        }
    return options


def _init_defaults(cls: type) -> dict[str, Any]:
    """Keyword → default of ``cls.__init__`` and the ``__init__`` of the bases it forwards to, in order."""
    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name not in defaults:
                defaults[p.name] = p.default
    return defaults


def _parameter_doc(cls: type, name: str) -> str:
    from . import _docstrings

    for klass in cls.__mro__:
        entry = _docstrings.parse(vars(klass).get("__doc__") or "").entry("Parameters", name)
        if entry is not None and len(entry.names) == 1:
            return entry.description
    raise ValueError(f"{cls.__name__}'s docstring does not document `{name}` in its Parameters section.")


def _kind(constraints: list[Any], where: str) -> str:
    from ._params import Boolean, Interval, NoneValue, Options

    kinds = set()
    for constraint in constraints:
        if isinstance(constraint, Interval):
            kinds.add(constraint.kind.__name__)
        elif isinstance(constraint, Options) and all(isinstance(c, str) for c in constraint.choices):
            kinds.add("str")
        elif isinstance(constraint, Boolean):
            kinds.add("bool")
        elif not isinstance(constraint, NoneValue):
            raise ValueError(f"{where}: the constraint {constraint!r} has no command-line form.")
    if len(kinds) != 1:
        raise ValueError(f"{where}: the constraints {constraints!r} do not give one command-line type.")
    return kinds.pop()

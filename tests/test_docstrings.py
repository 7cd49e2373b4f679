"""Every public method and function of the API has a numpy-style docstring that says what it takes and gives.

Checked for each public name of ``representer`` (and the public methods and properties its classes
define): a ``Parameters`` section naming every parameter (grouped names such as ``X, target, y``
count; a dataclass's fields may be its ``Attributes``), a ``Returns`` (or ``Yields``) section unless it returns ``None``, and a ``Raises`` section on
the calls the explainer contract names (fit, explain, attribute, self_influence, save, load,
find_label_issues). Properties need a one-line docstring.
"""

import inspect

import representer as rp
from representer import _docstrings

#: The calls whose failures a user must be able to look up.
MUST_RAISE = {"fit", "explain", "attribute", "attribution_blocks", "self_influence", "save", "load", "find_label_issues"}


def _public_callables():
    for name in rp.__all__:
        obj = getattr(rp, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            continue
        if not inspect.isclass(obj):
            yield name, obj
            continue
        yield name, obj
        for member, value in _docstrings.public_members(obj):
            yield f"{name}.{member}", value


def _problems(name: str, obj) -> list[str]:
    if isinstance(obj, property):
        return [] if (obj.fget.__doc__ or "").strip() else [f"{name}: no docstring"]
    doc = _docstrings.parse(obj)
    if not doc.summary:
        return [f"{name}: no docstring"]
    problems = []
    function = obj.__init__ if inspect.isclass(obj) else obj
    params = [] if function is object.__init__ else [
        p for p in inspect.signature(function).parameters.values() if p.name not in ("self", "cls")
    ]
    sections = ("Parameters", "Attributes") if inspect.isclass(obj) else ("Parameters",)  # a dataclass's fields are its attributes
    documented = {n.lstrip("*") for section in sections for e in doc.sections.get(section, []) for n in e.names}
    missing = [p.name for p in params if p.name not in documented]
    if missing:
        problems.append(f"{name}: Parameters does not document {missing}")
    if not inspect.isclass(obj):
        returns = inspect.signature(obj).return_annotation
        if returns not in (None, "None") and not ({"Returns", "Yields"} & set(doc.sections)):
            problems.append(f"{name}: no Returns section")
        if name.rsplit(".", 1)[-1] in MUST_RAISE and "Raises" not in doc.sections:
            problems.append(f"{name}: no Raises section")
    return problems


def test_every_public_callable_has_a_numpy_docstring():
    problems = [p for name, obj in _public_callables() for p in _problems(name, obj)]
    assert problems == []


def test_the_check_finds_what_is_missing():
    def explain(X, top_k: int = 3) -> int:
        """Summary.

        Parameters
        ----------
        X : array
            Inputs.
        """

    assert _problems("explain", explain) == [
        "explain: Parameters does not document ['top_k']", "explain: no Returns section", "explain: no Raises section",
    ]

"""Read numpy-style docstrings: the one place parameter help lives for the API reference and the CLI.

A docstring is a summary line, free text, then sections, each a title underlined with dashes::

    Parameters
    ----------
    lam : float, default 0.003
        The L2 strength λ.
    hessian, damping
        As for :class:`InfluenceFunction`.

    Returns
    -------
    Explanation
        ...

An entry is a line at the section's indentation (``names : type``, or only ``names``; several names
separated by commas share the entry) followed by its indented description.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

#: Section titles this project uses, in the order they appear.
SECTIONS = ("Parameters", "Returns", "Yields", "Raises", "Warns", "Attributes", "Notes", "Examples")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


@dataclass(frozen=True)
class Entry:
    """One entry of a section: the names it documents, their type text and the description."""

    names: tuple[str, ...]
    type: str
    description: str


@dataclass(frozen=True)
class Docstring:
    """A parsed docstring: the summary line, the free text after it, and each section's entries or text."""

    summary: str
    text: str
    sections: dict[str, list[Entry]]
    raw_sections: dict[str, str]

    def entry(self, section: str, name: str) -> Entry | None:
        """The entry of ``section`` that documents ``name``, or None."""
        return next((e for e in self.sections.get(section, []) if name in e.names), None)


def parse(obj_or_doc: object) -> Docstring:
    """Parse the docstring of ``obj_or_doc`` (or the string itself)."""
    doc = obj_or_doc if isinstance(obj_or_doc, str) else inspect.getdoc(obj_or_doc) or ""
    lines = inspect.cleandoc(doc).splitlines()
    starts = [i for i in range(len(lines) - 1)
              if lines[i].strip() in SECTIONS and set(lines[i + 1].strip()) == {"-"}]
    head = lines[: starts[0]] if starts else lines
    summary = head[0].strip() if head else ""
    text = "\n".join(head[1:]).strip()
    sections: dict[str, list[Entry]] = {}
    raw: dict[str, str] = {}
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(lines)
        body = lines[start + 2 : stop]
        title = lines[start].strip()
        raw[title] = "\n".join(body).strip()
        sections[title] = _entries(body)
    return Docstring(summary, text, sections, raw)


def _entries(body: list[str]) -> list[Entry]:
    entries: list[Entry] = []
    names: tuple[str, ...] | None = None
    kind, description = "", []
    for line in body:
        if line.strip() and not line[0].isspace():
            if names is not None:
                entries.append(Entry(names, kind, " ".join(description)))
            head, _, kind = line.partition(" : ")
            names = tuple(n.strip() for n in head.split(",") if n.strip())
            kind, description = kind.strip(), []
        elif line.strip():
            description.append(line.strip())
    if names is not None:
        entries.append(Entry(names, kind, " ".join(description)))
    return entries


def plain(text: str) -> str:
    """``text`` without reStructuredText roles and double backquotes, for a terminal."""
    return _ROLE.sub(lambda m: m.group(1).split(".")[-1], text).replace("``", "")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (up to the first ". " outside parentheses), with its full stop."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth == 0 and (i + 1 == len(text) or text[i + 1] == " "):
            return text[: i + 1]
    return text


def public_members(cls: type) -> list[tuple[str, object]]:
    """The public methods (plain functions) and properties ``cls`` defines itself, in source order."""
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value):
            members.append((name, value))
    return members

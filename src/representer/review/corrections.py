"""Corrections files: the review's decisions written out, and applied to the training labels by ``fit``.

``representer review RUN --export corrections.csv`` writes one row per reviewed training point
(keep, relabel or remove) under a header that says which training data and classes they belong to::

    # representer corrections 1
    # train_fingerprint: 5f0c…        (data_fingerprint of the training split the indices point into)
    # n_train: 1347
    # classes: ["T-shirt/top", "Trouser", …]
    train_index,item,decision,given_label,given_class,new_label,new_class,reviewer,decided_at
    17,row 17,relabel,3,Dress,6,Shirt,ana,2025-01-31T10:02:11.512+00:00

``representer fit … --corrections corrections.csv`` (:func:`apply_corrections`) refuses a file whose
fingerprint or classes differ from the data it fits (a file for another run), and every row whose
item or given class is not that training point's; it then relabels (by class *name*: the ids must
agree with the names) and removes, and records what it applied in ``run.json`` (``corrections``), so
that every later command re-applies the same record (:func:`apply_record`) before it checks the
data's fingerprint.

Indices always point into the training data as read from the user's files. A run fitted with
corrections reviews its corrected training split; its export maps those points back to the file's
rows and carries the corrections it was fitted with, so one file holds every round of review.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_text
from ..classes import ClassMapping
from ..errors import InputError, StaleStateError
from ..userdata import Split, UserData
from ..userrun import data_fingerprint, select_rows

FORMAT = "representer corrections 1"
COLUMNS = ("train_index", "item", "decision", "given_label", "given_class", "new_label", "new_class", "reviewer", "decided_at")
#: Decisions a corrections file holds (``skip`` is not a decision about the label).
FILE_DECISIONS = ("keep", "relabel", "remove")


@dataclass(frozen=True)
class Corrections:
    """A corrections file read back: what it belongs to, and its rows (dicts keyed by :data:`COLUMNS`)."""

    train_fingerprint: str
    n_train: int
    classes: tuple[str, ...]
    rows: list[dict[str, Any]]

    @property
    def n_relabel(self) -> int:
        return sum(r["decision"] == "relabel" for r in self.rows)

    @property
    def n_remove(self) -> int:
        return sum(r["decision"] == "remove" for r in self.rows)


def write_corrections(path: str | Path, corrections: Corrections) -> Path:
    """Write ``corrections`` as a corrections file (atomically)."""
    buffer = io.StringIO()
    buffer.write(f"# {FORMAT}\n# train_fingerprint: {corrections.train_fingerprint}\n# n_train: {corrections.n_train}\n")
    buffer.write(f"# classes: {json.dumps(list(corrections.classes), ensure_ascii=False)}\n")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS} for r in sorted(corrections.rows, key=lambda r: r["train_index"]))
    return write_text(path, buffer.getvalue())


def read_corrections(path: str | Path) -> Corrections:
    """Read a corrections file; a file that is not one (or is damaged) raises :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"`--corrections`: {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"`--corrections`: cannot read {path} ({exc}).") from exc
    lines = text.splitlines()
    header = [line[1:].strip() for line in lines if line.startswith("#")]
    if not header or header[0] != FORMAT:
        raise InputError(
            f"`--corrections`: {path} is not a corrections file written by `representer review RUN --export` (its first line "
            f"must be '# {FORMAT}'); keep the '#' header lines when you edit it."
        )
    meta = dict(line.split(":", 1) for line in header[1:] if ":" in line)
    meta = {k.strip(): v.strip() for k, v in meta.items()}
    try:
        classes = tuple(json.loads(meta["classes"]))
        corrections = Corrections(meta["train_fingerprint"], int(meta["n_train"]), classes, [])
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"`--corrections`: the header of {path} lacks or garbles {exc}; export the file again.") from exc
    reader = csv.DictReader(line for line in lines if not line.startswith("#"))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise InputError(f"`--corrections`: {path} lacks the columns {missing}; export the file again.")
    for number, row in enumerate(reader, start=len(header) + 2):
        corrections.rows.append(_parsed_row(row, f"{path}, line {number}"))
    return corrections


def _parsed_row(row: dict[str, str], where: str) -> dict[str, Any]:
    def integer(key: str, optional: bool = False) -> int | None:
        value = (row.get(key) or "").strip()
        if optional and not value:
            return None
        try:
            return int(value)
        except ValueError as exc:
            raise InputError(f"`--corrections`: {where}: {key} must be an integer; got {value!r}.") from exc

    decision = (row.get("decision") or "").strip()
    if decision not in FILE_DECISIONS:
        raise InputError(f"`--corrections`: {where}: decision must be one of {', '.join(FILE_DECISIONS)}; got {decision!r}.")
    parsed = {k: (row.get(k) or "").strip() for k in COLUMNS}
    parsed.update(train_index=integer("train_index"), given_label=integer("given_label"), new_label=integer("new_label", True),
                  decision=decision, new_class=parsed["new_class"] or None)
    if decision == "relabel" and parsed["new_class"] is None:
        raise InputError(f"`--corrections`: {where}: a relabel needs its new_class (a class name).")
    if decision != "relabel" and (parsed["new_class"] is not None or parsed["new_label"] is not None):
        raise InputError(f"`--corrections`: {where}: only a relabel takes a new class (decision {decision!r}).")
    return parsed


def apply_corrections(path: str | Path, data: UserData, classes: ClassMapping) -> tuple[UserData, dict[str, Any]]:
    """Apply the corrections file ``path`` to ``data`` (as read from the user's files, with ``classes``).

    Returns the corrected data and the record ``fit`` keeps in ``run.json``. Refused
    (:class:`InputError`): a file for other training data or other classes, a row whose training
    point, item or given class differs from the data's, a new class that is not a class name (or
    whose id disagrees with its name), a point listed twice, or corrections that remove every point.
    """
    corrections = read_corrections(path)
    fingerprint = data_fingerprint(data.train)
    if corrections.train_fingerprint != fingerprint or corrections.n_train != len(data.train.y):
        raise InputError(
            f"`--corrections`: {path} was exported from a run on other training data ({corrections.n_train} points, "
            f"fingerprint {corrections.train_fingerprint}; this data: {len(data.train.y)} points, {fingerprint}). Apply it "
            "to the data it was reviewed on, or review this run and export its own corrections."
        )
    if corrections.classes != classes.names:
        raise InputError(
            f"`--corrections`: {path} names the classes {list(corrections.classes)[:6]}, but this run's are "
            f"{list(classes.names)[:6]}; a class id would mean another class. Fit with the same classes (--class-names) "
            "as the reviewed run."
        )
    seen: set[int] = set()
    applied = []
    for row in corrections.rows:
        i = row["train_index"]
        where = f"{path}, train_index {i}"
        if not 0 <= i < len(data.train.y):
            raise InputError(f"`--corrections`: {where} is outside the {len(data.train.y)} training points.")
        if i in seen:
            raise InputError(f"`--corrections`: {where} is listed twice; keep one decision per point.")
        seen.add(i)
        given = int(data.train.y[i])
        if row["item"] != data.train.items[i] or row["given_class"] != classes.name(given) or row["given_label"] != given:
            raise InputError(
                f"`--corrections`: {where} is {row['item']!r} labelled {row['given_class']!r} in the file but "
                f"{data.train.items[i]!r} labelled {classes.name(given)!r} in the data; the file belongs to other data."
            )
        if row["decision"] == "relabel":
            new = int(classes.encode([row["new_class"]], f"new_class of {where}")[0])
            if row["new_label"] is not None and row["new_label"] != new:
                raise InputError(
                    f"`--corrections`: {where}: new_label {row['new_label']} is not the id of new_class {row['new_class']!r} "
                    f"({new}); fix one of them."
                )
            if new == given:
                raise InputError(f"`--corrections`: {where} relabels to its own class {row['new_class']!r}; decide keep instead.")
            row = {**row, "new_label": new}
        applied.append(row)
    record = {
        "source": str(Path(path).resolve()),
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "base_fingerprint": fingerprint,
        "n_base": len(data.train.y),
        "rows": applied,
    }
    if sum(r["decision"] == "remove" for r in applied) >= len(data.train.y):
        raise InputError(f"`--corrections`: {path} removes every training point; nothing would be left to fit.")
    return apply_record(data, record), record


def apply_record(data: UserData, record: dict[str, Any]) -> UserData:
    """``data`` with the corrections of a ``run.json`` record applied (relabels, then removals).

    The data must be the one the record was made for (:class:`StaleStateError` otherwise). The
    corrected data keeps, in ``meta["corrections"]``, the map back to the file's rows (``kept``) and
    the original labels, for the next export.
    """
    if data_fingerprint(data.train) != record["base_fingerprint"]:
        raise StaleStateError(
            f"The training data changed since `representer fit --corrections {record['source']}`; fit the run again."
        )
    train = data.train
    y = train.y.copy()
    removed = set()
    for row in record["rows"]:
        if row["decision"] == "relabel":
            y[row["train_index"]] = row["new_label"]
        elif row["decision"] == "remove":
            removed.add(row["train_index"])
    kept = np.array([i for i in range(len(y)) if i not in removed], dtype=np.int64)
    corrected = Split(select_rows(train.X, kept), y[kept], [train.items[i] for i in kept], select_rows(train.display, kept))
    meta = {**data.meta, "corrections": {"record": record, "kept": kept, "original_labels": train.y}}
    return replace(data, train=corrected, meta=meta)


def corrections_of(decisions: list[dict[str, Any]], data: UserData, classes: ClassMapping) -> Corrections:
    """The corrections file of a review: ``decisions`` (current keep / relabel / remove per point of
    ``data``'s training split, as :meth:`Decision.to_dict`) mapped back to the file's rows, plus the
    corrections the run was fitted with (a new decision on a point replaces them).
    """
    earlier = data.meta.get("corrections")
    kept = earlier["kept"] if earlier else np.arange(len(data.train.y))
    original = earlier["original_labels"] if earlier else data.train.y
    rows = {r["train_index"]: r for r in (earlier["record"]["rows"] if earlier else [])}
    for d in decisions:
        if d["decision"] not in FILE_DECISIONS:
            continue
        i = int(kept[d["train_index"]])
        given = int(original[i])
        # the label the reviewer wants, stated against the file's label (which an earlier round may have changed)
        new = int(d["new_label"] if d["decision"] == "relabel" else d["given_label"])
        decision = "remove" if d["decision"] == "remove" else "keep" if new == given else "relabel"
        rows[i] = {
            "train_index": i, "item": d["item"], "decision": decision, "given_label": given, "given_class": classes.name(given),
            "new_label": new if decision == "relabel" else None, "new_class": classes.name(new) if decision == "relabel" else None,
            "reviewer": d["reviewer"], "decided_at": d["decided_at"],
        }
    base = earlier["record"]["base_fingerprint"] if earlier else data_fingerprint(data.train)
    return Corrections(base, len(original), classes.names, list(rows.values()))

"""The review's decisions, kept in SQLite in the run folder (``RUN/review.sqlite``).

One row per decision, never updated or deleted: the current decision on a training point is its
latest row, and the rows before it are its history (who decided what, when, from which browser tab).
A point with no row, or whose latest row is ``skip``, is not reviewed yet.

======================  ======================================================================
table                   content
======================  ======================================================================
``schema_version``      one row: the layout's version (:data:`SCHEMA_VERSION`); a newer one is
                        refused, so an older representer never writes into a layout it does not know
``run``                 what the decisions belong to: the training data's fingerprint, the number
                        of training points and the class names (JSON), checked on every open
``decisions``           ``id`` (increasing), ``train_index``, ``item``, ``decision`` (keep, relabel,
                        remove, skip), ``given_label``, ``new_label`` (relabel only), ``reviewer``,
                        ``decided_at`` (UTC, ISO 8601), ``client`` (the browser tab that sent it)
======================  ======================================================================

Concurrency: the database runs in WAL mode, every connection waits up to :data:`BUSY_TIMEOUT_S` for
a lock, and a decision is written in one ``BEGIN IMMEDIATE`` transaction that first compares the
point's latest decision with the one the writer saw (``base``): two tabs deciding different points
both land; a tab deciding a point that another tab decided since it last looked gets
:class:`DecisionConflict` (and nothing is written), so no decision is silently overwritten.
Each call opens its own connection, so a store can be used from any thread or process.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classes import ClassMapping
from ..errors import FileFormatError, InputError, RepresenterError, StaleStateError

STORE_FILE = "review.sqlite"
#: Version of the database layout; bump it (and add a migration in :meth:`DecisionStore._migrate`) when it changes.
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
DECISIONS = ("keep", "relabel", "remove", "skip")
#: Decisions that count as reviewed (``skip`` defers a point).
REVIEWED = ("keep", "relabel", "remove")

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    train_index INTEGER NOT NULL CHECK (train_index >= 0),
    item TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('keep', 'relabel', 'remove', 'skip')),
    given_label INTEGER NOT NULL,
    new_label INTEGER CHECK ((decision = 'relabel') = (new_label IS NOT NULL)),
    reviewer TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX decisions_by_point ON decisions (train_index, id);
"""


class DecisionConflict(RepresenterError):
    """Another writer decided the point since this one last read it; nothing was written.

    ``current`` is the point's latest decision (or None).
    """

    def __init__(self, message: str, current: "Decision | None"):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class Decision:
    """One row of the decision table."""

    id: int
    train_index: int
    item: str
    decision: str
    given_label: int
    new_label: int | None
    reviewer: str
    decided_at: str
    client: str

    def to_dict(self, classes: ClassMapping) -> dict[str, Any]:
        """JSON-ready, with the class names of ``given_label`` and ``new_label``."""
        return {
            "id": self.id, "train_index": self.train_index, "item": self.item, "decision": self.decision,
            "given_label": self.given_label, "given_class": classes.name(self.given_label),
            "new_label": self.new_label, "new_class": None if self.new_label is None else classes.name(self.new_label),
            "reviewer": self.reviewer, "decided_at": self.decided_at, "client": self.client,
        }


_COLUMNS = "id, train_index, item, decision, given_label, new_label, reviewer, decided_at, client"


class DecisionStore:
    """The decisions of one run folder's review (see the module docstring).

    Args:
        path: the SQLite file (created if missing).
        train_fingerprint / n_train / classes: what the decisions belong to. A new store records
            them; an existing one must hold the same, else :class:`StaleStateError` (the run was
            fitted again on other data or other classes).
    """

    def __init__(self, path: str | Path, *, train_fingerprint: str, n_train: int, classes: ClassMapping):
        self.path = Path(path)
        self.classes = classes
        self.n_train = int(n_train)
        expected = {"train_fingerprint": train_fingerprint, "n_train": str(int(n_train)), "classes": json.dumps(list(classes.names))}
        with self._connect() as db:
            version = self._version(db)
            if version is None:
                self._create(db, expected)
            elif version > SCHEMA_VERSION:
                raise FileFormatError(
                    f"{self.path} was written by a newer representer (review schema {version}, this one reads up to "
                    f"{SCHEMA_VERSION}); upgrade representer to open it."
                )
            recorded = dict(db.execute("SELECT key, value FROM run").fetchall())
        changed = [k for k, v in expected.items() if recorded.get(k) != v]
        if changed:
            raise StaleStateError(
                f"{self.path} holds review decisions for another fit of this run ({', '.join(changed)} differ: other training "
                "data or classes). Export them from where they were made, or move the file away to start a new review."
            )

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.execute("PRAGMA foreign_keys = ON")
                yield db
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise InputError(f"{self.path} stayed locked by another writer for {BUSY_TIMEOUT_S:.0f} s; retry.") from exc
            raise FileFormatError(f"{self.path} is not a readable review database ({exc}); move it away to start a new review.") from exc

    @contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _version(self, db: sqlite3.Connection) -> int | None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables:
                raise FileFormatError(f"{self.path} is an SQLite file but not a review database (tables {sorted(tables)}).")
            return None
        row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            raise FileFormatError(f"{self.path} has no schema version; move it away to start a new review.")
        return int(row[0])

    def _create(self, db: sqlite3.Connection, run: dict[str, str]) -> None:
        with self._transaction(db):
            if self._version(db) is not None:  # another process created it between our check and the lock
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            db.executemany("INSERT INTO run (key, value) VALUES (?, ?)", sorted(run.items()))

    # ------------------------------------------------------------------ writing
    def record(
        self,
        train_index: int,
        decision: str,
        *,
        item: str,
        given_label: int,
        new_label: int | None = None,
        reviewer: str,
        client: str = "",
        base: int | None | str = "any",
    ) -> Decision:
        """Append a decision on ``train_index`` and return it.

        ``base`` is the id of the point's latest decision as the writer last saw it (None: it saw
        none); if another decision was recorded since, :class:`DecisionConflict` is raised and
        nothing is written. ``base="any"`` appends regardless (a script, an import).
        """
        index = int(train_index)
        if not 0 <= index < self.n_train:
            raise InputError(f"train_index {train_index} is outside [0, {self.n_train - 1}].")
        if decision not in DECISIONS:
            raise InputError(f"decision must be one of {', '.join(DECISIONS)}; got {decision!r}.")
        self.classes.name(given_label)
        if decision == "relabel":
            if new_label is None:
                raise InputError("a relabel needs the new class.")
            self.classes.name(new_label)
            if int(new_label) == int(given_label):
                raise InputError(f"relabelling to its given class {self.classes.name(given_label)!r} changes nothing; decide keep.")
        elif new_label is not None:
            raise InputError(f"only a relabel takes a new class (decision {decision!r}).")
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        with self._connect() as db, self._transaction(db):
            current = self._latest(db, index)
            seen = None if current is None else current.id
            if base != "any" and base != seen:
                raise DecisionConflict(
                    f"train point {index} was decided in another tab or window since this one loaded it "
                    f"(now: {current.decision if current else 'undecided'}); look again and decide.",
                    current,
                )
            cursor = db.execute(
                "INSERT INTO decisions (train_index, item, decision, given_label, new_label, reviewer, decided_at, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (index, str(item), decision, int(given_label), None if new_label is None else int(new_label), str(reviewer),
                 stamp, str(client)),
            )
            return Decision(int(cursor.lastrowid), index, str(item), decision, int(given_label),
                            None if new_label is None else int(new_label), str(reviewer), stamp, str(client))

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _latest(db: sqlite3.Connection, index: int) -> Decision | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE train_index = ? ORDER BY id DESC LIMIT 1", (index,)).fetchone()
        return None if row is None else Decision(*row)

    def current(self) -> dict[int, Decision]:
        """The latest decision of every decided point, by training index."""
        query = (f"SELECT {_COLUMNS} FROM decisions WHERE id IN (SELECT MAX(id) FROM decisions GROUP BY train_index) "
                 "ORDER BY train_index")
        with self._connect() as db:
            return {row[1]: Decision(*row) for row in db.execute(query)}

    def history(self, train_index: int | None = None) -> list[Decision]:
        """Every decision (of one point, or of all), oldest first."""
        with self._connect() as db:
            if train_index is None:
                rows = db.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id").fetchall()
            else:
                rows = db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE train_index = ? ORDER BY id", (int(train_index),)).fetchall()
        return [Decision(*row) for row in rows]

    def schema_version(self) -> int:
        with self._connect() as db:
            return int(self._version(db) or 0)


def counts(decisions: Sequence[Decision | None]) -> dict[str, int]:
    """How many of ``decisions`` (the current decision per point, None = undecided) are of each kind."""
    tally = {name: 0 for name in (*DECISIONS, "undecided")}
    for d in decisions:
        tally["undecided" if d is None else d.decision] += 1
    tally["reviewed"] = sum(tally[name] for name in REVIEWED)
    return tally

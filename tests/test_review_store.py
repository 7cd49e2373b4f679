"""The review's decision store: SQLite, one row per decision, history kept, schema versioned, safe under concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from representer.classes import ClassMapping
from representer.errors import FileFormatError, InputError, StaleStateError
from representer.review.store import SCHEMA_VERSION, DecisionConflict, DecisionStore, counts

CLASSES = ClassMapping(("cat", "dog", "eel"))


def store(path, fingerprint="abc", n=50, classes=CLASSES) -> DecisionStore:
    return DecisionStore(path, train_fingerprint=fingerprint, n_train=n, classes=classes)


def test_decisions_are_appended_and_the_latest_is_current(tmp_path):
    s = store(tmp_path / "review.sqlite")
    assert s.schema_version() == SCHEMA_VERSION and s.current() == {}
    first = s.record(3, "keep", item="row 3", given_label=0, reviewer="ana", base=None)
    second = s.record(3, "relabel", item="row 3", given_label=0, new_label=2, reviewer="bo", base=first.id, client="tab-2")
    s.record(7, "remove", item="row 7", given_label=1, reviewer="ana", base=None)
    assert [d.decision for d in s.history(3)] == ["keep", "relabel"]  # history kept
    assert s.current()[3] == second and s.current()[7].decision == "remove"
    assert second.to_dict(CLASSES)["new_class"] == "eel" and second.client == "tab-2" and second.reviewer == "bo"
    reopened = store(tmp_path / "review.sqlite")  # survives a restart
    assert [d.id for d in reopened.history()] == [1, 2, 3]
    with sqlite3.connect(tmp_path / "review.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert counts([reopened.current().get(i) for i in (3, 7, 8)]) == {
        "keep": 0, "relabel": 1, "remove": 1, "skip": 0, "undecided": 1, "reviewed": 2}


def test_a_stale_base_is_a_conflict_and_writes_nothing(tmp_path):
    s = store(tmp_path / "review.sqlite")
    seen = s.record(1, "keep", item="row 1", given_label=0, reviewer="ana", base=None)
    s.record(1, "remove", item="row 1", given_label=0, reviewer="bo", base=seen.id)
    with pytest.raises(DecisionConflict, match="another tab") as conflict:
        s.record(1, "skip", item="row 1", given_label=0, reviewer="ana", base=seen.id)
    assert conflict.value.current.decision == "remove"
    with pytest.raises(DecisionConflict):
        s.record(1, "skip", item="row 1", given_label=0, reviewer="ana", base=None)
    assert [d.decision for d in s.history(1)] == ["keep", "remove"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"train_index": 50, "decision": "keep"}, "outside"),
    ({"train_index": 1, "decision": "maybe"}, "must be one of"),
    ({"train_index": 1, "decision": "relabel"}, "needs the new class"),
    ({"train_index": 1, "decision": "relabel", "new_label": 0}, "changes nothing"),
    ({"train_index": 1, "decision": "relabel", "new_label": 3}, "outside"),
    ({"train_index": 1, "decision": "keep", "new_label": 2}, "only a relabel"),
])
def test_bad_decisions_are_refused(tmp_path, kwargs, message):
    s = store(tmp_path / "review.sqlite")
    with pytest.raises(InputError, match=message):
        s.record(**kwargs, item="row 1", given_label=0, reviewer="ana")
    assert s.history() == []


def test_another_fit_a_newer_schema_or_another_file_is_refused(tmp_path):
    path = tmp_path / "review.sqlite"
    store(path)
    with pytest.raises(StaleStateError, match="train_fingerprint"):
        store(path, fingerprint="other")
    with pytest.raises(StaleStateError, match="classes"):
        store(path, classes=ClassMapping(("dog", "cat", "eel")))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(FileFormatError, match="newer representer"):
        store(path)
    with sqlite3.connect(tmp_path / "other.sqlite") as db:
        db.execute("CREATE TABLE things (x)")
    with pytest.raises(FileFormatError, match="not a review database"):
        store(tmp_path / "other.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(FileFormatError, match="not a readable review database"):
        store(tmp_path / "junk.sqlite")


def _writer(path: str, writer: int, n: int) -> None:
    s = store(path)
    for k in range(n):
        s.record(writer * n + k, "keep" if k % 2 else "skip", item=f"row {k}", given_label=1, reviewer=f"w{writer}", base="any")


def _racer(path: str, writer: int, points: list[int], results) -> None:
    s = store(path)
    won = []
    for i in points:
        try:
            s.record(i, "remove", item=f"row {i}", given_label=2, reviewer=f"w{writer}", base=None)
            won.append(i)
        except DecisionConflict:
            pass
    results.put((writer, won))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "review.sqlite")
    context = multiprocessing.get_context("fork")  # the store opens its own connections in each process
    writers = [context.Process(target=_writer, args=(path, w, 12)) for w in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    s = store(path)
    rows = s.history()
    assert len(rows) == 48 and sorted(d.train_index for d in rows) == list(range(48))
    for w in range(4):  # each writer's rows in its own order
        mine = [d.train_index for d in rows if d.reviewer == f"w{w}"]
        assert mine == sorted(mine)

    # two writers who both saw the same points undecided: exactly one decision per point lands
    results = context.Queue()
    race = str(tmp_path / "race.sqlite")
    racers = [context.Process(target=_racer, args=(race, w, list(range(20)), results)) for w in range(2)]
    for p in racers:
        p.start()
    won = dict(results.get(timeout=120) for _ in racers)
    for p in racers:
        p.join(120)
    assert sorted(won[0] + won[1]) == list(range(20))
    assert [len(store(race).history(i)) for i in range(20)] == [1] * 20

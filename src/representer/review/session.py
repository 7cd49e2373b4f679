"""A review of one run folder: its ranking of suspicious labels, the model, and the decision store.

:func:`open_review` reads what ``representer fit`` and ``representer debug`` wrote (run.json, the
saved explainer, ``label_issues.json``) and opens ``RUN/review.sqlite``; :class:`Review` answers what
the web app asks (the ranked points with their decisions, one point in detail with its explanations,
heat-maps) and records decisions. Classes travel by name: the app shows names and sends names, and
:class:`~representer.ClassMapping` turns them into the run's ids.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassMapping
from ..errors import FileFormatError, InputError, RepresenterError, StaleStateError
from ..userrun import ISSUES_FILE, Run, open_run, renderer, select_rows
from .corrections import Corrections, corrections_of
from .store import STORE_FILE, Decision, DecisionStore, counts

#: Training points shown per sign and class in a point's explanation, and those with heat-maps.
TOP_K = 6
HEATMAP_K = 3
DECISION_FILTERS = ("all", "undecided", "keep", "relabel", "remove", "skip")


class UnknownPoint(RepresenterError, LookupError):
    """A training point that the run's ranking does not hold."""


@dataclass
class Review:
    """A run folder under review (built by :func:`open_review`)."""

    run: Run
    issues: dict[str, Any]
    store: DecisionStore
    classes: ClassMapping
    reviewer: str
    probabilities: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _renderers: dict[str, Callable[[int], str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ the ranking
    @property
    def folder(self) -> Path:
        return self.run.folder

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.issues["issues"]

    @cached_property
    def _by_index(self) -> dict[int, dict[str, Any]]:
        return {row["train_index"]: row for row in self.rows}

    def row(self, train_index: int) -> dict[str, Any]:
        """The ranked point ``train_index`` (:class:`UnknownPoint` if the ranking does not hold it)."""
        row = self._by_index.get(train_index)
        if row is not None:
            return row
        raise UnknownPoint(f"training point {train_index} is not among the {len(self.rows)} ranked points of {self.folder}.")

    def progress(self) -> dict[str, int]:
        """How many ranked points are undecided, kept, relabelled, removed, skipped; and reviewed in all."""
        current = self.store.current()
        tally = counts([current.get(r["train_index"]) for r in self.rows])
        tally["total"] = len(self.rows)
        return tally

    def points(self, *, given_class: str | None = None, decision: str = "all") -> list[dict[str, Any]]:
        """The ranked points, most suspicious first, with their current decision; filtered by the
        given class (a name) and by decision (:data:`DECISION_FILTERS`)."""
        if decision not in DECISION_FILTERS:
            raise InputError(f"the decision filter must be one of {', '.join(DECISION_FILTERS)}; got {decision!r}.")
        wanted = None if not given_class else self.class_id(given_class, "the class filter")
        current = self.store.current()
        listed = []
        for row in self.rows:
            d = current.get(row["train_index"])
            state = "undecided" if d is None else d.decision
            if (wanted is not None and row["given_label"] != wanted) or decision not in ("all", state):
                continue
            listed.append({**self._summary(row), "decision": self._decision(d)})
        return listed

    def class_id(self, name: str, what: str) -> int:
        """The id of the class called ``name`` (classes travel by name between the page and the server)."""
        if name not in self.classes.names:
            shown = ", ".join(self.classes.names[:12]) + (", …" if len(self.classes) > 12 else "")
            raise InputError(f"{what} {name!r} is not a class of this run (its classes: {shown}).")
        return self.classes.names.index(name)

    def _summary(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "rank": row["rank"], "train_index": row["train_index"], "item": row["item"], "score": row["score"],
            "given_label": row["given_label"], "given_class": self.classes.name(row["given_label"]),
            "predicted": row["predicted"], "predicted_class": self.classes.name(row["predicted"]),
        }

    def _decision(self, d: Decision | None) -> dict[str, Any] | None:
        return None if d is None else d.to_dict(self.classes)

    # ------------------------------------------------------------------ one point
    def detail(self, train_index: int) -> dict[str, Any]:
        """Everything the app shows about a ranked point: the item, labels, probabilities, score,
        its decision and history, and the training points that most help / harm it for its given
        and its predicted class."""
        row = self.row(train_index)
        history = self.store.history(train_index)
        given, predicted = row["given_label"], row["predicted"]
        detail = {
            **self._summary(row),
            "item_html": self._render("large", train_index),
            "decision": self._decision(history[-1] if history else None),
            "history": [d.to_dict(self.classes) for d in history],
            "heatmaps": self.heatmaps_available(),
        }
        if self.probabilities is not None:
            p = self.probabilities[train_index]
            detail["probabilities"] = [{"label": int(c), "class": self.classes.name(c), "p": float(p[c])} for c in np.argsort(-p)]
        detail["explanations"] = [self._explanation(train_index, c, role) for c, role in
                                  ((given, "given"), (predicted, "predicted")) if role == "given" or predicted != given]
        return detail

    def _explanation(self, train_index: int, target: int, role: str) -> dict[str, Any]:
        explainer, model = self.run.explainer, self.run.model
        with self._lock:
            X = model.inputs(select_rows(self.run.data.train.X, np.array([train_index])))
            explanation = explainer.explain(X, top_k=min(TOP_K, explainer.n_train_), target=target)
        labels = self.run.data.train.y
        current = self.store.current()

        def cards(topk: Any) -> list[dict[str, Any]]:
            return [
                {"train_index": int(i), "score": float(s), "item_html": self._render("small", int(i)), "item": self.run.data.train.items[int(i)],
                 "label": int(labels[i]), "class": self.classes.name(int(labels[i])), "itself": int(i) == train_index,
                 "decision": None if int(i) not in current else current[int(i)].decision}
                for i, s in zip(topk.indices[0], topk.scores[0])
            ]

        return {"role": role, "label": int(target), "class": self.classes.name(target), "method": self.run.info["method"],
                "helpful": cards(explanation.excitatory), "harmful": cards(explanation.inhibitory)}

    def _render(self, size: str, index: int) -> str:
        if size not in self._renderers:
            data = self.run.data
            draw = renderer(data.kind, data.train.display)
            if size == "large" and data.kind == "images":
                draw.size = 224
            elif size == "large":
                from ..report import TableRenderer, TextRenderer

                draw = TextRenderer(data.train.display, max_chars=4000) if data.kind == "text" else TableRenderer(data.train.display, max_columns=40)
            self._renderers[size] = draw
        return self._renderers[size](index)

    def heatmaps_available(self) -> bool:
        """Whether :meth:`heatmaps` can draw LRP heat-maps: image data, an RPS-L2 or DualView run on a
        PyTorch network, and captum installed (the ``attribution`` extra)."""
        from importlib.util import find_spec

        return (self.run.data.kind == "images" and self.run.info["method"] in ("rps-l2", "dualview")
                and hasattr(self.run.model.adapter, "net") and find_spec("captum") is not None)

    def heatmaps(self, train_index: int, class_name: str) -> dict[str, Any]:
        """LRP heat-maps (DualView × LRP, ``lrp_pair_relevance``) of the point and its top
        :data:`HEATMAP_K` helpful and harmful training points, explained for ``class_name``."""
        from ..attribution import lrp_pair_relevance
        from ..report.images import as_heatmap, heatmap_to_data_uri

        self.row(train_index)
        if not self.heatmaps_available():
            raise InputError("heat-maps need image data, an rps-l2 or dualview run on a PyTorch network, and captum "
                             "(pip install 'representer[attribution]').")
        target = self.class_id(class_name, "class")
        train = self.run.data.train
        with self._lock:
            x = select_rows(train.X, np.array([train_index]))
            explanation = self.run.explainer.explain(x, top_k=min(HEATMAP_K, self.run.explainer.n_train_), target=target)
            pairs = np.r_[explanation.excitatory.indices[0], explanation.inhibitory.indices[0]]
            relevance = lrp_pair_relevance(self.run.explainer, x, train.X, pairs, target=target)
        return {
            "class": class_name,
            "pairs": [
                {"train_index": int(i), "score": float(s), "item_html": self._render("small", int(i)),
                 "on_point": heatmap_to_data_uri(as_heatmap(relevance.test_maps[p])),
                 "on_train": heatmap_to_data_uri(as_heatmap(relevance.train_maps[p]))}
                for p, (i, s) in enumerate(zip(relevance.train_indices, relevance.scores))
            ],
        }

    # ------------------------------------------------------------------ deciding
    def decide(self, train_index: int, decision: str, *, new_class: str | None = None, base: int | None = None,
               client: str = "") -> Decision:
        """Record a decision on a ranked point; ``new_class`` (a class name) for a relabel; ``base``
        the id of the decision the client last saw (see :meth:`DecisionStore.record`)."""
        row = self.row(train_index)
        new_label = None if new_class is None else self.class_id(new_class, "new_class")
        return self.store.record(train_index, decision, item=row["item"], given_label=row["given_label"], new_label=new_label,
                                 reviewer=self.reviewer, client=client, base=base)

    def corrections(self) -> Corrections:
        """The current decisions as a corrections file (see :mod:`representer.review.corrections`)."""
        current = [d.to_dict(self.classes) for d in self.store.current().values()]
        return corrections_of(current, self.run.data, self.classes)

    def state(self) -> dict[str, Any]:
        """What the app's header shows: the run, the ranking's route, the classes, the progress."""
        info = self.run.info
        return {
            "folder": str(self.folder), "method": info["method"], "route": self.issues.get("route") or self.issues.get("ranking"),
            "reason": self.issues.get("reason"), "caveat": self.issues.get("caveat"), "n_train": info["n_train"],
            "classes": list(self.classes.names), "reviewer": self.reviewer, "progress": self.progress(),
            "kind": self.run.data.kind, "heatmaps": self.heatmaps_available() if self.run.model is not None else False,
        }


def open_review(folder: Path, *, with_model: bool = True, trust_code: bool = False,
                steps: Callable[[str], None] = lambda _: None, reviewer: str | None = None) -> Review:
    """Open the run folder ``folder`` for review (``with_model=False``: ranking and decisions only, e.g. to export).

    Raises :class:`InputError` when ``representer debug`` has not ranked the run's labels yet, and
    :class:`StaleStateError` when the ranking or the decisions belong to another fit.
    """
    run = open_run(folder, with_model=with_model, steps=steps, trust_code=trust_code)
    issues = _read_issues(folder, run)
    classes = ClassMapping.from_dict(run.info["classes"])
    store = DecisionStore(folder / STORE_FILE, train_fingerprint=run.info["train_fingerprint"], n_train=run.info["n_train"],
                          classes=classes)
    review = Review(run, issues, store, classes, reviewer or _user())
    if with_model:
        explainer = run.explainer
        review.probabilities = _probabilities(explainer.model_.logits_from_features(explainer.train_features_))
    return review


def _read_issues(folder: Path, run: Run) -> dict[str, Any]:
    path = folder / ISSUES_FILE
    if not path.is_file():
        raise InputError(f"{folder} has no ranking of suspicious labels yet: run `representer debug {folder}` first.")
    try:
        issues = json.loads(path.read_text(encoding="utf-8"))
        rows = issues["issues"]
        ok = all(isinstance(r, dict) and {"rank", "train_index", "item", "score", "given_label", "predicted"} <= set(r) for r in rows)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(f"{path} is damaged ({exc}); run `representer debug {folder}` again.") from exc
    if not ok:
        raise FileFormatError(f"{path} is damaged (rows lack their fields); run `representer debug {folder}` again.")
    y, items = run.data.train.y, run.data.train.items
    for r in rows:
        i = r["train_index"]
        if not (isinstance(i, int) and 0 <= i < len(y) and r["item"] == items[i] and r["given_label"] == int(y[i])):
            raise StaleStateError(f"{path} does not match the run's training data (point {i}); run `representer debug {folder}` again.")
    return issues


def _probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of ``(n, K)`` logits; a one-logit sigmoid head gives ``[1 − p, p]``."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"


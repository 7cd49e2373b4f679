"""Run folders: what ``representer fit`` writes for a user's own model and data, and the later commands read.

``fit`` writes a run folder RUN; ``explain``, ``debug`` and ``report`` read it back and add to it::

    file                                     content                                                  written by
    RUN/run.json                             model spec, data spec (absolute paths), method, options,  fit
                                             device, class names, accuracy, data_fingerprint of the
                                             training split
    RUN/config.json, RUN/state.safetensors   the fitted explainer (Explainer.save; no pickle)          fit
    RUN/explanations.json                    top-k training points of both signs per explained point;  explain
                                             scores test × train, positive = excitatory
    RUN/label_issues.json, .csv              training points ranked by suspicion, most suspicious      debug
                                             first
    RUN/report.html                          rebuilt from all of the above by write_report             explain, debug, report

Fitting again into a folder deletes its :data:`OUTPUT_FILES`. :func:`open_run` reads a folder back
and refuses it if the training data changed since ``fit`` (:class:`~representer.errors.StaleStateError`);
:func:`representer.methods.load` refuses a changed model head. Heavy dependencies (torch, the report)
are imported only inside the functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, StaleStateError

if TYPE_CHECKING:
    from .methods import Explainer
    from .userdata import Split, UserData
    from .usermodel import UserModel

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"  # written by Explainer.save, with state.safetensors
EXPLANATIONS_FILE = "explanations.json"
ISSUES_FILE = "label_issues.json"
ISSUES_CSV = "label_issues.csv"
REPORT_FILE = "report.html"
#: What ``explain``, ``debug`` and ``report`` add to a run; ``fit`` deletes them when it refits a folder.
OUTPUT_FILES = (EXPLANATIONS_FILE, ISSUES_FILE, ISSUES_CSV, REPORT_FILE)

#: Method name on the command line → (explainer class, the method options it accepts).
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rps-l2": ("RPSL2", ("lam",)),
    "rps-lje": ("RPSLJE", ("gamma", "damping")),
    "dualview": ("DualView", ("C", "seed")),
    "influence": ("InfluenceFunction", ("hessian", "damping")),
    "relatif": ("RelatIF", ("kind", "hessian", "damping")),
    "similarity": ("GradientSimilarity", ()),
    "knn": ("FeatureSimilarity", ("metric", "n_neighbors")),
}
#: Method option (explainer keyword) → its command-line flag, for error messages.
OPTION_NAMES = {"lam": "--lam", "gamma": "--gamma", "damping": "--damping", "C": "--C", "seed": "--seed",
                "hessian": "--hessian", "kind": "--kind", "metric": "--metric", "n_neighbors": "--n-neighbors"}


def method_params(method: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The explainer class name of ``method`` and the options of ``given`` that were set (not None).

    An unknown method, or a set option that ``method`` does not accept, raises :class:`InputError`.
    """
    if method not in METHODS:
        raise InputError(f"`--method` must be one of {', '.join(METHODS)}; got {method!r}.")
    class_name, accepted = METHODS[method]
    chosen = {k: v for k, v in given.items() if v is not None}
    foreign = [OPTION_NAMES[k] for k in chosen if k not in accepted]
    if foreign:
        takes = ", ".join(OPTION_NAMES[k] for k in accepted) or "no method options"
        raise InputError(f"{', '.join(foreign)} does not apply to --method {method} (it takes {takes}).")
    return class_name, chosen


def data_fingerprint(split: Split) -> str:
    """A content hash of a split's inputs and labels (texts: their NUL-joined UTF-8 bytes)."""
    from .models.base import array_fingerprint

    if isinstance(split.X, np.ndarray):
        return array_fingerprint(split.X, split.y)
    return array_fingerprint(np.frombuffer("\x00".join(split.X).encode(), dtype=np.uint8), split.y)


@dataclass
class Run:
    """A run folder read back: its record (run.json), the data and (when asked for) the model and explainer."""

    folder: Path
    info: dict[str, Any]
    data: UserData
    model: UserModel | None = None
    explainer: Explainer | None = None


def open_run(folder: Path, *, with_model: bool, steps: Callable[[str], None]) -> Run:
    """Read the run in ``folder``; ``steps`` is told each step (loading the data, the model) as it starts.

    Raises :class:`InputError` if ``folder`` has no run.json and :class:`StaleStateError` if the
    training data changed since ``fit``. With ``with_model`` the model is placed on the run's device
    and the saved explainer is loaded onto it.
    """
    from .methods import load as load_explainer
    from .userdata import DataSpec, load_data
    from .usermodel import ModelSpec, load_model

    record = folder / RUN_FILE
    if not record.is_file():
        raise InputError(f"{folder} is not a run folder (no {RUN_FILE}); create one with `representer fit --out {folder}`.")
    info = json.loads(record.read_text())
    steps(f"Loading the data ({Path(info['data']['path']).name})")
    data = load_data(DataSpec.from_dict(info["data"]))
    if data_fingerprint(data.train) != info["train_fingerprint"]:
        raise StaleStateError(
            f"The training data at {info['data']['path']} changed since `representer fit`; fit the run again."
        )
    run = Run(folder, info, data)
    if with_model:
        steps(f"Loading the model and the fitted {info['method']} explainer")
        run.model = place(load_model(ModelSpec.from_dict(info["model"])), info["device"])
        run.explainer = load_explainer(folder, run.model.adapter)
    return run


def place(user_model: UserModel, device: str) -> UserModel:
    """Move a PyTorch network to ``device`` (tree models stay where they are); returns ``user_model``."""
    import torch

    adapter = user_model.adapter
    if hasattr(adapter, "net"):
        adapter.net.to(device)
        adapter.device = torch.device(device)
    return user_model


def select_rows(X: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of the inputs ``X`` (an array, or a list of texts)."""
    return [X[int(i)] for i in rows] if isinstance(X, list) else X[rows]


def class_label(names: Any, c: int) -> str | None:
    """The name of class ``c``, or None without class names (or for a class outside them)."""
    return str(names[c]) if names is not None and 0 <= c < len(names) else None


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def renderer(kind: str, display: Any) -> Any:
    """The report renderer of a split's ``display`` (images in [0, 1] get a fixed 0–1 colour scale)."""
    from .report import ImageRenderer, TableRenderer, TextRenderer

    if kind == "images":
        images = np.asarray(display)
        inside = float(images.min()) >= 0.0 and float(images.max()) <= 1.0
        return ImageRenderer(images, vmin=0.0 if inside else None, vmax=1.0 if inside else None)
    if kind == "text":
        return TextRenderer(display)
    return TableRenderer(display)


def write_report(run: Run, *, show_explanations: int | None = None, show_issues: int | None = None) -> Path:
    """Build RUN/report.html from run.json, config.json, explanations.json and label_issues.json.

    ``show_explanations`` / ``show_issues`` override how many explained / suspicious points are
    drawn (default: the ``show`` saved by ``explain`` / ``debug``). Raises :class:`InputError` if
    neither explanations nor label issues have been written yet.
    """
    from .debugging import LabelIssues
    from .explanation import Explanation, TopK
    from .report import Report

    folder, info, data = run.folder, run.info, run.data
    explained = json.loads((folder / EXPLANATIONS_FILE).read_text()) if (folder / EXPLANATIONS_FILE).exists() else None
    flagged = json.loads((folder / ISSUES_FILE).read_text()) if (folder / ISSUES_FILE).exists() else None
    if explained is None and flagged is None:
        raise InputError(f"{folder} has nothing to report yet: run `representer explain {folder}` or `representer debug {folder}` first.")
    config = json.loads((folder / CONFIG_FILE).read_text())
    names, wide = data.class_names, data.kind != "images"
    accuracy = ", ".join(f"{split} accuracy {100 * v:.1f}\u00a0%" for split, v in info["accuracy"].items())
    report = Report(
        f"representer: {info['method']} on {Path(info['data']['path']).name}",
        subtitle=f"Model {info['model']['source']}, {info['n_train']} training / {info['n_test']} test points; {accuracy}.",
    )
    train_items = renderer(data.kind, data.train.display)
    if flagged is not None:
        shown = flagged["issues"][: show_issues or flagged["show"]]
        issues = LabelIssues(
            indices=np.array([r["train_index"] for r in shown], dtype=np.int64),
            scores=np.array([r["score"] for r in shown]),
            ranking=flagged["ranking"],
            given_labels=np.array([r["given_label"] for r in shown], dtype=np.int64),
        )
        predictions = np.full(info["n_train"], -1, dtype=np.int64)
        predictions[issues.indices] = [r["predicted"] for r in shown]
        report.add_label_issues(issues, renderer=train_items, predictions=predictions, class_names=names, top=len(shown),
                                title="Most suspicious training labels", wide=wide)
        report.add_table(
            [{"rank": r["rank"], "train index": r["train_index"], "item": r["item"], "given": r["given_class"] or r["given_label"],
              "model": r["predicted_class"] or r["predicted"], "score": r["score"]} for r in shown],
            title="Suspicious training labels: where to find them",
            caption=f"Full list: {ISSUES_CSV} / {ISSUES_FILE} in the run folder.",
        )
    if explained is not None:
        rows = explained["rows"]
        points = data.split(explained["split"])
        explanation = Explanation(
            excitatory=TopK(np.array([r["excitatory"]["indices"] for r in rows]), np.array([r["excitatory"]["scores"] for r in rows])),
            inhibitory=TopK(np.array([r["inhibitory"]["indices"] for r in rows]), np.array([r["inhibitory"]["scores"] for r in rows])),
            target=np.array([r["explained_class"] for r in rows], dtype=np.int64),
            method=explained["method"],
        )
        report.add_explanations(
            explanation, test_items=renderer(data.kind, points.display), train_items=train_items,
            train_labels=data.train.y, test_indices=[r["index"] for r in rows], test_labels=points.y,
            rows=range(min(len(rows), show_explanations or explained["show"])), class_names=names,
            title=f"Why the model predicts what it predicts ({explained['split']} points)", wide=wide,
        )
    if config.get("fit_report_"):
        report.add_table(config["fit_report_"], title=f"{info['method']} fit", caption=f"{config['class']}({config['params']})")
    report.add_table(
        {"method": info["method"], **{f"option {k}": v for k, v in info["params"].items()}, "model": info["model"]["source"],
         "weights": info["model"]["weights"] or "-", "data": info["data"]["path"], "test data": info["data"]["test_path"] or "-",
         **{f"accuracy ({k})": v for k, v in info["accuracy"].items()}},
        title="Run",
    )
    return report.write(folder / REPORT_FILE)

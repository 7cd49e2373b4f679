"""Run folders: what ``representer fit`` writes for a user's own model and data, and the later commands read.

``fit`` writes a run folder RUN; ``explain``, ``debug`` and ``report`` read it back and add to it::

    file                                     content                                                  written by
    RUN/run.json                             format version, model spec (with the SHA-256 of its code  fit
                                             files), data spec (absolute paths), method, options,
                                             device, classes (ClassMapping), accuracy, data_fingerprint
                                             of the training split, digest of the saved explainer,
                                             the checkpoint recording (path, SHA-256 of its index)
    RUN/config.json, RUN/state.safetensors   the fitted explainer (Explainer.save; no pickle)          fit
    RUN/explanations.json                    top-k training points of both signs per explained point;  explain
                                             scores test × train, positive = excitatory
    RUN/label_issues.json, .csv              training points ranked by suspicion, most suspicious      debug
                                             first
    RUN/report.html                          rebuilt from all of the above by write_report             explain, debug, report

:func:`write_run` writes a fitted run. It refuses a folder that holds anything but a previous run
(unless ``force``), and builds the new run in a temporary sibling folder that then replaces the old
one as a whole, so a ``fit`` that is killed or runs out of disk leaves the previous run usable.
:func:`open_run` reads a folder back. It refuses (:class:`~representer.errors.StaleStateError`) a run
whose training data changed since ``fit``, a model that differs in any parameter, and a run.json
that does not belong to the saved explainer; a damaged file raises
:class:`~representer.errors.FileFormatError`. Loading the model runs the code run.json names, so a
run folder is trusted like a script: only code whose files and SHA-256 ``fit`` recorded is imported,
unless ``trust_code`` (see :mod:`representer.usermodel`). Every output is written atomically
(:mod:`representer._atomic`). Heavy dependencies (torch, the report) are imported only inside the
functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._atomic import staged_dir, write_text
from .classes import ClassMapping
from .errors import FileFormatError, InputError, RepresenterWarning, StaleStateError

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
RETRAIN_FILE = "retrain.json"  # written by `representer review --train`
REVIEW_FILE = "review.sqlite"  # the review's decisions (representer.review.store), never deleted by `fit`
STATE_FILE = "state.safetensors"  # written by Explainer.save
#: What ``explain``, ``debug``, ``report`` and ``review --train`` add to a run; ``fit`` deletes them when it refits a folder.
OUTPUT_FILES = (EXPLANATIONS_FILE, ISSUES_FILE, ISSUES_CSV, REPORT_FILE, RETRAIN_FILE)
#: Every file of a run folder: a folder holding others is not a run folder.
RUN_FILES = (RUN_FILE, CONFIG_FILE, STATE_FILE, *OUTPUT_FILES)
#: Version of run.json's layout: (major, minor); a newer major version is refused.
RUN_FORMAT = (2, 0)
_RUN_KEYS = ("format_version", "method", "params", "device", "model", "data", "classes", "n_train", "n_test",
             "train_fingerprint", "accuracy", "explainer_digest")

def data_fingerprint(split: Split) -> str:
    """A content hash of a split's inputs and labels (texts: their NUL-joined UTF-8 bytes)."""
    from ._files import array_fingerprint

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


def open_run(folder: Path, *, with_model: bool, steps: Callable[[str], None], trust_code: bool = False) -> Run:
    """Read the run in ``folder``; ``steps`` is told each step (loading the data, the model) as it starts.

    Raises :class:`InputError` if ``folder`` has no run.json, :class:`FileFormatError` if a file of
    it is damaged, and :class:`StaleStateError` if the training data changed since ``fit``. With
    ``with_model`` the model's code is checked (unless ``trust_code``), the model is placed on the
    run's device and the saved explainer is loaded onto it, checked against run.json.
    """
    from .userdata import DataSpec, load_data

    info = read_run_record(folder)
    classes = ClassMapping.from_dict(info["classes"])
    spec = DataSpec.from_dict(info["data"])
    if classes.origin != "class ids":
        spec = replace(spec, class_names=classes.names)
    steps(f"Loading the data ({Path(spec.path).name})")
    data = load_data(spec)
    if info.get("corrections"):
        from .review.corrections import apply_record

        data = apply_record(data, info["corrections"])
    if data_fingerprint(data.train) != info["train_fingerprint"]:
        raise StaleStateError(f"The training data at {spec.path} changed since `representer fit`; fit the run again.")
    run = Run(folder, info, data)
    if with_model:
        from .methods import load as load_explainer
        from ._saved_format import read_config
        from .methods.persistence import ModelChangedError
        from .usermodel import load_model

        if read_config(folder).get("digest") != info["explainer_digest"]:
            raise StaleStateError(
                f"{folder / RUN_FILE} and the saved explainer in {folder} come from different fits (an interrupted "
                "`representer fit --force`?); fit the run again."
            )
        steps(f"Loading the model and the fitted {info['method']} explainer")
        spec = _model_spec(info, folder)
        run.model = place(load_model(spec, trust_code=trust_code), info["device"])
        try:
            run.explainer = load_explainer(folder, run.model.adapter, class_names=classes.names)
        except ModelChangedError as exc:
            raise StaleStateError(_model_changed(folder, spec, info["data"]["path"], exc.parts)) from exc
    return run


def _model_changed(folder: Path, spec: Any, data: str, parts: str) -> str:
    """Why a run's model no longer matches its explainer, and the command that fits the run again."""
    files = f"weights {spec.weights}" if spec.weights else f"model file {spec.source}"
    weights = f" --weights {spec.weights}" if spec.weights else ""
    return (
        f"The model that {folder / RUN_FILE} names ({spec.source}, {files}) is not the one `representer fit` explained "
        f"(different parameters: {parts}). If the {'weights' if spec.weights else 'model'} file was replaced or "
        f"retrained, fit the run again: `representer fit --model {spec.source}{weights} --data {data} … --out {folder}`; "
        "otherwise restore the file `fit` read."
    )


def read_run_record(folder: Path) -> dict[str, Any]:
    """run.json of ``folder``, checked for its format version and keys."""
    from ._files import read_json

    record = folder / RUN_FILE
    if not record.is_file():
        raise InputError(f"{folder} is not a run folder (no {RUN_FILE}); create one with `representer fit --out {folder}`.")
    info = read_json(record, "the run record")
    if not isinstance(info, dict):
        raise FileFormatError(f"{record} does not hold a run record (a JSON object); fit the run again.")
    try:
        major = int(str(info.get("format_version", "1.0")).split(".")[0])
    except ValueError:
        major = -1
    if major > RUN_FORMAT[0]:
        raise FileFormatError(
            f"{record} was written by a newer representer (run format {info['format_version']}); upgrade representer to read it."
        )
    missing = [k for k in _RUN_KEYS if k not in info]
    if major < RUN_FORMAT[0] or missing:
        raise FileFormatError(
            f"{record} lacks {missing[:4] or ['format_version 2']} (written by an older representer, or damaged); fit the run again."
        )
    return info


def _model_spec(info: dict[str, Any], folder: Path) -> Any:
    from .usermodel import ModelSpec

    try:
        return ModelSpec.from_dict(info["model"])
    except (TypeError, AttributeError) as exc:
        raise FileFormatError(f"{folder / RUN_FILE} has a damaged model entry ({exc}); fit the run again.") from exc


def place(user_model: UserModel, device: str) -> UserModel:
    """Move a PyTorch network to ``device`` (tree models stay where they are); returns ``user_model``.

    A device this torch cannot use (``"cuda"`` without CUDA) raises :class:`InputError`.
    """
    from ._validation import check_device

    adapter = user_model.adapter
    target = check_device(device, "--device")
    if hasattr(adapter, "net"):
        adapter.net.to(target)
        adapter.device = target
    return user_model


def folder_state(folder: Path) -> tuple[str, list[str]]:
    """``("new" | "run" | "other", foreign entries)``: what ``fit --out folder`` would replace.

    "new": missing or empty; "run": a run folder holding only run files; "other": anything else
    (the entries that are not run files are listed). A symbolic link or a file is refused.
    """
    if folder.is_symlink():
        raise InputError(f"`--out` {folder} is a symbolic link; pass the folder itself (nothing is written through links).")
    if not folder.exists():
        return "new", []
    if not folder.is_dir():
        raise InputError(f"`--out` {folder} is a file, not a folder.")
    entries = sorted(p.name for p in folder.iterdir())
    foreign = [name for name in entries if name not in RUN_FILES]
    if not entries:
        return "new", []
    if not foreign and RUN_FILE in entries:
        return "run", []
    return "other", foreign


def check_out(folder: Path, *, force: bool) -> str:
    """The :func:`folder_state` of ``folder``, refused if it holds other files and ``force`` is off."""
    state, foreign = folder_state(folder)
    if REVIEW_FILE in foreign and not force:
        raise InputError(
            f"`--out` {folder} holds review decisions ({REVIEW_FILE}), which a new fit would orphan. Export them "
            f"(`representer review {folder} --export corrections.csv`) and fit into another folder (with --corrections), or "
            "pass --force to refit here and keep them (they stay valid only if the training data and classes are unchanged)."
        )
    if state == "other" and not force:
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        raise InputError(
            f"`--out` {folder} is not empty and is not a run folder (it holds {shown}); fit into a new or empty folder, "
            "or pass --force to write the run's files beside them (files with a run file's name are replaced)."
        )
    return state


def check_recording(folder: Path, adapter: Any) -> dict[str, Any]:
    """Check a checkpoint recording against the model at ``fit``; returns what run.json keeps of it.

    Every checkpoint must load (hashes checked) and fit the network's architecture. Recorded: the
    absolute path, the SHA-256 of its ``checkpoints.json`` (so ``debug`` refuses a recording changed
    since ``fit``) and the epochs.
    """
    from .checkpoints import INDEX_FILE, check_architecture, load_checkpoints
    from .models import TorchClassifier

    if not isinstance(adapter, TorchClassifier):
        raise InputError(
            "`--checkpoints` records a network's training; a tree model's boosting rounds are its trajectory already "
            "(`representer debug` reads them without a recording)."
        )
    recording = load_checkpoints(folder)
    for checkpoint in recording:
        check_architecture(adapter.net, checkpoint, full=True)
    return {"path": str(Path(folder).resolve()), "index_sha256": _file_digest(Path(folder) / INDEX_FILE),
            "epochs": [c.epoch for c in recording]}


def recorded_checkpoints(run: Run) -> dict[str, Any] | None:
    """The run's checkpoint recording (``None`` if ``fit`` had none), refused if it changed since ``fit``."""
    from .checkpoints import INDEX_FILE

    recording = run.info.get("checkpoints")
    if not recording:
        return None
    index = Path(recording["path"]) / INDEX_FILE
    if not index.is_file() or _file_digest(index) != recording["index_sha256"]:
        raise StaleStateError(
            f"The checkpoints at {recording['path']} are missing or changed since `representer fit`; fit the run again "
            "with --checkpoints pointing at the recording."
        )
    return recording


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_run(folder: Path, explainer: Explainer, info: dict[str, Any], *, force: bool = False) -> None:
    """Write the fitted ``explainer`` and run.json (``info``) as the run folder ``folder``.

    A new folder or a previous run is replaced as a whole (atomically, see the module docstring).
    With ``force``, a folder holding other files keeps them: the run's files are moved in one by
    one, run.json last, and the outputs of an earlier run are deleted.
    """
    state = check_out(folder, force=force)
    record = {"format_version": ".".join(map(str, RUN_FORMAT)), **info}
    if state == "other" or _holds_cwd(folder):
        _write_run_in_place(folder, explainer, record)
        return
    with staged_dir(folder) as stage:
        explainer.save(stage)
        record["explainer_digest"] = _digest(stage)
        write_text(stage / RUN_FILE, json.dumps(record, indent=2))


def _write_run_in_place(folder: Path, explainer: Explainer, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".representer-fit-") as tmp:
        saved = explainer.save(Path(tmp) / "explainer")
        record["explainer_digest"] = _digest(saved)
        for stale in OUTPUT_FILES:
            (folder / stale).unlink(missing_ok=True)
        for name in (STATE_FILE, CONFIG_FILE):
            os.replace(saved / name, folder / name)
        write_text(folder / RUN_FILE, json.dumps(record, indent=2))


def _digest(saved: Path) -> str:
    from ._saved_format import read_config

    return str(read_config(saved)["digest"])


def _holds_cwd(folder: Path) -> bool:
    """Whether ``folder`` is the working directory or one of its parents (it cannot be swapped away)."""
    cwd = Path.cwd().resolve()
    target = folder.resolve()
    return cwd == target or target in cwd.parents


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
    from .rankings import LabelIssues
    from .explanation import Explanation, TopK
    from .report import Report

    from ._saved_format import read_config

    folder, info, data = run.folder, run.info, run.data
    explained = _read_output(folder, EXPLANATIONS_FILE, "explain", ("rows", "split", "method", "show"))
    flagged = _read_output(folder, ISSUES_FILE, "debug", ("issues", "ranking", "show"))
    if explained is None and flagged is None:
        raise InputError(f"{folder} has nothing to report yet: run `representer explain {folder}` or `representer debug {folder}` first.")
    config = read_config(folder)
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
        route = flagged.get("route") or flagged["ranking"]
        report.add_label_issues(issues, renderer=train_items, predictions=predictions, class_names=names, top=len(shown),
                                title=f"Most suspicious training labels ({route})", wide=wide, train_names=data.train.items)
        if flagged.get("reason"):
            caveat = f" Caveat: {flagged['caveat']}." if flagged.get("caveat") else ""
            report.add_text(f"Ranked by {route}: {flagged['reason']}.{caveat}", title="How these labels were ranked")
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
            train_names=data.train.items, test_names=points.items,
        )
    retrained = _read_output(folder, RETRAIN_FILE, "review --train", ("before", "after", "train", "seed"))
    if retrained is not None:
        _add_retrain(report, retrained, info)
    if config.get("fit_report_"):
        report.add_table(config["fit_report_"], title=f"{info['method']} fit", caption=f"{config['class']}({config['params']})")
    report.add_table(
        {"method": info["method"], **{f"option {k}": v for k, v in info["params"].items()}, "model": info["model"]["source"],
         "weights": info["model"]["weights"] or "-", "data": info["data"]["path"], "test data": info["data"]["test_path"] or "-",
         **{f"accuracy ({k})": v for k, v in info["accuracy"].items()}, **_corrections_summary(info)},
        title="Run",
    )
    return report.write(folder / REPORT_FILE)


def _add_retrain(report: Any, record: dict[str, Any], info: dict[str, Any]) -> None:
    """The section of ``representer review --train``: test accuracy on the given vs the corrected labels."""
    rows = [{"training labels": "as given", "training points": record["before"]["n_train"],
             "test accuracy": f"{100 * record['before']['test_accuracy']:.2f} %"},
            {"training labels": f"corrected ({record['relabelled']} relabelled, {record['removed']} removed)",
             "training points": record["after"]["n_train"], "test accuracy": f"{100 * record['after']['test_accuracy']:.2f} %"}]
    gain = 100 * (record["after"]["test_accuracy"] - record["before"]["test_accuracy"])
    fitted = record.get("fitted_model_test_accuracy")
    report.add_table(rows, title="Retrained with the review's corrections",
                     caption=f"Both models trained by {record['train']} with seed {record['seed']}, on the run's "
                             f"{record['n_test']} test points: {gain:+.2f} points; "
                             f"{record['changed_test_predictions']} test predictions changed; one test point is "
                             f"{100 / max(record['n_test'], 1):.2f} points."
                             + (f" The explained model itself, trained by you outside representer, scores {100 * fitted:.2f} %." if fitted is not None else ""))


def _corrections_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The corrections ``fit --corrections`` applied, for the report's run table."""
    record = info.get("corrections")
    if not record:
        return {}
    rows = record["rows"]
    return {"corrections": record["source"], "relabelled at fit": sum(r["decision"] == "relabel" for r in rows),
            "removed at fit": sum(r["decision"] == "remove" for r in rows)}


def _read_output(folder: Path, name: str, command: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """An output of ``command`` (explanations, label issues), or None if missing; a damaged one is skipped with a warning."""
    file = folder / name
    if not file.exists():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or any(k not in record for k in keys):
            raise ValueError(f"it lacks {[k for k in keys if not isinstance(record, dict) or k not in record]}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        warnings.warn(
            f"{file} is damaged ({exc}), so the report leaves it out; run `representer {command} {folder}` again.",
            RepresenterWarning,
            stacklevel=3,
        )
        return None
    return record

"""What the review's corrections buy: retrain on the given and on the corrected labels, compare test accuracy.

``representer review RUN --train TRAIN`` trains two models with the same training function and the
same seed, once on the run's training labels as given and once with the review's current decisions
applied (relabels changed, removals dropped), and measures both on the run's test split. The model
that was explained is not one of them: its own accuracy (from ``fit``) is shown beside them, but only
the two retrained models differ by nothing but the labels.

``TRAIN`` is

* ``module:function`` or ``path/to/file.py:function``: ``function(X, y)`` (or ``function(X, y,
  seed=…)`` if it takes ``seed``) returns a fitted model: an ``nn.Module`` (its argmax output is the
  prediction) or a booster / scikit-learn tree ensemble that :class:`~representer.TreeEnsemble`
  wraps. ``X`` is what the run's model takes (images ``(N, C, H, W)`` float32, table rows, or the
  encoder's output for texts), ``y`` int64 class ids in the order of the run's classes;
* ``zoo``: the run's own ``build_model()`` trained from scratch by :func:`representer.zoo.train_classifier`
  (Adam, learning rate 3e-3, batches of 64, ``epochs``).

Python's, NumPy's and torch's random generators are seeded with ``seed`` before each training (and
restored afterwards). The SHA-256 of the training function's code files is recorded, as ``fit``
records the model's (``docs/cli.md``, *Trust*). The result goes to ``RUN/retrain.json`` and into
the report.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .._atomic import write_text
from ..errors import InputError, ModelError
from ..userrun import RETRAIN_FILE, select_rows
from .session import Review

ZOO = "zoo"
ZOO_LR, ZOO_BATCH = 3e-3, 64
RETRAIN_FORMAT = 1


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's generators; restore them afterwards."""
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _trainer(review: Review, train: str, epochs: int) -> tuple[Callable[[Any, np.ndarray, int], Any], dict[str, str]]:
    """``fit(X, y, seed) -> model`` for ``train``, and the SHA-256 of the code files it runs."""
    from ..usermodel import ModelSpec, _entry_point_files, _sha256, _user_code, build_network, load_entry_point

    info = review.run.info
    if train == ZOO:
        if not hasattr(review.run.model.adapter, "net"):
            raise InputError("`--train zoo` retrains the run's PyTorch network; for a tree model pass --train module:function "
                             "that fits a booster on (X, y).")
        source, search_path = info["model"]["source"], info["model"].get("search_path")

        def fit_zoo(X: Any, y: np.ndarray, seed: int) -> Any:
            from ..zoo import train_classifier

            with _user_code(f"`--train zoo`: {source}()"):
                net = build_network(source, search_path)
            return train_classifier(net, X, y, epochs=epochs, lr=ZOO_LR, batch_size=ZOO_BATCH, seed=seed)

        return fit_zoo, dict(info["model"].get("code") or {})
    spec = ModelSpec(train).resolved()
    code = {str(f): _sha256(f) for f in _entry_point_files(spec.source, spec.search_path, "--train")}
    function = load_entry_point(spec.source, spec.search_path, "--train")
    try:
        takes_seed = "seed" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_seed = False

    def fit_user(X: Any, y: np.ndarray, seed: int) -> Any:
        with _user_code(f"`--train`: {train}"):
            return function(X, y, seed=seed) if takes_seed else function(X, y)

    return fit_user, code


def _predict(model: Any, X: Any, train: str) -> np.ndarray:
    from torch import nn

    from ..models import as_adapter, predicted_class
    from ..zoo import predict_logits

    if isinstance(model, nn.Module):
        return predicted_class(predict_logits(model.eval(), X))
    try:
        return as_adapter(model).predict(X)
    except ModelError as exc:
        raise InputError(f"`--train` {train} returned a {type(model).__name__}; return a torch nn.Module or a booster "
                         "(XGBoost, LightGBM, scikit-learn gradient boosting).") from exc


def retrain_comparison(review: Review, train: str, *, seed: int = 0, epochs: int = 10,
                       steps: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Retrain before and after the review's corrections and write ``RUN/retrain.json`` (see the module docstring)."""
    data, info = review.run.data, review.run.info
    test = data.split("test")
    decisions = {i: d for i, d in review.store.current().items() if d.decision in ("relabel", "remove")}
    if not decisions:
        raise InputError(f"{review.folder} has no relabel or remove decisions yet; review some labels first "
                         f"(`representer review {review.folder}`).")
    fit, code = _trainer(review, train, epochs)
    y = data.train.y.copy()
    for i, d in decisions.items():
        if d.decision == "relabel":
            y[i] = d.new_label
    kept = np.array([i for i in range(len(y)) if decisions.get(i) is None or decisions[i].decision != "remove"], dtype=np.int64)
    model = review.run.model
    X_test = model.inputs(test.X)
    runs = {}
    for name, rows, labels in (("before", np.arange(len(y)), data.train.y), ("after", kept, y[kept])):
        steps(f"Training on the {'given' if name == 'before' else 'corrected'} labels ({len(rows)} points, seed {seed})")
        X = model.inputs(select_rows(data.train.X, rows))
        started = time.perf_counter()
        with _seeded(seed):
            fitted = fit(X, labels.copy(), seed)
        seconds = time.perf_counter() - started
        predicted = np.asarray(_predict(fitted, X_test, train)).astype(np.int64)
        if predicted.shape != test.y.shape:
            raise InputError(f"`--train` {train}: the model predicts {predicted.shape} classes for {test.y.shape[0]} test points.")
        runs[name] = {"n_train": int(len(rows)), "test_accuracy": float((predicted == test.y).mean()),
                      "train_seconds": round(seconds, 2), "predicted": predicted}
    digest = hashlib.sha256(json.dumps([d.to_dict(review.classes) for d in decisions.values()], sort_keys=True).encode()).hexdigest()
    record = {
        "format_version": RETRAIN_FORMAT,
        "train": train,
        "code": code,
        "epochs": epochs if train == ZOO else None,
        "seed": seed,
        "relabelled": sum(d.decision == "relabel" for d in decisions.values()),
        "removed": sum(d.decision == "remove" for d in decisions.values()),
        "decisions_sha256": digest,
        "n_test": int(test.y.shape[0]),
        "fitted_model_test_accuracy": info["accuracy"].get("test"),
        "before": {k: v for k, v in runs["before"].items() if k != "predicted"},
        "after": {k: v for k, v in runs["after"].items() if k != "predicted"},
        "changed_test_predictions": int((runs["before"]["predicted"] != runs["after"]["predicted"]).sum()),
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_text(review.folder / RETRAIN_FILE, json.dumps(record, indent=2))
    return record

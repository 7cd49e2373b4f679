"""The end-to-end demo behind ``representer demo``: explain a CNN and find its flipped labels.

1. Load the Fashion-MNIST subset shipped with the package (3,000 train / 1,000 test images).
2. Flip a fraction of the training labels (seeded, :func:`~representer.evaluation.corruption.flip_labels`).
3. Train :class:`~representer.zoo.SmallCNN` on the noisy labels with the seeded training loop
   (Adam, learning rate 3e-3, batches of 64), recording checkpoints on the log schedule with
   :class:`~representer.CheckpointRecorder` (into ``OUT/checkpoints``).
4. Fit :class:`~representer.RPSL2` on the training set (with test-set fidelity in ``fit_report_``).
5. Explain a few test images (target: the predicted class), correct and misclassified ones.
6. Rank training labels with :func:`~representer.find_label_issues` on the network and its
   checkpoints (``method="auto"``: the list shown in the report, with the route and its reason);
   compare with the other routes of a model (its final loss, head influence self-influence,
   RPS-L2's Eq. (3) student), DualView's cumulative attribution of RPS-L2 over the test set, and a
   random inspection order.
7. Show where in the images two of the explanations come from: captum's LRP of each RPS-L2 pair score
   on the test and on the training image (the DualView × LRP view, seeded with RPS-L2's α; skipped
   without the ``attribution`` extra).
8. Write ``report.html`` (self-contained) and ``summary.json`` into the output folder.

``quick=True`` runs the same pipeline on 600 training and 200 test images for one epoch (for tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from ._atomic import write_text
from .datasets import TrainTestSplit, load_fashion_mnist_subset
from .checkpoints import CheckpointRecorder
from .debugging import LabelIssues, cumulative_attribution, find_label_issues
from .errors import InputError
from .evaluation.corruption import flip_labels
from .evaluation.metrics import (
    corruption_mask,
    detection_curve,
    fraction_found_at,
    label_poisoning_auc,
    rank_by_score,
    roc_auc,
)
from .explanation import Explanation
from .methods import RPSL2, InfluenceFunction
from .models import TorchClassifier
from .report import ImageRenderer, Report
from .zoo import SmallCNN, predict_logits, train_classifier

DEFAULT_EPOCHS = 6
LEARNING_RATE = 3e-3
BATCH_SIZE = 64
CHECKPOINTS = (0.05, 0.10, 0.20)
AUTO = "find_label_issues (auto: {method})"
INFLUENCE = "influence self-influence"
SELF_INFLUENCE = "RPS-L2 |α_i,y_i| (Eq. 3 student)"
CUMULATIVE = "RPS-L2 cumulative |attribution|"
LOSS = "model loss on given label"
RANDOM = "random (expected)"
QUICK_SIZES = (600, 200)
N_EXPLAINED = 4
TOP_K = 6
#: Explained test points (rows of the explanation) with LRP heat-maps, and pairs per sign shown for each.
HEATMAP_ROWS = (0, N_EXPLAINED - 1)
HEATMAP_K = 3


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and the numbers of ``summary.json``."""

    report: Path
    summary_path: Path
    summary: dict[str, Any]


def _subsample(data: TrainTestSplit, n_train: int, n_test: int, seed: int) -> TrainTestSplit:
    rng = np.random.default_rng(seed)
    train = np.sort(rng.permutation(len(data.y_train))[:n_train])
    test = np.sort(rng.permutation(len(data.y_test))[:n_test])
    return TrainTestSplit(
        data.X_train[train], data.y_train[train], data.X_test[test], data.y_test[test],
        data.class_names, data.name + f" ({n_train}/{n_test})", dict(data.meta),
    )


def _train(X: np.ndarray, y: np.ndarray, n_classes: int, epochs: int, seed: int, recorder: CheckpointRecorder) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SmallCNN(n_classes=n_classes)
    return train_classifier(net, X, y, epochs=epochs, lr=LEARNING_RATE, batch_size=BATCH_SIZE, seed=seed, recorder=recorder)


def _pick_test_points(pred: np.ndarray, y_test: np.ndarray, seed: int) -> np.ndarray:
    """Half correctly and half wrongly predicted test points (fewer wrong ones if there are none)."""
    order = np.random.default_rng(seed).permutation(len(y_test))
    wrong = [int(t) for t in order if pred[t] != y_test[t]][: N_EXPLAINED // 2]
    right = [int(t) for t in order if pred[t] == y_test[t]][: N_EXPLAINED - len(wrong)]
    return np.array(right + wrong, dtype=np.int64)


def _scores_in_index_order(issues: LabelIssues) -> np.ndarray:
    """A score per training index that orders points as ``issues`` does (its rank, negated: ties stay broken)."""
    order = np.empty(len(issues))
    order[issues.indices] = -np.arange(len(issues), dtype=np.float64)
    return order


def _given_label_loss(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of the model's prediction against the given (possibly flipped) label, ``(n,)``."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    return torch.nn.functional.cross_entropy(z, torch.as_tensor(y), reduction="none").numpy()


def _detection_summary(scores: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per ranking: fraction of flips found at each checkpoint, DualView's score and ROC AUC.

    The random row is the expectation over random orders: ``⌊f·n⌋/n`` found, ROC AUC 0.5 and
    label-poisoning score ``(n+1−m)/(2n+1−2m)`` (the expected curve is ``E curve[k] = (k+1)/n``).
    """
    n, m = mask.size, int(mask.sum())
    rows: dict[str, dict[str, Any]] = {}
    for name, values in scores.items():
        order = rank_by_score(values)
        rows[name] = {
            "found_at": {f"{f:.2f}": fraction_found_at(order, mask, f) for f in CHECKPOINTS},
            "label_poisoning_auc": label_poisoning_auc(values, mask),
            "roc_auc": roc_auc(values, mask),
        }
    rows[RANDOM] = {
        "found_at": {f"{f:.2f}": float(np.floor(f * n + 1e-9) / n) for f in CHECKPOINTS},
        "label_poisoning_auc": (n + 1 - m) / (2 * n + 1 - 2 * m),
        "roc_auc": 0.5,
    }
    return rows


@dataclass
class _Run:
    """Everything the report needs from one demo run."""

    data: TrainTestSplit
    y_noisy: np.ndarray
    flipped: np.ndarray
    train_pred: np.ndarray
    explainer: RPSL2
    explanation: Explanation
    explained_rows: np.ndarray
    issues: LabelIssues
    scores: dict[str, np.ndarray]
    summary: dict[str, Any]
    heatmaps: list[Any]
    heatmap_rows: list[int]


def run_demo(
    out_dir: str | Path = "representer-demo",
    *,
    seed: int = 0,
    flip: float = 0.1,
    epochs: int | None = None,
    quick: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo and write ``report.html`` and ``summary.json`` into ``out_dir``.

    ``epochs`` defaults to 6 (1 with ``quick``). ``on_step(message)`` is called as each step starts;
    ``summary["seconds"]`` records the wall time of each step.
    """
    step = on_step or (lambda message: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    epochs = (1 if quick else DEFAULT_EPOCHS) if epochs is None else int(epochs)
    step("Loading the bundled Fashion-MNIST subset")
    data = load_fashion_mnist_subset()
    if quick:
        data = _subsample(data, *QUICK_SIZES, seed=seed)
    y_noisy, flipped = flip_labels(data.y_train, flip, data.n_classes, seed=seed)
    if flipped.size == 0:
        raise InputError(f"`flip`={flip} flips no label of {len(y_noisy)}; pass a fraction of at least {1 / len(y_noisy):.4f}.")
    mask = corruption_mask(flipped, len(y_noisy))
    lap("load_and_flip")

    step(f"Training SmallCNN for {epochs} epoch{'s' * (epochs != 1)} on {len(y_noisy)} images ({len(flipped)} labels flipped)")
    out = Path(out_dir)
    checkpoints = out / "checkpoints"
    net = _train(data.X_train, y_noisy, data.n_classes, epochs, seed, CheckpointRecorder(checkpoints, overwrite=True))
    test_pred = predict_logits(net, data.X_test).argmax(1)
    train_logits = predict_logits(net, data.X_train)
    train_pred = train_logits.argmax(1)
    lap("train")

    step("Fitting RPS-L2 on the training features")
    explainer = RPSL2(TorchClassifier(net)).fit(data.X_train, y_noisy, eval_X=data.X_test)
    lap("fit_rps_l2")

    step("Explaining test images and ranking suspicious training labels")
    rows = _pick_test_points(test_pred, data.y_test, seed)
    explanation = explainer.explain(data.X_test[rows], top_k=TOP_K, target="predicted")
    issues = find_label_issues(net, data.X_train, y_noisy, checkpoints=checkpoints)
    influence = InfluenceFunction(explainer.model_, hessian="exact").fit(data.X_train, y_noisy)
    scores = {
        AUTO.format(method=issues.method): _scores_in_index_order(issues),
        INFLUENCE: influence.self_influence(),
        SELF_INFLUENCE: RPSL2(explainer.model_, refit="labels").fit(data.X_train, y_noisy).self_influence(),
        CUMULATIVE: cumulative_attribution(explainer, data.X_test),
        LOSS: _given_label_loss(train_logits, y_noisy),
    }
    lap("explain_and_rank")

    heatmap_rows = sorted({r for r in HEATMAP_ROWS if r < len(rows)}) if find_spec("captum") else []
    if heatmap_rows:
        step("Propagating pair scores to the pixels with LRP")
    heatmaps = [_pair_heatmaps(explainer, explanation, data, rows, r) for r in heatmap_rows]
    lap("heatmaps")

    step("Writing the HTML report")
    summary = {
        "representer": __version__,
        "dataset": data.name,
        "n_train": int(len(y_noisy)),
        "n_test": int(len(data.y_test)),
        "seed": int(seed),
        "flip_fraction": float(flip),
        "n_flipped": int(len(flipped)),
        "epochs": epochs,
        "quick": bool(quick),
        "accuracy": {
            "test": float((test_pred == data.y_test).mean()),
            "train_vs_given_labels": float((train_pred == y_noisy).mean()),
            "train_vs_clean_labels": float((train_pred == data.y_train).mean()),
            "flipped_points_fitted": float((train_pred[flipped] == y_noisy[flipped]).mean()),
        },
        "fidelity": {"train": explainer.fit_report_["train"], "test": explainer.fit_report_["eval"]},
        "label_issues": {"method": issues.method, "reason": issues.reason, "caveat": issues.caveat,
                         "checkpoints": issues.details.get("epochs")},
        "detection": _detection_summary(scores, mask),
    }
    run = _Run(data, y_noisy, flipped, train_pred, explainer, explanation, rows, issues, scores, summary, heatmaps, heatmap_rows)
    report_path = _build_report(run).write(out / "report.html")
    lap("report")
    summary["seconds"] = timings
    summary["report"] = report_path.name
    summary_path = out / "summary.json"
    write_text(summary_path, json.dumps(summary, indent=2))
    return DemoResult(report=report_path, summary_path=summary_path, summary=summary)


def _pair_heatmaps(explainer: RPSL2, explanation: Explanation, data: TrainTestSplit, rows: np.ndarray, row: int) -> Any:
    """LRP heat-maps of the top :data:`HEATMAP_K` excitatory and inhibitory pairs of explanation row ``row``."""
    from .attribution import lrp_pair_relevance

    t = int(rows[row])
    pairs = np.concatenate([explanation.excitatory.indices[row, :HEATMAP_K], explanation.inhibitory.indices[row, :HEATMAP_K]])
    return lrp_pair_relevance(explainer, data.X_test[t : t + 1], data.X_train, pairs, target=int(explanation.target[row]))


def _percent(value: float) -> str:
    return f"{100 * value:.1f}\u00a0%"


_NOTE = """The list below is what find_label_issues gives for the network and the checkpoints recorded while it \
trained (route {method}): {reason}.{caveat} A network trained until it fits its labels fits the flipped ones too, and \
every ranking read off its final weights (its loss on the given label, influence self-influence g_iᵀH⁻¹g_i, RPS-L2's \
|α_i,y_i| of an L2 student fitted to the given labels) then finds little more than that loss; the checkpoints keep \
the epochs before memorisation. Here the network predicts {fitted} of the flipped points with their flipped label. \
RPS-L2's cumulative |attribution| over the test set is DualView's label-poisoning score. docs/label_issues.md has the \
benchmark behind the route, side by side with cleanlab."""


def _build_report(run: _Run) -> Report:
    summary, data = run.summary, run.data
    acc = summary["accuracy"]
    report = Report(
        "representer demo: flipped labels in Fashion-MNIST",
        subtitle=(
            f"{summary['n_flipped']} of {summary['n_train']} training labels ({_percent(summary['flip_fraction'])}) were "
            f"flipped to another class (seed {summary['seed']}); a SmallCNN was trained on the noisy labels for "
            f"{summary['epochs']} epoch{'s' * (summary['epochs'] != 1)} (test accuracy {_percent(acc['test'])}) and "
            "explained with RPS-L2."
        ),
    )
    table = [
        {
            "ranking": name,
            **{f"found at {100 * float(f):.0f}\u00a0% inspected": _percent(v) for f, v in row["found_at"].items()},
            "label-poisoning score": row["label_poisoning_auc"],
            "ROC AUC": row["roc_auc"],
        }
        for name, row in summary["detection"].items()
    ]
    report.add_table(
        table,
        title="Finding the flipped labels",
        caption="Share of the flipped labels among the first 5/10/20 % of training points in each order; "
        "label-poisoning score as in DualView (1 = all flipped labels first, 0.5 = random).",
    )
    mask = corruption_mask(run.flipped, len(run.y_noisy))
    curves = {name: detection_curve(rank_by_score(values), mask) for name, values in run.scores.items()}
    report.add_curve(curves, title="Detection curve")
    chosen = summary["label_issues"]
    caveat = f" Caveat: {chosen['caveat']}." if chosen["caveat"] else ""
    report.add_text(_NOTE.format(method=chosen["method"], reason=chosen["reason"], caveat=caveat,
                                 fitted=_percent(acc["flipped_points_fitted"])), title="Reading these rankings")
    train_images = ImageRenderer(data.X_train, vmin=0.0, vmax=1.0)
    report.add_label_issues(
        run.issues, renderer=train_images, predictions=run.train_pred, flipped=run.flipped,
        original_labels=data.y_train, class_names=data.class_names,
        title=f"Most suspicious training labels (find_label_issues: {run.issues.method})",
    )
    report.add_explanations(
        run.explanation, test_items=ImageRenderer(data.X_test, vmin=0.0, vmax=1.0), train_items=train_images,
        train_labels=run.y_noisy, test_indices=run.explained_rows, test_labels=data.y_test, flipped=run.flipped,
        class_names=data.class_names, title="Why the model predicts what it predicts",
    )
    if run.heatmaps:
        report.add_heatmaps(
            run.heatmaps, test_items=ImageRenderer(data.X_test, vmin=0.0, vmax=1.0), train_items=train_images,
            test_indices=run.explained_rows[run.heatmap_rows], train_labels=run.y_noisy, test_labels=data.y_test,
            flipped=run.flipped, class_names=data.class_names, title="Where in the images: LRP of the pair scores",
            caption="captum's LRP (ε-rule) of each RPS-L2 pair score α_ic ⟨φ̃(x_i), φ̃(x_t)⟩, split over the penultimate "
            "features (the constant α_ic of the bias stays unattributed), on the test image ('on test') and on the "
            "training image ('on train'), as in DualView × LRP. "
            "Red: pixels that raise the score, blue: pixels that lower it; each map is scaled to its own largest "
            "absolute value.",
        )
    report.add_table(run.explainer.fit_report_, title="RPS-L2 fit", caption=repr(run.explainer))
    report.add_table(
        {"accuracy": acc, "n_train": summary["n_train"], "n_test": summary["n_test"], "epochs": summary["epochs"]},
        title="Model",
    )
    return report

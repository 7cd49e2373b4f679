"""The text setting end to end: a Bi-LSTM on Rotten Tomatoes explained by RPS-L2 and RPS-LJE.

The RPS-LJE paper's text experiment (spec §3.8) is a Bi-LSTM on IMDB with
``φ = [h_forward_last ; h_backward_last]`` of the top layer and a bias-free linear head. IMDB and
GloVe are not available offline, so this setting uses the Rotten Tomatoes review snippets
(:func:`~representer.datasets.load_rotten_tomatoes`; 12,808 one-sentence reviews, 1 = fresh) with
a smaller, randomly initialised :class:`~representer.zoo.BiLSTMClassifier`:

1. Split (stratified, seeded, 80 / 20), optionally subsample, then build the :class:`Vocabulary`
   from the **training texts only** and encode both splits with it (test words unseen in training
   become ``<unk>``).
2. Flip a seeded fraction of the training labels (``flip_fraction``; the paper's IMDB debugging
   runs used 0.2) and train the Bi-LSTM on the noisy labels (Adam, a few epochs, seeded).
   Test accuracy is measured on the clean test labels.
3. Fit :class:`~representer.RPSL2` (λ) and :class:`~representer.RPSLJE` (γ) through a
   :class:`~representer.TorchClassifier` on the dict batches, plus head influence (exact Hessian)
   and a random ranking as data-debugging baselines.
4. Measure: RPS-L2 fidelity (Pearson of the teacher's and the reconstruction's probabilities,
   spec §2.6) on train and test; LJE faithfulness (``Σ_i W_i x_t`` against the model's logits,
   and the Newton identity ``Σ_i W_i = Θ* − H⁻¹ḡ(Θ*)``); how often the top-``k`` excitatory
   training reviews carry the explained (predicted) class as their label, against the chance rate
   ``Σ_t freq(ĉ_t)/m``; and label-issue detection of the flipped labels by self-influence
   (DualView's normalised AUC and ROC AUC; random ≈ 0.5).
5. Write ``report.html`` (reviews shown as snippets with both signs and scores, the
   found-vs-inspected curve, the most suspicious training reviews) and ``results.json``.

Sign convention: positive = excitatory (raises the explained class's logit); every explanation is
for the model's predicted class.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import write_text
from ..datasets import load_rotten_tomatoes
from ..datasets.text import Vocabulary
from ..debugging import find_label_issues
from ..errors import InputError
from ..explanation import Explanation
from ..methods import RPSL2, RPSLJE, Explainer, InfluenceFunction, RandomAttribution
from ..models import TorchClassifier
from ..zoo import BiLSTMClassifier, train_classifier
from .corruption import flip_labels
from .metrics import DetectionCurve, corruption_mask, detection_curve, label_poisoning_auc, rank_by_score, roc_auc

CLASS_NAMES: tuple[str, str] = ("rotten", "fresh")


@dataclass(frozen=True)
class TextSettingConfig:
    """Everything that determines the run (recorded in ``results.json``).

    ``n_train`` / ``n_test``: seeded subsamples of the 10,246 / 2,562 split (``None`` = all).
    ``lam``: RPS-L2's λ; ``gamma``: LJE's ascent step; ``damping``: head-IF damping.
    ``n_explained``: test reviews shown in the report; ``top_k``: training reviews per sign.
    """

    n_train: int | None = None
    n_test: int | None = None
    max_length: int = 40
    min_count: int = 2
    embed_dim: int = 64
    hidden: int = 32
    epochs: int = 3
    lr: float = 5e-3
    batch_size: int = 128
    flip_fraction: float = 0.2
    lam: float = 3e-3
    gamma: float = 0.01
    damping: float = 1e-3
    top_k: int = 5
    n_explained: int = 6
    seed: int = 0


QUICK_TEXT = TextSettingConfig(n_train=2000, n_test=500, epochs=3)


@dataclass
class TextData:
    """Encoded splits plus the raw texts the report shows."""

    X_train: dict[str, np.ndarray]
    y_train: np.ndarray
    X_test: dict[str, np.ndarray]
    y_test: np.ndarray
    texts_train: list[str]
    texts_test: list[str]
    vocabulary: Vocabulary


def load_text_data(config: TextSettingConfig) -> TextData:
    """Seeded split and subsample; the vocabulary is built from the kept training texts only."""
    split = load_rotten_tomatoes(seed=config.seed, max_length=config.max_length)
    rng = np.random.default_rng(config.seed)
    texts_train, texts_test = split.meta["texts_train"], split.meta["texts_test"]

    def rows(n_all: int, n: int | None) -> np.ndarray:
        if n is not None and not 1 <= int(n) <= n_all:
            raise InputError(f"subsample sizes must lie in [1, {n_all}] or be None; got {n}.")
        return np.sort(rng.permutation(n_all)[: int(n)]) if n else np.arange(n_all)

    train_rows, test_rows = rows(len(texts_train), config.n_train), rows(len(texts_test), config.n_test)
    kept_train = [texts_train[i] for i in train_rows]
    kept_test = [texts_test[i] for i in test_rows]
    vocabulary = Vocabulary.build(kept_train, min_count=config.min_count)
    return TextData(
        vocabulary.encode(kept_train, max_length=config.max_length), split.y_train[train_rows],
        vocabulary.encode(kept_test, max_length=config.max_length), split.y_test[test_rows],
        kept_train, kept_test, vocabulary,
    )


def train_bilstm(data: TextData, labels: np.ndarray, config: TextSettingConfig) -> BiLSTMClassifier:
    """A seeded :class:`BiLSTMClassifier` (bias-free head, as in RPS-LJE) trained on ``labels``."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = BiLSTMClassifier(len(data.vocabulary), embed_dim=config.embed_dim, hidden=config.hidden, n_classes=2)
    return train_classifier(net, data.X_train, labels, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, seed=config.seed)


def same_label_rate(explanation: Explanation, y_train: np.ndarray, k: int) -> tuple[float, float]:
    """How often the top-``k`` excitatory training points carry the explained class, and the chance rate.

    Returns ``(rate, chance)`` with ``rate = mean_{t, j≤k} [y_train[top_j(t)] == c_t]`` and
    ``chance = mean_t freq(c_t)`` (what ``k`` training points drawn at random would give).
    """
    top = explanation.excitatory.indices[:, :k]
    target = np.asarray(explanation.target)
    rate = float(np.mean(y_train[top] == target[:, None]))
    freq = np.bincount(y_train, minlength=int(target.max()) + 1) / y_train.size
    return rate, float(np.mean(freq[target]))


def _showcase_rows(predicted: np.ndarray, y_test: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Test rows to show: correctly classified reviews of each class, then misclassified ones (seeded)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(y_test.size)
    correct = predicted[order] == y_test[order]
    groups = [order[correct & (predicted[order] == c)] for c in (1, 0)] + [order[~correct]]
    quota = [max(1, (n - 1) // 2), max(1, (n - 1) // 2), max(0, n - 2 * max(1, (n - 1) // 2))]
    chosen = [g[:q] for g, q in zip(groups, quota)]
    picked = np.concatenate(chosen).astype(np.int64)
    if picked.size < n:
        rest = np.setdiff1d(order, picked, assume_unique=True)
        picked = np.concatenate([picked, rest[: n - picked.size]])
    return picked[:n]


@dataclass
class TextRun:
    """Everything one run produced: data, noisy labels, the trained network, the fitted explainers.

    ``results`` is the JSON-ready summary :func:`run_text_setting` writes; ``shown`` the test rows
    the report explains; ``curves`` the detection curves (empty without flipped labels).
    """

    data: TextData
    y_train: np.ndarray
    flipped: np.ndarray
    net: BiLSTMClassifier
    classifier: TorchClassifier
    explainers: dict[str, Explainer]
    explanations: dict[str, Explanation]
    shown: np.ndarray
    curves: dict[str, DetectionCurve]
    results: dict[str, Any]


def fit_text_setting(config: TextSettingConfig = TextSettingConfig(), *, show_progress: bool = False) -> TextRun:
    """Steps 1–4 of the module docstring, without writing anything."""
    if not 0.0 <= config.flip_fraction < 0.5:
        raise InputError(f"`flip_fraction` must lie in [0, 0.5); got {config.flip_fraction}.")
    started = time.perf_counter()
    data = load_text_data(config)
    y_clean = data.y_train
    if config.flip_fraction > 0:
        y_train, flipped = flip_labels(y_clean, config.flip_fraction, 2, seed=config.seed)
    else:
        y_train, flipped = y_clean.copy(), np.zeros(0, dtype=np.int64)

    t0 = time.perf_counter()
    net = train_bilstm(data, y_train, config)
    train_seconds = time.perf_counter() - t0
    clf = TorchClassifier(net, progress=show_progress)
    pred_train = clf.predict(data.X_train)
    pred_test = clf.predict(data.X_test)

    t0 = time.perf_counter()
    rps = RPSL2(clf, lam=config.lam).fit(data.X_train, y_train, eval_X=data.X_test)
    lje = RPSLJE(clf, gamma=config.gamma).fit(data.X_train, y_train, eval_X=data.X_test)
    fit_seconds = time.perf_counter() - t0
    explainers: dict[str, Explainer] = {"RPS-L2": rps, "RPS-LJE": lje}
    explanations = {name: ex.explain(data.X_test, top_k=config.top_k) for name, ex in explainers.items()}
    same_label = {}
    for name, exp in explanations.items():
        rate, chance = same_label_rate(exp, y_train, config.top_k)
        same_label[name] = {"rate": rate, "chance": chance}

    label_issues: dict[str, dict[str, float]] = {}
    curves: dict[str, DetectionCurve] = {}
    if flipped.size:
        mask = corruption_mask(flipped, y_clean.size)
        debuggers: dict[str, Explainer] = {
            **explainers,
            "IF": InfluenceFunction(clf, hessian="exact", damping=config.damping).fit(data.X_train, y_train),
            "RAND": RandomAttribution(clf, seed=config.seed).fit(data.X_train, y_train),
        }
        for name, ex in debuggers.items():
            scores = ex.self_influence()
            curves[name] = detection_curve(rank_by_score(scores), mask)
            label_issues[name] = {
                "label_poisoning_auc": label_poisoning_auc(scores, mask),
                "roc_auc": roc_auc(scores, mask),
                "found_at_10pct": float(detection_curve(rank_by_score(scores), mask, [0.1]).found[0]),
                "found_at_20pct": float(detection_curve(rank_by_score(scores), mask, [0.2]).found[0]),
            }

    shown = _showcase_rows(pred_test, data.y_test, config.n_explained, config.seed)
    results: dict[str, Any] = {
        "setting": "text",
        "config": asdict(config),
        "data": {
            "dataset": "rotten-tomatoes",
            "n_train": int(y_clean.size),
            "n_test": int(data.y_test.size),
            "vocabulary_size": len(data.vocabulary),
            "n_flipped": int(flipped.size),
            "flipped": flipped.tolist(),
        },
        "model": {
            "architecture": f"BiLSTM(embed {config.embed_dim}, hidden {config.hidden}, 1 layer) + Linear({2 * config.hidden}, 2, bias=False)",
            "test_accuracy": float(np.mean(pred_test == data.y_test)),
            "train_accuracy_noisy_labels": float(np.mean(pred_train == y_train)),
            "train_accuracy_clean_labels": float(np.mean(pred_train == y_clean)),
            "train_seconds": train_seconds,
            "explainer_fit_seconds": fit_seconds,
        },
        "rps_l2": rps.fit_report_,
        "rps_lje": lje.fit_report_,
        "same_label": same_label,
        "label_issues": label_issues,
        "explained": {
            "test_rows": shown.tolist(),
            **{name: exp.excitatory.indices[shown].tolist() for name, exp in explanations.items()},
        },
    }
    results["seconds"] = time.perf_counter() - started
    return TextRun(data, y_train, flipped, net, clf, explainers, explanations, shown, curves, results)


def run_text_setting(
    out_dir: str | Path = "representer-text",
    config: TextSettingConfig = TextSettingConfig(),
    *,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Train, explain and report the Bi-LSTM / Rotten Tomatoes setting (module docstring).

    Writes ``report.html`` and ``results.json`` into ``out_dir`` and returns the results dict:
    ``config``, ``data`` (sizes, vocabulary, flipped indices), ``model`` (accuracies, seconds),
    ``rps_l2`` (fit report with train / test fidelity), ``rps_lje`` (fit report with test
    faithfulness), ``same_label`` (rate and chance per method), ``label_issues`` (AUCs per method,
    when labels were flipped), ``explained`` (test rows and their top training indices), ``seconds``.
    """
    run = fit_text_setting(config, show_progress=show_progress)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_report(run, folder / "report.html")
    write_text(folder / "results.json", json.dumps(run.results, indent=2, default=float))
    return run.results


def write_text_report(run: TextRun, path: str | Path) -> Path:
    """The self-contained ``report.html`` of a run: setup and fidelity, explanations as review snippets, label issues."""
    from ..report import Report, TextRenderer

    out, data, y_train, flipped, shown = run.results, run.data, run.y_train, run.flipped, run.shown
    pred_train = run.classifier.predict(data.X_train)
    model, cfg = out["model"], out["config"]
    report = Report(
        "Bi-LSTM on Rotten Tomatoes: RPS-L2 and RPS-LJE",
        subtitle=(
            f"{out['data']['n_train']} training / {out['data']['n_test']} test reviews, vocabulary of "
            f"{out['data']['vocabulary_size']} tokens from the training texts; "
            f"{out['data']['n_flipped']} training labels flipped on purpose; test accuracy {model['test_accuracy']:.3f}."
        ),
    )
    report.add_table(
        {
            "model": model["architecture"],
            "φ": "last forward and last backward hidden states of the top layer (as RPS-LJE)",
            "training": f"Adam lr {cfg['lr']}, {cfg['epochs']} epochs, batch {cfg['batch_size']}, seed {cfg['seed']}",
            "test accuracy (clean labels)": model["test_accuracy"],
            "train accuracy (noisy labels)": model["train_accuracy_noisy_labels"],
            "RPS-L2 fidelity, Pearson (train)": out["rps_l2"]["train"]["pearson"],
            "RPS-L2 fidelity, Pearson (test)": out["rps_l2"]["eval"]["pearson"],
            "RPS-LJE max |logit error| (test)": out["rps_lje"]["eval"]["max_logit_error_vs_model"],
            "RPS-LJE prediction agreement (test)": out["rps_lje"]["eval"]["prediction_agreement"],
            **{f"{m}: top-{cfg['top_k']} share the explained class": f"{v['rate']:.3f} (chance {v['chance']:.3f})" for m, v in out["same_label"].items()},
        },
        title="Setup and fidelity",
    )
    train_items, test_items = TextRenderer(data.texts_train), TextRenderer(data.texts_test)
    for name, exp in run.explanations.items():
        report.add_explanations(
            exp, test_items=test_items, train_items=train_items, train_labels=y_train, test_labels=data.y_test,
            rows=shown.tolist(), flipped=flipped, class_names=CLASS_NAMES, title=f"{name} explanations", wide=True,
        )
    if run.curves:
        report.add_curve(run.curves, title="Finding the flipped labels")
        report.add_table(
            [{"method": m, **v} for m, v in out["label_issues"].items()],
            title="Label-issue detection by self-influence",
            caption="label_poisoning_auc: DualView's normalised area (random ≈ 0.5); found_at: share of flipped labels found.",
        )
        for name in ("RPS-L2", "RPS-LJE"):
            report.add_label_issues(
                find_label_issues(run.explainers[name], top=12), renderer=train_items, predictions=pred_train, flipped=flipped,
                original_labels=data.y_train, class_names=CLASS_NAMES, top=12, title=f"Suspicious training labels ({name})", wide=True,
            )
    for name, key in (("RPS-L2", "rps_l2"), ("RPS-LJE", "rps_lje")):
        report.add_table(out[key], title=f"{name} fit report")
    return report.write(path)

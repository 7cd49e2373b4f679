"""Domain mismatch against saturation: how confident the marked model is on its marked images decides RPS-L2's score.

The DualView suite's ``mark`` setting (class 2 marked with probability 0.3; see
``representer.evaluation.benchmark``) is trained for two lengths (default 4 and 15 epochs, the quick
and the full suite's recipes), and for each model this prints

* its mean probability of class 2 on the marked training images (the *teacher's* confidence that
  RPS-L2's Eq. (4) refit copies) and on the unmarked class-2 images;
* RPS-L2's mean ``|α_{i,2}|`` on the marked images and on the unmarked class-2 images: for a
  training point the refit fits well, ``α_{i,2} = (q_{i,2} − p_{i,2}) / (2λn)`` is the small gap between
  the teacher's and the student's probability, which vanishes as both approach 1;
* the domain-mismatch score of RPS-L2, DV, IF and SIM (the share of candidates — non-class-2 test
  images with the mark that the model calls class 2 — whose top training point is marked).

Run (one torch thread; models cached with ``--cache-dir``; prints a Markdown table)::

    python benchmarks/domain_mismatch_saturation.py --dataset fashion_mnist_subset mnist_subset --seeds 0 1 2 --cache-dir bench-cache
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from representer.evaluation.benchmark import build_setting, plan_suite, setting_metrics, suite_config
from representer.methods import RPSL2

METHODS = ("RPS-L2", "DV", "IF", "SIM")


def one_model(dataset: str, epochs: int, seed: int, cache_dir: Path | None) -> dict[str, float]:
    plan = plan_suite(dataset, replace(suite_config("small_cnn", seed=seed), epochs=epochs))
    setting = build_setting(plan, "mark", cache_dir)
    cls = plan.config.mark_cls
    alpha = np.abs(RPSL2(setting.head, lam=3e-3).fit(setting.phi_train, setting.y_train).alpha_[:, cls])
    unmarked = np.setdiff1d(np.flatnonzero(setting.y_train == cls), plan.marked)
    row = {
        "test_accuracy": setting.report["test_accuracy"],
        "n_candidates": setting.report["n_candidates"],
        "marked_confidence": setting.report["marked_confidence"],
        "unmarked_class_confidence": setting.report["unmarked_class_confidence"],
        "alpha_marked": float(alpha[plan.marked].mean()),
        "alpha_unmarked": float(alpha[unmarked].mean()),
    }
    for method in METHODS:
        row[method] = setting_metrics(plan, setting, method)["domain_mismatch"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", nargs="+", default=["fashion_mnist_subset", "mnist_subset"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[4, 15])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    columns = ("test_accuracy", "n_candidates", "marked_confidence", "unmarked_class_confidence", "alpha_marked", "alpha_unmarked") + METHODS
    titles = ("test acc. (marked)", "candidates", "p(2|x) marked", "p(2|x) unmarked class 2", "RPS-L2 |α_i2| marked",
              "|α_i2| unmarked class 2") + tuple(f"DM {m}" for m in METHODS)
    lines = ["| data | epochs | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(columns)]
    for dataset in args.dataset:
        for epochs in args.epochs:
            rows = [one_model(dataset, epochs, seed, args.cache_dir) for seed in args.seeds]
            cells = []
            for column in columns:
                values = np.array([r[column] for r in rows], dtype=np.float64)
                fmt = ".0f" if column == "n_candidates" else (".2e" if column.startswith("alpha") else ".3f")
                cells.append(f"{values.mean():{fmt}}" + (f" ± {values.std():{fmt}}" if len(rows) > 1 else ""))
            lines.append(f"| {dataset} | {epochs} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    print(f"\nseeds {args.seeds} (mean ± std)\n\n" + "\n".join(lines) + f"\n\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

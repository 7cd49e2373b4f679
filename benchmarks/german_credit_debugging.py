"""German Credit data debugging with XGBoost: the RPS-LJE paper's experiment (§5.3; spec §3.7, §3.9–§3.11).

A thin wrapper around :mod:`representer.evaluation.german_credit` (protocol, methods and tables are
documented there; ``representer bench --suite lje`` runs the same code into a results folder).

Run (7 minutes wall on 2 cores shared with other jobs, load average ≈ 10)::

    python benchmarks/german_credit_debugging.py --repeats 10 --jobs 2

Each repeat draws its own 800 / 200 split (seed = repeat; ``--fixed-split``: the reference split for
all). It prints three Markdown tables (mean ± std over repeats; the paired differences to random with
their standard errors and the test points that would resolve the paper's effect) and writes
``docs/img/german_credit_fraction_found.png`` and ``docs/img/german_credit_test_accuracy.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from representer.evaluation.german_credit import FRACTIONS, markdown_tables, plot_curves, power_table, run_repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="repeats run in parallel processes (XGBoost uses 1 thread each)")
    parser.add_argument("--smote", action="store_true", help="seeded SMOTE on the training set (needs imbalanced-learn)")
    parser.add_argument("--fixed-split", action="store_true", help="the reference split (seed 1) for every repeat")
    parser.add_argument("--img-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    args = parser.parse_args()
    if args.smote:
        import importlib.util

        if importlib.util.find_spec("imblearn") is None:
            parser.error("--smote needs imbalanced-learn: pip install imbalanced-learn")
    start = time.perf_counter()
    results = run_repeats(args.repeats, smote=args.smote, fractions=FRACTIONS, jobs=args.jobs, random_splits=not args.fixed_split)
    print(markdown_tables(results, FRACTIONS))
    print("\n" + power_table(results))
    for path in plot_curves(results, args.img_dir, FRACTIONS):
        print(f"\nwrote {path}")
    print(f"\n{args.repeats} repeats in {time.perf_counter() - start:.0f} s wall ({np.mean([r['seconds'] for r in results]):.0f} s per repeat)")


if __name__ == "__main__":
    main()

"""The quick ``lje`` suite (German Credit data debugging with XGBoost, 2 repeats).

Observed after checking 30 % of the training set, quick suite (mean of repeats 0 and 1) / full
run (mean ± std over repeats 0–9, docs/trees.md): LJE on margins finds 0.388 / 0.396 ± 0.026 of
the flipped labels, IF on margins 0.435 / 0.449 ± 0.020, θ-RelatIF 0.452 / 0.443 ± 0.022,
cleanlab 0.535 / 0.533 ± 0.033, random 0.283 / 0.292 ± 0.021 (expected 0.30). The assertions keep a wide margin under those
numbers; the accuracy curves are too noisy on 200 test points to assert an ordering, so only their
shared end points are checked (every method retrains on the same labels at 0 % and 100 %).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("xgboost")
pytest.importorskip("cleanlab")

from representer._bench_legend import unknown_columns  # noqa: E402
from representer.evaluation.benchmark import run_suite  # noqa: E402
from representer.evaluation.german_credit import CURVE_FILES, QUICK_FRACTIONS, QUICK_REPEATS, RANK_ONLY, RETRAINED  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lje")
    return run_suite("lje", out_dir=folder, quick=True, seed=0, show_progress=False), folder


def _mean_found(out, name, fraction):
    col = QUICK_FRACTIONS.index(fraction)
    return float(np.mean([r["found"][name][col] for r in out["repeats"]]))


def test_writes_results_table_and_both_curves(quick):
    out, folder = quick
    for name in ("results.json", "table.md", *CURVE_FILES):
        assert (folder / name).stat().st_size > 0, name
    saved = json.loads((folder / "results.json").read_text())
    assert saved["suite"] == "lje" and saved["config"]["repeats"] == QUICK_REPEATS == len(saved["repeats"])
    assert [r["repeat"] for r in saved["repeats"]] == [0, 1]
    table = (folder / "table.md").read_text()
    assert all(f"| {name} |" in table for name in RETRAINED + RANK_ONLY)
    assert unknown_columns(table) == []  # every column has a legend entry (representer._bench_legend)


def test_flips_and_curves_are_consistent(quick):
    out, _ = quick
    for r in out["repeats"]:
        assert r["n_flipped"] == round(0.3 * r["n_train"])
        for name, found in r["found"].items():
            assert found[0] == 0.0 and found[-1] == 1.0, name
            assert np.all(np.diff(found) >= 0), name
        # 0 % retrains on the noisy labels and 100 % on the clean ones: the same model for every method
        assert len({acc[0] for acc in r["accuracy"].values()}) == 1
        assert len({acc[-1] for acc in r["accuracy"].values()}) == 1


def test_lje_and_if_find_more_flips_than_random(quick):
    out, _ = quick
    random_30 = _mean_found(out, "random", 0.30)
    assert 0.2 < random_30 < 0.4
    for name in ("LJE (margins)", "IF (margins)", "θ-RelatIF (margins)", "cleanlab"):
        assert _mean_found(out, name, 0.30) > max(random_30, 0.30) + 0.04, name

"""The quick ``lje`` suite (German Credit data debugging with XGBoost, 2 repeats).

Observed after checking 30 % of the training set, quick suite (mean of repeats 0 and 1, each on its
own random split) / full run (mean ± std over repeats 0–9, docs/trees.md): LJE on margins finds 0.396 /
0.385 ± 0.027 of the flipped labels, IF on margins 0.446 / 0.440 ± 0.024, θ-RelatIF 0.450 / 0.433 ±
0.023, cleanlab 0.546 / 0.540 ± 0.025, random 0.283 / 0.292 ± 0.021 (expected 0.30). The assertions keep a wide margin under those
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
from representer.evaluation.german_credit import (  # noqa: E402
    CURVE_FILES,
    QUICK_FRACTIONS,
    QUICK_REPEATS,
    RANK_ONLY,
    RETRAINED,
    power_analysis,
)


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


def test_each_repeat_has_its_own_split_and_the_oracle_is_the_all_clean_model_once_every_flip_is_checked(quick):
    out, _ = quick
    assert [r["split_seed"] for r in out["repeats"]] == [0, 1]
    for r in out["repeats"]:
        found, acc = np.array(r["found"]["oracle"]), np.array(r["accuracy"]["oracle"])
        done = np.array(QUICK_FRACTIONS) >= 0.30  # 30 % of the points are flipped: all found by then
        assert np.all(found[done] == 1.0)
        assert np.all(acc[done] == acc[-1])
        assert len(r["test_correct"]["oracle"]) == r["n_test"]


def test_power_analysis_matches_the_formulas_on_a_constructed_case():
    rng = np.random.default_rng(0)
    n_test, effect = 400, 0.01
    results = []
    for shift in (0.0, 0.02, 0.04, 0.06):  # the method gains `shift` on every test point: τ is the spread of the shifts
        base = rng.integers(0, 2, n_test).astype(float)
        noise = rng.choice([-1.0, 0.0, 1.0], size=n_test, p=[0.1, 0.8, 0.1])
        correct = {name: base for name in RETRAINED}
        correct["loss"] = base + noise + shift
        results.append({"n_test": n_test, "test_correct": correct})
    p = power_analysis(results, effect=effect)
    deltas = np.array([(r["test_correct"]["loss"] - r["test_correct"]["random"]).mean() for r in results])
    sigma2 = np.mean([(r["test_correct"]["loss"] - r["test_correct"]["random"]).var(ddof=1) for r in results])
    tau2 = deltas.var(ddof=1) - sigma2 / n_test
    assert p["loss"]["delta"] == pytest.approx(deltas.mean())
    assert p["loss"]["se"] == pytest.approx(deltas.std(ddof=1) / 2)
    assert p["loss"]["sigma_d"] == pytest.approx(np.sqrt(sigma2))
    assert p["loss"]["tau"] == pytest.approx(np.sqrt(tau2))
    assert p["loss"]["n_needed"] == np.inf  # τ ≈ 0.026 > δ / 2.8 · √4: no number of test points resolves δ
    # identical rankings: no difference, no spread, and no test point is needed beyond the first
    assert p["IF (margins)"]["delta"] == 0.0 and p["IF (margins)"]["sigma_d"] == 0.0 and p["IF (margins)"]["n_needed"] == 0.0
    lenient = power_analysis(results, effect=0.2)["loss"]
    z = 1.959964 + 0.841621
    assert lenient["n_needed"] == pytest.approx(sigma2 / (4 * (0.2 / z) ** 2 - tau2))

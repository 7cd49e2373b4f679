"""The quick DualView Table-2 suite: outputs, caching, and only the orderings that held over seeds 0–2.

Observed on the quick suite (1,000 / 300 Fashion-MNIST images, 4 epochs, one torch thread, seeds
0, 1, 2; the same orderings held with two threads): identical
class ≥ 0.52 for DV, IF, RPS-L2, RelatIF, SIM and kNN against ≤ 0.10 for RAND (RPS-LJE, like the
paper's IF on MNIST, stays near 0.16 and is not asserted); identical subclass ≥ 0.61 for SIM,
RelatIF and kNN; domain mismatch ≥ 0.92 for DV, RPS-L2, SIM and kNN against ≤ 0.04 for RAND;
label poisoning ≥ 0.95 for confident learning, ≥ 0.91 for IF and kNN self-influence, RAND 0.46–0.53;
SIM-rp ≥ 0.68 identical class and ≥ 0.90 domain mismatch. DV at its default ``C = 12 / n`` (rechecked
after the default changed from 1e-3, seeds 0–2): identical class 0.68–0.72, domain mismatch 0.98–1.00.
RPS-L2 also scored 1.0 on domain mismatch in the quick runs but 0.0 in the full suite, so it is not
asserted. The assertions below keep a wide margin under those numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from representer.errors import InputError
from representer._bench_legend import unknown_columns
from representer.evaluation.cost import resident_bytes
from representer.evaluation.benchmark import METHODS, run_suite


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = run_suite(quick=True, seed=0, out_dir=root / "out", cache_dir=root / "cache", show_progress=False)
    return out, root


def test_writes_json_table_and_plot(quick):
    out, root = quick
    for name in ("results.json", "table.md", "table2.png"):
        assert (root / "out" / name).stat().st_size > 0
    saved = json.loads((root / "out" / "results.json").read_text())
    for method, row in out["results"].items():
        assert saved["results"][method] == pytest.approx(row, nan_ok=True)
    table = (root / "out" / "table.md").read_text()
    assert all(f"| {m} |" in table for m in METHODS)
    assert unknown_columns(table) == []  # every column has a legend entry (representer._bench_legend)


def test_cost_columns_are_measured_for_every_explainer(quick):
    out, root = quick
    measured = resident_bytes() is not None  # the peak is NaN only without /proc
    for method in (m for m in METHODS if m != "CL"):
        row = out["cost"][method]
        assert row["fit_seconds"] > 0 and row["explain_seconds"] > 0, method
        assert np.isfinite(row["peak_mb"]) == measured and not row["peak_mb"] > 4096, method
    assert "Cost on the standard setting" in (root / "out" / "table.md").read_text()


def test_corruptions_are_recorded(quick):
    out, _ = quick
    flip, mark = out["corruptions"]["flip"], out["corruptions"]["mark"]
    assert flip["n_flipped"] == len(flip["indices"]) and 0.2 < flip["n_flipped"] / out["n_train"] < 0.4
    assert mark["n_marked"] == len(mark["indices"]) > 0 and mark["n_candidates"] > 0
    assert (flip["seed"], mark["seed"], mark["cls"]) == (420, 420, 2)


def test_identical_class_every_method_but_lje_beats_random(quick):
    results = quick[0]["results"]
    for method in ("DV", "IF", "RPS-L2", "RelatIF", "SIM", "kNN"):
        assert results[method]["identical_class"] > results["RAND"]["identical_class"] + 0.25, method
    for method in ("SIM", "RelatIF", "kNN"):
        assert results[method]["identical_subclass"] > results["RAND"]["identical_subclass"] + 0.3, method


def test_domain_mismatch_similarity_methods_find_the_mark(quick):
    results = quick[0]["results"]
    for method in ("DV", "SIM", "kNN"):
        assert results[method]["domain_mismatch"] > 0.7 > 0.15 > results["RAND"]["domain_mismatch"], method


def test_label_poisoning_orderings(quick):
    results = quick[0]["results"]
    assert results["CL"]["label_poisoning"] > 0.85
    assert set(results["CL"]) == {"label_poisoning"}
    assert results["IF"]["label_poisoning_self"] > 0.75 and results["kNN"]["label_poisoning_self"] > 0.75
    assert 0.35 < results["RAND"]["label_poisoning"] < 0.65 and 0.35 < results["RAND"]["label_poisoning_self"] < 0.65


def test_rerun_uses_the_model_cache_and_reproduces(quick):
    out, root = quick
    again = run_suite(quick=True, seed=0, methods=("kNN",), out_dir=root / "again", cache_dir=root / "cache", show_progress=False)
    assert all(report["cached"] for report in again["models"].values())
    for metric, value in again["results"]["kNN"].items():
        assert value == pytest.approx(out["results"]["kNN"][metric])
    assert np.array_equal(again["corruptions"]["flip"]["indices"], out["corruptions"]["flip"]["indices"])


def test_bad_arguments_are_named():
    with pytest.raises(InputError, match="methods"):
        run_suite(methods=("LOO",), show_progress=False)
    with pytest.raises(InputError, match="dataset"):
        run_suite(dataset="cifar10", show_progress=False)
    with pytest.raises(InputError, match="suite"):
        run_suite(suite="loo", show_progress=False)


def test_sim_rp_is_a_full_model_similarity_method(quick):
    results = quick[0]["results"]
    assert results["SIM-rp"]["identical_class"] > results["RAND"]["identical_class"] + 0.25
    assert results["SIM-rp"]["domain_mismatch"] > 0.7


def test_rps_suite_on_digits_writes_outputs_and_rps_l2_reconstructs(tmp_path):
    out = run_suite("rps", dataset="digits", out_dir=tmp_path, quick=True, show_progress=False)
    for name in ("results.json", "table.md", "rps_debugging.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert unknown_columns((tmp_path / "table.md").read_text()) == []
    assert out["task"]["n_flipped"] == round(0.4 * out["task"]["n_train"])
    assert out["task"]["splits"] == len(out["splits"]) == 2 and out["task"]["pair"] == [2, 4]
    first, second = out["splits"]
    assert first["flipped"] != second["flipped"]  # each split draws its own flips (digits has < 2,000 images of the pair)
    # the paper's explainable model is the model itself: RPSL2(refit="labels") with λ reproduces the Eq. (3) fit
    assert out["model"]["eq3_max_logit_error_vs_model"] < 1e-6
    curves = out["curves"]
    assert all(np.all(np.diff(c["fraction_found"]) >= 0) for c in curves.values())
    for split in out["splits"]:
        assert {c["test_accuracy"][0] for c in split["curves"].values()} == {split["test_accuracy_noisy_model"]}
    assert curves["RPS-L2 (Eq. 3)"]["fraction_found"][-1] > curves["RAND"]["fraction_found"][-1]
    assert curves["IF"]["fraction_found"][-1] > curves["RAND"]["fraction_found"][-1]


def test_relatif_suite_on_digits_relatif_sets_are_larger_and_more_probable(tmp_path):
    out = run_suite("relatif", dataset="digits", out_dir=tmp_path, quick=True, show_progress=False)
    assert (tmp_path / "relatif.png").stat().st_size > 0 and "θ-RelatIF" in (tmp_path / "table.md").read_text()
    assert unknown_columns((tmp_path / "table.md").read_text()) == []
    r = out["results"]
    for kind in ("θ-RelatIF", "ℓ-RelatIF"):
        assert r[kind]["cardinality_top5"] > r["IF"]["cardinality_top5"]
        assert r[kind]["probability_top5"] > r["IF"]["probability_top5"]


def test_basic_conv_network_records_its_recipe_and_diagnostics_and_n_test_keeps_the_cache(tmp_path):
    cache = tmp_path / "cache"
    out = run_suite(
        quick=True, network="basic_conv", methods=("DV", "kNN"), dualview_C=0.01, n_test=120,
        out_dir=tmp_path / "a", cache_dir=cache, show_progress=False,
    )
    config = out["config"]
    assert (config["network"], config["optimizer"], config["lr"], config["weight_decay"]) == ("basic_conv", "sgd", 0.005, 0.0)
    assert out["n_test"] == 120 and out["dualview_C"] == 0.01
    assert {d["C"] for d in out["dualview_diagnostics"].values()} == {0.01}
    for d in out["dualview_diagnostics"].values():
        assert 0.0 <= d["at_bound_fraction"] <= d["support_fraction"] <= 1.0
    mark = out["models"]["mark"]
    assert 0.0 < mark["marked_confidence"] < 1.0 and mark["n_candidates"] == out["corruptions"]["mark"]["n_candidates"]
    assert "basic_conv" in (tmp_path / "a" / "table.md").read_text()
    again = run_suite(quick=True, network="basic_conv", methods=("kNN",), n_test=60, out_dir=tmp_path / "b", cache_dir=cache, show_progress=False)
    assert all(report["cached"] for report in again["models"].values())
    assert again["n_test"] == 60


def test_bad_suite_options_are_named():
    with pytest.raises(InputError, match="network"):
        run_suite(network="resnet", show_progress=False)
    with pytest.raises(InputError, match="n_test"):
        run_suite(n_test=2.5, show_progress=False)
    with pytest.raises(InputError, match="dualview_C"):
        run_suite(dualview_C=-1.0, show_progress=False)

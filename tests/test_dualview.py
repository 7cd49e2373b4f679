"""DualView: dual identities, naive scores, the C convention, binary heads, dead features, persistence."""

import numpy as np
import pytest

from representer.debugging import find_label_issues
from representer.errors import InputError
from representer.methods.base import load
from representer.methods.dualview import AUTO_C_TIMES_N, DualView
from representer.models import Features


def problem(n=60, d=5, k=3, seed=0, n_test=7):
    """Features with class structure (means per class) and a head that roughly agrees with it."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.5, size=(k, d))
    y = rng.integers(0, k, size=n)
    phi = means[y] + rng.normal(size=(n, d))
    y_test = rng.integers(0, k, size=n_test)
    phi_test = means[y_test] + rng.normal(size=(n_test, d))
    return phi, y, phi_test, Features(means, np.zeros(k))


def naive_scores(phi, y, phi_test, beta, target):
    """β_{i,c} ⟨z_i, z_t⟩ with numpy's population std, one test row at a time."""
    mu, s = phi.mean(0), phi.std(0)
    z, zt = (phi - mu) / s, (phi_test - mu) / s
    return np.array([beta[:, target[t]] * (z @ zt[t]) for t in range(len(phi_test))])


@pytest.fixture(scope="module")
def fitted():
    phi, y, phi_test, model = problem()
    return DualView(model, C=0.5, dtype="float64", tol=1e-6).fit(phi, y), phi, y, phi_test


def test_beta_rows_sum_to_zero_with_the_sign_pattern_of_spec_4_1(fitted):
    ex, _, y, _ = fitted
    beta = ex.beta_
    np.testing.assert_allclose(beta.sum(axis=1), 0.0, atol=1e-15)
    own = beta[np.arange(len(y)), y]
    others = beta.copy()
    others[np.arange(len(y)), y] = 0
    assert np.all(own >= 0) and np.all(others <= 0)
    np.testing.assert_allclose(own, ex.alpha_.sum(axis=1), rtol=1e-12)
    assert np.all(ex.alpha_.sum(axis=1) <= ex.C * (1 + 1e-12))
    assert 0 < ex.sparsity_report_["n_support"] < len(y)  # sparse, but not empty


def test_weights_rebuilt_from_the_duals_match_the_solver(fitted):
    ex, *_ = fitted
    np.testing.assert_allclose(ex.representer_weights(), ex.weight_, atol=1e-12)
    assert ex.fit_report_["converged"] and ex.fit_report_["kkt_violation"] <= 1e-6


def test_scores_equal_a_naive_computation_and_sum_to_twice_the_shark_surrogate(fitted):
    ex, phi, _, phi_test = fitted
    target = np.array([0, 1, 2, 0, 1, 2, 1])
    scores = ex.attribute(phi_test, target=target)
    np.testing.assert_allclose(scores, naive_scores(phi, fitted[2], phi_test, ex.beta_, target), rtol=1e-10, atol=1e-14)
    surrogate = ex.standardize(phi_test) @ ex.weight_.T
    np.testing.assert_allclose(scores.sum(axis=1), 2 * surrogate[np.arange(7), target], rtol=1e-10)


def test_predicted_target_is_the_models_argmax(fitted):
    ex, phi, y, phi_test = fitted
    predicted = np.argmax(phi_test @ ex.model_.weight.T, axis=1)
    np.testing.assert_allclose(ex.attribute(phi_test), naive_scores(phi, y, phi_test, ex.beta_, predicted), rtol=1e-10, atol=1e-14)


def test_explain_top_k_equals_dense_argsort(fitted):
    ex, _, _, phi_test = fitted
    dense = ex.attribute(phi_test)
    exp = ex.explain(phi_test, top_k=5)
    np.testing.assert_allclose(exp.excitatory.scores, -np.sort(-dense, axis=1)[:, :5], rtol=1e-12)
    np.testing.assert_allclose(exp.inhibitory.scores, np.sort(dense, axis=1)[:, :5], rtol=1e-12)
    rows = np.arange(len(phi_test))[:, None]
    np.testing.assert_allclose(dense[rows, exp.excitatory.indices], exp.excitatory.scores, rtol=1e-12)


def test_shark_convention_is_the_textbook_one_at_a_quarter_of_C():
    """Spec §4.2: Shark-CS with C = textbook CS with C/4, β_shark = 4 β_textbook, W_shark = 2 W_textbook."""
    phi, y, phi_test, model = problem(seed=1)
    shark = DualView(model, C=0.5, tol=1e-8, dtype="float64").fit(phi, y)
    text = DualView(model, C=0.125, convention="textbook", tol=1e-8, dtype="float64").fit(phi, y)
    np.testing.assert_allclose(shark.beta_, 4 * text.beta_, atol=1e-6 * np.abs(shark.beta_).max())
    np.testing.assert_allclose(shark.weight_, 2 * text.weight_, atol=1e-6 * np.abs(shark.weight_).max())
    np.testing.assert_allclose(text.representer_weights(), text.weight_, atol=1e-12)
    np.testing.assert_array_equal(shark.support_, text.support_)
    np.testing.assert_allclose(shark.attribute(phi_test), 4 * text.attribute(phi_test), atol=1e-6)


def test_default_C_is_a_fixed_C_times_n_in_either_convention_and_survives_save_load(tmp_path):
    """``C=None`` = ``AUTO_C_TIMES_N / n`` (Shark), a quarter of it in the textbook convention: the same
    surrogate as that C given by hand, and the same support set whichever convention."""
    phi, y, phi_test, model = problem(n=80, seed=3)
    auto = DualView(model, tol=1e-8, dtype="float64").fit(phi, y)
    assert auto.C is None and auto.C_ == pytest.approx(AUTO_C_TIMES_N / 80)
    assert auto.fit_report_["C_rule"].startswith("default") and "n = 80" in auto.fit_report_["C_rule"]
    given = DualView(model, C=AUTO_C_TIMES_N / 80, tol=1e-8, dtype="float64").fit(phi, y)
    np.testing.assert_array_equal(auto.beta_, given.beta_)
    assert given.fit_report_["C_rule"] == "given"
    text = DualView(model, convention="textbook", tol=1e-8, dtype="float64").fit(phi, y)
    assert text.C_ == pytest.approx(auto.C_ / 4)
    np.testing.assert_array_equal(text.support_, auto.support_)
    # the box constraint holds at the resolved C, and points at it are counted against it
    assert np.all(auto.alpha_.sum(axis=1) <= auto.C_ * (1 + 1e-12))
    assert auto.sparsity_report_["n_at_bound"] == int(np.isclose(auto.alpha_.sum(axis=1), auto.C_, rtol=1e-9).sum())
    half = DualView(model, tol=1e-8, dtype="float64").fit(phi[:40], y[:40])
    assert half.C_ == pytest.approx(2 * auto.C_)
    auto.save(tmp_path / "dv")
    back = load(tmp_path / "dv", model)
    assert back.C is None and back.C_ == auto.C_ and back.sparsity_report_ == auto.sparsity_report_
    with pytest.raises(InputError, match="`C` must be"):
        DualView(model, C="big").fit(phi, y)


def test_binary_one_logit_head_gets_one_beta_column_per_class():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=50)
    phi = rng.normal(size=(50, 4)) + 2.0 * y[:, None]
    phi_test = rng.normal(size=(6, 4)) + 1.0
    model = Features(np.ones((1, 4)), np.array([-4.0]))  # one logit: class 1 iff Σφ > 4
    ex = DualView(model, C=0.05, tol=1e-6, dtype="float64").fit(phi, y)
    assert ex.beta_.shape == (50, 2)
    np.testing.assert_allclose(ex.beta_.sum(axis=1), 0.0, atol=1e-15)
    for cls in (0, 1):
        target = np.full(6, cls)
        np.testing.assert_allclose(ex.attribute(phi_test, target=cls), naive_scores(phi, y, phi_test, ex.beta_, target), rtol=1e-10, atol=1e-14)
    predicted = (phi_test.sum(1) > 4).astype(int)
    np.testing.assert_allclose(ex.attribute(phi_test), naive_scores(phi, y, phi_test, ex.beta_, predicted), rtol=1e-10, atol=1e-14)


def test_zero_variance_features_are_dropped_without_nan():
    phi, y, phi_test, model = problem(d=4, seed=2)
    dead = np.concatenate([phi[:, :2], np.zeros((60, 1)), np.full((60, 1), 0.7), phi[:, 2:]], axis=1)
    dead_test = np.concatenate([phi_test[:, :2], np.ones((7, 1)), np.full((7, 1), 0.7), phi_test[:, 2:]], axis=1)
    weight = np.concatenate([model.weight[:, :2], np.zeros((3, 2)), model.weight[:, 2:]], axis=1)
    ex = DualView(Features(weight), C=0.02, tol=1e-8, dtype="float64").fit(dead, y)
    reference = DualView(model, C=0.02, tol=1e-8, dtype="float64").fit(phi, y)
    scores = ex.attribute(dead_test)
    assert np.all(np.isfinite(scores)) and np.all(np.isfinite(ex.self_influence()))
    assert ex.fit_report_["n_dropped_features"] == 2
    np.testing.assert_allclose(ex.inv_scale_[2:4], 0.0)
    np.testing.assert_allclose(scores, reference.attribute(phi_test), rtol=1e-9, atol=1e-12)


def test_save_load_round_trip(fitted, tmp_path):
    ex, _, _, phi_test = fitted
    ex.save(tmp_path / "dv")
    back = load(tmp_path / "dv", ex.model)
    assert isinstance(back, DualView) and back.get_params() == ex.get_params()
    np.testing.assert_array_equal(back.attribute(phi_test), ex.attribute(phi_test))
    np.testing.assert_array_equal(back.self_influence(), ex.self_influence())
    assert back.sparsity_report_ == ex.sparsity_report_
    assert back.fit_report_["epochs"] == ex.fit_report_["epochs"]


def test_self_influence_modes(fitted):
    ex, _, y, _ = fitted
    own = ex.beta_[np.arange(len(y)), y]
    np.testing.assert_allclose(ex.self_influence(), 2 * own, rtol=1e-12)
    z = ex.train_z()
    mode_self = DualView(ex.model, C=0.5, tol=1e-6, self_influence_mode="self").fit(fitted[1], y)
    np.testing.assert_allclose(mode_self.self_influence(), own * (z * z).sum(1), rtol=1e-6)


def test_flipped_labels_of_separated_clusters_are_bounded_support_vectors():
    """Far-apart clusters: a flipped point sits inside another class, so it violates the margin and its
    multipliers hit the bound (maximal ``Σ_c |β_ic| = 2C``); most clean points leave the margin (β = 0)."""
    rng = np.random.default_rng(4)
    centres = 6.0 * np.eye(3)
    y = np.repeat(np.arange(3), 30)
    phi = centres[y] + 0.3 * rng.normal(size=(90, 3))
    flipped = np.array([2, 33, 61, 75])
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + 1) % 3
    ex = DualView(Features(centres), C=5.0, tol=1e-6).fit(phi, noisy)
    influence = ex.self_influence()
    np.testing.assert_allclose(influence[flipped], 2 * ex.C, rtol=1e-9)
    assert np.all(influence <= 2 * ex.C * (1 + 1e-9))
    report = ex.sparsity_report_
    assert 4 <= report["n_at_bound"] <= 8 and report["n_support"] <= 15
    assert sum(report["support_per_class"]) == report["n_support"]
    cumulative = find_label_issues(ex, ranking="cumulative", X_test=phi[::3], top=4)
    np.testing.assert_array_equal(np.sort(cumulative.indices), flipped)


def test_bad_arguments_name_the_argument():
    phi, y, _, model = problem()
    with pytest.raises(InputError, match="convention"):
        DualView(model, convention="liblinear").fit(phi, y)
    with pytest.raises(InputError, match="self_influence_mode"):
        DualView(model, self_influence_mode="label").fit(phi, y)
    with pytest.raises(InputError, match="`C`"):
        DualView(model, C=0.0).fit(phi, y)

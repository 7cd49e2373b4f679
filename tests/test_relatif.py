"""RelatIF: brute force for every backend and both kinds, the §5.1 bounds, clamping, persistence."""

import warnings

import numpy as np
import pytest
from test_influence import BACKENDS, naive_gradients, naive_scores, predicted, random_problem

from representer.errors import InputError
from representer.methods.base import load
from representer.methods.influence import InfluenceFunction
from representer.methods.relatif import RelatIF
from representer.models import Features


def _model(theta):
    return Features(theta[:, :-1], theta[:, -1])


@pytest.mark.parametrize("hessian", BACKENDS)
@pytest.mark.parametrize("kind", ["theta", "loss"])
@pytest.mark.parametrize("k", [1, 3])
def test_attribute_matches_naive_numpy(hessian, kind, k):
    phi, y, phi_test, theta = random_problem(k, seed=1)
    ex = RelatIF(_model(theta), kind=kind, hessian=hessian, damping=0.05, dtype="float64", block_size=9).fit(phi, y)
    infl, quad, norms, _ = naive_scores(theta, phi, y, phi_test, predicted(theta, phi_test), hessian, 0.05)
    denominators = norms if kind == "theta" else np.sqrt(quad)
    np.testing.assert_allclose(ex.attribute(phi_test), infl / denominators, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ex.self_influence(), quad / denominators, rtol=1e-8)
    exp = ex.explain(phi_test, top_k=4)
    np.testing.assert_array_equal(exp.excitatory.indices, np.argsort(-(infl / denominators), axis=1)[:, :4])


@pytest.mark.parametrize("hessian", BACKENDS)
@pytest.mark.parametrize("k", [1, 4])
def test_bounds_of_spec_5_1(hessian, k):
    """|ℓ-RelatIF| ≤ √(g_tᵀH⁻¹g_t) and |θ-RelatIF| ≤ ‖g_t‖ (Cauchy–Schwarz), for every backend."""
    phi, y, phi_test, theta = random_problem(k, n=60, seed=2)
    loss = RelatIF(_model(theta), kind="loss", hessian=hessian, damping=0.01, dtype="float64").fit(phi, y)
    theta_rel = RelatIF(_model(theta), kind="theta", hessian=hessian, damping=0.01, dtype="float64").fit(phi, y)
    bound_loss = np.sqrt(loss.test_self_influence(phi_test))
    bound_theta = np.linalg.norm(naive_gradients(theta, phi_test, predicted(theta, phi_test)), axis=1)
    scores_loss, scores_theta = loss.attribute(phi_test), theta_rel.attribute(phi_test)
    assert np.all(np.abs(scores_loss) <= bound_loss[:, None] * (1 + 1e-9))
    assert np.all(np.abs(scores_theta) <= bound_theta[:, None] * (1 + 1e-9))
    assert np.abs(scores_loss).max() > 0.3 * bound_loss.min()  # the bound is not vacuous here


@pytest.mark.parametrize("k", [1, 3])
def test_theta_and_loss_coincide_for_the_identity_hessian(k):
    phi, y, phi_test, theta = random_problem(k)
    scores = [
        RelatIF(_model(theta), kind=kind, hessian="identity", dtype="float64").fit(phi, y).attribute(phi_test)
        for kind in ("theta", "loss")
    ]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-12)


def test_relatif_is_influence_times_a_per_training_point_scale():
    phi, y, phi_test, theta = random_problem(3)
    infl = InfluenceFunction(_model(theta), hessian="ekfac", damping=0.1, dtype="float64").fit(phi, y)
    rel = RelatIF(_model(theta), kind="theta", hessian="ekfac", damping=0.1, dtype="float64").fit(phi, y)
    np.testing.assert_allclose(rel.attribute(phi_test), infl.attribute(phi_test) / infl.inverse_gradient_norms_, rtol=1e-10)
    assert isinstance(rel, InfluenceFunction)


@pytest.mark.parametrize("kind", ["theta", "loss"])
def test_tiny_denominators_are_clamped_with_a_counting_warning(kind):
    """Rows predicted with probability exactly 1 have a zero gradient: clamp, warn, score 0."""
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(20, 2))
    y = rng.integers(0, 3, size=20)
    phi[:3] = [[1e4, 0.0]] * 3
    y[:3] = 0
    model = Features(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), np.zeros(3))
    with pytest.warns(RuntimeWarning, match="3 of 20 training points"):
        ex = RelatIF(model, kind=kind, damping=0.1, dtype="float64").fit(phi, y)
    assert ex.fit_report_["n_clamped"] == 3
    scores = ex.attribute(phi[3:8])
    assert np.all(np.isfinite(scores)) and np.all(scores[:, :3] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RelatIF(model, kind=kind, damping=0.1).fit(phi[3:], y[3:])


def test_bad_kind_raises():
    phi, y, _, theta = random_problem(3)
    with pytest.raises(InputError, match="kind"):
        RelatIF(_model(theta), kind="l2").fit(phi, y)


@pytest.mark.parametrize("hessian", BACKENDS)
def test_save_and_load_round_trip(tmp_path, hessian):
    phi, y, phi_test, theta = random_problem(3)
    ex = RelatIF(_model(theta), kind="loss", hessian=hessian, damping=0.1).fit(phi, y)
    again = load(ex.save(tmp_path / hessian), _model(theta))
    assert type(again) is RelatIF and again.get_params() == ex.get_params()
    np.testing.assert_array_equal(again.attribute(phi_test), ex.attribute(phi_test))

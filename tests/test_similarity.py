"""Baselines: SIM and kNN against brute force (numpy, scikit-learn), random attribution determinism."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from representer.errors import InputError
from representer.methods.base import load
from representer.methods.random import RandomAttribution
from representer.methods.similarity import FeatureSimilarity, GradientSimilarity
from representer.models import Features


def _problem(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    n_classes = 2 if k == 1 else k
    y = rng.integers(0, n_classes, size=n)
    phi = rng.normal(size=(n, d)) + rng.normal(size=(n_classes, d))[y]
    phi_test = rng.normal(size=(7, d))
    return phi, y, phi_test, Features(rng.normal(size=(k, d)), rng.normal(size=k))


def _logit_gradient(x, cls, k):
    """Brute-force ∂z_c/∂Θ as a flat (K·D) vector; the binary class-0 logit is −z."""
    if k == 1:
        return (1.0 if cls == 1 else -1.0) * x
    g = np.zeros((k, x.shape[0]))
    g[cls] = x
    return g.ravel()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("cosine", [False, True])
def test_gradient_similarity_matches_brute_force(k, cosine):
    phi, y, phi_test, model = _problem(k=k)
    ex = GradientSimilarity(model, cosine=cosine, dtype="float64").fit(phi, y)
    target = np.random.default_rng(1).integers(0, 2 if k == 1 else k, size=len(phi_test))
    x_train = np.c_[phi, np.ones(len(phi))]
    x_test = np.c_[phi_test, np.ones(len(phi_test))]
    expected = np.empty((len(phi_test), len(phi)))
    for t in range(len(phi_test)):
        g_t = _logit_gradient(x_test[t], target[t], k)
        if cosine:
            g_t = g_t / np.linalg.norm(g_t)
        for i in range(len(phi)):
            g_i = _logit_gradient(x_train[i], y[i], k)
            expected[t, i] = g_i @ g_t / np.linalg.norm(g_i)
    np.testing.assert_allclose(ex.attribute(phi_test, target=target), expected, rtol=1e-10, atol=1e-12)
    exp = ex.explain(phi_test, top_k=5, target=target)
    np.testing.assert_allclose(exp.excitatory.scores, -np.sort(-expected, axis=1)[:, :5], rtol=1e-10)
    np.testing.assert_allclose(ex.self_influence(), np.linalg.norm(x_train, axis=1))


def test_gradient_similarity_without_bias_uses_phi_only():
    phi, y, phi_test, model = _problem(k=3)
    ex = GradientSimilarity(Features(model.weight), dtype="float64").fit(phi, y)
    scores = ex.attribute(phi_test, target=0)
    expected = (phi_test @ phi.T) * (y == 0) / np.linalg.norm(phi, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_feature_similarity_ranks_like_sklearn_nearest_neighbors(metric):
    phi, y, phi_test, model = _problem(n=80, d=6)
    ex = FeatureSimilarity(model, metric=metric, dtype="float64", block_size=17).fit(phi, y)
    distances, indices = NearestNeighbors(n_neighbors=6, metric="euclidean" if metric == "l2" else "cosine").fit(phi).kneighbors(phi_test)
    exp = ex.explain(phi_test, top_k=6)
    np.testing.assert_array_equal(exp.excitatory.indices, indices)
    if metric == "l2":
        np.testing.assert_allclose(exp.excitatory.scores, -(distances**2), rtol=1e-9)
    else:
        np.testing.assert_allclose(exp.excitatory.scores, 1 - distances, rtol=1e-9)


def test_feature_similarity_dot_is_the_inner_product_and_ignores_the_class():
    phi, y, phi_test, model = _problem()
    ex = FeatureSimilarity(model, metric="dot", dtype="float64").fit(phi, y)
    np.testing.assert_allclose(ex.attribute(phi_test, target=0), phi_test @ phi.T, rtol=1e-12)
    np.testing.assert_array_equal(ex.attribute(phi_test, target=0), ex.attribute(phi_test, target=2))


def test_cosine_treats_an_all_zero_feature_vector_as_dissimilar():
    phi, y, phi_test, model = _problem()
    phi[3] = 0.0
    ex = FeatureSimilarity(model, metric="cosine", dtype="float64").fit(phi, y)
    np.testing.assert_array_equal(ex.attribute(phi_test)[:, 3], 0.0)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_self_influence_is_neighbour_label_disagreement(metric):
    phi, y, _, model = _problem(n=70)
    ex = FeatureSimilarity(model, metric=metric, n_neighbors=4, dtype="float64").fit(phi, y)
    nn = NearestNeighbors(n_neighbors=5, metric="euclidean" if metric == "l2" else "cosine").fit(phi)
    neighbours = nn.kneighbors(phi)[1][:, 1:]
    np.testing.assert_array_equal(ex.neighbors(), neighbours)
    np.testing.assert_allclose(ex.self_influence(), (y[neighbours] != y[:, None]).mean(axis=1))


@pytest.mark.parametrize("bad", [{"metric": "manhattan"}, {"n_neighbors": 0}])
def test_feature_similarity_rejects_bad_arguments(bad):
    phi, y, _, model = _problem()
    with pytest.raises(InputError, match=next(iter(bad))):
        FeatureSimilarity(model, **bad).fit(phi, y)


def test_random_attribution_is_seeded_and_deterministic():
    phi, y, phi_test, model = _problem(n=200)
    ex = RandomAttribution(model, seed=3, block_size=37, test_batch_size=2).fit(phi, y)
    dense = ex.attribute(phi_test)
    np.testing.assert_array_equal(dense, ex.attribute(phi_test))
    np.testing.assert_array_equal(dense[[4, 1]], ex.attribute(phi_test[[4, 1]]))  # per point, any batch
    exp = ex.explain(phi_test, top_k=5)
    np.testing.assert_array_equal(exp.excitatory.indices, np.argsort(-dense, axis=1, kind="stable")[:, :5])
    np.testing.assert_array_equal(exp.inhibitory.indices, np.argsort(dense, axis=1, kind="stable")[:, :5])
    np.testing.assert_array_equal(ex.self_influence(), RandomAttribution(model, seed=3).fit(phi, y).self_influence())

    other = RandomAttribution(model, seed=4).fit(phi, y)
    assert not np.array_equal(other.attribute(phi_test), dense)
    assert not np.array_equal(other.self_influence(), ex.self_influence())


def test_random_scores_look_uniform_and_independent():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(2000, 3))
    ex = RandomAttribution(Features(np.ones((2, 3))), seed=0).fit(phi, rng.integers(0, 2, 2000))
    scores = ex.attribute(rng.normal(size=(50, 3))).astype(np.float64)
    assert scores.min() >= -1 and scores.max() < 1
    assert abs(scores.mean()) < 0.01 and abs(scores.var() - 1 / 3) < 0.01
    correlations = np.corrcoef(scores)[np.triu_indices(50, 1)]
    assert np.abs(correlations).max() < 0.12  # ~ 4.5 standard errors of 1/√2000


def test_random_attribution_save_load_and_bad_seed(tmp_path):
    phi, y, phi_test, model = _problem()
    ex = RandomAttribution(model, seed=7).fit(phi, y)
    loaded = load(ex.save(tmp_path / "rand"), model)
    np.testing.assert_array_equal(loaded.attribute(phi_test), ex.attribute(phi_test))
    with pytest.raises(InputError, match="seed"):
        RandomAttribution(model, seed=-1).fit(phi, y)

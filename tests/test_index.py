"""Inner-product index: the MIPS form of every kernel, flat search equal to the engine, IVF/HNSW recall."""

import numpy as np
import pytest
import torch

from representer.engine import CoefficientKernel, EngineOptions, dense, top_k
from representer.engine import TestFactors as Factors
from representer.engine.index import InnerProductIndex, query_vectors, recall_at_k, train_vectors
from representer.engine.store import kernel_kind
from representer.errors import InputError
from representer.methods.random import RandomAttribution
from representer.methods.rps_l2 import RPSL2
from representer.methods.rps_lje import RPSLJE
from representer.models import Features

from kernel_factories import KERNEL_KINDS, random_kernel_and_test

K, D, N, M = 3, 6, 150, 9
OPTIONS = EngineOptions(block_size=37, test_batch_size=4, dtype=torch.float32)


def _problem(k=K, n=N, seed=0):
    rng = np.random.default_rng(seed)
    n_classes = 2 if k == 1 else k
    y = rng.integers(0, n_classes, size=n)
    centers = rng.normal(size=(n_classes, D)) * 2
    phi = rng.normal(size=(n, D)) + centers[y]
    phi_test = rng.normal(size=(M, D)) + centers[rng.integers(0, n_classes, size=M)]
    return phi, y, phi_test, Features(centers[:k] if k > 1 else centers[1:] - centers[:1], rng.normal(size=k) * 0.1)


def _kernel_and_test(kind, scaled, seed=0):
    return random_kernel_and_test(kind, scaled, n=N, m=M, k=K, d=D, seed=seed)




@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("kind", KERNEL_KINDS)
def test_inner_products_of_train_and_query_vectors_are_the_kernel_scores(kind, scaled):
    kernel, test = _kernel_and_test(kind, scaled)
    expected = dense(kernel, test, OPTIONS)
    queries = query_vectors(kernel_kind(kernel), test)
    if kind in ("CoefficientKernel", "ClassFactorKernel"):
        got = np.stack([queries[t] @ train_vectors(kernel, int(test.out[t])).T for t in range(M)])
    else:
        got = queries @ train_vectors(kernel, None).T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("kind", KERNEL_KINDS)
def test_flat_index_returns_the_engine_top_k(kind, scaled):
    kernel, test = _kernel_and_test(kind, scaled, seed=1)
    expected = top_k(kernel, test, 7, OPTIONS)
    got = InnerProductIndex.from_kernel(kernel, kind="flat", chunk_rows=40).search_factors(test, 7)
    for e, g in zip(expected[::2], got[::2]):
        np.testing.assert_array_equal(g, e)
    for e, g in zip(expected[1::2], got[1::2]):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, K])
def test_flat_index_search_equals_explain_for_rps_l2(k):
    phi, y, phi_test, model = _problem(k=k)
    ex = RPSL2(model, lam=0.01, block_size=32).fit(phi, y)
    target = np.random.default_rng(3).integers(0, 2 if k == 1 else k, size=M)
    expected = ex.explain(phi_test, top_k=5, target=target)
    got = InnerProductIndex.build(ex, kind="flat").search(phi_test, k=5, target=target)
    np.testing.assert_array_equal(got.target, expected.target)
    for side in ("excitatory", "inhibitory"):
        np.testing.assert_array_equal(getattr(got, side).indices, getattr(expected, side).indices)
        np.testing.assert_allclose(getattr(got, side).scores, getattr(expected, side).scores, rtol=1e-5, atol=1e-7)
        assert recall_at_k(got, expected, side=side) == 1.0


def test_flat_index_search_equals_explain_for_rps_lje():
    phi, y, phi_test, model = _problem()
    ex = RPSLJE(model, block_size=32).fit(phi, y)
    expected = ex.explain(phi_test, top_k=4, target="predicted")
    got = InnerProductIndex.build(ex).search(phi_test, k=4)
    for side in ("excitatory", "inhibitory"):
        np.testing.assert_array_equal(getattr(got, side).indices, getattr(expected, side).indices)
        np.testing.assert_allclose(getattr(got, side).scores, getattr(expected, side).scores, rtol=1e-5, atol=1e-7)


def _clustered_kernel(n=3000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, d)) * 3
    x = (centers[rng.integers(0, 40, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    coef = rng.normal(size=(n, 1)).astype(np.float32)
    queries = (centers[rng.integers(0, 40, size=50)] + rng.normal(size=(50, d))).astype(np.float32)
    kernel = CoefficientKernel(torch.as_tensor(x), torch.as_tensor(coef))
    test = Factors({"x": torch.as_tensor(queries)}, torch.zeros(50, dtype=torch.long), torch.ones(50))
    return kernel, test


def _as_explanation(parts):
    from representer.explanation import Explanation, TopK

    return Explanation(TopK(parts[0], parts[1]), TopK(parts[2], parts[3]), np.zeros(len(parts[0]), dtype=np.int64), "test")


def test_ivf_scanning_every_cell_is_exact_and_recall_grows_with_nprobe():
    kernel, test = _clustered_kernel()
    exact = _as_explanation(top_k(kernel, test, 10, EngineOptions(block_size=512)))
    index = InnerProductIndex.from_kernel(kernel, kind="ivf", nlist=32, chunk_rows=1000)
    recalls = []
    for nprobe in (1, 4, 32):
        index.nprobe = nprobe
        recalls.append(recall_at_k(_as_explanation(index.search_factors(test, 10)), exact))
    assert recalls == sorted(recalls)
    assert recalls[-1] == 1.0
    assert recalls[1] >= 0.8
    print(f"IVF recall@10 (n=3000, nlist=32) for nprobe 1/4/32: {recalls}")


def test_hnsw_recall_on_clustered_data():
    kernel, test = _clustered_kernel(seed=1)
    exact = _as_explanation(top_k(kernel, test, 10, EngineOptions(block_size=512)))
    approx = InnerProductIndex.from_kernel(kernel, kind="hnsw", ef_search=256).search_factors(test, 10)
    recall = recall_at_k(_as_explanation(approx), exact, side="inhibitory")
    assert recall >= 0.9
    print(f"HNSW recall@10 (n=3000, inhibitory side): {recall}")


def test_classes_limit_the_per_class_indexes_and_other_classes_are_refused():
    phi, y, phi_test, model = _problem()
    ex = RPSL2(model, lam=0.01).fit(phi, y)
    index = InnerProductIndex.build(ex, classes=[1])
    assert sorted(index.indexes) == [1]
    np.testing.assert_array_equal(
        index.search(phi_test, k=3, target=1).excitatory.indices, ex.explain(phi_test, top_k=3, target=1).excitatory.indices
    )
    with pytest.raises(InputError, match="No index for head output 0"):
        index.search(phi_test, k=3, target=0)
    with pytest.raises(InputError, match="classes"):
        InnerProductIndex.build(ex, classes=[K])


def test_kernels_without_an_inner_product_form_and_bad_arguments_are_refused():
    phi, y, phi_test, model = _problem()
    with pytest.raises(InputError, match="RandomKernel"):
        InnerProductIndex.build(RandomAttribution(model).fit(phi, y))
    ex = RPSL2(model, lam=0.01).fit(phi, y)
    with pytest.raises(InputError, match="kind"):
        InnerProductIndex.build(ex, kind="lsh")
    with pytest.raises(InputError, match="nlist"):
        InnerProductIndex.build(ex, kind="ivf", nlist=10 * N)
    with pytest.raises(InputError, match="train_size"):
        InnerProductIndex.build(ex, kind="ivf", nlist=20, train_size=10)
    with pytest.raises(InputError, match="top_k|`k`"):
        InnerProductIndex.build(ex).search(phi_test, k=0)
    kernel, _ = _kernel_and_test("GradientKernel", False)
    with pytest.raises(InputError, match="class-independent"):
        InnerProductIndex.from_kernel(kernel, outputs=[0])

"""Ray scale-out on a local 2-CPU cluster: results equal the single-process ones, killed workers are retried."""

import os

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from representer import head as hm  # noqa: E402
from representer.engine.distributed import (  # noqa: E402
    ShardedHead,
    distributed_features,
    distributed_top_k,
    merge_top_k,
    shard_bounds,
    solve_rps_l2,
)
from representer.engine.store import save_kernel  # noqa: E402
from representer.errors import InputError  # noqa: E402
from representer.methods.distributed import fit_rps_l2_distributed  # noqa: E402
from representer.methods.rps_l2 import RPSL2  # noqa: E402
from representer.models import Features  # noqa: E402

N, D, K, M = 90, 4, 3, 7


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


def _problem(k=K, seed=0):
    rng = np.random.default_rng(seed)
    n_classes = 2 if k == 1 else k
    y = rng.integers(0, n_classes, size=N)
    X = rng.normal(size=(N, D)) + rng.normal(size=(n_classes, D))[y]
    projection = rng.normal(size=(D, D))

    def phi(rows):
        return np.tanh(np.asarray(rows) @ projection)

    return X, y, Features(rng.normal(size=(k, D)), rng.normal(size=k), phi=phi)


def test_shard_bounds_cover_the_rows_in_order():
    assert shard_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_bounds(2, 5) == [(0, 1), (1, 2)]
    with pytest.raises(InputError, match="n_shards"):
        shard_bounds(10, 0)


def test_merging_shard_top_k_is_the_global_top_k():
    scores = np.random.default_rng(0).normal(size=(4, 50))
    parts = []
    for start, stop in shard_bounds(50, 4):
        block = scores[:, start:stop]
        hi, lo = np.argsort(-block, 1)[:, :3], np.argsort(block, 1)[:, :3]
        parts.append((hi + start, np.take_along_axis(block, hi, 1), lo + start, np.take_along_axis(block, lo, 1)))
    exc_i, exc_s, inh_i, inh_s = merge_top_k(parts, 3)
    np.testing.assert_array_equal(exc_i, np.argsort(-scores, 1)[:, :3])
    np.testing.assert_array_equal(inh_i, np.argsort(scores, 1)[:, :3])
    np.testing.assert_array_equal(exc_s, np.take_along_axis(scores, exc_i, 1))
    np.testing.assert_array_equal(inh_s, np.take_along_axis(scores, inh_i, 1))


def test_distributed_features_equal_the_adapter_and_survive_a_killed_worker(tmp_path):
    X, _, model = _problem()
    marker = str(tmp_path / "died-once")
    inner = model.phi

    def dies_on_first_attempt(rows):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return inner(rows)

    flaky = Features(model.weight, model.bias, phi=dies_on_first_attempt)
    got = distributed_features(flaky, X, n_shards=3, max_retries=2)
    assert os.path.exists(marker)
    np.testing.assert_array_equal(got, model.features(X))


def test_sharded_head_reductions_and_rps_l2_solution_equal_the_single_process_ones():
    """Softmax head here, binary head end to end in the next test (one Ray head each: actors are slow to start)."""
    X, y, model = _problem(k=K)
    phi = model.features(X)
    x = hm.append_ones(torch.as_tensor(phi))
    theta_teacher = torch.as_tensor(model.theta)
    q = hm.probabilities(hm.logits(x, theta_teacher))
    theta = theta_teacher + 0.3 * torch.randn(theta_teacher.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    p = hm.probabilities(hm.logits(x, theta))
    expected = RPSL2(model, lam=0.01).fit(X, y)
    with ShardedHead.from_features(phi, model.theta, n_shards=2) as head:
        value, grad = head.value_and_gradient(theta)
        assert head.n == N and head.sizes == [45, 45]
        torch.testing.assert_close(value, hm.mean_cross_entropy(hm.logits(x, theta), q), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, hm.gradient_of_mean_loss(x, p - q), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(head.hessian_vector_product(theta, v), hm.hessian_vector_product(x, p, v), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(head.exact_hessian(theta), hm.exact_hessian(x, p), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(head.teacher(), q, rtol=0, atol=1e-15)
        solution = solve_rps_l2(head, 0.01)
    assert solution.result.converged
    np.testing.assert_allclose(solution.alpha, expected.alpha_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(solution.theta, expected.theta_, rtol=0, atol=1e-10)


def test_rps_l2_fitted_on_ray_explains_like_rps_l2_for_a_binary_head():
    X, y, model = _problem(k=1)
    expected = RPSL2(model, lam=0.01, block_size=16).fit(X, y)
    got = fit_rps_l2_distributed(RPSL2(model, lam=0.01, block_size=16), X, y, n_shards=2)
    assert got.fit_report_["converged"] and got.fit_report_["n_shards"] == 2
    np.testing.assert_allclose(got.alpha_, expected.alpha_, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(got.train_features_, expected.train_features_)
    e_exp, e_got = expected.explain(X[:M], top_k=5), got.explain(X[:M], top_k=5)
    np.testing.assert_array_equal(e_got.excitatory.indices, e_exp.excitatory.indices)
    np.testing.assert_array_equal(e_got.inhibitory.indices, e_exp.inhibitory.indices)
    assert got.classes_ == expected.classes_  # recorded as fit records it, so the fit saves and loads
    with pytest.raises(InputError, match="refit='teacher'"):
        fit_rps_l2_distributed(RPSL2(model, refit="labels"), X, y, n_shards=2)


def test_distributed_top_k_equals_explain_in_memory_and_from_a_store(tmp_path):
    X, y, model = _problem()
    ex = RPSL2(model, lam=0.01, block_size=16).fit(X, y)
    target = np.random.default_rng(4).integers(0, K, size=M)
    expected = ex.explain(X[:M], top_k=6, target=target)
    in_memory = distributed_top_k(ex, X[:M], 6, n_shards=3, target=target)
    ex.kernel_ = save_kernel(ex.kernel_, tmp_path / "store", shard_rows=25).kernel()
    from_store = distributed_top_k(ex, X[:M], 6, n_shards=2, target=target)
    for got in (in_memory, from_store):
        np.testing.assert_array_equal(got.target, expected.target)
        for side in ("excitatory", "inhibitory"):
            np.testing.assert_array_equal(getattr(got, side).indices, getattr(expected, side).indices)
            np.testing.assert_allclose(getattr(got, side).scores, getattr(expected, side).scores, rtol=1e-6)


def test_distributed_top_k_survives_a_worker_killed_mid_job(tmp_path):
    from dataclasses import dataclass

    from representer.engine import CoefficientKernel

    X, y, model = _problem()
    ex = RPSL2(model, lam=0.01, block_size=16).fit(X, y)
    expected = ex.explain(X[:M], top_k=4)
    marker = str(tmp_path / "died-once")

    @dataclass
    class DiesOnFirstAttempt(CoefficientKernel):
        def block(self, test, start, stop, **options):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return CoefficientKernel.block(self, test, start, stop, **options)

    kernel = ex.kernel_
    ex.kernel_ = DiesOnFirstAttempt(kernel.x, kernel.coef, kernel.scale)
    got = distributed_top_k(ex, X[:M], 4, n_shards=2, max_retries=2)
    assert os.path.exists(marker)
    np.testing.assert_array_equal(got.excitatory.indices, expected.excitatory.indices)
    np.testing.assert_allclose(got.inhibitory.scores, expected.inhibitory.scores, rtol=1e-6)

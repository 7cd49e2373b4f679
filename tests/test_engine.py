"""The scoring engine against brute force: every kernel, block size, test batch size, dtype, ties."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from representer.engine import (
    BilinearKernel,
    ClassFactorKernel,
    CoefficientKernel,
    EngineOptions,
    GradientKernel,
    KroneckerKernel,
    LowRankGradientKernel,
    TestFactors as Factors,
    dense,
    stream_blocks,
    top_k,
)

F64 = torch.float64


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coefficient_problem(m=23, n=3001, d=6, k_out=4, seed=0, integer=False):
    g = _rng(seed)
    if integer:  # small integers: exact in float32 and full of ties
        x = torch.randint(-2, 3, (n, d), generator=g).to(F64)
        xt = torch.randint(-2, 3, (m, d), generator=g).to(F64)
        coef = torch.randint(-2, 3, (n, k_out), generator=g).to(F64)
    else:
        x, xt, coef = (torch.randn(s, generator=g, dtype=F64) for s in ((n, d), (m, d), (n, k_out)))
    out = torch.randint(0, k_out, (m,), generator=g)
    sign = torch.where(torch.rand(m, generator=g) < 0.3, -1.0, 1.0).to(F64)
    expected = (xt @ x.T) * coef.T[out] * sign[:, None]
    return CoefficientKernel(x=x, coef=coef), Factors({"x": xt}, out, sign), expected.numpy()


def _options(block_size, test_batch_size, dtype=F64):
    return EngineOptions(block_size=block_size, test_batch_size=test_batch_size, dtype=dtype)


def _check_top_k(result, expected, k, exact=True):
    """Scores are the brute-force sorted extremes; indices are distinct and point at those scores.

    ``exact`` for integer-valued problems (every product exact, ties everywhere); otherwise the
    scores agree to rounding (the engine's GEMM blocks differ from the brute-force one).
    """
    check = np.testing.assert_array_equal if exact else lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    exc_i, exc_s, inh_i, inh_s = result
    kk = min(k, expected.shape[1])
    rows = np.arange(expected.shape[0])[:, None]
    ordered = np.sort(expected, axis=1)
    check(exc_s, ordered[:, ::-1][:, :kk])
    check(inh_s, ordered[:, :kk])
    for indices, scores in ((exc_i, exc_s), (inh_i, inh_s)):
        assert indices.shape == (expected.shape[0], kk)
        check(expected[rows, indices], scores)
        assert all(len(set(row)) == kk for row in indices.tolist())


# (n, block_size): tiny blocks on a small n, wide blocks (that take the grouped prefilter) on a larger one.
SHAPES = [(40, 1), (40, 2), (40, 7), (3001, 64), (3001, 1000), (3001, 3000), (3001, 3001), (6000, 6000), (3001, 5000)]


@pytest.mark.parametrize(("n", "block_size"), SHAPES)
@pytest.mark.parametrize("k", [1, 5, 20])
def test_streaming_top_k_equals_top_k_of_dense(n, block_size, k):
    kernel, test, expected = _coefficient_problem(n=n)
    result = top_k(kernel, test, k, _options(block_size, 1024))
    _check_top_k(result, expected, k, exact=False)
    np.testing.assert_array_equal(result[0], np.argsort(-expected, axis=1)[:, :k])  # continuous scores: no ties
    np.testing.assert_array_equal(result[2], np.argsort(expected, axis=1)[:, :k])


@pytest.mark.parametrize("test_batch_size", [1, 5, 23, 1000])
@pytest.mark.parametrize(("n", "block_size"), [(60, 3), (3001, 1000), (3001, 4096)])
def test_top_k_with_ties_and_test_batches(test_batch_size, n, block_size):
    kernel, test, expected = _coefficient_problem(n=n, integer=True)
    assert (np.sort(expected, axis=1)[:, -6:-1] == np.sort(expected, axis=1)[:, -5:]).any(), "the case must have ties"
    _check_top_k(top_k(kernel, test, 5, _options(block_size, test_batch_size)), expected, 5)


def test_top_k_larger_than_n_returns_every_point_in_order():
    kernel, test, expected = _coefficient_problem(n=9)
    exc_i, exc_s, inh_i, inh_s = top_k(kernel, test, 50, _options(4, 7))
    assert exc_i.shape == (23, 9)
    np.testing.assert_array_equal(exc_i, np.argsort(-expected, axis=1))
    np.testing.assert_array_equal(inh_i, exc_i[:, ::-1])
    np.testing.assert_allclose(exc_s, -np.sort(-expected, axis=1), rtol=1e-13)


@pytest.mark.parametrize("test_batch_size", [1, 4, 23, 100])
@pytest.mark.parametrize(("n", "block_size"), [(40, 1), (3001, 500), (3001, 3001), (3001, 4000)])
def test_dense_equals_brute_force(test_batch_size, n, block_size):
    kernel, test, expected = _coefficient_problem(n=n)
    np.testing.assert_allclose(dense(kernel, test, _options(block_size, test_batch_size)), expected, rtol=1e-13, atol=1e-13)


def test_float32_scoring_matches_float64_and_top_k_agrees_with_its_own_dense():
    kernel, test, expected = _coefficient_problem()
    kernel.to(torch.device("cpu"), torch.float32)
    options = _options(1000, 10, dtype=torch.float32)
    scores = dense(kernel, test, options)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    result = top_k(kernel, test, 7, options)
    assert result[1].dtype == np.float32 and result[0].dtype == np.int64
    np.testing.assert_allclose(result[1], -np.sort(-scores, axis=1)[:, :7], rtol=1e-5)
    np.testing.assert_allclose(result[3], np.sort(scores, axis=1)[:, :7], rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_integer_scores_are_exact_in_both_dtypes(dtype):
    kernel, test, expected = _coefficient_problem(integer=True)
    kernel.to(torch.device("cpu"), dtype)
    options = _options(1000, 10, dtype=dtype)
    np.testing.assert_array_equal(dense(kernel, test, options), expected)
    _check_top_k(top_k(kernel, test, 6, options), expected, 6)


def test_many_outputs_take_the_gathered_coefficient_path():
    kernel, test, expected = _coefficient_problem(m=40, k_out=30, integer=True)
    np.testing.assert_array_equal(dense(kernel, test, _options(700, 40)), expected)
    _check_top_k(top_k(kernel, test, 3, _options(700, 40)), expected, 3)


def test_stream_blocks_cover_the_matrix_once_in_original_order():
    kernel, test, expected = _coefficient_problem()
    seen = np.zeros_like(expected)
    count = np.zeros(expected.shape, dtype=int)
    for t0, start, scores in stream_blocks(kernel, test, _options(700, 10)):
        block = scores.numpy()
        seen[t0 : t0 + block.shape[0], start : start + block.shape[1]] = block
        count[t0 : t0 + block.shape[0], start : start + block.shape[1]] += 1
    assert (count == 1).all()
    np.testing.assert_allclose(seen, expected, rtol=1e-13, atol=1e-13)


def _all_kernels(m=7, n=300, d=5, k_out=3, seed=1):
    """Each kernel with a random ``scale`` and its brute-force ``(m, n)`` scores."""
    g = _rng(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    r = torch.randn(n, k_out, generator=g, dtype=F64)
    scale = torch.rand(n, generator=g, dtype=F64) + 0.5
    out = torch.randint(0, k_out, (m,), generator=g)
    sign = torch.where(torch.rand(m, generator=g) < 0.5, -1.0, 1.0).to(F64)
    xt = torch.randn(m, d, generator=g, dtype=F64)
    v = torch.randn(n, k_out, d, generator=g, dtype=F64)
    u = torch.randn(m, k_out, d, generator=g, dtype=F64)
    s_t = torch.randn(m, k_out, generator=g, dtype=F64)
    a_t = torch.randn(m, d, generator=g, dtype=F64)
    cases = {
        "coefficient": (
            CoefficientKernel(x=x, coef=r, scale=scale),
            Factors({"x": xt}, out, sign),
            sign[:, None] * r.T[out] * (xt @ x.T),
        ),
        "class_factor": (
            ClassFactorKernel(v=v, scale=scale),
            Factors({"x": xt}, out, sign),
            sign[:, None] * torch.einsum("md,nmd->mn", xt, v[:, out]),
        ),
        "gradient": (
            GradientKernel(x=x, r=r, scale=scale),
            Factors({"u": u}, out, torch.ones(m, dtype=F64)),
            torch.einsum("mkd,nk,nd->mn", u, r, x),
        ),
        "kronecker": (
            KroneckerKernel(x=x, r=r, scale=scale),
            Factors({"s": s_t, "a": a_t}, out, torch.ones(m, dtype=F64)),
            (s_t @ r.T) * (a_t @ x.T),
        ),
    }
    return {name: (kernel, test, (expected * scale).numpy()) for name, (kernel, test, expected) in cases.items()}


@pytest.mark.parametrize("name", ["coefficient", "class_factor", "gradient", "kronecker"])
def test_every_kernel_matches_its_formula_through_dense_and_top_k(name):
    kernel, test, expected = _all_kernels()[name]
    options = _options(64, 3)
    np.testing.assert_allclose(dense(kernel, test, options), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kernel.block(test, 10, 50).numpy(), expected[:, 10:50], rtol=1e-12, atol=1e-12)
    result = top_k(kernel, test, 4, options)
    np.testing.assert_allclose(result[1], -np.sort(-expected, axis=1)[:, :4], rtol=1e-12)
    np.testing.assert_allclose(result[3], np.sort(expected, axis=1)[:, :4], rtol=1e-12)
    np.testing.assert_array_equal(result[0], np.argsort(-expected, axis=1)[:, :4])
    np.testing.assert_array_equal(result[2], np.argsort(expected, axis=1)[:, :4])


def test_kernel_to_moves_tensors_and_scale():
    kernel, _, _ = _all_kernels()["gradient"]
    kernel.to(torch.device("cpu"), torch.float32)
    assert kernel.x.dtype == kernel.r.dtype == kernel.scale.dtype == torch.float32


def test_test_factors_slice_and_take():
    _, test, _ = _coefficient_problem(m=6)
    rows = torch.tensor([4, 0, 2])
    taken = test.take(rows)
    assert taken.m == 3 and torch.equal(taken.out, test.out[rows]) and torch.equal(taken.tensors["x"], test.tensors["x"][rows])
    sliced = test.slice(2, 5)
    assert sliced.m == 3 and torch.equal(sliced.sign, test.sign[2:5])


@pytest.mark.parametrize("block_size", [23, 150, 500], ids=["tail-groups-only", "full-and-tail-groups", "one-block"])
@pytest.mark.parametrize("k", [1, 4, 70])
def test_candidate_pool_compaction_keeps_the_extremes(monkeypatch, block_size, k):
    """The pool is cut back to the k best column groups after every block; the extremes survive (ties everywhere)."""
    monkeypatch.setattr("representer.engine.scoring._POOL_GROUPS", 1)
    kernel, test, expected = _coefficient_problem(n=500, integer=True)
    _check_top_k(top_k(kernel, test, k, _options(block_size, 7)), expected, k)


# ------------------------------------------------------------------ GradientKernel: both intermediates
def _einsum_gradient_scores(x, r, u):
    """The previous ``GradientKernel`` block: projections ``(n, m, K)`` contracted with ``r`` by einsum."""
    m, k, d = u.shape
    projected = (x @ u.reshape(m * k, d).T).reshape(x.shape[0], m, k)
    return torch.einsum("bmk,bk->mb", projected, r)


@pytest.mark.parametrize("chunk_floats", [1 << 22, 50], ids=["one-chunk", "many-chunks"])
def test_low_rank_gradient_kernel_is_the_gradient_kernel_of_the_summed_factors(monkeypatch, chunk_floats):
    """``Σ_k (s_tk·r_i)(a_tk·x_i)`` equals the GradientKernel of ``U_t = Σ_k s_tk a_tkᵀ``, blocks and dense output alike."""
    monkeypatch.setattr("representer.engine.kernels._GRADIENT_CHUNK_FLOATS", chunk_floats)
    g = _rng(7)
    n, m, rank, k_out, d = 301, 11, 3, 5, 8
    x, r = torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, k_out, generator=g, dtype=F64)
    s, a = torch.randn(m, rank, k_out, generator=g, dtype=F64), torch.randn(m, rank, d, generator=g, dtype=F64)
    out, sign = torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=F64)
    low = LowRankGradientKernel(x=x, r=r)
    full = GradientKernel(x=x, r=r)
    u = torch.einsum("mko,mki->moi", s, a)
    expected = dense(full, Factors({"u": u}, out, sign), _options(64, 4))
    np.testing.assert_allclose(dense(low, Factors({"s": s, "a": a}, out, sign), _options(64, 4)), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(expected, torch.einsum("moi,no,ni->mn", u, r, x).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m, d", [(40, 9), (3, 17)], ids=["gradient-rows", "projections"])
@pytest.mark.parametrize("chunk_floats", [1 << 22, 100], ids=["one-chunk", "many-chunks"])
def test_gradient_kernel_equals_the_einsum_form_and_per_example_gradients(monkeypatch, m, d, chunk_floats):
    monkeypatch.setattr("representer.engine.kernels._GRADIENT_CHUNK_FLOATS", chunk_floats)
    g = _rng(5)
    n, k_out = 257, 6
    x, r = torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, k_out, generator=g, dtype=F64)
    u = torch.randn(m, k_out, d, generator=g, dtype=F64)
    kernel = GradientKernel(x=x, r=r)
    test = Factors({"u": u}, torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=F64))
    previous = _einsum_gradient_scores(x, r, u)
    gradients = (r[:, :, None] * x[:, None, :]).reshape(n, k_out * d)
    brute = u.reshape(m, k_out * d) @ gradients.T
    scale = previous.abs().max()
    blocks = [
        (0, n, kernel.raw_block(test, 0, n)),
        (31, 200, kernel.raw_block(test, 31, 200)),
        (0, n, torch.as_tensor(dense(kernel, test, _options(64, 7)))),
    ]
    for lo, hi, block in blocks:
        assert (block - previous[:, lo:hi]).abs().max() <= 1e-12 * scale
        assert (block - brute[:, lo:hi]).abs().max() <= 1e-12 * scale


# ------------------------------------------------------------- moving factors keeps integer tensors exact
@dataclass
class _KeyedKernel(BilinearKernel):
    """``a(t, i) = [key_t = key_i] · ⟨x_t, x_i⟩`` with int64 keys above 2²⁴ (not exact in float32)."""

    x: torch.Tensor
    key: torch.Tensor
    scale: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "key": self.key}

    def raw_block(self, test, start, stop):
        same = test.tensors["key"][:, None] == self.key[None, start:stop]
        return (test.tensors["x"] @ self.x[start:stop].T) * same.to(self.x.dtype)


def test_moving_to_a_float_dtype_keeps_integer_tensors_and_their_values():
    g = _rng(6)
    n, m, d = 50, 8, 4
    key = (1 << 24) + torch.arange(n)  # neighbours collide once cast to float32
    x, xt = torch.randn(n, d, generator=g, dtype=F64), torch.randn(m, d, generator=g, dtype=F64)
    test_key = key[torch.randint(0, n, (m,), generator=g)]
    test = Factors({"x": xt, "key": test_key}, torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=F64))
    kernel = _KeyedKernel(x=x, key=key, scale=torch.ones(n, dtype=F64))

    moved = test.to(torch.device("cpu"), torch.float32)
    assert moved.tensors["x"].dtype == moved.sign.dtype == torch.float32
    assert moved.tensors["key"].dtype == torch.int64 and torch.equal(moved.tensors["key"], test_key)
    assert moved.out.dtype == torch.long
    kernel.to(torch.device("cpu"), torch.float32)
    assert kernel.x.dtype == kernel.scale.dtype == torch.float32
    assert kernel.key.dtype == torch.int64 and torch.equal(kernel.key, key)

    expected = (xt @ x.T) * (test_key[:, None] == key[None, :]).to(F64)
    scores = dense(kernel, test, _options(16, 3, dtype=torch.float32))
    assert np.count_nonzero(scores) == m
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_gradient_kernel_block_holds_no_test_by_train_by_class_intermediate():
    # The einsum form allocated (b, m, K) projections: K × the (m, b) block of scores.
    from torch.profiler import ProfilerActivity, profile

    g = _rng(7)
    m, n, k_out, d = 256, 2048, 10, 16
    kernel = GradientKernel(x=torch.randn(n, d, generator=g, dtype=F64), r=torch.randn(n, k_out, generator=g, dtype=F64))
    u = torch.randn(m, k_out, d, generator=g, dtype=F64)
    test = Factors({"u": u}, torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=F64))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        kernel.raw_block(test, 0, n)
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert largest <= 8 * max(m * n, n * k_out * d)  # the scores, or the (b, K·D) gradient rows

"""On-disk factor store: store-backed scoring equals in-memory, resumable writes, corrupt shards refused."""

import json
import pickle

import numpy as np
import pytest
import torch

from representer.engine import EngineOptions, dense, top_k
from representer.engine.index import InnerProductIndex
from representer.engine.store import FactorStore, StoreKernel, kernel_rows, save_kernel, write_factors
from representer.errors import InputError, RepresenterError, StaleStateError
from representer.methods.rps_l2 import RPSL2
from representer.models import Features

from kernel_factories import KERNEL_KINDS, random_kernel_and_test

K, D, N, M = 3, 5, 130, 6
OPTIONS = EngineOptions(block_size=37, test_batch_size=4, dtype=torch.float32)


def _kernel_and_test(kind, scaled, seed=0):
    return random_kernel_and_test(kind, scaled, n=N, m=M, k=K, d=D, seed=seed)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("kind", KERNEL_KINDS)
def test_store_backed_scoring_equals_in_memory(tmp_path, kind, scaled):
    kernel, test = _kernel_and_test(kind, scaled)
    store = save_kernel(kernel, tmp_path / "s", shard_rows=40)
    assert store.n_shards == 4 and sorted(store.row_shapes) == sorted(list(kernel.tensors()) + (["scale"] if scaled else []))
    disk = FactorStore.open(tmp_path / "s").kernel()
    np.testing.assert_allclose(dense(disk, test, OPTIONS), dense(kernel, test, OPTIONS), rtol=1e-6, atol=1e-6)
    for got, expected in zip(top_k(disk, test, 5, OPTIONS), top_k(kernel, test, 5, OPTIONS)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_float64_store_and_scoring_match_exactly(tmp_path):
    kernel, test = _kernel_and_test("CoefficientKernel", True)
    kernel = kernel.to(torch.device("cpu"), torch.float64)
    disk = save_kernel(kernel, tmp_path / "s", dtype="float64", shard_rows=40).kernel()
    options = EngineOptions(block_size=37, dtype=torch.float64)
    np.testing.assert_allclose(dense(disk, test, options), dense(kernel, test, options), rtol=1e-13, atol=1e-13)


def test_explainer_scoring_through_a_store_backed_kernel_equals_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    phi, y = rng.normal(size=(N, D)), rng.integers(0, K, size=N)
    ex = RPSL2(Features(rng.normal(size=(K, D)), rng.normal(size=K)), lam=0.01, block_size=32).fit(phi, y)
    expected = ex.explain(phi[:M], top_k=4)
    ex.kernel_ = save_kernel(ex.kernel_, tmp_path / "rps", shard_rows=50).kernel()
    got = ex.explain(phi[:M], top_k=4)
    for side in ("excitatory", "inhibitory"):
        np.testing.assert_array_equal(getattr(got, side).indices, getattr(expected, side).indices)
        np.testing.assert_allclose(getattr(got, side).scores, getattr(expected, side).scores, rtol=1e-6)


def test_index_built_from_a_store_equals_the_in_memory_one(tmp_path):
    kernel, test = _kernel_and_test("ClassFactorKernel", True, seed=2)
    disk = save_kernel(kernel, tmp_path / "s", shard_rows=40).kernel()
    got = InnerProductIndex.from_kernel(disk, chunk_rows=33).search_factors(test, 6)
    expected = InnerProductIndex.from_kernel(kernel).search_factors(test, 6)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[2], expected[2])


def test_row_views_and_pickling_read_the_right_rows(tmp_path):
    kernel, test = _kernel_and_test("GradientKernel", True)
    disk = save_kernel(kernel, tmp_path / "s", shard_rows=40).kernel()
    view = pickle.loads(pickle.dumps(kernel_rows(disk, 35, 95)))
    assert isinstance(view, StoreKernel) and view.n == 60
    np.testing.assert_allclose(dense(view, test, OPTIONS), dense(kernel_rows(kernel, 35, 95), test, OPTIONS), rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="outside"):
        kernel_rows(disk, 100, 200)


SPEC = dict(kind="CoefficientKernel", n=100, row_shapes={"x": (D,), "coef": (K,)}, fingerprint="fit-1", shard_rows=30)


def _source(n=100):
    rng = np.random.default_rng(5)
    return rng.normal(size=(n, D)), rng.normal(size=(n, K))


def test_an_interrupted_fit_resumes_and_skips_the_shards_already_written(tmp_path):
    x, coef = _source()
    calls = []

    def compute(start, stop, fail_at=None):
        calls.append(start)
        if start == fail_at:
            raise KeyboardInterrupt
        return {"x": x[start:stop], "coef": coef[start:stop]}

    with pytest.raises(KeyboardInterrupt):
        write_factors(tmp_path / "s", lambda a, b: compute(a, b, fail_at=60), **SPEC)
    assert calls == [0, 30, 60]
    assert FactorStore.create_or_resume(tmp_path / "s", **SPEC).pending_shards() == [2, 3]
    with pytest.raises(RepresenterError, match="incomplete"):
        FactorStore.open(tmp_path / "s")
    calls.clear()
    store = write_factors(tmp_path / "s", compute, **SPEC)
    assert calls == [60, 90]
    np.testing.assert_allclose(store.read("x", 0, 100), x.astype(np.float32))
    np.testing.assert_allclose(store.read("coef", 25, 65), coef[25:65].astype(np.float32))
    calls.clear()
    write_factors(tmp_path / "s", compute, **SPEC)
    assert calls == []


def test_a_corrupted_or_torn_shard_is_refused_and_rewritten_on_resume(tmp_path):
    x, coef = _source()
    compute = lambda a, b: {"x": x[a:b], "coef": coef[a:b]}  # noqa: E731
    write_factors(tmp_path / "s", compute, **SPEC)
    shard_file = tmp_path / "s" / "coef-00001.npy"
    raw = bytearray(shard_file.read_bytes())
    raw[-3] ^= 0xFF
    shard_file.write_bytes(bytes(raw))
    with pytest.raises(StaleStateError, match="coef-00001.npy does not match its checksum"):
        FactorStore.open(tmp_path / "s")
    (tmp_path / "s" / "x-00003.npy").write_bytes(b"torn")
    assert FactorStore.create_or_resume(tmp_path / "s", **SPEC).pending_shards() == [1, 3]
    store = write_factors(tmp_path / "s", compute, **SPEC)
    FactorStore.open(tmp_path / "s")
    np.testing.assert_allclose(store.read("coef", 0, 100), coef.astype(np.float32))


def test_a_shard_of_the_wrong_shape_is_refused_even_without_checksums(tmp_path):
    x, coef = _source()
    write_factors(tmp_path / "s", lambda a, b: {"x": x[a:b], "coef": coef[a:b]}, **SPEC)
    np.save(tmp_path / "s" / "x-00000.npy", np.zeros((30, D + 1), dtype=np.float32))
    with pytest.raises(StaleStateError, match=r"x-00000.npy has shape \(30, 6\)"):
        FactorStore.open(tmp_path / "s", verify=False)


def test_resuming_with_a_different_spec_or_fingerprint_is_refused(tmp_path):
    FactorStore.create_or_resume(tmp_path / "s", **SPEC)
    with pytest.raises(StaleStateError, match="fingerprint"):
        FactorStore.create_or_resume(tmp_path / "s", **{**SPEC, "fingerprint": "fit-2"})
    with pytest.raises(StaleStateError, match="shard_rows"):
        FactorStore.create_or_resume(tmp_path / "s", **{**SPEC, "shard_rows": 31})
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["row_shapes"] == {"coef": [K], "x": [D]} and manifest["dtype"] == "float32"


def test_bad_arrays_and_specs_are_refused(tmp_path):
    with pytest.raises(InputError, match="needs the arrays"):
        FactorStore.create_or_resume(tmp_path / "a", **{**SPEC, "row_shapes": {"x": (D,)}})
    with pytest.raises(InputError, match="kind"):
        FactorStore.create_or_resume(tmp_path / "b", **{**SPEC, "kind": "RandomKernel"})
    store = FactorStore.create_or_resume(tmp_path / "c", **SPEC)
    with pytest.raises(InputError, match=r"expected \(30, 3\)"):
        store.write_shard(0, {"x": np.zeros((30, D)), "coef": np.zeros((29, K))})
    with pytest.raises(InputError, match="NaN"):
        store.write_shard(0, {"x": np.full((30, D), np.nan), "coef": np.zeros((30, K))})
    with pytest.raises(RepresenterError, match="No factor store"):
        FactorStore.open(tmp_path / "missing")

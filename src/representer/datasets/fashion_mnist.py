"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT licence, Zalando): 28×28 grey images, 10 classes.

The full 60,000/10,000 set is read, in this order, from

1. ``path``: a folder holding the four IDX ``.gz`` files;
2. the Debian/Ubuntu package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
3. the cache folder (``~/.cache/representer/fashion-mnist``), filled by ``download=True`` from the
   canonical URL, each file checked against the decompressed size and SHA-256 of the release.

A balanced 3,000/1,000 subset ships with this package (:func:`load_fashion_mnist_subset`), so the
demo and the tests need none of the above; :func:`build_subset` is how it was made.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np

from .._atomic import atomic_open
from ..errors import InputError, RepresenterError
from ._split import TrainTestSplit, images_to_float
from .download import cache_dir as resolve_cache_dir
from .download import download_gz
from .idx import read_idx

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: Decompressed (size in bytes, SHA-256) of each file of the official release.
CHECKSUMS: dict[str, tuple[int, str]] = {
    FILES["train_images"]: (47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    FILES["train_labels"]: (60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    FILES["test_images"]: (7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    FILES["test_labels"]: (10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
SUBSET_FILE = "fashion_mnist_subset.npz"

RawSplit = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _has_all_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES.values())


def debian_dir() -> Path | None:
    """Folder of the installed Debian package's files, or ``None`` when it is not installed."""
    for folder in DEBIAN_DIRS:
        if _has_all_files(folder):
            return folder
    if shutil.which("dpkg") is None:
        return None
    listing = subprocess.run(["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        if line.endswith(FILES["train_images"]) and _has_all_files(Path(line).parent):
            return Path(line).parent
    return None


def read_raw(folder: str | Path) -> RawSplit:
    """``(X_train, y_train, X_test, y_test)`` as uint8 arrays ``(N, 28, 28)`` and ``(N,)`` from ``folder``."""
    folder = Path(folder)
    arrays = [read_idx(folder / FILES[key]) for key in ("train_images", "train_labels", "test_images", "test_labels")]
    for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise InputError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match.")
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _download_all(url: str, folder: Path, checksums: Mapping[str, tuple[int, str]]) -> None:
    base = url if url.endswith("/") else url + "/"
    for name in FILES.values():
        if not (folder / name).is_file():
            download_gz(base + name, folder / name, checksums[name])


def _no_data_error(cache: Path) -> RepresenterError:
    return RepresenterError(
        "Fashion-MNIST was not found. Provide it in one of three ways:\n"
        f"  1. load_fashion_mnist(path=FOLDER) with FOLDER holding {', '.join(FILES.values())};\n"
        f"  2. install the Debian/Ubuntu package: `apt-get install {DEBIAN_PACKAGE}`;\n"
        f"  3. load_fashion_mnist(download=True) to fetch it once into {cache} (needs internet).\n"
        "For a small offline sample use load_fashion_mnist_subset()."
    )


def locate(
    path: str | Path | None = None,
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    url: str = FASHION_MNIST_URL,
    checksums: Mapping[str, tuple[int, str]] = CHECKSUMS,
) -> tuple[Path, str]:
    """Return ``(folder, source)`` of the four Fashion-MNIST files; see the module docstring for the order."""
    if path is not None:
        folder = Path(path).expanduser()
        if not _has_all_files(folder):
            missing = [n for n in FILES.values() if not (folder / n).is_file()]
            raise InputError(f"`path` {folder} lacks {', '.join(missing)}; it must hold the four IDX .gz files.")
        return folder, "path"
    folder = debian_dir()
    if folder is not None:
        return folder, "debian"
    cache = resolve_cache_dir(cache_dir) / "fashion-mnist"
    if _has_all_files(cache):
        return cache, "cache"
    if not download:
        raise _no_data_error(cache)
    _download_all(url, cache, checksums)
    return cache, "download"


def load_fashion_mnist(
    path: str | Path | None = None,
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    url: str = FASHION_MNIST_URL,
    checksums: Mapping[str, tuple[int, str]] = CHECKSUMS,
) -> TrainTestSplit:
    """The full Fashion-MNIST (60,000 train / 10,000 test) as float32 images ``(N, 1, 28, 28)`` in [0, 1].

    ``checksums`` maps each file name to its decompressed ``(size, sha256)``; downloads that do not
    match are discarded. ``meta`` records ``source`` (path / debian / cache / download) and ``folder``.
    """
    folder, source = locate(path, download=download, cache_dir=cache_dir, url=url, checksums=checksums)
    X_train, y_train, X_test, y_test = read_raw(folder)
    return TrainTestSplit(
        images_to_float(X_train, X_train.shape[1]),
        y_train.astype(np.int64),
        images_to_float(X_test, X_test.shape[1]),
        y_test.astype(np.int64),
        CLASS_NAMES,
        "fashion-mnist",
        {"source": source, "folder": str(folder)},
    )


def _balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if members.size < per_class:
            raise InputError(f"class {cls} has only {members.size} examples; lower the per-class count below that.")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def build_subset(
    out: str | Path,
    *,
    path: str | Path | None = None,
    n_train_per_class: int = 300,
    n_test_per_class: int = 100,
    seed: int = 0,
) -> Path:
    """Write a balanced, seeded subset of the full Fashion-MNIST to the ``.npz`` file ``out``.

    Per class, ``n_train_per_class`` training and ``n_test_per_class`` test images are drawn without
    replacement by ``numpy.random.default_rng(seed)`` (train first, classes in order). The file holds
    uint8 ``X_train, y_train, X_test, y_test`` and the original row indices ``train_index, test_index``.
    The shipped file was made by ``build_subset(out, seed=0)`` from the Debian package's files.
    """
    folder, _ = locate(path)
    X_train, y_train, X_test, y_test = read_raw(folder)
    rng = np.random.default_rng(seed)
    train_index = _balanced_indices(y_train, n_train_per_class, rng)
    test_index = _balanced_indices(y_test, n_test_per_class, rng)
    with atomic_open(out, "wb") as handle:
        np.savez_compressed(
            handle,
            X_train=X_train[train_index],
            y_train=y_train[train_index],
            X_test=X_test[test_index],
            y_test=y_test[test_index],
            train_index=train_index,
            test_index=test_index,
            seed=np.int64(seed),
        )
    return Path(out)


def load_fashion_mnist_subset() -> TrainTestSplit:
    """The shipped balanced Fashion-MNIST subset: 3,000 train / 1,000 test, float32 ``(N, 1, 28, 28)``.

    ``meta["train_index"]`` / ``meta["test_index"]`` are the rows of the full training / test set.
    """
    with resources.as_file(resources.files(__package__) / "data" / SUBSET_FILE) as file, np.load(file) as data:
        arrays = {key: data[key] for key in data.files}
    return TrainTestSplit(
        images_to_float(arrays["X_train"], 28),
        arrays["y_train"].astype(np.int64),
        images_to_float(arrays["X_test"], 28),
        arrays["y_test"].astype(np.int64),
        CLASS_NAMES,
        "fashion-mnist-subset",
        {
            "source": "package data",
            "train_index": arrays["train_index"],
            "test_index": arrays["test_index"],
            "seed": int(arrays["seed"]),
        },
    )

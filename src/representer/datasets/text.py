"""A lowercase word tokenizer and a vocabulary that encodes texts to padded id arrays."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from .._validation import check_positive
from ..errors import InputError

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words (with an optional ``'s``-style suffix) and single symbols."""
    return _TOKEN.findall(text.lower())


class Vocabulary:
    """Token ↔ id map with ``<pad> = 0`` and ``<unk> = 1``; other ids follow descending count, then token."""

    pad_id = 0
    unk_id = 1

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:2]) != [PAD, UNK]:
            raise InputError(f"`tokens` must start with {PAD!r}, {UNK!r}; got {list(tokens[:2])}.")
        if len(set(tokens)) != len(tokens):
            raise InputError("`tokens` contains duplicates; each token needs exactly one id.")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 2, max_size: int | None = 20_000) -> Vocabulary:
        """Vocabulary of the tokens seen at least ``min_count`` times, at most ``max_size`` ids in all."""
        check_positive(min_count, "min_count")
        if max_size is not None and max_size < 3:
            raise InputError(f"`max_size` must be >= 3 (pad, unk and one token) or None; got {max_size}.")
        counts = Counter(token for text in texts for token in tokenize(text))
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        keep = ranked if max_size is None else ranked[: max_size - 2]
        return cls([PAD, UNK, *keep])

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text``; unknown tokens map to ``unk_id``."""
        return [self.index.get(token, self.unk_id) for token in tokenize(text)]

    def encode(self, texts: Sequence[str], *, max_length: int | None = None) -> dict[str, np.ndarray]:
        """``{"input_ids": (N, L) int64, "lengths": (N,) int64}``, right-padded with ``pad_id``.

        Texts are truncated to ``max_length`` tokens; ``L`` is the longest kept length. A text with
        no tokens is encoded as a single ``<unk>`` so that every length is at least 1.
        """
        if max_length is not None:
            check_positive(max_length, "max_length")
        sequences = [self.ids(text)[:max_length] or [self.unk_id] for text in texts]
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        input_ids = np.full((len(sequences), int(lengths.max(initial=1))), self.pad_id, dtype=np.int64)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = seq
        return {"input_ids": input_ids, "lengths": lengths}

"""Seeded corruptions of training data used by the papers' evaluation protocols.

Every function returns the corrupted copy together with the indices it changed, and never modifies
its input. Label flips always move a label to a *different* class: with ``K`` classes the new label
is ``(y + s) mod K`` with ``s`` uniform on ``{1, …, K−1}``, i.e. uniform among the other classes
(for ``K = 2`` this is ``1 − y``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import as_float_array, as_labels
from ..errors import InputError

DEFAULT_SUPERCLASS_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def _check_fraction(value: float, name: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise InputError(f"`{name}` must be a probability in [0, 1]; got {value!r}.")
    return v


def _check_n_classes(n_classes: int) -> int:
    if int(n_classes) != n_classes or n_classes < 2:
        raise InputError(f"`n_classes` must be an integer >= 2; got {n_classes!r}.")
    return int(n_classes)


def _move_to_other_class(y: np.ndarray, rows: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    noisy = y.copy()
    noisy[rows] = (y[rows] + rng.integers(1, n_classes, size=rows.size)) % n_classes
    return noisy


def flip_labels(y: Any, fraction: float, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(fraction · n)`` labels (RPS / RPS-LJE debugging protocol).

    The flipped points are the first ``round(fraction · n)`` entries of ``rng.permutation(n)`` with
    ``rng = numpy.random.default_rng(seed)`` (Python's ``round``: ties go to the even count). Returns
    ``(y_noisy, flipped_indices)`` with the indices sorted ascending.
    """
    n_classes = _check_n_classes(n_classes)
    labels = as_labels(y, "y", n_classes=n_classes)
    fraction = _check_fraction(fraction, "fraction")
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.permutation(labels.size)[: round(fraction * labels.size)])
    return _move_to_other_class(labels, flipped, n_classes, rng), flipped


def bernoulli_flip_labels(y: Any, p: float = 0.3, n_classes: int = 10, seed: int = 420) -> tuple[np.ndarray, np.ndarray]:
    """Flip each label independently with probability ``p`` (DualView's label-poisoning protocol).

    Point ``i`` is flipped when ``u_i < p`` for ``u = default_rng(seed).random(n)``, so the number of
    flips is Binomial(n, p). Returns ``(y_noisy, flipped_indices)`` (sorted).
    """
    n_classes = _check_n_classes(n_classes)
    labels = as_labels(y, "y", n_classes=n_classes)
    p = _check_fraction(p, "p")
    rng = np.random.default_rng(seed)
    flipped = np.flatnonzero(rng.random(labels.size) < p)
    return _move_to_other_class(labels, flipped, n_classes, rng), flipped


#: Fashion-MNIST's confusable classes: each class to the one it is most often mistaken for
#: (T-shirt ↔ Shirt, Pullover ↔ Coat, Trouser → Dress, Dress → T-shirt, Sandal → Sneaker,
#: Sneaker → Ankle boot, Ankle boot → Sneaker, Bag → Shirt), for asymmetric label noise.
FASHION_MNIST_CONFUSABLE = {0: 6, 1: 3, 2: 4, 3: 0, 4: 2, 5: 7, 6: 0, 7: 9, 8: 6, 9: 7}


def confusable_flip_labels(y: Any, fraction: float, mapping: dict[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric noise: move exactly ``round(fraction · n)`` labels ``c`` to ``mapping[c]``.

    The points are the first ``round(fraction · n)`` of ``default_rng(seed).permutation(n)``, as in
    :func:`flip_labels`; ``mapping`` must send every class present to a different class. Returns
    ``(y_noisy, flipped_indices)`` (sorted).
    """
    labels = as_labels(y, "y")
    fraction = _check_fraction(fraction, "fraction")
    bad = sorted(int(c) for c in np.unique(labels) if int(c) not in mapping or int(mapping[int(c)]) == int(c))
    if bad:
        raise InputError(f"`mapping` must send every class to another class; classes {bad} are missing or map to themselves.")
    flipped = np.sort(np.random.default_rng(seed).permutation(labels.size)[: round(fraction * labels.size)])
    noisy = labels.copy()
    noisy[flipped] = [int(mapping[int(c)]) for c in labels[flipped]]
    return noisy, flipped


def superclass_labels(y: Any, pairs: Sequence[Sequence[int]] = DEFAULT_SUPERCLASS_PAIRS) -> np.ndarray:
    """Map each class to the index of the group in ``pairs`` that contains it (DualView's subclass test).

    With the default ``((0, 1), (2, 3), …, (8, 9))`` class ``c`` becomes ``c // 2``. The groups must
    be disjoint and cover every label present in ``y``.
    """
    labels = as_labels(y, "y")
    mapping: dict[int, int] = {}
    for group_id, group in enumerate(pairs):
        for cls in group:
            if int(cls) in mapping:
                raise InputError(f"`pairs` lists class {cls} in two groups; the groups must be disjoint.")
            mapping[int(cls)] = group_id
    missing = sorted(set(np.unique(labels).tolist()) - mapping.keys())
    if missing:
        raise InputError(f"`pairs` does not cover the classes {missing} present in `y`; add them to a group.")
    lookup = np.full(max(mapping) + 1, -1, dtype=np.int64)
    lookup[list(mapping)] = list(mapping.values())
    return lookup[labels]


def _as_images(images: Any, name: str) -> np.ndarray:
    """A float32 copy of ``images``, which must be ``(N, C, H, W)`` or ``(N, H, W)``."""
    arr = np.array(as_float_array(images, name, dtype=np.float32), copy=True)
    if arr.ndim not in (3, 4):
        raise InputError(
            f"`{name}` must have shape (N, C, H, W) or (N, H, W); got {arr.shape}. Reshape flat rows first, "
            "e.g. X.reshape(-1, 1, 8, 8)."
        )
    return arr


def mark_geometry(height: int, width: int) -> tuple[int, int]:
    """``(frame_width, square_size)`` of the mark for an ``height × width`` image.

    A 1-pixel frame and a centre square of side ``max(2, round(min(height, width) / 7))``: 2×2 at
    8×8 and 4×4 at 28×28. (DualView used a 2-pixel frame and a 6×6 square on 28×28 and 32×32.)
    """
    return 1, max(2, round(min(height, width) / 7))


def add_mark(
    images: Any,
    *,
    value: float | None = None,
    frame_width: int | None = None,
    square_size: int | None = None,
) -> np.ndarray:
    """Return a copy of ``images`` with DualView's domain-mismatch mark: a frame on all four borders
    plus a centred square, set to ``value`` in channel 0 and to 0 in the other channels.

    ``images`` is ``(N, C, H, W)`` or ``(N, H, W)`` (the output keeps the input's shape). ``value``
    defaults to the largest intensity in ``images``; sizes default to :func:`mark_geometry`.
    """
    given = _as_images(images, "images")
    arr = given[:, None] if given.ndim == 3 else given
    height, width = arr.shape[2:]
    default_frame, default_square = mark_geometry(height, width)
    frame = default_frame if frame_width is None else int(frame_width)
    square = default_square if square_size is None else int(square_size)
    if frame < 1 or square < 1 or 2 * frame >= min(height, width) or square > min(height, width):
        raise InputError(f"`frame_width`={frame} and `square_size`={square} do not fit a {height}×{width} image.")
    mask = np.zeros((height, width), dtype=bool)
    mask[:frame, :] = mask[-frame:, :] = mask[:, :frame] = mask[:, -frame:] = True
    top, left = (height - square) // 2, (width - square) // 2
    mask[top : top + square, left : left + square] = True
    fill = float(arr.max()) if value is None else float(value)
    arr[:, 0, mask] = fill
    arr[:, 1:, mask] = 0.0
    return arr[:, 0] if given.ndim == 3 else arr


def mark_class(
    X: Any,
    y: Any,
    cls: int = 2,
    prob: float = 0.3,
    seed: int = 420,
    *,
    value: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mark each image of class ``cls`` independently with probability ``prob`` (DualView's domain mismatch).

    Point ``i`` is marked when ``y_i = cls`` and ``u_i < prob`` for ``u = default_rng(seed).random(n)``.
    ``value`` defaults to the largest intensity of the whole ``X``. Returns ``(X_marked,
    marked_indices)``; mark the test images with :func:`add_mark`.
    """
    out = _as_images(X, "X")
    labels = as_labels(y, "y", n=out.shape[0])
    prob = _check_fraction(prob, "prob")
    draws = np.random.default_rng(seed).random(labels.size)
    marked = np.flatnonzero((labels == cls) & (draws < prob))
    if marked.size:
        out[marked] = add_mark(out[marked], value=float(out.max()) if value is None else value)
    return out, marked

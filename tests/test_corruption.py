import numpy as np
import pytest

from representer.errors import InputError
from representer.evaluation.corruption import (
    add_mark,
    bernoulli_flip_labels,
    flip_labels,
    mark_class,
    mark_geometry,
    superclass_labels,
)


@pytest.fixture
def labels():
    return np.random.default_rng(1).integers(0, 10, size=1001)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3, 0.4995, 1.0])
def test_flip_labels_flips_exactly_round_fraction_n_to_other_classes(labels, fraction):
    noisy, flipped = flip_labels(labels, fraction, 10, seed=3)
    assert flipped.size == round(fraction * labels.size)
    changed = np.flatnonzero(noisy != labels)
    np.testing.assert_array_equal(changed, flipped)
    assert noisy.min() >= 0 and noisy.max() <= 9


def test_flip_labels_is_seeded_and_does_not_touch_input(labels):
    before = labels.copy()
    a = flip_labels(labels, 0.3, 10, seed=7)
    b = flip_labels(labels, 0.3, 10, seed=7)
    c = flip_labels(labels, 0.3, 10, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    np.testing.assert_array_equal(labels, before)


def test_flip_labels_new_class_is_uniform_among_the_others():
    y = np.zeros(30_000, dtype=np.int64)
    noisy, _ = flip_labels(y, 1.0, 4, seed=0)
    counts = np.bincount(noisy, minlength=4)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:] / y.size, 1 / 3, atol=0.01)


def test_binary_flip_is_one_minus_y():
    y = np.random.default_rng(0).integers(0, 2, size=200)
    noisy, flipped = flip_labels(y, 0.25, 2, seed=0)
    np.testing.assert_array_equal(noisy[flipped], 1 - y[flipped])


def test_bernoulli_flip_count_is_binomial_and_changes_every_flipped_label():
    y = np.random.default_rng(2).integers(0, 10, size=20_000)
    noisy, flipped = bernoulli_flip_labels(y, 0.3, 10, seed=420)
    np.testing.assert_array_equal(np.flatnonzero(noisy != y), flipped)
    assert abs(flipped.size - 6000) < 4 * np.sqrt(20_000 * 0.3 * 0.7)
    again, flipped_again = bernoulli_flip_labels(y, 0.3, 10, seed=420)
    np.testing.assert_array_equal(again, noisy)


def test_flip_rejects_bad_arguments(labels):
    with pytest.raises(InputError, match="fraction"):
        flip_labels(labels, 1.5, 10)
    with pytest.raises(InputError, match="n_classes"):
        flip_labels(labels, 0.1, 1)
    with pytest.raises(InputError, match="y"):
        flip_labels(labels, 0.1, 5)


def test_superclass_labels_default_pairs_and_custom_groups():
    y = np.arange(10)
    np.testing.assert_array_equal(superclass_labels(y), y // 2)
    np.testing.assert_array_equal(superclass_labels([3, 0, 2], pairs=((2, 3), (0, 1))), [0, 1, 0])
    with pytest.raises(InputError, match="disjoint"):
        superclass_labels(y, pairs=((0, 1), (1, 2)))
    with pytest.raises(InputError, match=r"\[9\]"):
        superclass_labels(y, pairs=((0, 1, 2, 3, 4, 5, 6, 7, 8),))


def test_mark_geometry_scales_with_image_size():
    assert mark_geometry(8, 8) == (1, 2)
    assert mark_geometry(28, 28) == (1, 4)


def test_add_mark_sets_frame_and_centre_square_8x8():
    images = np.full((2, 1, 8, 8), 0.25, dtype=np.float32)
    images[1, 0, 0, 0] = 0.9
    marked = add_mark(images)
    expected = np.zeros((8, 8), dtype=bool)
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = True
    expected[3:5, 3:5] = True
    for img in marked[:, 0]:
        np.testing.assert_array_equal(img == np.float32(0.9), expected)
    assert images[0, 0, 0, 0] == 0.25


def test_add_mark_28x28_square_is_4x4_and_colour_goes_to_channel_0():
    images = np.full((1, 3, 28, 28), 0.5, dtype=np.float32)
    marked = add_mark(images, value=1.0)
    assert marked[0, 0, 12:16, 12:16].min() == 1.0
    assert marked[0, 0, 11, 12] == 0.5 and marked[0, 0, 16, 16] == 0.5
    assert np.all(marked[0, 1:, 12:16, 12:16] == 0.0) and np.all(marked[0, 1:, 0, :] == 0.0)
    assert add_mark(images[:, 0]).shape == (1, 28, 28)


def test_mark_class_marks_only_the_class_with_seeded_choice():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 0.5, size=(600, 1, 8, 8)).astype(np.float32)
    X[0, 0, 4, 4] = 1.0
    y = rng.integers(0, 5, size=600)
    marked_X, marked = mark_class(X, y, cls=2, prob=0.3, seed=420)
    assert np.all(y[marked] == 2)
    assert 0 < marked.size < (y == 2).sum()
    changed = np.flatnonzero(np.any(marked_X != X, axis=(1, 2, 3)))
    np.testing.assert_array_equal(changed, marked)
    assert np.all(marked_X[marked, 0, 0, :] == 1.0)
    again, marked_again = mark_class(X, y, cls=2, prob=0.3, seed=420)
    np.testing.assert_array_equal(marked_again, marked)
    with pytest.raises(InputError, match="reshape"):
        mark_class(X.reshape(600, 64), y)

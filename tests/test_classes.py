"""ClassMapping: class ids ↔ names, the same for the Python API, the command line and saved runs."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

import representer as rp
from representer.classes import ClassMapping, read_labels
from representer.errors import InputError, StaleStateError


def test_encode_and_decode():
    classes = ClassMapping(("cat", "dog", "eel"))
    np.testing.assert_array_equal(classes.encode(["eel", "cat", "eel"]), [2, 0, 2])
    np.testing.assert_array_equal(classes.encode(np.array([2, 1])), [2, 1])
    np.testing.assert_array_equal(classes.encode(np.array([1.0, 0.0])), [1, 0])
    assert classes.decode([2, 0]) == ["eel", "cat"] and classes.name(1) == "dog" and len(classes) == 3
    assert ClassMapping.from_dict(classes.to_dict()) == classes


def test_names_are_never_renumbered_by_what_is_present():
    """A class absent from the data keeps its id: 'eel' is 2 even without any 'dog'."""
    classes = ClassMapping(("cat", "dog", "eel"))
    np.testing.assert_array_equal(classes.encode(["cat", "eel"]), [0, 2])
    assert ClassMapping.for_labels(["cat", "eel"], 3, ["cat", "dog", "eel"]).encode(["eel"])[0] == 2
    with pytest.raises(InputError, match=r"The labels name 2 classes \(\['cat', 'eel'\]\) but the model has 3"):
        ClassMapping.for_labels(np.array(["cat", "eel"]), 3)


def test_sorted_labels_when_their_count_matches_the_model():
    classes = ClassMapping.for_labels(np.array(["pos", "neg", "pos"]), 2)
    assert classes.names == ("neg", "pos") and classes.origin == "sorted labels"
    assert ClassMapping.for_labels(np.array([0, 2, 1]), 3) == ClassMapping(("0", "1", "2"), "class ids")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["cat", "zebra"], "labels ['zebra'] that are not class names"),
        (np.array([0, 3]), "class ids in [0, 3] but there are 3 classes"),
        (np.array([0.5]), "non-integer numbers"),
        (np.array([0.0, np.nan]), "1 missing (NaN) labels"),
        (np.array(["cat", None], dtype=object), "1 missing labels"),
        (np.array([[0, 1]]), "1-d vector"),
        (np.array([], dtype=int), "is empty"),
        (np.array([b"x"], dtype=object), "integer class ids or class names"),
    ],
)
def test_bad_labels_are_refused(labels, message):
    with pytest.raises(InputError) as info:
        ClassMapping(("cat", "dog", "eel")).encode(labels)
    assert message in str(info.value)


def test_bad_names_are_refused():
    for names, message in ((("a", "a"), "more than once"), ((), "non-empty list"), (("a", ""), "non-empty strings")):
        with pytest.raises(InputError, match=message):
            ClassMapping(names)


def test_read_labels_keeps_integer_ids_without_names():
    ids, classes = read_labels(np.array([0, 4]), "y", None)
    assert classes is None and ids.tolist() == [0, 4]
    ids, classes = read_labels(np.array(["b", "a", "b"]), "y", None)
    assert classes.names == ("a", "b") and ids.tolist() == [1, 0, 1]
    with pytest.raises(InputError, match="negative class ids"):
        read_labels(np.array([-1, 0]), "y", None)


def test_the_explainer_records_saves_and_checks_its_classes(tmp_path):
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(3, 3)).eval()
    X, names = rng.normal(size=(12, 3)).astype(np.float32), np.array(["cat", "dog", "eel"] * 4)
    explainer = rp.FeatureSimilarity(net, class_names=["cat", "dog", "eel"], n_neighbors=2).fit(X, names)
    np.testing.assert_array_equal(explainer.y_, np.tile([0, 1, 2], 4))
    assert explainer.classes_ == ClassMapping(("cat", "dog", "eel"))
    same = rp.FeatureSimilarity(net, n_neighbors=2).fit(X, np.tile([0, 1, 2], 4))
    np.testing.assert_array_equal(explainer.explain(X[:3], target="dog").excitatory.scores,
                                  same.explain(X[:3], target=1).excitatory.scores)
    np.testing.assert_array_equal(explainer.explain(X[:3], target="label", y=["eel", "cat", "dog"]).target, [2, 0, 1])
    loaded = rp.load(explainer.save(tmp_path / "s"), net, class_names=["cat", "dog", "eel"])
    assert loaded.classes_ == explainer.classes_
    with pytest.raises(StaleStateError, match="differ from the class names"):
        rp.load(tmp_path / "s", net, class_names=["dog", "cat", "eel"])


def test_string_labels_without_names_are_numbered_in_sorted_order_as_on_the_command_line():
    rng = np.random.default_rng(1)
    net = nn.Sequential(nn.Linear(3, 2)).eval()
    X = rng.normal(size=(8, 3)).astype(np.float32)
    explainer = rp.GradientSimilarity(net).fit(X, ["pos", "neg"] * 4)
    assert explainer.classes_.origin == "sorted labels" and explainer.y_.tolist() == [1, 0] * 4

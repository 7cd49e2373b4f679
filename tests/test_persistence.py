"""Saving and loading explainers: identical explanations, refusal of another model or corrupt state."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import representer
from representer import RPSL2, Features, TorchClassifier, load
from representer.errors import RepresenterError, StaleStateError
from representer.methods.persistence import json_fingerprint


@pytest.fixture(scope="module")
def saved(digits_mlp, tmp_path_factory):
    explainer = RPSL2(TorchClassifier(digits_mlp.net), block_size=500, test_batch_size=64)
    explainer.fit(digits_mlp.X_train, digits_mlp.y_train, eval_X=digits_mlp.X_test)
    folder = explainer.save(tmp_path_factory.mktemp("rps") / "run")
    return explainer, folder


def _same_explanations(a, b, X):
    ea, eb = a.explain(X, top_k=7), b.explain(X, top_k=7)
    for side in ("excitatory", "inhibitory"):
        np.testing.assert_array_equal(getattr(ea, side).indices, getattr(eb, side).indices)
        np.testing.assert_array_equal(getattr(ea, side).scores, getattr(eb, side).scores)
    np.testing.assert_array_equal(ea.target, eb.target)
    assert ea.meta == eb.meta
    np.testing.assert_array_equal(a.attribute(X), b.attribute(X))


def test_round_trip_gives_identical_explanations(digits_mlp, saved):
    explainer, folder = saved
    loaded = load(folder, TorchClassifier(digits_mlp.net))
    assert type(loaded) is RPSL2 and loaded.get_params() == explainer.get_params()
    for name in ("alpha_", "theta_", "teacher_", "train_features_", "y_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(explainer, name))
    assert json.loads(json.dumps(explainer.fit_report_)) == loaded.fit_report_
    X = digits_mlp.X_test[:40]
    _same_explanations(explainer, loaded, X)
    np.testing.assert_array_equal(loaded.self_influence(), explainer.self_influence())


def test_load_accepts_the_raw_network(digits_mlp, saved):
    explainer, folder = saved
    _same_explanations(explainer, representer.load(folder, digits_mlp.net), digits_mlp.X_test[:5])


def test_saved_folder_is_safetensors_and_json_only(saved):
    _, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "state.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["class"] == "RPSL2" and config["versions"]["representer"] == representer.__version__
    assert set(load_file(str(folder / "state.safetensors"))) == {"alpha_", "theta_", "teacher_", "train_features_", "y_"}


def test_a_different_model_is_refused(digits_mlp, saved):
    _, folder = saved
    other = copy.deepcopy(digits_mlp.net)
    with torch.no_grad():
        other.classifier.weight[0, 0] += 1e-3
    with pytest.raises(StaleStateError, match="different model"):
        load(folder, other)


def test_corrupt_state_is_refused(saved, digits_mlp, tmp_path):
    _, folder = saved
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "config.json").write_text((folder / "config.json").read_text())
    arrays = load_file(str(folder / "state.safetensors"))
    arrays["train_features_"] = arrays["train_features_"] + 1e-9
    save_file(arrays, str(copy_dir / "state.safetensors"))
    with pytest.raises(StaleStateError, match="corrupt"):
        load(copy_dir, digits_mlp.net)


def test_missing_folder_and_unknown_class(saved, digits_mlp, tmp_path):
    with pytest.raises(RepresenterError, match="config.json"):
        load(tmp_path / "nowhere", digits_mlp.net)
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["class"] = "NoSuchExplainer"
    config["fingerprints"]["entries"]["class"] = json_fingerprint("NoSuchExplainer")  # as a newer version would write it
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "state.safetensors").write_bytes((folder / "state.safetensors").read_bytes())
    with pytest.raises(RepresenterError, match="NoSuchExplainer"):
        load(bad, digits_mlp.net)


def test_binary_features_round_trip_in_float64(tmp_path):
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(30, 4))
    model = Features(rng.normal(size=(1, 4)), rng.normal(size=1))
    explainer = RPSL2(model, lam=0.01, dtype="float64", self_influence_mode="teacher").fit(phi, (phi[:, 0] > 0).astype(int))
    loaded = load(explainer.save(tmp_path / "binary"), model)
    assert loaded.get_params() == explainer.get_params()
    _same_explanations(explainer, loaded, rng.normal(size=(6, 4)))
    np.testing.assert_array_equal(loaded.self_influence(), explainer.self_influence())
    with pytest.raises(StaleStateError):
        load(tmp_path / "binary", Features(model.weight, model.bias + 1))

"""The explainers' one ``progress`` switch: bars on the long steps of head methods' fit and on scoring."""

from __future__ import annotations

import numpy as np
import pytest

import representer as rp
from representer._progress import reporting

STEPS = {
    "RPSL2": ("softmax head refit", rp.RPSL2),
    "RPSLJE": ("RPS-LJE weights", rp.RPSLJE),
    "InfluenceFunction": ("self-influence", rp.InfluenceFunction),
    "RelatIF": ("self-influence", rp.RelatIF),
}


@pytest.fixture(scope="module")
def head(digits_mlp):
    adapter = rp.TorchClassifier(digits_mlp.net)
    return rp.Features(adapter.weight, adapter.bias), adapter.features(digits_mlp.X_train), digits_mlp.y_train, adapter.features(digits_mlp.X_test[:20])


@pytest.mark.parametrize("name", sorted(STEPS))
def test_progress_true_draws_bars_for_fit_and_explain_and_false_or_default_draws_none(capfd, head, name):
    step, cls = STEPS[name]
    model, phi, y, phi_t = head
    explainer = cls(model, progress=True).fit(phi, y)
    assert step in capfd.readouterr().err
    explainer.explain(phi_t, top_k=3)
    assert "scoring" in capfd.readouterr().err
    for progress in (False, None):
        cls(model, progress=progress).fit(phi, y).explain(phi_t, top_k=3)
        assert capfd.readouterr().err == ""


def test_the_command_line_spinner_hears_the_same_steps_unless_progress_is_false(head):
    model, phi, y, phi_t = head
    seen: list[str] = []
    with reporting(lambda desc, done, total: seen.append(desc)):
        rp.RPSL2(model).fit(phi, y).explain(phi_t, top_k=3)
    assert "softmax head refit" in seen and "scoring" in seen
    seen.clear()
    with reporting(lambda desc, done, total: seen.append(desc)):
        rp.RPSL2(model, progress=False).fit(phi, y).explain(phi_t, top_k=3)
    assert seen == []


def test_progress_changes_no_result_and_keeps_a_fit(head):
    model, phi, y, phi_t = head
    quiet = rp.RPSL2(model, progress=False).fit(phi, y)
    shown = rp.RPSL2(model, progress=True).fit(phi, y)
    np.testing.assert_array_equal(quiet.alpha_, shown.alpha_)
    quiet.set_params(progress=True)
    assert hasattr(quiet, "kernel_")

"""find_label_issues on a model: checkpoints, trajectories, cross-fitting, the auto route, invariances, errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from torch import nn

import representer as rp
from representer.checkpoints import load_checkpoints, log_grid_weights, log_schedule_epochs
from representer.crossfit import crossfit_probabilities, fold_ids
from representer.errors import InputError, ModelError, StaleStateError
from representer.trajectory import boosting_trajectory, label_statistics

xgb = pytest.importorskip("xgboost")


# ----------------------------------------------------------------------------------- a tiny noisy problem
def _blobs(n=240, k=3, d=20, flip=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centers = 4 * rng.normal(size=(k, d))
    y_clean = rng.integers(0, k, size=n)
    X = (centers[y_clean] + rng.normal(size=(n, d))).astype(np.float32)
    flipped = rng.permutation(n)[: int(flip * n)]
    y = y_clean.copy()
    y[flipped] = (y[flipped] + rng.integers(1, k, size=flipped.size)) % k
    mask = np.zeros(n, dtype=bool)
    mask[flipped] = True
    return X, y, mask


def _net(d=20, k=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, k))


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """A net trained until it fits every noisy label, recorded every epoch."""
    X, y, mask = _blobs()
    folder = tmp_path_factory.mktemp("checkpoints")
    net = _net()
    recorder = rp.CheckpointRecorder(folder, schedule="every")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for epoch in range(1, 301):
        opt.zero_grad()
        nn.functional.cross_entropy(net(Xt), yt).backward()
        opt.step()
        if epoch in (1, 3, 10, 30, 100, 300):
            recorder.save(net, epoch=epoch, learning_rate=1e-2)
    return net.eval(), X, y, mask, folder


def _roc(issues, mask):
    from representer.evaluation.metrics import roc_auc

    rank_score = np.empty(len(issues))
    rank_score[issues.indices] = -np.arange(len(issues))
    return roc_auc(rank_score, mask)


# ----------------------------------------------------------------------------------- recorder
def test_log_schedule_and_weights():
    assert log_schedule_epochs(70) == [1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64]
    # recorded on the schedule: uniform; every epoch: the log-spaced ones; sparse: nearest in log epoch
    np.testing.assert_allclose(log_grid_weights([1, 2, 3, 4, 6, 8]), np.full(6, 1 / 6))
    every = log_grid_weights(list(range(1, 12)))
    np.testing.assert_allclose(every, np.isin(np.arange(1, 12), [1, 2, 3, 4, 6, 8, 11]) / 7)
    np.testing.assert_allclose(log_grid_weights([10, 20, 30]), [7 / 10, 2 / 10, 1 / 10])
    np.testing.assert_allclose(log_grid_weights([0, 2]), [0.0, 1.0])
    for bad in ([], [2, 1], [0], [-1, 3]):
        with pytest.raises(InputError, match="increasing"):
            log_grid_weights(bad)


def test_recorder_round_trip_and_schedule(tmp_path):
    net = _net()
    recorder = rp.CheckpointRecorder(tmp_path / "log")
    written = [recorder.save(net, epoch=e, learning_rate=0.1 / e) is not None for e in range(1, 7)]
    assert written == [True, True, True, True, False, True] and len(recorder) == 5
    assert recorder.save(net, epoch=7, learning_rate=0.01, force=True) is not None
    loaded = load_checkpoints(tmp_path / "log")
    assert [c.epoch for c in loaded] == [1, 2, 3, 4, 6, 7]
    assert [c.learning_rate for c in loaded] == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025, 0.1 / 6, 0.01])
    for name, value in net.state_dict().items():
        torch.testing.assert_close(loaded[0].state[name], value)
    head_only = rp.CheckpointRecorder(tmp_path / "head", schedule="every", params=["2"])
    head_only.save(net, epoch=1, learning_rate=1.0)
    assert sorted(load_checkpoints(tmp_path / "head")[0].state) == ["2.bias", "2.weight"]


def test_recorder_refuses_bad_use(tmp_path):
    net = _net()
    recorder = rp.CheckpointRecorder(tmp_path, schedule="every")
    recorder.save(net, epoch=2, learning_rate=0.1)
    with pytest.raises(InputError, match="already holds a recording"):
        rp.CheckpointRecorder(tmp_path)
    with pytest.raises(InputError, match="increase"):
        recorder.save(net, epoch=2, learning_rate=0.1)
    with pytest.raises(InputError, match="learning_rate"):
        recorder.save(net, epoch=3, learning_rate=0.0)
    with pytest.raises(InputError, match="schedule"):
        rp.CheckpointRecorder(tmp_path / "x", schedule="sometimes")
    with pytest.raises(InputError, match="matches no entry"):
        rp.CheckpointRecorder(tmp_path / "y", params=["nothing"]).save(net, epoch=1, learning_rate=1.0)
    assert len(load_checkpoints(tmp_path)) == 1, "a refused save left the recording as it was"


def test_tampered_missing_or_newer_recordings_fail_loudly(tmp_path):
    net = _net()
    recorder = rp.CheckpointRecorder(tmp_path, schedule="every")
    path = recorder.save(net, epoch=1, learning_rate=0.1)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StaleStateError, match="changed since it was recorded"):
        load_checkpoints(tmp_path)
    path.unlink()
    with pytest.raises(StaleStateError, match="missing"):
        load_checkpoints(tmp_path)
    index = tmp_path / "checkpoints.json"
    record = json.loads(index.read_text())
    index.write_text(json.dumps({**record, "format": 99}))
    with pytest.raises(StaleStateError, match="newer representer"):
        load_checkpoints(tmp_path)
    index.write_text("{ torn")
    with pytest.raises(StaleStateError, match="damaged"):
        load_checkpoints(tmp_path)
    with pytest.raises(InputError, match="no checkpoint recording"):
        load_checkpoints(tmp_path / "nowhere")


def test_zoo_trainer_records_the_last_epoch(tmp_path):
    X, y, _ = _blobs(n=60)
    rp.zoo.train_classifier(_net(), X, y, epochs=5, lr=1e-2, recorder=rp.CheckpointRecorder(tmp_path))
    assert [c.epoch for c in load_checkpoints(tmp_path)] == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------------- statistics
def test_label_statistics_closed_forms():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 4))
    y = rng.integers(0, 4, size=7)
    loss, margin, residual = label_statistics(z, y)
    rows = np.arange(7)
    np.testing.assert_allclose(loss, -log_softmax(z, axis=1)[rows, y])
    others = np.where(np.eye(4, dtype=bool)[y], -np.inf, z)
    np.testing.assert_allclose(margin, z[rows, y] - others.max(axis=1))
    np.testing.assert_allclose(residual, ((softmax(z, axis=1) - np.eye(4)[y]) ** 2).sum(axis=1))
    zb, yb = rng.normal(size=(5, 1)), np.array([0, 1, 1, 0, 1])
    loss_b, margin_b, residual_b = label_statistics(zb, yb)
    two = np.column_stack([np.zeros(5), zb[:, 0]])  # p(1) = σ(z) = softmax([0, z])[1]
    np.testing.assert_allclose(loss_b, -log_softmax(two, axis=1)[np.arange(5), yb])
    np.testing.assert_allclose(margin_b, np.where(yb == 1, zb[:, 0], -zb[:, 0]))
    np.testing.assert_allclose(residual_b, (1 / (1 + np.exp(-zb[:, 0])) - yb) ** 2)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_boosting_trajectory_is_the_booster_stopped_after_each_round(task):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] > 0).astype(int) + (task == "multiclass") * (X[:, 1] > 0.5)
    model = xgb.XGBClassifier(n_estimators=9, max_depth=2, n_jobs=1, random_state=0).fit(X, y)
    trajectory = boosting_trajectory(rp.TreeEnsemble(model), X, y, rounds=[1, 4, 9])
    for row, r in enumerate([1, 4, 9]):
        margin = model.get_booster().predict(xgb.DMatrix(X), output_margin=True, iteration_range=(0, r)).reshape(len(y), -1)
        np.testing.assert_allclose(trajectory.losses[row], label_statistics(margin, y)[0], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------- rankings
def test_trajectory_sees_past_memorisation(memorised):
    net, X, y, mask, folder = memorised
    assert (rp.TorchClassifier(net).predict(X) == y).mean() == 1.0, "the fixture must memorise its noise"
    final = rp.find_label_issues(net, X, y, method="loss")
    auto = rp.find_label_issues(net, X, y, checkpoints=folder)
    assert auto.method == "trajectory-loss" and "checkpoints" in auto.reason and auto.caveat is None
    assert _roc(auto, mask) > 0.97
    assert _roc(auto, mask) > _roc(final, mask) + 0.05
    without = rp.find_label_issues(net, X, y)
    assert without.method == "cross-fit" and "memorised" in without.caveat and "CheckpointRecorder" in without.caveat


def test_auto_reads_the_margin_while_the_network_has_not_memorised(memorised):
    net, X, y, mask, folder = memorised
    early = load_checkpoints(folder)[:3]  # epochs 1, 3, 10
    stopped = copy.deepcopy(net)
    stopped.load_state_dict(early[-1].state)
    stopped.eval()
    fitted = (rp.TorchClassifier(stopped).predict(X) == y).mean()
    assert fitted < 0.95, "the network at epoch 10 must not have memorised its noise"
    auto = rp.find_label_issues(stopped, X, y, checkpoints=early)
    margin = rp.find_label_issues(stopped, X, y, checkpoints=early, method="trajectory-margin")
    assert auto.method == "trajectory-margin" and "not memorised" in auto.reason and auto.caveat is None
    assert auto.indices.tolist() == margin.indices.tolist()
    assert _roc(auto, mask) > 0.9


def test_every_route_ranks_and_the_result_indexes_like_its_indices(memorised):
    net, X, y, mask, folder = memorised
    for method in ("trajectory-loss", "trajectory-margin", "tracin", "loss", "cross-fit", "influence", "rps-l2", "rps-lje"):
        issues = rp.find_label_issues(net, X, y, checkpoints=folder if method in ("trajectory-loss", "trajectory-margin", "tracin") else None,
                                      method=method, top=20)
        assert issues.method == method and len(issues) == 20
        assert issues[0] == issues.indices[0] and list(issues)[:3] == issues.indices[:3].tolist()
        np.testing.assert_array_equal(issues[:5], issues.indices[:5])
        np.testing.assert_array_equal(np.asarray(issues), issues.indices)
        np.testing.assert_array_equal(issues.given_labels, y[issues.indices])
        assert np.all(np.diff(issues.scores) <= 0)
        assert mask[issues.indices[:10]].mean() > 0.5, f"{method} should put flipped points first here"


def test_tracin_route_over_chosen_layers_equals_tracincp(memorised):
    net, X, y, _, folder = memorised
    checkpoints = load_checkpoints(folder)
    expected = rp.TracInCP(net, params=["0"], dtype="float64").fit(
        X, y, checkpoints=[c.state for c in checkpoints], learning_rates=[c.learning_rate for c in checkpoints]
    ).self_influence()
    issues = rp.find_label_issues(net, X, y, checkpoints=folder, method="tracin", params=["0"])
    np.testing.assert_allclose(issues.scores, expected[issues.indices], rtol=1e-5)


def test_rankings_follow_the_rows_and_ignore_the_class_coding(memorised):
    net, X, y, _, folder = memorised
    order = np.random.default_rng(3).permutation(len(y))
    perm = np.array([2, 0, 1])  # class c is renamed perm[c]
    recoded = _net()
    recoded.load_state_dict(net.state_dict())
    with torch.no_grad():
        inverse = np.argsort(perm)
        recoded[2].weight.copy_(net[2].weight[inverse])
        recoded[2].bias.copy_(net[2].bias[inverse])
    recoded.eval()
    recoded_checkpoints = []
    for c in load_checkpoints(folder):
        state = dict(c.state)
        state["2.weight"], state["2.bias"] = state["2.weight"][inverse], state["2.bias"][inverse]
        recoded_checkpoints.append(rp.Checkpoint(state=state, epoch=c.epoch, learning_rate=c.learning_rate))
    for method in ("trajectory-loss", "cross-fit", "loss", "influence"):
        ck = folder if method == "trajectory-loss" else None
        base = rp.find_label_issues(net, X, y, checkpoints=ck, method=method)
        scores = np.empty(len(y))
        scores[base.indices] = base.scores
        shuffled = rp.find_label_issues(net, X[order], y[order], checkpoints=ck, method=method)
        got = np.empty(len(y))
        got[shuffled.indices] = shuffled.scores
        np.testing.assert_allclose(got, scores[order], rtol=1e-6, atol=1e-9, err_msg=f"{method}: row order")
        renamed = rp.find_label_issues(recoded, X, perm[y], checkpoints=recoded_checkpoints if ck else None, method=method)
        got = np.empty(len(y))
        got[renamed.indices] = renamed.scores
        np.testing.assert_allclose(got, scores, rtol=1e-5, atol=1e-8, err_msg=f"{method}: class coding")


def test_booster_auto_route_and_binary_coding_invariance():
    X, y3, mask = _blobs(n=300, k=2, seed=4)
    y = y3.astype(int)
    params = {"n_estimators": 30, "max_depth": 3, "base_score": 0.5, "n_jobs": 1, "random_state": 0}
    one = xgb.XGBClassifier(**params).fit(X, y)
    other = xgb.XGBClassifier(**params).fit(X, 1 - y)
    first, second = rp.find_label_issues(one, X, y), rp.find_label_issues(other, X, 1 - y)
    assert first.method == "trajectory-loss" and "boosting rounds" in first.reason
    np.testing.assert_allclose(np.sort(first.scores), np.sort(second.scores), rtol=1e-4)
    assert _roc(first, mask) > 0.9


def test_features_adapter_without_checkpoints_uses_cross_fitting():
    X, y, mask = _blobs(seed=5)
    weight = np.eye(3, 20)
    issues = rp.find_label_issues(rp.Features(weight), X.astype(np.float64), y)
    assert issues.method == "cross-fit" and "no checkpoints" in issues.reason
    assert _roc(issues, mask) > 0.9


def test_crossfit_is_held_out_and_folds_follow_the_content():
    X, y, _ = _blobs(n=100, seed=6)
    phi = X.astype(np.float64)
    ids = fold_ids(phi, y, 5, seed=0)
    order = np.random.default_rng(0).permutation(100)
    np.testing.assert_array_equal(fold_ids(phi[order], y[order], 5, seed=0), ids[order])
    for label in np.unique(y):
        counts = np.bincount(ids[y == label], minlength=5)
        assert counts.max() - counts.min() <= 1
    # independent reference: sklearn's L2 logistic regression on the other folds' z-scored features
    # (mean CE + λ‖Θ‖² = 2λ [C Σ CE + ½‖Θ‖²] with C = 1/(2λ n_fit), bias as a ones column)
    from sklearn.linear_model import LogisticRegression

    lam = 1e-2
    p = crossfit_probabilities(phi, y, 3, lam=lam)
    z = np.hstack([(phi - phi.mean(0)) / phi.std(0), np.ones((100, 1))])
    for k in range(5):
        fit = ids != k
        ref = LogisticRegression(C=1 / (2 * lam * fit.sum()), fit_intercept=False, tol=1e-10, max_iter=5000).fit(z[fit], y[fit])
        np.testing.assert_allclose(p[ids == k], ref.predict_proba(z[ids == k]), atol=1e-5)


def test_dualview_ranking_breaks_ties_by_the_margin_and_warns():
    X, y, _ = _blobs(n=80, seed=7)
    weight = np.eye(3, 20)
    dv = rp.DualView(rp.Features(weight), C=1e-6).fit(X.astype(np.float64), y)
    assert dv.fit_report_["at_bound_fraction"] == 1.0
    with pytest.warns(RuntimeWarning, match="share one dualview self-influence"):
        issues = rp.find_label_issues(dv)
    np.testing.assert_array_equal(issues.indices, np.lexsort((np.arange(80), -dv.ranking_tiebreak())))
    assert not np.array_equal(issues.indices, np.arange(80))
    routed = rp.find_label_issues(rp.Features(weight), X.astype(np.float64), y, method="dualview")
    assert routed.details["at_bound_fraction"] <= 0.5 and routed.details["C"] >= 60 / 80


# ----------------------------------------------------------------------------------- bad input
def test_bad_input_is_named(memorised, tmp_path):
    net, X, y, _, folder = memorised
    other = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    with pytest.raises(InputError, match="another architecture"):
        rp.find_label_issues(other, X, y, checkpoints=folder)
    states = [c.state for c in load_checkpoints(folder)]
    with pytest.raises(InputError, match="one learning rate per checkpoint"):
        rp.find_label_issues(net, X, y, checkpoints=states, learning_rates=[0.1])
    with pytest.raises(InputError, match="`method`"):
        rp.find_label_issues(net, X, y, method="magic")
    with pytest.raises(InputError, match="rows"):
        rp.find_label_issues(net, X, y[:-1])
    with pytest.raises(InputError, match="checkpoints="):
        rp.find_label_issues(net, X, y, method="trajectory-loss")
    with pytest.raises(InputError, match="training data"):
        rp.find_label_issues(net)
    with pytest.raises(ModelError, match="no nn.Linear"):
        rp.find_label_issues(nn.Sequential(nn.ReLU()).eval(), X, y)
    with pytest.raises(ModelError, match="training mode"):
        rp.find_label_issues(_net().train(), X, y)
    with pytest.raises(InputError, match="labels must be integers"):
        rp.find_label_issues(net, X, y + 5)
    explainer = rp.InfluenceFunction(net).fit(X, y)
    with pytest.raises(InputError, match="fitted explainer ranks the data"):
        rp.find_label_issues(explainer, X, y)
    with pytest.raises(InputError, match="`top`"):
        rp.find_label_issues(net, X, y, top=2.5)


def test_command_line_lists_every_route():
    from representer.label_routes import ROUTES
    from representer._cli_options import ROUTES as CLI_ROUTES

    assert tuple(ROUTES) == CLI_ROUTES


@pytest.mark.parametrize("kind", ["sklearn-gb", "sklearn-hgb", "lightgbm"])
def test_boosting_trajectory_matches_each_libraries_staged_predictions(kind):
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3)
    if kind == "sklearn-gb":
        model = GradientBoostingClassifier(n_estimators=7, max_depth=2, random_state=0).fit(X, y)
        staged = list(model.staged_decision_function(X))
    elif kind == "sklearn-hgb":
        model = HistGradientBoostingClassifier(max_iter=7, max_leaf_nodes=4, early_stopping=False, random_state=0).fit(X, y)
        staged = list(model.staged_decision_function(X))
    else:
        lgb = pytest.importorskip("lightgbm")
        model = lgb.LGBMClassifier(n_estimators=7, num_leaves=4, min_child_samples=5, verbose=-1, n_jobs=1).fit(X, y)
        staged = [model.predict(X, raw_score=True, num_iteration=r) for r in range(1, 8)]
    trajectory = boosting_trajectory(rp.TreeEnsemble(model), X, y, rounds=[2, 5, 7])
    for row, r in enumerate([2, 5, 7]):
        np.testing.assert_allclose(trajectory.losses[row], label_statistics(staged[r - 1], y)[0], rtol=1e-6, atol=1e-9)

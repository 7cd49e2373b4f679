"""`representer review`: export, `fit --corrections`, the retrain comparison, and the app's answers to bad requests.

One tiny run (240 digits as 8 × 8 images with named classes and 10 % flipped labels, `fit` and
`debug` through the command line) is shared by the tests of this file.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from review_helpers import MODEL_FILE, NAMES, invoke, make_run, model_args
from starlette.testclient import TestClient

from representer.errors import InputError, StaleStateError
from representer.review import open_review, read_corrections
from representer.review.app import create_app
from representer.userrun import open_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("review-cli"))


@pytest.fixture
def review(tiny):
    (tiny.run / "review.sqlite").unlink(missing_ok=True)
    opened = open_review(tiny.run)
    yield opened
    (tiny.run / "review.sqlite").unlink(missing_ok=True)


def ranked(tiny) -> list[dict]:
    return json.loads((tiny.run / "label_issues.json").read_text())["issues"]


def test_export_round_trips_into_fit_corrections(tiny, review, tmp_path):
    rows = ranked(tiny)
    a, b, c, d = (r["train_index"] for r in rows[:4])
    review.decide(a, "relabel", new_class=NAMES[tiny.y_clean[a]] if tiny.y_clean[a] != tiny.y[a] else NAMES[(tiny.y[a] + 1) % 10], base=None)
    review.decide(b, "remove", base=None)
    first = review.decide(c, "relabel", new_class="seven" if tiny.y[c] != 7 else "one", base=None)
    review.decide(c, "keep", base=first.id)  # changed their mind: keep wins, history kept
    review.decide(d, "skip", base=None)  # not a decision about the label: not exported
    result, text = invoke("review", tiny.run, "--export", tmp_path / "fixes.csv")
    assert result.exit_code == 0, result.output
    assert "1 relabelled, 1 removed, 1 kept" in text
    fixes = read_corrections(tmp_path / "fixes.csv")
    assert {r["train_index"]: r["decision"] for r in fixes.rows} == {a: "relabel", b: "remove", c: "keep"}
    new_a = fixes.rows[[r["train_index"] for r in fixes.rows].index(a)]["new_class"]

    result, _ = invoke("fit", *model_args(tiny), "--data", tiny.data, "--corrections", tmp_path / "fixes.csv", "--out", tmp_path / "fixed")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "fixed" / "run.json").read_text())
    assert info["n_train"] == len(tiny.y) - 1 and [r["train_index"] for r in info["corrections"]["rows"]] == sorted([a, b, c])
    fixed = open_run(tmp_path / "fixed", with_model=False, steps=lambda _: None)
    expected = tiny.y.copy()
    expected[a] = NAMES.index(new_a)  # the class id of the chosen *name*
    kept = np.delete(np.arange(len(tiny.y)), b)
    np.testing.assert_array_equal(fixed.data.train.y, expected[kept])
    np.testing.assert_array_equal(fixed.data.train.X, tiny.X[kept])
    assert fixed.data.train.items == [f"row {i}" for i in kept]
    result, _ = invoke("debug", tmp_path / "fixed", "--top", "20")  # the corrected run is a run like any other
    assert result.exit_code == 0, result.output
    assert "relabelled at fit" in (tmp_path / "fixed" / "report.html").read_text()

    # a second round, on the corrected run: its export maps back to the file's rows and carries the first round
    again = open_review(tmp_path / "fixed")
    point = next(r for r in json.loads((tmp_path / "fixed" / "label_issues.json").read_text())["issues"]
                 if r["item"] not in {f"row {i}" for i in (a, b, c)})
    again.decide(point["train_index"], "remove", base=None)
    moved = int(point["item"].split()[1])
    assert moved == kept[point["train_index"]]
    result, _ = invoke("review", tmp_path / "fixed", "--export", tmp_path / "round2.csv")
    assert result.exit_code == 0, result.output
    second = read_corrections(tmp_path / "round2.csv")
    assert second.train_fingerprint == fixes.train_fingerprint and second.n_train == len(tiny.y)
    assert {r["train_index"]: r["decision"] for r in second.rows} == {a: "relabel", b: "remove", c: "keep", moved: "remove"}
    result, _ = invoke("fit", *model_args(tiny), "--data", tiny.data, "--corrections", tmp_path / "round2.csv", "--out", tmp_path / "r2")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r2" / "run.json").read_text())["n_train"] == len(tiny.y) - 2


def test_a_corrections_file_for_another_run_is_refused(tiny, review, tmp_path):
    point = ranked(tiny)[0]["train_index"]
    review.decide(point, "relabel", new_class=NAMES[(tiny.y[point] + 2) % 10], base=None)
    result, _ = invoke("review", tiny.run, "--export", tmp_path / "fixes.csv")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "fixes.csv").read_text()

    other = tmp_path / "other.npz"
    with np.load(tiny.data) as arrays:
        np.savez(other, **{k: (v[1:] if k in ("X_train", "y_train") else v) for k, v in arrays.items()})
    cases = {
        "other data": (text, other, "exported from a run on other training data"),
        "other classes": (text.replace('"three", "four"', '"four", "three"'), tiny.data, "names the classes"),
        "edited row": (text.replace(f",{NAMES[tiny.y[point]]},", ",zero,", 1) if tiny.y[point] else text.replace(",zero,", ",one,", 1),
                       tiny.data, "the file belongs to other data"),
        "unknown class": (text.replace(f",{NAMES[(tiny.y[point] + 2) % 10]},", ",ten,"), tiny.data, "not class names"),
        "id and name disagree": (text.replace(f",{(tiny.y[point] + 2) % 10},{NAMES[(tiny.y[point] + 2) % 10]},",
                                              f",{(tiny.y[point] + 3) % 10},{NAMES[(tiny.y[point] + 2) % 10]},"),
                                 tiny.data, "is not the id of new_class"),
        "no header": ("\n".join(line for line in text.splitlines() if not line.startswith("#")), tiny.data, "is not a corrections file"),
        "listed twice": (text + text.splitlines()[-1] + "\n", tiny.data, "listed twice"),
    }
    for name, (content, data, message) in cases.items():
        (tmp_path / "bad.csv").write_text(content)
        result, output = invoke("fit", *model_args(tiny), "--data", data, "--corrections", tmp_path / "bad.csv", "--out", tmp_path / "x")
        assert result.exit_code == 1 and message in output, (name, output)
        assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_retrain_compares_the_given_and_the_corrected_labels_with_one_seed(tiny, review, tmp_path):
    result, text = invoke("review", tiny.run, "--train", f"{tiny.model}:train")
    assert result.exit_code == 1 and "no relabel or remove decisions yet" in text
    flips = [r["train_index"] for r in ranked(tiny) if tiny.y[r["train_index"]] != tiny.y_clean[r["train_index"]]][:8]
    for i in flips:
        review.decide(i, "relabel", new_class=NAMES[tiny.y_clean[i]], base=None)
    removed = next(r["train_index"] for r in ranked(tiny) if r["train_index"] not in flips)
    review.decide(removed, "remove", base=None)
    result, text = invoke("review", tiny.run, "--train", f"{tiny.model}:train", "--seed", "3")
    assert result.exit_code == 0, result.output
    record = json.loads((tiny.run / "retrain.json").read_text())
    assert record["relabelled"] == 8 and record["removed"] == 1 and record["seed"] == 3
    assert list(record["code"]) == [str(tiny.model.resolve())]

    namespace: dict = {}
    exec(MODEL_FILE, namespace)  # the same function, by hand: both numbers are reproduced exactly
    with np.load(tiny.data) as arrays:
        X_test, y_test = arrays["X_test"], np.array([NAMES.index(str(n)) for n in arrays["y_test"]])
    from representer.zoo import predict_logits

    y_fixed = tiny.y.copy()
    y_fixed[flips] = tiny.y_clean[flips]
    keep = np.delete(np.arange(len(y_fixed)), removed)
    for name, X, y in (("before", tiny.X, tiny.y), ("after", tiny.X[keep], y_fixed[keep])):
        accuracy = float((predict_logits(namespace["train"](X, y, 3), X_test).argmax(1) == y_test).mean())
        assert record[name]["test_accuracy"] == pytest.approx(accuracy, abs=1e-12), name
    assert record["after"]["n_train"] == len(tiny.y) - 1
    html = (tiny.run / "report.html").read_text()
    assert "Retrained with the review&#x27;s corrections" in html and f"{100 * record['after']['test_accuracy']:.2f} %" in html

    result, _ = invoke("review", tiny.run, "--train", "zoo", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert json.loads((tiny.run / "retrain.json").read_text())["epochs"] == 2
    result, text = invoke("review", tiny.run, "--train", f"{tiny.model}:nothing_here")
    assert result.exit_code == 1 and "has no 'nothing_here'" in text

    # fitting the folder again would orphan the decisions: refused unless --force, which keeps them
    result, text = invoke("fit", *model_args(tiny), "--data", tiny.data, "--out", tiny.run)
    assert result.exit_code == 1 and "holds review decisions" in text


def test_review_needs_a_ranking_and_refuses_decisions_of_another_fit(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    (run / "label_issues.json").unlink()
    with pytest.raises(InputError, match="run `representer debug"):
        open_review(run, with_model=False)
    result, text = invoke("review", run, "--no-browser")
    assert result.exit_code == 1 and "run `representer debug" in text
    shutil.copy(tiny.run / "label_issues.json", run / "label_issues.json")
    open_review(run, with_model=False).decide(ranked(tiny)[0]["train_index"], "keep", base=None)
    with np.load(tiny.data) as arrays:
        np.savez(tmp_path / "fewer.npz", **{k: (v[:-1] if k in ("X_train", "y_train") else v) for k, v in arrays.items()})
    result, _ = invoke("fit", *model_args(tiny), "--data", tmp_path / "fewer.npz", "--out", run, "--force")
    assert result.exit_code == 0, result.output
    result, _ = invoke("debug", run, "--top", "10")
    assert result.exit_code == 0, result.output
    with pytest.raises(StaleStateError, match="another fit of this run"):
        open_review(run, with_model=False)


def test_the_app_answers_bad_requests_with_a_message(tiny, review):
    client = TestClient(create_app(review, "secret"), base_url="http://127.0.0.1:8765", raise_server_exceptions=False)
    auth = {"X-Review-Token": "secret"}
    point = ranked(tiny)[0]

    def post(body, headers=auth, **kwargs):
        return client.post("/api/decisions", headers=headers, **({"json": body} if body is not None else {}), **kwargs)

    assert client.get("/api/state").status_code == 403 and client.get("/api/state?token=nope").status_code == 403
    assert client.get("/api/state?token=secret").json()["progress"]["total"] == 40
    assert client.get("/api/state", headers={**auth, "host": "attacker.example"}).status_code == 400  # DNS rebinding
    cases = [
        (client.get("/api/points/99999", headers=auth), 404, "not among the 40 ranked points"),
        (client.get("/api/points?decision=maybe", headers=auth), 400, "decision filter must be one of"),
        (client.get("/api/points?class=unicorn", headers=auth), 400, "is not a class of this run"),
        (client.get(f"/api/points/{point['train_index']}/heatmaps", headers=auth), 400, "pass the class"),
        (client.get("/static/secrets.txt", headers=auth), 404, "no file"),
        (post(None, content=b"train_index=1"), 415, "as JSON"),
        (post(None, content=b"{oops", headers={**auth, "content-type": "application/json"}), 400, "not valid JSON"),
        (post([1, 2]), 400, "must be a JSON object"),
        (post({"train_index": "7", "decision": "keep", "base": None}), 400, "train_index must be an integer"),
        (post({"train_index": point["train_index"], "decision": "keep"}), 400, "base must be the id"),
        (post({"train_index": point["train_index"], "decision": "keep", "base": None, "admin": True}), 400, "unknown fields"),
        (post({"train_index": point["train_index"], "decision": "burn", "base": None}), 400, "must be one of keep"),
        (post({"train_index": point["train_index"], "decision": "relabel", "new_class": "unicorn", "base": None}), 400, "not a class"),
        (post({"train_index": point["train_index"], "decision": "relabel", "new_class": point["given_class"], "base": None}), 400,
         "changes nothing"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["error"], (response.status_code, response.text)
        assert "Traceback" not in response.text
    ok = post({"train_index": point["train_index"], "decision": "relabel", "new_class": point["predicted_class"], "base": None})
    assert ok.status_code == 200 and ok.json()["decision"]["new_label"] == point["predicted"]
    decided = client.get("/api/points?decision=relabel", headers=auth).json()
    assert [p["train_index"] for p in decided["points"]] == [point["train_index"]] and decided["progress"]["relabel"] == 1
    of_class = client.get(f"/api/points?class={point['given_class']}&decision=all", headers=auth).json()["points"]
    assert of_class and {p["given_class"] for p in of_class} == {point["given_class"]}
    assert len(client.get("/api/points?decision=undecided", headers=auth).json()["points"]) == 39
    stale = post({"train_index": point["train_index"], "decision": "keep", "base": None})
    assert stale.status_code == 409 and stale.json()["current"]["new_class"] == point["predicted_class"]
    detail = client.get(f"/api/points/{point['train_index']}", headers=auth).json()
    assert detail["decision"]["decision"] == "relabel" and [e["role"] for e in detail["explanations"]][0] == "given"
    assert sum(p["p"] for p in detail["probabilities"]) == pytest.approx(1.0)
    heat = client.get(f"/api/points/{point['train_index']}/heatmaps?class={point['predicted_class']}", headers=auth).json()
    assert len(heat["pairs"]) == 6 and all(p["on_point"].startswith("data:image/png;base64,") for p in heat["pairs"])

"""`representer fit | explain | debug | report` on a user's own model and data, end to end.

The outputs are checked against the Python API on the same model and data: the explanation scores
and indices, the label-issue ranking, the images the folder loader reads, and the report's sections.
"""

import csv
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

import representer as rp
from representer.cli import app
from representer.datasets import load_fashion_mnist_subset
from representer.zoo import SmallCNN, train_classifier

N_PER_CLASS = {"train": 24, "test": 6}
MODEL_FILE = """
from representer.zoo import SmallCNN

def build_model():
    return SmallCNN(n_classes=10, width=8, feature_dim=32)

def build_three_classes():
    return SmallCNN(n_classes=3, width=8, feature_dim=32)

def needs_an_argument(n_classes):
    return SmallCNN(n_classes=n_classes)

def build_nothing():
    return "not a network"

CONSTANT = 3
"""


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """An ImageFolder of Fashion-MNIST PNGs, a user module, and SmallCNN weights trained for one epoch."""
    root = tmp_path_factory.mktemp("user")
    data = load_fashion_mnist_subset()
    arrays = {}
    for split, X, y in (("train", data.X_train, data.y_train), ("test", data.X_test, data.y_test)):
        rows = []
        for c, name in enumerate(data.class_names):
            folder = root / "images" / split / name.replace("/", "-")
            folder.mkdir(parents=True)
            for i in np.flatnonzero(y == c)[: N_PER_CLASS[split]]:
                Image.fromarray(np.round(255 * X[i, 0]).astype(np.uint8), mode="L").save(folder / f"{i:05d}.png")
                rows.append(i)
        # the loader's order: class folders sorted by name, then file names sorted
        order = sorted(range(len(rows)), key=lambda r: (data.class_names[y[rows[r]]].replace("/", "-"), rows[r]))
        idx = np.array(rows)[order]
        names = sorted(n.replace("/", "-") for n in data.class_names)
        label_of = {n.replace("/", "-"): names.index(n.replace("/", "-")) for n in data.class_names}
        arrays[split] = (X[idx], np.array([label_of[data.class_names[c].replace("/", "-")] for c in y[idx]]))
    (root / "my_model.py").write_text(MODEL_FILE)
    torch.manual_seed(0)
    net = train_classifier(SmallCNN(n_classes=10, width=8, feature_dim=32), *arrays["train"], epochs=1, lr=3e-3, batch_size=32)
    save_file(net.state_dict(), str(root / "weights.safetensors"))
    return root, arrays, net.eval()


def test_image_folder_fit_explain_debug_report_match_the_python_api(image_run):
    root, arrays, net = image_run
    run = root / "run"
    result, text = invoke("fit", "--model", root / "my_model.py:build_model", "--weights", root / "weights.safetensors",
                          "--data", root / "images", "--method", "rps-l2", "--lam", "0.01", "--out", run)
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    assert info["n_train"] == 240 and info["n_test"] == 60 and info["params"] == {"lam": 0.01}
    assert info["classes"]["names"][0] == "Ankle boot" and "model accuracy (test)" in text

    # the folder loader reads exactly the original pixels, in the documented order
    from representer.userdata import DataSpec, load_data

    loaded = load_data(DataSpec(str(root / "images")))
    np.testing.assert_array_equal(loaded.train.X, arrays["train"][0])
    np.testing.assert_array_equal(loaded.train.y, arrays["train"][1])
    np.testing.assert_array_equal(loaded.test.y, arrays["test"][1])

    result, _ = invoke("explain", run, "--test-indices", "0,5,7,59", "--top-k", "4")
    assert result.exit_code == 0, result.output
    record = json.loads((run / "explanations.json").read_text())
    api = rp.RPSL2(net, lam=0.01).fit(*arrays["train"])
    rows = np.array([0, 5, 7, 59])
    expected = api.explain(arrays["test"][0][rows], top_k=4)
    assert [r["index"] for r in record["rows"]] == rows.tolist()
    np.testing.assert_array_equal([r["excitatory"]["indices"] for r in record["rows"]], expected.excitatory.indices)
    np.testing.assert_array_equal([r["inhibitory"]["indices"] for r in record["rows"]], expected.inhibitory.indices)
    np.testing.assert_allclose([r["excitatory"]["scores"] for r in record["rows"]], expected.excitatory.scores, rtol=1e-5)
    np.testing.assert_allclose([r["inhibitory"]["scores"] for r in record["rows"]], expected.inhibitory.scores, rtol=1e-5)
    assert [r["explained_class"] for r in record["rows"]] == expected.target.tolist()
    # training points are named by their files, as the test point is (class folder, then file name)
    files = [str(p.relative_to(root / "images" / "train")) for c in loaded.class_names
             for p in sorted((root / "images" / "train" / c.replace("/", "-")).iterdir())]
    for r, key in ((r, key) for r in record["rows"] for key in ("excitatory", "inhibitory")):
        assert r[key]["items"] == [files[i] for i in r[key]["indices"]]
    first = record["rows"][0]["excitatory"]
    assert f"{first['indices'][0]} ({first['items'][0]})" in " ".join(result.output.split())

    result, text = invoke("debug", run)
    assert result.exit_code == 0, result.output
    assert "Ranked by cross-fit" in text and "no checkpoints" in text
    auto = json.loads((run / "label_issues.json").read_text())
    assert auto["route"] == "cross-fit" and auto["caveat"] is None
    reference = rp.find_label_issues(net, *arrays["train"])
    assert [r["train_index"] for r in auto["issues"]] == reference.indices.tolist()

    result, text = invoke("debug", run, "--method", "explainer", "--show", "10")
    assert result.exit_code == 0, result.output
    issues = json.loads((run / "label_issues.json").read_text())["issues"]
    reference = rp.find_label_issues(api)
    assert [r["train_index"] for r in issues] == reference.indices.tolist()
    np.testing.assert_allclose([r["score"] for r in issues], reference.scores, rtol=1e-6)
    with (run / "label_issues.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 240 and table[0]["item"] == issues[0]["item"] and table[0]["item"].endswith(".png")

    html = (run / "report.html").read_text(encoding="utf-8")
    thumbs = re.findall(r'<img class="thumb"', html)
    # 10 suspicious labels + 4 explained points, each with 4 excitatory and 4 inhibitory training images
    assert len(thumbs) == 10 + 4 * (1 + 4 + 4)
    for title in ("Most suspicious training labels", "Why the model predicts what it predicts", "rps-l2 fit", "Run"):
        assert title in html
    assert f"train {first['indices'][0]} · {first['items'][0]}<br>score" in html
    assert f"#1 · train {issues[0]['train_index']} · {issues[0]['item']}<br>" in html

    (run / "report.html").unlink()
    result, _ = invoke("report", run, "--show-issues", "3", "--show-explanations", "1")
    assert result.exit_code == 0, result.output
    rebuilt = (run / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<img class="thumb"', rebuilt)) == 3 + 1 * (1 + 4 + 4)

    # `report` needs no model: it rebuilds the page without importing torch or the methods
    probe = "import runpy, sys; sys.argv = ['representer', 'report', sys.argv[1]]\n" \
            "try:\n    runpy.run_module('representer', run_name='__main__')\nexcept SystemExit as exit:\n    assert not exit.code\n" \
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('representer.methods')))"
    done = subprocess.run([sys.executable, "-c", probe, str(run)], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_csv_and_xgboost_model_file(tmp_path):
    xgb = pytest.importorskip("xgboost")
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(260, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    names = np.array(["high", "low", "mid"])[[1, 2, 0]]  # class ids 0,1,2 ↔ low, mid, high; sorted: high, low, mid
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(kind=names[y])
    frame.iloc[:200].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[200:].to_csv(tmp_path / "test.csv", index=False)
    sorted_ids = np.searchsorted(np.array(["high", "low", "mid"]), names[y])
    model = xgb.XGBClassifier(n_estimators=8, max_depth=2, learning_rate=0.5).fit(X[:200], sorted_ids[:200])
    model.save_model(tmp_path / "model.json")
    run = tmp_path / "run"
    result, text = invoke("fit", "--model", tmp_path / "model.json", "--data", tmp_path / "train.csv", "--test-data",
                          tmp_path / "test.csv", "--label-column", "kind", "--method", "rps-lje", "--out", run)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "run.json").read_text())["classes"]["names"] == ["high", "low", "mid"]
    result, _ = invoke("explain", run, "--top-k", "3")
    assert result.exit_code == 0, result.output
    record = json.loads((run / "explanations.json").read_text())
    booster = xgb.Booster(model_file=str(tmp_path / "model.json"))
    api = rp.RPSLJE(rp.TreeEnsemble(booster)).fit(X[:200], sorted_ids[:200])
    expected = api.explain(X[200:], top_k=3)
    assert len(record["rows"]) == 60
    np.testing.assert_array_equal([r["excitatory"]["indices"] for r in record["rows"]], expected.excitatory.indices)
    np.testing.assert_allclose([r["excitatory"]["scores"] for r in record["rows"]], expected.excitatory.scores, rtol=1e-5)
    result, _ = invoke("debug", run, "--ranking", "cumulative", "--top", "15")
    assert result.exit_code == 0, result.output
    issues = json.loads((run / "label_issues.json").read_text())["issues"]
    reference = rp.find_label_issues(api, ranking="cumulative", X_test=X[200:], top=15)
    assert [r["train_index"] for r in issues] == reference.indices.tolist()
    assert issues[0]["given_class"] == ["high", "low", "mid"][issues[0]["given_label"]]
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.count('<table class="row">') == 15 + 6 * (1 + 3 + 3)  # rows drawn as small tables


def test_text_csv_with_an_encoder_is_explained_and_shown_as_text(tmp_path):
    (tmp_path / "bow.py").write_text(textwrap.dedent("""
        import numpy as np
        import torch
        from torch import nn

        VOCAB = ["good", "great", "bad", "awful"]

        def encode(texts):
            return np.array([[t.split().count(w) for w in VOCAB] for t in texts], dtype=np.float32)

        def build_model():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(4, 2))
    """))
    texts = ["good great film", "bad plot", "awful and bad", "great fun", "good", "bad bad <b>ending</b>"]
    with (tmp_path / "reviews.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows([t, "pos" if ("good" in t or "great" in t) else "neg"] for t in texts)
    run = tmp_path / "run"
    result, _ = invoke("fit", "--model", tmp_path / "bow.py:build_model", "--encoder", tmp_path / "bow.py:encode",
                       "--data", tmp_path / "reviews.csv", "--text-column", "review", "--label-column", "sentiment",
                       "--method", "similarity", "--out", run)
    assert result.exit_code == 0, result.output
    result, _ = invoke("explain", run, "--split", "train", "--test-indices", "5", "--top-k", "2", "--target", "label")
    assert result.exit_code == 0, result.output
    row = json.loads((run / "explanations.json").read_text())["rows"][0]
    # SIM on a softmax head scores the training points of the explained class ("neg") by <x̃_i, x̃_t>/‖x̃_i‖,
    # x̃ = [counts, 1]: row 5 itself 5/√5, "bad plot" 3/√2, "awful and bad" 3/√3
    assert row["item"] == "row 5" and row["explained_class_name"] == "neg"
    assert row["excitatory"]["indices"] == [5, 1]
    np.testing.assert_allclose(row["excitatory"]["scores"], [5 / np.sqrt(5), 3 / np.sqrt(2)], rtol=1e-6)
    html = (run / "report.html").read_text(encoding="utf-8")
    assert '<p class="snippet">bad bad &lt;b&gt;ending&lt;/b&gt;</p>' in html


def test_npz_and_npy_arrays(tmp_path):
    (tmp_path / "linear.py").write_text("import torch\nfrom torch import nn\n\ndef build_model():\n"
                                         "    torch.manual_seed(0)\n    return nn.Sequential(nn.Linear(4, 3))\n")
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 3, size=40)
    np.savez(tmp_path / "data.npz", X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    np.save(tmp_path / "X.npy", X[:30])
    np.save(tmp_path / "y.npy", y[:30])
    for name, data in (("npz", ["--data", tmp_path / "data.npz"]), ("npy", ["--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy"])):
        result, _ = invoke("fit", "--model", tmp_path / "linear.py:build_model", *data, "--method", "knn", "--metric", "dot",
                           "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        result, _ = invoke("explain", tmp_path / name, "--split", "train", "--test-indices", "3", "--top-k", "1")
        assert result.exit_code == 0, result.output
        row = json.loads((tmp_path / name / "explanations.json").read_text())["rows"][0]
        assert row["excitatory"]["scores"][0] == pytest.approx(float(np.max(X[:30] @ X[3])), rel=1e-5)  # kNN, dot: ⟨x_i, x_t⟩
    assert json.loads((tmp_path / "npz" / "run.json").read_text())["n_test"] == 10
    result, text = invoke("fit", "--model", tmp_path / "linear.py:build_model", "--data", tmp_path / "X.npy", "--out", tmp_path / "r")
    assert result.exit_code == 1 and "pass `--labels`" in text


MLP_FILE = """import torch
from torch import nn

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3))
"""


def test_debug_ranks_by_the_recorded_trajectory(tmp_path):
    # a network that memorises 60 random-ish labels, with checkpoints recorded while it trained
    (tmp_path / "mlp.py").write_text(MLP_FILE)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    y[:9] = (y[:9] + 1) % 3
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y)
    namespace: dict = {}
    exec(MLP_FILE, namespace)
    net = namespace["build_model"]()
    recorder = rp.CheckpointRecorder(tmp_path / "checkpoints")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(1, 401):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.as_tensor(X)), torch.as_tensor(y)).backward()
        opt.step()
        recorder.save(net, epoch=epoch, learning_rate=1e-2, force=epoch == 400)
    net.eval()
    assert (net(torch.as_tensor(X)).argmax(1).numpy() == y).mean() == 1.0
    save_file(net.state_dict(), str(tmp_path / "weights.safetensors"))
    common = ["--model", tmp_path / "mlp.py:build_model", "--weights", tmp_path / "weights.safetensors",
              "--data", tmp_path / "data.npz", "--method", "influence"]

    result, _ = invoke("fit", *common, "--checkpoints", tmp_path / "checkpoints", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    result, text = invoke("debug", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "Ranked by trajectory-loss" in text and "caveat" not in text
    record = json.loads((tmp_path / "run" / "label_issues.json").read_text())
    expected = rp.find_label_issues(net, X, y, checkpoints=tmp_path / "checkpoints")
    assert record["route"] == "trajectory-loss" and [r["train_index"] for r in record["issues"]] == expected.indices.tolist()
    assert "How these labels were ranked" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")

    result, _ = invoke("fit", *common, "--out", tmp_path / "plain")
    result, text = invoke("debug", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert "Ranked by cross-fit" in text and "caveat: the model predicts 100.0 %" in text and "CheckpointRecorder" in text

    index = tmp_path / "checkpoints" / "checkpoints.json"
    index.write_text(index.read_text().replace('"schedule": "log"', '"schedule": "every"'))
    result, text = invoke("debug", tmp_path / "run")
    assert result.exit_code == 1 and "changed since `representer fit`" in text

    other = tmp_path / "other.py"
    other.write_text(MLP_FILE.replace("nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3)", "nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)"))
    recorder = rp.CheckpointRecorder(tmp_path / "small", schedule="every")
    recorder.save(namespace["build_model"](), epoch=1, learning_rate=0.1)
    result, text = invoke("fit", *common, "--checkpoints", tmp_path / "small", "--out", tmp_path / "r2")
    assert result.exit_code == 0, result.output
    result, text = invoke("fit", "--model", other.with_suffix(".py").as_posix() + ":build_model", "--data", tmp_path / "data.npz",
                          "--method", "influence", "--checkpoints", tmp_path / "small", "--out", tmp_path / "r3")
    assert result.exit_code == 1 and "another architecture" in text


def test_errors_are_clean_messages(image_run, tmp_path):
    root, _, _ = image_run
    model, weights, images = root / "my_model.py", root / "weights.safetensors", root / "images"
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "table.csv").write_text("a,b\n1,0\n")
    torch.save({"state_dict": SmallCNN(n_classes=10, width=8, feature_dim=32).state_dict()}, tmp_path / "ckpt.pt")
    cases = [
        (["--model", f"{model}:build_model", "--data", tmp_path / "missing.npz"], "does not exist"),
        (["--model", f"{model}:build_model", "--data", tmp_path / "data.txt"], "Unknown data file extension"),
        (["--model", f"{model}:build_model", "--data", tmp_path / "table.csv", "--label-column", "label"], "has no column 'label'"),
        (["--model", f"{model}:build_nope", "--data", images], "has no 'build_nope'"),
        (["--model", f"{model}:CONSTANT", "--data", images], "not a callable"),
        (["--model", f"{model}:build_nothing", "--data", images], "not a torch.nn.Module"),
        (["--model", f"{model}:needs_an_argument", "--data", images], "must take no arguments"),
        (["--model", "no_such_module_xyz:build", "--data", images], "cannot import 'no_such_module_xyz'"),
        (["--model", "build_model", "--data", images], "must be an entry point"),
        (["--model", f"{model}:build_three_classes", "--weights", weights, "--data", images], "shape mismatches"),
        (["--model", f"{model}:build_model", "--weights", weights, "--data", images, "--method", "dualview", "--lam", "1"],
         "--lam does not apply to --method dualview"),
    ]
    for args, message in cases:
        result, text = invoke("fit", *args, "--out", tmp_path / "run")
        assert result.exit_code == 1 and message in text, (args, result.output)
        assert "Traceback" not in result.output
    # a torch.save checkpoint dict works (weights_only=True), and a run folder is required afterwards
    result, _ = invoke("fit", "--model", f"{model}:build_model", "--weights", tmp_path / "ckpt.pt", "--data", images,
                       "--method", "knn", "--out", tmp_path / "knn")
    assert result.exit_code == 0, result.output
    result, text = invoke("report", tmp_path / "knn")
    assert result.exit_code == 1 and "nothing to report yet" in text
    result, text = invoke("explain", tmp_path, "--top-k", "3")
    assert result.exit_code == 1 and "is not a run folder" in text
    result, text = invoke("explain", tmp_path / "knn", "--test-indices", "0,999")
    assert result.exit_code == 1 and "must be in [0, 59]" in text

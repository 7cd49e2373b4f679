"""Bad input, case by case, through the Python API and the command line.

Each case asserts the error type (or the warning), a phrase of its message, and that nothing was
lost or half-written: every file under the case's folders is byte-identical afterwards (no
temporary left behind either), and a failed ``fit`` leaves the explainer as it was.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch
from torch import nn
from typer.testing import CliRunner

import representer as rp
from representer.cli import app
from representer.errors import (
    FileFormatError,
    InputError,
    ModelError,
    NotFittedError,
    RepresenterError,
    RepresenterWarning,
    StaleStateError,
    UntrustedCodeError,
)
from representer.methods.persistence import json_fingerprint

MODEL_FILE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def explode():
    raise ValueError("no such architecture")
"""


def build_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@dataclass(frozen=True)
class World:
    """Files shared by every case (never modified: the cases copy what they damage)."""

    root: Path
    X: np.ndarray
    y: np.ndarray

    @property
    def net(self) -> nn.Module:
        return build_net()

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def saved(self) -> Path:
        return self.root / "saved"


def invoke(*args: Any):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) → SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("catalogue")
    (root / "tiny.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.tile([0, 1, 2], 14)[:40]
    np.savez(root / "data.npz", X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    for args in (
        ["fit", "--model", root / "tiny.py:build", "--data", root / "data.npz", "--out", root / "run"],
        ["explain", root / "run", "--top-k", "3"],
        ["debug", root / "run"],
    ):
        result, _ = invoke(*args)
        assert result.exit_code == 0, result.output
    rp.RPSL2(build_net()).fit(X[:30], y[:30]).save(root / "saved")
    return World(root, X[:30], y[:30])


def raised(result) -> BaseException | None:
    """The exception behind a CLI exit (typer.Exit is raised ``from`` it)."""
    error = result.exception
    while isinstance(error, (SystemExit, typer.Exit)):
        error = error.__cause__ or error.__context__
    return error


# ====================================================================== the Python API
@dataclass(frozen=True)
class Case:
    id: str
    act: Callable[[World, Path], Any]
    expect: type
    phrase: str


def fits(make: Callable[[World], Any], X: Callable | None = None, y: Callable | None = None, **kwargs: Any):
    """An act that fits ``make(world)`` and checks that a failed fit left the explainer as it was."""

    def act(w: World, _tmp: Path) -> Any:
        explainer = make(w)
        before = dict(explainer.__dict__)
        try:
            return explainer.fit(w.X if X is None else X(w), w.y if y is None else y(w), **kwargs)
        except BaseException:
            assert explainer.__dict__.keys() == before.keys()
            assert all(explainer.__dict__[k] is v for k, v in before.items())
            raise

    return act


def explains(**kwargs: Any):
    def act(w: World, _tmp: Path) -> Any:
        return rp.FeatureSimilarity(w.net).fit(w.X, w.y).explain(w.X[:2], **kwargs)

    return act


def loads(damage: Callable[[Path], None], model: Callable[[World], Any] = lambda w: w.net, **kwargs: Any):
    """An act that loads a damaged copy of the saved explainer (and checks the damaged copy was not touched)."""

    def act(w: World, tmp: Path) -> Any:
        folder = tmp / "saved"
        shutil.copytree(w.saved, folder)
        damage(folder)
        before = snapshot(folder)
        try:
            return rp.load(folder, model(w), **kwargs)
        finally:
            assert snapshot(folder) == before

    return act


def edit_config(change: Callable[[dict], None], rehash: bool = False) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        if rehash:  # as a newer representer would have written it
            config["fingerprints"]["entries"] = {k: json_fingerprint(config[k]) for k in config["fingerprints"]["entries"]}
        (folder / "config.json").write_text(json.dumps(config))

    return damage


def edit_state(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        arrays = load_file(str(folder / "state.safetensors"))
        arrays[name] = arrays[name] + 1e-12
        save_file(arrays, str(folder / "state.safetensors"))

    return damage


def truncate(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])

    return damage


def body_changed(w: World) -> nn.Module:
    net = w.net
    with torch.no_grad():
        net[0].weight[0, 0] += 1e-4
    return net


def saves(make_target: Callable[[Path], Path]):
    def act(w: World, tmp: Path) -> Any:
        target = make_target(tmp)
        before = snapshot(tmp)
        try:
            return rp.FeatureSimilarity(w.net).fit(w.X, w.y).save(target)
        finally:
            assert snapshot(tmp) == before

    return act


def users_folder(tmp: Path) -> Path:
    folder = tmp / "mine"
    folder.mkdir()
    (folder / "config.json").write_text("the user's own config")
    (folder / "notes.txt").write_text("keep me")
    return folder


def symlinked_folder(tmp: Path) -> Path:
    (tmp / "real").mkdir()
    os.symlink(tmp / "real", tmp / "link")
    return tmp / "link"


def a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file"


def one_sample(w: World):
    return rp.RPSL2(w.net).fit(w.X[:1], w.y[:1])


API_CASES = [
    # hyper-parameters: refused when fit starts, before any work, explainer unchanged
    Case("dtype float16", fits(lambda w: rp.RPSL2(w.net, dtype="float16")), InputError, "`dtype` must be one of 'float32', 'float64'"),
    Case("lam 0", fits(lambda w: rp.RPSL2(w.net, lam=0)), InputError, "`lam` must be a finite number > 0"),
    Case("lam nan", fits(lambda w: rp.RPSL2(w.net, lam=float("nan"))), InputError, "`lam` must be a finite number > 0"),
    Case("lam string", fits(lambda w: rp.RPSL2(w.net, lam="0.1")), InputError, "`lam` must be a finite number > 0; got '0.1' (str)"),
    Case("max_iter float", fits(lambda w: rp.RPSL2(w.net, max_iter=10.5)), InputError, "`max_iter` must be an integer >= 1"),
    Case("self_influence_mode", fits(lambda w: rp.RPSL2(w.net, self_influence_mode="both")), InputError, "one of 'label', 'teacher'"),
    Case("block_size 0", fits(lambda w: rp.RPSL2(w.net, block_size=0)), InputError, "`block_size` must be an integer >= 1"),
    Case("block_size float", fits(lambda w: rp.RPSL2(w.net, block_size=2.5)), InputError, "`block_size` must be an integer >= 1"),
    Case("block_size True", fits(lambda w: rp.RPSL2(w.net, block_size=True)), InputError, "`block_size` must be an integer >= 1"),
    Case("test_batch_size 0", fits(lambda w: rp.RPSL2(w.net, test_batch_size=0)), InputError, "`test_batch_size` must be an integer >= 1"),
    Case("device gpu", fits(lambda w: rp.RPSL2(w.net, device="gpu")), InputError, "`device` must be a torch device"),
    Case("device cuda", fits(lambda w: rp.RPSL2(w.net, device="cuda:7")), InputError, "asks for CUDA"),
    Case("class_names repeated", fits(lambda w: rp.RPSL2(w.net, class_names=["a", "a", "b"])), InputError, "`class_names` must be"),
    Case("class_names a string", fits(lambda w: rp.RPSL2(w.net, class_names="abc")), InputError, "`class_names` must be"),
    Case("dualview C", fits(lambda w: rp.DualView(w.net, C=-1.0)), InputError, "`C` must be a finite number > 0"),
    Case("dualview convention", fits(lambda w: rp.DualView(w.net, convention="libsvm")), InputError, "one of 'shark', 'textbook'"),
    Case("dualview seed", fits(lambda w: rp.DualView(w.net, seed=-3)), InputError, "`seed` must be an integer >= 0"),
    Case("influence hessian", fits(lambda w: rp.InfluenceFunction(w.net, hessian="full")), InputError, "`hessian` must be one of"),
    Case("influence damping 0", fits(lambda w: rp.InfluenceFunction(w.net, damping=0)), InputError, "must be > 0 for a softmax head"),
    Case("relatif kind", fits(lambda w: rp.RelatIF(w.net, kind="grad")), InputError, "`kind` must be one of 'theta', 'loss'"),
    Case("knn metric", fits(lambda w: rp.FeatureSimilarity(w.net, metric="manhattan")), InputError, "`metric` must be one of"),
    Case("knn n_neighbors 0", fits(lambda w: rp.FeatureSimilarity(w.net, n_neighbors=0)), InputError, "`n_neighbors` must be an integer >= 1"),
    Case("knn n_neighbors n", fits(lambda w: rp.FeatureSimilarity(w.net, n_neighbors=30)), InputError, "[1, n_train − 1]"),
    Case("sim cosine 1", fits(lambda w: rp.GradientSimilarity(w.net, cosine=1)), InputError, "`cosine` must be True or False"),
    Case("random seed", fits(lambda w: rp.RandomAttribution(w.net, seed=-1)), InputError, "`seed` must be an integer in [0,"),
    Case("lje gamma", fits(lambda w: rp.RPSLJE(w.net, gamma=-0.1)), InputError, "`gamma` must be a finite number >= 0"),
    Case("full-model hessian", fits(lambda w: rp.FullModelInfluence(w.net, hessian="kfac")), InputError, "`hessian` must be one of"),
    Case("full-model params", fits(lambda w: rp.FullModelInfluence(w.net, params="0.weight")), InputError, "`params` must be None or"),
    # labels and classes
    Case("fewer named classes than outputs", fits(lambda w: rp.RPSL2(w.net), y=lambda w: np.array(["cat", "eel"])[w.y % 2]),
         InputError, "The labels name 2 classes (['cat', 'eel']) but the model has 3"),
    Case("class_names of another length", fits(lambda w: rp.RPSL2(w.net, class_names=["a", "b"])), InputError,
         "2 class names were given (['a', 'b']) but the model has 3 classes"),
    Case("label not a class name", fits(lambda w: rp.RPSL2(w.net, class_names=["a", "b", "c"]), y=lambda w: np.array(["a"] * 29 + ["z"])),
         InputError, "has labels ['z'] that are not class names"),
    Case("class id out of range", fits(lambda w: rp.RPSL2(w.net), y=lambda w: w.y + 1), InputError, "class ids in [1, 3] but there are 3 classes;"),
    Case("NaN label", fits(lambda w: rp.RPSL2(w.net), y=lambda w: np.where(np.arange(30) == 4, np.nan, w.y)), InputError, "1 missing (NaN) labels"),
    Case("None label", fits(lambda w: rp.RPSL2(w.net), y=lambda w: np.array(["a", None] * 15, dtype=object)), InputError, "missing labels"),
    Case("fractional label", fits(lambda w: rp.RPSL2(w.net), y=lambda w: w.y + 0.5), InputError, "non-integer numbers"),
    Case("labels per row", fits(lambda w: rp.RPSL2(w.net), y=lambda w: w.y[:-1]), InputError, "29 labels but the data has 30 rows"),
    Case("labels 2-d", fits(lambda w: rp.RPSL2(w.net), y=lambda w: w.y[:, None]), InputError, "must be a 1-d vector of labels"),
    # inputs
    Case("NaN input", fits(lambda w: rp.RPSL2(w.net), X=lambda w: np.where(w.X > 2, np.nan, w.X)), InputError, "NaN or infinite"),
    Case("one 1-d sample", fits(lambda w: rp.RPSL2(w.net), X=lambda w: w.X[0], y=lambda w: w.y[:1]), InputError, "X[None] for a single example"),
    Case("empty input", fits(lambda w: rp.RPSL2(w.net), X=lambda w: w.X[:0]), InputError, "is empty"),
    Case("1-d features", fits(lambda w: rp.RPSL2(rp.Features(np.ones((3, 4)))), X=lambda w: w.X[0], y=lambda w: w.y[:1]), InputError,
         "got a 1-d array of shape (4,)"),
    Case("trees refused by RPS-L2", fits(lambda w: rp.RPSL2(_booster(w))), ModelError, "RPS-L2 does not apply to tree ensembles"),
    # explaining
    Case("top_k fractional", explains(top_k=2.7), InputError, "`top_k` must be an integer >= 1; got 2.7"),
    Case("top_k True", explains(top_k=True), InputError, "`top_k` must be an integer >= 1; got True"),
    Case("top_k 0", explains(top_k=0), InputError, "`top_k` must be an integer >= 1"),
    Case("not fitted", lambda w, t: rp.RPSL2(w.net).explain(w.X), NotFittedError, "not fitted yet"),
    Case("target label without y", explains(target="label"), InputError, "needs the test labels"),
    Case("target out of range", explains(target=7), InputError, "class ids in [7, 7] but there are 3 classes"),
    Case("target not a name", explains(target="zebra"), InputError, "a class name or an array; got 'zebra'"),
    Case("target per row", explains(target=[0, 1, 2]), InputError, "`target` has 3 entries but `X` has 2 rows"),
    # degenerate but legal: a warning
    Case("top_k above n", explains(top_k=50), RepresenterWarning, "top_k=50 exceeds the 30 training points"),
    Case("one class", fits(lambda w: rp.RPSL2(w.net), y=lambda w: np.zeros(30, dtype=int)), RepresenterWarning, "Every training label is class 0"),
    Case("one sample", lambda w, t: one_sample(w), RepresenterWarning, "Only one training point"),
    Case("fewer than k points per class", fits(lambda w: rp.FeatureSimilarity(w.net, n_neighbors=10), y=lambda w: np.r_[np.zeros(25, int), [1] * 5]),
         RepresenterWarning, "at most n_neighbors=10 training points"),
    # saving: refuses to clobber, never writes through links
    Case("save over the user's files", saves(users_folder), InputError, "holds other files (config.json, notes.txt)"),
    Case("save through a symlink", saves(symlinked_folder), InputError, "is a symbolic link"),
    Case("save onto a file", saves(a_file), InputError, "is a file"),
    # loading: stale, tampered, damaged, newer
    Case("load nothing", lambda w, t: rp.load(t / "nowhere", w.net), RepresenterError, "missing config.json"),
    Case("load changed body", loads(lambda f: None, model=body_changed), StaleStateError, "different parameters: 0.weight"),
    Case("load changed head", loads(lambda f: None, model=lambda w: _head_changed(w)), StaleStateError, "different parameters: 2.bias"),
    Case("load tampered alpha_", loads(edit_state("alpha_")), StaleStateError, "changed: alpha_"),
    Case("load tampered features", loads(edit_state("train_features_")), StaleStateError, "changed: train_features_"),
    Case("load extra array", loads(lambda f: save_file({**load_file(str(f / "state.safetensors")), "x_": np.ones(2)}, str(f / "state.safetensors"))),
         StaleStateError, "unexpected: x_"),
    Case("load edited lam", loads(edit_config(lambda c: c["params"].update(lam=0.5))), StaleStateError, "`params` no longer matches"),
    Case("load edited fit report", loads(edit_config(lambda c: c["fit_report_"].update(converged=False))), StaleStateError, "`fit_report_`"),
    Case("load edited versions", loads(edit_config(lambda c: c["versions"].update(representer="9.9"))), StaleStateError, "`versions`"),
    Case("load truncated state", loads(truncate("state.safetensors")), FileFormatError, "the file is damaged"),
    Case("load missing state", loads(lambda f: (f / "state.safetensors").unlink()), FileFormatError, "no state.safetensors"),
    Case("load truncated config", loads(truncate("config.json")), FileFormatError, "damaged or truncated"),
    Case("load config of an old format", loads(edit_config(lambda c: c.pop("format"))), FileFormatError, "older representer"),
    Case("load newer major format", loads(edit_config(lambda c: c.update(format_version="3.0"))), FileFormatError,
         "in format 3.0, which this representer"),
    Case("load parameter of a newer version", loads(edit_config(lambda c: c["params"].update(momentum=0.9), rehash=True)), FileFormatError,
         "not valid for this version"),
    Case("load unknown class", loads(edit_config(lambda c: c.update({"class": "Quantum"}), rehash=True)), FileFormatError, "'Quantum' is not known"),
    Case("load other class names", loads(lambda f: None, class_names=["x", "y", "z"]), StaleStateError, "differ from the class names"),
]


def _booster(w: World):
    from sklearn.ensemble import GradientBoostingClassifier

    return rp.TreeEnsemble(GradientBoostingClassifier(n_estimators=3, max_depth=2).fit(w.X, w.y))


def _head_changed(w: World) -> nn.Module:
    net = w.net
    with torch.no_grad():
        net[2].bias[1] += 1e-6
    return net


@pytest.mark.parametrize("case", API_CASES, ids=lambda c: c.id)
def test_python_api(case: Case, world: World, tmp_path: Path) -> None:
    shared = snapshot(world.root)
    if issubclass(case.expect, Warning):
        with pytest.warns(case.expect) as caught:
            case.act(world, tmp_path)
        assert any(case.phrase in str(w.message) for w in caught), [str(w.message) for w in caught]
    else:
        with pytest.raises(case.expect) as info:
            case.act(world, tmp_path)
        assert case.phrase in str(info.value)
    assert snapshot(world.root) == shared


def test_top_k_above_n_is_recorded_as_what_was_returned(world: World) -> None:
    with pytest.warns(RepresenterWarning):
        explanation = explains(top_k=50)(world, Path())
    assert explanation.meta["top_k"] == 30 == explanation.excitatory.indices.shape[1]


def test_constraint_table_covers_every_parameter_of_every_explainer() -> None:
    pending, seen = list(rp.Explainer.__subclasses__()), []
    while pending:
        klass = pending.pop()
        pending.extend(klass.__subclasses__())
        seen.append(klass)
        assert set(klass._param_names()) <= set(klass.parameter_constraints()), klass.__name__
    assert len(seen) >= 12


# ====================================================================== the command line
@dataclass(frozen=True)
class CliCase:
    id: str
    args: Callable[[Path, World], list[Any]]
    expect: type
    phrase: str
    prepare: Callable[[Path, World], None] = lambda tmp, w: None


def fit_args(tmp: Path, w: World, *extra: Any, data: Any = None, out: Any = None) -> list[Any]:
    return ["fit", "--model", w.root / "tiny.py:build", "--data", data or w.root / "data.npz", "--out", out or tmp / "out", *extra]


def write(name: str, content: bytes | str) -> Callable[[Path, World], None]:
    def prepare(tmp: Path, w: World) -> None:
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return prepare


def npz(name: str, **arrays: Callable[[World], np.ndarray]) -> Callable[[Path, World], None]:
    def prepare(tmp: Path, w: World) -> None:
        np.savez(tmp / name, **{k: make(w) for k, make in arrays.items()})

    return prepare


def images(layout: dict[str, list[str]]) -> Callable[[Path, World], None]:
    """An image folder ``tmp/img``: class folder → file names; a name containing "bad" holds no image."""

    def prepare(tmp: Path, w: World) -> None:
        for folder, files in layout.items():
            (tmp / "img" / folder).mkdir(parents=True)
            for name in files:
                if "bad" in name:
                    (tmp / "img" / folder / name).write_text("not an image")
                else:
                    Image.fromarray(np.zeros((2, 2), np.uint8), mode="L").save(tmp / "img" / folder / name)

    return prepare


def copied_run(damage: Callable[[Path], None] = lambda run: None) -> Callable[[Path, World], None]:
    def prepare(tmp: Path, w: World) -> None:
        shutil.copytree(w.run, tmp / "run")
        damage(tmp / "run")

    return prepare


def edit_run_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        info = json.loads((run / "run.json").read_text())
        change(info)
        (run / "run.json").write_text(json.dumps(info))

    return damage


def own_run(damage: Callable[[Path], None], *extra: Any) -> Callable[[Path, World], None]:
    """A run fitted inside the case's folder on its own copy of the model file, the data and weights, then damaged."""

    def prepare(tmp: Path, w: World) -> None:
        shutil.copy(w.root / "tiny.py", tmp / "tiny.py")
        shutil.copy(w.root / "data.npz", tmp / "data.npz")
        save_torch(build_net().state_dict(), str(tmp / "weights.safetensors"))
        result, _ = invoke("fit", "--model", tmp / "tiny.py:build", "--weights", tmp / "weights.safetensors", "--data",
                           tmp / "data.npz", "--out", tmp / "run", *extra)
        assert result.exit_code == 0, result.output
        damage(tmp)

    return prepare


def change_body_weights(tmp: Path) -> None:
    net = build_net()
    with torch.no_grad():
        net[0].weight[1, 2] += 1e-3
    save_torch(net.state_dict(), str(tmp / "weights.safetensors"))


def swap_in_another_fit(tmp: Path) -> None:
    result, _ = invoke("fit", "--model", tmp / "tiny.py:build", "--data", tmp / "data.npz", "--lam", "0.5", "--out", tmp / "other")
    assert result.exit_code == 0, result.output
    for name in ("config.json", "state.safetensors"):
        shutil.copy(tmp / "other" / name, tmp / "run" / name)


def point_model_elsewhere(tmp: Path) -> None:
    (tmp / "evil.py").write_text(MODEL_FILE)
    edit_run_json(lambda info: info["model"].update(source=f"{tmp / 'evil.py'}:build"))(tmp / "run")


def _parquet_phrase() -> str:
    return "Cannot read" if importlib.util.find_spec("pyarrow") else "needs pyarrow"


EXPLAIN = lambda tmp, w: ["explain", tmp / "run"]  # noqa: E731
CLI_CASES = [
    # fit: the output folder
    CliCase("out holds the user's files", lambda t, w: fit_args(t, w, out=t / "mine"), InputError, "is not empty and is not a run folder",
            lambda t, w: [(t / "mine").mkdir(), (t / "mine" / "config.json").write_text("mine"), (t / "mine" / "report.html").write_text("mine")]),
    CliCase("out is a symlink", lambda t, w: fit_args(t, w, out=t / "link"), InputError, "is a symbolic link",
            lambda t, w: [(t / "real").mkdir(), os.symlink(t / "real", t / "link")]),
    CliCase("out is a file", lambda t, w: fit_args(t, w, out=t / "file"), InputError, "is a file", write("file", "x")),
    # fit: options
    CliCase("device cuda", lambda t, w: fit_args(t, w, "--device", "cuda"), InputError, "asks for CUDA"),
    CliCase("device nonsense", lambda t, w: fit_args(t, w, "--device", "gpu0"), InputError, "`device` must be a torch device"),
    CliCase("negative lam", lambda t, w: fit_args(t, w, "--lam", "-1"), InputError, "`lam` must be a finite number > 0"),
    CliCase("unknown method", lambda t, w: fit_args(t, w, "--method", "shapley"), InputError, "`--method` must be one of"),
    CliCase("foreign option", lambda t, w: fit_args(t, w, "--C", "1"), InputError, "--C does not apply to --method rps-l2"),
    CliCase("empty class name", lambda t, w: fit_args(t, w, "--class-names", "a,,b"), InputError, "comma-separated names"),
    # fit: classes
    CliCase("labels name 2 of 3 classes", lambda t, w: fit_args(t, w, data=t / "names.npz"), InputError, "The labels name 2 classes",
            npz("names.npz", X_train=lambda w: w.X, y_train=lambda w: np.array(["cat", "eel"])[w.y % 2])),
    CliCase("class names of another length", lambda t, w: fit_args(t, w, "--class-names", "a,b"), InputError,
            "has class ids in [0, 2] but there are 2 classes (['a', 'b'])"),
    CliCase("label outside the class names", lambda t, w: fit_args(t, w, "--class-names", "cat,dog,eel", data=t / "names.npz"), InputError,
            "has labels ['emu'] that are not class names",
            npz("names.npz", X_train=lambda w: w.X, y_train=lambda w: np.array(["cat", "dog", "emu"])[w.y])),
    CliCase("npz class_names too short", lambda t, w: fit_args(t, w, data=t / "d.npz"), InputError, "2 class names were given",
            npz("d.npz", X_train=lambda w: w.X, y_train=lambda w: w.y % 2, class_names=lambda w: np.array(["a", "b"]))),
    CliCase("missing label", lambda t, w: fit_args(t, w, data=t / "d.npz"), InputError, "missing (NaN) labels",
            npz("d.npz", X_train=lambda w: w.X, y_train=lambda w: np.where(w.y == 0, np.nan, w.y))),
    CliCase("fractional labels", lambda t, w: fit_args(t, w, data=t / "d.npz"), InputError, "non-integer numbers",
            npz("d.npz", X_train=lambda w: w.X, y_train=lambda w: w.y / 2)),
    CliCase("image folders name 2 of 3", lambda t, w: fit_args(t, w, data=t / "img"), InputError, "The labels name 2 classes",
            images({"cat": ["1.png"], "dog": ["2.png"]})),
    CliCase("test folder of an unknown class", lambda t, w: fit_args(t, w, data=t / "img"), InputError, "not class names",
            images({"train/a": ["1.png"], "train/b": ["2.png"], "train/c": ["3.png"], "test/zebra": ["4.png"]})),
    # fit: files that cannot be read
    CliCase("garbage npz", lambda t, w: fit_args(t, w, data=t / "bad.npz"), InputError, "Cannot read", write("bad.npz", b"PK\x03\x04garbage")),
    CliCase("truncated npz", lambda t, w: fit_args(t, w, data=t / "cut.npz"), InputError, "Cannot read",
            lambda t, w: (t / "cut.npz").write_bytes((w.root / "data.npz").read_bytes()[:300])),
    CliCase("pickled npy", lambda t, w: fit_args(t, w, "--labels", t / "y.npy", data=t / "X.npy"), InputError, "pickled object arrays are refused",
            lambda t, w: [np.save(t / "X.npy", np.array([{"a": 1}] * 30, dtype=object)), np.save(t / "y.npy", w.y)]),
    CliCase("garbage npy", lambda t, w: fit_args(t, w, "--labels", t / "y.npy", data=t / "X.npy"), InputError, "Cannot read",
            lambda t, w: [(t / "X.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), np.save(t / "y.npy", w.y)]),
    CliCase("npy without labels", lambda t, w: fit_args(t, w, data=t / "X.npy"), InputError, "pass `--labels`",
            lambda t, w: np.save(t / "X.npy", w.X)),
    CliCase("ragged csv", lambda t, w: fit_args(t, w, "--label-column", "b", data=t / "t.csv"), InputError, "Cannot read",
            write("t.csv", "a,b\n1,0\n3,4,5,6\n")),
    CliCase("csv with an empty label", lambda t, w: fit_args(t, w, "--label-column", "k", data=t / "t.csv"), InputError, "missing labels",
            write("t.csv", "a,b,c,d,k\n" + "".join(f"{i},1,2,3,{'x' if i else ''}\n" for i in range(5)))),
    CliCase("garbage parquet", lambda t, w: fit_args(t, w, "--label-column", "k", data=t / "t.parquet"), InputError, _parquet_phrase(),
            write("t.parquet", b"PAR1garbage")),
    CliCase("non-image sorting first", lambda t, w: fit_args(t, w, data=t / "img"), InputError, "Cannot read the image",
            images({"a": ["0bad.png", "1.png"], "b": ["2.png"], "c": ["3.png"]})),
    CliCase("no images at all", lambda t, w: fit_args(t, w, data=t / "img"), InputError, "hold no images", images({"a": [], "b": [], "c": []})),
    CliCase("unknown data extension", lambda t, w: fit_args(t, w, data=t / "d.txt"), InputError, "Unknown data file extension", write("d.txt", "x")),
    CliCase("missing data", lambda t, w: fit_args(t, w, data=t / "none.npz"), InputError, "does not exist"),
    # fit: the model
    CliCase("garbage safetensors weights", lambda t, w: fit_args(t, w, "--weights", t / "w.safetensors"), InputError, "cannot read w.safetensors",
            write("w.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")),
    CliCase("garbage torch weights", lambda t, w: fit_args(t, w, "--weights", t / "w.pt"), InputError, "cannot read w.pt",
            write("w.pt", b"garbage")),
    CliCase("weights of another network", lambda t, w: fit_args(t, w, "--weights", t / "w.safetensors"), InputError, "shape mismatches",
            lambda t, w: save_torch(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).state_dict(), str(t / "w.safetensors"))),
    CliCase("model raises", lambda t, w: ["fit", "--model", w.root / "tiny.py:explode", "--data", w.root / "data.npz", "--out", t / "o"],
            InputError, "raised ValueError: no such architecture"),
    # a path typo is reported before any data are read (the data here are damaged, and not the error)
    CliCase("weights missing, before the data", lambda t, w: fit_args(t, w, "--weights", t / "wieghts.safetensors", data=t / "bad.npz"),
            InputError, "`--weights`: the file", write("bad.npz", b"not a zip")),
    CliCase("tree model file missing, before the data", lambda t, w: fit_args(t, w, data=t / "bad.npz")[:2] + [t / "modle.json"]
            + fit_args(t, w, data=t / "bad.npz")[3:], InputError, "`--model`: the file", write("bad.npz", b"not a zip")),
    CliCase("checkpoints missing, before the data", lambda t, w: fit_args(t, w, "--checkpoints", t / "ckpts", data=t / "bad.npz"),
            InputError, "holds no checkpoint recording", write("bad.npz", b"not a zip")),
    CliCase("model file missing", lambda t, w: ["fit", "--model", t / "none.py:build", "--data", w.root / "data.npz", "--out", t / "o"],
            InputError, "does not exist"),
    CliCase("module missing", lambda t, w: ["fit", "--model", "no_such_pkg_x.mod:build", "--data", w.root / "data.npz", "--out", t / "o"],
            InputError, "cannot import 'no_such_pkg_x'"),
    # explain / debug / report: damaged or stale run folders
    CliCase("not a run folder", lambda t, w: ["explain", t], InputError, "is not a run folder"),
    CliCase("run.json garbage", EXPLAIN, FileFormatError, "Cannot read the run record", copied_run(lambda r: (r / "run.json").write_text("{"))),
    CliCase("run.json truncated", EXPLAIN, FileFormatError, "Cannot read the run record", copied_run(truncate("run.json", 0.6))),
    CliCase("run.json not an object", EXPLAIN, FileFormatError, "does not hold a run record", copied_run(lambda r: (r / "run.json").write_text("[]"))),
    CliCase("run.json lacks a key", EXPLAIN, FileFormatError, "lacks ['train_fingerprint']",
            copied_run(edit_run_json(lambda i: i.pop("train_fingerprint")))),
    CliCase("run.json of a newer format", EXPLAIN, FileFormatError, "newer representer (run format 9.0)",
            copied_run(edit_run_json(lambda i: i.update(format_version="9.0")))),
    CliCase("run.json damaged model entry", EXPLAIN, FileFormatError, "damaged model entry",
            copied_run(edit_run_json(lambda i: i.update(model={"src": "x"})))),
    CliCase("config.json garbage", EXPLAIN, FileFormatError, "configuration", copied_run(lambda r: (r / "config.json").write_text("nul"))),
    CliCase("config.json lam edited", EXPLAIN, StaleStateError, "`params` no longer matches",
            copied_run(lambda r: edit_config(lambda c: c["params"].update(lam=1.0))(r))),
    CliCase("state truncated", EXPLAIN, FileFormatError, "the file is damaged", copied_run(truncate("state.safetensors", 0.3))),
    CliCase("state missing", lambda t, w: ["debug", t / "run"], FileFormatError, "no state.safetensors",
            copied_run(lambda r: (r / "state.safetensors").unlink())),
    CliCase("state tampered", EXPLAIN, StaleStateError, "changed: alpha_", copied_run(edit_state("alpha_"))),
    CliCase("explainer of another fit", EXPLAIN, StaleStateError, "come from different fits", own_run(swap_in_another_fit)),
    CliCase("model file changed", EXPLAIN, UntrustedCodeError, "changed since `representer fit`",
            own_run(lambda t: (t / "tiny.py").write_text(MODEL_FILE + "\nimport os\n"))),
    CliCase("model moved elsewhere", EXPLAIN, UntrustedCodeError, "which is not code that `representer fit` ran", own_run(point_model_elsewhere)),
    CliCase("no code hashes", EXPLAIN, UntrustedCodeError, "records no hashes",
            own_run(lambda t: edit_run_json(lambda i: i["model"].update(code=None))(t / "run"))),
    CliCase("body weights changed", EXPLAIN, StaleStateError,
            "weights.safetensors) is not the one `representer fit` explained (different parameters: 0.weight; 1 of 5 parts). "
            "If the weights file was replaced or retrained, fit the run again: `representer fit --model", own_run(change_body_weights)),
    CliCase("training data changed", EXPLAIN, StaleStateError, "changed since `representer fit`; fit the run again",
            own_run(lambda t: np.savez(t / "data.npz", X_train=np.zeros((30, 4)), y_train=np.zeros(30, int)))),
    CliCase("target not a class", lambda t, w: ["explain", w.run, "--target", "zebra"], InputError, "got 'zebra'"),
    CliCase("test index out of range", lambda t, w: ["explain", w.run, "--test-indices", "0,99"], InputError, "must be in [0, 9]"),
    CliCase("unknown split", lambda t, w: ["explain", w.run, "--split", "valid"], InputError, "must be 'train' or 'test'"),
    CliCase("unknown ranking", lambda t, w: ["debug", w.run, "--ranking", "loss"], InputError, "`ranking` must be one of"),
    CliCase("nothing to report", lambda t, w: ["report", t / "run"], InputError, "nothing to report yet",
            copied_run(lambda r: [(r / n).unlink() for n in ("explanations.json", "label_issues.json", "label_issues.csv")])),
    CliCase("damaged outputs only", lambda t, w: ["report", t / "run"], InputError, "nothing to report yet",
            copied_run(lambda r: [(r / "explanations.json").write_text("{\"rows"), (r / "label_issues.json").unlink()])),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_command_line(case: CliCase, world: World, tmp_path: Path) -> None:
    case.prepare(tmp_path, world)
    before, shared = snapshot(tmp_path), snapshot(world.root)
    result, text = invoke(*case.args(tmp_path, world))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and case.phrase in text, result.output
    assert isinstance(raised(result), case.expect), repr(raised(result))
    assert snapshot(tmp_path) == before
    assert snapshot(world.root) == shared


def test_trust_code_opens_a_run_whose_model_file_changed(world: World, tmp_path: Path) -> None:
    own_run(lambda t: (t / "tiny.py").write_text(MODEL_FILE + "\n# a comment\n"))(tmp_path, world)
    result, _ = invoke("explain", tmp_path / "run", "--trust-code", "--top-k", "2")
    assert result.exit_code == 0, result.output


def test_damaged_explanations_are_left_out_of_a_report_with_a_warning(world: World, tmp_path: Path) -> None:
    copied_run(lambda r: (r / "explanations.json").write_text("{\"rows\": [tru"))(tmp_path, world)
    result, text = invoke("debug", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "warning:" in text and "explanations.json is damaged" in text and "representer explain" in text
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "Most suspicious training labels" in html and "Why the model predicts" not in html


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(world: World, tmp_path: Path, monkeypatch) -> None:
    import representer.userrun as userrun

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(userrun, "write_report", boom)  # the commands import it when they run
    copied_run()(tmp_path, world)
    before = snapshot(tmp_path / "run")
    result, text = invoke("report", tmp_path / "run")
    assert result.exit_code == 1 and "error: unexpected RuntimeError: boom (run with --debug for the traceback)" in text
    assert "Traceback" not in result.output and snapshot(tmp_path / "run") == before
    result = CliRunner().invoke(app, ["--debug", "report", str(tmp_path / "run")])
    assert isinstance(result.exception, RuntimeError)


def test_markup_in_class_names_and_paths_is_printed_verbatim(world: World, tmp_path: Path) -> None:
    names = ["[/x]", "[bold]b", "c[/]"]
    npz("d.npz", X_train=lambda w: w.X, y_train=lambda w: np.array(names)[w.y], class_names=lambda w: np.array(names))(tmp_path, world)
    out = tmp_path / "[red]run"
    result, _ = invoke("fit", "--model", world.root / "tiny.py:build", "--data", tmp_path / "d.npz", "--out", out)
    assert result.exit_code == 0, result.output
    assert "[red]run" in result.output
    for command in (["debug", out], ["explain", out, "--split", "train", "--target", "[/x]"]):
        result, _ = invoke(*command)
        assert result.exit_code == 0, result.output
        assert "[/x]" in result.output
    assert json.loads((out / "run.json").read_text())["classes"]["names"] == names
    assert json.loads((out / "explanations.json").read_text())["rows"][0]["explained_class_name"] == "[/x]"


def test_negative_stride_inputs_give_the_same_answer_as_contiguous_ones(world: World) -> None:
    reversed_X, reversed_y = world.X[::-1], world.y[::-1]
    for make in (lambda: rp.RPSL2(world.net), lambda: rp.GradientSimilarity(rp.Features(np.ones((3, 4)), np.zeros(3)))):
        strided = make().fit(reversed_X, reversed_y).explain(world.X[::-2], top_k=3)
        contiguous = make().fit(reversed_X.copy(), reversed_y.copy()).explain(world.X[::-2].copy(), top_k=3)
        np.testing.assert_array_equal(strided.excitatory.indices, contiguous.excitatory.indices)
        np.testing.assert_array_equal(strided.excitatory.scores, contiguous.excitatory.scores)


def test_outputs_replace_a_symlink_instead_of_writing_through_it(world: World, tmp_path: Path) -> None:
    copied_run(lambda r: [(r / "report.html").unlink(), (tmp_path / "users.html").write_text("the user's page"),
                          os.symlink(tmp_path / "users.html", r / "report.html")])(tmp_path, world)
    result, _ = invoke("explain", tmp_path / "run", "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "users.html").read_text() == "the user's page"
    assert not (tmp_path / "run" / "report.html").is_symlink()


def test_force_writes_the_run_beside_the_users_files_and_refitting_in_place_works(world: World, tmp_path: Path, monkeypatch) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result, _ = invoke(*fit_args(tmp_path, world, "--force", out=mine))
    assert result.exit_code == 0, result.output
    assert (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt", "run.json", "state.safetensors"]
    assert invoke("debug", mine)[0].exit_code == 0
    monkeypatch.chdir(mine)  # the working folder cannot be swapped away: its files are replaced one by one
    result, _ = invoke(*fit_args(tmp_path, world, "--force", "--lam", "0.1", out="."))
    assert result.exit_code == 0, result.output
    assert not (mine / "label_issues.json").exists() and (mine / "notes.txt").read_text() == "keep me"
    assert json.loads((mine / "run.json").read_text())["params"] == {"lam": 0.1}
    assert invoke("explain", ".", "--top-k", "2")[0].exit_code == 0

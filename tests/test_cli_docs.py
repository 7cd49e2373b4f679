"""The command line's method options come from the explainers, and what is generated from them is current."""

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import representer as rp
from representer._cli_option_table import OPTION_TABLE
from representer._cli_options import METHODS, describe_explainer, method_options, method_params, option_help
from representer._params import Interval, Options, positive
from representer.cli import app
from representer.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_option_table_is_current(tool):
    assert (ROOT / "src" / "representer" / "_cli_option_table.py").read_text() == tool("gen_cli_docs").option_table_source(), (
        "run `python tools/gen_cli_docs.py`"
    )


def test_cli_reference_is_current(tool):
    text = (ROOT / "docs" / "cli.md").read_text()
    assert tool("gen_cli_docs").cli_doc(text) == text, "run `python tools/gen_cli_docs.py`"
    for command in ("demo", "bench", "fit", "methods", "explain", "debug", "report", "review"):
        assert f"<!-- generated: {command} -->" in text


class _Base(rp.RPSL2):
    """A base.

    Parameters
    ----------
    shared : float, default 0.5
        Shared by subclasses. More text.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {"shared": [positive(float)]}

    def __init__(self, model: Any, *, shared: float = 0.5, **engine: Any) -> None:
        super().__init__(model, **engine)
        self.shared = shared


class _Toy(_Base):
    """A toy explainer.

    Parameters
    ----------
    steps : int, default 3
        How many steps (at most 9). Not shown on the command line.
    mode : {"a", "b"}, default "b"
        Which mode.
    shared, lam
        As for the base.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {"steps": [Interval(int, 1, 9)], "mode": [Options(("a", "b"))]}

    def __init__(self, model: Any, *, steps: int = 3, mode: str = "b", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.steps = steps
        self.mode = mode


def test_describe_reads_signature_constraints_and_docstrings_along_the_bases():
    options = describe_explainer(_Toy)
    assert list(options)[:3] == ["steps", "mode", "shared"]
    assert options["steps"] == {"kind": "int", "default": 3, "help": "How many steps (at most 9).", "accepts": "an integer in [1, 9]"}
    assert options["mode"] == {"kind": "str", "default": "b", "help": "Which mode.", "accepts": "one of 'a', 'b'"}
    assert options["shared"]["help"] == "Shared by subclasses." and options["shared"]["default"] == 0.5
    assert options["lam"]["default"] == 0.003 and options["lam"]["help"].startswith("The L2 strength λ")
    assert not {"block_size", "device", "dtype", "class_names", "test_batch_size"} & set(options)


def test_describe_refuses_an_undocumented_parameter():
    class _Undocumented(_Toy):
        """No Parameters section."""

        _parameter_constraints: ClassVar[dict[str, list]] = {"extra": [positive(int)]}

        def __init__(self, model: Any, *, extra: int = 1, **kwargs: Any) -> None:
            super().__init__(model, **kwargs)
            self.extra = extra

    with pytest.raises(ValueError, match="does not document `extra`"):
        describe_explainer(_Undocumented)


def test_every_method_option_is_the_explainers_keyword_with_its_default():
    for method, name in METHODS.items():
        cls = getattr(rp, name)
        defaults = cls(None).get_params()
        for option, spec in OPTION_TABLE[name].items():
            assert defaults[option] == spec["default"], (method, option)
            # a None default (DualView's C) is "not set" on the command line: the explainer's own default applies
            given = {} if spec["default"] is None else {option: spec["default"]}
            assert method_params(method, {option: spec["default"]}) == (name, given)
    shared = method_options()["damping"]
    assert set(shared["methods"]) == {"rps-lje", "influence", "relatif"}
    assert "rps-lje: Added to the Hessian's diagonal" in option_help(shared) and "default 1e-08" in option_help(shared)
    with pytest.raises(InputError, match="--convention does not apply to --method knn"):
        method_params("knn", {"convention": "shark"})


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_generated_options_reach_the_explainer(tmp_path):
    (tmp_path / "tiny.py").write_text("import torch\nfrom torch import nn\n\n\n" + "def build():\n    torch.manual_seed(0)\n"
                                      "    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))\n")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)).astype(np.float32), np.tile([0, 1, 2], 10)
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y)
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--model", f"{tmp_path / 'tiny.py'}:build", "--data", str(tmp_path / "data.npz"),
                                 "--method", "dualview", "--c", "0.5", "--convention", "textbook", "--max-epochs", "50",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["params"] == {"C": 0.5, "convention": "textbook", "max_epochs": 50}
    loaded = rp.load(tmp_path / "run", build().eval())
    assert (loaded.C, loaded.convention, loaded.max_epochs, loaded.tol) == (0.5, "textbook", 50, 0.001)
    result = runner.invoke(app, ["fit", "--model", f"{tmp_path / 'tiny.py'}:build", "--data", str(tmp_path / "data.npz"),
                                 "--method", "similarity", "--cosine", "--out", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    assert rp.load(tmp_path / "sim", build().eval()).cosine is True

"""Fuzzing the file loaders with random bytes and truncated files: each either reads the file or
raises a RepresenterError (never a raw numpy / pandas / PIL / safetensors / JSON exception)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file as save_torch
from torch import nn
from typer.testing import CliRunner

import representer as rp
from representer.cli import app
from representer.errors import RepresenterError
from representer.userdata import DataSpec, load_data
from representer.usermodel import read_state_dict
from representer.userrun import read_run_record

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODEL = "import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n    return nn.Sequential(nn.Linear(4, 3))\n"


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3)).eval()


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    """One valid file of each kind the loaders read."""
    root = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 4)).astype(np.float32), np.arange(12) % 3
    np.savez(root / "data.npz", X_train=X, y_train=y)
    np.save(root / "X.npy", X)
    np.save(root / "y.npy", y)
    (root / "t.csv").write_text("a,b,c,d,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{c}\n" for r, c in zip(X, y)))
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4), mode="L").save(root / "image.png")
    save_torch(net().state_dict(), str(root / "w.safetensors"))
    torch.save(net().state_dict(), root / "w.pt")
    rp.RPSL2(net()).fit(X, y).save(root / "saved")
    (root / "model.py").write_text(MODEL)
    result = CliRunner().invoke(app, ["fit", "--model", f"{root / 'model.py'}:build", "--data", str(root / "data.npz"), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def read_only_representer_errors(load: Callable[[Path], object], name: str, content: bytes, valid: Path) -> None:
    """Write ``content`` as ``name`` in a scratch copy of the valid files, then call ``load(scratch)``."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "files"
        shutil.copytree(valid, scratch)
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        try:
            load(scratch)
        except RepresenterError:
            pass


def images(folder: Path) -> object:
    for c in "abc":
        (folder / "img" / c).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "image.png", folder / "img" / c / "1.png")
    return load_data(DataSpec(str(folder / "img")))


LOADERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "npz": ("data.npz", lambda f: load_data(DataSpec(str(f / "data.npz")))),
    "npy": ("X.npy", lambda f: load_data(DataSpec(str(f / "X.npy"), labels=str(f / "y.npy")))),
    "npy labels": ("y.npy", lambda f: load_data(DataSpec(str(f / "X.npy"), labels=str(f / "y.npy")))),
    "csv": ("t.csv", lambda f: load_data(DataSpec(str(f / "t.csv"), label_column="label"))),
    "image": ("img/a/0.png", images),
    "safetensors weights": ("w.safetensors", lambda f: read_state_dict(str(f / "w.safetensors"))),
    "torch weights": ("w.pt", lambda f: read_state_dict(str(f / "w.pt"))),
    "saved config": ("saved/config.json", lambda f: rp.load(f / "saved", net())),
    "saved state": ("saved/state.safetensors", lambda f: rp.load(f / "saved", net())),
    "run record": ("run/run.json", lambda f: read_run_record(f / "run")),
}


@pytest.mark.parametrize("kind", list(LOADERS))
@FUZZ
@given(content=st.binary(max_size=600))
def test_random_bytes(valid, kind, content):
    name, load = LOADERS[kind]
    read_only_representer_errors(load, name, content, valid)


@pytest.mark.parametrize("kind", [k for k in LOADERS if k != "image"])
@FUZZ
@given(fraction=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 255))
def test_truncated_or_flipped_files(valid, kind, fraction, flip):
    name, load = LOADERS[kind]
    data = (valid / name).read_bytes()
    cut = int(len(data) * fraction)
    read_only_representer_errors(load, name, data[:cut], valid)
    damaged = bytearray(data)
    damaged[cut] ^= flip or 1
    read_only_representer_errors(load, name, bytes(damaged), valid)


@FUZZ
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_images(valid, fraction):
    data = (valid / "image.png").read_bytes()
    read_only_representer_errors(images, "img/a/0.png", data[: int(len(data) * fraction)], valid)

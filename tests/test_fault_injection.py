"""Faults while saving and loading: a save killed mid-write, a full disk, tampered arrays, a changed
network body, and a run folder whose model file changed. None may leave a wrong answer behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from safetensors.numpy import load_file, save_file
from torch import nn
from typer.testing import CliRunner

import representer as rp
from representer import _atomic
from representer.cli import app
from representer.errors import OutputError, StaleStateError, UntrustedCodeError

SRC = str(Path(rp.__file__).resolve().parents[1])
DATA = """
import numpy as np
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


rng = np.random.default_rng(0)
X = rng.normal(size=(300, 4)).astype(np.float32)
y = np.arange(300) % 3
"""


def build_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), np.arange(n) % 3


def spawn(tmp_path: Path, body: str) -> subprocess.Popen:
    """A Python child running ``body`` after the shared definitions above; it prints progress lines."""
    script = tmp_path / "child.py"
    script.write_text(DATA + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def kill_after(child: subprocess.Popen, marker: str) -> None:
    for line in child.stdout:  # type: ignore[union-attr]
        if line.strip() == marker:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"


STALL_IN_WRITE = """
import time
import safetensors.numpy

real = safetensors.numpy.save_file


def stalled(arrays, name, *args, **kwargs):
    with open(name, "wb") as handle:
        handle.write(b"half a file")
    print("writing", flush=True)
    time.sleep(120)


safetensors.numpy.save_file = stalled
"""


def test_a_save_killed_mid_write_leaves_the_previous_save_loadable(tmp_path):
    child = spawn(tmp_path, f"""
        import representer as rp
        rp.RPSL2(build().eval(), lam=0.01).fit(X, y).save("saved")
        print("saved", flush=True)
        {textwrap.indent(STALL_IN_WRITE, "        ").strip()}
        rp.RPSL2(build().eval(), lam=0.5).fit(X, y).save("saved")
    """)
    kill_after(child, "writing")
    loaded = rp.load(tmp_path / "saved", build_net())
    assert loaded.lam == 0.01
    X, y = data()
    np.testing.assert_array_equal(loaded.alpha_, rp.RPSL2(build_net(), lam=0.01).fit(X, y).alpha_)


def test_saves_killed_at_random_moments_always_leave_one_whole_save(tmp_path):
    rng = np.random.default_rng(1)
    X, y = data()
    expected = {lam: rp.RPSL2(build_net(), lam=lam).fit(X, y).alpha_ for lam in (0.01, 0.5)}
    for _ in range(2):
        child = spawn(tmp_path, """
            import representer as rp
            explainers = [rp.RPSL2(build().eval(), lam=lam).fit(X, y) for lam in (0.01, 0.5)]
            explainers[0].save("loop")
            print("ready", flush=True)
            while True:
                for explainer in explainers:
                    explainer.save("loop")
        """)
        assert child.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        time.sleep(float(rng.uniform(0.05, 0.4)))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        loaded = rp.load(tmp_path / "loop", build_net())
        np.testing.assert_array_equal(loaded.alpha_, expected[loaded.lam])
        assert sorted(p.name for p in (tmp_path / "loop").iterdir()) == ["config.json", "state.safetensors"]


def test_a_fit_killed_mid_write_leaves_the_previous_run_usable(tmp_path):
    (tmp_path / "tiny.py").write_text(DATA)
    child = spawn(tmp_path, f"""
        from representer.cli import app
        np.savez("data.npz", X_train=X, y_train=y)
        app(["fit", "--model", "tiny.py:build", "--data", "data.npz", "--lam", "0.01", "--out", "run"], standalone_mode=False)
        print("fitted", flush=True)
        {textwrap.indent(STALL_IN_WRITE, "        ").strip()}
        app(["fit", "--model", "tiny.py:build", "--data", "data.npz", "--lam", "0.5", "--out", "run"], standalone_mode=False)
    """)
    kill_after(child, "writing")
    result = CliRunner().invoke(app, ["explain", str(tmp_path / "run"), "--split", "train", "--test-indices", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["params"] == {"lam": 0.01}
    assert rp.load(tmp_path / "run", build_net()).lam == 0.01


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_a_save_keeps_the_previous_save(tmp_path, monkeypatch):
    X, y = data(60)
    rp.RPSL2(build_net(), lam=0.01).fit(X, y).save(tmp_path / "saved")
    before = {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()}
    real = safetensors.numpy.save_file

    def half_then_full(arrays, name, *args, **kwargs):
        real(arrays, name, *args, **kwargs)
        with open(name, "r+b") as handle:
            handle.truncate(100)
        _disk_full()

    monkeypatch.setattr(safetensors.numpy, "save_file", half_then_full)
    with pytest.raises(OutputError, match="No space left on device") as info:
        rp.RPSL2(build_net(), lam=0.5).fit(X, y).save(tmp_path / "saved")
    assert info.value.errno == errno.ENOSPC and "Nothing was changed there" in str(info.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]  # no staged folder left behind
    monkeypatch.undo()
    assert rp.load(tmp_path / "saved", build_net()).lam == 0.01


def test_a_full_disk_while_writing_outputs_is_one_line_and_keeps_the_old_outputs(tmp_path, monkeypatch):
    (tmp_path / "tiny.py").write_text(DATA)
    X, y = data(60)
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y)
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--model", f"{tmp_path / 'tiny.py'}:build", "--data", str(tmp_path / "data.npz"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["explain", str(run), "--split", "train", "--top-k", "2"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    monkeypatch.setattr(_atomic, "_fsync", _disk_full)
    for command in (["explain", str(run), "--split", "train", "--top-k", "5"], ["debug", str(run)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "error: Cannot write" in result.output and "No space left on device" in result.output
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize(
    ("make", "array"),
    [
        (lambda: rp.RPSL2(build_net()), "alpha_"),
        (lambda: rp.RPSLJE(build_net()), "weights_"),
        (lambda: rp.InfluenceFunction(build_net()), "hessian_factor_"),
        (lambda: rp.FullModelInfluence(build_net(), hessian="exact"), "hessian_factor_"),
        (lambda: rp.DualView(build_net()), "beta_"),
    ],
    ids=["rps-l2", "rps-lje", "influence", "full-model influence", "dualview"],
)
def test_a_tampered_array_is_refused_by_name(tmp_path, make, array):
    X, y = data(60)
    folder = make().fit(X, y).save(tmp_path / "saved")
    arrays = load_file(str(folder / "state.safetensors"))
    assert array in arrays
    arrays[array] = arrays[array].copy()
    arrays[array].flat[0] += 1e-9
    save_file(arrays, str(folder / "state.safetensors"))
    with pytest.raises(StaleStateError, match=rf"changed: {array}\b"):
        rp.load(folder, build_net())


def test_a_changed_body_or_buffer_is_refused_by_name(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X, y = data(60)
    folder = rp.RPSL2(net).fit(X, y).save(tmp_path / "saved")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for name in ("0.weight", "1.running_mean", "1.num_batches_tracked"):
        changed = {**state, name: state[name] + 1}
        net.load_state_dict(changed)
        with pytest.raises(StaleStateError, match=rf"different model \(different parameters: {name};"):
            rp.load(folder, net)
    net.load_state_dict(state)
    assert rp.load(folder, net).lam == 0.003


def test_a_run_whose_package_changed_is_refused_unless_trusted(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(DATA)
    X, y = data(60)
    np.savez(tmp_path / "data.npz", X_train=X, y_train=y)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("mypkg", "mypkg.nets"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--model", "mypkg.nets:build", "--data", "data.npz", "--out", "run"])
    assert result.exit_code == 0, result.output
    code = json.loads((tmp_path / "run" / "run.json").read_text())["model"]["code"]
    assert sorted(Path(p).name for p in code) == ["__init__.py", "nets.py"]
    (package / "__init__.py").write_text("print('side effect')\n")
    result = runner.invoke(app, ["explain", "run", "--split", "train", "--test-indices", "1"])
    assert result.exit_code == 1 and "__init__.py changed since `representer fit`" in " ".join(result.output.split())
    assert isinstance(result.exception.__context__.__cause__, UntrustedCodeError)
    result = runner.invoke(app, ["explain", "run", "--split", "train", "--test-indices", "1", "--trust-code"])
    assert result.exit_code == 0, result.output

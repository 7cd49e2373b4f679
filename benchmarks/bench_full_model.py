"""Full-model attribution: time, peak memory and agreement with exact influence, ours vs kronfluence, dattri, TRAK.

Two parts, one run:

* **speed** — SmallCNN(width=4, feature_dim=32) (13,242 parameters) on the first N_TRAIN Fashion-MNIST
  training images, scoring N_TEST test images against all of them (default 1,000 × 10,000):
  ours EK-FAC influence (exact Fisher expectation, and one sampled label per example as kronfluence),
  ours TracIn/grad-dot with a 512-d Gaussian projection, kronfluence EK-FAC (all queries in one
  batch; and with query batch 1 — quanda's setting — on QB1_QUERIES queries, extrapolated),
  dattri grad-dot (``TracInAttributor``, its default 512-d projection), and the projection step alone,
  ours vs TRAK's ``BasicProjector`` (CPU) on the same gradient matrix.
* **agreement** — a smaller SmallCNN(width=2, feature_dim=16) on 1,000 training × 100 test images,
  where the exact damped Gauss–Newton inverse is affordable: Spearman (mean over test rows) of each
  backend and of kronfluence's EK-FAC with exact influence.

Every column runs in its own process (peak RSS is that process's ``VmHWM``); the external
packages run from throwaway virtualenvs (``/tmp/kfvenv``, ``/tmp/dattrivenv``, ``/tmp/trakvenv``,
each ``pip install torch==2.13.0 <pkg>``) or, without them, from this interpreter when the package is
installed here (``pip install --no-deps kronfluence==1.0.1 einops opt-einsum einconv accelerate
dattri==0.3.0 traker==0.3.2``); a column is skipped when neither is there.
Damping λ = 0.1 everywhere (kronfluence: ``damping_factor=0.1``). Explained class: predicted.

    python benchmarks/bench_full_model.py [--n-train 10000] [--n-test 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch
from peers import DATTRI_TRACIN, KRONFLUENCE_TASK

ROOT = Path(__file__).resolve().parents[1]
VENVS = {"kronfluence": "/tmp/kfvenv", "dattri": "/tmp/dattrivenv", "trak": "/tmp/trakvenv"}
DAMPING = 0.1
#: Queries timed for kronfluence's query-batch-1 mode; its score time is extrapolated to N_TEST.
QB1_QUERIES = 20

PRELUDE = """
import json, sys, time
import numpy as np, torch
from torch import nn
torch.manual_seed(0)
work = sys.argv[1]
def small_cnn(width, feature_dim):
    # the architecture of representer.zoo.SmallCNN, rebuilt here so external venvs need no representer
    return nn.Sequential(nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(2 * width * 49, feature_dim), nn.ReLU()),
        nn.Linear(feature_dim, 10))
def load(part):
    cfg = json.load(open(f"{work}/{part}.json"))
    net = small_cnn(cfg["width"], cfg["feature_dim"])
    net.load_state_dict(torch.load(f"{work}/{part}.pt"))
    net.eval()
    d = np.load(f"{work}/{part}.npz")
    return net, d["Xtr"], d["ytr"], d["Xte"], d["pred"]
def report(seconds, scores=None, name=None, **extra):
    if scores is not None:
        np.save(f"{work}/{name}.npy", np.asarray(scores, dtype=np.float64))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss of the parent across exec
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
    print("RESULT" + json.dumps({"seconds": seconds, "peak_mb": peak, **extra}))
"""

OURS = """
sys.path.insert(0, "{root}/src")
from representer.methods.full_model import FullModelInfluence, TracInCP
net, Xtr, ytr, Xte, pred = load("{part}")
t = time.perf_counter()
if "{method}" == "ekfac_sampled":
    ex = FullModelInfluence(net, hessian="ekfac", ekfac_samples=1, damping={damping}, compute_dtype="float32").fit(Xtr, ytr)
elif "{method}" == "tracin_rp512":
    ex = TracInCP(net, projection_dim=512, compute_dtype="float32").fit(Xtr, ytr, checkpoints=[net.state_dict()], learning_rates=[1.0])
else:
    kw = dict(lissa_depth=1500, lissa_tol=0.05) if "{method}" == "lissa" else {{}}
    ex = FullModelInfluence(net, hessian="{method}", damping={damping}, compute_dtype="{dtype}", dtype="{dtype}", **kw).fit(Xtr, ytr)
scores = ex.attribute(Xte, target=pred)
report(time.perf_counter() - t, scores, "{part}_ours_{method}")
"""

KRONFLUENCE = KRONFLUENCE_TASK + """
import logging, tempfile
logging.disable(logging.WARNING)
from torch.utils.data import TensorDataset
from kronfluence.analyzer import Analyzer, prepare_model
from kronfluence.arguments import FactorArguments, ScoreArguments
torch.set_num_threads(2)
net, Xtr, ytr, Xte, pred = load("{part}")
Xte, pred = Xte[:{n_queries}], pred[:{n_queries}]
task = Classification()
t = time.perf_counter()
model = prepare_model(net, task)
train = TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr))
test = TensorDataset(torch.as_tensor(Xte), torch.as_tensor(pred))
analyzer = Analyzer("bench", model=model, task=task, cpu=True, disable_tqdm=True, output_dir=tempfile.mkdtemp())
analyzer.fit_all_factors("ekfac", dataset=train, per_device_batch_size=512,
                         factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)
fit_seconds = time.perf_counter() - t
analyzer.compute_pairwise_scores("s", factors_name="ekfac", query_dataset=test, train_dataset=train,
                                 per_device_query_batch_size={query_batch} or len(test), per_device_train_batch_size=512,
                                 score_args=ScoreArguments(damping_factor={damping}), overwrite_output_dir=True)
scores = analyzer.load_pairwise_scores("s")["all_modules"].numpy()
report(time.perf_counter() - t, scores, "{part}_kronfluence{query_batch}", fit_seconds=fit_seconds)
"""

DATTRI = """
net, Xtr, ytr, Xte, pred = load("{part}")
""" + DATTRI_TRACIN + """
scores = attributor.attribute(train, test).T
report(time.perf_counter() - t0, scores, "{part}_dattri")
"""

PROJECT_OURS = """
sys.path.insert(0, "{root}/src")
from representer.fullmodel import RandomProjector
g = torch.as_tensor(np.load(f"{{work}}/gradients.npy"))
t = time.perf_counter()
RandomProjector(g.shape[1], 512, seed=0).project(g)
report(time.perf_counter() - t)
"""

PROJECT_TRAK = """
from trak.projectors import BasicProjector, ProjectionType
g = torch.as_tensor(np.load(f"{{work}}/gradients.npy"))
t = time.perf_counter()
BasicProjector(grad_dim=g.shape[1], proj_dim=512, seed=0, proj_type=ProjectionType.normal, device="cpu").project(g, model_id=0)
report(time.perf_counter() - t)
"""


def prepare(work: Path, part: str, width: int, feature_dim: int, n_train: int, n_test: int) -> int:
    """Train the part's SmallCNN on Fashion-MNIST and save weights, data and predicted test classes."""
    sys.path.insert(0, str(ROOT / "src"))
    from representer.datasets import load_fashion_mnist
    from representer.zoo import SmallCNN, predict_logits, train_classifier

    d = load_fashion_mnist()
    Xtr, ytr, Xte = d.X_train[:n_train], d.y_train[:n_train], d.X_test[:n_test]
    torch.manual_seed(0)
    net = train_classifier(SmallCNN(width=width, feature_dim=feature_dim), Xtr, ytr, epochs=3, lr=3e-3, weight_decay=1e-4)
    pred = predict_logits(net, Xte).argmax(1)
    state = {k.replace("features.", "0.").replace("classifier.", "1."): v for k, v in net.state_dict().items()}
    torch.save(state, work / f"{part}.pt")
    (work / f"{part}.json").write_text(json.dumps({"width": width, "feature_dim": feature_dim}))
    np.savez(work / f"{part}.npz", Xtr=Xtr, ytr=ytr, Xte=Xte, pred=pred)
    return sum(p.numel() for p in net.parameters())


def run(python: str, body: str, work: Path, timeout: int = 1800) -> dict:
    code = PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run([python, "-c", code, str(work)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(lines[-1][len("RESULT") :])


def venv_python(name: str) -> str | None:
    """The peer's throwaway venv, else this interpreter when the peer is installed here, else ``None``."""
    import importlib.util

    path = Path(VENVS[name]) / "bin" / "python"
    if path.exists():
        return str(path)
    return sys.executable if importlib.util.find_spec(name) is not None else None


def spearman_rows(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(np.mean([spearmanr(a[t], b[t])[0] for t in range(a.shape[0])]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_full_model_"))
    me = sys.executable
    fmt = dict(root=ROOT, damping=DAMPING)

    p_speed = prepare(work, "speed", 4, 32, args.n_train, args.n_test)
    print(f"speed part: SmallCNN(width=4, feature_dim=32), {p_speed} parameters, {args.n_test} test × {args.n_train} train")
    rows = [
        ("ours EK-FAC influence (float32)", me, OURS.format(part="speed", method="ekfac", dtype="float32", **fmt)),
        ("ours grad-dot, 512-d projection", me, OURS.format(part="speed", method="tracin_rp512", dtype="float32", **fmt)),
        ("ours EK-FAC influence (float32, 1 sampled label)", me, OURS.format(part="speed", method="ekfac_sampled", dtype="float32", **fmt)),
        ("kronfluence EK-FAC", venv_python("kronfluence"), KRONFLUENCE.format(part="speed", n_queries=args.n_test, query_batch=0, **fmt)),
        (f"kronfluence EK-FAC, query batch 1, {QB1_QUERIES} queries", venv_python("kronfluence"), KRONFLUENCE.format(part="speed", n_queries=QB1_QUERIES, query_batch=1, **fmt)),
        ("dattri grad-dot (TracIn, 512-d proj.)", venv_python("dattri"), DATTRI.format(part="speed", **fmt)),
    ]
    results = {}
    for label, python, body in rows:
        results[label] = run(python, body, work) if python else {"error": "venv missing"}
    print("| method | seconds | peak RSS (MB) |\n|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r.get('seconds', float('nan')):.1f} | {r.get('peak_mb', float('nan')):.0f} |" if "error" not in r else f"| {label} | skipped: {r['error']} | |")
    ours, kf = results["ours EK-FAC influence (float32)"], results["kronfluence EK-FAC"]
    if "error" not in ours and "error" not in kf:
        kscores = np.load(work / "speed_kronfluence0.npy")
        for name in ("ekfac", "ekfac_sampled"):
            oscores = np.load(work / f"speed_ours_{name}.npy")
            print(f"Spearman(ours {name}, kronfluence) = {spearman_rows(oscores[:100], kscores[:100]):.3f} (first 100 test rows)")
        for label, r in results.items():
            if label.startswith("ours") and "error" not in r:
                print(f"kronfluence (batched queries) / {label}: {kf['seconds'] / r['seconds']:.1f}×")
    qb1 = results[f"kronfluence EK-FAC, query batch 1, {QB1_QUERIES} queries"]
    if "error" not in qb1:
        projected = qb1["fit_seconds"] + (qb1["seconds"] - qb1["fit_seconds"]) * args.n_test / QB1_QUERIES
        print(f"kronfluence with query batch 1 (quanda's setting), extrapolated to {args.n_test} queries: {projected:.0f} s "
              f"= {projected / ours['seconds']:.1f}× ours exact-Fisher EK-FAC")

    sys.path.insert(0, str(ROOT / "src"))
    from representer.fullmodel import GradientComputer, LabelledData, Network, ParameterSet
    from representer.zoo import SmallCNN

    d = np.load(work / "speed.npz")
    net = torch.nn.Sequential(*SmallCNN(width=4, feature_dim=32).children())
    net.load_state_dict(torch.load(work / "speed.pt"))
    network = Network(net.eval(), ParameterSet.select(net, None), device=torch.device("cpu"), dtype=torch.float32)
    np.save(work / "gradients.npy", GradientComputer(network).matrix(LabelledData(d["Xtr"], d["ytr"], 512)))
    proj_ours = run(me, PROJECT_OURS.format(**fmt), work)
    trak = venv_python("trak")
    proj_trak = run(trak, PROJECT_TRAK.format(**fmt), work) if trak else {"error": "venv missing"}
    print(f"\nprojection of {args.n_train} × {p_speed} float32 gradients to 512 dims (Gaussian):")
    print("| projector | seconds | peak RSS (MB) |\n|---|---|---|")
    for label, r in (("ours RandomProjector", proj_ours), ("TRAK BasicProjector (CPU)", proj_trak)):
        print(f"| {label} | {r.get('seconds', float('nan')):.2f} | {r.get('peak_mb', float('nan')):.0f} |" if "error" not in r else f"| {label} | skipped: {r['error']} | |")

    p_agree = prepare(work, "agree", 2, 16, 1000, 100)
    print(f"\nagreement part: SmallCNN(width=2, feature_dim=16), {p_agree} parameters, 100 test × 1000 train, damping {DAMPING}")
    agree = {}
    for method in ("exact", "cg", "lissa", "ekfac", "ekfac_sampled", "identity"):
        agree[f"ours {method}"] = (run(me, OURS.format(part="agree", method=method, dtype="float64", **fmt), work), f"agree_ours_{method}")
    kf_python = venv_python("kronfluence")
    agree["kronfluence EK-FAC"] = (
        run(kf_python, KRONFLUENCE.format(part="agree", n_queries=100, query_batch=0, **fmt), work) if kf_python else {"error": "venv missing"},
        "agree_kronfluence0",
    )
    exact = np.load(work / "agree_ours_exact.npy")
    print("| method | seconds | Spearman with exact | max rel. error vs exact |\n|---|---|---|---|")
    for label, (r, name) in agree.items():
        if "error" in r:
            print(f"| {label} | skipped: {r['error']} | | |")
            continue
        s = np.load(work / f"{name}.npy")
        rel = np.abs(s - exact).max() / np.abs(exact).max()
        print(f"| {label} | {r['seconds']:.1f} | {spearman_rows(s, exact):.3f} | {rel:.1e} |")


if __name__ == "__main__":
    main()

"""All-parameter influence and TracIn at real size: ours vs kronfluence, captum and dattri, one thread each.

Parts (choose with ``--parts``; each column runs in its own process, so its peak RSS is its own):

* ``mlp10k`` / ``mlp60k`` — a 784-256-128-10 MLP (235,146 parameters) trained on Fashion-MNIST,
  explained on its first 10,000 / all 60,000 training images, ``--n-test`` (1,000) test images:
  - EK-FAC influence over all parameters: ours with its defaults (``damping="auto"``, float64
    gradients and solves, float32 store), ours with ``compute_dtype="float32"``, and kronfluence's
    EK-FAC (one sampled label per example, float32) at **the same damping** (ours' auto value), all
    queries in one batch; Spearman of each with ours-default on the first 100 queries;
  - TracIn on the last layer (one checkpoint, batches of 4,096 for both): ours
    ``TracInCP(params=["classifier"])`` (float64 default and float32) vs captum's ``TracInCPFast`` —
    "fit" is fit + self-influence of every training point, "score" the dense
    ``queries × train`` matrix; captum's score omits the head's bias (it is ``‖δ‖²‖a‖²``), so the
    agreement line compares it with ours minus the bias term;
  - (``mlp10k`` only) TracIn over all parameters with a 512-d Gaussian projection: ours vs dattri's
    ``TracInAttributor``.
* ``cnn60k`` — the zoo ``SmallCNN()`` (105,866 parameters) on all 60,000 images: EK-FAC as above, plus
  ours with ``ekfac_samples=1`` (one sampled label per example, kronfluence's choice, instead of the
  exact expectation over the K classes).
* the 60k parts add a memory column: ours with its defaults, fit, then the test side of 1,000 queries
  and the first block of scores (scoring repeats that block; its time is not reported), so the peak
  RSS of a 1,000-query run is measured even when ``--n-test`` is smaller to keep the run short.
* ``agree`` — agreement with exact influence where exact is affordable: a 784-16-10 MLP (12,730
  parameters) on 2,000 training × 100 test images. Spearman (mean over test rows) with the exact damped
  Gauss–Newton influence *at the same damping* of ours EK-FAC at the default damping, ours at the
  former default 1e-3, kronfluence at our damping, and the gradient dot product.

Columns report ``fit s``, ``score s``, the process's peak RSS (``VmHWM``, MiB) and its growth over the
RSS just before fitting. Results are appended to ``--out`` (JSON) as they come, and a rerun skips
columns already there, so an interrupted run resumes. One thread per process
(``torch.set_num_threads(1)``); the machine is shared, so compare ratios within one run.

Peers are not project dependencies. Install them into the same environment without letting pip
replace torch (kronfluence declares torchvision, which it does not import for these models)::

    pip install --no-deps kronfluence==1.0.1 einops opt-einsum einconv accelerate
    pip install --no-deps dattri==0.3.0          # captum comes with representer[all]
    python -c "import torch; print(torch.__version__)"   # still 2.13.0

    python benchmarks/bench_full_model_scale.py [--parts mlp10k mlp60k cnn60k agree] [--n-test 1000] [--timeout S] [--out DIR]

(``--n-test`` queries for the timing columns; the data always keeps 1,000, so runs with different
``--n-test`` can share ``--out`` — but their timing columns then mix query counts, so use one.)
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

from representer._atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
DATA_PARTS = {"mlp10k": ("mlp", 10_000), "mlp60k": ("mlp", 60_000), "cnn60k": ("cnn", 60_000)}
#: Batch of both last-layer TracIn columns (captum's fastest; ours through ``TorchClassifier(batch_size=)``).
CAPTUM_BATCH = 4096
#: Queries of the memory column: ours with its defaults, fit and the test side of 1,000 queries plus
#: the first block of scores (the steady state of scoring repeats it), timed for the fit only.
MEMORY_QUERIES = 1000

PRELUDE = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, "{root}/src")
torch.set_num_threads(1)
torch.manual_seed(0)
work, part = sys.argv[1], sys.argv[2]
from representer.zoo import MLP, SmallCNN
def rss():
    return {{k: int(l.split()[1]) / 1024 for l in open("/proc/self/status") for k in ("VmRSS", "VmHWM") if l.startswith(k + ":")}}
def load():
    cfg = json.load(open(f"{{work}}/{{part}}.json"))
    net = MLP(784, tuple(cfg["hidden"])) if cfg["arch"] == "mlp" else SmallCNN()
    net.load_state_dict(torch.load(f"{{work}}/{{cfg['weights']}}"))
    d = np.load(f"{{work}}/{{part}}.npz")
    return net.eval(), d["Xtr"], d["ytr"], d["Xte"], d["pred"]
net, Xtr, ytr, Xte, pred = load()
Xte, pred = Xte[:{queries}], pred[:{queries}]
before = rss()["VmRSS"]
def report(fit, score, scores=None, **extra):
    if scores is not None:
        np.save(f"{{work}}/{{part}}-{{name}}.npy", np.asarray(scores[:100], dtype=np.float64))
    peak = rss()["VmHWM"]
    print("RESULT" + json.dumps({{"fit_s": fit, "score_s": score, "peak_mb": peak, "growth_mb": peak - before, **extra}}))
"""

OURS_EKFAC = """
name = "{name}"
from representer.methods.full_model import FullModelInfluence
t0 = time.perf_counter()
ex = FullModelInfluence(net, compute_dtype="{dtype}", damping={damping!r}, ekfac_samples={samples}, progress=False).fit(Xtr, ytr)
t1 = time.perf_counter()
scores = ex.attribute(Xte, target=pred)
t2 = time.perf_counter()
report(t1 - t0, t2 - t1, scores, damping=ex.fit_report_["damping"], store_mb=ex.fit_report_["store_bytes"] / 2**20)
"""

KRONFLUENCE = KRONFLUENCE_TASK + """
name = "{name}"
import copy, logging, tempfile, warnings
logging.disable(logging.WARNING)
warnings.filterwarnings("ignore")
from torch.utils.data import TensorDataset
from kronfluence.analyzer import Analyzer, prepare_model
from kronfluence.arguments import FactorArguments, ScoreArguments
t0 = time.perf_counter()
task = Classification()
model = prepare_model(copy.deepcopy(net), task)
train = TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr))
test = TensorDataset(torch.as_tensor(Xte), torch.as_tensor(pred))
analyzer = Analyzer("bench", model=model, task=task, cpu=True, disable_tqdm=True, output_dir=tempfile.mkdtemp())
analyzer.fit_all_factors("ekfac", dataset=train, per_device_batch_size=512, factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)
t1 = time.perf_counter()
analyzer.compute_pairwise_scores("s", factors_name="ekfac", query_dataset=test, train_dataset=train,
                                 per_device_query_batch_size=len(test), per_device_train_batch_size=512,
                                 score_args=ScoreArguments(damping_factor={damping}), overwrite_output_dir=True)
scores = analyzer.load_pairwise_scores("s")["all_modules"].numpy()
t2 = time.perf_counter()
report(t1 - t0, t2 - t1, scores)
"""

OURS_MEMORY = """
name = "{name}"
from representer.methods.full_model import FullModelInfluence
t0 = time.perf_counter()
ex = FullModelInfluence(net, progress=False).fit(Xtr, ytr)
t1 = time.perf_counter()
next(ex.attribution_blocks(Xte, target=pred))
report(t1 - t0, float("nan"), None, store_mb=ex.fit_report_["store_bytes"] / 2**20)
"""

OURS_TRACIN = """
name = "{name}"
from representer.methods.full_model import TracInCP
t0 = time.perf_counter()
from representer import TorchClassifier
model = TorchClassifier(net, batch_size={batch}) if {batch} else net
ex = TracInCP(model, params={params!r}, projection_dim={projection!r}, compute_dtype="{dtype}", progress=False)
ex.fit(Xtr, ytr, checkpoints=[net.state_dict()], learning_rates=[1.0])
self_influence = ex.self_influence()
t1 = time.perf_counter()
scores = ex.attribute(Xte, target=pred)
t2 = time.perf_counter()
if {params!r} == ["classifier"]:
    delta, act = ex.grad0_0_.astype(np.float64), ex.grad0_1_.astype(np.float64)
    np.save(f"{{work}}/{{part}}-{{name}}-nobias.npy", (delta**2).sum(1) * ((act**2).sum(1) - 1))
report(t1 - t0, t2 - t1, scores)
"""

CAPTUM = """
name = "{name}"
from captum.influence import TracInCPFast
from torch.utils.data import TensorDataset
checkpoint = f"{{work}}/{{part}}-captum.pt"
torch.save(net.state_dict(), checkpoint)
def load_checkpoint(module, path):
    module.load_state_dict(torch.load(path))
    return 1.0
t0 = time.perf_counter()
tracin = TracInCPFast(net, net.classifier, TensorDataset(torch.as_tensor(Xtr), torch.as_tensor(ytr)), [checkpoint],
                      load_checkpoint, loss_fn=torch.nn.CrossEntropyLoss(reduction="sum"), batch_size={batch})
self_influence = tracin.self_influence(show_progress=False).numpy()
t1 = time.perf_counter()
scores = tracin.influence((torch.as_tensor(Xte), torch.as_tensor(pred)), k=None).numpy()
t2 = time.perf_counter()
np.save(f"{{work}}/{{part}}-{{name}}-self.npy", self_influence)
report(t1 - t0, t2 - t1, scores)
"""

DATTRI = DATTRI_TRACIN + """
name = "{name}"
t1 = time.perf_counter()
scores = attributor.attribute(train, test).T.numpy()
t2 = time.perf_counter()
report(t1 - t0, t2 - t1, scores)
"""

EXACT = """
name = "{name}"
from representer.methods.full_model import FullModelInfluence
t0 = time.perf_counter()
ex = FullModelInfluence(net, hessian="{hessian}", damping={damping!r}, progress=False, dtype="float64").fit(Xtr, ytr)
t1 = time.perf_counter()
scores = ex.attribute(Xte, target=pred)
report(t1 - t0, time.perf_counter() - t1, scores, damping=ex.fit_report_["damping"])
"""


def prepare(work: Path, parts: list[str], n_test: int) -> None:
    """Train each network once and save it with each part's data and predicted test classes."""
    sys.path.insert(0, str(ROOT / "src"))
    from representer.datasets import load_fashion_mnist
    from representer.zoo import MLP, SmallCNN, predict_logits, train_classifier

    d = load_fashion_mnist()
    trained = {}
    for part in parts:
        arch, n = DATA_PARTS.get(part, ("agree", 2000))
        if arch not in trained:
            torch.manual_seed(0)
            if arch == "mlp":
                net = train_classifier(MLP(784, (256, 128)), d.X_train, d.y_train, epochs=2, lr=1e-3, batch_size=128, weight_decay=1e-4)
                config = {"arch": "mlp", "hidden": [256, 128]}
            elif arch == "cnn":
                net = train_classifier(SmallCNN(), d.X_train, d.y_train, epochs=1, lr=2e-3, batch_size=128, weight_decay=1e-4)
                config = {"arch": "cnn", "hidden": None}
            else:
                net = train_classifier(MLP(784, (16,)), d.X_train[:n], d.y_train[:n], epochs=20, lr=3e-3, batch_size=64, weight_decay=1e-3)
                config = {"arch": "mlp", "hidden": [16]}
            torch.save(net.state_dict(), work / f"{arch}.pt")
            trained[arch] = (net, {**config, "weights": f"{arch}.pt"})
        net, config = trained[arch]
        m = 100 if arch == "agree" else max(n_test, MEMORY_QUERIES)
        pred = predict_logits(net, d.X_test[:m]).argmax(1)
        write_text(work / f"{part}.json", json.dumps(config))
        np.savez(work / f"{part}.npz", Xtr=d.X_train[:n], ytr=d.y_train[:n], Xte=d.X_test[:m], pred=pred)


def run(body: str, work: Path, part: str, queries: int, timeout: int = 6 * 3600) -> dict:
    code = PRELUDE.format(root=ROOT, queries=queries) + textwrap.dedent(body)
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(work), part], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1][len("RESULT") :])


def spearman_rows(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(np.mean([spearmanr(a[t], b[t])[0] for t in range(min(a.shape[0], b.shape[0]))]))


def columns(part: str, results: dict) -> list[tuple[str, str]]:
    """``(name, body)`` of the part's columns, in run order (later ones may read earlier results)."""
    auto = results.get(f"{part}/ours-ekfac", {}).get("damping", 1.0)
    if part == "agree":
        return [
            ("ours-ekfac", EXACT.format(name="ours-ekfac", hessian="ekfac", damping="auto")),
            ("exact", EXACT.format(name="exact", hessian="exact", damping=auto)),
            ("ours-ekfac-1e-3", EXACT.format(name="ours-ekfac-1e-3", hessian="ekfac", damping=1e-3)),
            ("exact-1e-3", EXACT.format(name="exact-1e-3", hessian="exact", damping=1e-3)),
            ("kronfluence", KRONFLUENCE.format(name="kronfluence", damping=auto)),
            ("identity", EXACT.format(name="identity", hessian="identity", damping="auto")),
        ]
    cols = [
        ("ours-ekfac", OURS_EKFAC.format(name="ours-ekfac", dtype="float64", damping="auto", samples=None)),
        ("ours-ekfac-f32", OURS_EKFAC.format(name="ours-ekfac-f32", dtype="float32", damping="auto", samples=None)),
        ("kronfluence", KRONFLUENCE.format(name="kronfluence", damping=auto)),
    ]
    if part == "cnn60k":
        cols.append(("ours-ekfac-1-label", OURS_EKFAC.format(name="ours-ekfac-1-label", dtype="float64", damping="auto", samples=1)))
    if part.startswith("mlp"):
        cols += [
            ("ours-tracin-head", OURS_TRACIN.format(name="ours-tracin-head", params=["classifier"], projection=None, dtype="float64", batch=CAPTUM_BATCH)),
            ("ours-tracin-head-f32", OURS_TRACIN.format(name="ours-tracin-head-f32", params=["classifier"], projection=None, dtype="float32", batch=CAPTUM_BATCH)),
            ("captum-tracincpfast", CAPTUM.format(name="captum-tracincpfast", batch=CAPTUM_BATCH)),
        ]
    if part.endswith("60k"):
        cols.append(("ours-ekfac-memory", OURS_MEMORY.format(name="ours-ekfac-memory")))
    if part == "mlp10k":
        cols += [
            ("ours-tracin-rp512", OURS_TRACIN.format(name="ours-tracin-rp512", params=None, projection=512, dtype="float32", batch=0)),
            ("dattri-tracin-rp512", DATTRI.format(name="dattri-tracin-rp512")),
        ]
    return cols


def summarise(part: str, results: dict, work: Path) -> None:
    rows = {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith(part + "/")}
    print(f"\n### {part}\n\n| column | fit s | score s | peak RSS MiB | growth MiB |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        if "error" in r:
            print(f"| {name} | skipped: {r['error']} | | | |")
        else:
            score = "first block only" if name == "ours-ekfac-memory" else f"{r['score_s']:.1f}"
            print(f"| {name} | {r['fit_s']:.1f} | {score} | {r['peak_mb']:.0f} | {r['growth_mb']:.0f} |")
    load = lambda name: np.load(work / f"{part}-{name}.npy") if (work / f"{part}-{name}.npy").exists() else None  # noqa: E731
    if part == "agree":
        exact, exact_small = load("exact"), load("exact-1e-3")
        for name, ref in (("ours-ekfac", exact), ("kronfluence", exact), ("identity", exact), ("ours-ekfac-1e-3", exact_small)):
            if load(name) is not None and ref is not None:
                print(f"Spearman({name}, exact at the same damping) = {spearman_rows(load(name), ref):.3f}")
        return
    ours = load("ours-ekfac")
    for name in ("ours-ekfac-f32", "kronfluence", "ours-ekfac-1-label"):
        if ours is not None and load(name) is not None:
            print(f"Spearman({name}, ours-ekfac) = {spearman_rows(load(name), ours):.3f} (first 100 queries)")
    for mine, peer in (("ours-ekfac", "kronfluence"), ("ours-ekfac-f32", "kronfluence"), ("ours-ekfac-1-label", "kronfluence"), ("ours-tracin-head", "captum-tracincpfast"),
                       ("ours-tracin-head-f32", "captum-tracincpfast"), ("ours-tracin-rp512", "dattri-tracin-rp512")):
        a, b = rows.get(mine, {}), rows.get(peer, {})
        if "fit_s" in a and "fit_s" in b:
            print(f"{peer} / {mine}: fit {b['fit_s'] / a['fit_s']:.2f}×, score {b['score_s'] / a['score_s']:.2f}×, "
                  f"total {(b['fit_s'] + b['score_s']) / (a['fit_s'] + a['score_s']):.2f}× (> 1: ours faster)")
    nobias, captum_self = load("ours-tracin-head-nobias"), None
    if (work / f"{part}-captum-tracincpfast-self.npy").exists() and nobias is not None:
        captum_self = np.load(work / f"{part}-captum-tracincpfast-self.npy")
        print(f"self-influence, ours without the bias term vs captum: max relative difference "
              f"{np.abs(nobias[:len(captum_self)] - captum_self).max() / np.abs(captum_self).max():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["agree", "mlp10k", "mlp60k", "cnn60k"], choices=["agree", *DATA_PARTS])
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds each column may run (a column over it is reported as skipped)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench_full_model_scale")
    args = parser.parse_args()
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    missing = [p for p in args.parts if not (work / f"{p}.npz").exists()]
    if missing:
        prepare(work, missing, args.n_test)
    print(f"torch {torch.__version__}, one thread per column, results in {results_file}")
    for part in args.parts:
        for name, _ in columns(part, results):
            key = f"{part}/{name}"
            if key in results and "error" not in results[key]:
                continue
            body = dict(columns(part, results))[name]
            queries = MEMORY_QUERIES if name == "ours-ekfac-memory" else args.n_test
            results[key] = run(body, work, part, queries, timeout=args.timeout)
            write_text(results_file, json.dumps(results, indent=1))
            print(f"{key}: {results[key]}", flush=True)
        summarise(part, results, work)


if __name__ == "__main__":
    main()

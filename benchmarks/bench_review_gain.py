"""What a perfect reviewer's corrections buy, measured by ``representer review --train`` on Fashion-MNIST.

    python benchmarks/bench_review_gain.py [--epochs 12] [--seeds 0,1,2] [--top 60] [--out /tmp/review-gain]

The whole loop through the command line: 600 training images of the bundled Fashion-MNIST subset
with 10 % of their labels flipped, a SmallCNN trained on them (3 epochs), ``representer fit``
(RPS-L2, the subset's 1,000 test images as the test split) and ``representer debug --top TOP``
(the auto route: cross-fit without checkpoints). A simulated reviewer who knows the true labels
relabels every flipped point among the TOP most suspicious and keeps the others (through
``open_review(...).decide``, as the app does). Then ``representer review --train`` retrains a fresh
SmallCNN with the same seed on the given and on the corrected labels (EPOCHS epochs), once per seed,
and the table lists both test accuracies.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from safetensors.torch import save_file
from typer.testing import CliRunner

from representer.cli import app
from representer.datasets import load_fashion_mnist_subset
from representer.evaluation.corruption import flip_labels
from representer.review import open_review
from representer.zoo import SmallCNN, train_classifier

N_TRAIN, FLIP = 600, 0.1
MODEL = '''
import torch

from representer.zoo import SmallCNN


def build_model():
    torch.manual_seed(0)
    return SmallCNN(n_classes=10, width=8, feature_dim=32)
'''
TRAIN = '''
from representer.zoo import train_classifier

from gain_model import build_model


def train(X, y, seed):
    return train_classifier(build_model(), X, y, epochs={epochs}, lr=3e-3, batch_size=64, seed=seed)
'''


def cli(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return result.output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("/tmp/review-gain"))
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = load_fashion_mnist_subset()
    y_clean = data.y_train[:N_TRAIN]
    y, flipped = flip_labels(y_clean, FLIP, 10, seed=0)
    names = np.array(data.class_names)
    np.savez(out / "fashion.npz", X_train=data.X_train[:N_TRAIN], y_train=names[y], X_test=data.X_test, y_test=names[data.y_test],
             class_names=names)
    (out / "gain_model.py").write_text(MODEL)
    (out / "gain_train.py").write_text(TRAIN.format(epochs=args.epochs))
    net = SmallCNN(n_classes=10, width=8, feature_dim=32)
    save_file(train_classifier(net, data.X_train[:N_TRAIN], y, epochs=3, lr=3e-3, batch_size=64, seed=0).state_dict(),
              str(out / "weights.safetensors"))
    run = out / "run"
    os.chdir(out)  # module entry points are found from the current folder
    cli("fit", "--model", "gain_model:build_model", "--weights", "weights.safetensors", "--data", "fashion.npz", "--out", run, "--force")
    cli("debug", run, "--top", args.top)
    review = open_review(run, with_model=False, reviewer="oracle")
    wrong = set(np.asarray(flipped).tolist())
    for row in review.rows:
        i = row["train_index"]
        current = review.store.current().get(i)
        if i in wrong:
            review.decide(i, "relabel", new_class=str(names[y_clean[i]]), base=None if current is None else current.id)
        else:
            review.decide(i, "keep", base=None if current is None else current.id)
    found = sum(r["train_index"] in wrong for r in review.rows)
    print(f"{len(wrong)} flipped labels; {found} of them among the {args.top} most suspicious, relabelled to their true class.\n")
    print("| seed | given labels | corrected labels | gain (points) |")
    print("|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        cli("review", run, "--train", "gain_train:train", "--seed", seed)
        record = json.loads((run / "retrain.json").read_text())
        before, after = record["before"]["test_accuracy"], record["after"]["test_accuracy"]
        print(f"| {seed} | {100 * before:.1f} % | {100 * after:.1f} % | {100 * (after - before):+.1f} |")
    print(f"\n{record['n_test']} test images; SmallCNN, {args.epochs} epochs, Adam 3e-3, batches of 64.")


if __name__ == "__main__":
    main()

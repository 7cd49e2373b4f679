"""The text setting: Bi-LSTM on Rotten Tomatoes explained by RPS-L2 and RPS-LJE (issue 7; spec §3.8).

Trains the seeded Bi-LSTM (vocabulary from the training split, φ = last forward and backward
states, bias-free head) on labels with 20 % flipped, fits RPS-L2 and RPS-LJE through
``TorchClassifier``, writes ``OUT/report.html`` (reviews as snippets, both signs) and
``OUT/results.json``, and prints one table: accuracy, RPS-L2 fidelity, LJE faithfulness, how often
the top-5 excitatory reviews carry the explained class, and label-issue AUCs against random.

    python benchmarks/text_rotten_tomatoes.py --out text-out            # all 10,246 / 2,562 reviews
    python benchmarks/text_rotten_tomatoes.py --quick --out text-quick  # 2,000 / 500 reviews

``--threads 1`` (default) keeps torch on one thread: on a 2-core machine shared with other jobs, two
LSTM threads were 10× slower than one.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from representer.evaluation.text_setting import QUICK_TEXT, TextSettingConfig, run_text_setting


def summary_table(out: dict) -> str:
    """The printed Markdown tables of one run."""
    model, rps, lje = out["model"], out["rps_l2"], out["rps_lje"]
    lines = [
        f"Rotten Tomatoes, {out['data']['n_train']} train / {out['data']['n_test']} test reviews, "
        f"vocabulary {out['data']['vocabulary_size']}, {out['data']['n_flipped']} training labels flipped; "
        f"{out['seconds']:.0f} s (training {model['train_seconds']:.0f} s)",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| test accuracy (clean test labels) | {model['test_accuracy']:.3f} |",
        f"| train accuracy (noisy / clean labels) | {model['train_accuracy_noisy_labels']:.3f} / {model['train_accuracy_clean_labels']:.3f} |",
        f"| RPS-L2 fidelity Pearson, train / test | {rps['train']['pearson']:.5f} / {rps['eval']['pearson']:.5f} |",
        f"| RPS-L2 mean abs prob. diff, train / test | {rps['train']['mean_abs_prob_diff']:.4f} / {rps['eval']['mean_abs_prob_diff']:.4f} |",
        f"| LJE Newton identity error max abs Σ_i W_i − Newton iterate | {lje['newton_identity_error']:.1e} |",
        f"| LJE faithfulness, test: max / mean abs logit error vs model | {lje['eval']['max_logit_error_vs_model']:.3f} / {lje['eval']['mean_abs_logit_error_vs_model']:.3f} |",
        f"| LJE prediction agreement with the model, test | {lje['eval']['prediction_agreement']:.3f} |",
    ]
    k = out["config"]["top_k"]
    for name, v in out["same_label"].items():
        lines.append(f"| {name}: top-{k} excitatory share the explained class (chance) | {v['rate']:.3f} ({v['chance']:.3f}) |")
    if out["label_issues"]:
        lines += [
            "",
            "Finding the flipped labels by self-influence (random ≈ 0.5 AUC; found = share of flips among the first 10 / 20 % checked):",
            "",
            "| method | DualView AUC | ROC AUC | found @10 % | found @20 % |",
            "|---|---|---|---|---|",
        ]
        for name, v in out["label_issues"].items():
            lines.append(
                f"| {name} | {v['label_poisoning_auc']:.3f} | {v['roc_auc']:.3f} | {v['found_at_10pct']:.3f} | {v['found_at_20pct']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("text-out"))
    parser.add_argument("--quick", action="store_true", help="2,000 training / 500 test reviews")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--flip", type=float, default=None, help="fraction of training labels flipped (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = replace(QUICK_TEXT if args.quick else TextSettingConfig(), seed=args.seed)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.flip is not None:
        config = replace(config, flip_fraction=args.flip)
    out = run_text_setting(args.out, config, show_progress=True)
    print(summary_table(out))
    print(f"\nwrote {args.out / 'report.html'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()

"""The legend of ``representer bench``'s tables: what each column measures and which way is better.

:func:`annotate` adds an arrow to every column header it knows (↑: higher is better, ↓: lower is
better; none where neither is) and returns the legend lines of the columns the tables show. The
tables themselves are written by :mod:`representer.evaluation`; a header no entry matches is
reported by :func:`unknown_columns` (the suite tests require there be none).
"""

from __future__ import annotations

import re

UP, DOWN = "↑", "↓"

#: (pattern of a column header, arrow, meaning); the first entry that matches a header wins.
LEGEND: tuple[tuple[str, str, str], ...] = (
    (r"identical class", UP, "identical class: fraction of test points whose most helpful training point has the test point's predicted class"),
    (r"identical subclass", UP, "identical subclass: the same, for the fine class within a superclass (models trained on superclass labels)"),
    (r"label poisoning \(cumulative\)", UP, "label poisoning (cumulative): AUC of finding the flipped training labels by cumulative attribution over the test set"),
    (r"label poisoning \(self-influence\)", UP, "label poisoning (self-influence): AUC of finding the flipped training labels by each method's self-influence"),
    (r"domain mismatch", UP, "domain mismatch: fraction of marked test points explained by marked training points"),
    (r"fit s", DOWN, "fit s: seconds to fit the explainer"),
    (r"explain s", DOWN, "explain s: seconds to explain every test point (top-10 of both signs)"),
    (r"peak MiB", DOWN, "peak MiB: largest growth of resident memory during fit or explain"),
    (r"(found )?@\d+ ?%|\d+ %", UP, "N % / @N %: fraction of flipped labels found, or test accuracy after fixing them, once N % of the training set is checked in the method's order"),
    (r"acc @\d+ ?%", UP, "acc @N %: test accuracy of the model retrained after fixing the flips found in the first N % checked"),
    (r"mean over .*", UP, "mean over …: that accuracy averaged over the checked fractions"),
    (r"(paired )?Δ vs random.*", UP, "Δ vs random: difference to the random order (paired over repeats, ± standard error)"),
    (r"test pred\. agreement", UP, "test pred. agreement: fraction of test predictions on which the explainer's surrogate agrees with the model"),
    (r"card\. top-\d+", UP, "card. top-k: distinct training points among all test points' top-k (larger: explanations less dominated by a few outliers)"),
    (r"p\(y_i\\?\|x_i\) top-\d+", UP, "p(y_i|x_i) top-k: mean model probability of the given label of those points (higher: typical, not mislabelled, points)"),
    (r"(kNN overlap )?@\d+", UP, "kNN overlap @k: fraction of the top-k that are among the test point's k nearest training inputs"),
    (r"t", UP, "t: t-statistic of the paired difference"),
    (r"σ_D per test point|τ \(model\)|test points needed per repeat", "", "σ_D, τ, test points needed: the power analysis of the paired difference (no better direction)"),
)
_SEPARATOR = re.compile(r"^\|[\s:|-]+\|$")


def _entry(header: str) -> tuple[str, str, str] | None:
    return next((e for e in LEGEND if re.fullmatch(e[0], header.strip())), None)


def _header_cells(line: str) -> list[str] | None:
    """The cells of a Markdown table header row (``| method | … |``), or None for another line.

    Cells are split at " | ", so that a bar inside a header (``p(y_i|x_i)``) stays in its cell.
    """
    line = line.strip()
    if not line.startswith("| method |") or not line.endswith(" |"):
        return None
    return [c.strip() for c in line[2:-2].split(" | ")][1:]


def annotate(tables: str) -> tuple[str, list[str]]:
    """``tables`` with an arrow after each known column header, and the legend lines of the columns shown."""
    lines, legend = [], []
    for line in tables.splitlines():
        cells = _header_cells(line)
        if cells is None:
            lines.append(line)
            continue
        marked = []
        for cell in cells:
            entry = _entry(cell)
            shown = re.sub(r"(?<!\\)\|", r"\\|", cell)  # a bar inside a cell is escaped, as Markdown needs
            marked.append(f"{shown} {entry[1]}" if entry and entry[1] else shown)
            if entry and entry[2] not in legend:
                legend.append(entry[2])
        lines.append("| method | " + " | ".join(marked) + " |")
    return "\n".join(lines) + ("\n" if tables.endswith("\n") else ""), legend


def unknown_columns(tables: str) -> list[str]:
    """Column headers of ``tables`` that no legend entry describes."""
    return [c for line in tables.splitlines() for c in (_header_cells(line) or []) if _entry(c) is None]

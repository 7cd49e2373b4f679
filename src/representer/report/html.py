"""A self-contained HTML report: plain HTML and CSS, images inlined as PNG, every text escaped.

Build it section by section, then write it::

    report = Report("Label noise on Fashion-MNIST")
    report.add_table(explainer.fit_report_, title="RPS-L2 fit")
    report.add_curve({"RPS-L2": curve}, title="Finding flipped labels")
    report.add_label_issues(issues, renderer=ImageRenderer(X_train), predictions=pred)
    report.add_explanations(exp, test_items=ImageRenderer(X_test), train_items=ImageRenderer(X_train),
                            train_labels=y_noisy)
    report.add_heatmaps([lrp_pair_relevance(dv, X_test[t:t + 1], X_train, exp.excitatory.indices[r]) ...],
                        test_items=ImageRenderer(X_test), train_items=ImageRenderer(X_train), test_indices=[t, ...])
    report.write("report.html")

Items (training and test examples) are drawn by an item renderer (see
:mod:`representer.report.renderers`), so the same sections work for images, tabular rows and text.
"""

from __future__ import annotations

import datetime as _dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .. import __version__
from .._atomic import write_text
from ..rankings import DetectionCurve, LabelIssues
from ..errors import InputError
from ..explanation import Explanation
from .figures import detection_curve_figure
from .images import as_heatmap, figure_to_data_uri, heatmap_to_data_uri
from .renderers import ItemRenderer, format_value

_CSS = """
:root { --fg: #1d232b; --muted: #5f6b7a; --line: #dde3ea; --card: #f6f8fa; --exc: #1a7f37; --inh: #b42318; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1180px; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 14px 0 6px; color: var(--muted); font-weight: 600; }
p { margin: 6px 0 10px; }
.meta, .caption-note { color: var(--muted); font-size: 13px; }
nav { margin: 14px 0 0; font-size: 14px; }
nav a { margin-right: 16px; color: #0b57d0; text-decoration: none; }
table.data { border-collapse: collapse; font-size: 14px; margin: 6px 0 12px; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 4px 14px 4px 0; text-align: left; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data thead th { color: var(--muted); font-weight: 600; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; }
.strip { display: flex; flex-wrap: wrap; gap: 8px; align-items: stretch; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 6px;
        width: 126px; font-size: 12px; line-height: 1.35; }
.card.wide { width: 220px; }
.card.corrupt { border-color: var(--inh); box-shadow: inset 0 0 0 1px var(--inh); }
.card .label { font-weight: 600; overflow-wrap: anywhere; }
.name { display: inline-block; max-width: 100%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
        vertical-align: bottom; }
.card .score { font-variant-numeric: tabular-nums; color: var(--muted); }
.card .score.pos { color: var(--exc); }
.card .score.neg { color: var(--inh); }
.badge { display: inline-block; background: var(--inh); color: #fff; border-radius: 3px; padding: 0 4px;
         font-size: 11px; font-weight: 600; margin-top: 2px; }
img.thumb { display: block; image-rendering: pixelated; margin: 0 auto 4px; background: #000; }
table.row { font-size: 11px; border-collapse: collapse; width: 100%; margin-bottom: 4px; }
table.row th { text-align: left; color: var(--muted); font-weight: normal; padding-right: 4px; }
p.snippet { font-size: 12px; margin: 0 0 4px; }
.explanation { display: grid; grid-template-columns: 136px 1fr; gap: 12px; padding: 14px 0;
               border-bottom: 1px solid var(--line); }
.explanation .test .card { width: 130px; border-color: #0b57d0; }
.group-title { font-size: 13px; font-weight: 600; margin: 0 0 4px; }
.group-title.exc { color: var(--exc); }
.group-title.inh { color: var(--inh); margin-top: 10px; }
.card.pair { width: auto; }
.tiles { display: flex; gap: 4px; }
figure.tile { margin: 0 0 4px; text-align: center; }
figure.tile figcaption { font-size: 11px; }
img.thumb.heat { background: #fff; }
"""


#: The report loads nothing: no scripts, no external styles, fonts or images (only inline ``data:`` PNGs).
#: A browser refuses (and logs) any fetch a hand-added section might attempt.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _slug(title: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys: ``{"eval": {"pearson": 1}}`` → ``{"eval.pearson": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


_NUMBER_TEXT = re.compile(r"^[-+]?\d[\d.,]*(e[-+]?\d+)?\s?%?$")


def _cell(value: Any) -> str:
    """A table cell; numbers (and texts that read as numbers, such as ``"12.5 %"``) are right-aligned."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    numeric = numeric or (isinstance(value, str) and bool(_NUMBER_TEXT.match(value)))
    return f'<td class="num">{format_value(value)}</td>' if numeric else f"<td>{format_value(value)}</td>"


def _as_mask(flipped: Any, n: int | None) -> np.ndarray | None:
    """``flipped`` as a boolean mask over the training set (indices or a mask), or ``None``."""
    if flipped is None:
        return None
    arr = np.asarray(flipped)
    if arr.dtype == bool:
        return arr
    if n is None:
        n = int(arr.max()) + 1 if arr.size else 0
    mask = np.zeros(n, dtype=bool)
    mask[arr.astype(np.int64)] = True
    return mask


class _Labels:
    """Label texts, with class names when given."""

    def __init__(self, class_names: Sequence[str] | None):
        self.names = list(class_names) if class_names is not None else None

    def __call__(self, label: Any) -> str:
        c = int(label)
        if self.names is not None and 0 <= c < len(self.names):
            return f"{c}\u00a0·\u00a0{self.names[c]}"  # no line break inside a label
        return str(c)

    def html(self, label: Any) -> str:
        """The label text in a span that never breaks across lines (it is cut with an ellipsis if too long)."""
        text = _e(self(label))
        return f'<span class="name" title="{text}">{text}</span>'


@dataclass(frozen=True)
class _PairMaps:
    """The heat-maps of one test point, whichever attribution view made them."""

    test_maps: np.ndarray
    train_maps: np.ndarray | None
    total: np.ndarray | None
    train_indices: np.ndarray
    scores: np.ndarray
    target: int

    @classmethod
    def of(cls, result: Any) -> "_PairMaps":
        """From a ``PairRelevance`` (LRP, maps on both sides) or a ``SensitivityMaps`` (test side + total)."""
        if hasattr(result, "test_maps") and hasattr(result, "train_maps"):
            test_maps, train_maps, total = result.test_maps, result.train_maps, None
        elif hasattr(result, "maps") and hasattr(result, "total"):
            test_maps, train_maps, total = result.maps, None, result.total
        else:
            raise InputError(
                "`maps` must hold results of representer.attribution.lrp_pair_relevance or sensitivity_maps; "
                f"got {type(result).__name__}."
            )
        return cls(np.asarray(test_maps), None if train_maps is None else np.asarray(train_maps),
                   None if total is None else np.asarray(total), np.asarray(result.train_indices),
                   np.asarray(result.scores, dtype=np.float64), int(result.target))


def _item(split: str, i: int, names: Sequence[str] | None) -> str:
    """``"train 12"``, or ``"train 12 · cat/0042.png"`` with item names."""
    return f"{split} {i}" if names is None else f"{split} {i} · {names[i]}"


def _tile(item_html: str, caption: str) -> str:
    return f'<figure class="tile">{item_html}<figcaption>{_e(caption)}</figcaption></figure>'


def _heat_img(values: Any, image_shape: tuple[int, ...] | None, size: int, alt: str) -> str:
    uri = heatmap_to_data_uri(as_heatmap(values, image_shape))
    return f'<img class="thumb heat" src="{uri}" width="{int(size)}" height="{int(size)}" alt="{_e(alt)}">'


def _heatmap_caption(two_sided: bool, totals: bool) -> str:
    text = ("Red: input regions that raise the pair's score, blue: regions that lower it; each map is scaled to its "
            "own largest absolute value.")
    if two_sided:
        text += " 'on test' and 'on train': LRP of the pair score on the test and on the training image."
    if totals:
        text += (" Sensitivity maps: each training point's share of the gradient of the explained class score "
                 "with respect to the test image; 'total' is their sum over all training points.")
    return text


class Report:
    """An HTML report assembled from sections; :meth:`write` produces one self-contained file."""

    def __init__(self, title: str, *, subtitle: str | None = None):
        self.title = str(title)
        self.subtitle = subtitle
        self._sections: list[tuple[str, str, str]] = []  # (anchor, title, body html)
        self._anchors: set[str] = set()

    # ------------------------------------------------------------------ generic sections
    def add_section(self, title: str, body_html: str) -> "Report":
        """Append a section whose body is trusted HTML (the other ``add_*`` methods build it for you)."""
        self._sections.append((_slug(title, self._anchors), str(title), body_html))
        return self

    def add_text(self, text: str, *, title: str) -> "Report":
        """A section of plain text; blank lines separate paragraphs."""
        paragraphs = [p.strip() for p in str(text).split("\n\n") if p.strip()]
        return self.add_section(title, "".join(f"<p>{_e(p)}</p>" for p in paragraphs))

    def add_table(self, data: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, title: str, caption: str | None = None) -> "Report":
        """A table: one mapping gives a (name, value) table; a sequence of mappings one row each.

        Nested mappings (e.g. ``fit_report_["eval"]``) are flattened to dotted names.
        """
        if isinstance(data, Mapping):
            rows = "".join(f"<tr><th>{_e(k)}</th>{_cell(v)}</tr>" for k, v in _flatten(data).items())
            table = f'<table class="data"><tbody>{rows}</tbody></table>'
        else:
            records = [_flatten(r) for r in data]
            if not records:
                raise InputError("`data` is an empty sequence; pass at least one row (a mapping).")
            columns = list(dict.fromkeys(c for r in records for c in r))
            head = "".join(f"<th>{_e(c)}</th>" for c in columns)
            body = "".join("<tr>" + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>" for r in records)
            table = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        note = f'<p class="caption-note">{_e(caption)}</p>' if caption else ""
        return self.add_section(title, table + note)

    def add_figure(self, fig: Figure, *, title: str, caption: str | None = None) -> "Report":
        """A matplotlib figure, inlined as PNG."""
        cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        body = f'<figure><img src="{figure_to_data_uri(fig)}" alt="{_e(title)}">{cap}</figure>'
        return self.add_section(title, body)

    # ------------------------------------------------------------------ attribution sections
    def add_curve(
        self,
        curves: Mapping[str, DetectionCurve],
        *,
        title: str = "Detection curve",
        caption: str | None = None,
        random_baseline: bool = True,
    ) -> "Report":
        """Fraction of corrupted labels found vs fraction inspected, one line per method (+ random)."""
        default = "A simulated user inspects training points in each method's order; the dashed diagonal is a random order."
        fig = detection_curve_figure(curves, random_baseline=random_baseline)
        return self.add_figure(fig, title=title, caption=caption if caption is not None else default)

    def add_label_issues(
        self,
        issues: LabelIssues,
        *,
        renderer: ItemRenderer,
        predictions: Any = None,
        flipped: Any = None,
        original_labels: Any = None,
        class_names: Sequence[str] | None = None,
        top: int = 24,
        title: str = "Suspicious training labels",
        wide: bool = False,
        train_names: Sequence[str] | None = None,
    ) -> "Report":
        """The ``top`` most suspicious training points with their given label and score.

        Args:
            issues: from :func:`representer.find_label_issues`.
            renderer: draws training item ``i``.
            predictions: the model's predicted class per training point (``(n,)``), shown if given.
            flipped: indices (or a boolean mask) of training labels known to be corrupted: marked.
            original_labels: the clean label per training point, shown for marked points.
            class_names: label names.
            wide: wider cards (for tabular rows and text).
            train_names: the name of each training item (file, row), shown on its card.
        """
        label = _Labels(class_names)
        mask = _as_mask(flipped, None if predictions is None else len(predictions))
        shown = min(int(top), len(issues))
        cards = []
        for rank in range(shown):
            i = int(issues.indices[rank])
            corrupt = mask is not None and i < mask.size and bool(mask[i])
            lines = [f'<div class="label">given: {label.html(issues.given_labels[rank])}</div>']
            if predictions is not None:
                lines.append(f"<div>model: {label.html(np.asarray(predictions)[i])}</div>")
            lines.append(f'<div class="score">#{rank + 1} · {_e(_item("train", i, train_names))}<br>score {_e(f"{issues.scores[rank]:.3g}")}</div>')
            if corrupt:
                was = f" (was {_e(label(np.asarray(original_labels)[i]))})" if original_labels is not None else ""
                lines.append(f'<span class="badge">flipped{was}</span>')
            cards.append(self._card(renderer(i), lines, corrupt=corrupt, wide=wide))
        found = ""
        if mask is not None:
            hits = int(sum(mask[int(i)] for i in issues.indices[:shown] if int(i) < mask.size))
            found = f" {hits} of these {shown} labels were flipped on purpose (outlined in red)."
        intro = f'<p class="caption-note">Ranked by {_e(issues.ranking.replace("_", " "))}, most suspicious first.{found}</p>'
        return self.add_section(title, intro + f'<div class="strip">{"".join(cards)}</div>')

    def add_explanations(
        self,
        explanation: Explanation,
        *,
        test_items: ItemRenderer,
        train_items: ItemRenderer,
        train_labels: Any,
        test_indices: Any = None,
        test_labels: Any = None,
        rows: Sequence[int] | None = None,
        k: int | None = None,
        flipped: Any = None,
        class_names: Sequence[str] | None = None,
        title: str = "Explanations",
        wide: bool = False,
        train_names: Sequence[str] | None = None,
        test_names: Sequence[str] | None = None,
    ) -> "Report":
        """For each shown test point: the item, then its top-``k`` excitatory and inhibitory training points.

        Args:
            explanation: from ``explainer.explain(X_test, top_k=...)``.
            test_items / train_items: renderers for test item ``test_indices[row]`` and training item ``i``.
            train_labels: the training labels the explainer was fitted with (``(n,)``).
            test_indices: dataset index of each explanation row (default: the row number).
            test_labels: true label per test *dataset* index, shown if given.
            rows: which explanation rows to show (default: all, at most 6).
            k: training points shown per sign (default: all in the explanation).
            flipped: indices (or boolean mask) of training labels known to be corrupted: marked.
            train_names / test_names: the name of each training / test item (file, row), shown on its card.
        """
        label = _Labels(class_names)
        train_labels = np.asarray(train_labels)
        mask = _as_mask(flipped, train_labels.size)
        m = len(explanation)
        index_of = np.arange(m) if test_indices is None else np.asarray(test_indices)
        if index_of.shape[0] != m:
            raise InputError(f"`test_indices` has {index_of.shape[0]} entries but the explanation has {m} rows.")
        chosen = list(range(min(m, 6))) if rows is None else [int(r) for r in rows]
        per_sign = explanation.top_k if k is None else min(int(k), explanation.top_k)
        blocks = []
        for row in chosen:
            t = int(index_of[row])
            lines = [f'<div class="label">{_e(_item("test", t, test_names))}</div>']
            if test_labels is not None:
                lines.append(f"<div>true: {label.html(np.asarray(test_labels)[t])}</div>")
            lines.append(f"<div>explained: {label.html(explanation.target[row])}</div>")
            test_card = self._card(test_items(t), lines, wide=wide)
            groups = []
            for name, topk, css in (
                ("Excitatory: raise the explained class", explanation.excitatory, "exc"),
                ("Inhibitory: lower it", explanation.inhibitory, "inh"),
            ):
                cards = [
                    self._train_card(int(i), float(s), train_items, train_labels, mask, label, wide, train_names)
                    for i, s in zip(topk.indices[row, :per_sign], topk.scores[row, :per_sign])
                ]
                groups.append(f'<div class="group-title {css}">{_e(name)}</div><div class="strip">{"".join(cards)}</div>')
            blocks.append(f'<div class="explanation"><div class="test">{test_card}</div><div>{"".join(groups)}</div></div>')
        intro = (
            f'<p class="caption-note">Method: {_e(explanation.method)}. Score = contribution of the training point '
            "to the explained class (positive = excitatory). Training labels are the ones the model was trained on.</p>"
        )
        return self.add_section(title, intro + "".join(blocks))

    def add_heatmaps(
        self,
        maps: Any,
        *,
        test_items: ItemRenderer,
        train_items: ItemRenderer,
        test_indices: Any,
        train_labels: Any = None,
        test_labels: Any = None,
        flipped: Any = None,
        class_names: Sequence[str] | None = None,
        image_shape: tuple[int, ...] | None = None,
        size: int = 84,
        title: str = "Where the evidence lies",
        caption: str | None = None,
    ) -> "Report":
        """Feature-level views of pair scores: for each test point, its training points with their heat-maps.

        ``maps`` is one result per test point (or a single one) of
        :func:`representer.attribution.lrp_pair_relevance` (DualView × LRP: a map on the test image
        *and* one on the training image per pair) or :func:`representer.attribution.sensitivity_maps`
        (RPS §4.4: each training point's share of the test image's gradient, plus the total shown
        under the test image). Each training point's card shows its image, then its heat-maps side
        by side; training points are grouped by the sign of their score (positive = excitatory).
        Heat-maps use a diverging colour map centred at 0 (red positive, blue negative), each
        scaled to its own largest absolute value.

        Args:
            maps: a :class:`~representer.attribution.PairRelevance` or
                :class:`~representer.attribution.SensitivityMaps`, or a sequence of them.
            test_items / train_items: renderers for test item ``test_indices[p]`` and training item ``i``.
            test_indices: dataset index of the test point of each entry of ``maps``.
            train_labels: training labels the explainer was fitted with, shown if given.
            test_labels: true label per test *dataset* index, shown if given.
            flipped: indices (or boolean mask) of training labels known to be corrupted: marked.
            image_shape: ``(H, W)`` or ``(C, H, W)`` to reshape flat maps (square flat maps are reshaped automatically).
            size: displayed width of a heat-map in CSS pixels.
        """
        results = [maps] if hasattr(maps, "train_indices") else list(maps)
        index_of = np.atleast_1d(np.asarray(test_indices))
        if index_of.shape[0] != len(results):
            raise InputError(f"`test_indices` has {index_of.shape[0]} entries but `maps` holds {len(results)} test points.")
        label = _Labels(class_names)
        labels = None if train_labels is None else np.asarray(train_labels)
        mask = _as_mask(flipped, None if labels is None else labels.size)
        views = [_PairMaps.of(r) for r in results]
        blocks = []
        for view, t in zip(views, index_of):
            lines = [f'<div class="label">test {int(t)}</div>']
            if test_labels is not None:
                lines.append(f"<div>true: {label.html(np.asarray(test_labels)[int(t)])}</div>")
            lines.append(f"<div>explained: {label.html(view.target)}</div>")
            total = "" if view.total is None else _tile(_heat_img(view.total, image_shape, size, "total"), "total")
            test_card = self._card(test_items(int(t)) + total, lines)
            groups = []
            for name, chosen, css in (
                ("Excitatory: raise the explained class", view.scores > 0, "exc"),
                ("Inhibitory: lower it", view.scores < 0, "inh"),
                ("Zero score", view.scores == 0, ""),
            ):
                cards = [self._pair_card(view, p, train_items, labels, mask, label, image_shape, size) for p in np.flatnonzero(chosen)]
                if cards:
                    groups.append(f'<div class="group-title {css}">{_e(name)}</div><div class="strip">{"".join(cards)}</div>')
            blocks.append(f'<div class="explanation"><div class="test">{test_card}</div><div>{"".join(groups)}</div></div>')
        if caption is None:
            caption = _heatmap_caption(any(v.train_maps is not None for v in views), any(v.total is not None for v in views))
        return self.add_section(title, f'<p class="caption-note">{_e(caption)}</p>' + "".join(blocks))

    # ------------------------------------------------------------------ output
    @staticmethod
    def _card(item_html: str, lines: list[str], *, corrupt: bool = False, wide: bool = False) -> str:
        classes = "card" + (" corrupt" if corrupt else "") + (" wide" if wide else "")
        return f'<div class="{classes}">{item_html}{"".join(lines)}</div>'

    def _train_card(
        self,
        i: int,
        score: float,
        renderer: ItemRenderer,
        train_labels: np.ndarray,
        mask: np.ndarray | None,
        label: _Labels,
        wide: bool,
        names: Sequence[str] | None = None,
    ) -> str:
        corrupt = mask is not None and bool(mask[i])
        sign = "pos" if score > 0 else "neg" if score < 0 else ""
        lines = [
            f'<div class="label">{label.html(train_labels[i])}</div>',
            f'<div class="score {sign}">{_e(_item("train", i, names))}<br>score {_e(f"{score:+.3g}")}</div>',
        ]
        if corrupt:
            lines.append('<span class="badge">flipped</span>')
        return self._card(renderer(i), lines, corrupt=corrupt, wide=wide)

    def _pair_card(
        self,
        view: "_PairMaps",
        p: int,
        renderer: ItemRenderer,
        train_labels: np.ndarray | None,
        mask: np.ndarray | None,
        label: _Labels,
        image_shape: tuple[int, ...] | None,
        size: int,
    ) -> str:
        i, score = int(view.train_indices[p]), float(view.scores[p])
        tiles = [_tile(renderer(i), f"train {i}"), _tile(_heat_img(view.test_maps[p], image_shape, size, "on test"), "on test")]
        if view.train_maps is not None:
            tiles.append(_tile(_heat_img(view.train_maps[p], image_shape, size, "on train"), "on train"))
        corrupt = mask is not None and i < mask.size and bool(mask[i])
        sign = "pos" if score > 0 else "neg" if score < 0 else ""
        lines = [] if train_labels is None else [f'<div class="label">{label.html(train_labels[i])}</div>']
        lines.append(f'<div class="score {sign}">train {i} · score {_e(f"{score:+.3g}")}</div>')
        if corrupt:
            lines.append('<span class="badge">flipped</span>')
        classes = "card pair" + (" corrupt" if corrupt else "")
        return f'<div class="{classes}"><div class="tiles">{"".join(tiles)}</div>{"".join(lines)}</div>'

    def to_html(self) -> str:
        """The whole report as one HTML string."""
        nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in self._sections)
        body = "".join(f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in self._sections)
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        sub = f"<p>{_e(self.subtitle)}</p>" if self.subtitle else ""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>"
            f'<header><h1>{_e(self.title)}</h1>{sub}<p class="meta">representer {_e(__version__)} · {stamp}</p>'
            f"<nav>{nav}</nav></header>{body}</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the report to ``path`` atomically (parent folders are created) and return the path."""
        return write_text(path, self.to_html())

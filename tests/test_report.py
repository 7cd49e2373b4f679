"""The HTML report: sections, inline images only, escaping, renderers for images, rows and text."""

import base64
import dataclasses
import io
import re

import numpy as np
import pytest
from matplotlib.image import imread

from representer.debugging import LabelIssues
from representer.errors import InputError
from representer.evaluation.metrics import corruption_mask, detection_curve
from representer.attribution import PairRelevance, SensitivityMaps
from representer.explanation import Explanation, TopK
from representer.report import ImageRenderer, Report, TableRenderer, TextRenderer

CLASS_NAMES = ("zero", "one", "two")


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(png), format="png")


def _name(text: str) -> str:
    """A label as the report writes it: a span that does not break across lines."""
    return f'<span class="name" title="{text}">{text}</span>'


def _explanation():
    exc = TopK(np.array([[4, 1, 0], [2, 3, 1]]), np.array([[0.5, 0.25, 0.125], [2.0, 1.0, 0.5]]))
    inh = TopK(np.array([[5, 6, 7], [9, 8, 7]]), np.array([[-0.5, -0.25, -0.125], [-3.0, -2.0, -1.0]]))
    return Explanation(excitatory=exc, inhibitory=inh, target=np.array([1, 2]), method="rps_l2")


def _full_report(rng):
    n = 10
    images = rng.random((n, 1, 8, 8))
    labels = rng.integers(0, 3, size=n)
    issues = LabelIssues(indices=np.array([7, 3, 0]), scores=np.array([3.0, 2.0, 1.0]), ranking="self_influence",
                         given_labels=labels[[7, 3, 0]])
    mask = corruption_mask([7, 9], n)
    report = Report("Demo <b>&</b> test", subtitle="a <i>subtitle</i>")
    report.add_table({"grad_norm": 1.5e-11, "converged": True, "eval": {"pearson": 0.99991}}, title="RPS-L2 fit")
    report.add_curve({"RPS-L2": detection_curve(np.arange(n)[::-1], mask)}, title="Detection curve")
    report.add_label_issues(issues, renderer=ImageRenderer(images), predictions=labels, flipped=[7, 9],
                            original_labels=(labels + 1) % 3, class_names=CLASS_NAMES, title="Suspicious labels")
    report.add_explanations(_explanation(), test_items=ImageRenderer(images[:4]), train_items=ImageRenderer(images),
                            train_labels=labels, test_indices=[3, 0], test_labels=[0, 1, 2, 1], flipped=mask,
                            class_names=CLASS_NAMES, k=2, title="Explanations")
    return report


def test_report_has_sections_and_only_inline_images(tmp_path):
    path = _full_report(np.random.default_rng(0)).write(tmp_path / "sub" / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for title in ("RPS-L2 fit", "Detection curve", "Suspicious labels", "Explanations"):
        assert f">{title}</h2>" in text
    sources = re.findall(r'src="([^"]*)"', text)
    # 3 suspicious + 2 test points × (1 test + 2 excitatory + 2 inhibitory) thumbnails + 1 figure
    assert len(sources) == 3 + 2 * 5 + 1
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in text and "https://" not in text and "<script" not in text and "<link" not in text
    # self-contained: every reference is an inline PNG or an anchor in the page, and the CSP forbids the rest
    references = re.findall(r'\b(src|href)="([^"]*)"', text)
    assert references and all(v.startswith("data:image/png;base64," if k == "src" else "#") for k, v in references)
    assert "default-src 'none'; img-src data:; style-src 'unsafe-inline'" in text
    thumbs = [_decode(s) for s in re.findall(r'<img class="thumb" src="([^"]*)"', text)]
    assert all(t.shape[:2] == (8, 8) for t in thumbs)
    figure = _decode(re.search(r'<figure><img src="([^"]*)"', text).group(1))
    assert figure.shape[0] > 200 and figure.shape[1] > 300


def test_report_content_is_escaped_and_marks_flips(tmp_path):
    text = _full_report(np.random.default_rng(0)).to_html()
    assert "Demo &lt;b&gt;&amp;&lt;/b&gt; test" in text and "<b>&</b>" not in text
    assert "a &lt;i&gt;subtitle&lt;/i&gt;" in text
    assert "eval.pearson" in text and "0.9999" in text and "1.5e-11" in text
    # suspicious labels: training point 7 was flipped, 3 and 0 were not
    assert text.count('<span class="badge">flipped (was') == 1
    assert "1 of these 3 labels were flipped" in text
    # explanations show the scores with their sign and the explained class by name
    assert "train 4<br>score +0.5<" in text and "train 9<br>score -3<" in text
    assert "explained: " + _name("2\u00a0·\u00a0two") in text
    assert "score +0.125" not in text and "score -0.125" not in text  # k=2 of 3
    assert "test 3" in text and "true: " + _name("1\u00a0·\u00a0one") in text  # test_labels indexed by the dataset index 3


def test_image_renderer_layouts_and_scaling():
    grey = np.zeros((2, 5, 6))
    grey[0, 0, 0] = 1.0
    for images in (grey, grey[:, None], grey[..., None]):
        uri = re.search(r'src="([^"]*)"', ImageRenderer(images)(0)).group(1)
        decoded = _decode(uri)
        assert decoded.shape[:2] == (5, 6)
        assert decoded[0, 0, 0] == pytest.approx(1.0) and decoded[1, 1, 0] == pytest.approx(0.0)
    rgb = np.zeros((1, 3, 4, 4))
    rgb[0, 0] = 1.0  # pure red, channels first
    decoded = _decode(re.search(r'src="([^"]*)"', ImageRenderer(rgb)(0)).group(1))
    np.testing.assert_allclose(decoded[0, 0, :3], [1.0, 0.0, 0.0])
    with pytest.raises(InputError, match="images"):
        ImageRenderer(np.zeros((2, 2, 5, 5)))
    with pytest.raises(InputError, match="out of range"):
        ImageRenderer(grey)(2)


def test_table_and_text_renderers_escape():
    rows = [{"age": 31, "job": "<admin>", "score": 0.123456}]
    cell = TableRenderer(rows)(0)
    assert "<th>job</th><td>&lt;admin&gt;</td>" in cell and "0.1235" in cell
    assert "age" not in TableRenderer(rows, columns=["job"])(0)
    snippet = TextRenderer(["a <great> film " * 40], max_chars=30)(0)
    assert snippet.startswith('<p class="snippet">a &lt;great&gt;') and snippet.endswith("…</p>")
    pandas = pytest.importorskip("pandas")
    assert "<th>job</th>" in TableRenderer(pandas.DataFrame(rows))(0)


def test_table_of_rows_and_errors():
    report = Report("t").add_table([{"method": "a", "auc": 0.5}, {"method": "b", "found": 3}], title="Rows")
    text = report.to_html()
    assert "<th>method</th><th>auc</th><th>found</th>" in text
    with pytest.raises(InputError, match="empty"):
        Report("t").add_table([], title="Empty")
    with pytest.raises(InputError, match="curves"):
        Report("t").add_curve({})
    with pytest.raises(InputError, match="test_indices"):
        Report("t").add_explanations(_explanation(), test_items=TextRenderer(["x"]), train_items=TextRenderer(["y"]),
                                     train_labels=np.zeros(10, int), test_indices=[0])


def _relevance(train_indices, scores, test_maps, train_maps):
    k = len(train_indices)
    zeros = np.zeros(k)
    return PairRelevance(test_maps=np.asarray(test_maps, dtype=float), train_maps=np.asarray(train_maps, dtype=float),
                         test_seed=np.zeros((k, 2)), train_seed=np.zeros((k, 2)), scores=np.asarray(scores, dtype=float),
                         test_offset=zeros, train_offset=zeros, conservation_delta=np.zeros((k, 2)),
                         train_indices=np.asarray(train_indices), target=1)


def test_heatmaps_show_both_maps_per_pair_on_a_diverging_scale():
    images = np.random.default_rng(0).random((6, 1, 4, 4))
    test_maps = np.zeros((2, 1, 4, 4))
    test_maps[0, 0, 1, 2] = 5.0  # the excitatory pair: one positive pixel
    test_maps[1, 0, 3, 0] = -0.5  # the inhibitory pair: one negative pixel
    train_maps = np.zeros((2, 3, 4, 4))  # three channels, summed: +1 − 1 + 2 = +2 at (0, 0)
    train_maps[0, :, 0, 0] = [1.0, -1.0, 2.0]
    rel = _relevance([4, 2], [0.7, -0.2], test_maps, train_maps)
    report = Report("t").add_heatmaps(rel, test_items=ImageRenderer(images), train_items=ImageRenderer(images), test_indices=[3],
                                      train_labels=[0, 1, 2, 0, 1, 2], flipped=[2], class_names=CLASS_NAMES, title="Heat")
    text = report.to_html()
    exc, inh = text.split('group-title inh')
    assert "train 4 · score +0.7" in exc and "train 2 · score -0.2" in inh and inh.count('<span class="badge">flipped') == 1
    assert "explained: " + _name("1\u00a0·\u00a0one") in text and "test 3" in text
    heat = [_decode(u) for u in re.findall(r'<img class="thumb heat" src="([^"]*)"', text)]
    assert len(heat) == 4  # (on test, on train) × 2 pairs
    white, red, blue = [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    np.testing.assert_allclose(heat[0][1, 2, :3], red, atol=0.01)  # the largest positive value is pure red
    np.testing.assert_allclose(heat[0][0, 0, :3], white, atol=0.01)  # zero is white
    np.testing.assert_allclose(heat[1][0, 0, :3], red, atol=0.01)  # summed channels, positive
    np.testing.assert_allclose(heat[2][3, 0, :3], blue, atol=0.01)  # the largest negative value is pure blue
    np.testing.assert_allclose(heat[3], np.ones((4, 4, 4)), atol=0.01)  # an all-zero map is white
    assert "on train" in text and "total" not in text


def test_sensitivity_maps_show_the_total_and_flat_maps_are_reshaped():
    maps = SensitivityMaps(maps=np.eye(3, 9), total=np.arange(9.0) - 4, train_indices=np.array([0, 1, 2]),
                           coefficients=np.ones(3), scores=np.array([0.5, 0.0, -1.0]), target=0)
    texts = TextRenderer(["a", "b", "c"])
    text = Report("t").add_heatmaps([maps], test_items=texts, train_items=texts, test_indices=[1], title="S").to_html()
    heat = [_decode(u) for u in re.findall(r'<img class="thumb heat" src="([^"]*)"', text)]
    assert len(heat) == 1 + 3 and all(h.shape[:2] == (3, 3) for h in heat)  # total + one map per pair, 9 → 3 × 3
    np.testing.assert_allclose(heat[0][0, 0, :3], [0.0, 0.0, 1.0], atol=0.01)  # total: −4 is the most negative
    assert "<figcaption>total</figcaption>" in text and "Zero score" in text and "on train" not in text
    with pytest.raises(InputError, match="image_shape"):
        flat8 = dataclasses.replace(maps, maps=np.ones((3, 8)), total=np.ones(8))  # 8 values: not a square
        Report("t").add_heatmaps(flat8, test_items=texts, train_items=texts, test_indices=[0])
    with pytest.raises(InputError, match="test_indices"):
        Report("t").add_heatmaps([maps, maps], test_items=texts, train_items=texts, test_indices=[0])
    with pytest.raises(InputError, match="lrp_pair_relevance"):
        Report("t").add_heatmaps([{"maps": 1}], test_items=texts, train_items=texts, test_indices=[0])

"""The HTML report: sections, inline images only, escaping, renderers for images, rows and text."""

import base64
import io
import re

import numpy as np
import pytest
from matplotlib.image import imread

from representer.debugging import LabelIssues
from representer.errors import InputError
from representer.evaluation.metrics import corruption_mask, detection_curve
from representer.explanation import Explanation, TopK
from representer.report import ImageRenderer, Report, TableRenderer, TextRenderer

CLASS_NAMES = ("zero", "one", "two")


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(png), format="png")


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
    assert "train 4<br>score +0.5<" in text and "train 9<br>score -3<" in text and "explained: 2\u00a0·\u00a0two" in text
    assert "score +0.125" not in text and "score -0.125" not in text  # k=2 of 3
    assert "test 3" in text and "true: 1\u00a0·\u00a0one" in text  # test_labels indexed by the dataset index 3


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

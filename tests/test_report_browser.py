"""The HTML report in a real browser: headless Chromium loads it and the page is inspected.

The browser is driven through chromedriver's W3C WebDriver HTTP API with the standard library only
(no selenium, ``tests/browser.py``): open the report as a ``file://`` URL, run JavaScript in the page,
read the browser's console log. Skipped when ``chromium`` / ``chromedriver`` are not installed
(Debian: ``apt-get install chromium chromium-driver``; CI installs them in ``.ci/run``).

The report under test comes from a small real pipeline (digits, an MLP, RPS-L2 fitted with flipped
labels) and holds every kind of section: tables, the detection curve, label issues, image
explanations, DualView × LRP-style heat-maps (both sides) and sensitivity maps (with the total),
and explanations drawn as table rows and as text snippets.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from browser import HAVE_BROWSER, NO_BROWSER, Browser, errors

from representer.attribution import lrp_pair_relevance, sensitivity_maps
from representer.debugging import find_label_issues
from representer.evaluation.corruption import flip_labels
from representer.evaluation.metrics import corruption_mask, detection_curve, rank_by_score
from representer.methods import RPSL2
from representer.models import TorchClassifier
from representer.report import ImageRenderer, Report, TableRenderer, TextRenderer

pytestmark = pytest.mark.skipif(not HAVE_BROWSER, reason=NO_BROWSER)

N_TRAIN, TOP_K, K_SHOWN, N_ISSUES = 300, 4, 3, 12
DIGITS = tuple(f"digit-{c}" for c in range(10))


@pytest.fixture(scope="module")
def browser():
    chrome = Browser()
    yield chrome
    chrome.close()


# ---------------------------------------------------------------------------- the report under test
@pytest.fixture(scope="module")
def built(digits_mlp, tmp_path_factory):
    d = digits_mlp
    X, y_clean = d.X_train[:N_TRAIN], d.y_train[:N_TRAIN]
    y, flipped = flip_labels(y_clean, 0.1, 10, seed=0)
    ex = RPSL2(TorchClassifier(d.net)).fit(X, y)
    rows_shown = np.array([0, 1, 2])
    exp = ex.explain(d.X_test[rows_shown], top_k=TOP_K)
    issues = find_label_issues(ex)
    mask = corruption_mask(flipped, N_TRAIN)
    images = X.reshape(-1, 8, 8)
    train_img, test_img = ImageRenderer(images), ImageRenderer(d.X_test.reshape(-1, 8, 8))
    lrp = [
        lrp_pair_relevance(ex, d.X_test[t : t + 1], X, np.r_[exp.excitatory.indices[t, :2], exp.inhibitory.indices[t, :2]])
        for t in (0, 1)
    ]
    sens = sensitivity_maps(ex, d.X_test[2:3], np.r_[exp.excitatory.indices[2, :2], exp.inhibitory.indices[2, :2]])
    rows = [{"pixel mean": float(x.mean()), "ink > 0.5": int((x > 0.5).sum()), "<note>": "a & b"} for x in X]
    texts = [f"A handwritten {DIGITS[c]} <scanned> at 8×8 pixels, labelled {c}." for c in y]

    report = Report("Browser check <report>", subtitle="digits, RPS-L2, 10 % flipped labels")
    report.add_table(ex.fit_report_, title="RPS-L2 fit")
    report.add_curve({"self-influence": detection_curve(rank_by_score(ex.self_influence()), mask)}, title="Detection curve")
    report.add_label_issues(issues, renderer=train_img, predictions=y_clean, flipped=flipped, original_labels=y_clean,
                            class_names=DIGITS, top=N_ISSUES, title="Suspicious labels")
    common = dict(train_labels=y, test_indices=rows_shown, test_labels=d.y_test, flipped=flipped, class_names=DIGITS, k=K_SHOWN)
    report.add_explanations(exp, test_items=test_img, train_items=train_img, title="Explanations", **common)
    report.add_heatmaps(lrp, test_items=test_img, train_items=train_img, test_indices=[0, 1], train_labels=y,
                        test_labels=d.y_test, flipped=flipped, class_names=DIGITS, title="LRP heatmaps")
    report.add_heatmaps(sens, test_items=test_img, train_items=train_img, test_indices=[2], class_names=DIGITS,
                        title="Sensitivity maps")
    report.add_explanations(exp, test_items=test_img, train_items=TableRenderer(rows), title="As table rows", wide=True, **common)
    report.add_explanations(exp, test_items=test_img, train_items=TextRenderer(texts), title="As text", wide=True, **common)
    path = report.write(tmp_path_factory.mktemp("browser") / "report.html")
    return path, exp, issues, mask, lrp, sens


SECTIONS = ("RPS-L2 fit", "Detection curve", "Suspicious labels", "Explanations", "LRP heatmaps", "Sensitivity maps",
            "As table rows", "As text")

# Everything the checks need, gathered in one pass over the page.
PROBE = """
const q = (s, root = document) => Array.from(root.querySelectorAll(s));
const text = e => e.textContent.trim();
const cards = el => q('.card', el).map(c => ({
  score: (text(c.querySelector('.score') || c).match(/score ([-+]?[0-9.e+-]+)/) || [null, null])[1],
  cls: (c.querySelector('.score') || {className: ''}).className, imgs: q('img', c).length, heat: q('img.heat', c).length,
  rows: q('table.row', c).length, snippets: q('p.snippet', c).length, corrupt: c.classList.contains('corrupt'),
  overflow: c.scrollWidth > c.clientWidth + 1}));
return {
  title: document.title,
  sections: q('section').map(s => ({id: s.id, h2: text(s.querySelector('h2'))})),
  nav: q('nav a').map(a => a.getAttribute('href')),
  imgs: q('img').map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, src: i.getAttribute('src').slice(0, 22)})),
  links: q('[href]').map(e => e.getAttribute('href')),
  srcs: q('[src]').map(e => e.getAttribute('src').slice(0, 22)),
  scripts: q('script').length, stylesheets: q('link').length,
  resources: performance.getEntriesByType('resource').map(r => r.name),
  csp: (document.querySelector('meta[http-equiv="Content-Security-Policy"]') || {content: ''}).content,
  pageOverflow: document.documentElement.scrollWidth > window.innerWidth,
  blocks: q('section').map(s => q('.explanation', s).map(b => ({
    test: cards(b.querySelector('.test')), exc: cards(b.querySelector('.group-title.exc + .strip') || document.createElement('i')),
    inh: cards(b.querySelector('.group-title.inh + .strip') || document.createElement('i')),
    totals: q('.test figcaption', b).map(text)}))),
  issues: cards(document.getElementById('suspicious-labels')),
  badges: q('#suspicious-labels .badge').length,
  curve: q('#detection-curve figure img').map(i => [i.naturalWidth, i.naturalHeight]),
};
"""


@pytest.fixture(scope="module")
def page(browser, built):
    browser.console()  # drop anything logged before
    browser.open(built[0].resolve().as_uri())
    return browser.js(PROBE), browser.console()


def test_page_loads_without_console_errors_and_is_self_contained(page):
    probe, log = page
    assert errors(log) == []
    assert probe["title"] == "Browser check <report>"
    assert probe["scripts"] == 0 and probe["stylesheets"] == 0
    assert all(s.startswith("data:image/png;base64,") for s in probe["srcs"])
    assert all(h.startswith("#") for h in probe["links"])
    assert probe["resources"] == []  # the browser fetched nothing
    assert "default-src 'none'" in probe["csp"] and "img-src data:" in probe["csp"]


def test_every_section_is_there_and_reachable_from_the_navigation(page):
    probe, _ = page
    assert [s["h2"] for s in probe["sections"]] == list(SECTIONS)
    assert probe["nav"] == ["#" + s["id"] for s in probe["sections"]]


def test_every_image_is_decoded_and_nothing_overflows(page):
    probe, _ = page
    n_blocks = 3  # explained test points per explanation section
    per_block = 1 + 2 * K_SHOWN  # test image + k excitatory + k inhibitory
    lrp_images = 2 * (1 + 4 * 3)  # per test point: test image + 4 pairs × (train image, on test, on train)
    sens_images = 1 + 1 + 4 * 2  # test image + total + 4 pairs × (train image, on test)
    expected = 1 + N_ISSUES + n_blocks * per_block + lrp_images + sens_images + 2 * n_blocks  # + test images of rows/text
    assert len(probe["imgs"]) == expected
    assert all(i["ok"] for i in probe["imgs"]), [i for i in probe["imgs"] if not i["ok"]]
    [(width, height)] = probe["curve"]
    assert width > 400 and height > 200
    assert not probe["pageOverflow"]
    every_card = probe["issues"] + [c for sec in probe["blocks"] for b in sec for g in ("test", "exc", "inh") for c in b[g]]
    assert every_card and not any(c["overflow"] for c in every_card)


def test_excitatory_and_inhibitory_cards_show_the_explanation_scores(page, built):
    probe, _ = page
    _, exp, *_ = built
    for name in ("Explanations", "As table rows", "As text"):
        blocks = probe["blocks"][SECTIONS.index(name)]
        assert len(blocks) == 3
        for row, block in enumerate(blocks):
            for sign, topk in (("exc", exp.excitatory), ("inh", exp.inhibitory)):
                shown = [float(c["score"]) for c in block[sign]]
                np.testing.assert_allclose(shown, topk.scores[row, :K_SHOWN], rtol=5e-3)
                assert all(c["cls"] == f"score {'pos' if sign == 'exc' else 'neg'}" for c in block[sign])
    rows_section, text_section = probe["blocks"][SECTIONS.index("As table rows")], probe["blocks"][SECTIONS.index("As text")]
    assert all(c["rows"] == 1 and c["imgs"] == 0 for b in rows_section for c in b["exc"] + b["inh"])
    assert all(c["snippets"] == 1 and c["imgs"] == 0 for b in text_section for c in b["exc"] + b["inh"])


def test_label_issues_and_heatmaps(page, built):
    probe, _ = page
    _, _, issues, mask, lrp, sens = built
    assert len(probe["issues"]) == N_ISSUES
    np.testing.assert_allclose([float(c["score"]) for c in probe["issues"]], issues.scores[:N_ISSUES], rtol=5e-3)
    flagged = [bool(mask[i]) for i in issues.indices[:N_ISSUES]]
    assert [c["corrupt"] for c in probe["issues"]] == flagged and probe["badges"] == sum(flagged)
    lrp_blocks = probe["blocks"][SECTIONS.index("LRP heatmaps")]
    for block, rel in zip(lrp_blocks, lrp, strict=True):
        cards = block["exc"] + block["inh"]
        np.testing.assert_allclose([float(c["score"]) for c in cards], rel.scores, rtol=5e-3)
        assert all(c["heat"] == 2 and c["imgs"] == 3 for c in cards)  # training image, map on test, map on train
        assert block["totals"] == []
    [block] = probe["blocks"][SECTIONS.index("Sensitivity maps")]
    assert block["totals"] == ["total"]
    assert all(c["heat"] == 1 and c["imgs"] == 2 for c in block["exc"] + block["inh"])
    assert len(block["exc"]) == int((sens.scores > 0).sum()) and len(block["inh"]) == int((sens.scores < 0).sum())


def test_the_browser_check_catches_an_external_resource(browser, tmp_path):
    """The checks above can fail: an external image is refused by the report's CSP and logged."""
    report = Report("leaky").add_section("Leak", '<img src="https://example.invalid/x.png" alt="x">')
    browser.console()
    browser.open(report.write(tmp_path / "leaky.html").resolve().as_uri())
    loaded = browser.js("return Array.from(document.images).map(i => i.naturalWidth)")
    log = browser.console()
    assert loaded == [0]
    assert any("Content Security Policy" in e["message"] for e in errors(log)), log
    assert re.search(r"example\.invalid", json.dumps(log))

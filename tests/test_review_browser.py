"""The review app end to end: `representer review RUN` serves it, headless Chromium uses it with the keyboard.

The run is tiny (240 digits as 8 × 8 images, 10 % flipped labels, the 40 most suspicious ranked by
`representer debug`). The server is the real command in a subprocess; the browser is driven with
``tests/browser.py``. Decisions are checked in the SQLite store itself, not only on the page.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from browser import ENTER, HAVE_BROWSER, NO_BROWSER, Browser, errors
from review_helpers import NAMES, make_run

from representer.classes import ClassMapping
from representer.review.store import STORE_FILE, DecisionStore

pytestmark = pytest.mark.skipif(not HAVE_BROWSER, reason=NO_BROWSER)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tiny = make_run(tmp_path_factory.mktemp("review"))
    command = [sys.executable, "-c", "from representer.cli import app; app()", "review", str(tiny.run), "--no-browser"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "COLUMNS": "400"})
    url, seen, deadline = None, [], time.monotonic() + 120
    while url is None and time.monotonic() < deadline and server.poll() is None:
        if select.select([server.stdout], [], [], 1.0)[0]:
            line = server.stdout.readline()
            seen.append(line)
            found = re.search(r"Open (http://\S+)", line)
            url = found.group(1) if found else None
    assert url, "".join(seen)
    yield tiny, url
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def browser():
    chrome = Browser(height=1000)
    yield chrome
    chrome.close()


def store_of(tiny) -> DecisionStore:
    info = json.loads((tiny.run / "run.json").read_text())
    return DecisionStore(tiny.run / STORE_FILE, train_fingerprint=info["train_fingerprint"], n_train=info["n_train"],
                         classes=ClassMapping.from_dict(info["classes"]))


def ranking(tiny) -> list[dict]:
    return json.loads((tiny.run / "label_issues.json").read_text())["issues"]


READY = "return document.body.dataset.ready === 'true' && !document.getElementById('point-body').hidden"
TITLE = "return document.getElementById('point-title').textContent"
MESSAGE = "return document.getElementById('message').textContent"


def load(browser: Browser, url: str) -> None:
    browser.open(url)
    browser.wait(READY)


def saved(browser: Browser, train_index: int) -> str:
    """Wait for the page to confirm the decision on ``train_index`` (and to show the next point)."""
    return browser.wait(f"const m = document.getElementById('message').textContent; "
                        f"return m.startsWith('Saved: training point {train_index} ') && m")


def test_relabel_three_with_the_keyboard_and_see_them_after_a_reload(served, browser):
    tiny, url = served
    rows = ranking(tiny)
    browser.console()
    load(browser, url)
    assert browser.js(TITLE).startswith(f"Rank 1 · training point {rows[0]['train_index']}")
    page = browser.js("""return {resources: performance.getEntriesByType('resource').map(r => r.name),
      imgs: Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 22), i.naturalWidth]),
      queue: document.querySelectorAll('#queue-list li').length, progress: document.getElementById('progress-text').textContent,
      helpful: document.querySelectorAll('#explanations .group-title.exc + .strip .card').length}""")
    origin = url.split("/?")[0]
    assert page["resources"] and all(r.startswith(origin + "/") for r in page["resources"])  # nothing from elsewhere
    assert page["imgs"] and all(src.startswith("data:image/png;base64,") and width > 0 for src, width in page["imgs"])
    assert page["queue"] == 40 and page["progress"].startswith("0 of 40 reviewed")
    assert page["helpful"] >= 6  # the explanation of the given (and the predicted) class

    chosen = {}
    for row in rows[:3]:
        new = NAMES[(row["given_label"] + 3) % 10]
        chosen[row["train_index"]] = new
        browser.keys("r" + new + ENTER)
        saved(browser, row["train_index"])
    assert browser.js(TITLE).startswith("Rank 4 ·")  # it moved on after each decision
    assert errors(browser.console()) == []

    load(browser, url.split("#")[0])  # a reload: everything comes back from review.sqlite
    assert browser.js(TITLE).startswith("Rank 4 ·")  # the first undecided point
    tags = browser.js("return Array.from(document.querySelectorAll('#queue-list .tag')).slice(0, 4).map(t => t.textContent)")
    assert tags == [f"relabel → {chosen[r['train_index']]}" for r in rows[:3]] + ["undecided"]
    assert browser.js("return document.getElementById('progress-text').textContent").startswith("3 of 40 reviewed, 3 relabelled")
    current = store_of(tiny).current()
    assert {i: NAMES[d.new_label] for i, d in current.items()} == chosen  # ids in the store name the chosen classes
    assert all(d.decision == "relabel" and d.given_label == tiny.y[i] for i, d in current.items())


def test_two_tabs_deciding_at_once_lose_nothing(served, browser):
    tiny, url = served
    rows = ranking(tiny)
    first = browser.tab()
    load(browser, url.split("#")[0])
    second = browser.new_tab()
    load(browser, url.split("#")[0])
    point = rows[3]["train_index"]
    assert browser.js(TITLE).startswith(f"Rank 4 · training point {point}")

    browser.switch(first)  # tab 1 keeps point 4 …
    assert browser.js(TITLE).startswith(f"Rank 4 · training point {point}")
    browser.keys("k")
    saved(browser, point)
    browser.switch(second)  # … while tab 2, still showing it undecided, removes it: refused, nothing overwritten
    browser.keys("x")
    message = browser.wait(f"const m = {MESSAGE.removeprefix('return ')}; return m.startsWith('Not saved') && m")
    assert "another tab" in message
    browser.wait("return document.getElementById('point-decision').textContent === 'keep'")  # it shows tab 1's decision
    browser.keys("x")  # having seen it, tab 2 decides again: recorded after tab 1's decision
    saved(browser, point)
    assert [d.decision for d in store_of(tiny).history(point)] == ["keep", "remove"]

    # both tabs fire decisions on ten points each without waiting for one another
    fire = """const token = new URLSearchParams(location.search).get('token');
      window.fired = Promise.all(arguments[0].map(i => fetch('/api/decisions', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-Review-Token': token},
        body: JSON.stringify({train_index: i, decision: arguments[1], base: null, client: arguments[1]})}).then(r => r.status)));
      return true"""
    ones, twos = [r["train_index"] for r in rows[10:20]], [r["train_index"] for r in rows[20:30]]
    browser.js(fire, twos, "skip")
    browser.switch(first)
    browser.js(fire, ones, "keep")
    assert browser.js("return window.fired") == [200] * 10
    browser.switch(second)
    assert browser.js("return window.fired") == [200] * 10
    current = store_of(tiny).current()
    assert [current[i].decision for i in ones] == ["keep"] * 10 and [current[i].decision for i in twos] == ["skip"] * 10
    logged = [e["message"] for e in errors(browser.console())]
    assert len(logged) <= 1 and all("409 (Conflict)" in m for m in logged), logged  # only the refused decision


def test_the_server_refuses_requests_without_its_token(served, browser):
    _, url = served
    origin, token = url.split("/?token=")
    for path, data in (("/", None), ("/api/state", None), ("/static/review.js", None), ("/api/points/0", None),
                       ("/api/decisions", b'{"train_index": 0, "decision": "keep", "base": null}')):
        for suffix in ("", "?token=wrong"):
            request = urllib.request.Request(origin + path + suffix, data=data, headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 403
            assert "session token" in json.loads(refused.value.read())["error"]
    with urllib.request.urlopen(f"{origin}/api/state?token={token}", timeout=30) as answer:
        assert answer.status == 200 and "default-src 'none'" in answer.headers["Content-Security-Policy"]
    browser.open(origin + "/")  # the page without its token: the refusal, no app
    assert "session token" in browser.js("return document.body.textContent")

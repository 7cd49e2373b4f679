"""A tiny WebDriver client for headless Chromium, shared by the browser tests (standard library only).

Chromium is driven through chromedriver's W3C WebDriver HTTP API: start a session, open a URL, run
JavaScript in the page, type keys, open and switch tabs, read the browser's console log. Tests that
use it are skipped when ``chromium`` / ``chromedriver`` are missing (``HAVE_BROWSER``; Debian:
``apt-get install chromium chromium-driver``; CI installs them in ``.ci/run``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
HAVE_BROWSER = CHROMIUM is not None and CHROMEDRIVER is not None
NO_BROWSER = "headless Chromium is not installed (Debian: `apt-get install chromium chromium-driver`)"
#: WebDriver's codes of special keys.
ENTER, ESCAPE, ARROW_RIGHT = "\ue007", "\ue00c", "\ue014"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Headless Chromium behind chromedriver, spoken to over HTTP (W3C WebDriver + chromedriver's log endpoint)."""

    def __init__(self, width: int = 1280, height: int = 1600):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    self.driver.kill()
                    raise
                time.sleep(0.1)
        options = {"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                f"--window-size={width},{height}"]}
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def _session(self, method: str, path: str, body: dict | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        """Load ``url`` (``file://…`` or ``http://…``) in the current tab."""
        self._session("POST", "/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``return`` its result; ``arguments[i]`` are ``args``) in the page."""
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script: str, *args: Any, timeout: float = 30.0) -> Any:
        """Run ``script`` until it returns something truthy (then return it); fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not satisfy {script!r} within {timeout} s")
            time.sleep(0.05)

    def keys(self, text: str) -> None:
        """Type ``text`` (characters, or the special keys above) into the focused element, key by key."""
        actions = []
        for key in text:
            actions += [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
        self._session("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})
        self._session("DELETE", "/actions")

    def new_tab(self) -> str:
        """Open a tab, switch to it, and return its handle."""
        handle = self._session("POST", "/window/new", {"type": "tab"})["handle"]
        self.switch(handle)
        return handle

    def tab(self) -> str:
        """The handle of the current tab."""
        return self._session("GET", "/window")

    def switch(self, handle: str) -> None:
        self._session("POST", "/window", {"handle": handle})

    def console(self) -> list[dict]:
        """Browser console entries since the last call (``level``, ``source``, ``message``)."""
        return self._session("POST", "/se/log", {"type": "browser"})

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=20)


def errors(log: list[dict]) -> list[dict]:
    """The console entries that are errors or warnings."""
    return [e for e in log if e["level"] in ("SEVERE", "WARNING")]

"""Helpers for the dashboard's browser tests: a real headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright), pages that record every console message and
every request, a steady background load, and screenshots under tests/artifacts/.

    with Browser() as browser:
        tab = browser.open(sp.admin_url + "/")
        ...
        tab.assert_clean(sp)   # no console error, no request to another host
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from tests.loadgen import LoadResult, run_load
from tests.support import REPO_ROOT, SplitterProc, admin_api, http_request

CHROMIUM = os.environ.get("SPLITTER_CHROMIUM", "/usr/bin/chromium")
# What works on a machine with no network beyond loopback (see .ci/run).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
DESKTOP = {"width": 1440, "height": 1000}
PHONE = {"width": 390, "height": 844}


class Tab:
    """One page in its own browser context, with what it logged and asked for."""

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.console: list[tuple[str, str, str]] = []  # type, text, url
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", lambda request: self.requests.append(request.url))

    def _on_console(self, message: Any) -> None:
        location = message.location or {}
        self.console.append((message.type, message.text, str(location.get("url", ""))))

    def assert_clean(
        self, sp: SplitterProc, origin: str | None = None, expected: tuple[int, ...] = ()
    ) -> None:
        """No script error, no console error, and every request to the page's own origin.

        The browser logs every API answer >= 400 as a console error: `expected` names the
        statuses a test provoked on purpose. One more is allowed while no rollout engine
        answers: the 404 of GET /api/v1/rollouts, only while that endpoint is missing."""
        origin = origin or sp.admin_url
        assert not self.errors, self.errors
        token = ((sp.config or {}).get("admin") or {}).get("token")
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        missing = http_request(sp.admin_url + "/api/v1/rollouts", headers=auth)[0] == 404
        provoked = [f"status of {status} " for status in expected]
        bad = [
            c
            for c in self.console
            if c[0] == "error"
            and not (missing and c[2].endswith("/api/v1/rollouts"))
            and not any(p in c[1] for p in provoked)
        ]
        assert not bad, bad
        foreign = [u for u in self.requests if not (u + "/").startswith(origin + "/")]
        assert not foreign, foreign
        assert self.requests, "the page made no request at all"

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


class Browser:
    """A headless Chromium for one test module (use it as a context manager)."""

    def __init__(self) -> None:
        if not Path(CHROMIUM).exists():
            raise AssertionError(
                f"{CHROMIUM} is missing: apt-get install chromium (the browser tests need it)"
            )
        from playwright.sync_api import sync_playwright  # in the test extra

        self._manager = sync_playwright()
        self.playwright = self._manager.__enter__()
        # (Playwright gives the browser a new, empty --user-data-dir of its own.)
        self.browser = self.playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        self.tabs: list[Tab] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        for tab in self.tabs:
            tab.close()
        self.browser.close()
        self._manager.__exit__(None, None, None)

    def open(
        self,
        url: str,
        viewport: dict[str, int] | None = None,
        color_scheme: str = "light",
        wait_live: bool = True,
    ) -> Tab:
        context = self.browser.new_context(
            viewport=viewport or DESKTOP, color_scheme=color_scheme, reduced_motion="reduce"
        )
        context.set_default_timeout(10_000)
        tab = Tab(context, context.new_page())
        self.tabs.append(tab)
        tab.page.goto(url)
        if wait_live:
            wait_live_page(tab.page)
        return tab


def wait_live_page(page: Any, timeout: float = 10) -> None:
    page.wait_for_selector('#conn[data-state="live"]', timeout=timeout * 1000)
    page.wait_for_selector("#pool-rows tr", timeout=timeout * 1000)


class BackgroundLoad:
    """A steady load at `rate` requests per second until stopped."""

    def __init__(self, port: int, rate: float, connections: int = 4) -> None:
        self.port = port
        self.rate = rate
        self.connections = connections
        self.results: list[LoadResult] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.results.append(run_load(self.port, self.connections, duration=1.0, rate=self.rate))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> BackgroundLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def api(sp: SplitterProc, method: str, path: str, body: Any = None, **headers: str) -> Any:
    return admin_api(sp, method, path, body, headers=headers)


# In the page: every visible text against the background it is drawn on (WCAG AA: 4.5:1,
# 3:1 for large text), every form control with a label, every button with a name.
A11Y_CHECK = """(() => {
  const problems = [];
  const rgb = (c) => (c.match(/[0-9.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] >= 0.99)) return c;
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor || "rgb(255,255,255)");
  };
  const visible = (el) => el.offsetParent !== null || getComputedStyle(el).position === "fixed";
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el) || el.closest(".visually-hidden") || el.closest(":disabled")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color);
    const ratio = (a, b) => (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const r = ratio(lum(fg), lum(background(el)));
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = el.textContent.trim().slice(0, 40);
    if (r < (large ? 3 : 4.5)) problems.push(`contrast ${r.toFixed(2)}: ${el.tagName} "${text}"`);
  }
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden" || !visible(el)) continue;
    const labelled = (el.labels && el.labels.length) || el.getAttribute("aria-label");
    if (!labelled) problems.push(`no label: #${el.id}`);
  }
  for (const el of document.querySelectorAll("button")) {
    const named = el.textContent.trim() || el.getAttribute("aria-label");
    if (visible(el) && !named) problems.push(`button without a name: #${el.id}`);
  }
  return problems;
})()"""


def wait_js(page: Any, expression: str, timeout: float = 10) -> None:
    """Until a JavaScript expression is truthy in the page. (Playwright's
    wait_for_function evaluates strings in a way the page's CSP forbids, as it should.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}")
        time.sleep(0.05)


def text_of(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())

"""The dashboard's rollout panel in a real browser, against the rollouts of CONTRACT.md
section 8 on a real `splitter run` under load.

These tests need the rollout engine (POST /api/v1/rollout and its controls); they fail
where it is missing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.browser import BackgroundLoad, Browser, Tab, api, text_of, wait_js
from tests.support import Backend, SplitterProc, pools_config, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ACTIVE = ("progressing", "paused")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


@pytest.fixture
def sp(splitter_factory: Any, three_pools: dict[str, Backend]) -> SplitterProc:
    """blue takes everything; canary and green wait at 0. Short holds for quick steps."""
    config = pools_config(
        dict(three_pools),
        {"blue": 100, "green": 0, "canary": 0},
        access_log=False,
        override={"header": "X-Splitter-Pool"},
        rollouts={
            "hold": "2s",
            "max": "60s",
            "on_inconclusive": "pause",
            "analysis": {"warmup": "1s"},
        },
    )
    return splitter_factory(config)


def rollout(sp: SplitterProc) -> dict[str, Any]:
    status, body = api(sp, "GET", "/api/v1/rollout")
    assert status == 200, body
    return dict(body)


def start(sp: SplitterProc, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = api(sp, "POST", "/api/v1/rollout", body)
    assert status == 201, answer
    return dict(answer)


def badge(tab: Tab) -> str:
    return text_of(tab.page, "#ro-status").strip()


def wait_badge(tab: Tab, text: str, timeout: float = 5) -> None:
    wait_until(lambda: badge(tab) == text, timeout, message=f"rollout badge {text!r}")


def candidate_requests(tab: Tab) -> int:
    row = tab.page.locator("#ro-counts tr", has=tab.page.locator("th", has_text="Candidate"))
    cells = row.locator("td").all_inner_texts()
    match = re.match(r"[0-9,]+", cells[0].strip())
    return int(match[0].replace(",", "")) if match else 0


def open_form(tab: Tab) -> Any:
    page = tab.page
    if page.get_attribute("#ro-start", "open") is None:
        page.click("#ro-start summary")
    return page


def test_before_any_rollout_the_panel_says_so_and_offers_the_form(
    browser: Browser, sp: SplitterProc
) -> None:
    assert api(sp, "GET", "/api/v1/rollout")[0] == 404
    assert api(sp, "GET", "/api/v1/rollouts")[0] == 200  # the engine is there
    tab = browser.open(sp.admin_url + "/")
    assert "No rollout has run yet" in text_of(tab.page, "#rollout")
    assert tab.page.is_visible("#ro-start")
    assert text_of(tab.page, "#sum-rollout") == "none"
    tab.assert_clean(sp)


def test_a_canary_started_from_the_form_shows_its_progress(
    browser: Browser, sp: SplitterProc
) -> None:
    with BackgroundLoad(sp.proxy_port, rate=80):
        tab = browser.open(sp.admin_url + "/")
        page = open_form(tab)
        page.select_option("#ro-form-pool", "canary")
        page.check("#ro-canary")
        page.fill("#ro-steps-input", "10, 50, 100")
        page.fill("#ro-hold", "2s")
        page.fill("#ro-max", "60s")
        page.click("#ro-start-go")
        wait_badge(tab, "progressing")
        current = rollout(sp)
        assert current["pool"] == "canary" and current["strategy"] == "canary"
        assert [s.get("weight") for s in current["steps"]] == [10, 50, 100]
        assert current["weights"]["canary"] == 10
        assert "Step 1 of 3" in text_of(page, "#ro-step")
        assert page.is_hidden("#ro-start")  # one rollout at a time
        assert "canary" in text_of(page, "#sum-rollout-note")
        # the analysis moves on the page as the candidate takes requests
        first = candidate_requests(tab)
        wait_until(lambda: candidate_requests(tab) > first + 20, 15, message="counts grow")
        verdict = text_of(page, "#ro-verdict")
        assert verdict in ("pending", "pass", "fail", "inconclusive")
        analysis = rollout(sp)["analysis"]
        if analysis.get("needed_requests"):
            assert "more candidate requests" in text_of(page, "#ro-needed")
        history = text_of(page, "#ro-history")
        assert "started" in history
        tab.assert_clean(sp)


def test_the_warmup_is_counted_down(browser: Browser, sp: SplitterProc) -> None:
    """While `analysis.warmup_until` is ahead, the panel counts it down by itself, and the
    line goes once it has passed. The field is added to every rollout the panel renders
    (so that the page is tested on its own, whatever the server's warmup)."""
    start(sp, {"pool": "canary", "steps": [10, 50, 100], "analysis": {"warmup": "0s"}})
    tab = browser.open(sp.admin_url + "/")
    page = tab.page
    wait_badge(tab, "progressing")
    assert "warmup_until" not in rollout(sp)["analysis"]  # no warmup: the server sends none
    assert text_of(page, "#ro-warmup") == ""  # the field is absent: nothing is shown
    until = datetime.fromtimestamp(time.time() + 4, UTC).isoformat().replace("+00:00", "Z")
    page.evaluate(
        """async (until) => {
            const { RolloutPanel } = await import("/dashboard/rollout.js");
            const render = RolloutPanel.prototype.render;
            RolloutPanel.prototype.render = function (rollout) {
              if (rollout) rollout.analysis = { ...rollout.analysis, warmup_until: until };
              return render.call(this, rollout);
            };
        }""",
        until,
    )
    assert api(sp, "POST", "/api/v1/rollout/pause")[0] == 200  # a transition: a new render
    wait_badge(tab, "paused")
    shown = re.compile(r"^· warming up until (\d\d:\d\d:\d\d) \((\d) s left\)$")
    first = wait_until(lambda: shown.match(text_of(page, "#ro-warmup")), 5, message="warmup")
    wall = page.evaluate("(t) => new Date(t).toLocaleTimeString('en-GB', {hour12: false})", until)
    assert first[1] == wall and 1 <= int(first[2]) <= 4, first[0]
    wait_until(
        lambda: (m := shown.match(text_of(page, "#ro-warmup"))) and int(m[2]) < int(first[2]),
        3,
        message="the countdown moves without an update from the server",
    )
    wait_until(lambda: text_of(page, "#ro-warmup") == "", 6, message="the warmup line goes")
    tab.assert_clean(sp)


def test_the_servers_warmup_is_shown(browser: Browser, sp: SplitterProc) -> None:
    """A step's real warmup: the rollout object says until when, and so does the page."""
    start(sp, {"pool": "canary", "steps": [10, 50, 100], "analysis": {"warmup": "30s"}})
    body = rollout(sp)
    assert body["analysis"]["warmup_until"].endswith("Z")
    assert "warming up until" in body["reason"]
    tab = browser.open(sp.admin_url + "/")
    wait_badge(tab, "progressing")
    wait_until(lambda: "warming up until" in text_of(tab.page, "#ro-warmup"), 5,
               message="the warmup on the page")  # fmt: skip
    tab.assert_clean(sp)


def test_pause_resume_and_promote_buttons(browser: Browser, sp: SplitterProc) -> None:
    start(sp, {"pool": "canary", "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]})
    tab = browser.open(sp.admin_url + "/")
    page = tab.page
    wait_badge(tab, "progressing")
    assert page.is_disabled("#ro-resume") and page.is_enabled("#ro-pause")

    page.click("#ro-pause")
    wait_badge(tab, "paused")
    assert rollout(sp)["status"] == "paused"
    assert page.is_enabled("#ro-resume") and page.is_disabled("#ro-pause")

    page.click("#ro-resume")
    wait_badge(tab, "progressing")
    assert rollout(sp)["status"] == "progressing"

    step = rollout(sp)["step"]
    page.click("#ro-promote")
    wait_until(lambda: rollout(sp)["step"] == step + 1, 5, message="the next step")
    # the page follows from the stream (within 2 s,
    # docs/admin-api.md#live-statistics-and-the-stream)
    wait_until(lambda: f"Step {step + 2} of 3" in text_of(page, "#ro-step"), 3,
               message="the page shows the next step")  # fmt: skip
    assert api(sp, "GET", "/api/v1/weights")[1]["canary"] == 50

    page.check("#ro-full")
    page.click("#ro-promote")
    wait_badge(tab, "promoted")
    assert api(sp, "GET", "/api/v1/weights")[1] == {"blue": 0, "green": 0, "canary": 100}
    assert page.is_visible("#ro-start")  # ended: a new one may start
    history = text_of(page, "#ro-history")
    for what in ("started", "paused", "resumed", "step", "promoted"):
        assert what in history, (what, history)
    assert [h["what"] for h in rollout(sp)["history"]][-1] == "promoted"
    tab.assert_clean(sp)


def test_abort_from_the_page_rolls_back(browser: Browser, sp: SplitterProc) -> None:
    start(sp, {"pool": "canary", "steps": [{"weight": 25}, {"weight": 100}]})
    tab = browser.open(sp.admin_url + "/")
    page = tab.page
    wait_badge(tab, "progressing")
    assert api(sp, "GET", "/api/v1/weights")[1]["canary"] == 25
    page.click("#ro-abort")
    assert page.is_visible("#ro-abort-confirm")
    assert rollout(sp)["status"] == "progressing"  # nothing before the confirmation
    page.click("#ro-abort-yes")
    wait_badge(tab, "rolled back")
    current = rollout(sp)
    assert current["status"] == "rolled_back" and "abort" in current["reason"]
    assert api(sp, "GET", "/api/v1/weights")[1] == {"blue": 100, "green": 0, "canary": 0}
    assert "abort" in text_of(page, "#ro-reason")
    assert "rolled_back" in text_of(page, "#ro-history") or "rolled back" in text_of(
        page, "#ro-history"
    )
    assert text_of(page, "#sum-rollout") == "rolled back"
    tab.assert_clean(sp)


def test_a_transition_made_elsewhere_shows_within_two_seconds(
    browser: Browser, sp: SplitterProc
) -> None:
    tab = browser.open(sp.admin_url + "/")
    page = tab.page
    page.evaluate("window.__notReloaded = true")
    start(sp, {"pool": "canary", "steps": [{"weight": 10}, {"weight": 100}]})
    wait_badge(tab, "progressing", timeout=2)
    changed = time.monotonic()
    assert api(sp, "POST", "/api/v1/rollout/pause")[0] == 200
    wait_badge(tab, "paused", timeout=2)
    assert time.monotonic() - changed < 2
    assert page.evaluate("window.__notReloaded") is True
    assert api(sp, "POST", "/api/v1/rollout/abort")[0] == 200
    wait_badge(tab, "rolled back", timeout=2)
    tab.assert_clean(sp)


def test_a_blue_green_rollout_from_the_form(browser: Browser, sp: SplitterProc) -> None:
    tab = browser.open(sp.admin_url + "/")
    page = open_form(tab)
    page.select_option("#ro-form-pool", "green")
    page.check("#ro-bluegreen")
    assert page.is_visible("#ro-keep") and page.is_hidden("#ro-steps-input")
    page.fill("#ro-preview-hold", "2s")
    page.fill("#ro-keep", "30s")
    page.click("#ro-start-go")
    wait_badge(tab, "progressing")
    current = rollout(sp)
    assert current["strategy"] == "bluegreen" and current["pool"] == "green"
    assert current["weights"]["green"] == 0  # the preview: reached through the header only
    assert "Step 1 of 2" in text_of(page, "#ro-step")
    page.click("#ro-promote")  # the operator's promote is its own gate: the switch
    wait_until(
        lambda: api(sp, "GET", "/api/v1/weights")[1] == {"blue": 0, "green": 100, "canary": 0},
        5,
        message="switched to green",
    )
    wait_js(page, "document.querySelector('#ro-step').innerText.includes('2 of 2')"
            " || document.querySelector('#ro-status').innerText.includes('promoted')")  # fmt: skip
    tab.assert_clean(sp)


def test_a_refused_start_shows_why(browser: Browser, sp: SplitterProc) -> None:
    tab = browser.open(sp.admin_url + "/")
    page = open_form(tab)
    page.select_option("#ro-form-pool", "blue")  # the only pool with traffic: nothing to compare
    page.click("#ro-start-go")
    page.wait_for_selector("#ro-form-msg.error")
    assert "Not started" in text_of(page, "#ro-form-msg")
    assert api(sp, "GET", "/api/v1/rollout")[0] == 404
    page.select_option("#ro-form-pool", "canary")
    page.fill("#ro-steps-input", "50, 20")  # not rising: refused before it is sent
    page.click("#ro-start-go")
    assert "rise" in text_of(page, "#ro-form-msg")
    assert page.get_attribute("#ro-steps-input", "aria-invalid") == "true"
    tab.assert_clean(sp, expected=(409,))

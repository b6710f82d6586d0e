"""The dashboard's shadow panel (CONTRACT.md section 15) in a real browser against a real
`splitter run` with two routes, whose pools are real backends (tests.backends.shadow_app,
one JSON service per version):

    shop  hosts [shop.test]   blue 100 (price 10); canary (price 11) gets a copy of every
                              request; evil (price 10, a `name` written in HTML)
    api   path_prefix /api    blue 100, no shadow

The panel shows the shop's shadow (pool, share, rates, the fields that differ most, the
last differences) and follows the stream; it never shows for the api route; what the
backends answer is shown as text, never run as HTML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.browser import A11Y_CHECK, PHONE, Browser, Tab, api, text_of, wait_js
from tests.support import (
    Backend,
    SplitterProc,
    http_request,
    route_entry,
    routes_config,
    start_shadow_backend,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

EVIL_NAME = '<img src=x onerror="window.__pwned=1"><b id="injected">bold</b>'
SHADOW = {"pool": "canary", "share": 1.0, "ignore_json": ["/generated_at"],
          "ignore_headers": ["date", "server", "x-pool"]}  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def versions() -> Iterator[dict[str, Backend]]:
    started: dict[str, Backend] = {}
    try:
        started["blue"] = start_shadow_backend("blue", price=10)
        started["canary"] = start_shadow_backend("canary", price=11)
        started["evil"] = start_shadow_backend("evil", price=10, name=EVIL_NAME)
        yield started
    finally:
        for backend in started.values():
            backend.stop()


@pytest.fixture
def sp(splitter_factory: Any, versions: dict[str, Backend]) -> SplitterProc:
    proc: SplitterProc = splitter_factory(
        routes_config(
            route_entry("shop", versions, {"blue": 100}, hosts=["shop.test"], shadow=SHADOW),
            route_entry("api", {"blue": versions["blue"]}, {"blue": 100}, path_prefix="/api"),
            access_log=False,
        )
    )
    return proc


def shop_shadow(sp: SplitterProc) -> dict[str, Any]:
    status, body = api(sp, "GET", "/api/v1/routes/shop/shadow")
    assert status == 200, body
    return dict(body)


def shop_requests(sp: SplitterProc, n: int, start: int = 0) -> None:
    """`n` requests to the shop (in a thread: Playwright's sync API runs a loop in this
    one), then until every copy was compared or counted."""
    before = shop_shadow(sp)["compared"]

    def send() -> None:
        for i in range(start, start + n):
            status, _, _ = http_request(f"{sp.proxy_url}/item/{i}", headers={"Host": "shop.test"})
            assert status == 200

    with ThreadPoolExecutor(1) as pool:
        pool.submit(send).result()
    wait_until(lambda: shop_shadow(sp)["compared"] >= before + n, 15, message="copies compared")


def rate_text(tab: Tab, name: str) -> list[str]:
    """A rate's value and note, as shown."""
    return text_of(tab.page, f'#sh-rates [data-rate="{name}"] dd').split("\n")


def field_rows(tab: Tab) -> list[list[str]]:
    rows = tab.page.locator("#sh-fields tr")
    return [
        [c.strip() for c in rows.nth(i).locator("th, td").all_inner_texts()[:2]]
        for i in range(rows.count())
    ]


def recent(tab: Tab) -> list[dict[str, str]]:
    """The last differences as shown, newest first."""
    items = tab.page.locator("#sh-recent li")
    out = []
    for i in range(items.count()):
        item = items.nth(i)
        out.append(
            {
                "request": item.locator(".sh-path").inner_text(),
                "status": item.locator(".sh-status").inner_text(),
                "field": item.locator(".sh-field").inner_text(),
                "primary": item.locator(".sh-primary").inner_text(),
                "shadow": item.locator(".sh-shadow").inner_text(),
                "time": item.locator("time").inner_text(),
            }
        )
    return out


def test_the_panel_shows_the_route_s_shadow_and_follows_it(
    browser: Browser, sp: SplitterProc
) -> None:
    shop_requests(sp, 5)
    tab = browser.open(sp.admin_url + "/#route=shop")
    page = tab.page
    page.wait_for_selector("#shadow:not([hidden])")
    assert text_of(page, "#sh-status") == "copying"
    what = text_of(page, "#sh-what")
    assert "100%" in what and "canary" in what and "No reference" in what, what
    assert rate_text(tab, "compared") == ["5", "0 the same"]
    assert rate_text(tab, "differ") == ["100%", "5 of 5"]
    for name in ("noise", "skipped", "errors"):
        assert rate_text(tab, name)[0] == "0"
    assert field_rows(tab) == [["/price", "5"]]
    shown = recent(tab)
    assert len(shown) == 5
    newest = shown[0]
    assert newest["request"] == "GET /item/4"  # newest first
    assert (newest["status"], newest["field"]) == ("200", "/price")
    assert (newest["primary"], newest["shadow"]) == ("10", "11")
    assert re.fullmatch(r"[0-9]{2}:[0-9]{2}:[0-9]{2}", newest["time"]), newest

    # It follows the stream, without a reload: more copies, more counts.
    page.evaluate("window.__notReloaded = true")
    shop_requests(sp, 3, start=5)
    wait_until(lambda: field_rows(tab) == [["/price", "8"]], 5, message="8 shown")
    assert recent(tab)[0]["request"] == "GET /item/7"
    assert page.evaluate("window.__notReloaded") is True
    tab.assert_clean(sp)
    assert page.evaluate(A11Y_CHECK) == []
    tab.screenshot("dashboard-shadow.png")

    # The api route has no shadow: no panel, though the stream keeps coming.
    page.locator('#route-list a[data-route="api"]').click()
    wait_js(page, "location.hash === '#route=api'")
    page.wait_for_timeout(2500)
    assert page.is_hidden("#shadow")
    fresh = browser.open(sp.admin_url + "/#route=api")
    fresh.page.wait_for_timeout(2500)  # a few ticks
    assert fresh.page.is_hidden("#shadow")
    fresh.assert_clean(sp)
    page.locator('#route-list a[data-route="shop"]').click()
    page.wait_for_selector("#shadow:not([hidden])")
    assert field_rows(tab) == [["/price", "8"]]

    # Stopped: the panel says so, and keeps what was compared in view.
    status, body = api(sp, "DELETE", "/api/v1/routes/shop/shadow")
    assert status == 200 and body["pool"] is None, body
    wait_until(lambda: text_of(page, "#sh-status") == "stopped", 5, message="stopped shown")
    assert "Stopped" in text_of(page, "#sh-what")
    assert field_rows(tab) == [["/price", "8"]] and len(recent(tab)) == 8
    assert page.is_visible("#shadow")


def test_what_backends_answer_is_shown_as_text(browser: Browser, sp: SplitterProc) -> None:
    """A shadow whose answers carry HTML: shown as the text it is, in every viewport."""
    status, body = api(sp, "PUT", "/api/v1/routes/shop/shadow", {"pool": "evil"})
    assert status == 200, body
    tab = browser.open(sp.admin_url + "/#route=shop")
    page = tab.page
    page.wait_for_selector("#shadow:not([hidden])")
    assert "evil" in text_of(page, "#sh-what")
    assert page.is_visible("#sh-fields-empty")  # nothing compared yet
    shop_requests(sp, 2)
    wait_until(lambda: len(recent(tab)) == 2, 5, message="2 differences shown")
    newest = recent(tab)[0]
    assert newest["field"] == "/name"
    assert newest["primary"] == '"widget"'
    assert newest["shadow"] == json.dumps(EVIL_NAME)  # every character, as text
    assert field_rows(tab) == [["/name", "2"]]
    assert page.evaluate("document.querySelector('#shadow img, #injected')") is None
    assert page.evaluate("window.__pwned") is None
    tab.assert_clean(sp)

    phone = browser.open(sp.admin_url + "/#route=shop", viewport=PHONE)
    phone.page.wait_for_selector("#sh-recent li")
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"horizontal scroll at phone width: {width}px"
    assert phone.page.evaluate(A11Y_CHECK) == []
    phone.screenshot("dashboard-shadow-phone.png")
    dark = browser.open(sp.admin_url + "/#route=shop", color_scheme="dark")
    dark.page.wait_for_selector("#sh-recent li")
    assert dark.page.evaluate(A11Y_CHECK) == []

    # Stopped: the results of the pool last stopped (evil) stay in view.
    status, body = api(sp, "DELETE", "/api/v1/routes/shop/shadow")
    assert status == 200 and (body["pool"], body["compared"]) == (None, 2), body
    wait_until(lambda: text_of(page, "#sh-status") == "stopped", 5, message="stopped shown")
    assert field_rows(tab) == [["/name", "2"]]
    tab.assert_clean(sp)

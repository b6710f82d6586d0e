"""The dashboard with several routes (CONTRACT.md section 12), in a real browser against a
real `splitter run` whose config has two routes, each with blue and canary pools served by
real backends of its own:

    shop  hosts [shop.test]          blue 90, canary 10
    api   path_prefix /echo          blue 100, canary 0   (the backends answer /echo/...)

The page lists both with their split and shows one at a time, the one in its address
(`/#route=api`); what it shows and every call it makes are about that route.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.browser import A11Y_CHECK, PHONE, Browser, Tab, api, text_of, wait_js
from tests.loadgen import run_load
from tests.support import (
    Backend,
    SplitterProc,
    http_request,
    start_flask_backend,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROUTES = ("shop", "api")
HEALTH_CHECK = {"path": "/healthz", "interval": "200ms", "timeout": "1s",
                "healthy_threshold": 1, "unhealthy_threshold": 1}  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    """One backend per route and pool: "shop-blue", "shop-canary", "api-blue", "api-canary"
    (X-Backend says which answered)."""
    started: dict[str, Backend] = {}
    try:
        for route in ROUTES:
            for pool in ("blue", "canary"):
                started[f"{route}-{pool}"] = start_flask_backend(
                    pool, f"{route}-{pool}", workers=1, threads=4
                )
        yield started
    finally:
        for backend in started.values():
            backend.stop()


def route_config(name: str, backends: dict[str, Backend], weights: dict[str, float],
                 served_by: str | None = None, **where: Any) -> dict[str, Any]:  # fmt: skip
    """A route whose pools are served by the backends of `served_by` (default: its own)."""
    served_by = served_by or name
    pools = {
        pool: {"weight": weights.get(pool, 0), "backends": [backends[f"{served_by}-{pool}"].url]}
        for pool in ("blue", "canary")
    }
    return {"name": name, **where, "pools": pools}


def two_routes(backends: dict[str, Backend]) -> dict[str, Any]:
    return {
        "routes": [
            route_config("shop", backends, {"blue": 90, "canary": 10}, hosts=["shop.test"]),
            route_config("api", backends, {"blue": 100}, path_prefix="/echo"),
        ],
        "health_check": HEALTH_CHECK,
        "rollouts": {"hold": "1m", "max": "5m", "on_inconclusive": "pause"},
        "access_log": False,
    }


@pytest.fixture
def sp(splitter_factory: Any, backends: dict[str, Backend]) -> SplitterProc:
    proc: SplitterProc = splitter_factory(two_routes(backends))
    return proc


# --------------------------------------------------------------------------- helpers


def weights_of(sp: SplitterProc, route: str) -> dict[str, Any]:
    status, body = api(sp, "GET", f"/api/v1/routes/{route}/weights")
    assert status == 200, body
    return dict(body)


def card(tab: Tab, route: str) -> Any:
    return tab.page.locator(f'#route-list a[data-route="{route}"]')


def shown_route(tab: Tab) -> str:
    """The route the page says it shows (the one card marked current)."""
    current = tab.page.locator('#route-list a[aria-current="true"]')
    assert current.count() == 1
    return str(current.get_attribute("data-route"))


def address(tab: Tab) -> str:
    return str(tab.page.evaluate("location.hash"))


def row_text(tab: Tab, pool: str, label: str) -> str:
    row = tab.page.locator(
        "#pool-rows tr", has=tab.page.locator("th", has_text=re.compile(f"^{pool}$"))
    )
    return str(row.locator(f'td[data-label="{label}"]').inner_text())


def shown_weights(tab: Tab) -> dict[str, float]:
    """The weight of each pool as the table shows it (its first line)."""
    names = [n.strip() for n in tab.page.locator("#pool-rows th .pool-name").all_inner_texts()]
    return {n: float(row_text(tab, n, "Weight").split("\n")[0]) for n in names}


def input_weights(tab: Tab) -> dict[str, float]:
    inputs = tab.page.locator("#weight-inputs input")
    return {
        str(inputs.nth(i).get_attribute("data-pool")): float(inputs.nth(i).input_value())
        for i in range(inputs.count())
    }


def wait_shows(tab: Tab, sp: SplitterProc, route: str) -> None:
    """Until the page shows `route`: its card current, its weights (the API's) in the
    table and in the form."""
    expected = {k: float(v) for k, v in weights_of(sp, route).items()}
    wait_until(
        lambda: (
            shown_route(tab) == route
            and shown_weights(tab) == expected
            and input_weights(tab) == expected
        ),
        5,
        message=f"the page shows {route} with {expected}",
    )


def number(text: str) -> float:
    match = re.search(r"[0-9][0-9,]*(\.[0-9]+)?", text)
    assert match, text
    return float(match[0].replace(",", ""))


def card_rps(tab: Tab, route: str) -> float:
    return number(text_of(tab.page, f'#route-list a[data-route="{route}"] .route-rps'))


def requests_of(sp: SplitterProc, route: str) -> int:
    status, body = api(sp, "GET", f"/api/v1/routes/{route}/stats?window=60")
    assert status == 200, body
    return sum(p["requests"] for p in body["pools"].values())


# --------------------------------------------------------------------------- tests


def test_the_list_shows_both_routes_with_their_split(browser: Browser, sp: SplitterProc) -> None:
    tab = browser.open(sp.admin_url + "/")
    page = tab.page
    assert page.is_visible("#routes")
    assert page.locator("#route-list .route-name").all_inner_texts() == ["shop", "api"]
    listed = api(sp, "GET", "/api/v1/routes")[1]
    assert list(listed) == ["shop", "api"]
    shop, api_card = (
        text_of(page, '#route-list a[data-route="shop"]'),
        text_of(page, '#route-list a[data-route="api"]'),
    )
    assert "shop.test · /" in shop and "blue 90% · canary 10%" in shop, shop
    assert "any host · /echo" in api_card and "blue 100%" in api_card, api_card
    assert "canary" not in api_card  # at weight 0: not in the split
    # the bars: one segment per pool with a weight, as wide as its share
    widths = page.evaluate(
        """[...document.querySelectorAll('#route-list a[data-route="shop"] .splitbar .seg')]
             .map((s) => s.getBoundingClientRect().width)"""
    )
    assert len(widths) == 2 and 7 < widths[0] / widths[1] < 11, widths
    # no route in the address: the first is shown, and the address is left alone
    assert shown_route(tab) == "shop" and address(tab) == ""
    wait_shows(tab, sp, "shop")
    assert page.title() == "shop · splitter"

    # clicking a route shows it and puts it in the address
    page.evaluate("window.__notReloaded = true")
    card(tab, "api").click()
    wait_shows(tab, sp, "api")
    assert address(tab) == "#route=api"
    assert page.evaluate("window.__notReloaded") is True  # no reload happened
    assert page.title() == "api · splitter"
    # Back goes to the route shown before
    page.go_back()
    wait_shows(tab, sp, "shop")
    page.go_forward()
    wait_shows(tab, sp, "api")

    # the route list is reachable with the keyboard
    page.focus('#route-list a[data-route="shop"]')
    page.keyboard.press("Enter")
    wait_shows(tab, sp, "shop")

    tab.assert_clean(sp)
    assert page.evaluate(A11Y_CHECK) == []
    tab.screenshot("dashboard-routes.png")
    dark = browser.open(sp.admin_url + "/#route=api", color_scheme="dark")
    assert dark.page.evaluate(A11Y_CHECK) == []
    dark.assert_clean(sp)
    phone = browser.open(sp.admin_url + "/#route=api", viewport=PHONE)
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"horizontal scroll at phone width: {width}px"
    phone.screenshot("dashboard-routes-phone.png")
    assert phone.page.evaluate(A11Y_CHECK) == []
    phone.assert_clean(sp)


def test_the_address_chooses_the_route(browser: Browser, sp: SplitterProc) -> None:
    tab = browser.open(sp.admin_url + "/#route=api")
    wait_shows(tab, sp, "api")
    assert tab.page.locator("#pool-rows th .pool-name").all_inner_texts() == ["blue", "canary"]
    assert tab.page.input_value("#ro-form-pool") == "canary"

    # an unknown route: the first one, and the address is set right
    unknown = browser.open(sp.admin_url + "/#route=nope")
    wait_shows(unknown, sp, "shop")
    assert address(unknown) == "#route=shop"
    # the same while the page runs (an address typed or edited by hand)
    unknown.page.evaluate("location.hash = '#route=api'")
    wait_shows(unknown, sp, "api")
    unknown.page.evaluate("location.hash = '#route=gone'")
    wait_shows(unknown, sp, "shop")
    assert address(unknown) == "#route=shop"
    # the skip link moves the focus and keeps the route in the address
    unknown.page.focus(".skip")
    unknown.page.keyboard.press("Enter")
    assert unknown.page.evaluate("document.activeElement.id") == "main"
    assert address(unknown) == "#route=shop"
    tab.assert_clean(sp)
    unknown.assert_clean(sp)


def test_weights_set_on_one_route_change_that_route_only(
    browser: Browser, sp: SplitterProc
) -> None:
    tab = browser.open(sp.admin_url + "/#route=api")
    page = tab.page
    wait_shows(tab, sp, "api")
    page.fill('#weight-inputs input[data-pool="blue"]', "70")
    page.fill('#weight-inputs input[data-pool="canary"]', "30")
    page.click("#weights-apply")
    page.wait_for_selector("#weights-msg.ok")
    assert weights_of(sp, "api") == {"blue": 70, "canary": 30}
    assert weights_of(sp, "shop") == {"blue": 90, "canary": 10}
    wait_until(lambda: "blue 70% · canary 30%" in text_of(page, '#route-list a[data-route="api"]'),
               3, message="the api card's split")  # fmt: skip
    assert "blue 90% · canary 10%" in text_of(page, '#route-list a[data-route="shop"]')
    # the api route's traffic follows, and reaches the api route's backends only
    seen: dict[str, int] = {}
    for _ in range(60):
        status, headers, _ = http_request(sp.proxy_url + "/echo/x")
        assert status == 200
        seen[headers["x-backend"]] = seen.get(headers["x-backend"], 0) + 1
    assert set(seen) == {"api-blue", "api-canary"}, seen

    # switch, on the api route too
    page.select_option("#switch-pool", "canary")
    page.click("#switch-go")
    page.click("#switch-yes")
    page.wait_for_selector("#switch-msg.ok")
    assert weights_of(sp, "api") == {"blue": 0, "canary": 100}
    assert weights_of(sp, "shop") == {"blue": 90, "canary": 10}

    # a change made elsewhere to the other route: its card follows, the page stays on api
    changed = time.monotonic()
    status, _ = api(sp, "PUT", "/api/v1/routes/shop/weights", {"blue": 50, "canary": 50})
    assert status == 200
    wait_until(lambda: "blue 50% · canary 50%" in text_of(page, '#route-list a[data-route="shop"]'),
               2, message="the shop card's split")  # fmt: skip
    assert time.monotonic() - changed < 2.0
    assert shown_route(tab) == "api"
    assert shown_weights(tab) == {"blue": 0, "canary": 100}
    assert input_weights(tab) == {"blue": 0, "canary": 100}
    # the events name their route
    wait_js(page, "document.querySelectorAll('#events .route-tag').length >= 3")
    tags = page.locator("#events li .route-tag").all_inner_texts()
    assert tags[:3] == ["shop", "api", "api"], tags
    newest = text_of(page, "#events li:first-child")
    assert "shop" in newest and "canary 10 → 50" in newest
    tab.assert_clean(sp)


def test_traffic_to_one_route_shows_in_its_numbers_only(browser: Browser, sp: SplitterProc) -> None:
    tab = browser.open(sp.admin_url + "/#route=api")
    page = tab.page
    wait_shows(tab, sp, "api")
    assert number(text_of(page, "#sum-rps")) == 0
    # (in a thread: Playwright's sync API keeps an event loop running in this one)
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_load, sp.proxy_port, 2, duration=20, path="/echo/x", rate=50)
        wait_until(lambda: abs(number(text_of(page, "#sum-rps")) - 50) <= 10, 20, interval=0.5,
                   message="the api route's requests/s near 50")  # fmt: skip
        assert abs(number(row_text(tab, "blue", "Req/s")) - 50) <= 10
        assert card_rps(tab, "api") > 30
        assert card_rps(tab, "shop") == 0
        # the shop route: none of that traffic
        card(tab, "shop").click()
        wait_shows(tab, sp, "shop")
        for _ in range(3):  # three stats messages in a row, while the load goes on
            time.sleep(1)
            assert number(text_of(page, "#sum-rps")) == 0
            assert number(row_text(tab, "blue", "Req/s")) == 0
            assert card_rps(tab, "api") > 30
        result = load.result()
    assert result.ok == result.sent > 0, result.summary()
    assert requests_of(sp, "shop") == 0
    # every one on api (once its last second is complete)
    wait_until(lambda: requests_of(sp, "api") == result.ok, 5, message="api counts them all")

    # and the other way: requests for shop.test count on shop
    for _ in range(40):
        status, headers, _ = http_request(sp.proxy_url + "/", headers={"Host": "shop.test"})
        assert status == 200 and headers["x-backend"].startswith("shop-")
    wait_until(lambda: requests_of(sp, "shop") == 40, 5, message="shop counts 40")
    wait_until(lambda: number(text_of(page, "#sum-rps")) > 0, 5,
               message="the page shows shop's requests")  # fmt: skip
    assert requests_of(sp, "api") == result.ok
    tab.assert_clean(sp)


def test_a_rollout_started_on_one_route_shows_there_only(
    browser: Browser, sp: SplitterProc
) -> None:
    tab = browser.open(sp.admin_url + "/#route=api")
    page = tab.page
    wait_shows(tab, sp, "api")
    if page.get_attribute("#ro-start", "open") is None:
        page.click("#ro-start summary")
    page.select_option("#ro-form-pool", "canary")
    page.fill("#ro-steps-input", "10, 50, 100")
    page.click("#ro-start-go")
    wait_until(lambda: text_of(page, "#ro-status") == "progressing", 5, message="progressing")
    status, current = api(sp, "GET", "/api/v1/routes/api/rollout")
    assert status == 200 and current["route"] == "api" and current["pool"] == "canary"
    assert api(sp, "GET", "/api/v1/routes/shop/rollout")[0] == 404
    assert weights_of(sp, "api") == {"blue": 90, "canary": 10}
    assert weights_of(sp, "shop") == {"blue": 90, "canary": 10}
    assert "canary" in text_of(page, "#sum-rollout-note")
    badge = '#route-list a[data-route="{}"] .badge'
    wait_until(lambda: page.is_visible(badge.format("api")), 3, message="the api card's badge")
    assert "rollout of canary at 10%: progressing" in text_of(page, badge.format("api"))
    assert page.is_hidden(badge.format("shop"))

    # the shop route: no rollout there
    card(tab, "shop").click()
    wait_shows(tab, sp, "shop")
    wait_until(lambda: "No rollout has run yet" in text_of(page, "#rollout"), 3,
               message="shop's rollout panel")  # fmt: skip
    assert page.is_visible("#ro-start") and page.is_hidden("#ro-status")
    assert text_of(page, "#sum-rollout") == "none"
    # api's rollout moves (through the API): its card follows, shop's panel does not
    assert api(sp, "POST", "/api/v1/routes/api/rollout/pause")[0] == 200
    wait_until(lambda: "paused" in text_of(page, badge.format("api")), 2,
               message="the api card says paused")  # fmt: skip
    assert "No rollout has run yet" in text_of(page, "#rollout")
    assert text_of(page, "#sum-rollout") == "none"

    # back on api: its rollout, and the page's buttons act on it
    card(tab, "api").click()
    wait_until(lambda: text_of(page, "#ro-status") == "paused", 5, message="api: paused")
    page.click("#ro-resume")
    wait_until(lambda: text_of(page, "#ro-status") == "progressing", 5, message="resumed")
    assert api(sp, "GET", "/api/v1/routes/api/rollout")[1]["status"] == "progressing"
    page.click("#ro-abort")
    page.click("#ro-abort-yes")
    wait_until(lambda: text_of(page, "#ro-status") == "rolled back", 5, message="rolled back")
    assert api(sp, "GET", "/api/v1/routes/api/rollout")[1]["status"] == "rolled_back"
    assert weights_of(sp, "api") == {"blue": 100, "canary": 0}
    assert api(sp, "GET", "/api/v1/routes/shop/rollout")[0] == 404
    wait_until(lambda: page.is_hidden(badge.format("api")), 2, message="no badge once ended")
    tab.assert_clean(sp)


def test_a_reload_that_adds_and_removes_routes(browser: Browser, sp: SplitterProc,
                                               backends: dict[str, Backend]) -> None:  # fmt: skip
    tab = browser.open(sp.admin_url + "/#route=api")
    page = tab.page
    wait_shows(tab, sp, "api")
    config = two_routes(backends)
    docs = route_config("docs", backends, {"blue": 1}, "api", path_prefix="/echo/docs")
    config["routes"] = [config["routes"][0], docs]  # api goes, docs comes
    assert sp.config is not None
    write_config(sp.config_path, {**sp.config, **config})
    page.click("#reload")
    page.wait_for_selector("#reload-msg.ok")
    wait_until(
        lambda: page.locator("#route-list .route-name").all_inner_texts() == ["shop", "docs"],
        5,
        message="the list has the new routes",
    )
    # the route shown is gone: the first is shown, and the address says so
    wait_shows(tab, sp, "shop")
    assert address(tab) == "#route=shop"
    card(tab, "docs").click()
    wait_shows(tab, sp, "docs")
    assert "any host · /echo/docs" in text_of(page, '#route-list a[data-route="docs"]')
    tab.assert_clean(sp)

"""End to end: routes and segments (docs/configuration.md#routes-and-segments) through a
real `splitter run`: which route takes a request by its Host and path, the 404 when none
does, segments of every kind before the weights, per-route weights and the routes'
listing, rollouts on two routes at once, a reload that adds and removes routes under
load, and the one sticky cookie that serves every route.

The backends that only need to say who they are echo what they received (the request
target and its Host headers, byte for byte) from a `RawBackend` named after its route and
pool; the rollouts use Flask backends under gunicorn that fail on purpose (test_rollout.py).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.rawbackend import RawBackend, Script
from tests.rawhttp import parse_responses, send_raw
from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    route_entry,
    routes_config,
    wait_until,
    write_config,
)
from tests.traffic import Traffic

SplitterFactory = Callable[..., SplitterProc]
RawFactory = Callable[..., RawBackend]
BackendFactory = Callable[..., Backend]

STICKY = {"cookie": "splitter"}
OVERRIDE = {"header": "X-Splitter-Pool"}
FAST = {  # as in test_rollout.py: short steps, a 5% floor so that a clean canary passes fast
    "hold": "2s",
    "max": "30s",
    "analysis": {"warmup": "1s", "min_error_rate": 0.05, "latency_floor": "50ms"},
}


# --------------------------------------------------------------------------- helpers


def echo(name: str) -> Callable[[bytes], Script]:
    """A RawBackend reply: 200, `X-Pool: name`, and JSON {backend, target, hosts} with the
    request target and every Host header exactly as they arrived."""

    def reply(head: bytes) -> Script:
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1].decode("latin-1")
        hosts = [
            line.partition(b":")[2].strip().decode("latin-1")
            for line in lines[1:]
            if line.partition(b":")[0].strip().lower() == b"host"
        ]
        body = json.dumps({"backend": name, "target": target, "hosts": hosts}).encode()
        return [
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pool: %s\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (name.encode(), len(body), body)
        ]

    return reply


def echoes(raw_backend: RawFactory, *names: str) -> dict[str, RawBackend]:
    return {name: raw_backend(echo(name)) for name in names}


def get(
    sp: SplitterProc,
    target: str,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One proxied request with this Host (None: http.client's own); the body as JSON
    when it is JSON."""
    sent = dict(headers or {})
    if host is not None:
        sent["Host"] = host
    status, got, body = http_request(sp.proxy_url + target, headers=sent, source=source)
    if got.get("content-type", "").startswith("application/json"):
        return status, got, json.loads(body)
    return status, got, body


def api(sp: SplitterProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return admin_api(sp, method, path, body)


def requests_metric(sp: SplitterProc) -> dict[tuple[str, str, str], float]:
    """(route, pool, code) -> splitter_requests_total, for every sample."""
    status, _, raw = http_request(f"{sp.admin_url}/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(raw.decode()):
        for s in family.samples:
            if s.name == "splitter_requests_total":
                out[(s.labels["route"], s.labels["pool"], s.labels["code"])] = s.value
    return out


def route_weights(sp: SplitterProc, route: str) -> dict[str, float]:
    status, body = api(sp, "GET", f"/api/v1/routes/{route}/weights")
    assert status == 200, body
    return dict(body)


def rollout_of(sp: SplitterProc, route: str) -> dict[str, Any]:
    status, body = api(sp, "GET", f"/api/v1/routes/{route}/rollout")
    assert status == 200, body
    return dict(body)


def events(sp: SplitterProc) -> list[dict[str, Any]]:
    status, body = api(sp, "GET", "/api/v1/events")
    assert status == 200, body
    return list(body["events"])


def fault(path: Path, fail_rate: float = 0.0) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fail_rate": fail_rate, "delay": 0.0}))
    os.replace(tmp, path)


def faulty(backend_factory: BackendFactory, tmp_path: Path, name: str) -> Backend:
    """A Flask backend (one gunicorn worker) whose faults the file tmp_path/NAME.fault sets."""
    path = tmp_path / f"{name}.fault"
    fault(path)
    return backend_factory(name, workers=1, env={"FAULT_FILE": str(path)})


# --------------------------------------------------------------------------- route choice

# docs/configuration.md "Which route serves a request", with two more routes; "stores" is
# listed before "tenants" so that the longer wildcard must win on its length, not its place.
CHOICE_ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("shop", {"hosts": ["shop.example.com"]}),
    ("shop-api", {"hosts": ["shop.example.com"], "path_prefix": "/api"}),
    ("stores", {"hosts": ["*.example.com"]}),
    ("stores-x", {"hosts": ["*.example.com"], "path_prefix": "/x"}),
    ("tenants", {"hosts": ["*.shop.example.com"]}),
    ("api", {"path_prefix": "/api"}),
    ("web", {}),
]

CHOICES = [  # Host, target -> the route that serves it
    ("shop.example.com", "/api/x", "shop-api"),  # the exact host; /api is longer than /
    ("SHOP.example.com:8080", "/api?q=1", "shop-api"),  # no port, any case; /api takes /api?q
    ("shop.example.com", "/api", "shop-api"),
    ("shop.example.com", "/apix", "shop"),  # /api matches whole segments only
    ("shop.example.com", "/x/1", "shop"),  # the exact host beats a wildcard's longer prefix
    ("eu.shop.example.com", "/api/x", "tenants"),  # longer wildcard; any host beats api
    ("a.b.Shop.Example.com:443", "/", "tenants"),  # a wildcard takes several labels
    ("eu.shop.example.com", "/x/1", "tenants"),  # the longer wildcard, then the prefix
    ("www.example.com", "/api/x", "stores"),  # a host beats api's longer prefix
    ("WWW.EXAMPLE.COM", "/x", "stores-x"),  # among equal hosts, the longest prefix
    ("www.example.com", "/xy?x", "stores"),
    ("example.com", "/api/x", "api"),  # *.example.com does not match example.com itself
    ("example.com:80", "/api?x=/y", "api"),
    ("example.com", "/apix", "web"),
    ("example.com", "/API/x", "web"),  # a path's case matters
    ("10.0.0.5", "/", "web"),
    ("example.com", "/api/a%2Fb/%20c?d=%2F&e", "api"),  # passed on byte for byte
]


def test_a_request_goes_to_the_route_its_host_and_path_choose(
    raw_backend: RawFactory, splitter_factory: SplitterFactory
) -> None:
    backends = echoes(raw_backend, *(name for name, _ in CHOICE_ROUTES))
    config = routes_config(
        *(route_entry(name, {"main": backends[name]}, {"main": 100}, **keys)
          for name, keys in CHOICE_ROUTES),
        sticky=STICKY,
    )  # fmt: skip
    sp = splitter_factory(config)
    for host, target, route in CHOICES:
        status, headers, body = get(sp, target, host)
        assert status == 200, (host, target, status, body)
        assert body == {"backend": route, "target": target, "hosts": [host]}, (host, target)
        assert headers["x-pool"] == route

    # HTTP/1.0 without a Host reaches only the routes without hosts, the longest prefix
    # first; the backend gets its own address as the Host.
    for target, route in (("/api/x", "api"), ("/", "web"), ("/x/1", "web")):
        raw = send_raw(sp.proxy_port, b"GET %s HTTP/1.0\r\n\r\n" % target.encode())
        [response] = parse_responses(raw)
        assert response.status == 200, (target, response)
        backend = backends[route]
        assert json.loads(response.body) == {
            "backend": route, "target": target, "hosts": [f"{LOCALHOST}:{backend.port}"],
        }  # fmt: skip

    served = Counter({name: len(b.heads()) for name, b in backends.items()})
    expected = Counter(route for _, _, route in CHOICES) + Counter({"api": 1, "web": 2})
    assert served == expected  # each request reached its route's backend, once


def test_a_request_no_route_takes_is_a_404_counted_as_none(
    raw_backend: RawFactory, splitter_factory: SplitterFactory
) -> None:
    backends = echoes(raw_backend, "shop", "api")
    config = routes_config(
        route_entry("shop", {"main": backends["shop"]}, {"main": 100},
                    hosts=["shop.example.com", "*.shop.example.com"]),
        route_entry("api", {"main": backends["api"]}, {"main": 100},
                    hosts=["api.example.com"], path_prefix="/v1"),
        sticky=STICKY,
    )  # fmt: skip
    sp = splitter_factory(config)
    misses = [
        ("example.com", "/"),
        ("shop.example.com.evil.test", "/"),
        ("xshop.example.com", "/"),
        ("api.example.com", "/"),
        ("api.example.com", "/v1x"),
        ("api.example.com", "/V1"),
        (f"{LOCALHOST}:{sp.proxy_port}", "/v1/x"),
    ]
    for host, target in misses:
        status, headers, body = get(sp, target, host)
        assert (status, body["error"]) == (404, "no route"), (host, target, body)
        assert "set-cookie" not in headers and "x-pool" not in headers
    raw = send_raw(sp.proxy_port, b"GET /v1/x HTTP/1.0\r\n\r\n")  # no Host: only hosted routes
    [response] = parse_responses(raw)
    assert response.status == 404 and json.loads(response.body)["error"] == "no route"
    assert backends["shop"].heads() == [] and backends["api"].heads() == []

    assert get(sp, "/", "shop.example.com")[0] == 200
    assert get(sp, "/v1?x", "API.example.com:1")[0] == 200
    counted = requests_metric(sp)
    assert counted[("none", "none", "404")] == len(misses) + 1
    assert counted[("shop", "main", "200")] == 1 and counted[("api", "main", "200")] == 1


# --------------------------------------------------------------------------- segments

SHOP_SEGMENTS: list[dict[str, Any]] = [
    {"pool": "canary", "header": {"name": "X-Beta", "value": "1"}},
    {"pool": "green", "header": {"name": "X-Beta"}},  # present, any value
    {"pool": "canary", "cookie": {"name": "beta", "value": "yes"}},
    {"pool": "green", "query": {"name": "preview"}},
    {"pool": "canary", "source": ["10.0.0.0/8", "127.0.0.2"]},
]

# target, headers, the client's local address (None: 127.0.0.1) -> the backend; a
# Set-Cookie comes with the weighted choice only (the client sends no cookie here).
SEGMENT_CASES: list[tuple[str, dict[str, str], str | None, str]] = [
    ("/", {}, None, "shop-blue"),
    ("/", {"X-Beta": "1"}, None, "shop-canary"),  # to a pool at weight 0
    ("/", {"x-beta": "1"}, None, "shop-canary"),  # header names ignore case
    ("/", {"X-Beta": "2"}, None, "shop-green"),  # the first matching segment wins
    ("/", {"Cookie": "beta=yes"}, None, "shop-canary"),
    ("/", {"Cookie": "a=1; beta=yes; b=2"}, None, "shop-canary"),
    ("/", {"Cookie": "beta=no"}, None, "shop-blue"),
    ("/", {"Cookie": "xbeta=yes"}, None, "shop-blue"),
    ("/?preview", {}, None, "shop-green"),
    ("/a/b?x=1&preview=0", {}, None, "shop-green"),
    ("/?previewx=1", {}, None, "shop-blue"),
    ("/preview", {}, None, "shop-blue"),  # a path, not a query parameter
    ("/", {}, "127.0.0.2", "shop-canary"),  # the connection's own address
    ("/", {"X-Forwarded-For": "10.1.2.3"}, None, "shop-canary"),  # from a trusted proxy
    ("/", {"X-Forwarded-For": "10.1.2.3, 203.0.113.9"}, None, "shop-blue"),  # rightmost
    ("/", {"X-Forwarded-For": "203.0.113.9"}, "127.0.0.2", "shop-canary"),  # untrusted peer
    ("/", {"X-Forwarded-For": "10.1.2.3"}, "127.0.0.3", "shop-blue"),  # ... not believed
    # the order: header, cookie, query, source, as listed
    ("/", {"X-Beta": "2", "Cookie": "beta=yes"}, None, "shop-green"),
    ("/?preview", {"Cookie": "beta=yes"}, None, "shop-canary"),
    ("/?preview", {"X-Forwarded-For": "10.1.2.3"}, None, "shop-green"),
    # the override header comes first; an unknown pool in it is ignored
    ("/", {"X-Splitter-Pool": "blue", "X-Beta": "1"}, None, "shop-blue"),
    ("/?preview", {"X-Splitter-Pool": "canary"}, None, "shop-canary"),
    ("/", {"X-Splitter-Pool": "nope", "X-Beta": "1"}, None, "shop-canary"),
    # another route has its own segments, and none of shop's
    ("/api/x", {"X-Beta": "anything"}, None, "api-canary"),
    ("/api/x", {"Cookie": "beta=yes"}, None, "api-blue"),
    ("/api?preview", {}, "127.0.0.2", "api-blue"),
]


def test_segments_choose_before_the_weights_in_their_order(
    raw_backend: RawFactory, splitter_factory: SplitterFactory
) -> None:
    b = echoes(raw_backend, "shop-blue", "shop-green", "shop-canary", "api-blue", "api-canary")
    config = routes_config(
        route_entry("shop", {"blue": b["shop-blue"], "green": b["shop-green"],
                             "canary": b["shop-canary"]}, {"blue": 100},
                    segments=SHOP_SEGMENTS),
        route_entry("api", {"blue": b["api-blue"], "canary": b["api-canary"]}, {"blue": 100},
                    path_prefix="/api",
                    segments=[{"pool": "canary", "header": {"name": "X-Beta"}}]),
        sticky=STICKY, override=OVERRIDE, trusted_proxies=["127.0.0.1/32"],
    )  # fmt: skip
    sp = splitter_factory(config)
    served: Counter[str] = Counter()
    for target, headers, source, expected in SEGMENT_CASES:
        status, got, body = get(sp, target, "shop.test", headers, source)
        assert status == 200, (target, headers, source)
        assert body["backend"] == expected, (target, headers, source, body)
        assert body["target"] == target
        weighted = expected.endswith("-blue") and "X-Splitter-Pool" not in headers
        assert ("set-cookie" in got) == weighted, (target, headers, source, got)
        served[expected] += 1

    # A returning client: its segment request keeps its cookie as it is, and without the
    # segment it is back on the pool its weights give it.
    _, got, _ = get(sp, "/", "shop.test")
    cookie = got["set-cookie"].split(";", 1)[0]
    status, got, body = get(sp, "/", "shop.test", {"Cookie": f"{cookie}; beta=yes"})
    assert (status, body["backend"], "set-cookie" in got) == (200, "shop-canary", False)
    status, got, body = get(sp, "/", "shop.test", {"Cookie": cookie})
    assert (status, body["backend"], "set-cookie" in got) == (200, "shop-blue", False)
    served.update({"shop-blue": 2, "shop-canary": 1})

    # Counted in their pool's metrics, and reached only their backend.
    counted = requests_metric(sp)
    for name, backend in b.items():
        route, pool = name.split("-")
        assert counted.get((route, pool, "200"), 0) == served[name] == len(backend.heads()), name
    _, listed = api(sp, "GET", "/api/v1/routes")
    assert listed["shop"]["segments"] == [
        {**s, "source": ["10.0.0.0/8", "127.0.0.2/32"]} if "source" in s else s
        for s in SHOP_SEGMENTS
    ]


# --------------------------------------------------------------------------- weights, API


def test_weights_are_per_route_and_the_routes_are_listed_in_config_order(
    raw_backend: RawFactory, splitter_factory: SplitterFactory
) -> None:
    b = echoes(raw_backend, "shop-blue", "shop-canary", "api-blue", "api-canary")
    config = routes_config(  # "shop" before "api": config order, not the names' order
        route_entry("shop", {"blue": b["shop-blue"], "canary": b["shop-canary"]}, {"blue": 100},
                    hosts=["shop.test", "*.shop.test"],
                    segments=[{"pool": "canary", "query": {"name": "beta"}}]),
        route_entry("api", {"blue": b["api-blue"], "canary": b["api-canary"]}, {"blue": 100},
                    path_prefix="/api", rollouts={"hold": "1h", "max": "2h"}),
        sticky=STICKY,
    )  # fmt: skip
    sp = splitter_factory(config)
    status, listed = api(sp, "GET", "/api/v1/routes")
    assert status == 200
    assert list(listed) == ["shop", "api"]
    assert listed == {
        "shop": {"hosts": ["shop.test", "*.shop.test"], "path_prefix": "/",
                 "weights": {"blue": 100, "canary": 0},
                 "segments": [{"pool": "canary", "query": {"name": "beta"}}], "rollout": None},
        "api": {"hosts": [], "path_prefix": "/api", "weights": {"blue": 100, "canary": 0},
                "segments": [], "rollout": None},
    }  # fmt: skip

    # Without a route named default, the calls without a route name one.
    for method, path, body in (
        ("GET", "/api/v1/weights", None),
        ("PUT", "/api/v1/weights", {"canary": 50}),
        ("POST", "/api/v1/switch", {"pool": "canary"}),
        ("POST", "/api/v1/rollout", {"pool": "canary"}),
    ):
        status, answer = api(sp, method, path, body)
        assert status == 400, (method, path, answer)
        assert "/api/v1/routes/{route}/" in answer["error"], answer
    for method, path, body in (
        ("GET", "/api/v1/routes/nope/weights", None),
        ("PUT", "/api/v1/routes/nope/weights", {"canary": 50}),
        ("GET", "/api/v1/routes/nope/rollout", None),
    ):
        status, answer = api(sp, method, path, body)
        assert status == 404 and "error" in answer, (method, path, answer)

    status, answer = api(sp, "PUT", "/api/v1/routes/shop/weights", {"canary": 50})
    assert (status, answer) == (200, {"blue": 100, "canary": 50})
    assert route_weights(sp, "api") == {"blue": 100, "canary": 0}
    shop_pools = Counter(get(sp, "/", "shop.test")[2]["backend"] for _ in range(60))
    api_pools = Counter(get(sp, "/api/x", "shop.example")[2]["backend"] for _ in range(30))
    assert set(shop_pools) == {"shop-blue", "shop-canary"}, shop_pools
    assert api_pools == {"api-blue": 30}
    _, _, raw = http_request(f"{sp.admin_url}/metrics")
    text = raw.decode()
    assert 'splitter_pool_weight{pool="canary",route="shop"} 50.0' in text
    assert 'splitter_pool_weight{pool="canary",route="api"} 0.0' in text

    status, started = api(sp, "POST", "/api/v1/routes/api/rollout", {"pool": "canary"})
    assert status == 201 and started["route"] == "api", started
    _, listed = api(sp, "GET", "/api/v1/routes")
    assert listed["shop"]["weights"] == {"blue": 100, "canary": 50}
    assert listed["shop"]["rollout"] is None
    assert listed["api"]["rollout"]["id"] == started["id"]
    assert listed["api"]["rollout"]["route"] == "api"
    assert listed["api"]["rollout"]["status"] == "progressing"
    assert listed["api"]["weights"] == started["weights"] == {"blue": 95, "canary": 5}
    assert route_weights(sp, "shop") == {"blue": 100, "canary": 50}  # untouched
    assert api(sp, "PUT", "/api/v1/routes/api/weights", {"blue": 1})[0] == 409
    assert api(sp, "PUT", "/api/v1/routes/shop/weights", {"blue": 1})[0] == 200
    assert api(sp, "POST", "/api/v1/routes/api/rollout/abort")[1]["status"] == "rolled_back"
    assert route_weights(sp, "api") == {"blue": 100, "canary": 0}
    assert route_weights(sp, "shop") == {"blue": 1, "canary": 50}


# --------------------------------------------------------------------------- rollouts


def _terminal(r: dict[str, Any]) -> bool:
    return r["status"] not in ("progressing", "paused")


@pytest.mark.slow
def test_rollouts_on_two_routes_at_once_are_each_judged_on_their_own_traffic(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    """shop's canary fails half its requests, api's is healthy: at the same time, shop's is
    rolled back and api's promoted. Judged together, api's would fail too."""
    p = {n: faulty(backend_factory, tmp_path, n) for n in
         ("shop-blue", "shop-canary", "api-blue", "api-canary")}  # fmt: skip
    fault(tmp_path / "shop-canary.fault", fail_rate=0.5)
    config = routes_config(
        route_entry("shop", {"blue": p["shop-blue"], "canary": p["shop-canary"]},
                    {"blue": 100}, hosts=["shop.test"],
                    rollouts={"analysis": {"warmup": "0s"}}),
        route_entry("api", {"blue": p["api-blue"], "canary": p["api-canary"]},
                    {"blue": 100}, hosts=["api.test"]),
        sticky=STICKY, rollouts=FAST, health_check={"interval": "1s"},
    )  # fmt: skip
    sp = splitter_factory(config)
    shop_traffic = Traffic(sp.proxy_port, clients=200, rate=80, seconds=60,
                           headers={"Host": "shop.test"})  # fmt: skip
    api_traffic = Traffic(sp.proxy_port, clients=200, rate=80, seconds=60,
                          headers={"Host": "api.test"})  # fmt: skip
    with shop_traffic, api_traffic:
        time.sleep(0.5)
        status, shop_started = api(sp, "POST", "/api/v1/routes/shop/rollout", {"pool": "canary"})
        assert status == 201 and shop_started["route"] == "shop", shop_started
        status, api_started = api(sp, "POST", "/api/v1/routes/api/rollout",
                                  {"pool": "canary", "steps": [50, 100]})  # fmt: skip
        assert status == 201 and api_started["route"] == "api", api_started
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline:
            shop, api_now = rollout_of(sp, "shop"), rollout_of(sp, "api")
            if _terminal(shop) and _terminal(api_now):
                break
            time.sleep(0.1)
    assert shop["status"] == "rolled_back", shop
    assert shop["analysis"]["verdict"] == "fail" and shop["analysis"]["candidate"]["bad"] > 0
    assert api_now["status"] == "promoted", api_now
    assert api_now["analysis"]["candidate"]["bad"] == 0, api_now["analysis"]
    # The two ran at once: each started before the other ended (RFC 3339 times in UTC).
    assert api_now["started_at"] < shop["updated_at"] and shop["started_at"] < api_now["updated_at"]
    assert route_weights(sp, "shop") == {"blue": 100, "canary": 0}
    assert route_weights(sp, "api") == {"blue": 0, "canary": 100}
    assert shop_traffic.count(pool="api-canary") == api_traffic.count(pool="shop-canary") == 0
    assert api_traffic.count(pool="api-canary") > 0
    assert set(api_traffic.statuses()) == {200}, api_traffic.statuses()
    ended = [
        (e["route"], e["what"].split(":")[0])
        for e in events(sp)
        if e["source"] == "rollout" and e["what"].split(":")[0].split()[-1] in
        ("rolled_back", "promoted")
    ]  # fmt: skip
    assert sorted(ended) == [
        ("api", "rollout of canary promoted"), ("shop", "rollout of canary rolled_back"),
    ]  # fmt: skip
    _, _, raw = http_request(f"{sp.admin_url}/metrics")
    text = raw.decode()
    assert 'splitter_rollout_status{pool="canary",route="shop",status="rolled_back"} 1.0' in text
    assert 'splitter_rollout_status{pool="canary",route="api",status="promoted"} 1.0' in text


@pytest.mark.slow
def test_segment_and_override_requests_are_not_judged_in_a_canary_step_but_are_in_a_preview(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    p = {n: faulty(backend_factory, tmp_path, n) for n in ("blue", "canary", "green")}
    fault(tmp_path / "canary.fault", fail_rate=1.0)
    fault(tmp_path / "green.fault", fail_rate=1.0)
    segments = [
        {"pool": "canary", "header": {"name": "X-Beta", "value": "1"}},
        {"pool": "green", "query": {"name": "preview"}},
    ]
    config = routes_config(
        route_entry("shop", p, {"blue": 100}, segments=segments,
                    rollouts={"analysis": {"warmup": "0s"}}),
        route_entry("other", {"blue": p["blue"]}, {"blue": 100}, hosts=["other.test"]),
        sticky=STICKY, override=OVERRIDE, rollouts=FAST, health_check={"interval": "1s"},
    )  # fmt: skip
    sp = splitter_factory(config)

    # A canary step: a flood of segment and override requests to a canary that fails every
    # one of them decides nothing. With no weighted traffic the step is inconclusive.
    body: dict[str, Any] = {
        "pool": "canary", "steps": [{"weight": 20, "hold": "2s", "max": "5s"}, 100]
    }  # fmt: skip
    with (
        Traffic(sp.proxy_port, clients=50, rate=60, seconds=12,
                headers={"X-Beta": "1"}) as testers,
        Traffic(sp.proxy_port, clients=50, rate=30, seconds=12,
                headers={"X-Splitter-Pool": "canary"}) as overriders,
    ):  # fmt: skip
        time.sleep(0.5)
        assert api(sp, "POST", "/api/v1/routes/shop/rollout", body)[0] == 201
        held = wait_until(lambda: (r := rollout_of(sp, "shop"))["status"] != "progressing"
                          and r, timeout=10, message="the step's end")  # fmt: skip
    flooded = testers.count(pool="canary", status=500) + overriders.count(pool="canary", status=500)
    why = (held["status"], held["reason"], held["analysis"])
    assert held["status"] == "paused" and held["analysis"]["verdict"] == "inconclusive", why
    assert held["analysis"]["candidate"] == {"requests": 0, "bad": 0, "slow": 0}, held
    assert flooded > 200 and testers.count(pool="canary") == testers.count(), testers.statuses()
    assert requests_metric(sp)[("shop", "canary", "500")] >= flooded  # counted, not judged

    def canary_stats() -> dict[str, Any]:
        status, stats = api(sp, "GET", "/api/v1/routes/shop/stats?window=60")
        assert status == 200 and stats["route"] == "shop", stats
        return dict(stats["pools"]["canary"])

    wait_until(lambda: canary_stats()["requests"] >= flooded, 5, message="in the statistics")
    assert canary_stats()["error_rate"] > 0.95
    # The same canary on weighted traffic is rolled back: the judge was watching.
    with Traffic(sp.proxy_port, clients=200, rate=80, seconds=20) as users:
        assert api(sp, "POST", "/api/v1/routes/shop/rollout/resume")[0] == 200
        failed = wait_until(lambda: (r := rollout_of(sp, "shop"))["status"] != "progressing"
                            and r, timeout=15, message="the rollback")  # fmt: skip
    assert failed["status"] == "rolled_back" and failed["analysis"]["candidate"]["bad"] > 0
    assert users.count(pool="canary", status=500) > 0

    # A blue-green preview: the segment's requests are what is judged.
    body = {"pool": "green", "strategy": "bluegreen", "auto_promote": True, "keep": "5s",
            "preview": {"hold": "2s", "max": "30s"}}  # fmt: skip
    with (
        Traffic(sp.proxy_port, clients=100, rate=60, seconds=30) as users,
        Traffic(sp.proxy_port, clients=20, rate=30, seconds=30, path="/?preview") as testers,
    ):
        assert api(sp, "POST", "/api/v1/routes/shop/rollout", body)[0] == 201
        final = wait_until(lambda: (r := rollout_of(sp, "shop"))["status"] != "progressing"
                           and r, timeout=25, message="the preview's end")  # fmt: skip
    assert final["status"] == "rolled_back", final
    assert final["analysis"]["candidate"]["bad"] > 0
    assert users.count(pool="green") == 0, "a client outside the segment reached green"
    assert testers.count(pool="green") > 0
    assert route_weights(sp, "shop") == {"blue": 100, "canary": 0, "green": 0}


# --------------------------------------------------------------------------- reload


class Load:
    """A bounded loop of requests in a thread, one keep-alive connection, round robin over
    the Hosts: (start, end, host, status, backend) for each."""

    def __init__(self, port: int, hosts: list[str], seconds: float, limit: int = 20_000):
        self.port, self.hosts, self.seconds, self.limit = port, hosts, seconds, limit
        self.results: list[tuple[float, float, str, int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=5)
        end = time.monotonic() + self.seconds
        i = 0
        while not self.stop.is_set() and time.monotonic() < end and i < self.limit:
            host = self.hosts[i % len(self.hosts)]
            i += 1
            t0 = time.monotonic()
            status, backend = 0, ""
            try:
                conn.request("GET", "/", headers={"Host": host})
                response = conn.getresponse()
                body = response.read()
                status = response.status
                if status == 200:
                    backend = json.loads(body)["backend"]
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=5)
            self.results.append((t0, time.monotonic(), host, status, backend))
        conn.close()

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_reload_adds_and_removes_routes_under_load_and_cancels_the_removed_rollout(
    raw_backend: RawFactory, splitter_factory: SplitterFactory
) -> None:
    b = echoes(raw_backend, "shop-blue", "shop-green", "old-blue", "old-canary", "new-blue")
    shop = route_entry("shop", {"blue": b["shop-blue"], "green": b["shop-green"]},
                       {"blue": 50, "green": 50}, hosts=["shop.test"])  # fmt: skip
    old = route_entry("old", {"blue": b["old-blue"], "canary": b["old-canary"]},
                      {"blue": 100}, hosts=["old.test"])  # fmt: skip
    new = route_entry("new", {"blue": b["new-blue"]}, {"blue": 100}, hosts=["new.test"])
    sp = splitter_factory(routes_config(shop, old, sticky=STICKY))
    assert sp.config is not None
    steps = [{"weight": 30, "hold": "1h", "max": "2h"}, 100]
    status, started = api(sp, "POST", "/api/v1/routes/old/rollout",
                          {"pool": "canary", "steps": steps})  # fmt: skip
    assert status == 201, started

    hosts = ["shop.test", "old.test", "new.test"]
    with Load(sp.proxy_port, hosts, seconds=12) as load1, \
            Load(sp.proxy_port, hosts, seconds=12) as load2:  # fmt: skip
        time.sleep(1.5)
        before = time.monotonic()
        write_config(sp.config_path, {**sp.config, "routes": [shop, new]}, atomic=True)
        assert api(sp, "POST", "/api/v1/reload")[0] == 200
        after = time.monotonic()
        time.sleep(1.5)
    results = load1.results + load2.results
    assert len(results) > 300, len(results)
    owners = {"shop.test": {"shop-blue", "shop-green"}, "old.test": {"old-blue", "old-canary"},
              "new.test": {"new-blue"}}  # fmt: skip
    wrong = []
    for t0, t1, host, status, backend in results:
        route = host.split(".")[0]
        gone = (route == "old" and t0 > after) or (route == "new" and t1 < before)
        either = t1 >= before and t0 <= after and route != "shop"
        if gone or (either and status == 404):
            ok = status == 404
        else:
            ok = status == 200 and backend in owners[host]
        if not ok:
            wrong.append((round(t0 - before, 3), host, status, backend))
    assert not wrong, f"{len(wrong)} of {len(results)} requests answered wrong: {wrong[:10]}"
    by_host = Counter((host, status) for _, _, host, status, _ in results)
    assert by_host[("old.test", 200)] and by_host[("old.test", 404)], by_host
    assert by_host[("new.test", 200)] and by_host[("new.test", 404)], by_host
    shop_answers = sum(n for (h, _), n in by_host.items() if h == "shop.test")
    assert by_host[("shop.test", 200)] == shop_answers, by_host

    def cancelled() -> list[dict[str, Any]]:
        return [e for e in events(sp) if e["source"] == "rollout" and e["route"] == "old"
                and "cancelled" in e["what"]]  # fmt: skip

    [event] = wait_until(cancelled, timeout=5, message="the removed route's rollout cancelled")
    assert event["what"].startswith("rollout of canary cancelled"), event
    _, listed = api(sp, "GET", "/api/v1/routes")
    assert list(listed) == ["shop", "new"]
    assert api(sp, "GET", "/api/v1/routes/old/rollout")[0] == 404
    assert route_weights(sp, "new") == {"blue": 100}


# --------------------------------------------------------------------------- sticky cookie


def test_one_cookie_serves_every_route_and_each_route_chooses_on_its_own(
    raw_backend: RawFactory, splitter_factory: SplitterFactory
) -> None:
    b = echoes(raw_backend, "shop-blue", "shop-green", "api-blue", "api-green")
    config = routes_config(
        route_entry("shop", {"blue": b["shop-blue"], "green": b["shop-green"]},
                    {"blue": 50, "green": 50}, hosts=["shop.test"]),
        route_entry("api", {"blue": b["api-blue"], "green": b["api-green"]},
                    {"blue": 50, "green": 50}, hosts=["api.test"]),
        sticky=STICKY,
    )  # fmt: skip
    sp = splitter_factory(config)
    clients = []
    for i in range(200):
        first, second = ("shop.test", "api.test") if i % 2 else ("api.test", "shop.test")
        status, got, body = get(sp, "/", first)
        assert status == 200 and "set-cookie" in got
        cookie = got["set-cookie"].split(";", 1)[0]
        assert cookie.startswith("splitter=")
        status, again, other = get(sp, "/", second, {"Cookie": cookie})
        assert status == 200 and "set-cookie" not in again, "one cookie serves every route"
        pools = {body["backend"].split("-")[0]: body["backend"].split("-")[1],
                 other["backend"].split("-")[0]: other["backend"].split("-")[1]}  # fmt: skip
        clients.append((cookie, pools["shop"], pools["api"]))
    pairs = Counter((shop, api_pool) for _, shop, api_pool in clients)
    print(f"(shop, api) pools of 200 clients at 50/50 on both: {dict(pairs)}")
    assert len(pairs) == 4 and min(pairs.values()) >= 25, pairs  # 50 each expected
    for cookie, shop_pool, api_pool in clients[::4]:  # returning clients keep both
        for host, pool in (("api.test", api_pool), ("shop.test", shop_pool)):
            status, got, body = get(sp, "/x", host, {"Cookie": cookie})
            assert (status, body["backend"], "set-cookie" in got) == (
                200, f"{host.split('.')[0]}-{pool}", False
            )  # fmt: skip

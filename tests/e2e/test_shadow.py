"""End to end: shadow traffic (docs/shadow.md) through a real `splitter run` with real
backends (tests.backends.shadow_app: one JSON service per version, each recording what it
received): copies reach the shadow pool with X-Splitter-Shadow and never change what a
client gets, differences are found and named by their JSON field, noise is subtracted with
a reference, the limits are counted, a hanging shadow costs a client nothing, the share
changes at runtime and survives a restart, and the metrics count it all.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redisserver import RedisServer
from tests.support import (
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    pools_config,
    start_shadow_backend,
    wait_until,
    write_config,
)

SplitterFactory = Callable[..., SplitterProc]
IGNORED = ["date", "x-request-id", "set-cookie", "server", "etag", "last-modified"]


@pytest.fixture
def versions() -> Iterator[Callable[..., Backend]]:
    """`(pool, price=10, noise=False, delay=0.0) -> Backend`, all stopped at teardown."""
    started: list[Backend] = []

    def make(pool: str, **kw: Any) -> Backend:
        backend = start_shadow_backend(pool, **kw)
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.stop()


def seen(backend: Backend) -> list[list[Any]]:
    status, _, body = http_request(f"{backend.url}/seen")
    assert status == 200
    return list(json.loads(body))


def shadow_state(proc: SplitterProc, path: str = "/api/v1/shadow") -> dict[str, Any]:
    status, body = admin_api(proc, "GET", path)
    assert status == 200, body
    return dict(body)


def wait_compared(proc: SplitterProc, n: int, key: str = "compared") -> dict[str, Any]:
    """The shadow's state once `key` reached `n` (copies finish after their clients)."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        found[:] = [shadow_state(proc)]
        return int(found[0][key]) >= n

    wait_until(done, timeout=15, message=f"{key} to reach {n}")
    return found[0]


def config(
    blue: Backend, canary: Backend, green: Backend | None = None, **shadow: Any
) -> dict[str, Any]:
    pools: dict[str, Any] = {"blue": blue, "canary": canary}
    if green is not None:
        pools["green"] = green
    shadow.setdefault("ignore_headers", [*IGNORED, "x-pool"])  # each version says its pool
    return pools_config(
        pools, {"blue": 100}, shadow={"pool": "canary", "share": 1.0, **shadow},
        timeouts={"connect": "1s", "read": "2s"},
    )  # fmt: skip


def test_copies_reach_the_shadow_and_clients_get_the_primarys_answers(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue", price=10), versions("canary", price=11)
    proc = splitter_factory(config(blue, canary, ignore_json=["/generated_at"]))
    for i in range(10):
        status, headers, body = http_request(f"{proc.proxy_url}/item/{i}?token=s3cret")
        assert status == 200
        assert headers["x-pool"] == "blue"
        assert json.loads(body)["price"] == 10  # never the shadow's
    # A POST is not copied (safe methods only, by default); the client's own
    # X-Splitter-Shadow never reaches a backend.
    status, _, _ = http_request(f"{proc.proxy_url}/item/x", "POST", b"{}")
    assert status == 200
    http_request(f"{proc.proxy_url}/item/y", headers={"X-Splitter-Shadow": "1"})
    state = wait_compared(proc, 11)
    copies = seen(canary)
    assert [c[0] for c in copies] == ["GET"] * 11
    assert all(c[2] == "1" for c in copies)  # every copy is marked
    primary = seen(blue)
    assert all(p[2] is None for p in primary)  # no request to the primary is
    # The copy carries the primary's request: same target, same request id.
    by_id = {p[4]: p for p in primary}
    for copy in copies:
        assert by_id[copy[4]][1] == copy[1]
    assert state["pool"] == "canary" and state["share"] == 1.0
    assert (state["compared"], state["differ"], state["same"]) == (11, 11, 0)
    assert state["diff_rate"] == 1.0
    assert state["fields"] == [{"field": "/price", "differ": 11}]  # generated_at ignored
    last = state["recent"][-1]
    assert (last["field"], last["primary"], last["shadow"]) == ("/price", "10", "11")
    assert last["path"] == "/item/y"
    assert state["recent"][0]["path"] == "/item/0?token="  # the query's values never shown
    assert len(state["recent"]) == 11


def test_identical_versions_compare_the_same_and_a_reference_subtracts_noise(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    # Every version answers a random `stock`: without a reference it is a difference on
    # every request; with one (a second copy of the primary's version), it is noise.
    blue = versions("blue", noise=True)
    green = versions("green", noise=True)
    canary = versions("canary", noise=True)
    proc = splitter_factory(config(blue, canary, green, ignore_json=["/generated_at"]))
    for i in range(5):
        http_request(f"{proc.proxy_url}/item/{i}")
    state = wait_compared(proc, 5)
    assert state["differ"] == 5 and state["fields"] == [{"field": "/stock", "differ": 5}]
    status, body = admin_api(proc, "PUT", "/api/v1/shadow", {"reference": "green"})
    assert status == 200, body
    assert body["reference"] == "green"
    for i in range(8):
        http_request(f"{proc.proxy_url}/item/{i}")
    state = wait_compared(proc, 13)
    assert (state["differ"], state["noise"]) == (5, 8)
    assert len(seen(green)) == 8  # the reference got its copies


def test_a_difference_beyond_noise_still_counts_with_a_reference(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, green = versions("blue", noise=True), versions("green", noise=True)
    canary = versions("canary", price=12, noise=True)
    proc = splitter_factory(config(blue, canary, green, reference="green",
                                   ignore_json=["/generated_at"]))  # fmt: skip
    for i in range(6):
        http_request(f"{proc.proxy_url}/item/{i}")
    state = wait_compared(proc, 6)
    assert state["differ"] == 6
    assert state["fields"] == [{"field": "/price", "differ": 6}]  # not /stock: noise


def test_max_body_and_secrets(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary")
    proc = splitter_factory(config(blue, canary, max_body=1000, ignore_headers=["date", "x-pool"]))
    status, _, body = http_request(f"{proc.proxy_url}/big?size=5000")
    assert status == 200 and len(body) == 5000  # the client gets it all
    http_request(f"{proc.proxy_url}/big?size=500")
    state = wait_compared(proc, 1)
    state = wait_compared(proc, 1, "skipped")
    assert (state["same"], state["skipped"]) == (1, 1)
    # A Set-Cookie that differs is a difference, but its values are never shown.
    http_request(f"{proc.proxy_url}/cookie")
    state = wait_compared(proc, 2)
    assert state["fields"] == [{"field": "header:set-cookie", "differ": 1}]
    last = state["recent"][-1]
    assert "secret" not in last["primary"] + last["shadow"]


def test_a_hanging_shadow_costs_clients_nothing_and_max_in_flight_holds(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue = versions("blue")
    canary = versions("canary", delay=30)  # answers long after the read timeout (2 s)
    proc = splitter_factory(config(blue, canary, max_in_flight=3))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: http_request(f"{proc.proxy_url}/item/{i}"), range(24)))
    elapsed = time.monotonic() - started
    assert all(status == 200 for status, _, _ in results)
    # Not a benchmark: the shadow holds each copy 30 s, and 24 requests took far less.
    assert elapsed < 10
    state = shadow_state(proc)
    assert state["skipped"] >= 24 - 3 * 2  # at most 3 out at once
    state = wait_compared(proc, 1, "errors")  # the copies out time out (2 s): errors
    assert state["compared"] == 0
    assert state["errors"] + state["skipped"] <= 24


def test_failing_shadow_answers_are_compared(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary")
    proc = splitter_factory(config(blue, canary))
    http_request(f"{proc.proxy_url}/status/503")
    state = wait_compared(proc, 1)
    assert state["same"] == 1  # both answered 503 with the same body


def test_share_changes_at_runtime_survive_a_restart_and_delete_stops(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary")
    first = splitter_factory(config(blue, canary))
    status, body = admin_api(first, "PUT", "/api/v1/shadow", {"share": 0})
    assert status == 200 and body["share"] == 0
    for i in range(5):
        http_request(f"{first.proxy_url}/item/{i}")
    assert seen(canary) == []  # share 0: no copy
    # Bad changes are refused and change nothing.
    for change, words in [
        ({"share": 1.5}, "share"),
        ({"pool": "nope"}, "unknown pool"),  # a 404, as for the weights
        ({"pool": "blue"}, "only pool with a weight above 0"),
        ({"shares": 1}, "not a key"),
    ]:
        status, body = admin_api(first, "PUT", "/api/v1/shadow", change)
        expected = 404 if change.get("pool") == "nope" else 400
        assert status == expected and words in body["error"], (change, body)
    assert shadow_state(first)["share"] == 0
    status, body = admin_api(first, "PUT", "/api/v1/shadow", {"share": 0.5})
    assert status == 200 and body["share"] == 0.5
    first.stop()
    second = splitter_factory(first.config_path)
    assert shadow_state(second)["share"] == 0.5  # what the API confirmed outlives the process
    status, body = admin_api(second, "DELETE", "/api/v1/shadow")
    assert status == 200 and body["pool"] is None and body["share"] == 0
    for i in range(5):
        http_request(f"{second.proxy_url}/item/{i}")
    assert seen(canary) == []
    status, events = admin_api(second, "GET", "/api/v1/events")
    whats = [e["what"] for e in events["events"]]
    assert "shadow stopped" in whats


def test_metrics_count_every_result(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary", price=11)
    proc = splitter_factory(config(blue, canary, ignore_json=["/generated_at"]))
    _, _, text = http_request(f"{proc.admin_url}/metrics")
    assert 'splitter_shadow_total{pool="canary",result="differ",route="default"} 0.0' in (
        text.decode()
    )  # there from the start
    for i in range(4):
        http_request(f"{proc.proxy_url}/item/{i}")
    http_request(f"{proc.proxy_url}/other")  # the same on both sides
    wait_compared(proc, 5)
    _, _, text = http_request(f"{proc.admin_url}/metrics")
    samples = {
        (s.labels["route"], s.labels["pool"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text.decode())
        if family.name == "splitter_shadow"
        for s in family.samples
        if s.name == "splitter_shadow_total"
    }
    assert samples[("default", "canary", "differ")] == 4
    assert samples[("default", "canary", "same")] == 1
    assert samples[("default", "canary", "error")] == 0


def test_workers_sum_their_copies(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary", price=11)
    proc = splitter_factory({**config(blue, canary, ignore_json=["/generated_at"]), "workers": 2})
    for i in range(12):
        http_request(f"{proc.proxy_url}/item/{i}")  # fresh connections: both workers serve
    state = wait_compared(proc, 12)
    assert state["differ"] == 12
    assert len(seen(canary)) == 12


def test_one_client_address_causes_at_most_max_per_address_copies_a_second(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary")
    proc = splitter_factory(
        {**config(blue, canary), "rollouts": {"analysis": {"max_per_address": 2}}}
    )
    started = time.monotonic()
    for i in range(20):  # one flooding address
        http_request(f"{proc.proxy_url}/item/{i}")
    seconds = time.monotonic() - started
    http_request(f"{proc.proxy_url}/item/other", source="127.0.0.2")  # another client
    state = wait_compared(proc, 1)
    copies = seen(canary)
    flood = [c for c in copies if c[1] != "/item/other"]
    # 2 per second (the clock's seconds the flood touched: its length, rounded up, + 1)
    assert len(flood) <= 2 * (int(seconds) + 2)
    assert any(c[1] == "/item/other" for c in copies)  # the other address is copied
    wait_until(lambda: shadow_state(proc)["skipped"] + shadow_state(proc)["compared"] >= 21)
    assert shadow_state(proc)["skipped"] == 20 - len(flood)
    assert state["pool"] == "canary"


def test_a_change_reaches_every_replica_through_the_store(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    blue, canary = versions("blue"), versions("canary")
    server = RedisServer(tmp_path / "redis")
    try:
        store = {"url": server.url, "prefix": "shadow-test"}
        a = splitter_factory({**config(blue, canary), "store": store})
        b = splitter_factory({**config(blue, canary), "store": store})
        status, body = admin_api(a, "PUT", "/api/v1/shadow", {"share": 0.25})
        assert status == 200, body
        wait_until(lambda: shadow_state(b)["share"] == 0.25, timeout=10)
        assert admin_api(b, "DELETE", "/api/v1/shadow")[0] == 200
        wait_until(lambda: shadow_state(a)["pool"] is None, timeout=10)
        # Each replica compares its own copies.
        http_request(f"{b.proxy_url}/item/1")
        assert seen(canary) == []
    finally:
        server.kill()


def test_a_file_whose_shadow_changed_wins_over_the_runtime_share(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary")
    proc = splitter_factory(config(blue, canary))
    cfg = proc.config
    assert cfg is not None
    assert admin_api(proc, "PUT", "/api/v1/shadow", {"share": 0.5})[0] == 200
    # A reload of the same section keeps the runtime share...
    assert admin_api(proc, "POST", "/api/v1/reload")[0] == 200
    assert shadow_state(proc)["share"] == 0.5
    # ... a changed section is what the operator wants now.
    cfg["shadow"] = {**cfg["shadow"], "share": 0.1}
    write_config(proc.config_path, cfg)
    assert admin_api(proc, "POST", "/api/v1/reload")[0] == 200
    assert shadow_state(proc)["share"] == 0.1
    events = admin_api(proc, "GET", "/api/v1/events")[1]["events"]
    [aside] = [e for e in events if e["what"].startswith("runtime shadow set aside")]
    assert (aside["old"], aside["new"]) == ({"canary": 0.5}, {"canary": 0.1})
    # A section removed from the file: no shadow.
    del cfg["shadow"]
    write_config(proc.config_path, cfg)
    assert admin_api(proc, "POST", "/api/v1/reload")[0] == 200
    state = shadow_state(proc)
    assert state["pool"] is None
    http_request(f"{proc.proxy_url}/item/1")
    assert seen(canary) == []


def test_the_per_route_endpoints_and_a_route_without_shadow(
    versions: Callable[..., Backend], splitter_factory: SplitterFactory
) -> None:
    blue, canary = versions("blue"), versions("canary", price=11)
    pools = {"blue": {"weight": 100, "backends": [blue.url]},
             "canary": {"weight": 0, "backends": [canary.url]}}  # fmt: skip
    proc = splitter_factory({
        "routes": [
            {"name": "shop", "path_prefix": "/item", "pools": pools,
             "shadow": {"pool": "canary", "share": 1.0,
                        "ignore_headers": [*IGNORED, "x-pool"], "ignore_json": ["/generated_at"]}},
            {"name": "rest", "pools": pools},
        ],
    })  # fmt: skip
    http_request(f"{proc.proxy_url}/item/1")
    http_request(f"{proc.proxy_url}/other")  # the route rest: no copy
    wait_until(lambda: shadow_state(proc, "/api/v1/routes/shop/shadow")["compared"] == 1)
    assert shadow_state(proc, "/api/v1/routes/shop/shadow")["fields"][0]["field"] == "/price"
    rest = shadow_state(proc, "/api/v1/routes/rest/shadow")
    assert rest["pool"] is None and rest["compared"] == 0
    status, body = admin_api(proc, "PUT", "/api/v1/routes/rest/shadow", {"share": 0.5})
    assert status == 400 and "name the pool" in body["error"]
    status, body = admin_api(proc, "GET", "/api/v1/routes/nope/shadow")
    assert status == 404
    status, body = admin_api(proc, "GET", "/api/v1/shadow")  # several routes, none default
    assert status == 400
    assert [c[1] for c in seen(canary)] == ["/item/1"]

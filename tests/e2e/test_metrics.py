"""End to end: the Prometheus metrics of docs/operations.md#metrics, scraped from a real process.

Every count is checked against what the test itself saw as a client: requests are sent and
their responses read in full before the scrape (a request is counted when it finishes).
"""

from __future__ import annotations

import collections
import http.client
import json
import math
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.rawhttp import RawConn, parse_responses, send_raw
from tests.support import (
    LOCALHOST,
    METRIC_FAMILIES,
    NO_HEALTH_DOWN,
    Backend,
    SplitterProc,
    free_port,
    http_request,
    pools_config,
    wait_until,
    write_config,
)

FAMILIES = METRIC_FAMILIES
REASONS = ("connect", "timeout", "protocol")


SplitterFactory = Callable[..., SplitterProc]
BackendFactory = Callable[..., Backend]


# --------------------------------------------------------------------------- scraping


class Scrape:
    """One parsed /metrics answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, Any] = {}
        for fam in text_string_to_metric_families(text):
            assert fam.name not in self.families, f"family {fam.name} rendered twice"
            self.families[fam.name] = fam
        self.samples = [s for fam in self.families.values() for s in fam.samples]

    def all(self, name: str, **labels: str) -> list[Any]:
        """Samples called `name` whose labels include `labels`."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample `name` with exactly `labels`; None when absent. A
        `pool` without a `route` is the route `default`'s (`none`'s for the pool `none`)."""
        if "pool" in labels and "route" not in labels:
            labels["route"] = "none" if labels["pool"] == "none" else "default"
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} rendered {len(found)} times"
        return found[0] if found else None

    def requests(self) -> dict[tuple[str, str], float]:
        """(pool, code) -> count, for every non-zero splitter_requests_total sample."""
        return {
            (s.labels["pool"], s.labels["code"]): s.value
            for s in self.all("splitter_requests_total")
            if s.value
        }

    def total_requests(self) -> float:
        return sum(s.value for s in self.all("splitter_requests_total"))

    def buckets(self, pool: str) -> dict[float, float]:
        return {
            float(s.labels["le"]): s.value
            for s in self.all("splitter_request_duration_seconds_bucket", pool=pool)
        }


def scrape(proc: SplitterProc) -> Scrape:
    status, headers, body = http_request(proc.admin_url + "/metrics")
    assert status == 200, body
    assert headers.get("content-type", "").startswith("text/plain"), headers
    return Scrape(body.decode("utf-8"))


def scrape_when(
    proc: SplitterProc, predicate: Callable[[Scrape], bool], message: str, timeout: float = 5
) -> Scrape:
    """Scrape until `predicate` holds; the last scrape is returned."""
    result: list[Scrape] = []

    def check() -> bool:
        s = scrape(proc)
        result[:] = [s]
        return predicate(s)

    try:
        wait_until(check, timeout=timeout, interval=0.05, message=message)
    except AssertionError as exc:
        last = result[0].text if result else "(no scrape)"
        raise AssertionError(f"{exc}\nlast scrape:\n{last}") from None
    return result[0]


def settled(proc: SplitterProc, total: int) -> Scrape:
    """Wait until `total` requests are counted; the scrape then (any extra shows in it)."""
    scrape_when(
        proc,
        lambda s: s.total_requests() >= total,
        f"{total} requests counted in splitter_requests_total",
    )
    return scrape(proc)


def admin(proc: SplitterProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    status, _, out = http_request(proc.admin_url + path, method, data, headers)
    return status, json.loads(out) if out else None


def get(proc: SplitterProc, path: str = "/", timeout: float = 10) -> tuple[int, dict[str, str]]:
    """One GET on a fresh connection, read in full; (status, headers)."""
    status, headers, _ = http_request(proc.proxy_url + path, timeout=timeout)
    return status, headers


def raw_status(proc: SplitterProc, data: bytes) -> int:
    responses = parse_responses(send_raw(proc.proxy_port, data, timeout=5))
    assert responses, f"no response to {data[:80]!r}"
    return responses[0].status


def assert_all_families(s: Scrape) -> None:
    for name, kind in FAMILIES.items():
        assert name in s.families, f"{name} missing:\n{s.text}"
        assert s.families[name].type == kind, f"{name} is a {s.families[name].type}"


# --------------------------------------------------------------------------- from startup


def test_every_metric_present_right_after_startup(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    weights = {"blue": 90, "green": 0, "canary": 10}
    proc = splitter_factory(pools_config(three_pools, weights))
    s = scrape(proc)  # the very first scrape, before any health check may have run
    assert_all_families(s)
    assert s.requests() == {}
    assert {x.labels["pool"]: x.value for x in s.all("splitter_pool_weight")} == weights
    backends = {(x.labels["pool"], x.labels["backend"]) for x in s.all("splitter_backend_up")}
    assert backends == {(pool, b.url) for pool, b in three_pools.items()}
    for pool in weights:
        for reason in REASONS:
            assert s.value("splitter_upstream_errors_total", pool=pool, reason=reason) == 0
        assert s.value("splitter_request_duration_seconds_count", pool=pool) == 0
        assert s.value("splitter_request_duration_seconds_sum", pool=pool) == 0
        assert set(s.buckets(pool)) >= {0.005, 0.1, 1.0, math.inf}
    assert s.value("splitter_config_reloads_total", result="success") == 0
    assert s.value("splitter_config_reloads_total", result="failure") == 0
    assert s.value("splitter_config_last_reload_successful") == 1

    # Once the health checks have run, every live backend is up.
    s = scrape_when(
        proc,
        lambda s: all(x.value == 1 for x in s.all("splitter_backend_up")),
        "every backend up",
    )
    for pool, backend in three_pools.items():
        assert s.value("splitter_backend_up", pool=pool, backend=backend.url) == 1


def test_backend_label_is_the_url_as_written(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    written = f"http://localhost:{three_pools['blue'].port}"
    config = pools_config({"blue": written}, {"blue": 100})
    proc = splitter_factory(config)
    s = scrape_when(
        proc,
        lambda s: s.value("splitter_backend_up", pool="blue", backend=written) == 1,
        "backend up under the URL as written",
    )
    assert [x.labels["backend"] for x in s.all("splitter_backend_up")] == [written]


# --------------------------------------------------------------------------- requests


def test_requests_counted_exactly_per_pool(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc = splitter_factory(pools_config(three_pools, {"blue": 50, "canary": 50}))
    proc.wait_readyz()
    scrape_when(
        proc,
        lambda s: all(x.value == 1 for x in s.all("splitter_backend_up")),
        "every backend up",
    )
    n = 300
    seen: collections.Counter[str] = collections.Counter()
    host, port = LOCALHOST, proc.proxy_port
    conn = http.client.HTTPConnection(host, port, timeout=10)  # keep-alive, one at a time
    try:
        for i in range(n):
            if i % 50 == 0:  # and some on fresh connections
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", f"/?i={i}")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, body
            pool = resp.getheader("X-Pool")
            assert pool == body.decode(), (pool, body)
            seen[pool] += 1
    finally:
        conn.close()
    assert set(seen) == {"blue", "canary"}, seen  # 50/50 over 300 fresh client ids
    assert sum(seen.values()) == n

    s = settled(proc, n)
    assert s.requests() == {(pool, "200"): count for pool, count in seen.items()}, s.text
    assert s.total_requests() == n
    for pool in ("blue", "green", "canary"):
        count = s.value("splitter_request_duration_seconds_count", pool=pool)
        assert count == seen.get(pool, 0), pool
        buckets = s.buckets(pool)
        assert buckets[math.inf] == count
        ordered = [buckets[le] for le in sorted(buckets)]
        assert ordered == sorted(ordered), f"{pool} buckets not cumulative: {buckets}"
    for pool in seen:
        total = s.value("splitter_request_duration_seconds_sum", pool=pool)
        assert total is not None and 0 < total < 10 * seen[pool], (pool, total)
    assert s.value("splitter_request_duration_seconds_count", pool="none") in (None, 0)
    # Nothing failed upstream.
    assert all(x.value == 0 for x in s.all("splitter_upstream_errors_total"))


def test_backend_status_codes_are_counted_as_answered(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc = splitter_factory(pools_config(three_pools, {"green": 100}))
    proc.wait_readyz()
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    for code in (200, 201, 404, 404, 500, 503, 302):
        status, headers = get(proc, f"/status/{code}")
        assert status == code
        assert headers.get("x-pool") == "green"
        expected[("green", str(code))] += 1
    s = settled(proc, sum(expected.values()))
    assert s.requests() == dict(expected), s.text
    # A 5xx answered by a backend is not an upstream error.
    assert all(x.value == 0 for x in s.all("splitter_upstream_errors_total"))


def test_refused_requests_counted_with_pool_none(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    config = pools_config(
        three_pools,
        {"blue": 100},
        limits={"max_request_line": 1024, "max_header_count": 20, "max_body": 1000},
    )
    proc = splitter_factory(config)
    proc.wait_readyz()
    malformed = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ]
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    for data in malformed:
        assert raw_status(proc, data) == 400, data
        expected[("none", "400")] += 1
    for _ in range(2):
        assert raw_status(proc, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 414
        expected[("none", "414")] += 1
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(30))
    assert raw_status(proc, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n") == 431
    expected[("none", "431")] += 1
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
    assert raw_status(proc, data) == 413
    expected[("none", "413")] += 1
    # And a good one, to see it lands under its pool, not under "none".
    status, _ = get(proc)
    assert status == 200
    expected[("blue", "200")] += 1

    s = settled(proc, sum(expected.values()))
    assert s.requests() == dict(expected), s.text
    none_total = sum(v for (pool, _), v in expected.items() if pool == "none")
    assert s.value("splitter_request_duration_seconds_count", pool="none") == none_total
    assert s.value("splitter_request_duration_seconds_count", pool="blue") == 1
    # No label value came from the request (paths, header names, bodies).
    assert "/aaaa" not in s.text and "X-F" not in s.text and "folded" not in s.text


def test_pipelined_and_head_requests_each_counted_once(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc = splitter_factory(pools_config(three_pools, {"blue": 100}))
    proc.wait_readyz()
    with RawConn(proc.proxy_port) as conn:
        conn.send(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        statuses = [conn.read_response().status for _ in range(3)]
        conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        statuses.append(conn.read_response(head=True).status)
        assert conn.closed_by_peer(timeout=3)
    assert statuses == [200, 404, 200, 200]
    s = settled(proc, 4)
    assert s.requests() == {("blue", "200"): 3, ("blue", "404"): 1}, s.text


def test_header_timeout_408_counted_with_pool_none(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    config = pools_config(three_pools, {"blue": 100}, limits={"header_timeout": "300ms"})
    proc = splitter_factory(config)
    assert raw_status(proc, b"GET / HTTP/1.1\r\nHost: x\r\n") == 408
    s = settled(proc, 1)
    assert s.requests() == {("none", "408"): 1}, s.text


def test_connect_failure_is_502_and_an_upstream_error(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    dead = f"http://{LOCALHOST}:{free_port()}"
    config = pools_config(
        {"blue": dead, "canary": three_pools["canary"]},
        {"blue": 100},
        health_check=NO_HEALTH_DOWN,
        timeouts={"connect": "1s", "read": "5s"},
    )
    proc = splitter_factory(config)
    n = 3
    for _ in range(n):
        status, _ = get(proc)
        assert status == 502
    s = settled(proc, n)
    assert s.requests() == {("blue", "502"): n}, s.text
    assert s.value("splitter_request_duration_seconds_count", pool="blue") == n
    connect = s.value("splitter_upstream_errors_total", pool="blue", reason="connect")
    assert connect is not None and connect >= n, s.text  # each request failed to connect
    assert s.value("splitter_upstream_errors_total", pool="blue", reason="timeout") == 0
    assert s.value("splitter_upstream_errors_total", pool="blue", reason="protocol") == 0
    for reason in REASONS:
        assert s.value("splitter_upstream_errors_total", pool="canary", reason=reason) == 0
    # The health check never took it down.
    assert s.value("splitter_backend_up", pool="blue", backend=dead) == 1


@pytest.fixture
def garbage_backend() -> Iterator[str]:
    """A backend on 127.0.0.1 that answers every request with bytes that are not HTTP."""
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HELLO\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://{LOCALHOST}:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


def test_garbage_answer_is_502_and_a_protocol_error(
    garbage_backend: str, splitter_factory: SplitterFactory
) -> None:
    config = pools_config({"green": garbage_backend}, {"green": 100}, health_check=NO_HEALTH_DOWN)
    proc = splitter_factory(config)
    n = 2
    for _ in range(n):
        status, _ = get(proc)
        assert status == 502
    s = settled(proc, n)
    assert s.requests() == {("green", "502"): n}, s.text
    protocol = s.value("splitter_upstream_errors_total", pool="green", reason="protocol")
    assert protocol is not None and protocol >= n, s.text
    assert s.value("splitter_upstream_errors_total", pool="green", reason="timeout") == 0


def test_read_timeout_is_504_and_an_upstream_error(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    config = pools_config(three_pools, {"canary": 100}, timeouts={"read": "300ms"})
    proc = splitter_factory(config)
    proc.wait_readyz()
    status, _ = get(proc, "/slow?seconds=2")
    assert status == 504
    s = settled(proc, 1)
    assert s.requests() == {("canary", "504"): 1}, s.text
    assert s.value("splitter_upstream_errors_total", pool="canary", reason="timeout") == 1
    assert s.value("splitter_upstream_errors_total", pool="canary", reason="connect") == 0
    assert s.value("splitter_upstream_errors_total", pool="canary", reason="protocol") == 0
    # Its duration: about timeouts.read, well under the backend's 2s.
    buckets = s.buckets("canary")
    assert buckets[0.25] == 0, buckets
    assert buckets[1.0] == 1, buckets
    total = s.value("splitter_request_duration_seconds_sum", pool="canary")
    assert total is not None and 0.3 <= total < 1.5, total


def test_no_live_backend_503_counted_with_pool_none(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    blue = backend_factory("blue")
    proc = splitter_factory(pools_config({"blue": blue}, {"blue": 100}))
    proc.wait_readyz()
    blue.kill()
    scrape_when(
        proc,
        lambda s: s.value("splitter_backend_up", pool="blue", backend=blue.url) == 0,
        "backend down",
    )
    status, _ = get(proc)
    assert status == 503
    s = settled(proc, 1)
    assert s.requests() == {("none", "503"): 1}, s.text
    # the route took it: its label names it
    assert s.value("splitter_requests_total", route="default", pool="none", code="503") == 1


# --------------------------------------------------------------------------- gauges


def test_pool_weight_follows_the_api(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc = splitter_factory(pools_config(three_pools, {"blue": 90, "canary": 10}))

    def weights(s: Scrape) -> dict[str, float]:
        return {x.labels["pool"]: x.value for x in s.all("splitter_pool_weight")}

    assert weights(scrape(proc)) == {"blue": 90, "green": 0, "canary": 10}
    status, body = admin(proc, "PUT", "/api/v1/weights", {"canary": 20, "blue": 80})
    assert status == 200, body
    assert weights(scrape(proc)) == {"blue": 80, "green": 0, "canary": 20}
    status, body = admin(proc, "PUT", "/api/v1/weights", {"canary": 2.5})
    assert status == 200, body
    assert weights(scrape(proc)) == {"blue": 80, "green": 0, "canary": 2.5}
    status, body = admin(proc, "POST", "/api/v1/switch", {"pool": "green"})
    assert status == 200, body
    assert weights(scrape(proc)) == {"blue": 0, "green": 100, "canary": 0}
    # A refused change changes nothing.
    status, _ = admin(proc, "PUT", "/api/v1/weights", {"green": 0})
    assert status == 409
    assert weights(scrape(proc)) == {"blue": 0, "green": 100, "canary": 0}


def test_backend_up_follows_health(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    b1, b2 = backend_factory("blue", "blue-1"), backend_factory("blue", "blue-2")
    canary = backend_factory("canary")
    proc = splitter_factory(pools_config({"blue": [b1, b2], "canary": canary}, {"blue": 100}))
    scrape_when(
        proc,
        lambda s: (
            {(x.labels["pool"], x.labels["backend"]): x.value for x in s.all("splitter_backend_up")}
            == {("blue", b1.url): 1, ("blue", b2.url): 1, ("canary", canary.url): 1}
        ),
        "every backend up",
    )
    b2.kill()
    s = scrape_when(
        proc,
        lambda s: s.value("splitter_backend_up", pool="blue", backend=b2.url) == 0,
        "killed backend down",
    )
    assert s.value("splitter_backend_up", pool="blue", backend=b1.url) == 1
    assert s.value("splitter_backend_up", pool="canary", backend=canary.url) == 1
    canary.kill()
    s = scrape_when(
        proc,
        lambda s: s.value("splitter_backend_up", pool="canary", backend=canary.url) == 0,
        "killed canary down",
    )
    assert s.value("splitter_backend_up", pool="blue", backend=b1.url) == 1


# --------------------------------------------------------------------------- reloads


def test_reloads_counted(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    proc = splitter_factory(pools_config(three_pools, {"blue": 100}))
    assert proc.config is not None
    good = dict(proc.config)

    status, body = admin(proc, "POST", "/api/v1/reload")
    assert status == 200, body
    s = scrape(proc)
    assert s.value("splitter_config_reloads_total", result="success") == 1
    assert s.value("splitter_config_reloads_total", result="failure") == 0
    assert s.value("splitter_config_last_reload_successful") == 1

    # An invalid file: counted as a failure (by the watcher and/or the API call), old
    # config kept.
    write_config(proc.config_path, {**good, "pools": {"blue": {"weight": -1, "backends": []}}})
    status, body = admin(proc, "POST", "/api/v1/reload")
    assert status == 422, body
    s = scrape(proc)
    assert (s.value("splitter_config_reloads_total", result="failure") or 0) >= 1
    assert s.value("splitter_config_last_reload_successful") == 0
    assert {x.labels["pool"]: x.value for x in s.all("splitter_pool_weight")} == {
        "blue": 100,
        "green": 0,
        "canary": 0,
    }

    # A valid file again, with a new weight.
    pools = {name: dict(p) for name, p in good["pools"].items()}
    pools["canary"]["weight"] = 5
    write_config(proc.config_path, {**good, "pools": pools})
    before = s.value("splitter_config_reloads_total", result="success") or 0
    s = scrape_when(
        proc,
        lambda s: s.value("splitter_pool_weight", pool="canary") == 5,
        "the watcher applies the new file",
    )
    assert (s.value("splitter_config_reloads_total", result="success") or 0) > before
    assert s.value("splitter_config_last_reload_successful") == 1


def test_scrapes_are_not_counted(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory
) -> None:
    # /metrics on the proxy goes to the backend like any path; scrapes are not counted.
    proc = splitter_factory(pools_config(three_pools, {"blue": 100}))
    proc.wait_readyz()
    for _ in range(3):
        scrape(proc)
    status, headers = get(proc, "/metrics")
    assert headers.get("x-pool") == "blue"
    s = settled(proc, 1)
    assert s.requests() == {("blue", str(status)): 1}, s.text

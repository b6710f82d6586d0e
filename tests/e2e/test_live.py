"""End to end: live statistics, the stream and the dashboard's sessions (CONTRACT.md
section 9), against a real `splitter run` with real gunicorn backends and real load.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from tests.loadgen import run_load
from tests.rawhttp import send_raw
from tests.sse import SseClient
from tests.support import Backend, SplitterProc, http_request, pools_config, wait_until

TOKEN = "s3cret-token-of-the-dashboard"
OVERRIDE = "X-Splitter-Pool"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def config(pools: Mapping[str, Backend], weights: Mapping[str, float], **extra: Any) -> Any:
    extra.setdefault("override", {"header": OVERRIDE})
    extra.setdefault("access_log", False)
    return pools_config(dict(pools), weights, **extra)


def call(
    sp: SplitterProc,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    status, resp_headers, content = http_request(sp.admin_url + path, method, data, hdrs)
    parsed: Any = content
    if resp_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(content)
    return status, resp_headers, parsed


def stats(sp: SplitterProc, window: int = 60, headers: Mapping[str, str] | None = None) -> Any:
    status, _, body = call(sp, "GET", f"/api/v1/stats?window={window}", headers=headers)
    assert status == 200, body
    return body


def proxy_get(sp: SplitterProc, path: str = "/", pool: str | None = None) -> int:
    headers = {OVERRIDE: pool} if pool else {}
    return http_request(sp.proxy_url + path, headers=headers)[0]


def counted(sp: SplitterProc, total: int, window: int = 60, timeout: float = 10) -> Any:
    """The stats once `total` requests are in them (a second counts once complete)."""
    return wait_until(
        lambda: (
            (s := stats(sp, window))
            and sum(p["requests"] for p in s["pools"].values()) >= total
            and s
        ),
        timeout,
        message=f"{total} requests in the stats",
    )


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------------- /api/v1/stats


def test_stats_of_a_new_process_list_every_pool(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 80, "canary": 20}))
    body = stats(sp)
    assert body["window"] == 60 and RFC3339.match(body["at"]), body
    assert list(body["pools"]) == ["blue", "green", "canary"]  # config order, no "none"
    for name, weight in (("blue", 80), ("green", 0), ("canary", 20)):
        pool = body["pools"][name]
        assert pool == {
            "weight": weight,
            "share": None,
            "requests": 0,
            "rps": 0.0,
            "error_rate": None,
            "p50_ms": None,
            "p95_ms": None,
            "p99_ms": None,
            "backends_up": 1,
            "backends": 1,
        }


@pytest.mark.parametrize(
    "query", ["window=0", "window=301", "window=-1", "window=1.5", "window=abc", "window=",
              "window=1e2", "window=+5", "window=%201"]
)  # fmt: skip
def test_a_window_out_of_range_or_not_whole_is_400(
    splitter_factory: Any, three_pools: dict[str, Backend], query: str
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    for path in ("/api/v1/stats", "/api/v1/stats/series"):
        q = query.replace("window", "seconds") if path.endswith("series") else query
        status, headers, body = call(sp, "GET", f"{path}?{q}")
        assert status == 400, (path, q, body)
        assert headers["content-type"].startswith("application/json") and body["error"]
    assert stats(sp, 1)["window"] == 1
    assert stats(sp, 300)["window"] == 300
    status, _, series = call(sp, "GET", "/api/v1/stats/series")
    assert status == 200 and series["seconds"] == 300


def test_shares_follow_the_weights_and_every_request_is_counted(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    """80/20 without stickiness: each request is an independent draw, so the shares are
    within a binomial tolerance (5 sigma) of 0.8 and 0.2; the counts are exact."""
    sp = splitter_factory(config(three_pools, {"blue": 80, "canary": 20}))
    result = run_load(sp.proxy_port, connections=8, total=3000)
    assert result.ok == 3000, result.summary()
    body = counted(sp, 3000)
    pools = body["pools"]
    n = sum(p["requests"] for p in pools.values())
    assert n == 3000 and "none" not in pools
    sigma = math.sqrt(0.8 * 0.2 / n)
    assert abs(pools["blue"]["share"] - 0.8) < 5 * sigma, pools
    assert abs(pools["canary"]["share"] - 0.2) < 5 * sigma, pools
    assert pools["green"]["share"] == 0 and pools["green"]["requests"] == 0
    assert math.isclose(pools["blue"]["share"] + pools["canary"]["share"], 1.0, abs_tol=1e-5)
    for name in ("blue", "canary"):
        p = pools[name]
        assert p["error_rate"] == 0
        assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] < 5000, p
    # the series holds the same requests, second by second
    status, _, series = call(sp, "GET", "/api/v1/stats/series?seconds=60")
    assert status == 200 and series["seconds"] == 60
    for name in ("blue", "canary"):
        assert sum(series["pools"][name]["requests"]) == pools[name]["requests"]
        assert len(series["pools"][name]["requests"]) == 60
        assert sum(series["pools"][name]["errors"]) == 0


def test_with_workers_the_stats_sum_every_process(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 50, "canary": 50}, workers=2))
    result = run_load(sp.proxy_port, connections=8, total=2000)
    assert result.ok == 2000, result.summary()
    pools = counted(sp, 2000, timeout=15)["pools"]
    assert pools["blue"]["requests"] + pools["canary"]["requests"] == 2000
    with SseClient(sp.admin_url) as stream:
        _, body, _ = stream.next("stats", timeout=3)
        assert list(body["pools"]) == ["blue", "green", "canary"]


def test_rps_follows_a_steady_load_and_a_young_process_divides_by_its_uptime(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    spawned = time.monotonic()
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    ready = time.monotonic()
    rate = 40.0
    load: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: load.update(result=run_load(sp.proxy_port, 2, duration=9, rate=rate))
    )
    thread.start()
    try:
        time.sleep(7.5)  # the 5 complete seconds before now lie inside the load
        during = stats(sp, 5)["pools"]["blue"]
        assert abs(during["rps"] - rate) <= 0.2 * rate, during
    finally:
        thread.join()
    assert load["result"].failed == 0, load["result"].summary()
    sent = load["result"].sent
    body = counted(sp, sent, window=300)
    blue = body["pools"]["blue"]
    assert blue["requests"] == sent
    # younger than the window: rps = requests / uptime, uptime between these two
    asked = time.monotonic()
    uptime = blue["requests"] / blue["rps"]
    assert asked - ready - 2.0 <= uptime <= asked - spawned + 0.5, (uptime, asked - spawned)


def test_error_rate_counts_5xx_answers_of_each_pool(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    for _ in range(20):
        assert proxy_get(sp, "/status/500", "canary") == 500
        assert proxy_get(sp, "/", "canary") == 200
    for _ in range(40):
        assert proxy_get(sp, "/", "blue") == 200
    pools = counted(sp, 80)["pools"]
    assert pools["canary"]["requests"] == 40 and pools["canary"]["error_rate"] == 0.5
    assert pools["blue"]["requests"] == 40 and pools["blue"]["error_rate"] == 0
    assert pools["canary"]["share"] == 0.5 and pools["blue"]["share"] == 0.5


def test_a_failing_backend_shows_in_the_error_rate(
    splitter_factory: Any, backend_factory: Any, three_pools: dict[str, Backend]
) -> None:
    failing = backend_factory("canary", env={"FAIL_EVERY": "1"})  # every GET / is a 500
    pools = {"blue": three_pools["blue"], "canary": failing}
    sp = splitter_factory(config(pools, {"blue": 50, "canary": 50}))
    result = run_load(sp.proxy_port, connections=4, total=400)
    assert result.failed == 0 and result.statuses[500] > 0, result.summary()
    body = counted(sp, 400)["pools"]
    assert body["canary"]["error_rate"] == 1.0 and body["blue"]["error_rate"] == 0
    assert body["canary"]["requests"] == result.statuses[500]


def test_requests_refused_before_a_pool_are_under_none_and_not_in_the_shares(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    for _ in range(5):
        raw = send_raw(
            sp.proxy_port,
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        )
        assert raw.startswith(b"HTTP/1.1 400"), raw[:100]
    for _ in range(20):
        assert proxy_get(sp) == 200
    pools = counted(sp, 25)["pools"]
    assert list(pools) == ["blue", "green", "canary", "none"]
    none = pools["none"]
    assert none["requests"] == 5 and none["error_rate"] == 0  # a 400 is not an error
    assert "share" not in none and "weight" not in none and "backends" not in none
    assert pools["blue"]["share"] == 1.0 and pools["blue"]["requests"] == 20


# --------------------------------------------------------------------------- /api/v1/stream


def test_the_stream_sends_stats_every_second(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 80, "canary": 20}))
    with SseClient(sp.admin_url) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        _, weights, _ = stream.next("weights", timeout=2)  # the weights in force, at once
        assert weights == {"route": "default", "weights": {"blue": 80, "green": 0, "canary": 20}}
        times = []
        for _ in range(5):
            _, body, at = stream.next("stats", timeout=3)
            times.append(at)
            assert body["window"] == 10 and list(body["pools"]) == ["blue", "green", "canary"]
            assert set(body["pools"]["blue"]) == set(stats(sp, 10)["pools"]["blue"])
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.6 < g < 1.4 for g in gaps), gaps
        _, series, _ = stream.next("series", timeout=3)
        assert series["seconds"] == 5 and set(series["pools"]) == {"blue", "green", "canary"}
    assert stream.raw.startswith(b"retry: ")


def test_the_stream_sends_weights_and_the_event_within_a_second_of_a_change(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 80, "canary": 20}))
    with SseClient(sp.admin_url) as stream:
        stream.next("stats", timeout=3)
        mark = stream.mark()
        sent = time.monotonic()
        status, _, _body = call(sp, "PUT", "/api/v1/weights", {"canary": 50, "blue": 50})
        assert status == 200
        _, message, at = stream.next("weights", timeout=2, after=mark)
        weights = message["weights"]
        assert message["route"] == "default" and at - sent < 1.0
        assert weights == {"blue": 50, "green": 0, "canary": 50}
        _, event, at = stream.next("event", timeout=2, after=mark)
        assert at - sent < 1.0
        assert event == call(sp, "GET", "/api/v1/events")[2]["events"][-1]
        assert event["what"] == "weights set" and event["source"] == "api"
        assert event["route"] == "default"
        assert event["new"] == weights

        mark = stream.mark()
        assert call(sp, "POST", "/api/v1/switch", {"pool": "green"})[0] == 200
        _, message, _ = stream.next("weights", timeout=2, after=mark)
        assert message["weights"] == {"blue": 0, "green": 100, "canary": 0}
        assert stream.next("event", timeout=2, after=mark)[1]["what"] == "switch to green"

        mark = stream.mark()
        assert call(sp, "POST", "/api/v1/reload")[0] == 200
        assert stream.next("event", timeout=2, after=mark)[1]["what"] == "config reloaded"


def test_the_stream_takes_only_the_kinds_asked_for_and_sends_heartbeats(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    status, _, body = call(sp, "GET", "/api/v1/stream?kinds=stats,bogus")
    assert status == 400 and "kinds" in body["error"]
    with SseClient(sp.admin_url, "/api/v1/stream?kinds=rollout") as stream:
        _, comment, _at = stream.next(":", timeout=13)  # a heartbeat after 10 s of silence
        assert comment == "keep-alive"
        assert [e[0] for e in stream.events] == [":"]  # no stats, no weights asked for


@pytest.mark.slow
def test_a_slow_stream_reader_is_dropped_and_memory_stays_flat(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    """Clients that stop reading (tiny receive buffers) while changes pour in: each is
    dropped once its queue is full; the process's memory does not grow with them."""
    sp = splitter_factory(config(three_pools, {"blue": 50, "canary": 50}))
    with SseClient(sp.admin_url) as healthy:
        healthy.next("stats", timeout=3)
        # warm up what every change allocates anyway, then measure
        for i in range(200):
            call(sp, "PUT", "/api/v1/weights", {"canary": 1 + i % 50})
        before = rss_kib(sp.pid)
        stalled = []
        for _ in range(4):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", sp.admin_port))
            sock.sendall(
                f"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{sp.admin_port}\r\n\r\n".encode()
            )
            stalled.append(sock)  # never read from again until the end
        sent = 0
        for i in range(3000):
            status, _, _ = call(sp, "PUT", "/api/v1/weights", {"canary": 1 + i % 50})
            assert status == 200
            sent += 1
        after = rss_kib(sp.pid)
        # each stalled client was cut off: reading what the kernel holds ends in EOF/reset
        for sock in stalled:
            sock.settimeout(1)
            got = 0
            deadline = time.monotonic() + 10  # stats every second: only a drop ends it
            try:
                while chunk := sock.recv(65536):
                    got += len(chunk)
                    if time.monotonic() > deadline:
                        raise AssertionError(f"a stalled client was not dropped ({got} bytes)")
            except (ConnectionResetError, TimeoutError):
                pass  # a reset; or nothing more: the connection was aborted
            finally:
                sock.close()
            assert got < 1024 * 1024, got
        assert after - before < 8 * 1024, (before, after)  # KiB
        # the healthy client kept up and got every change
        assert call(sp, "PUT", "/api/v1/weights", {"canary": 77})[0] == 200
        healthy.find("weights", lambda w: w["weights"]["canary"] == 77, timeout=10)
        assert len([e for e in healthy.events if e[0] == "event"]) >= sent
        assert not healthy.ended.is_set()
    assert sp.running


def test_stream_clients_are_limited(splitter_factory: Any, three_pools: dict[str, Backend]) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    request = f"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{sp.admin_port}\r\n\r\n"
    streams = []
    try:
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", sp.admin_port), timeout=5)
            streams.append(sock)
            sock.sendall(request.encode())
            assert sock.recv(12) == b"HTTP/1.1 200"
        status, _, body = call(sp, "GET", "/api/v1/stream")
        assert status == 503 and "too many" in body["error"]
        streams.pop().close()

        def one_more() -> bool:
            with SseClient(sp.admin_url) as stream:
                return stream.status == 200

        wait_until(one_more, message="a stream once one closed")
    finally:
        for sock in streams:
            sock.close()


def test_an_open_stream_does_not_hold_up_a_shutdown(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    with SseClient(sp.admin_url) as stream:
        stream.next("stats", timeout=3)
        started = time.monotonic()
        sp.send_signal(signal.SIGTERM)
        assert sp.wait(10) == 0
        assert time.monotonic() - started < 5
        assert stream.ended.wait(2)


# --------------------------------------------------------------------------- the page


STATIC = ["/", "/dashboard/main.js", "/dashboard/dashboard.css", "/dashboard/favicon.svg"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_page_and_its_files_are_served_with_security_headers(
    splitter_factory: Any, three_pools: dict[str, Backend], host: str
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    for path in STATIC:
        status, headers, _body = http_request(
            sp.admin_url + path, headers={"Host": f"{host}:{sp.admin_port}"}
        )
        assert status == 200, (path, status)
        csp = headers["content-security-policy"]
        for directive in ("default-src 'self'", "connect-src 'self'", "frame-ancestors 'none'",
                          "script-src 'self'"):  # fmt: skip
            assert directive in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert http_request(sp.admin_url + "/")[1]["content-type"].startswith("text/html")
    assert http_request(sp.admin_url + "/dashboard/main.js")[1]["content-type"].startswith(
        "text/javascript"
    )
    page = http_request(sp.admin_url + "/")[2].decode()
    assert "<script" in page and not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from another host
    for path in ("/dashboard/nope.js", "/dashboard/..%2flive.py", "/dashboard/"):
        assert http_request(sp.admin_url + path)[0] == 404, path


def test_the_page_is_refused_to_a_foreign_host_without_a_token(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    for path in [*STATIC, "/api/v1/stats", "/api/v1/stream"]:
        status, _, _ = http_request(sp.admin_url + path, headers={"Host": "evil.example"})
        assert status == 403, path


# --------------------------------------------------------------------------- sessions


def session_cookie(headers: Mapping[str, str]) -> str:
    cookie = headers["set-cookie"]
    match = re.match(r"splitter_admin=([^;]+)", cookie)
    assert match, cookie
    return match[1]


def test_without_a_token_no_session_is_needed(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    status, _, body = call(sp, "GET", "/api/v1/session")
    assert status == 200 and body == {"token_required": False, "session": False,
                                      "expires_at": None}  # fmt: skip
    status, headers, body = call(sp, "POST", "/api/v1/session", {"token": "x"})
    assert status == 400 and "set-cookie" not in headers


@pytest.fixture
def guarded(splitter_factory: Any, three_pools: dict[str, Backend]) -> SplitterProc:
    return splitter_factory(config(three_pools, {"blue": 80, "canary": 20}, admin={"token": TOKEN}))


def test_a_session_stands_for_the_token(guarded: SplitterProc) -> None:
    sp = guarded
    assert call(sp, "GET", "/api/v1/weights")[0] == 401
    assert call(sp, "GET", "/api/v1/stream")[0] == 401
    assert http_request(sp.admin_url + "/")[0] == 200  # the page itself needs no token

    status, headers, _ = call(sp, "POST", "/api/v1/session", {"token": TOKEN})
    assert status == 204
    cookie_line = headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie_line.split(";")[1:]}
    assert "httponly" in attrs and attrs["samesite"].lower() == "samesite=strict"
    assert attrs["path"] == "Path=/" and attrs["max-age"] == "Max-Age=43200"
    assert "secure" not in attrs  # the admin listener is plain http
    sid = session_cookie(headers)
    assert TOKEN not in sid and len(sid) >= 43
    cookie = {"Cookie": f"splitter_admin={sid}"}

    assert call(sp, "GET", "/api/v1/weights", headers=cookie)[0] == 200
    assert call(sp, "GET", "/api/v1/session", headers=cookie)[2]["session"] is True
    with SseClient(sp.admin_url, headers=cookie) as stream:
        assert stream.status == 200
        stream.next("stats", timeout=3)

    # a change with the cookie needs X-Requested-With: splitter
    status, _, body = call(sp, "PUT", "/api/v1/weights", {"canary": 30}, headers=cookie)
    assert status == 403 and "X-Requested-With" in body["error"]
    wrong = {**cookie, "X-Requested-With": "XMLHttpRequest"}
    assert call(sp, "PUT", "/api/v1/weights", {"canary": 30}, headers=wrong)[0] == 403
    assert call(sp, "GET", "/api/v1/weights", headers=cookie)[2]["canary"] == 20  # unchanged
    csrf = {**cookie, "X-Requested-With": "splitter"}
    status, _, body = call(sp, "PUT", "/api/v1/weights", {"canary": 30}, headers=csrf)
    assert status == 200 and body["canary"] == 30

    # a cross-origin change is refused whatever it carries
    foreign = {**csrf, "Origin": "http://evil.example"}
    assert call(sp, "PUT", "/api/v1/weights", {"canary": 40}, headers=foreign)[0] == 403
    assert call(sp, "POST", "/api/v1/session", {"token": TOKEN}, headers=foreign)[0] == 403
    own = {**csrf, "Origin": f"http://127.0.0.1:{sp.admin_port}",
           "Host": f"127.0.0.1:{sp.admin_port}"}  # fmt: skip
    assert call(sp, "PUT", "/api/v1/weights", {"canary": 40}, headers=own)[0] == 200

    # the bearer token still works, and needs no X-Requested-With
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert call(sp, "PUT", "/api/v1/weights", {"canary": 20}, headers=bearer)[0] == 200
    # a wrong bearer token is not rescued by a good cookie
    both = {**csrf, "Authorization": "Bearer nope"}
    assert call(sp, "GET", "/api/v1/weights", headers=both)[0] == 401

    # signing out ends the session, and a stream opened with it
    stream = SseClient(sp.admin_url, headers=cookie)
    stream.next("stats", timeout=3)
    status, headers, _ = call(sp, "DELETE", "/api/v1/session", headers=csrf)
    assert status == 204 and "splitter_admin=" in headers["set-cookie"]
    assert "max-age=0" in headers["set-cookie"].lower()
    assert call(sp, "GET", "/api/v1/weights", headers=cookie)[0] == 401
    assert stream.ended.wait(3), "the stream of an ended session went on"
    stream.close()


def test_a_wrong_token_is_401_and_guessing_is_limited(guarded: SplitterProc) -> None:
    sp = guarded
    for guess in ("wrong", "", TOKEN + "x", TOKEN[:-1]):
        status, headers, body = call(sp, "POST", "/api/v1/session", {"token": guess})
        assert status == 401 and "set-cookie" not in headers, body
    for bad in ({}, {"token": 1}, {"token": TOKEN, "more": 1}):
        assert call(sp, "POST", "/api/v1/session", bad)[0] == 400  # not a guess
    for guess in ("fifth", "6", "7", "8", "9", "tenth"):
        assert call(sp, "POST", "/api/v1/session", {"token": guess})[0] == 401
    status, headers, body = call(sp, "POST", "/api/v1/session", {"token": TOKEN})
    assert status == 429 and int(headers["retry-after"]) > 0, body  # even the right one
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert call(sp, "GET", "/api/v1/weights", headers=bearer)[0] == 429  # per address


def test_a_made_up_or_ended_cookie_is_401(guarded: SplitterProc) -> None:
    sp = guarded
    for value in ("x", TOKEN, "A" * 43):
        headers = {"Cookie": f"splitter_admin={value}", "X-Requested-With": "splitter"}
        assert call(sp, "GET", "/api/v1/weights", headers=headers)[0] == 401
        assert call(sp, "PUT", "/api/v1/weights", {"blue": 1}, headers=headers)[0] == 401
    # signing out without a session changes nothing and needs nothing
    assert call(sp, "DELETE", "/api/v1/session")[0] == 204


def test_the_openapi_document_describes_the_new_endpoints(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    sp = splitter_factory(config(three_pools, {"blue": 1}))
    doc = call(sp, "GET", "/api/v1/openapi.json")[2]
    for path, methods in {
        "/api/v1/stats": {"get"},
        "/api/v1/stats/series": {"get"},
        "/api/v1/stream": {"get"},
        "/api/v1/session": {"get", "post", "delete"},
    }.items():
        assert methods <= set(doc["paths"][path]), path
    window = doc["paths"]["/api/v1/stats"]["get"]["parameters"][0]
    assert window["schema"] == {"type": "integer", "minimum": 1, "maximum": 300}

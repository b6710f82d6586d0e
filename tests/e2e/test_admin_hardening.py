"""End to end: the hardening of the admin listener (CONTRACT.md section 5), against a real
`splitter run` process.

- the dashboard's session cookie never reaches a backend;
- wrong tokens are limited per client address, and never lock out another address;
- the admin listener's own limits (head timeout, connection cap) never take the proxy down;
- durations are at most 30 days everywhere;
- state that does not validate is set aside: the process starts and every call answers.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from tests.rawbackend import RawBackend, Script
from tests.rawhttp import parse_responses, send_raw
from tests.redisserver import RedisServer, need
from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    http_request,
    pools_config,
    start_splitter,
    wait_until,
)

TOKEN = "s3cret-of-the-admin-api"
START = {"blue": 90, "green": 0, "canary": 10}


def call(
    sp: SplitterProc,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    source: str = LOCALHOST,
) -> tuple[int, dict[str, str], Any]:
    """One admin request on a fresh connection from the loopback address `source`:
    (status, lower-cased headers, parsed JSON or the raw bytes)."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(
        LOCALHOST, sp.admin_port, timeout=5, source_address=(source, 0)
    )
    try:
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        content = response.read()
        status = response.status
        resp_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    parsed: Any = content
    if resp_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(content)
    return status, resp_headers, parsed


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, three_pools: dict[str, Backend]
) -> Iterator[SplitterProc]:
    """One splitter without a token; tests using it must not change anything."""
    proc = start_splitter(pools_config(three_pools, START), tmp_path_factory.mktemp("shared"))
    yield proc
    proc.stop()


# --------------------------------------------------------------------------- the cookie


def echo_cookies(head: bytes) -> Script:
    """A backend's answer: the Cookie header lines it received, one per line, as they came."""
    lines = [ln for ln in head.split(b"\r\n")[1:] if ln.lower().startswith(b"cookie:")]
    body = b"\n".join(lines)
    return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)]


def test_the_dashboard_session_cookie_never_reaches_a_backend(
    splitter_factory: Any, raw_backend: Callable[..., RawBackend]
) -> None:
    """With the dashboard and the app on one host (cookies are scoped by host, not port),
    a browser sends `splitter_admin` to the app too: the proxy drops it, and only it."""
    backend = raw_backend(echo_cookies)
    sp = splitter_factory(pools_config({"blue": backend}, {"blue": 100}, admin={"token": TOKEN}))
    status, headers, _ = call(sp, "POST", "/api/v1/session", {"token": TOKEN})
    assert status == 204
    session = headers["set-cookie"].split(";", 1)[0]
    assert session.startswith("splitter_admin=")

    cases = [
        ([f"theme=dark; {session}; cart=a%20b"], ["Cookie: theme=dark; cart=a%20b"]),
        ([session], []),
        ([f"{session};id=7", "lang=fr"], ["Cookie: id=7", "Cookie: lang=fr"]),
        (["xsplitter_admin=1; a=splitter_admin"], ["Cookie: xsplitter_admin=1; a=splitter_admin"]),
    ]
    for sent, received in cases:
        head = "".join(f"Cookie: {value}\r\n" for value in sent)
        request = f"GET / HTTP/1.1\r\nHost: app.test\r\n{head}Connection: close\r\n\r\n"
        [response] = parse_responses(send_raw(sp.proxy_port, request.encode()))
        assert response.status == 200, response
        echoed = response.body.decode().split("\n") if response.body else []
        assert echoed == received, sent
    for head in backend.heads():
        assert b"splitter_admin=" not in head.replace(b"xsplitter_admin", b""), head
    # and the session itself still works on the admin listener
    cookie = {"Cookie": session, "X-Requested-With": "splitter"}
    assert call(sp, "GET", "/api/v1/weights", headers=cookie)[0] == 200


# --------------------------------------------------------------------------- wrong tokens


def guess(sp: SplitterProc, how: str, source: str, token: str = "wrong-but-long-enough") -> Any:
    """One token tried from `source`: in a bearer header, or in a dashboard sign-in."""
    if how == "bearer":
        return call(sp, "GET", "/api/v1/weights", token=token, source=source)
    return call(sp, "POST", "/api/v1/session", {"token": token}, source=source)


def test_ten_wrong_tokens_lock_out_that_address_and_no_other(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    """The bearer header had no limit (3,174 guesses in 3 s); 35 wrong sign-ins from 7
    addresses locked everyone out, the right token included. Now: 10 wrong tokens in a
    minute, in either place, get that address (the connection's peer) 429 for a minute,
    and every other address goes on as before."""
    sp = splitter_factory(pools_config(three_pools, START, admin={"token": TOKEN}))
    # 35 wrong sign-ins from 7 addresses, 5 each: nobody is locked out
    for i in range(1, 8):
        for _ in range(5):
            assert guess(sp, "session", f"127.0.1.{i}")[0] == 401
    assert guess(sp, "session", "127.0.0.1", TOKEN)[0] == 204
    assert guess(sp, "bearer", "127.0.1.1", TOKEN)[0] == 200

    attackers = {"127.0.0.2": ["bearer"] * 10, "127.0.0.3": ["session"] * 10,
                 "127.0.0.4": ["bearer", "session"] * 5}  # fmt: skip
    for source, hows in attackers.items():
        for how in hows:
            status, _, body = guess(sp, how, source)
            assert status == 401, (source, how, body)
        for how in ("bearer", "session"):  # the 11th try: 429, even with the right token
            status, headers, body = guess(sp, how, source, TOKEN)
            assert status == 429, (source, how, body)
            assert 55 <= int(headers["retry-after"]) <= 60, headers
            assert "set-cookie" not in headers and isinstance(body["error"], str)
        # with no token at all, too: the address is refused, not told what is missing
        assert call(sp, "GET", "/api/v1/weights", source=source)[0] == 429
        # another address is never affected, the right token works there
        assert guess(sp, "bearer", "127.0.0.1", TOKEN)[0] == 200
        assert guess(sp, "bearer", "127.0.0.5")[0] == 401
    sp.wait_for_stderr(r"too many wrong tokens from 127\.0\.0\.2")
    # probes and metrics need no token, and are not held up
    assert call(sp, "GET", "/healthz", source="127.0.0.2")[0] == 200
    assert call(sp, "GET", "/metrics", source="127.0.0.2")[0] == 200
    # a session made before the lockout keeps working from that address
    status, headers, _ = guess(sp, "session", "127.0.0.6", TOKEN)
    assert status == 204
    cookie = {"Cookie": headers["set-cookie"].split(";", 1)[0]}
    for _ in range(10):
        guess(sp, "bearer", "127.0.0.6")
    assert guess(sp, "bearer", "127.0.0.6", TOKEN)[0] == 429
    assert call(sp, "GET", "/api/v1/weights", headers=cookie, source="127.0.0.6")[0] == 200


# --------------------------------------------------------------------------- listener limits


def admin_conn(sp: SplitterProc, timeout: float = 15) -> socket.socket:
    return socket.create_connection((LOCALHOST, sp.admin_port), timeout=timeout)


def closed_within(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Read until the peer closes: (seconds it took, what came); AssertionError past limit."""
    start = time.monotonic()
    data = b""
    sock.settimeout(0.5)
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError(f"still open after {limit} s (got {data!r})")
    return time.monotonic() - start, data


@pytest.mark.slow
def test_a_request_head_must_arrive_within_10_s(shared: SplitterProc) -> None:
    """A half-open admin connection (a partial head, then nothing) stayed open for
    ever: aiohttp has no head deadline. Now it gets 408 and is closed at 10 s; one
    that sends nothing is closed silently; a kept-alive one idles up to 60 s."""
    partial, silent, kept = admin_conn(shared), admin_conn(shared), admin_conn(shared)
    opened = time.monotonic()
    partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    kept.settimeout(5)
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    took, data = closed_within(partial, 14)
    assert 9 <= time.monotonic() - opened <= 12.5, took
    [response] = parse_responses(data)
    assert response.status == 408 and json.loads(response.body)["error"], data
    took, data = closed_within(silent, 3)
    assert data == b"" and time.monotonic() - opened <= 12.5
    # the kept-alive connection is idle, not in a head: still open, and served
    time.sleep(max(0.0, opened + 12 - time.monotonic()))
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    _, data = closed_within(kept, 5)
    assert data.startswith(b"HTTP/1.1 200"), data
    # a later head on a kept-alive connection has 10 s from its first byte
    again = admin_conn(shared)
    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    again.settimeout(5)
    assert again.recv(65536).startswith(b"HTTP/1.1 200")
    time.sleep(3)
    started = time.monotonic()
    again.sendall(b"GET /healthz HTTP/1.1\r\n")
    _, data = closed_within(again, 14)
    assert 9 <= time.monotonic() - started <= 12.5
    assert parse_responses(data)[0].status == 408
    for sock in (partial, silent, kept, again):
        sock.close()


def test_a_full_admin_listener_never_takes_descriptors_from_the_proxy(
    splitter_factory: Any, three_pools: dict[str, Backend]
) -> None:
    """Under a low descriptor limit (320), 400 half-open admin connections took every
    descriptor and the proxy failed. Now the admin listener takes at most 256 and the
    rest wait in the backlog; the proxy serves throughout, and once they close the
    admin API answers again."""
    sp = splitter_factory(pools_config({"blue": three_pools["blue"]}, {"blue": 100}))
    sp.wait_readyz()
    resource.prlimit(sp.pid, resource.RLIMIT_NOFILE, (320, 320))
    held = []
    try:
        for _ in range(400):  # more than the process may open
            sock = admin_conn(sp, timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
            held.append(sock)
        for _ in range(20):  # the proxy serves while the admin listener is full
            status, _, body = http_request(sp.proxy_url + "/", timeout=3)
            assert status == 200, body
        sp.wait_for_stderr("admin listener: 256 connections open", timeout=5)
        # a new admin connection waits: it is not accepted while 256 are open
        with pytest.raises(TimeoutError):
            http_request(sp.admin_url + "/healthz", timeout=1)
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: http_request(sp.admin_url + "/healthz", timeout=2)[0] == 200, 10)
    assert http_request(sp.proxy_url + "/")[0] == 200
    assert "Traceback" not in sp.stderr_text()


# --------------------------------------------------------------------------- durations


LONG = "9" * 400  # a float overflow: an infinite duration before it was refused


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pool": "canary", "steps": [{"weight": 5, "hold": LONG}]}, "steps[0].hold"),
        ({"pool": "canary", "steps": [{"weight": 5, "max": LONG + "h"}]}, "steps[0].max"),
        ({"pool": "canary", "steps": [{"weight": 5, "max": "721h"}]}, "steps[0].max"),
        ({"pool": "canary", "analysis": {"warmup": LONG}}, "analysis.warmup"),
        ({"pool": "canary", "analysis": {"latency_floor": "43201m"}}, "analysis.latency_floor"),
        ({"pool": "green", "strategy": "bluegreen", "preview": {"hold": LONG}}, "preview.hold"),
        ({"pool": "green", "strategy": "bluegreen", "preview": {"max": LONG}}, "preview.max"),
        ({"pool": "green", "strategy": "bluegreen", "keep": LONG + "s"}, "keep"),
        ({"pool": "canary", "steps": [{"weight": 5, "hold": "-1s"}]}, "steps[0].hold"),
    ],
)
def test_a_rollout_with_a_duration_over_30_days_is_a_400(
    shared: SplitterProc, body: dict[str, Any], field: str
) -> None:
    sp = shared
    status, _, reply = call(sp, "POST", "/api/v1/rollout", body)
    assert status == 400, reply
    assert reply["error"].startswith(f"{field}: must be"), reply
    assert call(sp, "GET", "/api/v1/rollout")[0] == 404  # nothing was started
    assert call(sp, "GET", "/api/v1/weights")[2] == START


# --------------------------------------------------------------------------- saved state

ROLLOUT = {"pool": "canary", "steps": [{"weight": 20, "hold": "1h", "max": "2h"}, 50, 100]}
IN_FORCE = {"blue": 80, "green": 0, "canary": 20}  # the rollout's first step

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    """A change of the saved rollout: `path` (keys and indexes, dotted) set to `value`."""

    def change(rollout: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = rollout
        for key in parents:
            node = node[key]
        node[last] = value

    return change


CRAFTED = [
    pytest.param(_set("plan.steps.0.0", 1e308), id="step-weight-1e308"),
    pytest.param(_set("plan.steps.0.1", 1e308), id="hold-1e308"),
    pytest.param(_set("plan.analysis.5", 1e300), id="warmup-1e300"),
    pytest.param(_set("plan.steps", "fast"), id="steps-not-a-list"),
    pytest.param(_set("plan.analysis", {"confidence": 0.9}), id="analysis-wrong-type"),
    pytest.param(_set("object.status", "exploded"), id="unknown-status"),
    pytest.param(_set("object.step", 7), id="step-out-of-range"),
    pytest.param(_set("started_at", 1e308), id="started-at-1e308"),
    pytest.param(_set("start_weights", {"blue": -5, "canary": 0}), id="negative-weight"),
    pytest.param(_set("candidate", [1, 2, "3"]), id="counts-wrong-type"),
    pytest.param(lambda r: r.pop("plan"), id="no-plan"),
]


@pytest.fixture(scope="module")
def saved_rollout(
    tmp_path_factory: pytest.TempPathFactory, three_pools: dict[str, Backend]
) -> dict[str, Any]:
    """A state file holding an active rollout at its first step (canary 20)."""
    workdir = tmp_path_factory.mktemp("saved")
    proc = start_splitter(pools_config(three_pools, START), workdir)
    try:
        status, _, body = call(proc, "POST", "/api/v1/rollout", ROLLOUT)
        assert status == 201, body
        assert call(proc, "GET", "/api/v1/weights")[2] == IN_FORCE
    finally:
        assert proc.stop() == 0
    state = json.loads((workdir / "splitter-state.json").read_text())
    assert state["rollout"]["object"]["status"] == "progressing"
    return dict(state)


def assert_set_aside(sp: SplitterProc, expected_event: str) -> None:
    """The process serves, every call answers, the rollout ended cancelled with the
    weights in force kept, and an event says so."""
    status, _, rollout = call(sp, "GET", "/api/v1/rollout")
    assert status == 200, rollout
    assert rollout["status"] == "cancelled", rollout
    assert call(sp, "GET", "/api/v1/weights")[2] == IN_FORCE
    assert call(sp, "GET", "/api/v1/rollouts")[0] == 200
    events = call(sp, "GET", "/api/v1/events")[2]["events"]
    assert any(expected_event in e["what"] for e in events), events
    for action in ("pause", "resume", "promote", "abort"):
        status, _, body = call(sp, "POST", f"/api/v1/rollout/{action}")
        assert status == 409, (action, body)  # none is active
    assert http_request(sp.proxy_url + "/")[0] == 200
    assert call(sp, "GET", "/metrics")[0] == 200
    assert call(sp, "GET", "/api/v1/stats")[0] == 200


@pytest.mark.parametrize("change", CRAFTED)
def test_a_saved_rollout_that_does_not_validate_is_set_aside(
    splitter_factory: Any,
    three_pools: dict[str, Backend],
    tmp_path: Any,
    saved_rollout: dict[str, Any],
    change: Change,
) -> None:
    """A state file whose rollout does not validate stopped the process at start with a
    traceback, or made every rollout call answer 500. Now it is set aside: a log line, an
    event, the rollout ended cancelled, the weights in force kept; and the fixed state
    is written, so the next start has nothing to set aside."""
    state = json.loads(json.dumps(saved_rollout))
    change(state["rollout"])
    (tmp_path / "splitter-state.json").write_text(json.dumps(state))
    config = pools_config(three_pools, START)
    sp = splitter_factory(config)
    assert_set_aside(sp, "rollout set aside: not valid in state file")
    sp.wait_for_stderr(r"the saved rollout is not valid \(.+\); set aside")
    assert "Traceback" not in sp.stderr_text()
    # a new rollout can start where the old one was set aside
    status, _, body = call(sp, "POST", "/api/v1/rollout", {"pool": "canary", "steps": [30, 100]})
    assert status == 201, body
    assert sp.stop() == 0
    again = splitter_factory(sp.config_path)
    assert call(again, "GET", "/api/v1/rollout")[2]["pool"] == "canary"
    assert "set aside" not in again.stderr_text()


def test_a_saved_rollout_of_a_pool_not_in_the_config_is_cancelled(
    splitter_factory: Any,
    three_pools: dict[str, Backend],
    tmp_path: Any,
    saved_rollout: dict[str, Any],
) -> None:
    state = json.loads(json.dumps(saved_rollout))
    state["rollout"]["plan"]["pool"] = state["rollout"]["object"]["pool"] = "purple"
    (tmp_path / "splitter-state.json").write_text(json.dumps(state))
    sp = splitter_factory(pools_config(three_pools, START))
    assert_set_aside(sp, "pool purple is not in the config")


def craft_store_doc(server: RedisServer, change: Change) -> None:
    """Change the rollout of the store's document as a faulty or hostile writer would:
    a new revision, announced on the channel like any write."""
    client = server.client()
    raw = client.hget(f"{PREFIX}:doc", "doc")
    assert raw is not None
    doc = json.loads(raw)
    change(doc["rollout"])
    revision = int(client.hget(f"{PREFIX}:doc", "rev") or 0) + 1
    client.hset(f"{PREFIX}:doc", mapping={"rev": str(revision), "doc": json.dumps(doc)})
    client.publish(f"{PREFIX}:changed", str(revision))


def store_rollout(server: RedisServer) -> dict[str, Any]:
    raw = server.client().hget(f"{PREFIX}:doc", "doc")
    assert raw is not None
    return dict(json.loads(raw)["rollout"])


PREFIX = "hardening"


def test_a_store_document_that_does_not_validate_is_set_aside(
    splitter_factory: Any, three_pools: dict[str, Backend], tmp_path: Any
) -> None:
    """A rollout in the shared store with a step weight of 1e308 made every rollout call
    answer 500 on every replica. Now the replica that reads it sets it aside (a log
    line, an event), the rollout ends cancelled with the weights in force kept, and the
    fixed document goes back to the store; a replica starting on such a document
    starts, serves and answers."""
    need("redis-server")
    server = RedisServer(tmp_path / "redis")
    try:
        store = {"url": server.url, "prefix": PREFIX}
        sp = splitter_factory(pools_config(three_pools, START, store=store))
        status, _, body = call(sp, "POST", "/api/v1/rollout", ROLLOUT)
        assert status == 201, body
        # a document written while the replica runs
        craft_store_doc(server, _set("plan.steps.0.0", 1e308))
        wait_until(lambda: call(sp, "GET", "/api/v1/rollout")[2]["status"] == "cancelled", 5)
        assert_set_aside(sp, "rollout set aside: not valid in the shared store")
        wait_until(lambda: store_rollout(server)["object"]["status"] == "cancelled", 5)
        assert "Traceback" not in sp.stderr_text()
        assert sp.stop() == 0

        # a document found at start
        status, _, body = call_after_start(splitter_factory, sp, server)
        assert status == 200 and body["status"] == "cancelled", body
    finally:
        server.kill()


def call_after_start(
    splitter_factory: Any, earlier: SplitterProc, server: RedisServer
) -> tuple[int, dict[str, str], Any]:
    """Put a new active rollout with a wrong type in the store, start a replica on it."""
    state = store_rollout(server)
    state["object"]["status"] = "progressing"
    state["object"]["id"] = "crafted"

    def replace(rollout: dict[str, Any]) -> None:
        rollout.clear()
        rollout.update(state)
        rollout["plan"]["steps"] = [[20, "1h", "2h"]]  # durations as text: not valid

    craft_store_doc(server, replace)
    sp = splitter_factory(earlier.config_path)
    sp.wait_for_stderr(r"the shared store: the saved rollout is not valid")
    status, headers, body = call(sp, "GET", "/api/v1/rollout")
    assert body["id"] == "crafted", body
    assert call(sp, "GET", "/api/v1/weights")[2] == IN_FORCE
    events = call(sp, "GET", "/api/v1/events")[2]["events"]
    assert any("rollout set aside" in e["what"] for e in events), events
    return status, headers, body

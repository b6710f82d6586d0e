"""End-to-end HTTP/1.1 proxying (CONTRACT.md section 4): framing, headers, streaming,
SSE, WebSocket and pass-through of backend answers, against a real splitter process in
front of real backends (gunicorn/Flask and aiohttp).

Raw sockets (tests.rawhttp) or http.client are used where the exact bytes matter.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosedOK

from tests.rawhttp import RawConn, Response, parse_responses, send_raw
from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    _start_backend,
    pattern_chunk,
    pools_config,
    stream_sha256,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def sp(three_pools: dict[str, Backend], splitter_factory: Any) -> SplitterProc:
    """A splitter with one pool (blue, weight 100) in front of the session's Flask backend."""
    proc: SplitterProc = splitter_factory(
        pools_config({"blue": three_pools["blue"]}, {"blue": 100})
    )
    proc.wait_readyz()
    return proc


def _conn(sp: SplitterProc, timeout: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(LOCALHOST, sp.proxy_port, timeout=timeout)


def _request(
    sp: SplitterProc,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    encode_chunked: bool = False,
    timeout: float = 10,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = _conn(sp, timeout)
    try:
        conn.request(
            method, target, body=body, headers=headers or {}, encode_chunked=encode_chunked
        )
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


def _echo_json(resp: Response) -> dict[str, Any]:
    assert resp.status == 200, (resp.status, resp.body[:500])
    data: dict[str, Any] = json.loads(resp.body)
    return data


def _backend_headers(echo: dict[str, Any]) -> dict[str, str]:
    """The /echo headers as a dict with lower-case names (gunicorn joins repeats with ',')."""
    out: dict[str, str] = {}
    for name, value in echo["headers"]:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def _raw_get(port: int, target: str, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: test.local\r\n{extra}\r\n".encode("latin-1")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; `peak` in KiB."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(_rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max(self.samples)


# --------------------------------------------------------------------------- request target


@pytest.mark.parametrize(
    "target",
    [
        "/echo/a%2Fb%20c?x=%2F&y=1+2",
        "/echo/%7E~%41%2f%25?a=%2f%2F&b=&c=%3D%26",
        "/echo/./x/../y;p=1?q=a%20b+c",
        "/echo/%2e%2E/%00?q=%zz&r=%C3%A9",
    ],
)
def test_request_target_reaches_backend_byte_for_byte(sp: SplitterProc, target: str) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, target))
        echo = _echo_json(c.read_response())
    assert echo["raw_uri"] == target
    assert echo["method"] == "GET"


def test_request_target_byte_for_byte_via_http_client(sp: SplitterProc) -> None:
    target = "/echo/a%2Fb%20c?x=%2F&y=1+2"
    status, _, body = _request(sp, "GET", target)
    assert status == 200
    assert json.loads(body)["raw_uri"] == target


# --------------------------------------------------------------------------- methods and bodies


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_method_and_body_reach_backend(sp: SplitterProc, method: str) -> None:
    body = (method.encode() + bytes(range(256))) * 300  # ~77 KB
    status, headers, data = _request(sp, method, "/echo/m", body=body)
    assert status == 200, data[:300]
    echo = json.loads(data)
    assert echo["method"] == method
    assert echo["raw_uri"] == "/echo/m"
    assert echo["body_len"] == len(body)
    assert echo["body_sha256"] == _sha(body)
    assert headers["X-Backend"] == "blue"


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_method_without_body_reaches_backend_with_empty_body(sp: SplitterProc, method: str) -> None:
    status, _, data = _request(sp, method, "/echo")
    assert status == 200
    echo = json.loads(data)
    assert echo["method"] == method
    assert echo["body_len"] == 0


# --------------------------------------------------------------------------- chunked


def test_chunked_request_body_from_generator_arrives_exactly(sp: SplitterProc) -> None:
    pieces = [
        b"a",
        b"",
        b"hello world\r\n0\r\n\r\n",
        bytes(range(256)) * 1000,
        b"z" * 70_000,
        b"end",
    ]
    expected = b"".join(pieces)

    def gen() -> Iterator[bytes]:
        yield from (p for p in pieces if p)  # http.client would end the body at an empty piece

    status, _, data = _request(
        sp, "POST", "/echo/chunked", body=gen(), headers={"Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )  # fmt: skip
    assert status == 200, data[:300]
    echo = json.loads(data)
    assert echo["body_len"] == len(expected)
    assert echo["body_sha256"] == _sha(expected)


def test_raw_chunked_request_body_arrives_exactly(sp: SplitterProc) -> None:
    parts = [b"0123456789", b"\r\n\r\n", b"x" * 4096, b"\x00\xff" * 10]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    wire += b"5;ext=1\r\nABCDE\r\n0\r\n\r\n"
    expected = b"".join(parts) + b"ABCDE"
    head = (
        b"POST /echo/raw-chunked HTTP/1.1\r\nHost: test.local\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    with RawConn(sp.proxy_port) as c:
        c.send(head + wire)
        echo = _echo_json(c.read_response())
        assert echo["body_len"] == len(expected)
        assert echo["body_sha256"] == _sha(expected)
        # the connection is still good for a next request
        c.send(_raw_get(sp.proxy_port, "/echo/next"))
        assert _echo_json(c.read_response())["raw_uri"] == "/echo/next"


def test_chunked_response_arrives_complete_and_chunked(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, "/stream?n=20&size=3000"))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.chunked, resp.headers
        assert resp.complete
        assert resp.header("Content-Length") is None
        assert resp.body == pattern_chunk(3000) * 20
        # keep-alive still works after the last chunk
        c.send(_raw_get(sp.proxy_port, "/echo/after-chunked"))
        assert _echo_json(c.read_response())["raw_uri"] == "/echo/after-chunked"


def test_content_length_response_keeps_its_length(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, "/stream?n=7&size=5000&cl=1"))
        resp = c.read_response()
        assert resp.status == 200
        assert not resp.chunked
        assert resp.header("Transfer-Encoding") is None
        assert resp.header("Content-Length") == str(7 * 5000)
        assert resp.body == pattern_chunk(5000) * 7
        c.send(_raw_get(sp.proxy_port, "/echo/after-cl"))
        assert _echo_json(c.read_response())["raw_uri"] == "/echo/after-cl"


# --------------------------------------------------------------------------- bodiless answers


def test_head_gets_get_headers_without_body_and_connection_stays_usable(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, "/"))
        get = c.read_response()
        assert get.status == 200 and get.body == b"blue"
        c.send(_raw_get(sp.proxy_port, "/", method="HEAD"))
        head = c.read_response(head=True)
        assert head.status == 200
        assert head.header("Content-Length") == get.header("Content-Length") == "4"
        assert head.header("Content-Type") == get.header("Content-Type")
        # nothing after the HEAD response's head: the next response starts right away
        c.send(_raw_get(sp.proxy_port, "/echo/after-head"))
        nxt = c.read_response()
        assert nxt.status == 200, (nxt.status, nxt.body[:200])
        assert json.loads(nxt.body)["raw_uri"] == "/echo/after-head"
        assert c.buffer == b""


def test_head_of_large_content_length_response_sends_no_body(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, "/stream?n=4&size=65536&cl=1", method="HEAD"))
        head = c.read_response(head=True)
        assert head.status == 200
        assert head.header("Content-Length") == str(4 * 65536)
        assert not c.closed_by_peer(timeout=0.3)
        assert c.buffer == b"", c.buffer[:100]
        c.send(_raw_get(sp.proxy_port, "/echo/after-big-head"))
        assert _echo_json(c.read_response())["raw_uri"] == "/echo/after-big-head"


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status_has_no_body_and_connection_is_reusable(
    sp: SplitterProc, code: int
) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, f"/status/{code}"))
        resp = c.read_response()
        assert resp.status == code
        assert resp.body == b""
        assert resp.header("Transfer-Encoding") is None
        assert not c.closed_by_peer(timeout=0.3)
        assert c.buffer == b"", c.buffer[:100]
        c.send(_raw_get(sp.proxy_port, f"/echo/after-{code}"))
        assert _echo_json(c.read_response())["raw_uri"] == f"/echo/after-{code}"


# --------------------------------------------------------------------------- Expect: 100-continue


def test_expect_100_continue(sp: SplitterProc) -> None:
    body = bytes(range(256)) * 400
    head = (
        b"POST /upload HTTP/1.1\r\nHost: test.local\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with RawConn(sp.proxy_port) as c:
        c.send(head)
        interim = c.read_response(timeout=5)
        assert interim.status == 100, (interim.status, interim.headers)
        assert interim.version == "HTTP/1.1"
        c.send(body)
        final = c.read_response(timeout=10)
        assert final.status == 200, (final.status, final.body[:300])
        got = json.loads(final.body)
        assert got == {"bytes": len(body), "sha256": _sha(body)}
        # exactly one interim response
        c.send(_raw_get(sp.proxy_port, "/echo/after-expect"))
        assert _echo_json(c.read_response())["raw_uri"] == "/echo/after-expect"


# --------------------------------------------------------------------------- pipelining


def test_pipelined_requests_answered_in_order(sp: SplitterProc) -> None:
    post_body = b"pipelined body " * 1000
    data = (
        b"GET /request-id HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-one\r\n\r\n"
        b"POST /echo/pipe HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-two\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        b"GET /request-id HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-three\r\n\r\n"
    ) % (len(post_body), post_body)
    with RawConn(sp.proxy_port) as c:
        c.send(data)
        r1 = c.read_response(timeout=10)
        r2 = c.read_response(timeout=10)
        r3 = c.read_response(timeout=10)
        assert [r1.status, r2.status, r3.status] == [200, 200, 200]
        assert json.loads(r1.body) == {"request_id": "pipe-one"}
        echo = json.loads(r2.body)
        assert echo["method"] == "POST" and echo["raw_uri"] == "/echo/pipe"
        assert echo["body_sha256"] == _sha(post_body)
        assert json.loads(r3.body) == {"request_id": "pipe-three"}
        assert r1.header("X-Request-Id") == "pipe-one"
        assert r2.header("X-Request-Id") == "pipe-two"
        assert r3.header("X-Request-Id") == "pipe-three"
        assert not c.closed_by_peer(timeout=0.3)
        assert c.buffer == b""


# --------------------------------------------------------------------------- headers


def test_hop_by_hop_headers_are_not_forwarded(sp: SplitterProc) -> None:
    req = (
        b"GET /echo/hop HTTP/1.1\r\n"
        b"Host: app.example:8080\r\n"
        b"Connection: X-Custom, x-other-hop\r\n"
        b"X-Custom: secret\r\n"
        b"X-Other-Hop: also-secret\r\n"
        b"Keep-Alive: timeout=5, max=100\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
        b"Upgrade: websocket\r\n"
        b"X-Keep-Me: visible\r\n"
        b"X-Another: 1\r\n"
        b"Authorization: Bearer end-to-end\r\n"
        b"\r\n"
    )
    with RawConn(sp.proxy_port) as c:
        c.send(req)
        resp = c.read_response()
    echo = _echo_json(resp)
    got = _backend_headers(echo)
    for name in ("x-custom", "x-other-hop", "keep-alive", "te", "trailer",
                 "proxy-authorization", "upgrade", "transfer-encoding"):  # fmt: skip
        assert name not in got, (name, got)
    connection = got.get("connection", "").lower()
    assert "x-custom" not in connection and "x-other-hop" not in connection, connection
    assert "upgrade" not in connection, connection
    assert got["x-keep-me"] == "visible"
    assert got["x-another"] == "1"
    assert got["authorization"] == "Bearer end-to-end"
    assert got["host"] == "app.example:8080"


@pytest.fixture
def hop_backend() -> Iterator[Backend]:
    """tests.backends.http_extra (aiohttp): /hop answers with hop-by-hop response headers."""
    backend = _start_backend(
        "blue",
        "hop",
        lambda port: [sys.executable, "-m", "tests.backends.http_extra", "--port", str(port)],
        {},
    )
    try:
        yield backend
    finally:
        backend.stop()


def test_hop_by_hop_response_headers_are_not_forwarded_to_client(
    hop_backend: Backend, splitter_factory: Any
) -> None:
    proc = splitter_factory(pools_config({"blue": hop_backend}, {"blue": 100}))
    proc.wait_readyz()
    with RawConn(proc.proxy_port) as c:
        c.send(_raw_get(proc.proxy_port, "/hop"))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == b"hop"
        for name in ("X-Hop-Secret", "Keep-Alive", "Proxy-Authenticate", "Trailer", "Upgrade"):
            assert resp.header(name) is None, (name, resp.headers)
        for value in resp.header_all("Connection"):
            assert "x-hop-secret" not in value.lower(), resp.headers
        assert resp.header("X-End-To-End") == "kept"
        assert resp.header("Cache-Control") == "no-store"
        # the backend's Connection header named no "close": the client connection stays usable
        c.send(_raw_get(proc.proxy_port, "/hop"))
        assert c.read_response().body == b"hop"


def test_forwarded_headers_appended_and_replaced(sp: SplitterProc) -> None:
    req = (
        b"GET /echo/fwd HTTP/1.1\r\n"
        b"Host: app.example:8080\r\n"
        b"X-Forwarded-For: 1.2.3.4\r\n"
        b"X-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: evil.example\r\n"
        b"\r\n"
    )
    with RawConn(sp.proxy_port) as c:
        c.send(req)
        got = _backend_headers(_echo_json(c.read_response()))
    assert got["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == "app.example:8080"
    assert got["host"] == "app.example:8080"


def test_forwarded_headers_set_when_client_sent_none(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(b"GET /echo/fwd2 HTTP/1.1\r\nHost: plain.example\r\n\r\n")
        got = _backend_headers(_echo_json(c.read_response()))
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == "plain.example"
    assert got["host"] == "plain.example"


def test_request_id_generated_when_absent(sp: SplitterProc) -> None:
    status, headers, body = _request(sp, "GET", "/request-id?gen=1")
    assert status == 200
    backend_saw = json.loads(body)["request_id"]
    assert backend_saw, "backend got no X-Request-Id"
    assert headers.get_all("X-Request-Id") == [backend_saw]

    def logged() -> dict[str, Any] | None:
        for entry in sp.access_log():
            if entry.get("target") == "/request-id?gen=1":
                return entry
        return None

    entry = wait_until(logged, timeout=5, message="access log line for /request-id?gen=1")
    assert entry["request_id"] == backend_saw

    # a second request gets a different id
    _, headers2, body2 = _request(sp, "GET", "/request-id?gen=2")
    assert json.loads(body2)["request_id"] not in (None, backend_saw)
    assert headers2["X-Request-Id"] == json.loads(body2)["request_id"]


def test_request_id_passed_through_when_sent(sp: SplitterProc) -> None:
    rid = "client-chosen-id-42"
    status, headers, body = _request(
        sp, "GET", "/request-id?given=1", headers={"X-Request-Id": rid}
    )
    assert status == 200
    assert json.loads(body) == {"request_id": rid}
    assert headers.get_all("X-Request-Id") == [rid]

    def logged() -> dict[str, Any] | None:
        for entry in sp.access_log():
            if entry.get("target") == "/request-id?given=1":
                return entry
        return None

    entry = wait_until(logged, timeout=5, message="access log line for /request-id?given=1")
    assert entry["request_id"] == rid


def test_several_set_cookie_headers_stay_separate(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, "/cookies"))
        resp = c.read_response()
    assert resp.status == 200
    assert resp.header_all("Set-Cookie") == ["a=1", "b=2", "c=3"]
    assert resp.body == b"cookies"


def test_redirect_passed_through_not_followed(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, "/redirect"))
        resp = c.read_response()
    assert resp.status == 302
    assert resp.header("Location") == "http://other.example/elsewhere"
    assert resp.body == b"redirecting"
    assert resp.header("X-Backend") == "blue"


@pytest.mark.parametrize("code", [404, 500, 502, 503])
def test_backend_error_status_passed_through_unchanged(sp: SplitterProc, code: int) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(_raw_get(sp.proxy_port, f"/status/{code}"))
        resp = c.read_response()
        assert resp.status == code
        assert resp.body == f"status {code}\n".encode()
        assert resp.header("X-Backend") == "blue"
        assert (resp.header("Content-Type") or "").startswith("text/plain")
        # the connection is still usable
        c.send(_raw_get(sp.proxy_port, "/"))
        assert c.read_response().body == b"blue"


# --------------------------------------------------------------------------- streaming (large)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_streaming_300mb_download_with_flat_rss(sp: SplitterProc) -> None:
    n, size = 4800, 65536
    for _ in range(3):  # warm up
        _request(sp, "GET", "/stream?n=16&size=65536")
    idle = _rss_kib(sp.pid)
    digest = hashlib.sha256()
    total = 0
    conn = _conn(sp, timeout=30)
    try:
        with RssSampler(sp.pid) as rss:
            conn.request("GET", f"/stream?n={n}&size={size}")
            resp = conn.getresponse()
            assert resp.status == 200
            while True:
                chunk = resp.read(MiB)
                if not chunk:
                    break
                total += len(chunk)
                digest.update(chunk)
    finally:
        conn.close()
    assert total == n * size
    assert digest.hexdigest() == stream_sha256(n, size)
    assert len(rss.samples) >= 5
    assert rss.peak < idle + 64 * 1024, f"idle {idle} KiB, peak {rss.peak} KiB"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_streaming_300mb_upload_with_flat_rss(sp: SplitterProc) -> None:
    n, size = 4800, 65536
    chunk = pattern_chunk(size)
    for _ in range(3):  # warm up
        _request(sp, "POST", "/upload", body=chunk * 4)
    idle = _rss_kib(sp.pid)

    def gen() -> Iterator[bytes]:
        for _ in range(n):
            yield chunk

    with RssSampler(sp.pid) as rss:
        status, _, body = _request(
            sp, "POST", "/upload", body=gen(),
            headers={"Content-Length": str(n * size), "Content-Type": "application/octet-stream"},
            timeout=60,
        )  # fmt: skip
    assert status == 200, body[:300]
    assert json.loads(body) == {"bytes": n * size, "sha256": stream_sha256(n, size)}
    assert len(rss.samples) >= 5
    assert rss.peak < idle + 64 * 1024, f"idle {idle} KiB, peak {rss.peak} KiB"


# --------------------------------------------------------------------------- SSE


def test_sse_events_are_not_buffered(sp: SplitterProc) -> None:
    n, interval = 5, 0.5
    conn = _conn(sp, timeout=10)
    arrivals: list[tuple[int, float, float]] = []  # (index, sent at, received at)
    try:
        conn.request(
            "GET", f"/sse?n={n}&interval={interval}", headers={"Accept": "text/event-stream"}
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert (resp.getheader("Content-Type") or "").startswith("text/event-stream")
        buf = b""
        while True:
            data = resp.read1(65536)
            now = time.time()
            if not data:
                break
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                assert event.startswith(b"data: "), event
                idx, sent = event[len(b"data: ") :].split()
                arrivals.append((int(idx), float(sent), now))
    finally:
        conn.close()
    assert [a[0] for a in arrivals] == list(range(n))
    for idx, sent, received in arrivals:
        assert received - sent < 0.3, f"event {idx} arrived {received - sent:.3f}s late"
    # the first event came well before the stream ended
    assert arrivals[-1][2] - arrivals[0][2] >= (n - 1) * interval * 0.8


# --------------------------------------------------------------------------- WebSocket


def test_websocket_echo_through_splitter(backend_factory: Any, splitter_factory: Any) -> None:
    aio = backend_factory("blue", kind="aio")
    sp = splitter_factory(pools_config({"blue": aio}, {"blue": 100}))
    sp.wait_readyz()
    url = f"ws://{LOCALHOST}:{sp.proxy_port}/ws"
    with websockets.sync.client.connect(url, open_timeout=5, close_timeout=5) as ws:
        assert ws.response is not None and ws.response.status_code == 101
        ws.send("hello through splitter")
        assert ws.recv(timeout=5) == "hello through splitter"
        payload = bytes(range(256)) * 300
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
        big_text = "é" * 100_000
        ws.send(big_text)
        assert ws.recv(timeout=5) == big_text
        ws.close()
        assert ws.close_code == 1000

    # the server closing is relayed too
    with websockets.sync.client.connect(url, open_timeout=5, close_timeout=5) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        ws.send("close")
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)
        assert ws.close_code == 1000

    # and plain HTTP still works on the same splitter
    status, _, body = _request(sp, "GET", "/")
    assert (status, body) == (200, b"blue")


@pytest.mark.parametrize("upgrade", ["websocket", "example/1"])
def test_upgrade_answered_without_101_is_a_normal_response(
    three_pools: dict[str, Backend], sp: SplitterProc, upgrade: str
) -> None:
    """The Flask backend answers an Upgrade request with a plain response (werkzeug: 400 for
    a websocket upgrade it has no route for, 200 otherwise); it reaches the client as is."""
    req = (
        "GET / HTTP/1.1\r\nHost: test.local\r\n"
        f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with RawConn(three_pools["blue"].port) as direct:
        direct.send(req)
        expected = direct.read_response()
    assert expected.status != 101
    with RawConn(sp.proxy_port) as c:
        c.send(req)
        resp = c.read_response()
        assert resp.status == expected.status
        assert resp.body == expected.body
        assert resp.header("Content-Type") == expected.header("Content-Type")
        assert resp.header("X-Pool") == "blue"
        assert resp.header("Upgrade") is None
        # the connection did not turn into a tunnel: it is closed, or it still speaks HTTP
        if not c.closed_by_peer(timeout=0.3):
            c.send(_raw_get(sp.proxy_port, "/echo/after-upgrade"))
            assert _echo_json(c.read_response())["raw_uri"] == "/echo/after-upgrade"


# --------------------------------------------------------------------------- HTTP/1.0


def test_http10_client_gets_response_and_connection_closes(sp: SplitterProc) -> None:
    with RawConn(sp.proxy_port) as c:
        c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == b"blue"
        assert c.closed_by_peer(timeout=2)


def test_http10_client_gets_chunked_backend_response_unchunked(sp: SplitterProc) -> None:
    start = time.monotonic()
    data = send_raw(sp.proxy_port, b"GET /stream?n=5&size=1000 HTTP/1.0\r\nHost: x\r\n\r\n")
    assert time.monotonic() - start < 4, "connection was not closed after the response"
    [resp] = parse_responses(data)
    assert resp.status == 200
    assert not resp.chunked
    assert resp.header("Transfer-Encoding") is None
    assert resp.complete
    assert resp.body == pattern_chunk(1000) * 5

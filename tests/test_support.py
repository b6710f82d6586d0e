"""The test infrastructure itself: backends answer as documented, rawhttp parses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
import requests
from websockets.sync.client import connect as ws_connect

from tests.rawhttp import RawConn, parse_one, parse_responses, send_raw
from tests.support import (
    Backend,
    SplitterProc,
    free_port,
    http_request,
    pattern_chunk,
    start_flask_backend,
    stream_sha256,
    wait_for_port,
    write_config,
)


@pytest.fixture(scope="module")
def flask_backend() -> Backend:
    backend = start_flask_backend("blue", "blue-1")
    yield backend
    backend.stop()


@pytest.fixture
def session() -> requests.Session:
    with requests.Session() as s:
        yield s


def test_flask_index_and_health(flask_backend: Backend, session: requests.Session) -> None:
    with session.get(flask_backend.url + "/", timeout=5) as r:
        assert r.status_code == 200
        assert r.text == "blue"
        assert r.headers["X-Backend"] == "blue-1"
    with session.head(flask_backend.url + "/", timeout=5) as r:
        assert r.status_code == 200
        assert r.content == b""
    with session.get(flask_backend.url + "/healthz", timeout=5) as r:
        assert (r.status_code, r.text) == (200, "ok")


def test_flask_echo_keeps_raw_uri_and_headers(flask_backend: Backend) -> None:
    body = b"x" * 1000
    status, _, data = http_request(
        flask_backend.url + "/echo/a%2Fb/c%20d?q=%2F&x=1",
        method="PUT",
        body=body,
        headers={"X-Custom": "one", "Content-Type": "application/octet-stream"},
    )
    assert status == 200
    info = json.loads(data)
    assert info["method"] == "PUT"
    assert info["raw_uri"] == "/echo/a%2Fb/c%20d?q=%2F&x=1"
    assert info["body_len"] == 1000
    assert info["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert (info["pool"], info["backend"]) == ("blue", "blue-1")
    names = [name.lower() for name, _ in info["headers"]]
    assert names.index("x-custom") < names.index("content-type")
    assert ["X-Custom", "one"] in info["headers"]


def test_flask_upload_streams_chunked_body(flask_backend: Backend) -> None:
    parts = [os.urandom(100_000) for _ in range(5)]
    with requests.post(flask_backend.url + "/upload", data=iter(parts), timeout=10) as r:
        assert r.json() == {
            "bytes": 500_000,
            "sha256": hashlib.sha256(b"".join(parts)).hexdigest(),
        }


def test_flask_stream(flask_backend: Backend) -> None:
    with requests.get(flask_backend.url + "/stream?n=50&size=100000", stream=True, timeout=10) as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        digest = hashlib.sha256()
        total = 0
        for chunk in r.iter_content(65536):
            total += len(chunk)
            digest.update(chunk)
    assert total == 5_000_000
    assert digest.hexdigest() == stream_sha256(50, 100_000)
    with requests.get(flask_backend.url + "/stream?n=2&size=300&cl=1", timeout=5) as r:
        assert r.headers["Content-Length"] == "600"
        assert r.content == pattern_chunk(300) * 2


def test_flask_sse_is_spaced_in_time(flask_backend: Backend) -> None:
    with requests.get(flask_backend.url + "/sse?n=3&interval=0.3", stream=True, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = []
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                events.append((time.monotonic(), line.decode().split()))
    assert [e[1][1] for e in events] == ["0", "1", "2"]
    assert events[2][0] - events[0][0] > 0.4  # arrived as sent, not buffered


def test_flask_status_cookies_redirect_slow_request_id(flask_backend: Backend) -> None:
    url = flask_backend.url
    status, _, body = http_request(url + "/status/503")
    assert status == 503 and body
    status, _, body = http_request(url + "/status/204")
    assert (status, body) == (204, b"")
    data = send_raw(
        flask_backend.port, b"GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    [resp] = parse_responses(data)
    assert resp.header_all("Set-Cookie") == ["a=1", "b=2", "c=3"]
    status, headers, _ = http_request(url + "/redirect")
    assert (status, headers["location"]) == (302, "http://other.example/elsewhere")
    start = time.monotonic()
    status, _, body = http_request(url + "/slow?seconds=0.5")
    assert (status, body) == (200, b"slow")
    assert time.monotonic() - start >= 0.5
    _, _, body = http_request(url + "/request-id", headers={"X-Request-Id": "abc-123"})
    assert json.loads(body) == {"request_id": "abc-123"}
    _, _, body = http_request(url + "/request-id")
    assert json.loads(body) == {"request_id": None}


def test_flask_keepalive_via_rawconn(flask_backend: Backend) -> None:
    with RawConn(flask_backend.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = conn.read_response()
        second = conn.read_response(head=True)
        assert (first.status, first.body) == (200, b"blue")
        assert (second.status, second.body) == (200, b"")
        assert not conn.closed_by_peer(timeout=0.2)


def test_backend_factory_and_aio_ws_echo(backend_factory) -> None:
    backend = backend_factory("green", kind="aio")
    status, _, body = http_request(backend.url + "/")
    assert (status, body) == (200, b"green")
    _, _, body = http_request(backend.url + "/echo-id", headers={"X-Request-Id": "rid-7"})
    assert body == b"rid-7"
    with ws_connect(f"ws://127.0.0.1:{backend.port}/ws", open_timeout=5, close_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\xff"
    backend.stop()
    assert not backend.running


def test_flask_backend_kill_stops_workers() -> None:
    backend = start_flask_backend("canary")
    try:
        backend.kill()
        with pytest.raises(TimeoutError):
            wait_for_port(backend.port, timeout=0.5)
    finally:
        backend.stop()


def test_rawhttp_parses_chunked_with_trailers() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnopHTTP/1.1 200 OK\r\n\r\nrest"
    )
    first, second, third = parse_responses(data)
    assert (first.status, first.body, first.chunked) == (200, b"hello world", True)
    assert first.trailers == [("X-Trailer", "t")]
    assert first.header("x-a") == "1"
    assert (second.status, second.reason, second.body) == (404, "Not Found", b"nop")
    assert (third.body, third.complete) == (b"rest", True)
    assert parse_one(data[:40], eof=False) is None


def test_rawhttp_parses_100_continue_then_200() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
    )
    interim, final = parse_responses(data)
    assert (interim.status, interim.body) == (100, b"")
    assert (final.status, final.body) == (200, b"ok")
    [head] = parse_responses(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head=True)
    assert (head.body, head.complete) == (b"", True)
    [cut] = parse_responses(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert (cut.body, cut.complete) == (b"abc", False)


def test_splitter_proc_reports_early_exit(tmp_path) -> None:
    """wait_ready fails fast, with stderr, when the process exits (here: invalid config)."""
    path = write_config(tmp_path, {"listen": f"127.0.0.1:{free_port()}", "bogus": 1})
    proc = SplitterProc(path, tmp_path)
    try:
        with pytest.raises(AssertionError, match="exited"):
            proc.wait_ready(timeout=15)
        assert proc.stderr_text()
    finally:
        proc.stop()


def test_python_m_gunicorn_available() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0

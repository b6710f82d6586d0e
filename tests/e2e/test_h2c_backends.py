"""HTTP/2 backends (`protocol: h2c` pools), end to end (contract sections 4, 4a and 14): the
real splitter process in front of tests.backends.h2_app, an h2c server on the `h2`
library that answers well or with hostile frames by route. HTTP/1.1 clients (http.client)
are translated to streams and back; HTTP/2 clients (tests.h2client) get trailers end to
end; many streams share a few connections; a refused stream, or one a GOAWAY left out, is
retried; a stream reset mid-response cuts the client's answer; a head over the limits, or
a connection closed before the answer, is a 502; idle connections close.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.h2client import Answer, H2Client
from tests.support import (
    LOCALHOST,
    NO_HEALTH_DOWN,
    Backend,
    SplitterProc,
    pattern_chunk,
    pools_config,
    start_h2_backend,
    stream_sha256,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def h2_backends() -> Iterator[Any]:
    """`(name, *options) -> Backend`: tests.backends.h2_app processes, stopped at teardown."""
    started: list[Backend] = []

    def make(name: str, *options: str) -> Backend:
        backend = start_h2_backend(name, *options)
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.stop()


def h2c_config(backends: list[Backend], **extra: Any) -> dict[str, Any]:
    """One `h2c` pool, `app`, of `backends`; gRPC health checks every 200 ms."""
    config = pools_config({"app": backends}, {"app": 100}, **extra)
    config["pools"]["app"]["protocol"] = "h2c"
    return config


def start(splitter_factory: Any, backends: list[Backend], **extra: Any) -> SplitterProc:
    proc: SplitterProc = splitter_factory(h2c_config(backends, **extra))
    proc.wait_readyz()
    return proc


def stats(backend: Backend) -> dict[str, Any]:
    """The backend's /stats, asked directly (its connection is not counted)."""
    with H2Client(backend.port) as client:
        answer = client.get("/stats")
    assert answer.status == 200
    data = answer.json()
    assert isinstance(data, dict)
    return data


def request(
    sp: SplitterProc,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    encode_chunked: bool = False,
    timeout: float = 15,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """One HTTP/1.1 request on a fresh connection: status, the response, its body."""
    conn = http.client.HTTPConnection(LOCALHOST, sp.proxy_port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {},
                     encode_chunked=encode_chunked)  # fmt: skip
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp, data
    finally:
        conn.close()


def echoed(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    assert isinstance(data, dict)
    data["fields"] = {}
    for name, value in data["headers"]:
        data["fields"].setdefault(name, []).append(value)
    return data


def answer_json(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200, (answer.status, answer.body[:300], answer.reset)
    return echoed(answer.body)


def chunks(body: bytes, size: int) -> Iterator[bytes]:
    for pos in range(0, len(body), size):
        yield body[pos : pos + size]


# --------------------------------------------------------------------------- HTTP/1.1 clients


def test_http11_get_translated_to_a_stream(h2_backends: Any, splitter_factory: Any) -> None:
    sp = start(splitter_factory, [h2_backends("one")])
    status, resp, body = request(
        sp,
        "GET",
        "/echo?a=%2F&b=%20",
        headers={
            "Host": "shop.example:8080",
            "X-Custom": "Value",
            "X-Forwarded-For": "10.1.2.3",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
        },
    )
    assert status == 200
    data = echoed(body)
    fields = data["fields"]
    assert data["method"] == "GET"
    assert data["path"] == "/echo?a=%2F&b=%20"  # byte for byte
    assert data["authority"] == "shop.example:8080"  # Host as :authority
    assert "host" not in fields
    assert fields["x-custom"] == ["Value"]
    assert fields["x-forwarded-for"] == [f"10.1.2.3, {LOCALHOST}"]
    assert fields["x-forwarded-proto"] == ["http"]
    assert fields["x-forwarded-host"] == ["shop.example:8080"]
    assert fields["x-request-id"] == [resp.getheader("X-Request-Id")]
    for hop in ("connection", "keep-alive", "x-hop", "te", "transfer-encoding", "upgrade"):
        assert hop not in fields, hop
    assert data["body_bytes"] == 0 and "content-length" not in fields
    # The answer as HTTP/1.1: its Content-Length kept.
    assert resp.getheader("Content-Length") == str(len(body))
    assert resp.getheader("Transfer-Encoding") is None


def test_http11_response_without_length_is_chunked(h2_backends: Any, splitter_factory: Any) -> None:
    sp = start(splitter_factory, [h2_backends("one")])
    status, resp, body = request(sp, "GET", "/stream?n=40&size=50000")
    assert status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Length") is None
    assert hashlib.sha256(body).hexdigest() == stream_sha256(40, 50000)
    status, resp, body = request(sp, "GET", "/stream?n=40&size=50000&cl=1")
    assert resp.getheader("Content-Length") == str(40 * 50000)
    assert resp.getheader("Transfer-Encoding") is None
    assert len(body) == 40 * 50000
    # Trailers from the backend are not sent to an HTTP/1.1 client; the body is complete.
    status, resp, body = request(sp, "GET", "/trailers?size=70000")
    assert status == 200 and body == pattern_chunk(70000)
    assert resp.getheader("x-checksum") is None


def test_http11_empty_answer_ending_on_headers(h2_backends: Any, splitter_factory: Any) -> None:
    """A backend's HEADERS with END_STREAM and no content-length: a complete empty answer
    on a connection that goes on, not one the client must read to the close."""
    sp = start(splitter_factory, [h2_backends("one")])
    conn = http.client.HTTPConnection(LOCALHOST, sp.proxy_port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/empty")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == b""
            assert resp.getheader("Content-Length") == "0"
            assert not resp.will_close
        conn.request("HEAD", "/empty")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_http11_upload_of_megabytes(chunked: bool, h2_backends: Any, splitter_factory: Any) -> None:
    sp = start(splitter_factory, [h2_backends("one")])
    body = pattern_chunk(65536) * 48 + b"tail"  # 3 MiB and a bit
    sent: Any = chunks(body, 100_000) if chunked else body
    status, _, answer = request(sp, "POST", "/echo", body=sent, encode_chunked=chunked)
    assert status == 200
    data = echoed(answer)
    assert data["body_bytes"] == len(body)
    assert data["sha256"] == hashlib.sha256(body).hexdigest()
    if chunked:
        assert "content-length" not in data["fields"]
    else:
        assert data["fields"]["content-length"] == [str(len(body))]
    assert "transfer-encoding" not in data["fields"]


# --------------------------------------------------------------------------- HTTP/2 clients


def test_h2_client_gets_trailers_and_te_passes(h2_backends: Any, splitter_factory: Any) -> None:
    sp = start(splitter_factory, [h2_backends("one")])
    body = pattern_chunk(200_000)
    with H2Client(sp.proxy_port) as client:
        sid = client.request("GET", "/trailers?size=200000", headers=[("te", "trailers")])
        answer = client.response(sid, timeout=15)
        assert answer.status == 200 and answer.ended
        assert answer.body == body
        trailers = dict(answer.trailers)
        assert trailers[b"x-checksum"] == hashlib.sha256(body).hexdigest().encode()
        assert trailers[b"x-te"] == b"trailers"  # TE: trailers reached the backend
        # Without it, none is invented.
        answer = client.get("/trailers?size=10")
        assert dict(answer.trailers)[b"x-te"] == b"-"
        # An answer that ends on its headers ends on them here too: no empty DATA.
        answer = client.get("/empty")
        assert answer.status == 200 and answer.ended_on_headers and answer.data_frames == 0


def test_h2_client_echo_and_upload(h2_backends: Any, splitter_factory: Any) -> None:
    sp = start(splitter_factory, [h2_backends("one")])
    body = pattern_chunk(65536) * 20
    with H2Client(sp.proxy_port) as client:
        answer = client.get("/echo", authority="api.example", headers=[("x-a", "1")])
        data = answer_json(answer)
        assert data["authority"] == "api.example"
        assert data["fields"]["x-a"] == ["1"]
        assert data["fields"]["x-forwarded-host"] == ["api.example"]
        sid = client.request("PUT", "/echo", body=body)
        data = answer_json(client.response(sid, timeout=15))
        assert data["method"] == "PUT"
        assert data["body_bytes"] == len(body)
        assert data["sha256"] == hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------- flow control


def test_big_bodies_both_ways_on_concurrent_streams(
    h2_backends: Any, splitter_factory: Any
) -> None:
    """Eight streams at once, each 4 MiB up and 4 MiB down, over one client connection and
    the backend's shared connections: every byte arrives, in order."""
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    upload = pattern_chunk(65536) * 64
    with H2Client(sp.proxy_port, timeout=30) as client:
        downs = [client.request("GET", f"/stream?n=64&size=65536&tag=d{i}") for i in range(4)]
        ups = [client.request("POST", f"/echo?tag=u{i}", end=False) for i in range(4)]
        for sid in ups:  # interleaved with the downloads' DATA (send_body reads as needed)
            client.send_body(sid, upload)
        for sid in downs:
            answer = client.response(sid, timeout=30)
            assert answer.status == 200 and answer.ended
            assert hashlib.sha256(answer.body).hexdigest() == stream_sha256(64, 65536)
        for sid in ups:
            data = answer_json(client.response(sid, timeout=30))
            assert data["body_bytes"] == len(upload)
            assert data["sha256"] == hashlib.sha256(upload).hexdigest()


def test_slow_client_stalls_its_stream_alone(h2_backends: Any, splitter_factory: Any) -> None:
    """A client that reads nothing: the backend sends little more than the windows allow
    (splitter holds bounded bytes for it), while other streams on the same backend
    connection go on; once it reads, every byte arrives."""
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    slow = H2Client(sp.proxy_port, window=65535, timeout=30)
    slow.auto_ack = False
    try:
        sid = slow.request("GET", "/stream?n=512&size=65536&tag=slow")  # 32 MiB
        slow.read_once(2)
        time.sleep(1.0)
        sent = stats(backend)["sent"].get("slow", 0)
        # The client's window, splitter's outbox for it, the backend link's stream window.
        assert 0 < sent < 512 * 1024, sent
        with H2Client(sp.proxy_port) as other:
            answer = other.response(other.request("GET", "/stream?n=16&size=65536"), 10)
            assert answer.status == 200 and len(answer.body) == 16 * 65536
        time.sleep(0.5)
        assert stats(backend)["sent"].get("slow", 0) < 512 * 1024
        slow.auto_ack = True
        answer = slow.answers[sid]
        slow.h2.acknowledge_received_data(len(answer.body), sid)
        slow.h2.increment_flow_control_window(4 * MiB)  # a reader that keeps up now
        slow.h2.increment_flow_control_window(4 * MiB, stream_id=sid)
        slow.flush()
        answer = slow.response(sid, timeout=60)
        assert answer.ended and len(answer.body) == 512 * 65536
        assert hashlib.sha256(answer.body).hexdigest() == stream_sha256(512, 65536)
    finally:
        slow.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_upload_to_a_slow_backend_holds_bounded_memory(
    h2_backends: Any, splitter_factory: Any
) -> None:
    """A backend that acknowledges nothing for 2 s: splitter stops reading the client's
    32 MiB upload (its memory grows by far less), then every byte arrives."""
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    size = 512 * 65536
    chunk = pattern_chunk(65536)
    results: list[tuple[int, bytes]] = []

    def upload() -> None:
        status, _, body = request(
            sp, "POST", "/sink?hold=2&tag=up", body=iter([chunk] * 512),
            headers={"Content-Length": str(size)}, timeout=30,
        )  # fmt: skip
        results.append((status, body))

    before = _rss(sp.pid)
    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(1.2)
    grown = _rss(sp.pid) - before
    held = stats(backend)["received"].get("up", 0)
    thread.join(30)
    assert held <= 65535, held  # the backend's window, nothing more
    assert grown < 8 * MiB, grown
    assert len(results) == 1 and results[0][0] == 200
    data = echoed(results[0][1])
    assert data["body_bytes"] == size
    assert data["sha256"] == hashlib.sha256(chunk * 512).hexdigest()


def test_abandoned_slow_streams_give_their_window_back(
    h2_backends: Any, splitter_factory: Any
) -> None:
    """Streams whose client stopped reading, then left: the DATA splitter took for them
    but never acknowledged is given back to the backend connection's window, so the
    connection (shared, 4 MiB) does not starve its next streams."""
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    slow = H2Client(sp.proxy_port, window=16384, timeout=30)
    slow.auto_ack = False
    try:
        for i in range(80):
            slow.request("GET", f"/stream?n=64&size=65536&tag=s{i}")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                slow.read_once(0.2)
            except TimeoutError:
                pass
    finally:
        slow.close()
    held = sum(stats(backend)["sent"].values())
    assert held >= 4 * MiB, held  # the backend connection's window is full
    with H2Client(sp.proxy_port, timeout=15) as client:
        answer = client.response(client.request("GET", "/stream?n=128&size=65536"), 15)
        assert answer.ended and len(answer.body) == 128 * 65536
    assert stats(backend)["accepted"] == 1  # on the same connection


# --------------------------------------------------------------------------- failures


def test_refused_stream_retried_on_the_other_backend(
    h2_backends: Any, splitter_factory: Any
) -> None:
    refusing = h2_backends("refusing", "--all", "refuse")
    good = h2_backends("good")
    sp = start(splitter_factory, [refusing, good])
    body = pattern_chunk(10_000)
    for i in range(20):
        status, _, answer = request(sp, "POST" if i % 2 else "GET", "/echo", body=body)
        assert status == 200, answer
        data = echoed(answer)
        assert data["backend"] == "good"
        assert data["sha256"] == hashlib.sha256(body).hexdigest()  # the body sent again
    assert stats(refusing)["refused"] > 0
    assert stats(refusing)["streams"] == stats(refusing)["refused"]


def test_refused_stream_retried_on_the_one_backend(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    status, _, body = request(sp, "POST", "/refuse?once=a", body=b"x" * 1000)
    assert status == 200
    assert echoed(body)["body_bytes"] == 1000
    with H2Client(sp.proxy_port) as client:
        answer = client.get("/refuse?once=b")
        assert answer.status == 200
        # Refused again on the retry: 502, the error as JSON.
        answer = client.get("/refuse")
        assert answer.status == 502
        assert answer.json()["status"] == 502  # type: ignore[index]
    seen = stats(backend)
    assert seen["refused"] == 4 and seen["streams"] == 6
    assert seen["accepted"] == 1  # a refused stream leaves the connection as good as it was


def test_goaway_below_the_stream_retried_on_a_fresh_connection(
    h2_backends: Any, splitter_factory: Any
) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    status, _, body = request(sp, "GET", "/echo")
    assert status == 200 and echoed(body)["conn"] == 1
    status, _, body = request(sp, "POST", "/goaway?once=a", body=b"y" * 5000)
    assert status == 200
    data = echoed(body)
    assert data["conn"] == 2 and data["body_bytes"] == 5000
    assert stats(backend)["accepted"] == 2
    # A backend that closes at once may reset the GOAWAY away: a GET is retried all the same.
    status, _, body = request(sp, "GET", "/goaway?once=b&abrupt=1")
    assert status == 200 and echoed(body)["conn"] == 3
    # Two backends that both go away: the one retry goes to the other, then 502.
    other = h2_backends("two", "--all", "goaway")
    sp2 = start(splitter_factory, [other, backend])
    for _ in range(6):
        status, _, body = request(sp2, "GET", "/echo")
        assert status == 200 and echoed(body)["backend"] == "one"
    sp3 = start(splitter_factory, [other])
    status, _, body = request(sp3, "GET", "/echo")
    assert status == 502


def test_malformed_goaway_is_a_protocol_error(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    status, _, body = request(sp, "GET", "/goaway?malformed=1")
    assert status == 502 and json.loads(body)["reason"] == "protocol"
    assert stats(backend)["streams"] == 1  # not taken for a GOAWAY, so not retried
    assert request(sp, "GET", "/echo")[0] == 200


def test_reset_before_the_head_retried_only_when_idempotent(
    h2_backends: Any, splitter_factory: Any
) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    status, _, _ = request(sp, "GET", "/reset?at=start")
    assert status == 502
    assert stats(backend)["streams"] == 2  # sent twice
    status, _, _ = request(sp, "POST", "/reset?at=start", body=b"z")
    assert status == 502
    assert stats(backend)["streams"] == 3  # a POST the backend may have acted on: once


def _read_cut(sp: SplitterProc, target: str) -> tuple[int, BaseException | None, bytes]:
    conn = http.client.HTTPConnection(LOCALHOST, sp.proxy_port, timeout=10)
    got = b""
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        status = resp.status
        try:
            while chunk := resp.read1(65536):
                got += chunk
        except (http.client.IncompleteRead, ConnectionError) as exc:
            return status, exc, got
        return status, None, got
    finally:
        conn.close()


@pytest.mark.parametrize("size", [0, 50_000])
def test_reset_mid_response_cuts_the_answer(
    size: int, h2_backends: Any, splitter_factory: Any
) -> None:
    sp = start(splitter_factory, [h2_backends("one")])
    status, error, got = _read_cut(sp, f"/reset?bytes={size}")
    assert status == 200  # the head had passed
    assert error is not None, "a cut answer must not look complete"
    assert len(got) <= size
    with H2Client(sp.proxy_port) as client:
        answer = client.get(f"/reset?bytes={size}")
        assert answer.status == 200 and not answer.ended
        assert answer.reset is not None
        assert client.get("/echo").status == 200  # the client's connection goes on


def test_backend_closing_mid_stream(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    # Before the head: lost, retried once on a fresh connection (GET), then 502.
    status, _, body = request(sp, "GET", "/close")
    assert status == 502
    assert json.loads(body)["status"] == 502
    assert stats(backend)["accepted"] == 2
    # After the head: the answer is cut.
    status, error, got = _read_cut(sp, "/close?after=head")
    assert status == 200 and error is not None and len(got) <= 1000
    with H2Client(sp.proxy_port) as client:
        answer = client.get("/close")
        assert answer.status == 502
        answer = client.get("/close?after=head")
        assert answer.status == 200 and answer.reset is not None and not answer.ended


def test_body_longer_than_its_content_length_is_502(
    h2_backends: Any, splitter_factory: Any
) -> None:
    """h2 takes a body over its content-length for a connection error: that answer is a
    502 (its head and DATA came in the read that failed), the connection is replaced."""
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    status, _, body = request(sp, "GET", "/overlong")
    assert status == 502 and json.loads(body)["reason"] == "protocol"
    status, _, body = request(sp, "GET", "/echo")
    assert status == 200 and echoed(body)["conn"] == 2


def test_response_head_over_the_limits_is_502(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    status, _, body = request(sp, "GET", "/bighead?fields=150")
    assert status == 502 and json.loads(body)["status"] == 502
    status, _, _ = request(sp, "GET", "/bighead?fields=10&bytes=70000")
    assert status == 502
    status, resp, body = request(sp, "GET", "/bighead?fields=90")  # under the 100 fields
    assert status == 200 and body == b"ok" and resp.getheader("x-field-89") == "v"
    with H2Client(sp.proxy_port) as client:
        assert client.get("/bighead?fields=150").status == 502
        assert client.get("/echo").status == 200
    assert stats(backend)["accepted"] == 1  # a stream's bad head leaves its connection


# --------------------------------------------------------------------------- connections


def test_many_streams_share_a_few_connections(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    clients = [H2Client(sp.proxy_port, timeout=30) for _ in range(2)]
    try:
        sids = [[c.request("GET", f"/slow?seconds=1&i={i}") for i in range(100)] for c in clients]
        for client, ids in zip(clients, sids, strict=True):
            for sid in ids:
                answer = client.response(sid, timeout=30)
                assert answer.status == 200 and answer.body == b"slow"
    finally:
        for client in clients:
            client.close()
    seen = stats(backend)
    assert seen["streams"] == 200
    assert seen["accepted"] <= math.ceil(200 / 100) + 1, seen
    assert seen["max_open_streams"] <= 100, seen  # splitter's own bound per connection


def test_backend_max_concurrent_streams_honoured(h2_backends: Any, splitter_factory: Any) -> None:
    """A backend allowing 10 streams at once gets no more, from the first burst on a new
    connection (the h2 library ends the whole connection for a stream over its limit)."""
    backend = h2_backends("one", "--max-streams", "10")
    sp = start(splitter_factory, [backend])
    with H2Client(sp.proxy_port, timeout=30) as client:
        sids = [client.request("GET", f"/slow?seconds=0.3&i={i}") for i in range(40)]
        for sid in sids:
            assert client.response(sid, timeout=30).status == 200
    seen = stats(backend)
    assert seen["max_open_streams"] <= 10, seen
    assert seen["refused"] == 0


def test_graceful_goaway_finishes_streams_and_rotates(
    h2_backends: Any, splitter_factory: Any
) -> None:
    backend = h2_backends("one", "--goaway-after", "5")
    sp = start(splitter_factory, [backend])
    for i in range(30):
        status, _, body = request(sp, "GET", f"/echo?i={i}")
        assert status == 200
        assert echoed(body)["conn"] == i // 5 + 1
    wait_until(lambda: stats(backend)["open"] == 0, 5, message="rotated connections closed")
    assert stats(backend)["accepted"] == 6


def test_goaway_racing_streams_are_retried(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one", "--goaway-after", "50")
    sp = start(splitter_factory, [backend])
    with H2Client(sp.proxy_port, timeout=30) as client:
        for _round in range(5):
            sids = [client.request("GET", f"/slow?seconds=0.1&i={i}") for i in range(20)]
            for sid in sids:
                assert client.response(sid, timeout=30).status == 200
    seen = stats(backend)
    assert seen["ignored"] > 0  # some streams crossed the GOAWAY and were sent again
    assert seen["streams"] == 100  # each answered once


def test_idle_connections_closed_after_upstream_idle_timeout(
    h2_backends: Any, splitter_factory: Any
) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend], limits={"upstream_idle_timeout": "1s"})
    assert request(sp, "GET", "/echo")[0] == 200
    time.sleep(0.4)
    assert stats(backend)["open"] == 1  # kept for the next request
    assert request(sp, "GET", "/echo")[0] == 200
    assert stats(backend)["accepted"] == 1
    began = time.monotonic()
    wait_until(lambda: stats(backend)["open"] == 0, 5, message="the idle link closed")
    assert time.monotonic() - began > 0.5
    assert request(sp, "GET", "/echo")[0] == 200
    assert stats(backend)["accepted"] == 2


def test_reload_leaves_streams_in_flight(h2_backends: Any, splitter_factory: Any) -> None:
    """A reload that drops a backend closes its idle connections; a stream in flight on
    one finishes (an HTTP/1.1 backend's busy connection is kept the same way)."""
    old, new = h2_backends("old"), h2_backends("new")
    proc: SplitterProc = splitter_factory(h2c_config([old]))
    proc.wait_readyz()
    results: list[tuple[int, bytes]] = []

    def slow() -> None:
        status, _, body = request(proc, "GET", "/slow?seconds=2")
        results.append((status, body))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    assert proc.config is not None
    config = dict(proc.config)
    config["pools"] = {"app": {"weight": 100, "backends": [new.url], "protocol": "h2c"}}
    write_config(proc.config_path, config, atomic=True)
    wait_until(lambda: echoed(request(proc, "GET", "/echo")[2])["backend"] == "new", 10)
    thread.join(10)
    assert results == [(200, b"slow")]


def test_failed_health_check_leaves_streams_in_flight(
    h2_backends: Any, splitter_factory: Any
) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend])
    results: list[tuple[int, bytes]] = []

    def slow() -> None:
        status, _, body = request(sp, "GET", "/slow?seconds=2")
        results.append((status, body))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    with H2Client(backend.port) as client:
        assert client.get("/sick").status == 200
    wait_until(lambda: request(sp, "GET", "/echo")[0] == 503, 5, message="backend down")
    thread.join(10)
    assert results == [(200, b"slow")]
    wait_until(lambda: stats(backend)["open"] == 0, 5, message="closed after its last stream")


def test_shutdown_finishes_streams_within_grace(h2_backends: Any, splitter_factory: Any) -> None:
    backend = h2_backends("one")
    sp = start(splitter_factory, [backend], shutdown={"grace": "1500ms"})
    results: dict[str, Any] = {}

    def fetch(target: str) -> None:
        try:
            results[target] = request(sp, "GET", target)[::2]
        except (http.client.HTTPException, OSError) as exc:
            results[target] = exc

    threads = [
        threading.Thread(target=fetch, args=(t,)) for t in ("/slow?seconds=0.5", "/slow?seconds=6")
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    began = time.monotonic()
    sp.send_signal(signal.SIGTERM)
    assert sp.wait(10) == 0
    assert time.monotonic() - began < 4  # the grace, not the slow stream's 6 s
    for thread in threads:
        thread.join(10)
    assert results["/slow?seconds=0.5"] == (200, b"slow")
    assert isinstance(results["/slow?seconds=6"], (http.client.HTTPException, OSError))
    wait_until(lambda: stats(backend)["open"] == 0, 5, message="the backend's links closed")


def test_backend_that_is_not_http2(
    h2_backends: Any, backend_factory: Any, splitter_factory: Any
) -> None:
    """An HTTP/1.1 server in an h2c pool (its health checks aside): no request is sent
    into a connection that is not HTTP/2; the other backend answers (a failed connect is
    retried), or 502 when it is alone."""
    http1 = backend_factory("http1", kind="aio")
    good = h2_backends("good")
    sp = start(splitter_factory, [http1, good], health_check=NO_HEALTH_DOWN)
    for _ in range(6):
        status, _, body = request(sp, "POST", "/echo", body=b"q" * 100)
        assert status == 200 and echoed(body)["backend"] == "good"
    alone = start(splitter_factory, [http1], health_check=NO_HEALTH_DOWN)
    status, _, body = request(alone, "GET", "/echo")
    assert status == 502 and json.loads(body)["status"] == 502


def test_backend_that_never_sends_settings(splitter_factory: Any) -> None:
    """A backend that accepts and stays silent: 502 after timeouts.connect (twice, with
    the retry), its connections closed, and the next request tries a new one."""
    accepted: list[socket.socket] = []
    listener = socket.socket()
    listener.bind((LOCALHOST, 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"http://{LOCALHOST}:{listener.getsockname()[1]}"
        config = pools_config({"app": url}, {"app": 100}, health_check=NO_HEALTH_DOWN)
        config["pools"]["app"]["protocol"] = "h2c"
        config["timeouts"] = {"connect": "500ms"}
        proc: SplitterProc = splitter_factory(config)
        began = time.monotonic()
        status, _, body = request(proc, "GET", "/echo")
        assert status == 502 and json.loads(body)["reason"] == "connect"
        assert time.monotonic() - began < 3
        first = list(accepted)
        assert first

        def closed(sock: socket.socket) -> bool:
            sock.settimeout(0.05)
            try:
                while data := sock.recv(65536):
                    del data
                return True
            except TimeoutError:
                return False

        wait_until(lambda: all(closed(s) for s in first), 5, message="silent links closed")
        status, _, _ = request(proc, "GET", "/echo")
        assert status == 502
        assert len(accepted) > len(first)  # not stuck on the first one
    finally:
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        listener.close()


def test_connect_refused_is_502(splitter_factory: Any) -> None:
    dead = socket.socket()
    dead.bind((LOCALHOST, 0))
    port = dead.getsockname()[1]
    dead.close()
    config = pools_config({"app": f"http://{LOCALHOST}:{port}"}, {"app": 100})
    config["pools"]["app"]["protocol"] = "h2c"
    config["health_check"] = NO_HEALTH_DOWN
    proc: SplitterProc = splitter_factory(config)
    status, _, body = request(proc, "GET", "/echo")
    assert status == 502 and json.loads(body)["status"] == 502

"""HTTP/2 from clients, end to end (contract section 14): the real splitter process on
loopback, h2c with prior knowledge and h2 by ALPN over TLS, in front of real Flask
backends under gunicorn (HTTP/1.1): each stream an exchange with the rules of sections
3 to 4a, translated to HTTP/1.1 and back.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_metrics import scrape
from tests.e2e.test_tls import client_context, issue
from tests.h2client import H2Client
from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    pools_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def sp(three_pools: dict[str, Backend], splitter_factory: Any) -> SplitterProc:
    proc: SplitterProc = splitter_factory(
        pools_config(
            {"blue": three_pools["blue"], "canary": three_pools["canary"]},
            {"blue": 100, "canary": 0},
            sticky={"cookie": "splitter"},
            override={"header": "X-Splitter-Pool"},
        )
    )
    proc.wait_readyz()
    return proc


def test_h2c_prior_knowledge_get(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        answer = client.get("/", authority="shop.example")
        assert answer.status == 200
        assert answer.body == b"blue"
        assert answer.header(b"x-pool") == b"blue"
        assert answer.header(b"x-request-id")
        # The sticky cookie, as a set-cookie field.
        cookies = answer.headers_named(b"set-cookie")
        assert len(cookies) == 1 and cookies[0].startswith(b"splitter=")
        # Sent back, it is honoured: no new cookie.
        again = client.get("/", headers=[("cookie", cookies[0].split(b";")[0].decode())])
        assert again.body == b"blue" and not again.headers_named(b"set-cookie")
        # No connection-specific field reaches an HTTP/2 client.
        names = {name for name, _ in answer.headers}
        assert not names & {b"connection", b"keep-alive", b"transfer-encoding"}
        assert all(name == name.lower() for name in names)


def test_many_streams_on_one_connection(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        sids = [client.request("GET", f"/echo/{i}") for i in range(50)]
        for i, sid in enumerate(sids):
            answer = client.response(sid)
            assert answer.status == 200
            data = answer.json()
            assert isinstance(data, dict)
            assert data["raw_uri"] == f"/echo/{i}"


def test_request_reaches_backend_as_http11(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        answer = client.get(
            "/echo/a%2Fb?x=%20y",
            authority="shop.example:8443",
            headers=[("x-custom", "1"), ("cookie", "a=1"), ("cookie", "b=2")],
        )
    assert answer.status == 200
    data = answer.json()
    assert isinstance(data, dict)
    assert data["raw_uri"] == "/echo/a%2Fb?x=%20y"
    headers = {k.lower(): v for k, v in data["headers"]}
    assert headers["host"] == "shop.example:8443"
    assert headers["x-forwarded-host"] == "shop.example:8443"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == LOCALHOST
    assert headers["x-custom"] == "1"
    assert headers["cookie"] == "a=1; b=2"
    assert headers["x-request-id"] == answer.header(b"x-request-id").decode()  # type: ignore[union-attr]


def test_request_body_streamed_to_backend(sp: SplitterProc) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, more than the stream's window
    with H2Client(sp.proxy_port) as client:
        sid = client.request("POST", "/upload", body=body)
        answer = client.response(sid, timeout=30)
        assert answer.status == 200
        data = answer.json()
        assert data == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        # With a content-length too.
        sid = client.request(
            "POST", "/upload", body=body[:1000], headers=[("content-length", "1000")]
        )
        assert client.response(sid).json() == {
            "bytes": 1000,
            "sha256": hashlib.sha256(body[:1000]).hexdigest(),
        }


def test_large_response_within_flow_control(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        answer = client.get("/stream?n=64&size=65536")  # 4 MiB, chunked by the backend
        assert answer.status == 200
        assert len(answer.body) == 64 * 65536
        answer = client.get("/stream?n=16&size=65536&cl=1")
        assert answer.header(b"content-length") == str(16 * 65536).encode()
        assert len(answer.body) == 16 * 65536


def test_no_body_responses_end_on_headers(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        for path, method in (("/status/204", "GET"), ("/status/304", "GET"), ("/", "HEAD")):
            sid = client.request(method, path)
            answer = client.response(sid)
            assert answer.ended_on_headers, path
            assert answer.data_frames == 0, path


def test_override_header_and_set_cookies(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        answer = client.get("/", headers=[("x-splitter-pool", "canary")])
        assert answer.body == b"canary"
        answer = client.get("/cookies")
        values = answer.headers_named(b"set-cookie")
        assert [b"a=1", b"b=2", b"c=3"] == [v for v in values if v[:2] in (b"a=", b"b=", b"c=")]


def test_malformed_stream_refused_connection_goes_on(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        sid = client.request("GET", "/", headers=[("x-bad", "a\x01b")])
        answer = client.response(sid)
        assert answer.status == 400
        assert answer.json()["status"] == 400  # type: ignore[index]
        big = [(f"x-h{i}", "v") for i in range(150)]
        sid = client.request("GET", "/", headers=big)
        assert client.response(sid).status == 431
        sid = client.request("CONNECT", "/")
        assert client.response(sid).status == 501
        assert client.get("/").status == 200  # the connection goes on


def test_backend_down_json_error(three_pools: dict[str, Backend], splitter_factory: Any) -> None:
    dead = socket.socket()
    dead.bind((LOCALHOST, 0))
    port = dead.getsockname()[1]
    dead.close()
    config = pools_config({"blue": f"http://{LOCALHOST}:{port}"}, {"blue": 100})
    config["health_check"]["interval"] = "1h"
    proc: SplitterProc = splitter_factory(config)
    with H2Client(proc.proxy_port) as client:
        answer = client.get("/")
        assert answer.status in (502, 503)
        body = answer.json()
        assert isinstance(body, dict) and body["status"] == answer.status
        assert answer.header(b"content-type") == b"application/json"
        # A gRPC request gets a trailers-only answer instead: HTTP 200, grpc-status 14.
        sid = client.request(
            "POST",
            "/pkg.Svc/Call",
            headers=[("content-type", "application/grpc"), ("te", "trailers")],
            body=b"\x00\x00\x00\x00\x00",
        )
        answer = client.response(sid)
        assert answer.status == 200
        assert answer.header(b"grpc-status") == b"14"
        assert answer.ended_on_headers and answer.data_frames == 0


def test_metrics_and_access_log_count_streams(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        for _ in range(5):
            assert client.get("/").status == 200
    samples = scrape(sp).all("splitter_requests_total", pool="blue")
    assert sum(s.value for s in samples) >= 5


def test_http11_still_served_beside_h2c(sp: SplitterProc) -> None:
    status, _, body = http_request(sp.proxy_url + "/")
    assert status == 200 and body == b"blue"


def test_tls_alpn_h2(
    tmp_path: Path, three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    pair = issue(tmp_path / "shop", "shop.example")
    config = pools_config({"blue": three_pools["blue"]}, {"blue": 100}, sticky={})
    config["tls"] = {"certificates": [pair]}
    proc: SplitterProc = splitter_factory(config)
    with H2Client(
        proc.proxy_port, context=client_context(), server_hostname="shop.example"
    ) as client:
        assert client.alpn == "h2"
        answer = client.get("/echo", authority="shop.example", scheme="https")
        assert answer.status == 200
        data = answer.json()
        assert isinstance(data, dict)
        headers = {k.lower(): v for k, v in data["headers"]}
        assert headers["x-forwarded-proto"] == "https"
        cookie = answer.headers_named(b"set-cookie")
        assert len(cookie) == 1 and cookie[0].endswith(b"; Secure")


def test_http2_false_keeps_http11(
    tmp_path: Path, three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    pair = issue(tmp_path / "shop", "shop.example")
    config = pools_config({"blue": three_pools["blue"]}, {"blue": 100}, http2=False)
    config["tls"] = {"certificates": [pair]}
    proc: SplitterProc = splitter_factory(config)
    context = client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="shop.example") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"


def test_shutdown_sends_goaway_and_finishes_streams(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    config = pools_config({"blue": three_pools["blue"]}, {"blue": 100})
    config["shutdown"] = {"grace": "10s"}
    proc: SplitterProc = splitter_factory(config)
    with H2Client(proc.proxy_port) as client:
        assert client.get("/").status == 200
        sid = client.request("GET", "/slow?seconds=1.5")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        answer = client.response(sid, timeout=10)
        assert answer.status == 200 and answer.body == b"slow"
        assert client.goaway is not None
        assert client.goaway.error_code == 0
        assert client.goaway.last_stream_id == sid
        assert client.read_until_closed(10)
    assert proc.wait(15) == 0


def _json(answer: Any) -> dict[str, Any]:
    data = json.loads(answer.body)
    assert isinstance(data, dict)
    return data


def test_segment_retry_and_access_log_hold_for_streams(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    """A segment reads a stream's header, a refused connect is retried on the pool's other
    backend, and each stream is one access log line that says HTTP/2."""
    dead = socket.socket()
    dead.bind((LOCALHOST, 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    config = pools_config(
        {
            "blue": [f"http://{LOCALHOST}:{dead_port}", three_pools["blue"]],
            "canary": three_pools["canary"],
        },
        {"blue": 100, "canary": 0},
    )
    config["health_check"].update(interval="1h", unhealthy_threshold=5)
    config["segments"] = [{"pool": "canary", "header": {"name": "X-Beta", "value": "1"}}]
    proc: SplitterProc = splitter_factory(config)
    with H2Client(proc.proxy_port) as client:
        for _ in range(12):  # about half land on the dead backend first: retried
            answer = client.get("/", headers=[("x-request-id", "h2-retry-0001")])
            assert answer.status == 200 and answer.body == b"blue"
        answer = client.get("/", headers=[("x-beta", "1")])
        assert answer.body == b"canary"
    refused = scrape(proc).all("splitter_upstream_errors_total", pool="blue", reason="connect")
    assert sum(s.value for s in refused) >= 1  # retried: no client saw it
    wait_until(lambda: len(proc.access_log()) >= 13, 10, message="13 access log lines")
    entries = proc.access_log()
    assert all(e.get("protocol") == "HTTP/2" for e in entries), entries
    assert [e["pool"] for e in entries].count("canary") == 1
    assert all(e["status"] == 200 for e in entries)
    assert any(e["request_id"] == "h2-retry-0001" for e in entries)


def test_shadow_copies_an_http2_request(splitter_factory: Any, tmp_path: Path) -> None:
    """A stream the weights send to the primary is copied to the shadow pool (as HTTP/1.1)
    and compared, like an HTTP/1.1 request."""
    from tests.support import start_shadow_backend

    primary = start_shadow_backend("blue", price=10)
    shadow = start_shadow_backend("canary", price=11)
    try:
        config = pools_config(
            {"blue": primary, "canary": shadow},
            {"blue": 100, "canary": 0},
            shadow={"pool": "canary", "share": 1.0},
        )
        proc: SplitterProc = splitter_factory(config)
        proc.wait_readyz()
        with H2Client(proc.proxy_port) as client:
            for i in range(5):
                assert client.get(f"/item-{i}").status == 200
        wait_until(
            lambda: admin_api(proc, "GET", "/api/v1/shadow")[1].get("compared", 0) >= 5,
            10,
            message="5 copies compared",
        )
        seen = admin_api(proc, "GET", "/api/v1/shadow")[1]
        assert seen["differ"] >= 5, seen  # the price differs: compared field by field
    finally:
        primary.stop()
        shadow.stop()

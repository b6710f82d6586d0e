"""The client's address end to end (docs/rollouts.md, "Evidence no client can steer"): PROXY
protocol headers from an L4 balancer, trusted proxies' X-Forwarded-For, what the backend
and the access log see; real sockets, a real backend, the real splitter process."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splitter.proxy.proxyproto import V2_SIGNATURE
from tests.rawhttp import RawConn, open_conn
from tests.support import (
    Backend,
    SplitterProc,
    pools_config,
    run_cli,
    start_splitter,
    wait_until,
    write_config,
)

ECHO = b"GET /echo HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 198.51.100.66\r\n\r\n"
HEADER_TIMEOUT = 1.0


def v2(family: int, source: str, destination: str, command: int = 1, tlvs: bytes = b"") -> bytes:
    af = socket.AF_INET if family == 0x11 else socket.AF_INET6
    body = b""
    if family in (0x11, 0x21):
        ports = b"\xdc\x04\x1f\x90"
        body = socket.inet_pton(af, source) + socket.inet_pton(af, destination) + ports
    body += tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def echoed_xff(conn: RawConn) -> str | None:
    response = conn.read_response()
    assert response.status == 200, response
    headers = dict(json.loads(response.body)["headers"])
    return headers.get("X-Forwarded-For")


def served(port: int, data: bytes) -> str | None:
    with RawConn(port) as conn:
        conn.send(data)
        return echoed_xff(conn)


def refused(port: int, data: bytes) -> tuple[bytes, float]:
    """Send `data`; (every byte received until the connection closed, seconds it took)."""
    sock = open_conn(port, timeout=HEADER_TIMEOUT + 5)
    started = time.monotonic()
    received = b""
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before it took everything
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    return received, time.monotonic() - started


def log_entries(sp: SplitterProc, count: int) -> list[dict[str, Any]]:
    return wait_until(lambda: (e := sp.access_log()) and len(e) >= count and e, 5)


@pytest.fixture(scope="module")
def balanced(three_pools: dict[str, Backend], tmp_path_factory) -> Iterator[SplitterProc]:
    """A splitter behind an L4 balancer: every connection starts with a PROXY header."""
    config = pools_config({"blue": three_pools["blue"]}, {"blue": 100})
    config.update(proxy_protocol=True, limits={"header_timeout": f"{HEADER_TIMEOUT}s"})
    sp = start_splitter(config, tmp_path_factory.mktemp("balanced"))
    yield sp
    sp.stop()


# -- PROXY protocol -------------------------------------------------------------------------


def test_a_proxy_header_names_the_client_for_the_backend_and_the_log(
    balanced: SplitterProc,
) -> None:
    port = balanced.proxy_port
    before = len(balanced.access_log())
    cases = [
        (b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 8080\r\n", "203.0.113.7"),
        (b"PROXY TCP6 2001:DB8::7 2001:db8::1 56324 8080\r\n", "2001:db8::7"),
        (v2(0x11, "203.0.113.8", "10.0.0.1", tlvs=b"\xea\x00\x04\x01vpc" + b"\x04" * 300),
         "203.0.113.8"),
        (v2(0x21, "2001:db8::8", "2001:db8::1"), "2001:db8::8"),
        (v2(0x00, "", "", command=0), "127.0.0.1"),  # LOCAL: the balancer's own check
        (b"PROXY UNKNOWN\r\n", "127.0.0.1"),
    ]  # fmt: skip
    for header, client in cases:
        # X-Forwarded-For: what the client sent, then the client's address (not the peer's).
        assert served(port, header + ECHO) == f"198.51.100.66, {client}"
    entries = log_entries(balanced, before + len(cases))[before:]
    assert [e["client_addr"] for e in entries] == [client for _, client in cases]
    assert {e["client"] for e in entries} == {"127.0.0.1"}  # the connection's peer, as before


def test_one_header_serves_every_request_of_its_connection(balanced: SplitterProc) -> None:
    with RawConn(balanced.proxy_port) as conn:
        conn.send(b"PROXY TCP4 203.0.113.9 10.0.0.1 56324 8080\r\n" + ECHO)
        assert echoed_xff(conn) == "198.51.100.66, 203.0.113.9"
        conn.send(ECHO)  # no second header: these bytes are the next request
        assert echoed_xff(conn) == "198.51.100.66, 203.0.113.9"


def test_a_header_split_over_many_tiny_packets_is_read(balanced: SplitterProc) -> None:
    header = v2(0x11, "203.0.113.10", "10.0.0.1", tlvs=b"\x04\x00\x20" + b"x" * 32)
    with RawConn(balanced.proxy_port) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(header)):
            conn.send(header[i : i + 1])
            time.sleep(0.002)
        conn.send(ECHO)
        assert echoed_xff(conn) == "198.51.100.66, 203.0.113.10"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(ECHO, id="no-header"),
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 80\r\n" + ECHO, id="bad-port"),
        pytest.param(b"PROXY TCP4 203.0.113.7\r\n" + ECHO, id="truncated-v1"),
        pytest.param(b"PROXY TCP4 " + b"1" * 4096, id="oversized-v1"),
        pytest.param(V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\x00" * 100, id="v2-claims-64k"),
        pytest.param(V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12 + ECHO, id="v2-version"),
        pytest.param(V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x00" * 12 + ECHO, id="v2-udp"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64, id="tls"),
    ],
)
def test_a_connection_without_a_valid_header_is_closed_at_once_unanswered(
    balanced: SplitterProc, data: bytes
) -> None:
    received, seconds = refused(balanced.proxy_port, data)
    assert received == b""  # not even a 400: the peer does not speak our protocol
    assert seconds < HEADER_TIMEOUT  # refused as soon as it is invalid, not at the deadline
    assert served(balanced.proxy_port, b"PROXY UNKNOWN\r\n" + ECHO)  # others are served


def test_a_header_that_never_completes_is_closed_at_the_header_timeout(
    balanced: SplitterProc,
) -> None:
    sock = open_conn(balanced.proxy_port, timeout=HEADER_TIMEOUT + 5)
    started = time.monotonic()
    try:
        sock.sendall(b"PROXY TCP4 203.0")
        time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(b".113")  # a trickle does not extend the deadline
        try:
            received = sock.recv(1024)
        except ConnectionResetError:
            received = b""
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert received == b""
    assert HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + 1.5
    balanced.wait_for_stderr(r"refused a connection: PROXY header timeout")


def test_refused_connections_are_logged_at_most_once_a_second_per_reason(
    balanced: SplitterProc,
) -> None:
    for _ in range(20):
        refused(balanced.proxy_port, b"GET / HTTP/1.1\r\n\r\n")
    lines = [
        line for line in balanced.stderr_text().splitlines()
        if "refused a connection: no PROXY protocol header" in line
    ]  # fmt: skip
    assert 1 <= len(lines) <= 3
    assert "Traceback" not in balanced.stderr_text()


# -- trusted proxies ------------------------------------------------------------------------


def test_a_trusted_proxys_x_forwarded_for_names_the_client(
    three_pools: dict[str, Backend], splitter_factory
) -> None:
    """127.0.0.0/8 plays the proxies in front of splitter: their X-Forwarded-For is walked
    from the right, past their own addresses; what a client wrote before is ignored."""
    sp = splitter_factory(
        pools_config({"blue": three_pools["blue"]}, {"blue": 100}, trusted_proxies=["127.0.0.0/8"])
    )
    port = sp.proxy_port
    chain = b"10.66.66.66, 6.6.6.6, 203.0.113.7, 127.0.0.9, 127.0.0.8"
    assert served(port, ECHO.replace(b"198.51.100.66", chain)) == chain.decode() + ", 127.0.0.1"
    cases = [
        (b"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 203.0.113.8, 127.0.0.9\r\n", "203.0.113.8"),
        (b"X-Forwarded-For: 203.0.113.9, garbage, 127.0.0.9\r\n", "127.0.0.9"),
        (b"X-Forwarded-For: [2001:db8::9]:4711\r\n", "2001:db8::9"),
        (b"", "127.0.0.1"),
    ]  # fmt: skip
    for lines, _ in cases:
        served(port, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n" + lines + b"\r\n")
    entries = log_entries(sp, 1 + len(cases))
    assert [e["client_addr"] for e in entries] == ["203.0.113.7"] + [c for _, c in cases]


def test_an_untrusted_peers_x_forwarded_for_is_never_believed(
    three_pools: dict[str, Backend], splitter_factory
) -> None:
    sp = splitter_factory(
        pools_config({"blue": three_pools["blue"]}, {"blue": 100}, trusted_proxies=["10.0.0.0/8"])
    )
    # Forwarded as always (what was sent, and the peer), but not the client's address.
    assert served(sp.proxy_port, ECHO.replace(b"198.51.100.66", b"203.0.113.7, 10.0.0.2")) == (
        "203.0.113.7, 10.0.0.2, 127.0.0.1"
    )
    [entry] = log_entries(sp, 1)
    assert entry["client_addr"] == "127.0.0.1"


def test_check_names_each_bad_cidr_with_its_path_and_line(tmp_path: Path) -> None:
    text = (
        "listen: 127.0.0.1:8080\n"
        "trusted_proxies:\n"
        "  - 10.0.0.0/8\n"
        "  - 10.0.0.0/40\n"
        "  - fd00::/8\n"
        "  - 172.16.0.1/12\n"
        "proxy_protocol: yes please\n"
        "pools:\n"
        "  blue: {weight: 1, backends: [http://127.0.0.1:5001]}\n"
    )
    path = write_config(tmp_path / "bad.yaml", text)
    result = run_cli("check", "-c", str(path))
    assert result.returncode != 0
    assert "trusted_proxies[1] (line 4): not a CIDR" in result.stderr
    assert "trusted_proxies[3] (line 6): not a CIDR: 172.16.0.1/12 has host bits set" in (
        result.stderr
    )
    assert "proxy_protocol (line 7): must be true or false" in result.stderr
    assert "trusted_proxies[2]" not in result.stderr and "Traceback" not in result.stderr
    good = write_config(tmp_path / "good.yaml", text.replace("/40", "/24").replace(
        "172.16.0.1/12", "172.16.0.0/12").replace("yes please", "true"))  # fmt: skip
    assert run_cli("check", "-c", str(good)).returncode == 0

"""TLS under attack (contract section 13): the real splitter process on loopback with a
TLS listener, hostile and odd clients (raw sockets, hand-made ClientHellos, TLS clients
driven by hand that stall, trickle, pipeline or vanish), hostile and odd https://
backends, and the certificate files mishandled. Every load loop is bounded; everything is
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SplitterFactory
from tests.e2e.test_metrics import scrape, scrape_when
from tests.e2e.test_tls import (
    CA,
    base,
    ca_file,
    client_context,
    get,
    issue,
    served_names,
    tls_connect,
)
from tests.rawbackend import RawBackend
from tests.rawhttp import Response, parse_responses
from tests.support import (
    LOCALHOST,
    NO_HEALTH_DOWN,
    Backend,
    SplitterProc,
    pattern_chunk,
    start_aio_backend,
    start_splitter,
    stream_sha256,
    wait_until,
)

MIB = 1 << 20
SNI_PLACEHOLDER = b"aaaa.example.com"
HOLD_LIMIT = 64 * 1024  # splitter.proxy.downstream.HOLD_LIMIT


# --------------------------------------------------------------------------- helpers


def client_hello(server_name: str = SNI_PLACEHOLDER.decode(), **settings: object) -> bytes:
    """The first flight of a default ssl client (its ClientHello), as bytes on the wire;
    `settings` set attributes of its context (maximum_version, ...)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for name, value in settings.items():
        setattr(context, name, value)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def read_until_close(sock: socket.socket, timeout: float = 5) -> tuple[bytes, str]:
    """Everything the peer sends until it closes: (data, "eof" | "reset" | "timeout")."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    except TimeoutError:
        return data, "timeout"
    return data, "eof"


class TLSPipe:
    """A TLS client driven by hand (an SSLObject over memory BIOs on a socket): it can
    trickle its handshake, send a close_notify or a bare FIN whenever it likes, and go on
    reading. `preface` goes out before the first TLS byte (a PROXY protocol header)."""

    def __init__(
        self,
        port: int,
        server_name: str | None = "localhost",
        preface: bytes = b"",
        trickle: bool = False,
        timeout: float = 5,
    ) -> None:
        context = client_context()
        context.check_hostname = False
        self.sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        self.ended = ""  # how the socket ended: "eof" or "reset"
        if preface:
            self.sock.sendall(preface)
        for _ in range(20):
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush(trickle)
                if not self._fill():
                    break
        raise AssertionError(f"no handshake ({self.ended})")

    def _flush(self, trickle: bool = False) -> None:
        out = self.outgoing.read()
        if trickle:
            for i in range(len(out)):
                self.sock.sendall(out[i : i + 1])
                time.sleep(0.001)
        elif out:
            self.sock.sendall(out)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data, self.ended = b"", "reset"
        if not data:
            self.ended = self.ended or "eof"
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def close_notify(self) -> None:
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def fin(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def read(self, until: float = 5, want: int | None = None) -> tuple[bytes, str]:
        """Plaintext until the peer closes, `want` bytes came, or `until` seconds passed:
        (data, "close_notify" | "eof" | "reset" | "want" | "timeout")."""
        deadline = time.monotonic() + until
        data = b""
        while True:
            try:
                while chunk := self.tls.read(65536):
                    data += chunk
                    if want is not None and len(data) >= want:
                        return data, "want"
                return data, "close_notify"
            except ssl.SSLZeroReturnError:
                return data, "close_notify"
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:  # the socket ended without a close_notify
                return data, self.ended or "eof"
            left = deadline - time.monotonic()
            if left <= 0:
                return data, "timeout"
            self.sock.settimeout(left)
            try:
                self._fill()
            except TimeoutError:
                return data, "timeout"

    def responses(self, n: int, until: float = 10) -> list[Response]:
        """Read until `n` complete responses came (or the time is up)."""
        deadline = time.monotonic() + until
        data = b""
        while time.monotonic() < deadline:
            more, how = self.read(until=0.2)
            data += more
            try:
                parsed = parse_responses(data)
            except ValueError:
                parsed = []
            if len(parsed) >= n and all(r.complete for r in parsed[:n]):
                return parsed
            if how not in ("timeout", "want"):
                break
        return parse_responses(data)

    def close(self) -> None:
        self.sock.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def still_serves(proc: SplitterProc) -> None:
    with tls_connect(proc, "localhost") as tls:
        assert b"200 OK" in get(tls)


def tracebacks(proc: SplitterProc) -> list[str]:
    text = proc.stderr_text()
    return [line for line in text.splitlines() if "Traceback" in line or "Exception" in line]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def aio() -> Iterator[Backend]:
    backend = start_aio_backend("ws")
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory,
    three_pools: dict[str, Backend],
    aio: Backend,
) -> Iterator[SplitterProc]:
    """One TLS splitter for the tests that change nothing: blue (Flask) by weight, ws
    (aiohttp, WebSocket echo) by the override header; a 2 s header deadline."""
    work = tmp_path_factory.mktemp("tls-hostile")
    config = base(
        three_pools["blue"].url,
        [issue(work / "tls", "localhost")],
        limits={"header_timeout": "2s"},
        override={"header": "X-Splitter-Pool"},
    )
    config["pools"]["ws"] = {"weight": 0, "backends": [aio.url]}
    proc = start_splitter(config, work)
    yield proc
    proc.stop()
    assert tracebacks(proc) == [], proc.stderr_text()[-3000:]


# --------------------------------------------------------------------------- the ClientHello


def test_an_sni_name_with_odd_bytes_is_refused_without_a_traceback_per_connection(
    proxy: SplitterProc,
) -> None:
    """RFC 6066 server names are ASCII; OpenSSL passes any other byte on, and Python's SNI
    callback (there with several certificates) cannot decode it: the handshake fails. That
    must cost one rate-limited log line, not a traceback on stderr for every such
    ClientHello; with one certificate no callback runs and the handshake goes on."""
    for odd in (b"\xff\xfe\xfd\xfc", b"\x80abc", b"a b\x01", b"\x7f.\x7f\x7f"):
        hello = client_hello().replace(SNI_PLACEHOLDER, odd + SNI_PLACEHOLDER[4:])
        for _ in range(10):
            with socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5) as sock:
                sock.sendall(hello)
                data, _ = read_until_close(sock, timeout=0.5)  # ASCII ones get a ServerHello
                assert not data.startswith(b"HTTP/")
    still_serves(proxy)
    assert tracebacks(proxy) == []
    refused = [line for line in proxy.stderr_text().splitlines() if "CALLBACK_FAILED" in line]
    assert len(refused) <= 3  # once per reason per second


def test_a_client_hello_in_one_byte_writes_is_served(proxy: SplitterProc) -> None:
    pipe = TLSPipe(proxy.proxy_port, trickle=True)
    try:
        pipe.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        [response] = pipe.responses(1)
        assert response.status == 200 and response.body == b"blue"
    finally:
        pipe.close()


def huge_client_hello(size: int) -> bytes:
    """A ClientHello handshake message announcing `size` bytes, in 16 KiB records."""
    message = b"\x01" + size.to_bytes(3, "big") + b"\x03\x03" + os.urandom(size - 2)
    return b"".join(
        b"\x16\x03\x01" + struct.pack(">H", len(message[i : i + 16384])) + message[i : i + 16384]
        for i in range(0, len(message), 16384)
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(huge_client_hello(200_000), id="huge-client-hello"),
        pytest.param(b"\x16\x03\x01\xff\xff" + b"\x00" * 1000, id="record-too-long"),
        pytest.param(b"\x16" + bytes(range(256)) * 2, id="garbage-after-0x16"),
        pytest.param(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00" * 3, id="hello-too-short"),
        pytest.param(client_hello() + b"\x16\x03\x03\x00\x00", id="then-an-empty-record"),
        pytest.param(client_hello() + b"\x17\x03\x03\x00\x10" + b"A" * 16, id="then-app-data"),
        pytest.param(client_hello() + client_hello(), id="two-client-hellos"),
        pytest.param(client_hello() + b"\x15\x03\x03\x00\x02\x02\x99", id="then-an-odd-alert"),
    ],
)
def test_a_malformed_handshake_is_cut_at_once_without_http(
    proxy: SplitterProc, payload: bytes
) -> None:
    with socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5) as sock:
        started = time.monotonic()
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut while it was still sending
        data, how = read_until_close(sock, timeout=5)
        assert how in ("eof", "reset")
        assert time.monotonic() - started < 1.5  # not at the header deadline: at once
    assert data[:1] in (b"", b"\x15", b"\x16")  # nothing, an alert, a ServerHello; no HTTP
    still_serves(proxy)


def test_stalled_handshakes_are_cut_at_the_header_deadline_and_hold_no_memory(
    proxy: SplitterProc,
) -> None:
    """Waves of connections that start a handshake and stall (nothing, the first byte,
    half a ClientHello): every one is cut at header_timeout (2 s) from its accept, other
    clients are served meanwhile, and splitter's memory comes back to where it was."""
    hello = client_hello()
    stalls = [b"", b"\x16", hello[: len(hello) // 2]]
    still_serves(proxy)
    before = rss_kib(proxy.pid)
    peaks = []
    for _ in range(2):
        socks = []
        started = time.monotonic()
        for i in range(150):
            sock = socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=10)
            sock.sendall(stalls[i % len(stalls)])
            socks.append(sock)
        still_serves(proxy)  # not starved by the stalled ones
        peaks.append(rss_kib(proxy.pid))
        for sock in socks:
            data, how = read_until_close(sock, timeout=10)
            assert (data, how) == (b"", "eof")  # cut without a word
            sock.close()
        assert time.monotonic() - started < 5.0
    assert peaks[1] - before < 16 * 1024, (before, peaks)  # KiB: no growth wave to wave
    assert peaks[1] - peaks[0] < 8 * 1024, peaks
    log = proxy.stderr_text()
    assert "TLS handshake timeout" in log
    assert "408" not in log.split("TLS handshake timeout")[-1]  # no HTTP was spoken


def test_a_client_that_offers_only_h2_gets_h2_and_is_served(proxy: SplitterProc) -> None:
    """ALPN offers h2 (section 14): a client that offers only h2 gets it, and its requests
    are answered over HTTP/2."""
    from tests.h2client import H2Client

    context = client_context()
    context.set_alpn_protocols(["h2"])
    sock = socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5)
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2"
    with H2Client(proxy.proxy_port, context=client_context(), server_hostname="localhost") as h2:
        assert h2.alpn == "h2"
        assert h2.get("/", authority="localhost", scheme="https").status == 200


def test_a_client_initiated_renegotiation_is_refused(proxy: SplitterProc) -> None:
    from nassl._nassl import OpenSSLError
    from nassl.legacy_ssl_client import LegacySslClient
    from nassl.ssl_client import OpenSslVerifyEnum, OpenSslVersionEnum

    sock = socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5)
    client = LegacySslClient(
        ssl_version=OpenSslVersionEnum.TLSV1_2,
        underlying_socket=sock,
        ssl_verify=OpenSslVerifyEnum.NONE,
    )
    try:
        client.do_handshake()
        with pytest.raises(OpenSSLError, match="no renegotiation"):
            client.do_renegotiate()
    finally:
        sock.close()
    still_serves(proxy)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    ("version", "ciphers"),
    [
        pytest.param(ssl.TLSVersion.TLSv1, "ALL:@SECLEVEL=0", id="tls1.0"),
        pytest.param(ssl.TLSVersion.TLSv1_1, "ALL:@SECLEVEL=0", id="tls1.1"),
        pytest.param(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA", id="cbc"),
        pytest.param(ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256:AES256-SHA", id="rsa-kx"),
        pytest.param(ssl.TLSVersion.TLSv1_2, "DHE-RSA-AES128-GCM-SHA256", id="dhe"),
        pytest.param(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0", id="null"),
    ],
)
def test_old_versions_and_suites_that_are_not_forward_secret_aead_fail(
    proxy: SplitterProc, version: ssl.TLSVersion, ciphers: str
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = version
    context.set_ciphers(ciphers)
    with socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError) as refused:
            context.wrap_socket(sock, server_hostname="localhost")
    # splitter's alert, not this client's own refusal to try
    assert refused.value.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "SSLV3_ALERT_HANDSHAKE_FAILURE")
    # The same client with a suite of the profile is served.
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0")
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    sock = socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5)
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.2"


# --------------------------------------------------------------------------- plain text


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([b"GET / HTTP/1.1\r\n", b"Host: localhost\r\n\r\n"], id="split"),
        pytest.param([b"G", b"ET / HTTP/1.1\r\nHost: localhost\r\n\r\n"], id="first-byte-alone"),
        pytest.param([b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"], id="put"),
        pytest.param([b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"], id="delete"),
        pytest.param([b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"], id="options"),
        pytest.param([b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"], id="connect"),
        pytest.param([b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"], id="h2-prior-knowledge"),
        pytest.param(
            [b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n", b"x" * MIB],
            id="post-with-a-body",
        ),
    ],
)
def test_plain_http_of_any_method_gets_the_400_that_says_https(
    proxy: SplitterProc, parts: list[bytes]
) -> None:
    with socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5) as sock:
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # answered and closed while the rest was on its way
            time.sleep(0.05)
        data, _ = read_until_close(sock)
    [response] = parse_responses(data)
    assert response.status == 400 and b"https://" in response.body
    assert response.header("Connection") == "close"


@pytest.mark.parametrize(
    "payload",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x00\x01\x02\x03", b"hello\r\n", b"get / http/1.1\r\n\r\n"],
)
def test_what_is_neither_tls_nor_http_is_cut_without_a_word(
    proxy: SplitterProc, payload: bytes
) -> None:
    with socket.create_connection((LOCALHOST, proxy.proxy_port), timeout=5) as sock:
        sock.sendall(payload)
        data, how = read_until_close(sock)
    assert data == b"" and how in ("eof", "reset")


# --------------------------------------------------------------------------- the data path over TLS


def test_pipelined_requests_over_tls_are_answered_in_order(proxy: SplitterProc) -> None:
    pipe = TLSPipe(proxy.proxy_port)
    try:
        requests = b"".join(
            b"GET /echo?i=%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i for i in range(19)
        )
        last = b"GET /echo?i=19 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        pipe.send(requests + last)
        responses = pipe.responses(20)
    finally:
        pipe.close()
    assert [r.status for r in responses] == [200] * 20
    assert [json.loads(r.body)["raw_uri"] for r in responses] == [f"/echo?i={i}" for i in range(20)]


def test_the_clients_close_notify_or_fin_after_a_request_still_gets_the_answer(
    proxy: SplitterProc,
) -> None:
    for end in ("close_notify", "fin"):
        pipe = TLSPipe(proxy.proxy_port)
        try:
            pipe.send(b"GET /slow?seconds=0.3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            getattr(pipe, end)()
            data, how = pipe.read()
        finally:
            pipe.close()
        [response] = parse_responses(data)
        assert response.body == b"slow", end
        assert how == "close_notify", end  # then splitter closes, cleanly


def test_the_clients_close_notify_or_fin_in_the_middle_of_a_body_is_answered_at_once(
    proxy: SplitterProc,
) -> None:
    """The body can never end: 400 now (the body deadline is 30 s), the backend's request
    aborted."""
    for end in ("close_notify", "fin"):
        pipe = TLSPipe(proxy.proxy_port)
        try:
            pipe.send(
                b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123"
            )
            time.sleep(0.2)
            started = time.monotonic()
            getattr(pipe, end)()
            data, _ = pipe.read(until=10)
            assert time.monotonic() - started < 2.0, end
        finally:
            pipe.close()
        [response] = parse_responses(data)
        assert response.status == 400, end


def test_a_client_that_reads_nothing_does_not_make_splitter_hold_the_response(
    proxy: SplitterProc,
) -> None:
    """128 MiB streamed by the backend to a TLS client that stops reading after the head:
    splitter holds what its socket buffers take, not the response; then all of it arrives,
    intact."""
    n, size = 2048, 65536
    still_serves(proxy)
    before = rss_kib(proxy.pid)
    conn = http.client.HTTPSConnection(
        "localhost", proxy.proxy_port, timeout=30, context=client_context()
    )
    try:
        conn.request("GET", f"/stream?n={n}&size={size}")
        response = conn.getresponse()
        assert response.status == 200
        peak = before
        for _ in range(15):  # 3 s of not reading
            time.sleep(0.2)
            peak = max(peak, rss_kib(proxy.pid))
        digest = hashlib.sha256()
        total = 0
        while chunk := response.read(MIB):
            total += len(chunk)
            digest.update(chunk)
    finally:
        conn.close()
    assert total == n * size
    assert digest.hexdigest() == stream_sha256(n, size)
    assert peak - before < 32 * 1024, f"RSS {before} KiB before, {peak} KiB while not reading"


def test_a_big_upload_over_tls_streams_with_flat_memory(proxy: SplitterProc) -> None:
    n, size = 1024, 65536
    chunk = pattern_chunk(size)
    still_serves(proxy)
    before = rss_kib(proxy.pid)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.1):
            peak = max(peak, rss_kib(proxy.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    conn = http.client.HTTPSConnection(
        "localhost", proxy.proxy_port, timeout=60, context=client_context()
    )
    try:
        conn.request(
            "POST",
            "/upload",
            body=(chunk for _ in range(n)),
            headers={"Content-Length": str(n * size)},
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
        stop.set()
        sampler.join()
    assert response.status == 200, body[:300]
    assert json.loads(body) == {"bytes": n * size, "sha256": stream_sha256(n, size)}
    assert peak - before < 32 * 1024, f"RSS {before} KiB before, {peak} KiB peak"


# --------------------------------------------------------------------------- WebSocket over TLS


def test_a_websocket_over_tls_echoes_every_message_once(proxy: SplitterProc) -> None:
    import aiohttp

    big = os.urandom(3 * MIB // 2)

    async def talk() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                f"wss://localhost:{proxy.proxy_port}/ws",
                ssl=client_context(),
                headers={"X-Splitter-Pool": "ws"},
                max_msg_size=4 * MIB,
            ) as ws:
                for i in range(50):
                    await ws.send_str(f"message {i}")
                for i in range(50):
                    assert await ws.receive_str(timeout=5) == f"message {i}"
                await ws.send_bytes(big)
                assert await ws.receive_bytes(timeout=10) == big
                await ws.send_str("close")
                closed = await ws.receive(timeout=5)
                assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    asyncio.run(talk())


def ws_frame(payload: bytes) -> bytes:
    """A masked binary WebSocket frame, as a client sends it."""
    mask = os.urandom(4)
    head = b"\x82"
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_payloads(data: bytes) -> tuple[list[bytes], bytes]:
    """The payloads of the server's (unmasked) frames in `data`; the bytes left over."""
    out = []
    while len(data) >= 2:
        length, at = data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                break
            length, at = struct.unpack(">H", data[2:4])[0], 4
        if len(data) < at + length:
            break
        out.append(data[at : at + length])
        data = data[at + length :]
    return out, data


def test_websocket_frames_sent_before_the_101_over_tls_arrive_once_and_in_order(
    proxy: SplitterProc,
) -> None:
    """Frames sent with the upgrade's head and right behind it, before the 101 can have
    come (as much as splitter holds for an upgrade), are held, then passed on in order,
    each exactly once, before those sent after the 101."""
    payloads = [b"%06d" % i + b"." * 4000 for i in range(32)]  # 32 x ~4 KiB
    frames = [ws_frame(p) for p in payloads]
    assert sum(len(f) for f in frames[:16]) < HOLD_LIMIT
    head = (
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"X-Splitter-Pool: ws\r\n\r\n"
    )
    pipe = TLSPipe(proxy.proxy_port)
    try:
        pipe.send(head + b"".join(frames[:8]))
        for frame in frames[8:16]:
            pipe.send(frame)
        data, _ = pipe.read(until=10, want=1)
        for frame in frames[16:]:
            pipe.send(frame)
        while True:
            end = data.find(b"\r\n\r\n")
            if end > 0:
                assert data.startswith(b"HTTP/1.1 101 "), data[:200]
                echoed, rest = ws_payloads(data[end + 4 :])
                if len(echoed) >= len(payloads):
                    break
            more, how = pipe.read(until=5, want=1)
            assert more, how
            data += more
        assert echoed == payloads and rest == b""
        # The client's close_notify reaches the backend as the end of its side; the
        # backend's close comes back, and splitter ends the TLS cleanly.
        pipe.close_notify()
        _, how = pipe.read(until=5)
        assert how == "close_notify"
    finally:
        pipe.close()


def test_an_upgrade_over_tls_waiting_for_its_101_holds_bounded_memory_and_loses_nothing(
    tmp_path: Path,
    raw_backend: object,
    splitter_factory: SplitterFactory,
) -> None:
    """A TLS client pushes as fast as it can while the backend takes 2.5 s to answer its
    upgrade: splitter stops reading (what it holds: HOLD_LIMIT, and one socket read's
    worth in the TLS shell), its memory stays flat, the client's sends block; after the
    101 every byte reaches the backend once, in order."""
    from tests.e2e.test_holes import PeakRss, _numbered_chunk, _numbered_stream
    from tests.rawbackend import DRAIN

    hello = b"TUNNEL-HELLO"
    switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n"
    backend: RawBackend = raw_backend(  # type: ignore[operator]
        lambda head: [2.5, switch, hello, DRAIN] if b" /hold " in head else None
    )
    config = base(backend.url, [issue(tmp_path, "localhost")])
    proc = splitter_factory(config)
    pipe = TLSPipe(proc.proxy_port)
    try:
        pipe.send(
            b"GET /hold HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n"
        )
        wait_until(lambda: any(b" /hold " in h for h in backend.heads()), timeout=3)
        rss = PeakRss(proc.pid)
        sock = pipe.sock
        sock.setblocking(False)
        sent, k, cipher = 0, 0, b""  # plaintext handed to TLS; ciphertext not yet sent
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            if not cipher:
                pipe.tls.write(_numbered_chunk(k))
                cipher = pipe.outgoing.read()
                sent += 65536
                k += 1
            try:
                cipher = cipher[sock.send(cipher) :]
            except BlockingIOError:
                time.sleep(0.002)
        growth = rss.growth()
        sock.settimeout(10)
        sock.sendall(cipher)  # the rest of the last chunk, once reading resumes
        sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        bound = sndbuf + 8 * MIB + HOLD_LIMIT + 2 * 256 * 1024 + 65536
        assert growth < 16 * MIB, f"splitter's peak RSS grew by {growth / MIB:.1f} MiB"
        assert sent <= bound, f"the client pushed {sent / MIB:.1f} MiB (bound {bound / MIB:.1f})"
        data, _ = pipe.read(until=10, want=len(switch) + len(hello) + 200)
        assert data.startswith(b"HTTP/1.1 101 ") and data.endswith(hello), data[-200:]
        pipe.send(b"END")

        def tunnelled() -> bytes | None:
            [raw] = [r for r in backend.proxied() if b" /hold " in r]
            after = raw.split(b"\r\n\r\n", 1)[1]
            return after if after.endswith(b"END") else None

        after = wait_until(tunnelled, 15, message="every tunnelled byte at the backend")
    finally:
        pipe.close()
    assert len(after) == sent + 3, (len(after), sent)
    assert after == _numbered_stream(sent) + b"END", "tunnelled bytes changed or reordered"


# --------------------------------------------------------------------------- PROXY protocol


def test_proxy_protocol_then_tls_takes_the_client_address_from_the_header(
    tmp_path: Path,
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
) -> None:
    config = base(
        three_pools["blue"].url,
        [issue(tmp_path, "localhost")],
        proxy_protocol=True,
        limits={"header_timeout": "2s"},
    )
    proc = splitter_factory(config)
    v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n"
    v2 = (
        b"\r\n\r\n\x00\r\nQUIT\n"  # signature
        + b"\x21\x11"  # version 2, PROXY; TCP over IPv4
        + struct.pack(">H", 12)
        + socket.inet_aton("198.51.100.9")
        + socket.inet_aton("127.0.0.1")
        + struct.pack(">HH", 52000, 443)
    )
    for preface, address in ((v1, "203.0.113.7"), (v2, "198.51.100.9")):
        pipe = TLSPipe(proc.proxy_port, preface=preface)
        try:
            pipe.send(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            [response] = pipe.responses(1)
        finally:
            pipe.close()
        headers = dict(json.loads(response.body)["headers"])
        assert headers["X-Forwarded-For"] == address
        assert headers["X-Forwarded-Proto"] == "https"
    # The header split across two writes, the ClientHello right behind its end.
    hello = client_hello()
    with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=5) as sock:
        sock.sendall(v1[:10])
        time.sleep(0.1)
        sock.sendall(v1[10:] + hello)
        sock.settimeout(5)
        assert sock.recv(5)[:1] == b"\x16"  # the ServerHello
    # TLS without the header: no HTTP was spoken, cut without a word.
    with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=5) as sock:
        sock.sendall(hello)
        data, _ = read_until_close(sock)
    assert data == b""
    wait_until(
        lambda: any(
            e.get("client_addr") == "203.0.113.7" and e.get("target") == "/echo"
            for e in proc.access_log()
        ),
        timeout=5,
    )


# --------------------------------------------------------------------------- the certificate files


def _fifo(path: str) -> None:
    os.remove(path)
    os.mkfifo(path)


def _directory(path: str) -> None:
    os.remove(path)
    os.mkdir(path)


def _symlink_loop(path: str) -> None:
    os.remove(path)
    os.symlink(path + ".b", path)
    os.symlink(path, path + ".b")


def _huge(path: str) -> None:
    with open(path, "ab") as f:
        f.write(b"#" * (64 * MIB))


def _emptied(path: str) -> None:
    open(path, "wb").close()


def _undo(path: str) -> None:
    if os.path.islink(path + ".b"):
        os.remove(path + ".b")
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def test_certificate_files_out_of_shape_keep_the_old_certificate_without_spinning(
    tmp_path: Path,
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
) -> None:
    """Each file in turn made a FIFO (which would block an open), a directory, a symbolic
    link loop, 64 MiB, empty: the certificate in force stays, requests go on, each is one
    counted error; splitter's CPU stays low meanwhile; a good pair is taken after."""
    pair = issue(tmp_path / "tls", "v1.example.com")
    good = {which: Path(pair[which]).read_bytes() for which in ("cert", "key")}
    proc = splitter_factory(base(three_pools["blue"].url, [pair]))
    cpu_before, started = cpu_seconds(proc.pid), time.monotonic()
    errors = 0
    for which in ("cert", "key"):
        path = pair[which]
        for damage in (_fifo, _directory, _symlink_loop, _huge, _emptied):
            damage(path)
            errors += 1
            scrape_when(
                proc,
                lambda s, n=errors: s.value("splitter_tls_reloads_total", result="error") == n,
                f"{damage.__name__} on the {which}: one failed reload",
            )
            assert served_names(proc, None) == ["v1.example.com"]
            still_serves(proc)
            _undo(path)
            Path(path).write_bytes(good[which])
    busy = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - started)
    assert busy < 0.25, f"splitter used {busy:.0%} of a CPU while the files were broken"
    log = proc.stderr_text()
    for reason in ("is not a regular file", "Too many levels of symbolic links", "1 MiB"):
        assert reason in log
    new = issue(tmp_path / "new", "v2.example.com")
    shutil.copy(new["key"], pair["key"])
    shutil.copy(new["cert"], pair["cert"])
    wait_until(lambda: served_names(proc, None) == ["v2.example.com"], timeout=5)
    assert scrape(proc).value("splitter_tls_reloads_total", result="success") >= 1


# --------------------------------------------------------------------------- https backends


class TLSScriptBackend:
    """An https:// backend on 127.0.0.1 that answers each request (other than GET
    /healthz, a 200) with a script: bytes are sent, a float sleeps, "fin" closes the TCP
    connection without a TLS close_notify, "notify" sends one and closes."""

    def __init__(self, cert: str, key: str, script: list[bytes | float | str]) -> None:
        self.script = script
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server_names: list[str | None] = []  # the SNI of each handshake
        self.context.sni_callback = lambda _o, name, _c: self.server_names.append(name)
        self.sock = socket.socket()
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = tls.recv(65536)
                    if not data:
                        tls.close()
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                if head.startswith(b"GET /healthz"):
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    continue
                for step in self.script:
                    if isinstance(step, float):
                        time.sleep(step)
                    elif step == "fin":
                        tls.close()  # Python's close sends no close_notify
                        return
                    elif step == "notify":
                        tls.unwrap().close()
                        return
                    else:
                        assert isinstance(step, bytes)
                        tls.sendall(step)
        except (OSError, ssl.SSLError):
            tls.close()

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture
def tls_backend(tmp_path: Path) -> Iterator[tuple[str, list[TLSScriptBackend]]]:
    """(the CA file, a list the test appends its backends to: stopped at teardown)."""
    made: list[TLSScriptBackend] = []
    yield ca_file(tmp_path), made
    for backend in made:
        backend.stop()


def https_config(url: str, ca: str) -> dict[str, object]:
    return {
        "pools": {"blue": {"weight": 100, "backends": [url], "tls": {"ca": ca}}},
        "health_check": NO_HEALTH_DOWN,
    }


def plain_get(proc: SplitterProc, path: str = "/") -> tuple[bytes, str]:
    with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_until_close(sock)


CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 1000


@pytest.mark.parametrize(
    ("script", "complete"),
    [
        pytest.param([CLOSE_DELIMITED, 0.2, "notify"], True, id="close-delimited-close-notify"),
        pytest.param([CLOSE_DELIMITED, 0.2, "fin"], False, id="close-delimited-bare-fin"),
        pytest.param(
            [b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 1000, 0.2, "notify"],
            False,
            id="short-content-length",
        ),
        pytest.param(
            [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 1000, "fin"],
            False,
            id="chunked-cut",
        ),
    ],
)
def test_a_backend_that_drops_tls_mid_response_never_passes_it_as_complete(
    tls_backend: tuple[str, list[TLSScriptBackend]],
    splitter_factory: SplitterFactory,
    script: list[bytes | float | str],
    complete: bool,
) -> None:
    """RFC 2818 2.2.1: a TLS connection that ends without close_notify may have been cut by
    anyone on the path; a close-delimited body ended so is truncated, not complete: the
    client's connection is reset, so it cannot take it for the whole response."""
    ca, made = tls_backend
    leaf = CA.issue_cert("localhost")
    directory = Path(ca).parent / "backend"
    directory.mkdir(exist_ok=True)
    leaf.cert_chain_pems[0].write_to_path(str(directory / "c.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "k.pem"))
    backend = TLSScriptBackend(str(directory / "c.pem"), str(directory / "k.pem"), script)
    made.append(backend)
    proc = splitter_factory(https_config(f"https://localhost:{backend.port}", ca))
    data, how = plain_get(proc)
    if complete:
        [response] = parse_responses(data)
        assert response.complete and response.body == b"x" * 1000
        assert how == "eof"
    else:
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert how == "reset", data[-40:]
        assert not data.endswith(b"0\r\n\r\n")  # no end of a chunked body was made up
    # TLS has no half-close: nothing tells asyncio otherwise (it would warn at every end).
    assert "has no effect" not in proc.stderr_text()


def test_a_backend_whose_certificate_names_another_host_is_refused(
    tls_backend: tuple[str, list[TLSScriptBackend]],
    splitter_factory: SplitterFactory,
) -> None:
    ca, made = tls_backend
    directory = Path(ca).parent / "other"
    directory.mkdir()
    leaf = CA.issue_cert("other.example")  # by the CA the pool trusts, for another name
    leaf.cert_chain_pems[0].write_to_path(str(directory / "c.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "k.pem"))
    ok = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    backend = TLSScriptBackend(str(directory / "c.pem"), str(directory / "k.pem"), ok)
    made.append(backend)
    cases = (
        ("localhost", "Hostname mismatch", "localhost"),
        (LOCALHOST, "IP address mismatch", None),
    )
    for host, message, server_name in cases:
        backend.server_names.clear()
        proc = splitter_factory(https_config(f"https://{host}:{backend.port}", ca))
        data, _ = plain_get(proc)
        [response] = parse_responses(data)
        assert response.status in (502, 503)
        proc.wait_for_stderr(message)
        # The URL's host name as SNI; none for an IP address (RFC 6066).
        assert backend.server_names
        assert set(backend.server_names) == {server_name}


def test_a_backend_that_speaks_plain_http_on_its_https_url_is_a_502_said_why(
    tls_backend: tuple[str, list[TLSScriptBackend]],
    three_pools: dict[str, Backend],
    raw_backend: object,
    splitter_factory: SplitterFactory,
) -> None:
    """gunicorn answers the ClientHello with a 400 in clear: the handshake fails at once,
    said why. A plain server that waits for a request line says nothing: the handshake
    is under the connect timeout."""
    ca, _ = tls_backend
    gunicorn = three_pools["blue"].url.replace("http://", "https://")
    proc = splitter_factory(https_config(gunicorn, ca))
    started = time.monotonic()
    data, _ = plain_get(proc)
    assert parse_responses(data)[0].status == 502
    assert time.monotonic() - started < 2.0
    proc.wait_for_stderr(r"TLS: (WRONG_VERSION_NUMBER|RECORD_LAYER_FAILURE|HTTP_REQUEST)")

    silent: RawBackend = raw_backend()  # type: ignore[operator]
    config = https_config(silent.url.replace("http://", "https://"), ca)
    config["timeouts"] = {"connect": "1s"}
    proc = splitter_factory(config)
    started = time.monotonic()
    data, _ = plain_get(proc)
    assert parse_responses(data)[0].status == 502
    assert time.monotonic() - started < 3.5  # two attempts of 1 s, and the sweep's step
    assert not any(p.startswith(b"GET / ") for p in silent.proxied())  # nothing in clear

"""TLS under attack (contract section 13): the real splitter process on loopback with a
TLS listener, hostile and odd clients (raw sockets, hand-made ClientHellos, ssl sockets
that stall, trickle, pipeline or vanish), hostile and odd https:// backends, and the
certificate files mishandled. Every load loop is bounded; everything is on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from tests.conftest import SplitterFactory
from tests.e2e.test_tls import base, get, issue, tls_connect
from tests.support import LOCALHOST, SplitterProc

SNI_PLACEHOLDER = b"aaaa.example.com"


def client_hello(server_name: str = SNI_PLACEHOLDER.decode(), **settings: object) -> bytes:
    """The first flight of a default ssl client (its ClientHello), as bytes on the wire;
    `settings` set attributes of its context (minimum_version, ...)."""
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


def still_serves(proc: SplitterProc) -> None:
    with tls_connect(proc, "localhost") as tls:
        assert b"200 OK" in get(tls)


def tracebacks(proc: SplitterProc) -> list[str]:
    text = proc.stderr_text()
    return [line for line in text.splitlines() if "Traceback" in line or "Exception" in line]


# -- the ClientHello -----------------------------------------------------------------------


def test_an_sni_name_with_odd_bytes_is_refused_without_a_traceback_per_connection(
    tmp_path: Path,
    three_pools: dict,  # type: ignore[type-arg]
    splitter_factory: SplitterFactory,
) -> None:
    """RFC 6066 server names are ASCII; OpenSSL passes any other byte on, and Python's SNI
    callback cannot decode it: the handshake fails. That must cost one rate-limited log
    line, not a traceback on stderr for every such ClientHello."""
    proc = splitter_factory(base(three_pools["blue"].url, [issue(tmp_path, "localhost")]))
    for odd in (b"\xff\xfe\xfd\xfc", b"\x80abc", b"a b\x01", b"\x7f.\x7f\x7f"):
        hello = client_hello().replace(SNI_PLACEHOLDER, odd + SNI_PLACEHOLDER[4:])
        for _ in range(10):
            with socket.create_connection((LOCALHOST, proc.proxy_port), timeout=5) as sock:
                sock.sendall(hello)
                data, _ = read_until_close(sock, timeout=0.5)  # ASCII ones get a ServerHello
                assert not data.startswith(b"HTTP/")
    still_serves(proc)
    assert tracebacks(proc) == []
    refused = [line for line in proc.stderr_text().splitlines() if "CALLBACK_FAILED" in line]
    assert 1 <= len(refused) <= 3  # once per reason per second

"""The TLS shell of a client connection in-process: a real `TLSTransport` and `ClientConn`
(tests/playbook.py's listener, fake backends, a clock the test moves) under a fake raw
socket, against a real TLS client (OpenSSL through two memory BIOs). The wire between them
is modelled: what the client sends waits on it while splitter has paused its socket, and
reaches splitter in reads of at most `READ` bytes, as the event loop's would.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from types import SimpleNamespace

import pytest
import trustme

from splitter.config import TLS, CertificatePair
from splitter.proxy.downstream import HOLD_LIMIT, ClientConn
from splitter.tls.certs import CertStore
from splitter.tls.transport import TLSTransport
from tests.playbook import FakeTransport, Playbook
from tests.rawhttp import Response, parse_responses

CA = trustme.CA()
READ = 256 * 1024  # the event loop's largest read from a socket

UPGRADE = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CertStore:
    directory = tmp_path_factory.mktemp("tls")
    leaf = CA.issue_cert("shop.example.com")
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return CertStore(TLS((CertificatePair(str(cert), str(key)),)))


class TLSClient:
    """A TLS client on one connection to splitter's TLS shell (see the module docstring)."""

    def __init__(
        self,
        pb: Playbook,
        store: CertStore,
        context: ssl.SSLContext | None = None,
        handshake: bool = True,
    ) -> None:
        self.pb = pb
        self.raw = FakeTransport()
        self.conn = ClientConn(pb.listener)
        self.shell = TLSTransport(self.conn, store.front)
        self.raw.protocol = self.shell
        self.shell.connection_made(self.raw)  # type: ignore[arg-type]
        if context is None:
            context = ssl.create_default_context()
            CA.configure_trust(context)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self.incoming, self.outgoing, server_hostname="shop.example.com"
        )
        self.wire = bytearray()  # sent by the client, not read by splitter yet
        self.plain = bytearray()  # plaintext received
        self.reads = 0
        if handshake:
            self.handshake()

    def handshake(self) -> None:
        for _ in range(10):
            try:
                self.tls.do_handshake()
                self.pump()
                return
            except ssl.SSLWantReadError:
                self.pump()
        raise AssertionError("no handshake")

    def pump(self) -> None:
        """Move bytes both ways until nothing moves (splitter's reads wait while it pauses)."""
        while True:
            self.wire += self.outgoing.read()
            moved = False
            if self.wire and self.raw.reading and not self.raw.ended:
                chunk = bytes(self.wire[:READ])
                del self.wire[:READ]
                self.reads += 1
                self.shell.data_received(chunk)
                moved = True
            out = self.raw.take()
            if out:
                self.incoming.write(out)
                moved = True
            if not moved:
                break
        try:
            while True:
                data = self.tls.read(65536)
                if not data:
                    break
                self.plain += data
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.pump()

    def responses(self) -> list[Response]:
        self.pump()
        return parse_responses(bytes(self.plain))


# -- an upgrade over TLS: the buffered _Holder -------------------------------------------


def test_an_upgrade_holds_at_most_the_hold_limit_and_loses_nothing_at_the_101(
    store: CertStore,
) -> None:
    """More than HOLD_LIMIT sent before the 101, in one read: the _Holder takes what fits,
    reading pauses, and everything reaches the backend once the tunnel opens, in order."""
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(UPGRADE)
    backend = pb.accept()
    early = bytes(range(256)) * (HOLD_LIMIT * 2 // 256)  # 128 KiB: twice what may be held
    client.tls.write(early)
    client.pump()
    assert client.conn.held_bytes <= HOLD_LIMIT
    assert not client.raw.reading  # splitter stopped reading the socket
    assert b"\x00\x01\x02" not in backend.take()  # nothing before the 101
    backend.reply(SWITCH)
    client.pump()
    body = backend.body()
    assert len(body) == len(early)
    assert body == early  # neither lost nor duplicated, in order
    client.send(b"after")
    assert backend.body() == early + b"after"
    assert bytes(client.plain).startswith(b"HTTP/1.1 101 ")


def test_an_upgrade_over_tls_that_fits_the_hold_limit_is_passed_on_after_the_101(
    store: CertStore,
) -> None:
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(UPGRADE + b"early")
    backend = pb.accept()
    client.send(b"-more")
    assert client.raw.reading
    backend.reply(SWITCH + b"hello")
    client.pump()
    assert backend.body() == b"early-more"
    assert bytes(client.plain).endswith(b"hello")
    client.send(b"ping")
    assert backend.take() == b"ping"


# -- the handshake under the header deadline -----------------------------------------------


def test_a_stalled_handshake_is_cut_at_the_header_deadline_without_a_request(
    store: CertStore,
) -> None:
    """Half a ClientHello, then silence: cut at header_timeout from the accept, noted as a
    refused connection; no HTTP was spoken, so no 408 is counted or logged (as a PROXY
    header that never completes)."""
    pb = Playbook(limits={"header_timeout": "2s"})
    client = TLSClient(pb, store, handshake=False)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.do_handshake()
    hello = client.outgoing.read()
    client.shell.data_received(hello[: len(hello) // 2])
    pb.advance(1.5)
    assert not client.raw.ended
    pb.advance(1.0)
    assert client.raw.ended and client.raw.take() == b""
    assert pb.observed == []
    assert client.conn not in pb.listener.conns or client.conn.closed


def test_a_finished_handshake_without_a_request_gets_its_408_over_tls(store: CertStore) -> None:
    pb = Playbook(limits={"header_timeout": "2s"})
    client = TLSClient(pb, store)
    pb.advance(2.5)
    [response] = client.responses()
    assert response.status == 408 and client.raw.ended
    assert [ex.status for ex in pb.observed] == [408]


# -- the ClientHello -----------------------------------------------------------------------


def first_flight(server_name: str = "aaaa.example.com") -> bytes:
    """A default client's ClientHello, as bytes on the wire."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_server_name_that_is_not_ascii_fails_the_handshake_and_is_not_reported_raw(
    store: CertStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from splitter.tls import certs

    # Several certificates: the SNI callback runs (with one, there is none to fail).
    pair = store.entries[0].pair
    store = CertStore(TLS((pair, pair)))
    pb = Playbook()
    caplog.set_level(logging.WARNING, logger="splitter.proxy")
    client = TLSClient(pb, store, handshake=False)
    hello = first_flight().replace(b"aaaa.example.com", b"\xff\xfeaa.example.com")
    client.shell.data_received(hello)
    assert client.raw.ended
    assert client.raw.take()[:1] == b"\x15"  # an alert
    refused = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(refused) == 1 and "TLS handshake failed: CALLBACK_FAILED" in refused[0], refused
    # What CPython reports of it is dropped; anything else reaches the hook before.
    seen: list[object] = []
    monkeypatch.setattr(certs, "_previous_hook", seen.append)
    error = UnicodeDecodeError("ascii", b"\xff", 0, 1, "ordinal not in range(128)")
    certs._drop_server_name_errors(SimpleNamespace(exc_value=error, object=b"\xff"))
    assert seen == []
    other = SimpleNamespace(exc_value=ValueError("x"), object=None)
    certs._drop_server_name_errors(other)
    assert seen == [other]


# -- the client's end: close_notify, or a bare FIN -----------------------------------------


POST_HEAD = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"


def close_notify(client: TLSClient) -> None:
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()
    client.pump()


def bare_fin(client: TLSClient) -> None:
    client.pump()
    client.shell.eof_received()


@pytest.mark.parametrize("end", [close_notify, bare_fin], ids=["close_notify", "fin"])
def test_the_clients_end_after_a_request_still_gets_the_answer(store: CertStore, end) -> None:  # type: ignore[no-untyped-def]
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    end(client)
    backend = pb.accept()
    assert not client.raw.ended
    backend.reply(OK)
    [response] = client.responses()
    assert response.body == b"ok" and client.raw.ended


@pytest.mark.parametrize("end", [close_notify, bare_fin], ids=["close_notify", "fin"])
def test_the_clients_end_in_the_middle_of_a_body_ends_the_request_at_once(  # type: ignore[no-untyped-def]
    store: CertStore, end
) -> None:
    """The body can never be complete: the backend's request is aborted and the client
    (which may still read) gets a 400 now, not a 408 at the body deadline."""
    pb = Playbook(limits={"body_idle_timeout": "30s"})
    client = TLSClient(pb, store)
    client.send(POST_HEAD + b"0123456789")
    backend = pb.accept()
    assert backend.body() == b"0123456789"
    end(client)
    assert backend.closed
    [response] = client.responses()
    assert response.status == 400 and client.raw.ended
    assert [ex.status for ex in pb.observed] == [400]


def test_the_clients_end_in_the_middle_of_a_body_not_yet_connected(store: CertStore) -> None:
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(POST_HEAD + b"01234")
    bare_fin(client)
    [response] = client.responses()
    assert response.status == 400 and client.raw.ended
    if pb.waiting:  # the connection asked for comes too late: it is not used
        backend = pb.accept()
        assert backend.closed and b"01234" not in backend.received


@pytest.mark.parametrize("end", [close_notify, bare_fin], ids=["close_notify", "fin"])
def test_the_clients_end_before_the_101_reaches_the_backend_once_the_tunnel_opens(  # type: ignore[no-untyped-def]
    store: CertStore, end
) -> None:
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(UPGRADE + b"last words")
    backend = pb.accept()
    end(client)
    assert not backend.transport.eof_written  # nothing goes before the 101
    backend.reply(SWITCH)
    client.pump()
    assert backend.body() == b"last words"
    assert backend.transport.eof_written  # then the end of the client's side
    backend.reply(b"bye")  # the other way still goes
    client.pump()
    assert bytes(client.plain).endswith(b"bye")


def test_the_clients_end_behind_more_than_the_hold_limit_comes_after_every_byte(
    store: CertStore,
) -> None:
    """Twice the hold limit and the client's close_notify in one read, before the 101: the
    backend gets all the bytes, then the end (never a write after its write_eof)."""
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(UPGRADE)
    backend = pb.accept()
    transport = backend.transport
    order: list[str] = []
    write, write_eof = transport.write, transport.write_eof

    def record_write(data: bytes) -> None:
        order.append("eof-then-write" if transport.eof_written else "write")
        write(data)

    def record_eof() -> None:
        order.append("eof")
        write_eof()

    transport.write, transport.write_eof = record_write, record_eof  # type: ignore[method-assign]
    transport.writelines = lambda parts: [record_write(p) for p in parts]  # type: ignore[method-assign]
    early = bytes(range(256)) * (2 * HOLD_LIMIT // 256)
    client.tls.write(early)
    with contextlib.suppress(ssl.SSLError):
        client.tls.unwrap()
    client.pump()
    assert not transport.eof_written
    backend.reply(SWITCH)
    client.pump()
    assert backend.body() == early
    assert order[-1] == "eof" and "eof-then-write" not in order, order


# -- the first request with the handshake's end ---------------------------------------------


def test_a_request_in_the_same_read_as_the_clients_finished_is_served(store: CertStore) -> None:
    """TLS 1.3: the client's Finished and its first request come in one read."""
    pb = Playbook()
    client = TLSClient(pb, store, handshake=False)
    for _ in range(5):  # the handshake, holding back the client's last flight
        try:
            client.tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            client.pump()
    assert client.tls.version() == "TLSv1.3" and client.conn.handshaking
    client.tls.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    reads = client.reads
    client.pump()  # its Finished and the request: one read
    assert client.reads == reads + 1 and not client.conn.handshaking
    backend = pb.accept()
    assert backend.request_line() == b"GET / HTTP/1.1"
    backend.reply(OK)
    [response] = client.responses()
    assert response.body == b"ok"


def test_pipelined_requests_beyond_the_read_ahead_are_all_answered_in_order(
    store: CertStore,
) -> None:
    """More requests in one read than splitter reads ahead (16): reading pauses while
    they wait, resumes as they are served; none is lost or answered twice."""
    pb = Playbook()
    client = TLSClient(pb, store)
    client.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(40)))
    client.tls.write(b"GET /40 HTTP/1.1\r\nHost: a\r\n\r\n")  # waits on the wire meanwhile
    client.pump()
    assert not client.raw.reading
    backend = pb.accept()
    for i in range(41):
        assert backend.take().startswith(b"GET /%d HTTP/1.1" % i)
        backend.reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(i)), i))
        client.pump()
    assert [r.body for r in client.responses()] == [str(i).encode() for i in range(41)]
    assert client.raw.reading

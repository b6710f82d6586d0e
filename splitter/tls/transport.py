"""The TLS shell of one client connection: raw bytes from the socket, plaintext for the
connection's protocol, through `ssl.MemoryBIO` and an `SSLObject`.

Why not the event loop's own TLS (`create_server(ssl=...)`): the client connection must
exist from the accept on, so that one deadline covers the handshake and the first request
head (`limits.header_timeout`, enforced by the listener's sweep, no timer per connection);
a PROXY protocol header comes before the TLS bytes; and a plain HTTP request on the TLS
port is to get a 400 that says to use https, which needs the first bytes before any
handshake.

`TLSTransport` is the raw socket's asyncio protocol and, to the connection's protocol (a
`ClientConn`), its transport:

    socket --raw--> TLSTransport --plaintext--> ClientConn (or the upgrade's _Holder)
    socket <--raw-- TLSTransport <--plaintext-- ClientConn

States: `first` (nothing read yet: a PROXY header is read here; a first byte other than a
TLS handshake record is plain text: answered 400 if it looks like HTTP, else cut), then
`handshake`, then `open`, then `closed`. Before `open` nothing the protocol writes is sent;
the connection is `handshaking`, and its header deadline cuts it without a word, noted as a
refused connection, not a 408 (no HTTP was spoken, as with a PROXY header that never ends).

Rules:

- One raw read gives one `data_received` of all the plaintext it completes, as a plain
  socket would; for a buffered protocol (the upgrade's `_Holder`), what does not fit its
  buffer waits here until it reads again, or goes first to the protocol that replaces it
  (the connection itself, once the 101 opens the tunnel).
- Backpressure both ways is the raw transport's: `pause_reading` pauses the socket; the
  socket's `pause_writing` reaches the protocol.
- `close` sends close_notify after what is queued; `abort` cuts. A peer's close_notify is
  an EOF to the protocol. TLS has no half-close: `can_write_eof` is False.
- A handshake that fails (no shared version, suite or group; a malformed hello) closes the
  connection and is noted as a refused connection (one log line per reason per second).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Final, Protocol

__all__ = ["Plain", "TLSTransport"]

_HANDSHAKE_RECORD: Final = 0x16
_READ: Final = 256 * 1024
_FIRST, _HANDSHAKE, _OPEN, _CLOSED = 0, 1, 2, 3

_PLAIN_HTTP_BODY: Final = b"400 Bad Request: this port speaks HTTPS; use https:// in the address.\n"
PLAIN_HTTP_ANSWER: Final = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY)
)


class Plain(Protocol):
    """What the shell needs of the connection it carries (a `ClientConn`)."""

    tls: bool
    handshaking: bool  # its header deadline cuts it without a word (no HTTP was spoken)
    preface: bytes | None  # a PROXY header is awaited before anything else

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def read_preface(self, data: bytes) -> bytes: ...
    def refused_connection(self, reason: str) -> None: ...


class TLSTransport(asyncio.Transport):
    """See the module docstring."""

    def __init__(self, conn: Plain, context: ssl.SSLContext) -> None:
        super().__init__()
        self.conn = conn
        self.protocol: Any = conn  # where plaintext goes: the connection, or its _Holder
        self.context = context
        self.raw: asyncio.Transport | None = None
        self.state = _FIRST
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj: ssl.SSLObject | None = None
        # The C object under `sslobj` (same read/write/pending/do_handshake methods, one call
        # less each: ssl.SSLObject's methods are Python wrappers around it).
        self.tls: Any = None
        self.reading_paused = False
        self.pending = b""  # plaintext a buffered protocol had no room for
        self.buffered = False  # the protocol reads into buffers of its own (get_buffer)
        self.eof = False  # the client ended its side (close_notify, or a FIN)
        self.eof_told = False  # ... and the protocol was told, after what came before it

    # -- the raw socket's protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        self.conn.tls = self.conn.handshaking = True
        self.conn.connection_made(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _OPEN:
            self.incoming.write(data)
            self._read()
            return
        if state == _FIRST:
            conn = self.conn
            if conn.preface is not None:
                data = conn.read_preface(data)
                if not data:
                    return
            if data[0] != _HANDSHAKE_RECORD:
                self._plain(data)
                return
            self.state = _HANDSHAKE
            sslobj = self.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
            self.sslobj = sslobj
            self.tls = getattr(sslobj, "_sslobj", sslobj)
        elif state != _HANDSHAKE:
            return
        self.incoming.write(data)
        self._handshake()

    def _plain(self, data: bytes) -> None:
        """Not TLS: an HTTP request gets a 400 that says to use https; anything else is cut."""
        raw = self.raw
        self.state = _CLOSED
        word = data[:8].split(b" ", 1)[0]
        if word.isalpha() and word.isupper() and raw is not None:
            self.conn.refused_connection("plain HTTP on the TLS listener")
            raw.write(PLAIN_HTTP_ANSWER)
            raw.close()
        else:
            self.conn.refused_connection("not a TLS handshake")
            self._abort_raw()

    def _handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:  # ssl.CertificateError is one
            self._flush()  # the alert, if any
            self.state = _CLOSED
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self.conn.refused_connection(f"TLS handshake failed: {reason}")
            self._close_raw()
            return
        self.state = _OPEN
        self.conn.handshaking = False
        self._flush()
        if self.incoming.pending:  # the first request came with the handshake's end
            self._read()

    def _read(self) -> None:
        sslobj = self.tls
        chunks = []
        incoming = self.incoming
        eof = False
        try:
            while True:
                chunk = sslobj.read(_READ)
                if not chunk:
                    eof = True
                    break
                chunks.append(chunk)
                if not incoming.pending and not sslobj.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            eof = True
        except ssl.SSLError as exc:
            self.state = _CLOSED
            self.conn.refused_connection(f"TLS error: {exc.reason or type(exc).__name__}")
            self._abort_raw()
            return
        if self.outgoing.pending:  # a key update's answer, an alert
            self._flush()
        if eof:
            self.eof = True
        if chunks:
            self._deliver(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        elif eof:
            self._end()

    def _end(self) -> None:
        """The client's end, once: after every byte before it has been delivered."""
        if self.pending or self.eof_told or self.state != _OPEN:
            return
        self.eof_told = True
        if not self.protocol.eof_received():
            self.close()

    def _deliver(self, data: bytes) -> None:
        protocol = self.protocol
        if not self.buffered:
            if self.pending:  # held for the buffered protocol this one replaced (the 101)
                data = self.pending + data
                self.pending = b""
            if data:
                protocol.data_received(data)
        else:
            data = self.pending + data
            while data and not self.reading_paused and self.state == _OPEN:
                buffer = protocol.get_buffer(len(data))
                n = min(len(buffer), len(data))
                buffer[:n] = data[:n]
                data = data[n:]
                protocol.buffer_updated(n)
            self.pending = data
        if self.eof:
            self._end()

    def eof_received(self) -> bool:
        if self.state == _OPEN:
            # TLS has no half-close: the client's EOF without close_notify ends reading.
            self.eof = True
            self._end()
            if self.state == _OPEN:
                return True
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        self.sslobj = self.tls = None
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    # -- the transport the connection writes to -----------------------------------------

    def _flush(self) -> None:
        out = self.outgoing.read()
        raw = self.raw
        if out and raw is not None and not raw.is_closing():
            raw.write(out)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.state != _OPEN or not data:
            return
        try:
            self.tls.write(data)
        except ssl.SSLError:
            self.state = _CLOSED
            self._abort_raw()
            return
        out = self.outgoing.read()
        raw = self.raw
        if out and raw is not None and not raw.is_closing():
            raw.write(out)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() if self.raw is not None else 0

    def pause_reading(self) -> None:
        self.reading_paused = True
        if self.raw is not None and not self.raw.is_closing():
            self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.reading_paused = False
        if self.raw is not None and not self.raw.is_closing():
            self.raw.resume_reading()
        if self.pending and self.state == _OPEN:
            self._deliver(b"")

    def is_reading(self) -> bool:
        return not self.reading_paused

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol
        self.buffered = hasattr(protocol, "get_buffer")  # the upgrade's _Holder

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self.state == _CLOSED or self.raw is None or self.raw.is_closing()

    def close(self) -> None:
        """close_notify after what is queued (a cut before the handshake is over)."""
        if self.state == _OPEN and self.sslobj is not None:
            self.state = _CLOSED
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:
                pass  # SSLWantReadError: the peer's close_notify is not awaited
            self._flush()
        self.state = _CLOSED
        self._close_raw()

    def abort(self) -> None:
        self.state = _CLOSED
        self._abort_raw()

    def _close_raw(self) -> None:
        if self.raw is not None:
            self.raw.close()

    def _abort_raw(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.sslobj
        if name == "sslcontext":
            return self.sslobj.context if self.sslobj is not None else self.context
        if name == "cipher":
            return self.sslobj.cipher() if self.sslobj is not None else default
        if self.raw is None:
            return default
        return self.raw.get_extra_info(name, default)

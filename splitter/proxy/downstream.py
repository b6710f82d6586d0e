"""The client side of the data path: a thin asyncio protocol per client connection.

Theory of operation
-------------------
`ClientConn` moves bytes and keeps time; it decides nothing about a request. It feeds what
it reads to its `RequestReader` (`splitter.http1.request`), which hands back heads, body
bytes and refusals; each head becomes an `Exchange` in `queue`, and the exchange at the
front (`current`) is served, so pipelined requests are answered strictly in order. It is
the exchanges' `Downstream`: they write to the client through it (batched: one write per
backend read), and tell it when they are done.

Deadlines: one slot per kind, each a timestamp (setting one is an attribute store, from
the listener's coarse `clock`) that the listener's sweep checks for every connection:

    head      from accept for the first request, from its first byte for every later one
              (also a request pipelined behind another), until its head is complete: 408
    body      the longest gap between body bytes while a body is read (and reading is not
              paused by splitter itself): 408, the upstream request aborted
    upstream  the current exchange's connect or read deadline: 502 or 504 (the exchange)
    send      the client reads nothing of its response for `timeouts.read`: cut
    idle      an idle keep-alive connection: closed silently

A timed-out head stops the reading at once; its 408 is queued behind the exchange in
progress, which is finished first. No state leaves a connection without a deadline, but
a tunnel (after 101), whose both ends decide how long it lasts.

Reading pauses for named reasons (bits, `exchange.PAUSE_*`), and resumes when none is left:
the backend's socket is full; too many pipelined requests, or too much body held for a
request not yet connected; a refusal (nothing more is read); an upgrade that waits for its
101 with `HOLD_LIMIT` bytes held. While an upgrade waits, the transport reads into a buffer
of the room that is left (`_Holder`), so no more than HOLD_LIMIT bytes are ever held.

The client's address (`clientaddr`): resolved once per connection, from the peer or, with
`proxy_protocol`, from the PROXY header that must come first (`proxyproto`; at most
MAX_HEADER bytes are held for it, and it must be complete before the first request's
header deadline, or the connection is closed without a word, as one whose TLS handshake is
not over by then); per request only when the connection comes from a trusted proxy, from
the request's X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from typing import Any, Final

from splitter.config import Limits
from splitter.errors import RequestRefused
from splitter.http1.request import ReadSettings, RequestHead, RequestReader
from splitter.proxy import proxyproto
from splitter.proxy.clientaddr import TrustedProxies
from splitter.proxy.exchange import (
    INF,
    PAUSE_HOLD,
    PAUSE_PIPELINE,
    PAUSE_STOPPED,
    STREAMING,
    Context,
    Downstream,
    Exchange,
)
from splitter.proxy.upstream import UpstreamConn

__all__ = ["ClientConn", "Listener"]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # an HTTP/2 client's first bytes
MAX_QUEUED: Final = 16  # pipelined requests read ahead of the one being served
HOLD_LIMIT: Final = 64 * 1024  # client bytes held while an upgrade waits for its 101

_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class Listener(Context):
    """What a client connection needs of its listener, besides what exchanges need
    (`listener.ProxyListener` implements it)."""

    read_settings: ReadSettings
    limits: Limits
    trusted: TrustedProxies
    proxy_protocol: bool  # every connection starts with a PROXY protocol header
    http2: bool  # a connection that begins with the HTTP/2 preface is served as HTTP/2

    def connection_opened(self, conn: ClientConn) -> None:
        raise NotImplementedError

    def connection_closed(self, conn: ClientConn) -> None:
        raise NotImplementedError

    def note_refusal(self, status: int, reason: str, peer: bytes) -> None:
        raise NotImplementedError

    def note_refused_connection(self, reason: str, peer: bytes) -> None:
        raise NotImplementedError

    def http2_session(self, conn: ClientConn) -> Any:
        """The HTTP/2 session (`splitter.proxy.h2session.Session`) of a connection that
        began with the client preface."""
        raise NotImplementedError


class ClientConn(Downstream):
    """A connection from a client; serves its requests one after another."""

    def __init__(self, server: Listener) -> None:
        super().__init__(b"-")
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.reader = RequestReader(server.read_settings, self)
        self.parsing: Exchange | None = None  # the exchange whose body is being read
        self.queue: deque[Exchange] = deque()  # waiting behind `current`
        self.current: Exchange | None = None
        self.requests = 0  # heads begun on this connection
        self.head_started = 0.0
        self.paused = 0  # PAUSE_* bits
        self.closed = False
        self.client_eof = False
        self.batch: list[bytes] | None = None
        self.head_deadline = INF
        self.body_deadline = INF
        self.send_deadline = INF
        self.idle_deadline = INF
        # An upgrade: the bytes after its head, held until the 101; then the tunnel.
        self.holding = False
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.tunnel: UpstreamConn | None = None
        self.tunnel_exchange: Exchange | None = None
        # The client's address: the PROXY header read so far (None: none is awaited), and
        # the trusted proxies when the connection comes from one (None: it does not).
        self.preface: bytes | None = None
        self.trusted: TrustedProxies | None = None
        self.tls = False  # set by the TLS shell (splitter.tls.transport) that carries it
        self.handshaking = False  # ... and this until its handshake is over
        # HTTP/2: the first bytes are looked at for the client preface (h2c with prior
        # knowledge, or h2 chosen by ALPN); once seen, the session has every byte.
        self.sniffing = server.http2
        self.sniffed = b""
        self.h2: Any = None

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = self.source = str(peer[0]).encode()
        server = self.server
        server.connection_opened(self)
        self.head_deadline = server.clock + server.limits.header_timeout
        if server.proxy_protocol:
            self.preface = b""
        else:
            self._resolve(self.peer.decode("latin-1"))

    def _resolve(self, address: str) -> None:
        """The connection's address is known: the client's, unless it is a trusted proxy."""
        trusted = self.server.trusted
        self.client_addr, is_trusted = trusted.lookup(address)
        self.trusted = trusted if is_trusted else None

    def read_preface(self, data: bytes) -> bytes:
        """Read the PROXY header; what follows it (the client's HTTP), or b"" when it is
        not complete yet or the connection was refused."""
        held = self.preface
        if held:
            data = held + data
        consumed, address, problem = proxyproto.parse(data)
        if problem:
            self.preface = None
            self.reader.done = True
            self.server.note_refused_connection(problem, self.peer)
            self.pause_reading(PAUSE_STOPPED)
            self.close()
            return b""
        if consumed == 0:
            self.preface = data  # shorter than proxyproto.MAX_HEADER
            return b""
        self.preface = None
        if address:  # the client's connection, seen through the balancer
            self.source = address.encode()
            self._resolve(address)
        else:  # the balancer's own connection (LOCAL, UNKNOWN): the peer
            self._resolve(self.peer.decode("latin-1"))
        return data[consumed:]

    def refused_connection(self, reason: str) -> None:
        """The TLS shell closed the connection before any request (noted, rate-limited)."""
        self.server.note_refused_connection(reason, self.peer)

    def data_received(self, data: bytes) -> None:
        if self.preface is not None:
            data = self.read_preface(data)
            if not data:
                return
        if self.sniffing:
            data = self._sniff(data)
            if not data:
                return
        h2 = self.h2
        if h2 is not None:
            h2.data_received(data)
            return
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            return
        reader = self.reader
        if reader.done:
            if self.holding:
                self._hold(data)
            return
        offset = reader.feed(data)
        if offset >= 0:  # an upgrade request: what follows is for the tunnel, if any
            self._start_holding(data[offset:])
        if self.current is None and self.queue:
            self._next()

    def _sniff(self, data: bytes) -> bytes:
        """The first bytes: HTTP/1.1 goes on to the reader; the HTTP/2 preface starts a
        session; a part of the preface is held until it is whole (b"" returned)."""
        if self.sniffed:
            data = self.sniffed + data
            self.sniffed = b""
        if len(data) < len(PREFACE) and PREFACE.startswith(data):
            self.sniffed = data
            return b""
        self.sniffing = False
        if data.startswith(PREFACE):  # the header deadline runs on to the first HEADERS
            self.h2 = self.server.http2_session(self)
        return data

    def eof_received(self) -> bool:
        if self.h2 is not None:
            self.h2.eof_received()
            return True
        # A half-closed client may still read the answers to what it sent.
        self.client_eof = True
        if self.tunnel is not None:
            self.tunnel.write_eof()
        elif self.parsing is not None and not self.reader.done:
            # A body that can never end: refused now, not at the body deadline.
            self.reader.done = True
            self.on_refused(RequestRefused(400, "client closed before the end of its body"))
        elif self.current is None and not self.queue:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connection_closed(self)
        self.batch = None
        if self.h2 is not None:
            self.h2.connection_lost()
            self.h2 = None
        current = self.current
        self.current = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        if current is not None:
            current.client_gone()
        self.queue.clear()
        self.parsing = None
        # The transport (a TLS shell holds this connection) and the reader (its parser
        # holds the reader) make cycles with it: broken here, the connection's objects are
        # freed when the event loop drops it, not at the next full collection (which,
        # in a burst, comes after thousands of dead connections have piled up).
        self.reader.close()
        self.transport = None

    def pause_writing(self) -> None:
        self.send_blocked = True
        if self.h2 is not None:
            self.h2.pause_writing()
            return
        ex = self.current
        upstream = self.tunnel or (ex.upstream if ex is not None else None)
        if upstream is not None:
            upstream.pause_reading()
        if self.tunnel is None:
            self.send_deadline = self.server.clock + self.server.read_timeout
            if ex is not None and ex.state == STREAMING:
                self.upstream_deadline = INF  # a slow reader is not a slow backend

    def resume_writing(self) -> None:
        self.send_blocked = False
        self.send_deadline = INF
        if self.h2 is not None:
            self.h2.resume_writing()
            return
        ex = self.current
        upstream = self.tunnel or (ex.upstream if ex is not None else None)
        if upstream is not None:
            upstream.resume_reading()
        if ex is not None and ex.state == STREAMING:
            self.upstream_deadline = self.server.clock + self.server.read_timeout

    # -- the request reader's events ----------------------------------------------------

    def on_head_start(self) -> None:
        self.requests += 1
        self.idle_deadline = INF
        self.head_started = time.time()
        if self.requests > 1:  # the first request's deadline runs from accept
            self.head_deadline = self.server.clock + self.server.limits.header_timeout

    def on_request(self, head: RequestHead) -> None:
        self.head_deadline = INF
        if self.tls:
            head.tls = head.https = True
        ex = Exchange(self, self.server, head, self.head_started)
        trusted = self.trusted
        if trusted is not None and head.xff is not None:
            ex.client_addr = trusted.client(head.xff, self.client_addr)
        self.queue.append(ex)
        if not ex.body_complete:
            self.parsing = ex
            self._arm_body_deadline()
        if len(self.queue) > MAX_QUEUED:
            self.pause_reading(PAUSE_PIPELINE)

    def on_request_body(self, data: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            self._arm_body_deadline()
            ex.request_body(data)

    def on_request_end(self) -> None:
        ex = self.parsing
        if ex is not None:
            self.parsing = None
            self.body_deadline = INF
            ex.request_end()

    def on_refused(self, error: RequestRefused) -> None:
        """Answer `error` in turn and close; read nothing more."""
        self.server.note_refusal(error.status, str(error), self.peer)
        self.pause_reading(PAUSE_STOPPED)
        self.head_deadline = self.body_deadline = INF
        ex = self.parsing
        if ex is not None:  # refused while its body was read
            self.parsing = None
            ex.refuse(error)
            return
        stub = RequestHead()
        stub.keep_alive = False
        ex = Exchange(self, self.server, stub, self.head_started or time.time())
        ex.refusal = error
        self.queue.append(ex)
        if self.current is None:
            self._next()

    # -- serving ------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the exchange at the front of the queue; or wait for one, or close."""
        while self.current is None and self.queue and not self.closed:
            ex = self.queue.popleft()
            self.current = ex
            if len(self.queue) <= MAX_QUEUED:
                self.resume_reading(PAUSE_PIPELINE)
            ex.start()
            return
        if self.current is None and not self.closed:
            if self.server.draining or self.reader.done or self.client_eof:
                if self.parsing is None and not self.queue:
                    self.close()
            elif self.parsing is None and self.requests and not self.reader.in_head:
                self.idle_deadline = self.server.clock + self.server.limits.keepalive_timeout

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        if self.current is ex:
            self.current = None
        self.upstream_deadline = INF
        if close or not ex.body_complete:  # the rest of a body would be read as a request
            self.close()
            return
        self._next()

    def start_tunnel(self, ex: Exchange, upstream: UpstreamConn, rest: bytes) -> None:
        """The backend answered 101: relay bytes both ways from now on."""
        self.tunnel = upstream
        self.tunnel_exchange = ex
        self.upstream_deadline = INF
        self.holding = False
        held, self.held, self.held_bytes = self.held, [], 0
        if held:
            upstream.write_parts(held)
        if self.client_eof:  # the client ended its side while the 101 was awaited
            upstream.write_eof()
        if rest:
            self.send(rest)
        transport = self.transport
        if transport is not None and isinstance(transport.get_protocol(), _Holder):
            transport.set_protocol(self)  # type: ignore[arg-type]
        self.paused = 0
        if transport is not None and not self.closed:
            transport.resume_reading()

    # -- holding bytes for an upgrade ---------------------------------------------------

    def _start_holding(self, rest: bytes) -> None:
        self.holding = True
        if len(rest) > HOLD_LIMIT:
            # More than may be held arrived with the head: the upgrade cannot be served.
            self.reader.done = True
            self._refuse_last(RequestRefused(400, "too much data before the upgrade"))
            return
        if rest:
            self._hold(rest)
        transport = self.transport
        if transport is not None and self.held_bytes < HOLD_LIMIT:
            transport.set_protocol(_Holder(self))  # type: ignore[arg-type]

    def _hold(self, data: bytes) -> None:
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes >= HOLD_LIMIT:
            self.pause_reading(PAUSE_HOLD)

    def _refuse_last(self, error: RequestRefused) -> None:
        self.server.note_refusal(error.status, str(error), self.peer)
        self.pause_reading(PAUSE_STOPPED)
        last = self.queue[-1] if self.queue else self.current
        if last is not None:
            last.refuse(error)
        self.holding = False
        self.held, self.held_bytes = [], 0

    # -- deadlines ----------------------------------------------------------------------

    def _arm_body_deadline(self) -> None:
        if not self.paused:
            self.body_deadline = self.server.clock + self.server.limits.body_idle_timeout

    def check_deadlines(self, now: float) -> None:
        """Called by the listener's sweep when one of this connection's deadlines passed."""
        if self.h2 is not None:
            self.h2.check_deadlines(now)
            return
        if self.idle_deadline <= now:
            self.close()
            return
        if self.head_deadline <= now:
            self.head_deadline = INF
            if self.preface is not None or self.handshaking:  # nothing to answer to
                # No PROXY header or no TLS handshake in time: no HTTP was spoken.
                if self.preface is not None:
                    reason = "PROXY header timeout"
                else:
                    reason = "TLS handshake timeout"
                self.preface = None
                self.reader.done = True
                self.server.note_refused_connection(reason, self.peer)
                self.close()
                return
            self.reader.done = True
            self.on_refused(RequestRefused(408, "request header timeout"))
        if self.body_deadline <= now:
            self.body_deadline = INF
            self.reader.done = True
            self.on_refused(RequestRefused(408, "request body timeout"))
        if self.upstream_deadline <= now:
            self.upstream_deadline = INF
            if self.current is not None:
                self.current.deadline_passed()
        if self.send_deadline <= now:
            self.send_deadline = INF
            self.abort()

    def next_deadline(self) -> float:
        return min(
            self.head_deadline,
            self.body_deadline,
            self.upstream_deadline,
            self.send_deadline,
            self.idle_deadline,
        )

    # -- reading and writing ------------------------------------------------------------

    def pause_reading(self, reason: int) -> None:
        was = self.paused
        self.paused = was | reason
        if not was:
            self.body_deadline = INF  # splitter stops reading: the client is not idle
            if self.transport is not None and not self.closed:
                self.transport.pause_reading()

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and not self.closed and self.transport is not None:
            self.transport.resume_reading()
            if self.parsing is not None:
                self._arm_body_deadline()

    def send(self, data: bytes) -> None:
        """Write to the client; inside a batch, collect so that one event makes one write."""
        batch = self.batch
        if batch is not None:
            batch.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def begin_batch(self) -> bool:
        if self.batch is None:
            self.batch = []
            return True
        return False

    def end_batch(self, started: bool) -> None:
        if not started:
            return
        batch = self.batch
        self.batch = None
        transport = self.transport
        if batch and transport is not None and not transport.is_closing():
            if len(batch) == 1:
                transport.write(batch[0])
            else:
                transport.writelines(batch)

    def drain(self) -> None:
        """Shutdown: close now when idle, else after the exchange in progress."""
        if self.h2 is not None:
            self.h2.drain()
            return
        if self.current is None and self.parsing is None and self.tunnel is None:
            if not self.reader.in_head:
                self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.end_batch(self.batch is not None)
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection with a reset, so a client can tell a cut-short response from
        a complete one even when the response was delimited by the close."""
        transport = self.transport
        if transport is not None:
            self.closed = True
            self.batch = None
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()

    # -- the end of a tunnel ------------------------------------------------------------

    def tunnel_eof(self) -> None:
        """The backend closed its side of a tunnel: pass the half-close on."""
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            self.end_batch(self.batch is not None)
            transport.write_eof()
        else:
            self.close()

    def tunnel_lost(self) -> None:
        self.tunnel = None
        ex = self.tunnel_exchange
        self.tunnel_exchange = None
        if ex is not None:
            ex.tunnel_closed()
        self.close()


class _Holder:
    """The protocol of a connection whose upgrade waits for its 101: it reads into a buffer
    of the room left under HOLD_LIMIT, so no more than that is ever held."""

    def __init__(self, conn: ClientConn) -> None:
        self.conn = conn
        self.buffer = bytearray(HOLD_LIMIT)

    def get_buffer(self, sizehint: int) -> memoryview:
        room = max(1, HOLD_LIMIT - self.conn.held_bytes)
        return memoryview(self.buffer)[:room]

    def buffer_updated(self, nbytes: int) -> None:
        self.conn._hold(bytes(self.buffer[:nbytes]))

    def eof_received(self) -> bool:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()

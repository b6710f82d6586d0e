"""The client side of the data path: one asyncio protocol per client connection.

Theory of operation
-------------------
httptools (llhttp) parses the client's bytes and calls back per event. A request whose
head is complete becomes an `Exchange` and joins `queue`; the exchange at the front is
the one being served, so pipelined requests are answered strictly in order. Its body
flows straight to the backend once a backend connection is attached; before that (while
connecting, or while an earlier exchange is still being answered) body chunks wait in the
exchange, and reading from the client pauses once they pass `BODY_HIGH_WATER`.

Serving an exchange (one straight line):

    choose pool (routing, pure) -> pick backend -> idle keep-alive connection, or connect
    -> write head + body -> response head checked and rewritten -> body streamed -> done

Rules:

- Backpressure both ways: a full client socket pauses reading from the backend, a full
  backend socket pauses reading from the client. Nothing is buffered whole.
- Framing: a request body keeps its Content-Length, or is re-chunked when it came
  chunked. A response body keeps its Content-Length, is re-chunked for HTTP/1.1 clients
  when it came chunked or delimited by close, and is close-delimited for HTTP/1.0 clients.
- Refusals (400, 408, 413, 414, 431, 501) echo nothing, close the connection and never
  reach a backend.
- Retries: at most one per exchange, only before any response byte went to the client,
  by the rules of contract section 4 (`_may_retry`).
- Deadlines are timestamps checked by the server's periodic sweep (`check_deadline`),
  not one timer per request: setting one is an attribute store, from the server's coarse
  `clock` (never behind the real time, at most two sweep intervals ahead).
- An `Upgrade` request becomes a byte tunnel only after the backend answers 101.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING

import httptools

from splitter import http1
from splitter.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from splitter.routing import cookie_from_header

if TYPE_CHECKING:
    from splitter.server import ProxyServer
    from splitter.state import BackendState, PoolState
    from splitter.upstream import UpstreamConn

log = logging.getLogger("splitter.proxy")

BODY_HIGH_WATER = 256 * 1024  # body bytes held for a backend before client reads pause
RETRY_BODY_LIMIT = 64 * 1024  # a body up to this size is kept so it can be sent again
MAX_QUEUED = 16  # pipelined requests parsed ahead of the one being served

INF = float("inf")
_random = random.Random().random  # its own generator: pool draws when stickiness is off
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset

# What a deadline means when it passes.
D_NONE, D_HEADER, D_KEEPALIVE, D_BODY, D_READ = range(5)

# Response framing towards the client.
F_NONE, F_LENGTH, F_CHUNKED, F_CLOSE = range(4)

_SPECIAL_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        b"cookie",
        b"upgrade",
    }
)


class Exchange:
    """One request and its response.

    Defaults live on the class, so making an exchange costs a few stores, not forty
    (no __slots__ on purpose: an instance dict with class-level defaults is cheaper to
    create than forty slot assignments).
    """

    method = b""
    target = b""
    version = "1.1"
    host: bytes | None = None
    xff: bytes | None = None
    request_id: bytes | None = None
    cookie: bytes | None = None
    override: bytes | None = None
    https = False
    upgrade = False
    upgrade_value = b""
    expect_continue = False
    chunked = False
    content_length = -1
    keep_alive = True
    reject = 0  # a status to answer with instead of forwarding
    reject_detail = ""
    # Body chunks (already framed) not yet written; a tuple until the first one waits.
    pending: list[bytes] | tuple[()] = ()
    pending_bytes = 0
    body_received = 0
    upstream_reusable = False  # keep-alive, framed: the connection can be reused
    upstream_until_close = False  # the backend's body ends when it closes
    body_complete = False
    body_sent = 0  # framed body bytes written to the backend
    # Framed body written so far, kept for a retry; None once over RETRY_BODY_LIMIT.
    retained: list[bytes] | tuple[()] | None = ()
    pool: PoolState | None = None
    backend: BackendState | None = None
    upstream: UpstreamConn | None = None
    reused = False
    attempts = 0
    status = 0
    response_started = False
    response_framing = F_NONE
    response_bytes = 0
    set_cookie: bytes | None = None
    done = False
    connect_task: asyncio.Task[None] | None = None
    close_after = False

    def __init__(self, started: float) -> None:
        self.started = started
        self.head: list[bytes] = []  # forwarded header lines, each ending in CRLF


class ClientConn(asyncio.Protocol):
    """A connection from a client; serves its requests one after another."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer = b"-"
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.current: Exchange | None = None
        self.head_bytes = 0  # bytes received while a head is incomplete
        self.header_bytes = 0  # size of the header fields of the request being parsed
        self.header_count = 0
        self.in_head = False
        self.dead = False  # the parser stopped; nothing more is read
        self.closed = False
        self.client_paused = False  # the client's socket is full
        self.read_pause = 0  # bit 1: backend full, bit 2: too much waiting
        self.deadline = INF
        self.deadline_kind = D_NONE
        self.tunnel: UpstreamConn | None = None
        self.tunnel_pending: list[bytes] = []
        self.client_eof = False
        self.batch: list[bytes] | None = None  # writes to the client, collected per event

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        conns = self.server.conns
        conns.add(self)
        burst = self.server.burst
        if len(conns) > burst.peak:  # the sweep gives memory back once a burst is over
            burst.peak = len(conns)
        self._set_deadline(D_HEADER, self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.dead:
            if self.current is not None and self.current.upgrade:
                self.tunnel_pending.append(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.dead = True
            rest = data[upgrade.args[0] :]
            if rest:
                self.tunnel_pending.append(rest)
            if self.current is None and self.queue:
                self._next()
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                return  # a callback refused the request and queued the answer
            log.exception("internal error while parsing a request")
            self._refuse(500, "internal")
            return
        except httptools.HttpParserError as exc:
            self._parser_error(exc)
            return
        if self.current is None and self.queue:
            self._next()
        if self.in_head:
            self.head_bytes += len(data)
            # A head still incomplete: bound what httptools buffers for a field in progress.
            if self.head_bytes > self.limits.max_header_bytes + self.limits.max_request_line:
                self._refuse(431 if self.parsing and self.parsing.target else 414, "head size")

    def eof_received(self) -> bool:
        # A half-closed client may still read the answers to what it sent.
        self.client_eof = True
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None and tunnel.transport.can_write_eof():
                tunnel.transport.write_eof()
            else:
                tunnel.close()
            return True
        if self.current is None and not self.queue:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        current = self.current
        if current is not None and not current.done:
            current.done = True
            if current.connect_task is not None:
                current.connect_task.cancel()
            if current.upstream is not None:
                current.upstream.abort()
                current.upstream = None
            if current.status == 0:
                current.status = 499  # the client went away first (nginx's convention)
            self.server.finished(self, current)
        self.current = None
        self.queue.clear()

    def pause_writing(self) -> None:
        self.client_paused = True
        current = self.current
        upstream = self.tunnel or (current.upstream if current is not None else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()
        if current is not None and self.deadline_kind == D_READ:
            self.deadline = INF  # a slow reader is not a slow backend

    def resume_writing(self) -> None:
        self.client_paused = False
        current = self.current
        upstream = self.tunnel or (current.upstream if current is not None else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()
        if current is not None and self.deadline_kind == D_READ:
            self.deadline = self.server.clock + self.server.read_timeout

    # -- httptools callbacks (request) --------------------------------------------------

    def on_message_begin(self) -> None:
        ex = Exchange(time.time())
        self.parsing = ex
        self.in_head = True
        self.head_bytes = 0
        self.header_bytes = 0
        self.header_count = 0
        if self.current is None:
            self._set_deadline(D_HEADER, self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.target += url
        if len(ex.target) > self.limits.max_request_line:
            self._refuse_in_callback(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        self.header_count += 1
        if self.header_count > self.limits.max_header_count:
            self._refuse_in_callback(431, "too many header fields")
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            self._refuse_in_callback(431, "header fields too large")
        lname = name.lower()
        if lname in _SPECIAL_REQUEST_HEADERS:
            self._special_header(ex, lname, value)
        elif lname == self.server.override_header:
            ex.override = value.strip()
            ex.head.append(name + b": " + value + http1.CRLF)
        elif lname not in http1.HOP_BY_HOP:
            ex.head.append(name + b": " + value + http1.CRLF)

    def _special_header(self, ex: Exchange, lname: bytes, value: bytes) -> None:
        if lname == b"host":
            if ex.host is not None:
                self._refuse_in_callback(400, "duplicate Host")
            if value.translate(None, http1.HOST_CHARS):
                self._refuse_in_callback(400, "invalid Host")
            ex.host = value
        elif lname == b"content-length":
            if ex.content_length >= 0 or not value.isdigit():
                self._refuse_in_callback(400, "ambiguous Content-Length")
            ex.content_length = int(value)
        elif lname == b"transfer-encoding":
            if ex.chunked or value.strip().lower() != b"chunked":
                self._refuse_in_callback(501 if not ex.chunked else 400, "Transfer-Encoding")
            ex.chunked = True
        elif lname == b"expect":
            if value.strip().lower() != b"100-continue":
                self._refuse_in_callback(417, "unsupported Expect")
            ex.expect_continue = True
        elif lname == b"x-forwarded-for":
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif lname == b"x-forwarded-proto":
            if value.strip().lower() == b"https":
                ex.https = True
        elif lname == b"x-request-id":
            if ex.request_id is None and http1.valid_request_id(value):
                ex.request_id = value
        elif lname == b"cookie":
            ex.cookie = value if ex.cookie is None else ex.cookie + b"; " + value
            ex.head.append(b"Cookie: " + value + http1.CRLF)
        elif lname == b"upgrade":
            ex.upgrade_value = value
        # connection: its tokens are read from the parser (keep-alive, upgrade); the
        # headers it names are hop-by-hop but are dropped below only when listed.
        elif lname == b"connection":
            extra = [t for t in http1.connection_tokens(value) if t not in _CONNECTION_KNOWN]
            if extra:
                drop = set(extra)
                ex.head = [h for h in ex.head if h.split(b":", 1)[0].lower() not in drop]
                ex.reject_detail = b",".join(extra).decode("latin-1")

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        parser = self.parser
        self.in_head = False
        ex.method = parser.get_method()
        ex.version = parser.get_http_version()
        ex.keep_alive = parser.should_keep_alive() and ex.version == "1.1"
        ex.upgrade = parser.should_upgrade()
        if ex.reject_detail:  # headers named by Connection that came after it
            drop = set(ex.reject_detail.encode("latin-1").split(b","))
            ex.head = [h for h in ex.head if h.split(b":", 1)[0].lower() not in drop]
            ex.reject_detail = ""
        if ex.version != "1.1" and ex.version != "1.0":
            self._refuse_in_callback(505, "HTTP version")
        if ex.host is None and ex.version == "1.1":
            self._refuse_in_callback(400, "missing Host")
        if ex.chunked and ex.content_length >= 0:
            self._refuse_in_callback(400, "Content-Length with Transfer-Encoding")
        if ex.method == b"CONNECT":
            self._refuse_in_callback(501, "CONNECT")
        if ex.target[:1] != b"/" and not http1.valid_other_target(ex.target):
            self._refuse_in_callback(400, "invalid request target")
        max_body = self.limits.max_body
        if max_body is not None and ex.content_length > max_body:
            self._refuse_in_callback(413, "body over max_body")
        if ex.upgrade and (ex.chunked or ex.content_length > 0):
            self._refuse_in_callback(400, "upgrade with a body")
        if ex.content_length <= 0 and not ex.chunked:
            ex.body_complete = True
        self.queue.append(ex)
        if len(self.queue) > MAX_QUEUED:
            self._pause_reading(2)
        # Not started here: the rest of this read is parsed first, so a request whose body
        # turns out malformed (a bad chunk size) never reaches a backend, and a body that
        # came with its head leaves with it (`data_received` starts it).

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        if ex.chunked:
            framed = [http1.chunk_header(len(body)), body, http1.CRLF]
        else:
            framed = [body]
        ex.body_received += len(body)
        max_body = self.limits.max_body
        if max_body is not None and ex.body_received > max_body:
            self._refuse_in_callback(413, "body over max_body")
        if ex is self.current:
            self._set_deadline(D_BODY, self.limits.body_idle_timeout)
        self._forward_body(ex, framed, len(body))

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.parsing = None
        if ex.upgrade:
            return
        if ex.chunked:
            self._forward_body(ex, [http1.LAST_CHUNK], 0)
        ex.body_complete = True
        if ex is self.current and ex.upstream is not None and self.deadline_kind == D_BODY:
            self._set_deadline(D_READ, self.server.read_timeout)

    # -- refusing -----------------------------------------------------------------------

    def _refuse_in_callback(self, status: int, reason: str) -> None:
        self._refuse(status, reason)
        raise _Refused

    def _parser_error(self, exc: httptools.HttpParserError) -> None:
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            reason = "invalid method"
        elif isinstance(exc, httptools.HttpParserInvalidURLError):
            reason = "invalid request target"
        else:
            reason = "malformed request"
        self._refuse(400, reason)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` in turn, then close; stop reading this connection."""
        if self.dead:
            return
        self.dead = True
        self.server.note_refusal(status, reason, self.peer)
        ex = self.parsing if self.parsing is not None else Exchange(time.time())
        self.parsing = None
        self.in_head = False
        ex.reject = status
        ex.reject_detail = reason
        ex.keep_alive = False
        if self.current is ex:
            # A refusal while the body streams (max_body exceeded, bad chunk): the
            # backend must not get the rest; answer now if nothing was sent yet.
            self._fail(ex, status, reason)
            return
        if ex not in self.queue:
            self.queue.append(ex)
        self._pause_reading(2)
        if self.current is None:
            self._next()

    # -- serving ------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the exchange at the front of the queue, if any."""
        while self.queue and self.current is None and not self.closed:
            ex = self.queue.popleft()
            self.current = ex
            if len(self.queue) <= MAX_QUEUED and not self.dead:
                self._resume_reading(2)
            if ex.reject:
                self._answer_error(ex, ex.reject, close=True)
                return
            self._start(ex)
            return
        if self.current is None and not self.closed:
            if self.server.draining or self.dead or self.client_eof:
                self.close()
            elif self.parsing is None:
                self._set_deadline(D_KEEPALIVE, self.limits.keepalive_timeout)

    def _start(self, ex: Exchange) -> None:
        server = self.server
        live = server.live
        if ex.request_id is None:
            ex.request_id = http1.new_request_id()
        if ex.expect_continue and not ex.body_complete and ex.version == "1.1":
            self._send(http1.CONTINUE_100)
        pool: PoolState | None = None
        if ex.override is not None and live.override_header is not None:
            pool = live.pools.get(ex.override.decode("latin-1"))
        if pool is None:
            ids = live.client_ids
            chooser = live.chooser
            assert chooser is not None
            if ids is None:
                # Stickiness off: a fresh random id per request, which is a weighted draw.
                name = chooser.at_random(_random())
            else:
                client_id: str | None = None
                if ex.cookie is not None:
                    value = cookie_from_header(ex.cookie.decode("latin-1"), live.cookie_name)
                    if value is not None:
                        client_id = ids.verify(value)
                if client_id is None:
                    client_id = ids.new_id()
                    ex.set_cookie = (
                        live.set_cookie_prefix
                        + ids.cookie_value(client_id).encode()
                        + live.set_cookie_attrs
                        + (b"; Secure\r\n" if ex.https else b"\r\n")
                    )
                name = chooser.for_client(client_id)
            pool = live.pools[name] if name is not None else None
        if pool is None:
            self._answer_error(ex, 503, close=False)
            return
        ex.pool = pool
        backend = pool.pick()
        if backend is None:
            self._answer_error(ex, 503, close=False)
            return
        self._send_to(ex, backend)

    def _send_to(self, ex: Exchange, backend: BackendState, fresh: bool = False) -> None:
        ex.backend = backend
        ex.attempts += 1
        conn = None if fresh else backend.conns.take_idle()
        if conn is not None:
            ex.reused = True
            self._attach(ex, conn)
        else:
            ex.reused = False
            self._set_deadline(D_NONE, 0)
            ex.connect_task = self.loop.create_task(self._connect(ex, backend))

    async def _connect(self, ex: Exchange, backend: BackendState) -> None:
        """Open a connection for `ex`; `_connected` sends the request the moment it is up."""
        try:
            await backend.conns.connect(self.server.connect_timeout, partial(self._connected, ex))
        except (OSError, TimeoutError) as exc:
            if ex.connect_task is None or ex.done or self.closed:
                return  # attached already (a loss is reported by the connection) or over
            ex.connect_task = None
            self.server.note_upstream_error(ex, UpstreamConnectError.reason, exc)
            self.server.backend_failed(backend)
            self._retry_or_fail(ex, 502, UpstreamConnectError.reason)

    def _connected(self, ex: Exchange, conn: UpstreamConn) -> None:
        if ex.connect_task is None or ex.done or self.closed or self.current is not ex:
            conn.close()
            return
        ex.connect_task = None
        self._attach(ex, conn)

    def _attach(self, ex: Exchange, conn: UpstreamConn) -> None:
        ex.upstream = conn
        conn.owner = self
        conn.head_request = ex.method == b"HEAD"
        conn.write(self._request_head(ex))
        ex.body_sent = 0
        if ex.retained:  # a retry: send what the first attempt sent
            for chunk in ex.retained:
                conn.write(chunk)
                ex.body_sent += len(chunk)
        if ex.pending:
            self._flush_pending(ex)
        if ex.body_complete:
            self._set_deadline(D_READ, self.server.read_timeout)
        else:
            self._set_deadline(D_BODY, self.limits.body_idle_timeout)

    def _request_head(self, ex: Exchange) -> bytes:
        parts = [ex.method, b" ", ex.target, b" HTTP/1.1\r\n"]
        parts += ex.head
        if ex.host is not None:
            parts.append(b"Host: " + ex.host + http1.CRLF)
            parts.append(b"X-Forwarded-Host: " + ex.host + http1.CRLF)
        xff = self.peer if ex.xff is None else ex.xff + b", " + self.peer
        parts.append(b"X-Forwarded-For: " + xff + http1.CRLF)
        parts.append(b"X-Forwarded-Proto: http\r\n")
        parts.append(b"X-Request-Id: " + ex.request_id + http1.CRLF)  # type: ignore[operator]
        if ex.upgrade:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + ex.upgrade_value + http1.CRLF)
        elif ex.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif ex.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % ex.content_length)
        parts.append(http1.CRLF)
        return b"".join(parts)

    def _forward_body(self, ex: Exchange, framed: list[bytes], size: int) -> None:
        conn = ex.upstream
        if conn is not None and ex is self.current and not ex.pending:
            for chunk in framed:
                conn.write(chunk)
            self._retain(ex, framed)
            return
        if not ex.pending:
            ex.pending = []
        ex.pending.extend(framed)
        ex.pending_bytes += size
        if ex.pending_bytes > BODY_HIGH_WATER:
            self._pause_reading(2)

    def _flush_pending(self, ex: Exchange) -> None:
        conn = ex.upstream
        assert conn is not None
        pending = ex.pending
        ex.pending = ()
        ex.pending_bytes = 0
        for chunk in pending:
            conn.write(chunk)
        self._retain(ex, pending)
        if not self.dead and len(self.queue) <= MAX_QUEUED:
            self._resume_reading(2)

    def _retain(self, ex: Exchange, chunks: list[bytes] | tuple[()]) -> None:
        size = 0
        for chunk in chunks:
            size += len(chunk)
        ex.body_sent += size
        if ex.retained is not None:
            if ex.body_sent > RETRY_BODY_LIMIT:
                ex.retained = None
            elif isinstance(ex.retained, tuple):
                ex.retained = list(chunks)
            else:
                ex.retained.extend(chunks)

    # -- response events (called by UpstreamConn) ---------------------------------------

    def on_response_head(
        self,
        status: int,
        reason: bytes,
        lines: list[bytes],
        special: list[tuple[int, bytes]],
        version: str,
        upstream_keep_alive: bool,
    ) -> None:
        ex = self.current
        assert ex is not None
        framing = F_CLOSE
        content_length = -1
        chunked = False
        connection_drop: list[bytes] = []
        upgrade = b""
        # llhttp has already refused invalid names and values, duplicate Content-Length
        # and Content-Length with Transfer-Encoding; what is left is deciding what to pass.
        for kind, value in special:
            if kind == http1.R_LENGTH:
                if content_length >= 0 or not value.isdigit():
                    self.on_upstream_protocol_error("conflicting Content-Length")
                    return
                content_length = int(value)
            elif kind == http1.R_TRANSFER_ENCODING:
                if chunked or value.strip().lower() != b"chunked":
                    self.on_upstream_protocol_error("unsupported Transfer-Encoding")
                    return
                chunked = True
            elif kind == http1.R_CONNECTION:
                if value not in _CONNECTION_PLAIN:
                    connection_drop += http1.connection_tokens(value)
            elif kind == http1.R_UPGRADE:
                upgrade = value
            # else: hop-by-hop, or X-Request-Id (the client gets the id splitter used)
        if chunked and content_length >= 0:
            self.on_upstream_protocol_error("Content-Length with Transfer-Encoding")
            return
        if connection_drop and not _CONNECTION_KNOWN.issuperset(connection_drop):
            drop = set(connection_drop)
            lines = [h for h in lines if h.split(b":", 1)[0].lower() not in drop]
        out = [http1.status_line(status, reason), *lines]
        client_11 = ex.version == "1.1"
        no_body = ex.method == b"HEAD" or status in (204, 304) or status < 200
        ex.upstream_until_close = not (no_body or chunked or content_length >= 0)
        ex.upstream_reusable = upstream_keep_alive and not ex.upstream_until_close
        if no_body:
            framing = F_NONE
            if content_length >= 0:
                out.append(b"Content-Length: %d\r\n" % content_length)
        elif content_length >= 0:
            framing = F_LENGTH
            out.append(b"Content-Length: %d\r\n" % content_length)
        elif client_11:
            framing = F_CHUNKED
            out.append(b"Transfer-Encoding: chunked\r\n")
        else:
            framing = F_CLOSE
        ex.response_framing = framing
        ex.status = status
        ex.response_started = True
        backend = ex.backend
        if backend is not None:
            if status >= 500:
                self.server.backend_failed(backend)
            elif backend.conns.failures:
                backend.conns.failures = 0
        if ex.set_cookie is not None:
            out.append(ex.set_cookie)
        out.append(b"X-Request-Id: " + ex.request_id + http1.CRLF)  # type: ignore[operator]
        if status == 101:
            if not ex.upgrade:
                self.on_upstream_protocol_error("101 without an upgrade request")
                return
            out.append(b"Connection: upgrade\r\nUpgrade: " + upgrade + b"\r\n\r\n")
            self._send(b"".join(out))
            return
        if (
            ex.upgrade
            or framing == F_CLOSE
            or not ex.keep_alive
            or not ex.body_complete  # answered early: the rest of the body is not read
            or self.server.draining
        ):
            ex.close_after = True
        out.append(b"Connection: close\r\n\r\n" if ex.close_after else b"\r\n")
        self._send(b"".join(out))
        self._set_deadline(D_READ, self.server.read_timeout)

    def on_response_body(self, body: bytes) -> None:
        ex = self.current
        if ex is None:
            return
        ex.response_bytes += len(body)
        if ex.response_framing == F_CHUNKED:
            self._send(http1.chunk_header(len(body)))
            self._send(body)
            self._send(http1.CRLF)
        elif ex.response_framing != F_NONE:
            self._send(body)
        if not self.client_paused:
            self.deadline = self.server.clock + self.server.read_timeout

    def on_response_complete(self) -> None:
        ex = self.current
        if ex is None or ex.done:
            return
        conn = ex.upstream
        if conn is not None and ex.status == 101:
            return  # the tunnel starts in on_upstream_upgraded
        if ex.response_framing == F_CHUNKED:
            self._send(http1.LAST_CHUNK)
        ex.upstream = None
        self._finish(ex, conn, reusable=ex.upstream_reusable and ex.body_complete)

    def on_upstream_upgraded(self, rest: bytes) -> None:
        ex = self.current
        conn = ex.upstream if ex is not None else None
        if ex is None or conn is None or ex.status != 101:
            self.on_upstream_protocol_error("unexpected upgrade")
            return
        self.tunnel = conn
        conn.tunnel = True
        self._set_deadline(D_NONE, 0)
        if rest:
            self._send(rest)
        for chunk in self.tunnel_pending:
            conn.write(chunk)
        self.tunnel_pending = []
        self._resume_reading(3)
        # The exchange is logged when the tunnel closes (connection_lost).

    def on_tunnel_data(self, data: bytes) -> None:
        self._send(data)

    def on_upstream_eof(self) -> None:
        ex = self.current
        if self.tunnel is not None:
            transport = self.transport
            if transport is not None and transport.can_write_eof():
                transport.write_eof()
            else:
                self.close()
            return
        if ex is None or ex.done:
            return
        if ex.response_started and ex.upstream_until_close:
            self._end_close_delimited(ex)
            return
        self._upstream_broke(ex, "closed by the backend")

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.tunnel is not None:
            self.tunnel = None
            self.close()
            return
        ex = self.current
        if ex is None or ex.done or ex.upstream is None:
            return
        if ex.response_started and ex.upstream_until_close and exc is None:
            self._end_close_delimited(ex)  # a clean close ends a body delimited by it
            return
        self._upstream_broke(ex, "connection lost")  # a reset never ends a body

    def _end_close_delimited(self, ex: Exchange) -> None:
        if ex.response_framing == F_CHUNKED:
            self._send(http1.LAST_CHUNK)
        conn = ex.upstream
        ex.upstream = None
        self._finish(ex, conn, reusable=False)

    def on_upstream_protocol_error(self, what: str) -> None:
        ex = self.current
        if ex is None or ex.done:
            return
        self.server.note_upstream_error(ex, UpstreamProtocolError.reason, what)
        if ex.backend is not None:
            self.server.backend_failed(ex.backend)
        self._fail(ex, 502, UpstreamProtocolError.reason)

    def upstream_paused(self) -> None:
        self._pause_reading(1)

    def upstream_resumed(self) -> None:
        self._resume_reading(1)

    # -- failures -----------------------------------------------------------------------

    def _upstream_broke(self, ex: Exchange, what: str) -> None:
        """The backend connection ended before a complete response."""
        if not ex.response_started:
            if ex.backend is not None and not ex.reused:
                self.server.backend_failed(ex.backend)
            # Nothing reached the client yet: an idempotent request is sent again (a
            # kept-alive connection the backend closed as it was reused, or a backend
            # that died with the request in hand).
            self.server.note_upstream_error(ex, UpstreamConnectError.reason, what)
            if ex.method in http1.IDEMPOTENT_METHODS:
                self._retry_or_fail(ex, 502, UpstreamConnectError.reason)
                return
        self._fail(ex, 502, UpstreamConnectError.reason)

    def _retry_or_fail(self, ex: Exchange, status: int, reason: str) -> None:
        """Send the exchange once more, to another backend when the pool has one."""
        old = ex.upstream
        ex.upstream = None
        if old is not None:
            old.abort()
        body_resendable = ex.retained is not None or ex.body_sent == 0
        pool, backend = ex.pool, ex.backend
        if ex.attempts < 2 and body_resendable and pool is not None and backend is not None:
            other = pool.pick_other(backend)
            if other is not None:
                self._send_to(ex, other, fresh=True)
                return
        self._fail(ex, status, reason)

    def _fail(self, ex: Exchange, status: int, reason: str) -> None:
        """Give up on an exchange: an error answer when nothing was sent, else abort."""
        conn = ex.upstream
        ex.upstream = None
        if conn is not None:
            conn.abort()
        if ex.connect_task is not None:
            ex.connect_task.cancel()
            ex.connect_task = None
        if ex.response_started:
            ex.done = True
            self.server.finished(self, ex)
            self.current = None
            self.abort()
            return
        self._answer_error(ex, status, close=True, reason=reason)

    def _answer_error(self, ex: Exchange, status: int, close: bool, reason: str = "") -> None:
        if ex.request_id is None:
            ex.request_id = http1.new_request_id()
        close = close or not ex.keep_alive or self.server.draining or self.dead
        detail = {"reason": reason} if reason else None
        if ex.pool is not None and detail is not None:
            detail["pool"] = ex.pool.name
        data = http1.error_response(
            status, ex.request_id, close, detail, head_only=ex.method == b"HEAD"
        )
        ex.status = status
        ex.response_bytes = 0
        ex.response_started = True
        if self.transport is not None and not self.closed:
            self._send(data)
        if not ex.body_complete:
            close = True  # the rest of the body would be read as the next request
        ex.close_after = close
        self._finish(ex, None, reusable=False)

    def _finish(self, ex: Exchange, conn: UpstreamConn | None, reusable: bool) -> None:
        ex.done = True
        if conn is not None:
            if reusable and not conn.closed:
                conn.backend.release(conn, self.server.clock)
            else:
                conn.close()
        self.server.finished(self, ex)
        self.current = None
        if ex.close_after or not ex.body_complete:
            self.close()
            return
        self._next()

    # -- connection housekeeping --------------------------------------------------------

    def _set_deadline(self, kind: int, seconds: float) -> None:
        self.deadline_kind = kind
        self.deadline = INF if kind == D_NONE else self.server.clock + seconds

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep; acts when this connection's deadline passed."""
        if now < self.deadline:
            return
        kind = self.deadline_kind
        self.deadline = INF
        self.deadline_kind = D_NONE
        ex = self.current
        if kind == D_KEEPALIVE:
            self.close()
        elif kind == D_HEADER:
            self.server.note_refusal(408, "request header timeout", self.peer)
            self.dead = True
            if ex is None:
                stub = self.parsing or Exchange(time.time())
                stub.keep_alive = False
                self.parsing = None
                self.current = stub
                self._answer_error(stub, 408, close=True)
        elif kind == D_BODY and ex is not None:
            self.server.note_refusal(408, "request body timeout", self.peer)
            self.dead = True
            self._fail(ex, 408, "")
        elif kind == D_READ and ex is not None:
            self.server.note_upstream_error(ex, UpstreamTimeout.reason, "read timeout")
            if ex.backend is not None:
                self.server.backend_failed(ex.backend)
            self._fail(ex, 504, UpstreamTimeout.reason)

    def _pause_reading(self, reason: int) -> None:
        was = self.read_pause
        self.read_pause |= reason
        if not was and self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def _resume_reading(self, reason: int) -> None:
        if not self.read_pause:
            return
        self.read_pause &= ~reason
        if not self.read_pause and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def drain(self) -> None:
        """Shutdown: close now when idle, else after the exchange in progress."""
        if self.current is None and self.parsing is None and self.tunnel is None:
            self.close()

    def _send(self, data: bytes) -> None:
        """Write to the client; inside a batch, collect so one event makes one write."""
        if self.batch is not None:
            self.batch.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def begin_batch(self) -> None:
        self.batch = []

    def end_batch(self) -> None:
        batch = self.batch
        self.batch = None
        if batch and self.transport is not None and not self.transport.is_closing():
            if len(batch) == 1:
                self.transport.write(batch[0])
            else:
                self.transport.writelines(batch)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.end_batch()
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection with a reset, so a client can tell a cut-short response from
        a complete one even when the response was delimited by the close."""
        transport = self.transport
        if transport is not None:
            self.closed = True
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()


_CONNECTION_KNOWN = frozenset({b"keep-alive", b"close", b"upgrade"})

_CONNECTION_PLAIN = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close", b"upgrade"})


class _Refused(Exception):
    """Stops the parser after a callback refused the request."""

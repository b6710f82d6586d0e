"""Backend connections: a thin asyncio protocol per TCP connection, a keep-alive pool per
backend.

Theory of operation
-------------------
An `UpstreamConn` carries one exchange at a time, its `owner`. Everything it receives goes
to the owner (`upstream_data`), which reads it with the connection's `ResponseReader`
(`splitter.http1.response`); the end of a response is the owner's call (`done`): back to
the pool when the response ended cleanly on a keep-alive connection and the whole request
was written, else closed. While a connection sits idle in its pool, any byte or EOF from
the backend means it is closing it (or sending more than its last response allowed): the
connection is closed at once and never reused.

Rules:

- Idle connections are taken newest first (the least likely to have been closed by the
  backend) and closed after `upstream_idle_timeout`, before a typical backend's own
  keep-alive timeout (gunicorn 2 s+, nginx 75 s, Node 5 s) would close them under us; at
  most `upstream_max_idle` are kept per backend (the oldest goes), so that a burst of
  clients does not leave a thousand idle connections behind it (nginx's `keepalive`).
- Backpressure: when the socket to the backend is full, the owner stops reading from its
  client (`upstream_paused`), and the reverse.
- A connection is opened by `open_connection`, whose failures (OSError) become
  `UpstreamConnectError` here, at the one boundary; a connect timeout is the exchange's
  deadline, enforced by the listener's sweep (no timer per connection).
- An https:// backend's connection that ends without a TLS close_notify is lost, not
  ended: that end can be forged by anyone on the path, and would pass a close-delimited
  body truncated as complete (RFC 2818 2.2.1). uvloop reports it as `connection_lost(None)`
  with no EOF before; asyncio's loop as an EOF, told apart by reading once more.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from splitter.config import Backend, BackendTLS, Limits
from splitter.errors import ProxyError, UpstreamConnectError, UpstreamLost
from splitter.http1.response import ResponseReader
from splitter.tls.backends import CAFileError, client_context

__all__ = ["BackendConnections", "UpstreamConn", "UpstreamOwner", "open_connection"]


class UpstreamOwner(Protocol):
    """What a backend connection reports to the exchange it carries."""

    def upstream_data(self, data: bytes) -> None: ...
    def upstream_eof(self) -> None: ...
    def upstream_lost(self, error: ProxyError | None) -> None: ...
    def upstream_paused(self) -> None: ...
    def upstream_resumed(self) -> None: ...


class Connecting(Protocol):
    """The exchange a new connection is made for."""

    def connected(self, upstream: UpstreamConn) -> bool: ...
    def connect_failed(self, error: ProxyError) -> None: ...


class UpstreamConn:
    """One connection to a backend (see the module docstring)."""

    def __init__(self, pool: BackendConnections, waiting: Connecting | None = None) -> None:
        self.pool = pool
        self.waiting = waiting  # told at connection_made, once
        self.transport: asyncio.Transport | None = None
        self.owner: UpstreamOwner | None = None
        self.reader = ResponseReader(pool.max_line, pool.max_field_bytes, pool.max_fields)
        self.idle_since = 0.0
        self.in_pool = False
        self.closed = False
        self.reading_paused = False  # paused by its owner (a client that does not keep up)
        self.http2 = False  # a stream on a shared HTTP/2 connection (`h2call.H2Call`)

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        waiting = self.waiting
        if waiting is not None:
            self.waiting = None
            if self.pool.tls is not None and _alpn_h2(transport):
                # The backend chose HTTP/2: the connection becomes one of its shared
                # HTTP/2 connections, and the request a stream on it.
                self.closed = True
                self.transport = None
                self.pool.adopt_h2(transport, waiting)
                return
            if not waiting.connected(self):
                self.close()

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:  # an idle connection must stay silent
            self.abort()
            return
        owner.upstream_data(data)

    def eof_received(self) -> bool:
        owner = self.owner
        if owner is None:
            self.close()
            return False
        if self.pool.tls is not None:
            if not _close_notified(self.transport):  # asyncio's loop says EOF for both
                self.owner = None
                owner.upstream_lost(UpstreamLost(_NO_CLOSE_NOTIFY))
                return False
            owner.upstream_eof()
            return False  # TLS has no half-close (and asyncio warns of True)
        owner.upstream_eof()
        return True  # the owner closes (a tunnel may still send the other way)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        owner = self.owner
        if owner is not None:
            self.owner = None
            if exc is not None:
                owner.upstream_lost(UpstreamLost(f"connection lost: {exc}"))
            elif self.pool.tls is not None:  # uvloop: no EOF came first, so no close_notify
                owner.upstream_lost(UpstreamLost(_NO_CLOSE_NOTIFY))
            else:
                owner.upstream_lost(None)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_paused()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resumed()

    # -- used by the owner --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def write_parts(self, parts: list[bytes]) -> None:
        transport = self.transport
        if transport is not None:
            if len(parts) == 1:
                transport.write(parts[0])
            else:
                transport.writelines(parts)

    def send_head(self, ex: Any) -> None:
        """HTTP/2 only: the request's HEADERS (the owner's request, `ex`)."""
        raise NotImplementedError

    def end_body(self) -> None:
        """HTTP/2 only: the request body is complete (END_STREAM)."""
        raise NotImplementedError

    def write_eof(self) -> None:
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
        else:
            self.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def done(self, reusable: bool, now: float) -> None:
        """The owner is finished with it: keep it alive for another request, or close it.
        A connection kept reads again: its owner may have paused it for a slow client in
        the same read that ended the response."""
        self.owner = None
        if reusable and not self.closed:
            if self.reading_paused:
                self.resume_reading()
            self.pool.release(self, now)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner = None
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner = None
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()


# A backend's TLS that ends without close_notify ends no body: anyone on the path can
# forge that end, and a close-delimited body would pass truncated (RFC 2818 2.2.1).
_NO_CLOSE_NOTIFY: Final = "TLS ended without close_notify"


def _alpn_h2(transport: asyncio.BaseTransport) -> bool:
    sslobj = transport.get_extra_info("ssl_object")
    return sslobj is not None and sslobj.selected_alpn_protocol() == "h2"


def _close_notified(transport: asyncio.Transport | None) -> bool:
    """Whether the backend's TLS ended with a close_notify (asyncio reports a bare end of
    the socket as an EOF too): once one came, reading says so again; without it, reading
    waits for more."""
    sslobj: ssl.SSLObject | None = None
    if transport is not None:
        sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return True
    try:
        return not sslobj.read(1)
    except ssl.SSLZeroReturnError:
        return True
    except ssl.SSLError:  # SSLWantReadError: the socket ended, the TLS did not
        return False


class BackendConnections:
    """The connections to one backend: its idle keep-alive pool and how to open more."""

    def __init__(self, backend: Backend, limits: Limits) -> None:
        self.url = backend.url
        self.host = backend.host
        self.port = backend.port
        # A response head has the limits of a request's (docs/configuration.md#limits-and-timeouts).
        self.max_line = limits.max_request_line
        self.max_field_bytes = limits.max_header_bytes
        self.max_fields = limits.max_header_count
        self.max_idle = limits.upstream_max_idle
        self.idle: deque[UpstreamConn] = deque()  # oldest first
        # An https:// backend: its context (splitter.tls.backends) and settings.
        self.tls: BackendTLS | None = backend.tls
        # A backend of an `h2c` pool, or an https:// backend that chose h2 by ALPN: its
        # shared HTTP/2 connections (`splitter.proxy.h2upstream.H2Backend`), which carry
        # the requests instead; `h2_factory` makes them (set by the listener).
        self.h2: Any = None
        self.h2_factory: Any = None

    def adopt_h2(self, transport: asyncio.BaseTransport, waiting: Connecting) -> None:
        """An https:// backend chose h2 by ALPN on a new connection made for `waiting`."""
        factory = self.h2_factory
        if factory is None:
            transport.close()
            waiting.connect_failed(UpstreamConnectError("the backend chose h2 unasked"))
            return
        if self.h2 is None:
            self.h2 = factory(self)
        self.h2.adopt(transport, waiting)

    def take_idle(self) -> UpstreamConn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
        return None

    def release(self, conn: UpstreamConn, now: float) -> None:
        idle = self.idle
        if len(idle) >= self.max_idle:  # a burst's connections are not all kept
            oldest = idle.popleft()
            oldest.in_pool = False
            oldest.close()
        conn.idle_since = now
        conn.in_pool = True
        idle.append(conn)

    def forget(self, conn: UpstreamConn) -> None:
        if conn.in_pool:
            conn.in_pool = False
            try:
                self.idle.remove(conn)
            except ValueError:
                pass

    def close_idle_before(self, cutoff: float) -> None:
        """Close the connections idle since before `cutoff` (the oldest are at the front)."""
        idle = self.idle
        while idle and idle[0].idle_since < cutoff:
            conn = idle.popleft()
            conn.in_pool = False
            conn.close()

    def close_all(self) -> None:
        if self.h2 is not None:
            self.h2.close_all()
        idle = self.idle
        while idle:
            conn = idle.popleft()
            conn.in_pool = False
            conn.close()


async def open_connection(
    loop: asyncio.AbstractEventLoop, pool: BackendConnections, waiting: Connecting
) -> None:
    """Open a connection for `waiting` (told in `connection_made`, with the request sent
    one loop iteration before this coroutine would resume); UpstreamConnectError if the
    connection cannot be made."""
    # The protocols are plain classes (asyncio calls them by their method names).
    factory = cast("Callable[[], asyncio.Protocol]", lambda: UpstreamConn(pool, waiting))
    tls = pool.tls
    try:
        if tls is None:
            await loop.create_connection(factory, pool.host, pool.port)
        else:
            # The context of the CA file as it is now (a rotated CA reaches new connections
            # and health probes alike; one that stops loading leaves the last good one).
            context = client_context(tls, h2=pool.h2_factory is not None)
            await loop.create_connection(
                factory, pool.host, pool.port, ssl=context, server_hostname=pool.host
            )
    except ssl.SSLCertVerificationError as exc:  # before OSError: it is one
        raise UpstreamConnectError(f"TLS: certificate not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise UpstreamConnectError(f"TLS: {exc.reason or exc}") from None
    except CAFileError as exc:
        raise UpstreamConnectError(f"TLS: {exc}") from None
    except OSError as exc:
        raise UpstreamConnectError(exc.strerror or str(exc)) from None

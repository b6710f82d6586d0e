"""Backend connections: one asyncio protocol per TCP connection, a keep-alive pool per backend.

Theory of operation
-------------------
An `UpstreamConn` carries one exchange at a time. While it is lent to a client connection
(`owner` set) it parses the response with httptools and hands each event to the owner
(`on_response_head`, `on_response_body`, `on_response_complete`, and the failure
callbacks). While it sits idle in its `BackendConnections` pool, any byte or EOF from the
backend means the backend is closing it, so the connection is dropped.

Rules:

- A connection goes back to the pool only after a complete response with keep-alive, and
  only when the whole request was written; otherwise it is closed.
- Idle connections are taken newest first (they are the least likely to have been closed
  by the backend) and closed after `upstream_idle_timeout`, before a typical backend's
  own keep-alive timeout (gunicorn 2 s+, nginx 75 s, Node 5 s) would close them under us.
- The response to HEAD has no body whatever its headers say; httptools cannot be told,
  so after a HEAD the parser is replaced by a fresh one.
- Backpressure: when the socket to the backend is full, the owner stops reading from
  its client (`pause_writing` -> `owner.upstream_paused`), and the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httptools

from splitter.http1 import RESPONSE_SPECIAL

if TYPE_CHECKING:
    from splitter.config import Backend

__all__ = ["BackendConnections", "UpstreamConn"]


class UpstreamConn(asyncio.Protocol):
    """One connection to a backend; response events go to `owner`."""

    __slots__ = (
        "backend",
        "transport",
        "owner",
        "parser",
        "lines",
        "special",
        "reason",
        "idle_since",
        "closed",
        "head_request",
        "interim",
        "tunnel",
        "on_made",
    )

    def __init__(
        self,
        backend: BackendConnections,
        on_made: Callable[[UpstreamConn], None] | None = None,
    ) -> None:
        self.backend = backend
        self.on_made = on_made  # called at connection_made, once
        self.transport: asyncio.Transport | None = None
        self.owner: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.lines: list[bytes] = []  # response header lines to pass on, with CRLF
        self.special: list[tuple[int, bytes]] = []  # (kind, value) of the others
        self.reason = b""
        self.idle_since = 0.0
        self.closed = False
        self.head_request = False  # the exchange in progress answers a HEAD
        self.interim = False  # the message being parsed is a 1xx other than 101
        self.tunnel = False  # after a 101: bytes go to the owner as they are

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        on_made = self.on_made
        if on_made is not None:
            self.on_made = None
            on_made(self)

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:  # an idle connection must stay silent
            self.close()
            return
        if self.tunnel:
            owner.on_tunnel_data(data)
            return
        # One batch per read: the response head and the first body bytes leave in one
        # write to the client, not two.
        owner.begin_batch()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            owner.on_upstream_upgraded(data[upgrade.args[0] :])
        except httptools.HttpParserError as exc:
            if not isinstance(exc.__context__, _HeadDone) and self.owner is not None:
                self.owner.on_upstream_protocol_error(str(exc))
        finally:
            owner.end_batch()

    def eof_received(self) -> bool:
        owner = self.owner
        if owner is not None:
            owner.on_upstream_eof()
        else:
            self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.backend.forget(self)
        owner = self.owner
        if owner is not None:
            self.owner = None
            owner.on_upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_paused()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resumed()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.lines = []
        self.special = []
        self.reason = b""

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = RESPONSE_SPECIAL.get(name.lower())
        if kind is None:
            self.lines.append(name + b": " + value + b"\r\n")
        else:
            self.special.append((kind, value))

    def on_headers_complete(self) -> None:
        status: int = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim responses (100, 103) are not forwarded: splitter answers
            # Expect: 100-continue itself, and 103 hints are optional.
            self.interim = True
            return
        self.interim = False
        self.owner.on_response_head(
            status,
            self.reason,
            self.lines,
            self.special,
            self.parser.get_http_version(),
            self.parser.should_keep_alive(),
        )
        if self.head_request:
            # llhttp would wait for a body the Content-Length announces; a HEAD has none.
            self.parser = httptools.HttpResponseParser(self)
            self.head_request = False
            if self.owner is not None:
                self.owner.on_response_complete()
            raise _HeadDone
        if self.owner is None:  # the head was refused; parse no further
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        owner = self.owner
        if owner is not None:
            owner.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        owner = self.owner
        if owner is not None:
            owner.on_response_complete()

    # -- helpers ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner = None
            self.backend.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner = None
            self.backend.forget(self)
            if self.transport is not None:
                self.transport.abort()


class _HeadDone(Exception):
    """Stops the parser after the head of a response to HEAD (see the module rules)."""


class BackendConnections:
    """The connections to one backend: the idle keep-alive pool and how to open more."""

    __slots__ = (
        "backend",
        "ejected_until",
        "ejections",
        "failures",
        "health_up",
        "host",
        "idle",
        "loop",
        "port",
        "up",
    )

    def __init__(self, backend: Backend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.host = backend.host
        self.port = backend.port
        self.idle: list[UpstreamConn] = []
        self.loop = loop
        # Health: `up` is what routing uses: the active checks say so (`health_up`) and
        # passive ejection (`ejected_until`, after consecutive failures) does not object.
        self.up = True
        self.health_up = True
        self.ejected_until = 0.0
        self.ejections = 0  # in a row; each one lasts twice as long as the one before
        self.failures = 0  # consecutive failed exchanges (connect, reset, 5xx, timeout)

    def update_up(self, now: float) -> bool:
        """Recompute `up`; True when it changed."""
        up = self.health_up and now >= self.ejected_until
        changed = up != self.up
        self.up = up
        return changed

    def take_idle(self) -> UpstreamConn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
        return None

    async def connect(
        self, timeout: float, on_made: Callable[[UpstreamConn], None] | None = None
    ) -> UpstreamConn:
        """Open a new connection; OSError or TimeoutError when it cannot be made in time.

        `on_made(conn)` runs as soon as the connection is up, from the protocol callback:
        the request goes out then, one loop iteration before this coroutine resumes.
        """
        async with asyncio.timeout(timeout):
            _, conn = await self.loop.create_connection(
                lambda: UpstreamConn(self, on_made), self.host, self.port
            )
        return conn

    def release(self, conn: UpstreamConn, now: float) -> None:
        conn.owner = None
        if conn.closed:
            return
        conn.idle_since = now
        self.idle.append(conn)

    def forget(self, conn: UpstreamConn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close_idle_before(self, cutoff: float) -> None:
        """Close the connections idle since before `cutoff` (oldest are at the front)."""
        idle = self.idle
        while idle and idle[0].idle_since < cutoff:
            idle.pop(0).close()

    def close_all(self) -> None:
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()

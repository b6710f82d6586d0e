"""The admin listener's own limits (docs/admin-api.md): it never takes file descriptors or time
from the proxy.

    listening socket -> AdminListener (accepts while fewer than MAX_CONNECTIONS are open)
                     -> Guarded protocol (the head deadline) -> aiohttp's RequestHandler

Rules:

- At most `MAX_CONNECTIONS` (256) connections at once. At the limit the listener stops
  accepting: new connections wait in the kernel's backlog (or are refused by it when it
  is full), so the admin side holds at most that many descriptors, whatever clients
  do. Accepting resumes as soon as one closes. An accept that fails for want of
  descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses accepting for a second
  instead of spinning.
- A request head must arrive within `HEAD_TIMEOUT` (10 s): from the accept for a
  connection's first request, from its first byte for a later one (a kept-alive
  connection). Past it the connection is closed: with a 408 when part of a head came,
  silently when nothing did (a browser's preconnect). The head is known to be complete
  when aiohttp hands the request to the app: `head_received`, the app's first
  middleware, says so.
- An idle kept-alive connection is aiohttp's to close (`keepalive_timeout`, 60 s).

aiohttp's `web.Server` stays the protocol factory: this module only decides when to
accept, and wraps each protocol to watch its head. The loop's own `connect_accepted_socket`
attaches an accepted socket (asyncio and uvloop alike).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

log = logging.getLogger("splitter.admin")

MAX_CONNECTIONS: Final = 256
HEAD_TIMEOUT: Final = 10.0
KEEPALIVE_TIMEOUT: Final = 60.0
ACCEPT_RETRY: Final = 1.0  # seconds without accepting after running out of descriptors
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_TIMEOUT_BODY: Final = b'{"error": "the request head did not arrive within 10 s"}'
_TIMEOUT_RESPONSE: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)

# Connection states of a Guarded protocol.
_HEAD, _BUSY, _IDLE = range(3)


class Guarded(asyncio.Protocol):
    """An aiohttp connection with the head deadline: passes every call through."""

    def __init__(self, inner: asyncio.Protocol, listener: AdminListener) -> None:
        self.inner = inner
        self.listener = listener
        self.transport: Any = None  # asyncio's or uvloop's (not an asyncio.Transport)
        self.state = _HEAD
        self.received = False  # a byte of the head in progress arrived
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.state == _IDLE:  # the first byte of the next request: its deadline runs
            self.state = _HEAD
            self._arm()
        if self.state == _HEAD:
            self.received = True
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        try:
            self.inner.connection_lost(exc)
        finally:
            self.listener.closed()

    # -- the head deadline ----------------------------------------------------------------

    def head_done(self) -> None:
        """aiohttp parsed a head and hands it to the app."""
        self.state = _BUSY
        self._disarm()

    def request_done(self) -> None:
        """The app answered; the next byte starts the next head."""
        if self.state == _BUSY:
            self.state = _IDLE
            self.received = False

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.listener.head_timeout, self._expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.state != _HEAD:
            return
        if self.received:
            transport.write(_TIMEOUT_RESPONSE)
        transport.close()


class AdminListener:
    """Accepts on a listening socket for an aiohttp server, within the limits above."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        name: str,
        limit: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.name = name
        self.limit = limit
        self.head_timeout = head_timeout
        self.open = 0  # accepted connections not closed yet
        self.loop = asyncio.get_running_loop()
        self._reading = False
        self._stopped = False
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logged_full = False

    def start(self) -> None:
        self.sock.setblocking(False)
        self._resume()

    def close(self) -> None:
        """Stop accepting and close the listening socket (open connections stay: aiohttp's
        shutdown closes them)."""
        self._stopped = True
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
        self.sock.close()

    def closed(self) -> None:
        """A connection ended: one more may be accepted."""
        self.open -= 1
        if not self._reading and self._retry is None and self.open < self.limit:
            self._logged_full = False
            self._resume()

    def _resume(self) -> None:
        if not self._reading and not self._stopped:
            self.loop.add_reader(self.sock.fileno(), self._accept)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.sock.fileno())
            self._reading = False

    def _accept(self) -> None:
        while self.open < self.limit:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.warning("%s listener: cannot accept (%s); trying again in %.0f s",
                                self.name, exc.strerror, ACCEPT_RETRY)  # fmt: skip
                    self._pause()
                    self._retry = self.loop.call_later(ACCEPT_RETRY, self._retry_accept)
                    return
                continue  # ECONNABORTED and the like: that connection only
            conn.setblocking(False)
            self.open += 1
            task = self.loop.create_task(self._attach(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._pause()  # at the limit: the rest wait in the backlog
        if not self._logged_full:
            self._logged_full = True
            log.warning("%s listener: %d connections open, the most it takes; new ones "
                        "wait until one closes", self.name, self.limit)  # fmt: skip

    def _retry_accept(self) -> None:
        self._retry = None
        if self.open < self.limit:
            self._resume()

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: Guarded(self.factory(), self), conn)
        except Exception:  # the connection went away before it was set up
            conn.close()
            self.closed()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def head_received(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The first middleware: the head came in time (the deadline stops); once answered,
    the next byte on the connection starts the next head's deadline."""
    transport = request.transport
    guard = transport.get_protocol() if transport is not None else None
    if not isinstance(guard, Guarded):
        return await handler(request)
    guard.head_done()
    try:
        return await handler(request)
    finally:
        guard.request_done()

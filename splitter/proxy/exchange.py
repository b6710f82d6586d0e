"""One exchange: a client's request and its response, as an explicit state machine.

Theory of operation
-------------------
The downstream protocol (`downstream.ClientConn`) reads a request head and makes an
`Exchange`; the exchange at the front of the connection's queue is served. Serving it is a
line of states, each left by one event:

    state        event                                  next state
    ----------   ------------------------------------   ----------------------------------
    QUEUED       its turn comes (start)                 ROUTING
    ROUTING      a pool and backend; an idle connection AWAIT_HEAD
    ROUTING      ... no idle connection                 CONNECTING
    ROUTING      no live pool or backend                FAILED (503)
    ROUTING      the request was refused while queued   FAILED (its 4xx)
    CONNECTING   connected                              AWAIT_HEAD
    CONNECTING   connect refused / timed out            CONNECTING (retry) | FAILED (502)
    AWAIT_HEAD   a response head                        STREAMING | DONE (no body) | TUNNEL
    AWAIT_HEAD   connection lost, bad head              CONNECTING (retry) | FAILED (502)
    AWAIT_HEAD   read timeout                           FAILED (504)
    STREAMING    the body is complete                   DONE
    STREAMING    connection lost, bad body, timeout     FAILED (client connection cut)
    TUNNEL       either side closes                     DONE
    any          the client leaves                      FAILED (499)
    any          the request body is refused or stalls  FAILED (408, 413, 400)

DONE and FAILED are final: the observation (the exchange itself, see `splitter.observe.observation`)
goes to the observers once, and the client connection goes on with its next request or
closes.

Rules that live here, once:

- **Retry and retain** (`fail`): an attempt that failed before any response byte reached
  the client is sent once more (a second attempt at most), on another live backend of the
  pool (the same one on a fresh connection when it is alone), when its error allows it
  (`errors.RETRY_*`: connect failures always; a connection lost before the answer for an
  idempotent method), and when its body can be sent again: not forwarded yet, or kept
  because it is small (up to RETRY_BODY_LIMIT framed bytes are retained as they are sent).
- **Request body**: streamed to the backend as it arrives, re-chunked when it came chunked;
  held (up to BODY_HIGH_WATER, then client reads pause) while no connection is attached.
- **Response framing towards the client** (`policy.response_head` decides): the backend's
  Content-Length is kept; a chunked or close-delimited body is chunked for an HTTP/1.1
  client and close-delimited for an HTTP/1.0 one; HEAD, 204, 304 have none.
- Nothing is retried once a response byte has reached the client: a failure then cuts the
  client connection with a reset, so no client takes a cut response for a complete one.

- **Shadow traffic** (docs/shadow.md): when the weights chose a pool that carries its
  route's shadow (`PoolState.shadow`), the listener may open a tap (`Context.shadow_begin`:
  the share's draw, the methods, `max_in_flight`); the exchange hands the tap the request
  body as it forwards it and the backend's answer as it passes it on, and nothing else:
  the copies go out and are compared beside it (`splitter.proxy.shadowing`), never
  holding up or changing what the client gets. The tap learns the end from the listener
  (`finished`), once.

Everything it does to the outside goes through the interfaces it is given: the client
connection (`Downstream`), the listener (`Context`: routing policy, backends' connection
pools, the clock) and the backend connection (`upstream.UpstreamConn`).
"""

from __future__ import annotations

import time
from typing import Final, Protocol

from splitter.errors import (
    RETRY_ALWAYS,
    RETRY_IDEMPOTENT,
    NoHealthyBackend,
    ProxyError,
    RequestRefused,
    UpstreamConnectError,
    UpstreamLost,
    UpstreamTimeout,
)
from splitter.http1.messages import (
    CONTINUE_100,
    CRLF,
    LAST_CHUNK,
    chunk_header,
    error_response,
    new_request_id,
)
from splitter.http1.request import RequestHead
from splitter.http1.response import ResponseHead
from splitter.observe.observation import Observation
from splitter.proxy.policy import F_CHUNKED, F_NONE, Policy, response_head, route, upstream_head
from splitter.proxy.upstream import BackendConnections, UpstreamConn
from splitter.state import BackendState, Live, PoolState, ShadowPlan

__all__ = ["Context", "Downstream", "Exchange"]

QUEUED: Final = 0
ROUTING: Final = 1
CONNECTING: Final = 2
AWAIT_HEAD: Final = 3
STREAMING: Final = 4
TUNNEL: Final = 5
DONE: Final = 6
FAILED: Final = 7
STATE_NAMES: Final = (
    "QUEUED", "ROUTING", "CONNECTING", "AWAIT_HEAD", "STREAMING", "TUNNEL", "DONE", "FAILED"
)  # fmt: skip

BODY_HIGH_WATER: Final = 256 * 1024  # body bytes held for a backend before client reads pause
RETRY_BODY_LIMIT: Final = 64 * 1024  # a body up to this size is kept so it can be sent again
IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

# Why the client connection stops reading (bits; reading resumes when none is left).
PAUSE_UPSTREAM_FULL: Final = 1  # the backend's socket is full
PAUSE_QUEUE: Final = 2  # a body held for a request not yet connected is over the high water
PAUSE_STOPPED: Final = 4  # a refusal: nothing more is read
PAUSE_HOLD: Final = 8  # an upgrade waits for its 101 with as much held as allowed
PAUSE_PIPELINE: Final = 16  # too many pipelined requests read ahead

INF: Final = float("inf")


class Cancellable(Protocol):
    def cancel(self) -> bool: ...


class Downstream:
    """What an exchange needs of its client connection: the interface it declares, which
    `downstream.ClientConn` implements (a base class rather than a Protocol, so that a
    compiled build calls it directly)."""

    def __init__(self, peer: bytes) -> None:
        self.peer = peer  # the connection's peer, as the socket says
        # The address appended to X-Forwarded-For: the peer, or the source a PROXY protocol
        # header named (the client's own connection, seen through an L4 balancer).
        self.source = peer
        self.client_addr = peer.decode("latin-1")  # the connection's client (clientaddr)
        self.upstream_deadline = INF  # the current exchange's connect or read deadline
        self.send_blocked = False  # the client's socket is full: a slow reader, not backend
        # An HTTP/2 stream (`splitter.proxy.h2stream.Stream`): the response's form is its own
        # (`respond_head`, `respond_error`); `send` then carries body bytes only.
        self.http2 = False

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def begin_batch(self) -> bool:
        raise NotImplementedError

    def end_batch(self, started: bool) -> None:
        raise NotImplementedError

    def pause_reading(self, reason: int) -> None:
        raise NotImplementedError

    def resume_reading(self, reason: int) -> None:
        raise NotImplementedError

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def start_tunnel(self, ex: Exchange, upstream: UpstreamConn, rest: bytes) -> None:
        raise NotImplementedError

    def tunnel_eof(self) -> None:
        raise NotImplementedError

    def tunnel_lost(self) -> None:
        raise NotImplementedError

    def respond_head(self, ex: Exchange, head: ResponseHead) -> int:
        """HTTP/2 only: send the response's head; the framing of what follows (F_NONE
        when the head ended the stream, else F_LENGTH: body bytes passed as they come)."""
        raise NotImplementedError

    def respond_error(self, ex: Exchange, status: int, detail: dict[str, str] | None) -> None:
        """HTTP/2 only: answer splitter's own error, complete."""
        raise NotImplementedError

    def respond_trailers(self, ex: Exchange, fields: list[tuple[bytes, bytes]]) -> None:
        """HTTP/2 only: the response's trailers, which end it."""
        raise NotImplementedError


class ShadowTap(Protocol):
    """What an exchange gives a shadow copy of itself (`splitter.proxy.shadowing.Copy`)."""

    def request_body(self, framed: list[bytes], size: int) -> None: ...
    def request_end(self) -> None: ...
    def primary_head(self, status: int, fields: bytes) -> None: ...
    def primary_body(self, data: bytes) -> None: ...
    def primary_finished(self, ok: bool, status: int, failed: bool) -> None: ...


class Context:
    """What an exchange needs of the listener it came through (`listener.ProxyListener`
    implements it): the snapshot in force, the policy, the clock and timeouts, the
    backends' connection pools, and where a finished exchange goes."""

    def __init__(self, live: Live, policy: Policy) -> None:
        self.live = live
        self.policy = policy
        self.clock = 0.0  # never behind the real loop time; deadlines are set from it
        self.read_timeout = 60.0
        self.connect_timeout = 2.0
        self.draining = False
        self.pools: dict[str, BackendConnections] = {}

    def connect(self, ex: Exchange, pool: BackendConnections) -> None:
        raise NotImplementedError

    def finished(self, ex: Exchange) -> None:
        raise NotImplementedError

    def shadow_begin(
        self, plan: ShadowPlan, ex: Exchange, pending: list[bytes] | None, pending_bytes: int
    ) -> ShadowTap | None:
        """A tap when this request is to be copied (the share's draw and the limits);
        `pending` is the framed body read before the exchange's turn came."""
        return None


class Exchange(Observation):
    """One request and its response (see the module docstring)."""

    def __init__(self, conn: Downstream, ctx: Context, req: RequestHead, started: float) -> None:
        super().__init__(started)
        self.client_addr = conn.client_addr  # per request from X-Forwarded-For, when trusted
        self.conn = conn
        self.ctx = ctx
        self.req = req
        self.method = req.method
        self.target = req.target
        self.state = QUEUED
        self.refusal: RequestRefused | None = None  # refused while queued: answer it in turn
        # Request body towards the backend.
        self.body_complete = not req.has_body or req.upgrade
        self.pending: list[bytes] | None = None  # framed body waiting for a connection
        self.pending_bytes = 0
        self.retained: list[bytes] | None = [] if req.has_body else None  # for a retry
        self.body_sent = 0  # framed body bytes written to the current attempt
        self.body_raw = False  # an HTTP/2 backend: the body goes unframed (DATA frames)
        self.request_trailers: list[tuple[bytes, bytes]] | None = None  # HTTP/2 to HTTP/2
        # Routing and the backend.
        self.live: Live | None = None
        self.pool: PoolState | None = None
        self.backend: BackendState | None = None
        self.upstream: UpstreamConn | None = None
        self.attempts = 0
        self.reused = False  # the current attempt took a kept-alive connection
        self.set_cookie: bytes | None = None
        self.connect_task: Cancellable | None = None  # a connection being made for it
        # The response towards the client.
        self.framing = F_NONE
        self.close_after = False
        self.response_started = False  # a byte of the answer was sent to the client
        self.shadow: ShadowTap | None = None  # the copy of this request, when one is made

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    @property
    def finished_state(self) -> bool:
        return self.state >= DONE

    # -- starting -----------------------------------------------------------------------

    def start(self) -> None:
        """Its turn has come: route it and send it to a backend (QUEUED -> ROUTING -> ...)."""
        req = self.req
        if req.request_id is None:
            req.request_id = new_request_id()
        self.state = ROUTING
        if self.refusal is not None:
            self._answer_error(self.refusal.status, "", close=True)
            return
        ctx = self.ctx
        live = self.live = ctx.live
        if req.expect_continue and not self.body_complete and req.version == "1.1":
            self.conn.send(CONTINUE_100)
        pool, self.set_cookie = route(live, req, self)
        if pool is None:
            if self.route_name is None:  # no route takes it: 404 {"error": "no route"}
                self._answer_error(404, "", close=False)
                return
            self.fail(NoHealthyBackend("no live pool"))
            return
        self.pool = pool
        self.pool_name = pool.name
        self.pool_key = pool.key
        backend = pool.pick()
        if backend is None:
            self.fail(NoHealthyBackend(f"pool {pool.name} has no live backend"))
            return
        pending, pending_bytes = self.pending, self.pending_bytes  # a copy sends these too
        self._send_to(backend, fresh=False)
        plan = pool.shadow
        if plan is not None and not self.by_override:  # the weights chose: maybe a copy
            self.shadow = ctx.shadow_begin(plan, self, pending, pending_bytes)

    def _send_to(self, backend: BackendState, fresh: bool) -> None:
        self.backend = backend
        self.backend_url = backend.url
        self.attempts += 1
        ctx = self.ctx
        pool = ctx.pools.get(backend.url)
        if pool is None:  # a snapshot older than the last swap: its backend was removed
            pool = BackendConnections(backend.backend, ctx.live.config.limits)
        h2 = pool.h2
        if h2 is not None:  # a stream on a shared HTTP/2 connection: connected() follows
            if not self.body_raw:
                self._unframe()
            self.reused = False
            self.state = CONNECTING
            self.conn.upstream_deadline = ctx.clock + ctx.connect_timeout
            h2.open_stream(self)
            return
        conn = None if fresh else pool.take_idle()
        if conn is not None:
            self.reused = True
            self._attach(conn)
            return
        self.reused = False
        self.state = CONNECTING
        self.conn.upstream_deadline = ctx.clock + ctx.connect_timeout
        ctx.connect(self, pool)

    # -- events from the connector ------------------------------------------------------

    def connected(self, upstream: UpstreamConn) -> bool:
        """A new connection is up; False when this exchange no longer wants it."""
        if self.state != CONNECTING:
            return False
        self.connect_task = None  # done with it: never cancel it after this (the transport
        # is ours now, and cancelling the task would close it)
        self._attach(upstream)
        return True

    def connect_failed(self, error: ProxyError) -> None:
        if self.state != CONNECTING:
            return
        self._upstream_failed(error)
        self.fail(error)

    def _unframe(self) -> None:
        """The body goes to an HTTP/2 backend: unframed from now on, and what was read
        before (chunk-framed when the client sent it chunked) without its framing."""
        self.body_raw = True
        pending = self.pending
        if pending and self.req.chunked:
            if pending[-1] == LAST_CHUNK:
                pending.pop()
            self.pending = pending[1::3]  # [size line, data, CRLF] per chunk

    def _attach_h2(self, upstream: UpstreamConn) -> None:
        self.state = AWAIT_HEAD
        upstream.send_head(self)
        retained = self.retained
        if retained and self.attempts > 1:  # a retry: send what the first attempt sent
            upstream.write_parts(retained)
            self.body_sent = sum(len(c) for c in retained)
        else:
            self.body_sent = 0
        if self.pending is not None:
            self._flush_pending(upstream)
        if self.body_complete and self.req.has_body:
            upstream.end_body()
        ctx = self.ctx
        self.conn.upstream_deadline = ctx.clock + ctx.read_timeout if self.body_complete else INF

    def _attach(self, upstream: UpstreamConn) -> None:
        self.upstream = upstream
        upstream.owner = self
        if upstream.http2:
            self._attach_h2(upstream)
            return
        req = self.req
        upstream.reader.start(req.method == b"HEAD", req.upgrade)
        self.state = AWAIT_HEAD
        backend = self.backend
        assert backend is not None
        head = upstream_head(req, self.conn.source, backend)
        retained = self.retained
        if retained and self.attempts > 1:  # a retry: send what the first attempt sent
            upstream.write_parts([head, *retained])
            self.body_sent = sum(len(c) for c in retained)
        else:
            upstream.write(head)
            self.body_sent = 0
        if self.pending is not None:
            self._flush_pending(upstream)
        ctx = self.ctx
        self.conn.upstream_deadline = ctx.clock + ctx.read_timeout if self.body_complete else INF

    # -- the request body (from the client connection) ----------------------------------

    def request_body(self, data: bytes) -> None:
        if self.state >= DONE:
            return  # answered already (the connection closes after the answer)
        if not self.req.chunked:
            self._forward([data], len(data), True)
        elif not self.body_raw:
            self._forward([chunk_header(len(data)), data, CRLF], len(data), True)
        else:  # to an HTTP/2 backend; a shadow copy (HTTP/1.1) still gets it chunked
            shadow = self.shadow
            if shadow is not None:
                shadow.request_body([chunk_header(len(data)), data, CRLF], len(data))
            self._forward([data], len(data), False)

    def request_end(self) -> None:
        if self.req.chunked and self.state < DONE:
            if not self.body_raw:
                self._forward([LAST_CHUNK], 0, True)  # trailers were dropped by the reader
            elif self.shadow is not None:
                self.shadow.request_body([LAST_CHUNK], 0)
        self.body_complete = True
        shadow = self.shadow
        if shadow is not None:
            shadow.request_end()
        state = self.state
        if state == AWAIT_HEAD:
            ctx = self.ctx
            self.conn.upstream_deadline = ctx.clock + ctx.read_timeout
        if self.body_raw and AWAIT_HEAD <= state < DONE:
            upstream = self.upstream
            if upstream is not None and self.pending is None:
                upstream.end_body()

    def trailers_received(self, fields: list[tuple[bytes, bytes]]) -> None:
        """An HTTP/2 client's request trailers, which end its body: passed to an HTTP/2
        backend with its END_STREAM (an HTTP/1.1 backend gets none, as from a chunked
        request)."""
        if self.body_raw:
            self.request_trailers = fields
        self.request_end()

    def _forward(self, framed: list[bytes], size: int, tap: bool) -> None:
        shadow = self.shadow
        if shadow is not None and tap:
            shadow.request_body(framed, size)
        upstream = self.upstream
        if upstream is not None and self.pending is None and self.state >= AWAIT_HEAD:
            upstream.write_parts(framed)
            self._retain(framed)
            return
        if self.pending is None:
            self.pending = []
        self.pending.extend(framed)
        self.pending_bytes += size
        if self.pending_bytes > BODY_HIGH_WATER:
            self.conn.pause_reading(PAUSE_QUEUE)

    def _flush_pending(self, upstream: UpstreamConn) -> None:
        pending = self.pending
        self.pending = None
        self.pending_bytes = 0
        if pending:
            upstream.write_parts(pending)
            self._retain(pending)
        self.conn.resume_reading(PAUSE_QUEUE)

    def _retain(self, framed: list[bytes]) -> None:
        size = 0
        for chunk in framed:
            size += len(chunk)
        self.body_sent += size
        retained = self.retained
        if retained is None or self.attempts > 1:  # a second attempt is the last one
            return
        if self.body_sent > RETRY_BODY_LIMIT:
            self.retained = None  # too big to keep: this body cannot be sent twice
        else:
            retained.extend(framed)

    # -- events from the backend connection ---------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        """Bytes from the backend; one write to the client per read."""
        upstream = self.upstream
        if upstream is None:
            return
        conn = self.conn
        batch = conn.begin_batch()
        try:
            rest = upstream.reader.feed(data, self)
            if rest and self.state == TUNNEL:
                conn.send(rest)
        except ProxyError as error:
            self.upstream_failed(error)
        finally:
            conn.end_batch(batch)

    def on_response_head(self, head: ResponseHead) -> None:
        status = head.status
        self.status = status
        ctx = self.ctx
        ctx.policy.response_status(self.backend, status, self.live)
        shadow = self.shadow
        if shadow is not None:
            shadow.primary_head(status, head.fields)
        conn = self.conn
        if conn.http2:  # a stream: no connection-level framing, no upgrade
            self.response_started = True
            self.state = STREAMING
            self.framing = conn.respond_head(self, head)
            if not conn.send_blocked:
                conn.upstream_deadline = ctx.clock + ctx.read_timeout
            return
        data, self.framing, self.close_after = response_head(
            self.req, head, self.set_cookie, self.body_complete, ctx.draining
        )
        self.response_started = True
        if status == 101:
            self.state = TUNNEL
            conn.send(data)
            upstream = self.upstream
            assert upstream is not None
            conn.start_tunnel(self, upstream, b"")
            return
        self.state = STREAMING
        conn.send(data)
        if not conn.send_blocked:
            conn.upstream_deadline = ctx.clock + ctx.read_timeout

    def on_response_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        shadow = self.shadow
        if shadow is not None:
            shadow.primary_body(data)
        framing = self.framing
        conn = self.conn
        if framing == F_CHUNKED:
            conn.send(chunk_header(len(data)))
            conn.send(data)
            conn.send(CRLF)
        elif framing != F_NONE:
            conn.send(data)
        if not conn.send_blocked:
            conn.upstream_deadline = self.ctx.clock + self.ctx.read_timeout

    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """An HTTP/2 backend's trailers: on to an HTTP/2 client (an HTTP/1.1 client gets
        none, as a chunked response's trailers are dropped)."""
        if self.conn.http2:
            self.conn.respond_trailers(self, fields)

    def on_response_end(self, clean: bool) -> None:
        if self.framing == F_CHUNKED:
            self.conn.send(LAST_CHUNK)
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            reusable = clean and self.body_complete and upstream.reader.keep_alive
            upstream.done(reusable, self.ctx.clock)
        self._finish(DONE, self.close_after)

    def upstream_failed(self, error: ProxyError) -> None:
        """The backend connection broke, timed out or sent something invalid."""
        if self.state >= DONE or self.state == QUEUED:
            return
        self._upstream_failed(error)
        self.fail(error)

    def upstream_eof(self) -> None:
        """The backend closed its side: the end of a close-delimited body, or a failure."""
        if self.state == TUNNEL:
            self.conn.tunnel_eof()
            return
        upstream = self.upstream
        if upstream is None:
            return
        batch = self.conn.begin_batch()
        try:
            upstream.reader.eof(self)
        except ProxyError as error:
            self.upstream_failed(error)
        finally:
            self.conn.end_batch(batch)
        upstream.close()  # it said it is done: whatever happened, it is not reused

    def upstream_lost(self, error: ProxyError | None) -> None:
        """The backend connection is gone; a reset never ends a body."""
        if self.state == TUNNEL:
            self.upstream = None
            self.conn.tunnel_lost()
            return
        if self.upstream is None:
            return
        if error is None:
            self.upstream_eof()
        else:
            self.upstream_failed(error)

    def tunnel_closed(self) -> None:
        """The tunnel ended (either side); the exchange is logged now."""
        if self.state == TUNNEL:
            self._drop_upstream(abort=False)
            self.state = DONE
            self.finished = time.time()
            self.ctx.finished(self)

    def upstream_paused(self) -> None:
        self.conn.pause_reading(PAUSE_UPSTREAM_FULL)

    def upstream_resumed(self) -> None:
        self.conn.resume_reading(PAUSE_UPSTREAM_FULL)

    # -- events from the client connection ----------------------------------------------

    def deadline_passed(self) -> None:
        """The upstream deadline passed: a connect or read timeout."""
        if self.state == CONNECTING:
            error: ProxyError = UpstreamConnectError("connect timed out")
        elif self.state in (AWAIT_HEAD, STREAMING):
            error = UpstreamTimeout("read timed out")
        else:
            return
        self._upstream_failed(error)
        self.fail(error)

    def refuse(self, error: RequestRefused) -> None:
        """The client's request was refused while it was being read (body too large, bad
        chunk, body idle): nothing more of it reaches the backend."""
        if self.state == QUEUED:
            self.refusal = error
            return
        self.error = error.reason
        self._drop_upstream(abort=True)
        self.fail(error)

    def client_gone(self) -> None:
        if self.state >= DONE:
            return
        self._drop_upstream(abort=True)
        if not self.response_started:
            self.status = 499  # the client left before its answer (nginx's convention)
        self.state = FAILED
        self.finished = time.time()
        self.ctx.finished(self)

    # -- ending -------------------------------------------------------------------------

    def fail(self, error: ProxyError) -> None:
        """Retry once when the rules allow it; else answer the error, or cut the client
        connection when part of the response already reached it."""
        if self.state >= DONE:
            return
        if self._may_retry(error):
            pool, backend = self.pool, self.backend
            assert pool is not None and backend is not None
            other = pool.pick_other(backend)
            if other is not None:
                self._drop_upstream(abort=True)
                self.conn.upstream_deadline = INF
                self._send_to(other, fresh=True)
                return
        if not isinstance(error, RequestRefused):
            self.error = error.reason
        self._drop_upstream(abort=True)
        self.conn.upstream_deadline = INF
        if self.response_started:
            self._finish(FAILED, True)
            self.conn.abort()
            return
        reason = "" if isinstance(error, RequestRefused) else error.reason
        self._answer_error(error.status, reason, close=isinstance(error, RequestRefused))

    def _upstream_failed(self, error: ProxyError) -> None:
        says_little = isinstance(error, UpstreamLost) and (self.reused or self.response_started)
        policy = self.ctx.policy
        policy.upstream_failed(
            error, self.route_name, self.pool_name, self.backend, says_little, self.live
        )

    def _may_retry(self, error: ProxyError) -> bool:
        if self.response_started or self.attempts >= 2 or self.backend is None:
            return False
        if error.retry == RETRY_ALWAYS:
            pass
        elif error.retry == RETRY_IDEMPOTENT:
            if self.req.method not in IDEMPOTENT_METHODS:
                return False
        else:
            return False
        # The body must be sendable again: none forwarded yet, or all of it retained.
        return self.body_sent == 0 or self.retained is not None

    def _answer_error(self, status: int, reason: str, close: bool) -> None:
        req = self.req
        if req.request_id is None:
            req.request_id = new_request_id()
        close = close or not req.keep_alive or self.ctx.draining or not self.body_complete
        detail = None
        if reason:
            detail = {"reason": reason}
            if self.pool_name is not None:
                detail["pool"] = self.pool_name
        self.status = status
        self.body_bytes = 0
        self.response_started = True
        conn = self.conn
        if conn.http2:
            conn.respond_error(self, status, detail)
        else:
            data = error_response(
                status, req.request_id, close, detail, head_only=req.method == b"HEAD"
            )
            conn.send(data)
        self._finish(FAILED, close)

    def _drop_upstream(self, abort: bool) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if abort:
                upstream.abort()
            else:
                upstream.close()
        task = self.connect_task
        if task is not None:
            self.connect_task = None
            task.cancel()

    def _finish(self, state: int, close: bool) -> None:
        self.state = state
        self.finished = time.time()
        self.ctx.finished(self)
        self.conn.exchange_done(self, close)

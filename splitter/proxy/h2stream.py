"""One HTTP/2 stream as the `Downstream` of its exchange.

An `Exchange` talks to its client through `proxy.exchange.Downstream`; for an HTTP/1.1
connection that is the connection itself (`proxy.downstream.ClientConn`), for HTTP/2 it
is a `Stream`: the exchange is unchanged, and every rule it holds (routing, the sticky
cookie, the override, segments, limits, timeouts, retries, shadow copies, statistics,
metrics, the access log) holds for each stream. A `Stream` keeps the stream's own state
(its deadlines, why its reading is paused, the response bytes waiting for the client's
flow-control window) and hands every act to its connection's `Session`
(`splitter.proxy.h2session`), which owns the `h2` state machine and the socket:

    exchange calls            the session does
    ------------------------  ---------------------------------------------------------
    respond_head(ex, head)    HEADERS (`headers.response_fields`, the sticky cookie,
                              X-Request-Id); END_STREAM on it when no body follows
    send(data)                DATA within the client's window; the rest waits in
                              `outbox`, and past OUTBOX_HIGH the backend's reading pauses
    respond_error(...)        splitter's own answer: JSON, or gRPC's trailers-only
    exchange_done(ex, close)  END_STREAM once `outbox` is sent (RST_STREAM when the answer
                              was cut short)
    abort()                   RST_STREAM INTERNAL_ERROR: a response cut short
    pause/resume_reading      WINDOW_UPDATE withheld or given: a stream's flow control is
                              the back-pressure of that stream alone
    begin/end_batch           one write of the session's bytes per backend read

Compiled with the request path (mypyc), like the exchange that calls it.
"""

from __future__ import annotations

from typing import Any, Final

from splitter.http1.response import ResponseHead
from splitter.proxy.exchange import INF, Downstream, Exchange
from splitter.proxy.upstream import UpstreamConn

__all__ = ["OUTBOX_HIGH", "Stream"]

OUTBOX_HIGH: Final = 64 * 1024  # response bytes held for a client's window before the
# backend's reading pauses (per stream)


class Stream(Downstream):
    """See the module docstring."""

    def __init__(self, session: Any, stream_id: int, peer: bytes, source: bytes) -> None:
        super().__init__(peer)
        self.source = source
        self.http2 = True
        self.session = session
        self.id = stream_id
        self.exchange: Exchange | None = None
        self.grpc = False  # content-type application/grpc*: splitter's errors are trailers
        self.te_trailers = False
        self.paused = 0  # PAUSE_* bits: the client's DATA is not acknowledged meanwhile
        self.unacked = 0  # DATA bytes received and not yet acknowledged (WINDOW_UPDATE)
        self.received = 0  # request body bytes received (against limits.max_body)
        self.body_deadline = INF  # the idle gap while the request body is read
        self.send_deadline = INF  # response bytes wait for the client's window
        self.outbox: list[bytes] = []  # response bytes waiting for the client's window
        self.outbox_bytes = 0
        self.end_after_outbox = False  # END_STREAM once the outbox is sent
        self.ended = False  # END_STREAM sent (or the stream reset): nothing more goes out
        self.closed = False  # the session no longer knows the stream
        self.request_ended = False  # the client's END_STREAM came
        self.answered = False  # splitter answered itself (respond_error): a complete answer
        self.upstream_paused = False  # the backend's reading is paused for the outbox
        self.trailers: list[tuple[bytes, bytes]] | None = None  # sent once the outbox is
        # Body bytes still to come of a response whose length is known and that has no
        # trailers (an HTTP/1.1 backend's): its last DATA frame carries END_STREAM.
        self.remaining = -1

    # -- Downstream ---------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if data and not self.ended:
            self.session.send_data(self, data)

    def begin_batch(self) -> bool:
        return bool(self.session.begin_batch())

    def end_batch(self, started: bool) -> None:
        if started:
            self.session.end_batch()

    def pause_reading(self, reason: int) -> None:
        self.paused |= reason
        self.body_deadline = INF  # splitter stops reading: the client is not idle

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused:
            self.session.resume_stream(self)

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        self.upstream_deadline = INF
        self.session.stream_done(self, ex)

    def abort(self) -> None:
        self.session.reset_stream(self)

    def start_tunnel(self, ex: Exchange, upstream: UpstreamConn, rest: bytes) -> None:
        raise AssertionError("HTTP/2 streams are never upgraded")

    def tunnel_eof(self) -> None:
        raise AssertionError("HTTP/2 streams are never upgraded")

    def tunnel_lost(self) -> None:
        raise AssertionError("HTTP/2 streams are never upgraded")

    def respond_head(self, ex: Exchange, head: ResponseHead) -> int:
        return int(self.session.respond_head(self, ex, head))

    def respond_error(self, ex: Exchange, status: int, detail: dict[str, str] | None) -> None:
        self.answered = True
        self.session.respond_error(self, ex, status, detail)

    def respond_trailers(self, ex: Exchange, fields: list[tuple[bytes, bytes]]) -> None:
        self.session.respond_trailers(self, fields)

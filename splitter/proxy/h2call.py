"""One request on a shared HTTP/2 backend connection, as the exchange's upstream.

An `Exchange` reads and writes its backend through `upstream.UpstreamConn`; to a backend
of an `h2c` pool that is an `H2Call`: one stream of one of the backend's shared
connections (`h2upstream.H2Link`, which owns the `h2` state machine). The exchange is
the same as for HTTP/1.1 but for three calls: `send_head` (HEADERS instead of a request
head's bytes), `end_body` (END_STREAM instead of a last chunk) and the body going
unframed (`Exchange.body_raw`). The link calls the exchange's `on_response_head`,
`on_response_body`, `on_response_trailers` and `on_response_end` as a response reader
would, and `upstream_failed` or `upstream_lost` when the stream or connection fails.

    exchange calls             the link does
    -------------------------  -------------------------------------------------------
    send_head(ex)              HEADERS (END_STREAM when the request has no body)
    write / write_parts        DATA within the backend's window; the rest waits here,
                               and past the high water the client's reading pauses
    end_body()                 END_STREAM once the waiting DATA is sent
    pause/resume_reading       WINDOW_UPDATE withheld or given: a slow client stalls
                               its own stream on the backend, never the connection
    done(reusable)             the stream is over (reset when it is not)
    abort() / close()          RST_STREAM CANCEL

Compiled with the request path (mypyc): it is a native subclass of `UpstreamConn`.
"""

from __future__ import annotations

from typing import Any

from splitter.proxy.upstream import BackendConnections, UpstreamConn

__all__ = ["H2Call"]


class H2Call(UpstreamConn):
    """See the module docstring."""

    def __init__(self, pool: BackendConnections, link: Any) -> None:
        super().__init__(pool, None)
        self.http2 = True
        self.link = link
        self.id = 0  # the stream's id, once its HEADERS went out
        self.unacked = 0  # response DATA bytes not yet acknowledged (reading paused)
        self.outbox: list[bytes] = []  # request DATA waiting for the backend's window
        self.outbox_bytes = 0
        self.end_after_outbox = False
        self.ended = False  # END_STREAM sent: the request is complete
        self.finished = False  # the stream is over for splitter (ended both ways, reset)
        self.client_paused = False  # the client's reading is paused for the outbox
        self.reader.keep_alive = True  # the stream's end never ends the connection

    def send_head(self, ex: Any) -> None:
        self.link.send_head(self, ex)

    def end_body(self) -> None:
        if not self.ended:
            self.link.end_body(self)

    def write(self, data: bytes) -> None:
        if data and not self.finished:
            self.link.send_body(self, data)

    def write_parts(self, parts: list[bytes]) -> None:
        if not self.finished:
            for data in parts:
                if data:
                    self.link.send_body(self, data)

    def write_eof(self) -> None:
        self.end_body()

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.link.acknowledge(self)

    def done(self, reusable: bool, now: float) -> None:
        self.owner = None
        self.link.call_done(self, reusable)

    def close(self) -> None:
        self.owner = None
        if not self.finished:
            self.link.cancel(self)

    def abort(self) -> None:
        self.owner = None
        if not self.finished:
            self.link.cancel(self)

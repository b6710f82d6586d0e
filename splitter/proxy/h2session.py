"""The HTTP/2 session of one client connection: the `h2` state machine between the socket
and the streams' exchanges.

Theory of operation
-------------------
A `proxy.downstream.ClientConn` looks at a connection's first bytes; when they are the
HTTP/2 client preface (h2c with prior knowledge on a plain listener, or h2 chosen by ALPN
on a TLS one) it makes a `Session` and hands it every byte from then on. The connection
stays what the listener knows (its set of connections, the sweep, shutdown); the session
keeps the streams, and the sweep reaches them through `ClientConn.check_deadlines`.

Reading, for each read:

    data_received -> guard.feed (the flood guard: a verdict ends the connection with
                     GOAWAY ENHANCE_YOUR_CALM before h2 reads a frame of the flood;
                     FRAME_SIZE_ERROR for a frame over SETTINGS_MAX_FRAME_SIZE, which
                     h2 would buffer whole before it checks its length)
                  -> h2.receive_data -> RequestReceived  -> headers.request_head: an
                                                            Exchange on a Stream, started
                                                            at once (streams are
                                                            independent), or the
                                                            refusal's answer on the stream
                                        DataReceived     -> exchange.request_body, then the
                                                            bytes are acknowledged
                                                            (WINDOW_UPDATE) unless the
                                                            stream's reading is paused
                                        StreamEnded      -> exchange.request_end
                                        StreamReset      -> exchange.client_gone
                                        WindowUpdated    -> the waiting response bytes
                  -> one write of what h2 has to send (the batch)

Writing: the exchange calls its `Stream` (`splitter.proxy.h2stream`), which calls the
session: HEADERS, DATA within the client's window (the rest waits on the stream, and all
of it while the socket's buffer is full; past `h2stream.OUTBOX_HIGH` the backend's
reading pauses, so a slow stream stalls itself with bounded memory), END_STREAM,
RST_STREAM. Inside a batch (a read from the client, or one from a backend) the bytes are
collected and written once at its end.

Limits: SETTINGS_MAX_CONCURRENT_STREAMS 128 (h2 ends a connection that opens more with
PROTOCOL_ERROR); the HPACK decoder's header list bounded at twice section 4a's limits
(the guard bounds the block's bytes and frames), and `headers.request_head` answers 431,
414 or 400 on the stream for a list over them; each stream's receive window is
STREAM_WINDOW, the connection's CONNECTION_WINDOW, so the request bytes held per
connection are bounded whatever the backends do. Request bodies over `limits.max_body`
are refused (413) on their stream.

Deadlines (checked by the listener's sweep, every interval while a stream is open):
the header deadline runs from accept until the first HEADERS; then per stream the body's
idle gap (408), the exchange's connect and read deadlines (502/504), and the send
deadline (the client's window stays shut for `timeouts.read`: the stream is reset); the
keep-alive idle once no stream is open (GOAWAY, then close).

Shutdown: GOAWAY NO_ERROR with the last stream taken (written past h2's state machine,
which would refuse every frame after its own GOAWAY, so that the streams in flight still
finish); streams the client opens after it are refused (REFUSED_STREAM); the connection
closes when the last stream is done, or at the end of `shutdown.grace`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from splitter.errors import RequestRefused
from splitter.http1.messages import error_body
from splitter.http1.request import RequestHead
from splitter.http2 import grpc
from splitter.http2.encoder import PlainEncoder, never_indexed
from splitter.http2.guard import DATA, FRAME_SIZE, HEADERS, Budgets, FloodGuard
from splitter.http2.headers import StreamRequest, check_trailers, request_head, response_fields
from splitter.proxy.exchange import DONE, INF, Exchange
from splitter.proxy.h2stream import OUTBOX_HIGH, Stream
from splitter.proxy.policy import F_LENGTH, F_NONE

if TYPE_CHECKING:
    from splitter.http1.response import ResponseHead
    from splitter.proxy.downstream import ClientConn, Listener

__all__ = ["CONNECTION_WINDOW", "MAX_STREAMS", "STREAM_WINDOW", "Session"]

MAX_STREAMS: Final = 128
STREAM_WINDOW: Final = 65535  # the protocol's default: request bytes in flight per stream
CONNECTION_WINDOW: Final = 1024 * 1024  # ... and per connection
_DEFAULT_WINDOW: Final = 65535
_STATUS: Final = {status: b"%d" % status for status in range(100, 600)}
_SET_COOKIE: Final = len(b"Set-Cookie: ")
_CLOSE_AFTER: Final = 1.0  # seconds a connection ended by splitter may take to drain


def _config() -> H2Configuration:
    # Header lists are checked by headers.request_head (with section 4a's statuses) and
    # written from checked heads: h2's own validation would only repeat it, slower.
    return H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


class Session:
    """The HTTP/2 side of one client connection (see the module docstring)."""

    def __init__(self, conn: ClientConn, server: Listener) -> None:
        self.conn = conn
        self.server = server
        limits = server.limits
        h2 = H2Connection(config=_config())
        h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: 2 * limits.max_header_bytes,
            },
        )
        h2.encoder = PlainEncoder()
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        # HPACK's count is name + value + 32 per field: twice the limits, and the fields'
        # overhead, before a list is refused by the decoder itself (a connection error).
        h2.decoder.max_header_list_size = (
            2 * (limits.max_header_bytes + limits.max_request_line) + 32 * limits.max_header_count
        )
        self.h2 = h2
        self.guard = FloodGuard(Budgets.for_limits(limits, MAX_STREAMS), time.monotonic())
        self.streams: dict[int, Stream] = {}
        self.batching = False
        self.draining = False  # GOAWAY sent: streams above `last_stream` are refused
        self.last_stream = 0
        self.ending = False  # the connection is being ended (flood, protocol error, eof)
        self.write_blocked = False
        self.flush()

    # -- reading ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.ending:
            return
        verdict = self.guard.feed(data, time.monotonic())
        if verdict:
            self._calm(verdict)
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            # Named by its class, not its message: a message holds numbers the client
            # chose (stream ids, table indexes), and the log's limit is per reason.
            self._protocol_error(type(exc).__name__)
            return
        self.batching = True
        try:
            event: Any  # dispatched on its exact type (h2's events are not subclassed)
            for event in events:
                kind = type(event)
                if kind is DataReceived:
                    self._data(event)
                elif kind is RequestReceived:
                    self._request(event)
                elif kind is StreamEnded:
                    self._request_end(event.stream_id)
                elif kind is WindowUpdated:
                    self._window(event.stream_id)
                elif kind is StreamReset:
                    self._client_reset(event.stream_id)
                elif kind is RemoteSettingsChanged:
                    self._window(0)
                elif kind is TrailersReceived:
                    self._trailers(event)
                elif kind is ConnectionTerminated:
                    self._client_goaway()
                    break
        finally:
            self.batching = False
            self.flush()

    def _request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        conn = self.conn
        server = self.server
        if self.draining and sid > self.last_stream:
            self._refuse_stream(sid)  # opened after the GOAWAY: the client retries it
            return
        conn.head_deadline = INF
        conn.idle_deadline = INF
        stream = Stream(self, sid, conn.peer, conn.source)
        stream.client_addr = conn.client_addr
        self.streams[sid] = stream
        conn.upstream_deadline = 0.0  # the sweep visits the streams' deadlines
        result = request_head(event.headers or [], event.stream_ended is not None,
                              server.read_settings, conn.tls)  # fmt: skip
        if not isinstance(result, StreamRequest):
            server.note_refusal(result.status, str(result), conn.peer)
            stub = RequestHead()
            stub.version = "2"
            ex = Exchange(stream, server, stub, time.time())
            ex.refusal = result
            stream.exchange = ex
            ex.start()
            if self.guard.refused(sid, time.monotonic()):
                self._calm(self.guard.tripped)
            return
        head = result.head
        stream.grpc = grpc.is_grpc(result.content_type)
        stream.te_trailers = result.te_trailers
        ex = Exchange(stream, server, head, time.time())
        trusted = conn.trusted
        if trusted is not None and head.xff is not None:
            ex.client_addr = trusted.client(head.xff, conn.client_addr)
        stream.exchange = ex
        if not ex.body_complete:
            stream.body_deadline = server.clock + server.limits.body_idle_timeout
        else:
            stream.request_ended = True
        ex.start()

    def _data(self, event: DataReceived) -> None:
        sid = event.stream_id
        size = event.flow_controlled_length or 0
        stream = self.streams.get(sid)
        ex = stream.exchange if stream is not None else None
        if stream is None or ex is None or ex.state >= DONE:
            if size:
                self.h2.acknowledge_received_data(size, sid)
            return
        data = event.data or b""
        if data:
            stream.received += len(data)
            max_body = self.server.limits.max_body
            if max_body is not None and stream.received > max_body:
                self._refuse(stream, ex, RequestRefused(413, "body over max_body"))
                self.h2.acknowledge_received_data(size, sid)
                return
            ex.request_body(data)
        if stream.paused:
            stream.unacked += size
        else:
            if size:
                self.h2.acknowledge_received_data(size, sid)
            if not stream.request_ended:
                stream.body_deadline = self.server.clock + self.server.limits.body_idle_timeout

    def _request_end(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.request_ended = True
        stream.body_deadline = INF
        ex = stream.exchange
        if ex is not None and not ex.body_complete:
            ex.request_end()

    def _trailers(self, event: TrailersReceived) -> None:
        """Request trailers: checked as a head's fields; an HTTP/2 backend gets them, an
        HTTP/1.1 one none (as a chunked request's trailers are dropped)."""
        sid = event.stream_id
        stream = self.streams.get(sid)
        ex = stream.exchange if stream is not None else None
        if stream is None or ex is None:
            return
        kept = check_trailers(list(event.headers or []), self.server.limits)
        if isinstance(kept, str):
            self._refuse(stream, ex, RequestRefused(431 if "large" in kept or "many" in kept
                                                    else 400, kept))  # fmt: skip
            return
        stream.request_ended = True
        stream.body_deadline = INF
        if not ex.body_complete:
            ex.trailers_received(kept)

    def _client_reset(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.ended = True
        stream.outbox.clear()
        stream.outbox_bytes = 0
        self._forget(stream)
        ex = stream.exchange
        if ex is not None:
            ex.client_gone()

    def _client_goaway(self) -> None:
        # h2 sends nothing after the client's GOAWAY: the streams in flight cannot be
        # answered; the connection ends.
        self.ending = True
        self.conn.close()

    def _refuse(self, stream: Stream, ex: Exchange, error: RequestRefused) -> None:
        self.server.note_refusal(error.status, str(error), self.conn.peer)
        stream.body_deadline = INF
        ex.refuse(error)

    def _refuse_stream(self, sid: int) -> None:
        try:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        except H2Error:
            pass
        self.guard.closed(sid)

    # -- writing (called by the streams) ------------------------------------------------

    def begin_batch(self) -> bool:
        if self.batching:
            return False
        self.batching = True
        return True

    def end_batch(self) -> None:
        self.batching = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            transport = self.conn.transport
            if transport is not None and not self.conn.closed:
                transport.write(data)

    def respond_head(self, stream: Stream, ex: Exchange, head: ResponseHead) -> int:
        fields = response_fields(head.status, head.fields)
        set_cookie = ex.set_cookie
        # New on every response: never put in the client's HPACK table (it would only
        # push out what is worth keeping there).
        if set_cookie is not None:  # "Set-Cookie: ...\r\n"
            fields.append(never_indexed(b"set-cookie", set_cookie[_SET_COOKIE:-2]))
        request_id = ex.req.request_id
        if request_id is not None:
            fields.append(never_indexed(b"x-request-id", request_id))
        status = head.status
        end = ex.req.method == b"HEAD" or status == 204 or status == 304 or head.content_length == 0
        if stream.ended:
            return F_NONE
        self.h2.send_headers(stream.id, fields, end_stream=end)
        self.guard.sent(HEADERS)
        if end:
            stream.ended = True
        else:
            upstream = ex.upstream
            if upstream is not None and not upstream.http2:  # no trailers can follow
                stream.remaining = head.content_length
        if not self.batching:
            self.flush()
        return F_NONE if end else F_LENGTH

    def respond_error(
        self, stream: Stream, ex: Exchange, status: int, detail: dict[str, str] | None
    ) -> None:
        if stream.ended:
            return
        request_id = ex.req.request_id
        if stream.grpc:
            reason = (detail or {}).get("reason") or ex.error or f"HTTP {status}"
            fields = grpc.trailers_only(status, reason, request_id)
            ex.grpc_status = grpc.failure_status(status)
            self.h2.send_headers(stream.id, fields, end_stream=True)
            self.guard.sent(HEADERS)
            stream.ended = True
        else:
            body = error_body(status, request_id, detail)
            fields = [
                (b":status", _STATUS.get(status) or b"%d" % status),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
            ]
            if request_id is not None:
                fields.append((b"x-request-id", request_id))
            head_only = ex.req.method == b"HEAD"
            self.h2.send_headers(stream.id, fields, end_stream=head_only)
            self.guard.sent(HEADERS)
            if head_only:
                stream.ended = True
            else:
                self._push(stream, body)
        if not self.batching:
            self.flush()

    def respond_trailers(self, stream: Stream, fields: list[tuple[bytes, bytes]]) -> None:
        """A backend's trailers, checked as a head's fields are; they end the stream."""
        if stream.ended:
            return
        kept = check_trailers(fields, self.server.limits)
        if isinstance(kept, str):
            self.server.note_refusal(502, f"backend trailers: {kept}", self.conn.peer)
            self.reset_stream(stream)
            return
        if stream.outbox:
            stream.trailers = kept
            stream.end_after_outbox = True
            return
        self._send_trailers(stream, kept)

    def _send_trailers(self, stream: Stream, fields: list[tuple[bytes, bytes]]) -> None:
        if fields:
            self.h2.send_headers(stream.id, fields, end_stream=True)
            self.guard.sent(HEADERS)
            stream.ended = True
        else:
            try:
                self.h2.end_stream(stream.id)
            except H2Error:
                pass
            stream.ended = True
        if not self.batching:
            self.flush()

    def send_data(self, stream: Stream, data: bytes) -> None:
        last = False
        remaining = stream.remaining
        if remaining > 0:
            remaining -= len(data)
            stream.remaining = remaining
            last = remaining == 0  # the whole body: END_STREAM on its last frame
        if stream.outbox:
            stream.outbox.append(data)
            stream.outbox_bytes += len(data)
            self._check_outbox(stream)
            return
        self._push(stream, data, last)
        if not self.batching:
            self.flush()

    def _push(self, stream: Stream, data: bytes, last: bool = False) -> None:
        """Send what the client's window allows; keep the rest in the stream's outbox.
        `last`: the response's last bytes, whose last frame ends the stream."""
        h2 = self.h2
        sid = stream.id
        try:
            window = h2.local_flow_control_window(sid)
        except H2Error:  # the stream is gone on h2's side
            stream.ended = True
            return
        if self.write_blocked:  # the socket is full: the bytes wait as for a shut window
            window = 0
        size = len(data)
        if size <= window and size <= h2.max_outbound_frame_size:
            h2.send_data(sid, data, end_stream=last)
            self.guard.sent(DATA)
            if last:
                stream.ended = True
            return
        frame = h2.max_outbound_frame_size
        view = memoryview(data)
        pos = 0
        while pos < size and window > 0:
            step = min(size - pos, window, frame)
            pos += step
            window -= step
            end = last and pos >= size
            h2.send_data(sid, view[pos - step : pos].tobytes(), end_stream=end)
            self.guard.sent(DATA)
            if end:
                stream.ended = True
        if pos < size:
            rest = data[pos:]
            stream.outbox.append(rest)
            stream.outbox_bytes += len(rest)
            self._check_outbox(stream)

    def _check_outbox(self, stream: Stream) -> None:
        """Response bytes wait for the client: stop reading the backend past the high
        water; the send deadline runs while they wait."""
        if stream.send_deadline == INF:
            stream.send_deadline = self.server.clock + self.server.read_timeout
        if stream.outbox_bytes > OUTBOX_HIGH and not stream.upstream_paused:
            stream.upstream_paused = True
            stream.send_blocked = True
            stream.upstream_deadline = INF  # a slow reader is not a slow backend
            ex = stream.exchange
            upstream = ex.upstream if ex is not None else None
            if upstream is not None:
                upstream.pause_reading()

    def _drain_outbox(self, stream: Stream) -> None:
        outbox = stream.outbox
        if not outbox:
            return
        pending = b"".join(outbox) if len(outbox) > 1 else outbox[0]
        outbox.clear()
        stream.outbox_bytes = 0
        self._push(stream, pending)
        if stream.outbox:
            if stream.outbox_bytes < len(pending):  # the window opened: the client reads
                stream.send_deadline = self.server.clock + self.server.read_timeout
            if stream.upstream_paused and stream.outbox_bytes <= OUTBOX_HIGH // 2:
                self._resume_upstream(stream)
            return
        stream.send_deadline = INF
        if stream.upstream_paused:
            self._resume_upstream(stream)
        if stream.end_after_outbox:
            trailers = stream.trailers
            if trailers is not None:
                stream.trailers = None
                self._send_trailers(stream, trailers)
                if stream.exchange is not None and stream.exchange.state >= DONE:
                    self._finish_stream(stream)
            else:
                self._end(stream)

    def _resume_upstream(self, stream: Stream) -> None:
        stream.upstream_paused = False
        stream.send_blocked = False
        ex = stream.exchange
        if ex is None or self.write_blocked:
            return
        upstream = ex.upstream
        if upstream is not None:
            upstream.resume_reading()
            server = self.server
            stream.upstream_deadline = server.clock + server.read_timeout

    def _window(self, sid: int) -> None:
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and stream.outbox:
                self._drain_outbox(stream)
            return
        for stream in list(self.streams.values()):
            if stream.outbox:
                self._drain_outbox(stream)

    def stream_done(self, stream: Stream, ex: Exchange) -> None:
        """The exchange is over: end the stream (after what waits for the client's
        window), or reset it when the answer was cut short."""
        if stream.ended:
            self._finish_stream(stream)
            return
        if ex.state == DONE or stream.answered:
            if stream.outbox or stream.end_after_outbox:
                stream.end_after_outbox = True
                stream.end_after_outbox = True
                return
            self._end(stream)
        else:
            self.reset_stream(stream)

    def _end(self, stream: Stream) -> None:
        try:
            self.h2.end_stream(stream.id)
        except H2Error:
            pass
        stream.ended = True
        self._finish_stream(stream)
        if not self.batching:
            self.flush()

    def _finish_stream(self, stream: Stream) -> None:
        if not stream.request_ended:
            # Answered before the request's end (a refusal, an early answer): the client
            # is to stop sending (RFC 9113 8.1).
            try:
                self.h2.reset_stream(stream.id, ErrorCodes.NO_ERROR)
            except H2Error:
                pass
            stream.request_ended = True
        self._forget(stream)

    def reset_stream(self, stream: Stream, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Cut a stream short (a response that failed half-way, a client that does not
        read); the rest of the connection goes on."""
        if not stream.closed:
            if not stream.ended:
                try:
                    self.h2.reset_stream(stream.id, code)
                except H2Error:
                    pass
            stream.ended = True
            stream.request_ended = True
            stream.outbox.clear()
            stream.outbox_bytes = 0
            self._forget(stream)
        if not self.batching:
            self.flush()

    def resume_stream(self, stream: Stream) -> None:
        """The stream's reading may go on: acknowledge what was held back."""
        if stream.unacked and not stream.closed:
            size = stream.unacked
            stream.unacked = 0
            try:
                self.h2.acknowledge_received_data(size, stream.id)
            except H2Error:
                pass
            if not self.batching:
                self.flush()
        if not stream.request_ended and not stream.closed:
            stream.body_deadline = self.server.clock + self.server.limits.body_idle_timeout

    def _forget(self, stream: Stream) -> None:
        if stream.closed:
            return
        stream.closed = True
        stream.body_deadline = stream.send_deadline = stream.upstream_deadline = INF
        self.streams.pop(stream.id, None)
        self.guard.closed(stream.id)
        if not self.streams:
            conn = self.conn
            conn.upstream_deadline = INF
            if self.draining or self.ending:
                self.flush()
                conn.close()
            else:
                conn.idle_deadline = self.server.clock + self.server.limits.keepalive_timeout

    # -- the connection -----------------------------------------------------------------

    def _calm(self, reason: str) -> None:
        """A flood: GOAWAY ENHANCE_YOUR_CALM, and the connection ends (a frame over
        SETTINGS_MAX_FRAME_SIZE, seen at its header: FRAME_SIZE_ERROR)."""
        if reason == FRAME_SIZE:
            what = "HTTP/2 protocol error (a frame over SETTINGS_MAX_FRAME_SIZE)"
            self.server.note_refused_connection(what, self.conn.peer)
            self._goaway_and_close(ErrorCodes.FRAME_SIZE_ERROR)
            return
        self.server.note_refused_connection(f"HTTP/2 flood ({reason})", self.conn.peer)
        self._goaway_and_close(ErrorCodes.ENHANCE_YOUR_CALM)

    def _protocol_error(self, what: str) -> None:
        self.server.note_refused_connection(f"HTTP/2 protocol error ({what})", self.conn.peer)
        self.flush()  # h2 queued its GOAWAY
        self._close_soon()

    def _goaway_and_close(self, code: int) -> None:
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = code
        transport = self.conn.transport
        if transport is not None and not self.conn.closed:
            transport.write(frame.serialize())
        self._close_soon()

    def _close_soon(self) -> None:
        """Close after what is written; cut at once when the client will not read it."""
        self.ending = True
        conn = self.conn
        conn.close()
        conn.send_deadline = self.server.clock + _CLOSE_AFTER
        conn.upstream_deadline = 0.0

    def drain(self) -> None:
        """Shutdown (section 4b): GOAWAY with the last stream taken; the streams in flight
        finish; the connection closes after the last."""
        if self.draining or self.ending:
            return
        self.draining = True
        self.flush()
        self.last_stream = self.h2.highest_inbound_stream_id
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_stream
        frame.error_code = ErrorCodes.NO_ERROR
        conn = self.conn
        transport = conn.transport
        if transport is not None and not conn.closed:
            transport.write(frame.serialize())
        if not self.streams:
            conn.close()

    def eof_received(self) -> None:
        """The client ended its side: the streams in flight may still be answered."""
        self.ending = True
        if not self.streams:
            self.conn.close()

    def connection_lost(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.closed = stream.ended = True
            ex = stream.exchange
            if ex is not None:
                ex.client_gone()

    def pause_writing(self) -> None:
        """The socket's buffer is full: every stream stops reading its backend."""
        self.write_blocked = True
        server = self.server
        self.conn.send_deadline = server.clock + server.read_timeout
        for stream in self.streams.values():
            ex = stream.exchange
            upstream = ex.upstream if ex is not None else None
            if upstream is not None:
                upstream.pause_reading()
                stream.upstream_deadline = INF

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.conn.send_deadline = INF
        started = self.begin_batch()
        try:
            self._window(0)  # what waited for the socket
        finally:
            if started:
                self.end_batch()
        if self.write_blocked:  # full again at once
            return
        server = self.server
        for stream in self.streams.values():
            if stream.upstream_paused:
                continue
            ex = stream.exchange
            upstream = ex.upstream if ex is not None else None
            if upstream is not None:
                upstream.resume_reading()
                stream.upstream_deadline = server.clock + server.read_timeout

    def check_deadlines(self, now: float) -> None:
        conn = self.conn
        if conn.send_deadline <= now:  # the client reads nothing: cut
            conn.send_deadline = INF
            conn.abort()
            return
        if self.ending:
            return
        if conn.head_deadline <= now:  # the preface, and no request in time
            conn.head_deadline = INF
            self.server.note_refused_connection("HTTP/2 header timeout", conn.peer)
            self._goaway_and_close(ErrorCodes.NO_ERROR)
            return
        if conn.idle_deadline <= now:
            conn.idle_deadline = INF
            self._goaway_and_close(ErrorCodes.NO_ERROR)
            return
        started = self.begin_batch()
        try:
            for stream in list(self.streams.values()):
                ex = stream.exchange
                if ex is None:
                    continue
                if stream.body_deadline <= now:
                    stream.body_deadline = INF
                    self._refuse(stream, ex, RequestRefused(408, "request body timeout"))
                if stream.upstream_deadline <= now:
                    stream.upstream_deadline = INF
                    ex.deadline_passed()
                if stream.send_deadline <= now:
                    stream.send_deadline = INF
                    self.reset_stream(stream, ErrorCodes.CANCEL)
                    ex.client_gone()
        finally:
            if started:
                self.end_batch()
        if self.streams:
            conn.upstream_deadline = 0.0


def session_of(conn: Any) -> Session | None:
    """The session of a client connection, when it speaks HTTP/2 (tests, metrics)."""
    session = getattr(conn, "h2", None)
    return session if isinstance(session, Session) else None

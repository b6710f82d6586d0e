"""HTTP/2 backends (`protocol: h2c` pools): shared connections, one stream per request.

Theory of operation
-------------------
A backend of an `h2c` pool has an `H2Backend` (hung on its `BackendConnections` as
`h2`): a few `H2Link`s, each an asyncio protocol around an `h2` client connection, h2c
with prior knowledge. An `https://` backend of an `http1` pool offers h2 by ALPN on its
connections: the first that the backend answers with h2 is adopted (`adopt`) as the
first link of its `H2Backend`, and from then on its requests are streams too (over TLS);
if a later connection comes back with `http/1.1`, the backend is HTTP/1.1 again.

An exchange asks for a stream (`open_stream`, from `Exchange._send_to`): a link with
room (fewer open streams than the backend's SETTINGS_MAX_CONCURRENT_STREAMS and
MAX_STREAMS, no GOAWAY) gives an `h2call.H2Call` at
once (`Exchange.connected`); else the exchange waits (its connect deadline runs) while a
new link is opened, and a connect failure fails every exchange waiting
(`connect_failed`, retried like a refused connect).

Opening a link is the TCP connect and the HTTP/2 handshake, within `timeouts.connect`
each: the preface goes out at once, and the link takes streams when the backend's
SETTINGS come (`link_up`), so that its SETTINGS_MAX_CONCURRENT_STREAMS is known before
the first burst (a server may end the whole connection for a stream over it) and no
request is sent to a backend that does not speak HTTP/2. A connection that ends before,
or no SETTINGS in time, fails the waiting exchanges as a refused connect would.

A link reads frames and calls the exchanges: the response's head as a
`http1.response.ResponseHead` (so an HTTP/1.1 client gets it as it would from an HTTP/1.1
backend, and an HTTP/2 client through `headers.response_fields`), its DATA, its trailers
(`grpc-status` noted on the exchange, `Observation.grpc_status`), its end. Within a
backend read, the exchanges' client writes are one batch each.

- Flow control: a stream's response DATA is acknowledged as its client takes it (an
  exchange paused by a slow client withholds its WINDOW_UPDATE, which stalls that stream
  alone: the connection's window is CONNECTION_WINDOW, the sum of many streams'); the
  request's DATA goes within the backend's window, the rest waits on the call and past
  OUTBOX_HIGH the client's reading pauses.
- A REFUSED_STREAM, or a GOAWAY whose last stream is below a stream's id, means the
  backend did not process it (RFC 9113 8.7): the exchange fails with a connect error,
  which it retries whatever the method. The `h2` library reads no frame after a GOAWAY,
  so GOAWAY frames are taken out here before h2 sees them (the streams the backend still
  finishes go on); a link that got one takes no new stream and closes when its last ends.
- A response head is held to section 4a's limits like an HTTP/1.1 one (502 beyond them);
  h2 validates the rest of the header list.
- Idle links (no stream) close after `limits.upstream_idle_timeout` (the listener's
  sweep); a health check failure or a reload that drops the backend closes them
  (`close_all`), and a busy link after its last stream.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings

from splitter.config import Limits
from splitter.errors import UpstreamConnectError, UpstreamLost, UpstreamProtocolError
from splitter.http1.messages import status_line
from splitter.http1.response import ResponseHead
from splitter.http2 import grpc
from splitter.http2.encoder import PlainEncoder, never_indexed
from splitter.proxy.h2call import H2Call
from splitter.proxy.upstream import BackendConnections
from splitter.tls.backends import CAFileError, client_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from splitter.proxy.exchange import Exchange

__all__ = ["H2Backend", "H2Link"]

MAX_STREAMS: Final = 100  # streams per link, whatever more the backend allows
STREAM_WINDOW: Final = 65535
CONNECTION_WINDOW: Final = 4 * 1024 * 1024
OUTBOX_HIGH: Final = 64 * 1024
_DEFAULT_WINDOW: Final = 65535
_GOAWAY: Final = 7
_ZERO: Final = b"\x00\x00\x00\x00"  # stream 0
_CONNECTING: Final = 2  # exchange.CONNECTING


def _config() -> H2Configuration:
    return H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_inbound_headers=True,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


class _Waiting:
    """An exchange's place in the queue for a stream (its `connect_task`)."""

    __slots__ = ("backend", "ex")

    def __init__(self, backend: H2Backend, ex: Exchange) -> None:
        self.backend = backend
        self.ex = ex

    def cancel(self) -> bool:
        try:
            self.backend.waiting.remove(self.ex)
        except ValueError:
            return False
        return True


class H2Backend:
    """The HTTP/2 connections to one backend (see the module docstring)."""

    def __init__(
        self, pool: BackendConnections, limits: Limits, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.pool = pool
        self.limits = limits
        self.loop = loop
        self.links: list[H2Link] = []
        self.waiting: deque[Exchange] = deque()
        self.connecting = False  # a link is being opened (connect, then its SETTINGS)
        self.connect_timeout = 2.0  # timeouts.connect, as the last exchange's context says
        self.opener: asyncio.Task[None] | None = None
        self.retire_next = False  # the link being opened serves its waiting, then closes
        self.authority = (
            f"[{pool.host}]:{pool.port}" if ":" in pool.host else f"{pool.host}:{pool.port}"
        ).encode()

    def open_stream(self, ex: Exchange) -> None:
        self.connect_timeout = ex.ctx.connect_timeout
        for link in self.links:
            if link.has_room():
                ex.connected(link.new_call())
                return
        self.waiting.append(ex)
        ex.connect_task = _Waiting(self, ex)
        if not self.connecting:
            self._connect()

    def _connect(self) -> None:
        self.connecting = True
        self.opener = self.loop.create_task(self._open())

    async def _open(self) -> None:
        factory = cast("Callable[[], asyncio.Protocol]", lambda: H2Link(self))
        pool = self.pool
        try:
            if pool.tls is None:
                connect = self.loop.create_connection(factory, pool.host, pool.port)
            else:  # an https:// backend that chose h2 by ALPN before
                context = client_context(pool.tls, h2=True)
                connect = self.loop.create_connection(
                    factory, pool.host, pool.port, ssl=context, server_hostname=pool.host
                )
            await asyncio.wait_for(connect, self.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            why = f"TLS: certificate not trusted: {exc.verify_message}"
            self.connect_failed(UpstreamConnectError(why))
        except ssl.SSLError as exc:
            self.connect_failed(UpstreamConnectError(f"TLS: {exc.reason or exc}"))
        except CAFileError as exc:
            self.connect_failed(UpstreamConnectError(f"TLS: {exc}"))
        except OSError as exc:  # TimeoutError among them
            self.connect_failed(UpstreamConnectError(exc.strerror or str(exc) or "timed out"))
        finally:
            self.opener = None

    def connect_failed(self, error: UpstreamConnectError) -> None:
        """No link was made (the connect, or the HTTP/2 handshake, failed): the exchanges
        waiting for one fail as a refused connect would (retried)."""
        self.connecting = False
        self.retire_next = False
        waiting = list(self.waiting)
        self.waiting.clear()
        for ex in waiting:
            ex.connect_task = None
            ex.connect_failed(error)

    def adopt(self, transport: asyncio.BaseTransport, ex: Any) -> None:
        """A connection made for `ex` on which the backend chose h2 by ALPN: one more link,
        and `ex` a stream on it."""
        link = H2Link(self)
        transport.set_protocol(link)  # type: ignore[arg-type]
        if not ex.body_raw:
            ex._unframe()
        self.waiting.appendleft(ex)  # served first, by the link coming up
        ex.connect_task = _Waiting(self, ex)
        link.connection_made(transport)

    def link_up(self, link: H2Link) -> None:
        """A new link has the backend's SETTINGS: it takes streams."""
        self.connecting = False
        self.links.append(link)
        self.serve_waiting()
        if self.retire_next:  # close_all came while it was being opened
            self.retire_next = False
            if link.calls:
                link.goaway = True
            else:
                link.close()

    def serve_waiting(self) -> None:
        waiting = self.waiting
        while waiting:
            ex = waiting[0]
            if ex.state != _CONNECTING:
                waiting.popleft()
                continue
            link = next((lk for lk in self.links if lk.has_room()), None)
            if link is None:
                if not self.connecting:
                    self._connect()
                return
            waiting.popleft()
            ex.connect_task = None
            ex.connected(link.new_call())

    def link_gone(self, link: H2Link) -> None:
        """A link closed (told once per link)."""
        if not link.settled:
            self.connect_failed(UpstreamConnectError(link.unsettled))
            return
        if link in self.links:
            self.links.remove(link)
        if self.waiting and not self.connecting:
            self._connect()

    def close_idle_before(self, cutoff: float) -> None:
        for link in list(self.links):
            if not link.calls and link.reserved == 0 and link.idle_since < cutoff:
                link.close()

    def close_all(self) -> None:
        """Idle links close now; a busy one takes no new stream and closes after its last
        (a reload or a failed health check leaves streams in flight to their exchanges,
        as it leaves an HTTP/1.1 backend's busy connections)."""
        for link in list(self.links):
            if link.calls or link.reserved:
                link.goaway = True
            else:
                link.close()
        if self.connecting:
            self.retire_next = True

    @property
    def open_links(self) -> int:
        return len(self.links)


class H2Link:
    """One HTTP/2 connection to a backend (see the module docstring)."""

    def __init__(self, backend: H2Backend) -> None:
        self.backend = backend
        limits = backend.limits
        self.limits = limits
        h2 = H2Connection(config=_config())
        h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: 2 * limits.max_header_bytes,
            },
        )
        h2.encoder = PlainEncoder()
        # What is advertised, in HPACK's count (name + value + 32 per field): a head over
        # section 4a's limits but within this is refused for its stream alone (`_head`);
        # h2's decoder would otherwise stop at its default, 64 KiB, with a connection error
        # that ends every stream on the link.
        h2.decoder.max_header_list_size = 2 * limits.max_header_bytes + 32 * limits.max_header_count
        self.h2 = h2
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, H2Call] = {}
        self.reserved = 0  # calls given out whose HEADERS are not sent yet
        self.goaway = False  # the backend said GOAWAY, or close_all: no new stream
        self.closed = False
        # The backend's SETTINGS came (the server preface): until then the link takes no
        # stream, since its SETTINGS_MAX_CONCURRENT_STREAMS is not known yet.
        self.settled = False
        self.settle_timer: asyncio.TimerHandle | None = None
        self.unsettled = "the backend closed the connection before its HTTP/2 SETTINGS"
        self.gone = False  # the backend was told the link is gone
        self.idle_since = time.monotonic()
        self.buffer = b""  # a frame not yet complete (GOAWAYs are read here)
        self.batching = False
        self.write_blocked = False

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None and sslobj.selected_alpn_protocol() != "h2":
            # The backend speaks HTTP/1.1 again: its requests go that way from now on
            # (those waiting for this link fail as a refused connect, and are retried).
            backend = self.backend
            if backend.pool.h2 is backend:
                backend.pool.h2 = None
            self.unsettled = "the backend no longer offers h2"
            self.closed = True
            transport.close()
            self._gone()
            return
        h2 = self.h2
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self.flush()
        backend = self.backend
        self.settle_timer = backend.loop.call_later(backend.connect_timeout, self._unsettled)

    def _unsettled(self) -> None:
        self.settle_timer = None
        if not self.settled:
            self.unsettled = "no HTTP/2 SETTINGS from the backend within timeouts.connect"
            self.close()

    def _settle(self) -> None:
        self.settled = True
        timer = self.settle_timer
        if timer is not None:
            self.settle_timer = None
            timer.cancel()
        self.backend.link_up(self)

    def data_received(self, data: bytes) -> None:
        data = self._take_goaway(data)
        if not data:
            self.flush()  # what a GOAWAY's failed streams left to send
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            if not self.settled:
                self.unsettled = f"the backend does not speak HTTP/2 (h2c): {exc}"
            self._fail_all(UpstreamProtocolError(f"HTTP/2: {exc}"))
            self.flush()
            self.close()
            return
        self.batching = True
        try:
            event: Any  # dispatched on its exact type
            for event in events:
                kind = type(event)
                if kind is DataReceived:
                    self._data(event)
                elif kind is ResponseReceived:
                    self._head(event)
                elif kind is StreamEnded:
                    self._end(event.stream_id)
                elif kind is TrailersReceived:
                    self._trailers(event)
                elif kind is WindowUpdated:
                    self._window(event.stream_id or 0)
                elif kind is RemoteSettingsChanged:
                    if not self.settled:
                        self._settle()
                    else:
                        self._window(0)
                elif kind is StreamReset:
                    self._reset(event.stream_id, event.error_code)
        finally:
            self.batching = False
            self.flush()
        if self.goaway and not self.calls:
            self.close()

    def eof_received(self) -> bool:
        return False  # then connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        timer = self.settle_timer
        if timer is not None:
            self.settle_timer = None
            timer.cancel()
        self._gone()
        self._fail_all(UpstreamLost(f"connection lost: {exc}" if exc else "connection closed"))

    def pause_writing(self) -> None:
        self.write_blocked = True
        for call in list(self.calls.values()):
            owner: Any = call.owner
            if owner is not None:
                owner.upstream_paused()

    def resume_writing(self) -> None:
        self.write_blocked = False
        for call in list(self.calls.values()):
            owner: Any = call.owner
            if owner is not None and not call.client_paused:
                owner.upstream_resumed()

    # -- the streams --------------------------------------------------------------------

    def has_room(self) -> bool:
        if self.goaway or self.closed or self.transport is None:
            return False
        allowed: int = min(MAX_STREAMS, self.h2.remote_settings.max_concurrent_streams)
        return len(self.calls) + self.reserved < allowed

    def new_call(self) -> H2Call:
        self.reserved += 1
        return H2Call(self.backend.pool, self)

    def send_head(self, call: H2Call, ex: Exchange) -> None:
        self.reserved -= 1
        if self.closed:
            call.finished = True
            ex.upstream_failed(UpstreamConnectError("connection closed"))
            return
        req = ex.req
        h2 = self.h2
        sid = h2.get_next_available_stream_id()
        call.id = sid
        self.calls[sid] = call
        authority = req.host if req.host is not None else self.backend.authority
        fields: list[tuple[bytes, bytes]] = [
            (b":method", req.method),
            (b":scheme", b"https" if req.https else b"http"),
            (b":path", req.target),
            (b":authority", authority),
        ]
        for line in req.lines:  # b"Name: value\r\n", checked by the reader
            colon = line.find(b":")
            if colon > 0:
                fields.append((line[:colon].lower(), line[colon + 1 : -2].strip(b" \t")))
        source = ex.conn.source
        xff = source if req.xff is None else req.xff + b", " + source
        fields.append((b"x-forwarded-for", xff))
        fields.append((b"x-forwarded-proto", b"https" if req.tls else b"http"))
        if req.host is not None:
            fields.append((b"x-forwarded-host", req.host))
        if req.request_id is not None:
            fields.append(never_indexed(b"x-request-id", req.request_id))
        if req.te_trailers:
            fields.append((b"te", b"trailers"))
        if req.content_length >= 0:
            fields.append((b"content-length", b"%d" % req.content_length))
        end = not req.has_body
        h2.send_headers(sid, fields, end_stream=end)
        call.ended = end
        self._flush_soon()

    def send_body(self, call: H2Call, data: bytes) -> None:
        if call.outbox:
            call.outbox.append(data)
            call.outbox_bytes += len(data)
            self._check_outbox(call)
            return
        self._push(call, data)
        self._flush_soon()

    def _push(self, call: H2Call, data: bytes) -> None:
        h2 = self.h2
        sid = call.id
        try:
            window = h2.local_flow_control_window(sid)
        except H2Error:
            return
        frame = h2.max_outbound_frame_size
        size = len(data)
        pos = 0
        if size <= window and size <= frame:
            h2.send_data(sid, data)
            return
        view = memoryview(data)
        while pos < size and window > 0:
            step = min(size - pos, window, frame)
            h2.send_data(sid, view[pos : pos + step].tobytes())
            pos += step
            window -= step
        if pos < size:
            rest = data[pos:]
            call.outbox.append(rest)
            call.outbox_bytes += len(rest)
            self._check_outbox(call)

    def _check_outbox(self, call: H2Call) -> None:
        if call.outbox_bytes > OUTBOX_HIGH and not call.client_paused:
            call.client_paused = True
            owner: Any = call.owner
            if owner is not None:
                owner.upstream_paused()

    def _drain(self, call: H2Call) -> None:
        outbox = call.outbox
        pending = b"".join(outbox)
        outbox.clear()
        call.outbox_bytes = 0
        self._push(call, pending)
        if call.outbox:
            return
        if call.client_paused:
            call.client_paused = False
            owner: Any = call.owner
            if owner is not None and not self.write_blocked:
                owner.upstream_resumed()
        if call.end_after_outbox:
            call.end_after_outbox = False
            self._end_stream(call)

    def end_body(self, call: H2Call) -> None:
        if call.outbox:
            call.end_after_outbox = True
            return
        self._end_stream(call)
        self._flush_soon()

    def _end_stream(self, call: H2Call) -> None:
        call.ended = True
        owner: Any = call.owner
        trailers = owner.request_trailers if owner is not None else None
        try:
            if trailers:
                self.h2.send_headers(call.id, trailers, end_stream=True)
            else:
                self.h2.end_stream(call.id)
        except H2Error:
            pass

    def acknowledge(self, call: H2Call) -> None:
        size = call.unacked
        if size and not call.finished:
            call.unacked = 0
            try:
                self.h2.acknowledge_received_data(size, call.id)
            except H2Error:
                pass
            self._flush_soon()

    def call_done(self, call: H2Call, reusable: bool) -> None:
        """The exchange is finished with the stream."""
        if not call.finished:
            if not call.ended:  # answered before the request's end: stop it there
                self._reset_stream(call, ErrorCodes.CANCEL)
            self._forget(call)
            self._flush_soon()

    def cancel(self, call: H2Call) -> None:
        if call.id == 0:  # given out, never sent
            self.reserved -= 1
            call.finished = True
            return
        if not call.finished:
            self._reset_stream(call, ErrorCodes.CANCEL)
            self._forget(call)
            self._flush_soon()

    def _reset_stream(self, call: H2Call, code: int) -> None:
        try:
            self.h2.reset_stream(call.id, code)
        except H2Error:
            pass

    def _forget(self, call: H2Call) -> None:
        call.finished = True
        call.outbox.clear()
        unacked = call.unacked
        if unacked:  # DATA held back for a paused client: the connection's window gets
            call.unacked = 0  # it back (h2 credits only the connection for a closed stream)
            try:
                self.h2.acknowledge_received_data(unacked, call.id)
            except H2Error:
                pass
        self.calls.pop(call.id, None)
        if not self.calls:
            self.idle_since = time.monotonic()
            if self.goaway:
                self.close()
                return
        if self.backend.waiting:
            self.backend.serve_waiting()

    # -- what the backend sends ---------------------------------------------------------

    def _head(self, event: ResponseReceived) -> None:
        call = self.calls.get(event.stream_id)
        owner: Any = call.owner if call is not None else None
        if call is None or owner is None:
            return
        status = 0
        lines = []
        content_length = -1
        size = 0
        limits = self.limits
        fields = event.headers or []
        for name, value in fields:
            if name == b":status":
                status = int(value) if value.isdigit() else 0
                continue
            if name[:1] == b":":
                continue
            size += len(name) + len(value) + 4
            if name == b"content-length" and value.isdigit():
                content_length = int(value)
            lines.append(name + b": " + value + b"\r\n")
        if len(lines) > limits.max_header_count or size > limits.max_header_bytes:
            self._fail(call, UpstreamProtocolError("response head over the limits"))
            return
        if not 200 <= status <= 999:
            self._fail(call, UpstreamProtocolError("invalid :status"))
            return
        if event.stream_ended is not None:
            # A head that ends the stream: no body follows. An HTTP/1.1 client learns that
            # from a Content-Length (HEAD, 204 and 304 have no body whatever it says).
            if content_length < 0 and not owner.conn.http2 and status != 204 and status != 304:
                if owner.req.method != b"HEAD":
                    lines.append(b"content-length: 0\r\n")
            content_length = 0
            code = grpc.grpc_status(fields)
            if code >= 0:
                owner.grpc_status = code
        head = ResponseHead(status, status_line(status), b"".join(lines),
                            content_length, False, True, b"")  # fmt: skip
        conn = owner.conn
        batch = conn.begin_batch()
        try:
            owner.on_response_head(head)
        finally:
            conn.end_batch(batch)

    def _data(self, event: DataReceived) -> None:
        sid = event.stream_id
        size = event.flow_controlled_length or 0
        call = self.calls.get(sid)
        owner: Any = call.owner if call is not None else None
        if call is None or owner is None:
            if size:
                try:
                    self.h2.acknowledge_received_data(size, sid)
                except H2Error:
                    pass
            return
        data = event.data
        if data:
            conn = owner.conn
            batch = conn.begin_batch()
            try:
                owner.on_response_body(data)
            finally:
                conn.end_batch(batch)
        if call.reading_paused:
            call.unacked += size
        elif size:
            self.h2.acknowledge_received_data(size, sid)

    def _trailers(self, event: TrailersReceived) -> None:
        call = self.calls.get(event.stream_id)
        owner: Any = call.owner if call is not None else None
        if call is None or owner is None:
            return
        fields = list(event.headers or [])
        code = grpc.grpc_status(fields)
        if code >= 0:
            owner.grpc_status = code
        conn = owner.conn
        batch = conn.begin_batch()
        try:
            owner.on_response_trailers(fields)
        finally:
            conn.end_batch(batch)

    def _end(self, sid: int) -> None:
        call = self.calls.get(sid)
        owner: Any = call.owner if call is not None else None
        if call is None or owner is None:
            return
        conn = owner.conn
        batch = conn.begin_batch()
        try:
            owner.on_response_end(True)
        finally:
            conn.end_batch(batch)

    def _reset(self, sid: int, code: int | None) -> None:
        call = self.calls.get(sid)
        if call is None:
            return
        self._forget(call)
        if code == ErrorCodes.REFUSED_STREAM:
            error: Any = UpstreamConnectError("the backend refused the stream")
        else:
            error = UpstreamLost(f"stream reset by the backend ({ErrorCodes(code or 0).name})")
        owner: Any = call.owner
        call.owner = None
        if owner is not None:
            owner.upstream_failed(error)

    def _fail(self, call: H2Call, error: Any) -> None:
        owner: Any = call.owner
        call.owner = None
        self._reset_stream(call, ErrorCodes.PROTOCOL_ERROR)
        self._forget(call)
        if owner is not None:
            owner.upstream_failed(error)

    def _fail_all(self, error: Any) -> None:
        calls = list(self.calls.values())
        self.calls.clear()
        for call in calls:
            call.finished = True
            owner: Any = call.owner
            call.owner = None
            if owner is not None:
                owner.upstream_lost(error)

    def _window(self, sid: int) -> None:
        if sid:
            call = self.calls.get(sid)
            if call is not None and call.outbox:
                self._drain(call)
            return
        for call in list(self.calls.values()):
            if call.outbox:
                self._drain(call)

    def _take_goaway(self, data: bytes) -> bytes:
        """Take GOAWAY frames out of what the backend sent (see the module docstring)."""
        buffer = self.buffer + data if self.buffer else data
        pos = 0
        end = len(buffer)
        kept: list[bytes] | None = None
        start = 0
        limit = self.h2.max_inbound_frame_size
        while end - pos >= 9:
            length = int.from_bytes(buffer[pos : pos + 3], "big")
            if length > limit:  # h2 refuses it at once (not HTTP/2, or a frame too big)
                pos = end
                break
            stop = pos + 9 + length
            if stop > end:
                break
            # A well-formed GOAWAY (h2 refuses any other as it would)
            if buffer[pos + 3] == _GOAWAY and length >= 8 and buffer[pos + 5 : pos + 9] == _ZERO:
                if kept is None:
                    kept = []
                kept.append(buffer[start:pos])
                payload = buffer[pos + 9 : stop]
                self._goaway(int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF)
                start = stop
            pos = stop
        self.buffer = buffer[pos:]
        if kept is None:
            return buffer[:pos] if pos < end else buffer
        kept.append(buffer[start:pos])
        return b"".join(kept)

    def _goaway(self, last_stream: int) -> None:
        self.goaway = True
        error = UpstreamConnectError("the backend went away before the stream")
        for sid, call in list(self.calls.items()):
            if sid > last_stream:
                self._forget(call)
                owner: Any = call.owner
                call.owner = None
                if owner is not None:
                    owner.upstream_failed(error)
        if self.backend.waiting and not self.backend.connecting:
            self.backend.serve_waiting()

    # -- writing ------------------------------------------------------------------------

    def _flush_soon(self) -> None:
        if not self.batching:
            self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                try:
                    self.h2.close_connection()
                    self.flush_raw()
                except H2Error:
                    pass
                self.transport.close()
            self._gone()

    def _gone(self) -> None:
        if not self.gone:
            self.gone = True
            self.backend.link_gone(self)

    def flush_raw(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

"""An HTTP/2 backend speaking h2c with prior knowledge, on the `h2` library and asyncio: the
`protocol: h2c` pools' backend in tests/e2e/test_h2c_backends.py, well-behaved and hostile
by route.

    python -m tests.backends.h2_app --port P --name NAME [--max-streams N]
        [--goaway-after N] [--all ROUTE]                  (prints "ready" when serving)

Routes (any method; the query string as shown):

    POST /grpc.health.v1.Health/Check  gRPC health: SERVING (5-byte framed 0801, grpc-status 0)
    /sick, /well            the health check answers NOT_SERVING from now on, or SERVING
    /stats                  JSON: connections accepted (those that carried a request, not a
                            health probe, /stats, /sick or /well), open, closed; streams; refused;
                            the most streams open at once on one connection; bytes sent
                            and received per `tag`
    /echo[?nocl=1]          after the request's end: JSON of the method, path, authority,
                            header list, body length and sha256, backend name, connection
                            number (Content-Length unless nocl=1)
    /stream?n=&size=[&cl=1][&tag=]  n chunks of `pattern_chunk(size)` in DATA frames within
                            the client's windows; Content-Length only with cl=1
    /trailers?size=         a body, then trailers x-checksum (its sha256) and x-te (the
                            request's te field, "-" when absent)
    /slow?seconds=          "slow" after that many seconds
    /empty                  one HEADERS frame, :status 200 and END_STREAM, no content-length
    /overlong               content-length 10 and a DATA frame of 20 bytes, in one write
    /sink?hold=S[&tag=]     the request body read, each DATA frame acknowledged only after
                            S seconds from the stream's start; then JSON as /echo
    /reset[?bytes=N]        the head (and N bytes), then RST_STREAM INTERNAL_ERROR; with
                            at=start, RST_STREAM INTERNAL_ERROR at once, no head
    /refuse[?once=KEY]      RST_STREAM REFUSED_STREAM at once (with once: only the first
                            time KEY is seen, then answered as /echo)
    /goaway[?once=KEY]      GOAWAY with last_stream_id below the stream, then the close
                            0.2 s later (what arrives meanwhile read and dropped); with
                            abrupt=1 the close at once (a reset when bytes are unread);
                            with once: only the first time, then answered as /echo;
                            malformed=1: a GOAWAY of 4 bytes instead, and nothing else
    /bighead?fields=N       a 200 with N header fields (and one of `bytes` bytes)
    /close[?after=head]     the connection closed (after the head and a little body)

Modes: --all ROUTE answers every request (not the health check, not /stats) as that route
(--all refuse: REFUSED_STREAM to everything, --all goaway); --goaway-after N sends
GOAWAY NO_ERROR once a connection has received N request streams, finishes those, ignores
any later ones (RFC 9113 6.8) and closes when the last is done. --max-streams is the
SETTINGS_MAX_CONCURRENT_STREAMS advertised. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

HEALTH_PATH = "/grpc.health.v1.Health/Check"
HEALTH_ANSWER = b"\x00\x00\x00\x00\x02\x08\x01"  # one message: status SERVING
NOT_SERVING = b"\x00\x00\x00\x00\x02\x08\x02"
OBSERVING = (HEALTH_PATH, "/stats", "/sick", "/well")  # not counted as requests
_PATTERN = bytes(range(256))
Field = tuple[bytes, bytes]


def pattern_chunk(size: int) -> bytes:
    """The bytes of one /stream chunk (as tests.support.pattern_chunk)."""
    return (_PATTERN * (size // 256 + 1))[:size]


class Stats:
    """What the whole process saw, for /stats."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.closed = 0
        self.streams = 0
        self.refused = 0
        self.ignored = 0  # streams above a GOAWAY's last id
        self.max_open_streams = 0
        self.sent: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.seen_once: set[str] = set()
        self.next_conn = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "open": self.open,
            "closed": self.closed,
            "streams": self.streams,
            "refused": self.refused,
            "ignored": self.ignored,
            "max_open_streams": self.max_open_streams,
            "sent": self.sent,
            "received": self.received,
        }


class Request:
    """One stream's request as it arrives."""

    def __init__(self, sid: int, headers: list[Field]) -> None:
        self.sid = sid
        self.headers = headers
        pseudo = {k: v for k, v in headers if k.startswith(b":")}
        self.method = pseudo.get(b":method", b"").decode()
        self.target = pseudo.get(b":path", b"").decode()
        self.authority = pseudo.get(b":authority", b"").decode()
        parts = urlsplit(self.target)
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.tag = self.query.get("tag", "")
        self.body_bytes = 0
        self.digest = hashlib.sha256()
        self.ended = asyncio.Event()
        self.reset = False
        self.window = asyncio.Event()
        self.started = asyncio.get_running_loop().time()

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Closed(Exception):
    """The stream or the connection is gone."""


class H2Server(asyncio.Protocol):
    """One connection from splitter (or a probe)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stats = app.stats
        config = H2Configuration(client_side=False, header_encoding=None)
        self.h2 = H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, Request] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.counted = False  # carried a request (not a probe, not /stats)
        self.received_streams = 0
        self.goaway_last: int | None = None  # a GOAWAY was sent: streams above are ignored
        self.lingering = False  # closing after a moment, whatever is open
        self.number = 0
        self.lost = False

    # -- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.local_settings = Settings(
            client=False,
            initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: self.app.max_streams},
        )
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self.flush()
            self.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._request(event.stream_id, list(event.headers or []))
            elif isinstance(event, DataReceived):
                self._data(event)
            elif isinstance(event, StreamEnded):
                req = self.requests.get(event.stream_id)
                if req is not None:
                    req.ended.set()
            elif isinstance(event, StreamReset):
                req = self.requests.pop(event.stream_id, None)
                if req is not None:
                    req.reset = True
                    req.ended.set()
                    req.window.set()
            elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
                sid = getattr(event, "stream_id", 0)
                if sid:
                    req = self.requests.get(sid)
                    if req is not None:
                        req.window.set()
                else:
                    for req in self.requests.values():
                        req.window.set()
            elif isinstance(event, ConnectionTerminated):
                self.close()
                return
        self.flush()
        self._close_if_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.counted:
            self.stats.open -= 1
            self.stats.closed += 1
        for req in self.requests.values():
            req.reset = True
            req.ended.set()
            req.window.set()
        for task in list(self.tasks):
            task.cancel()

    # -- the streams --------------------------------------------------------------------

    def _request(self, sid: int, headers: list[Field]) -> None:
        req = Request(sid, headers)
        if self.goaway_last is not None and sid > self.goaway_last:
            self.stats.ignored += 1  # RFC 9113 6.8: not processed, and nothing said
            return
        if req.path not in OBSERVING:
            if not self.counted:
                self.counted = True
                self.stats.next_conn += 1
                self.number = self.stats.next_conn
                self.stats.accepted += 1
                self.stats.open += 1
            self.stats.streams += 1
        self.requests[sid] = req
        self.stats.max_open_streams = max(self.stats.max_open_streams, len(self.requests))
        app = self.app
        if app.all_route and req.path not in OBSERVING:
            req.path = app.all_route
            req.query.pop("once", None)
        if req.path == "/reset" and req.query.get("at") == "start":
            self.requests.pop(sid, None)
            self.h2.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            return
        if req.path == "/refuse":
            key = req.query.get("once")
            if key is None or key not in self.stats.seen_once:
                if key is not None:
                    self.stats.seen_once.add(key)
                self._refuse(req)
                return
        if req.path == "/goaway" and req.query.get("malformed") == "1":
            frame = b"\x00\x00\x04\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # 4 bytes: short
            self.flush()
            if self.transport is not None:
                self.transport.write(frame)
            return
        if req.path == "/goaway":
            key = req.query.get("once")
            if key is None or key not in self.stats.seen_once:
                if key is not None:
                    self.stats.seen_once.add(key)
                self.requests.pop(sid, None)
                last = max(0, sid - 2)
                if req.query.get("abrupt") == "1":  # the close may reset what is unread
                    self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=last)
                    self.flush()
                    self.close()
                    return
                # Read on (and drop) what is in flight a moment, then close: a close with
                # unread bytes is a TCP reset that can lose the GOAWAY on its way.
                self.goaway_last = last
                self.lingering = True
                self._graceful_goaway(last)
                asyncio.get_running_loop().call_later(0.2, self.close)
                return
        if app.goaway_after:
            self.received_streams += 1
            if self.received_streams == app.goaway_after:
                self.goaway_last = sid
                self._graceful_goaway(sid)
        self._spawn(self._serve(req))

    def _graceful_goaway(self, last: int) -> None:
        """GOAWAY NO_ERROR written beside h2, which would send nothing more after its own
        (the streams up to `last` are still answered)."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = ErrorCodes.NO_ERROR
        self.flush()
        if self.transport is not None:
            self.transport.write(frame.serialize())

    def _refuse(self, req: Request) -> None:
        self.stats.refused += 1
        self.requests.pop(req.sid, None)
        self.h2.reset_stream(req.sid, ErrorCodes.REFUSED_STREAM)

    def _data(self, event: DataReceived) -> None:
        sid = event.stream_id
        size = event.flow_controlled_length or 0
        req = self.requests.get(sid)
        if req is None:
            if size:
                self._ack(size, sid)
            return
        data = event.data or b""
        req.body_bytes += len(data)
        req.digest.update(data)
        if req.tag:
            self.stats.received[req.tag] = self.stats.received.get(req.tag, 0) + len(data)
        hold = float(req.query.get("hold", "0")) if req.path == "/sink" else 0.0
        if hold > 0:
            loop = asyncio.get_running_loop()
            delay = req.started + hold - loop.time()
            if delay > 0:
                loop.call_later(delay, self._ack_later, size, sid)
                return
        self._ack(size, sid)

    def _ack(self, size: int, sid: int) -> None:
        if size:
            try:
                self.h2.acknowledge_received_data(size, sid)
            except H2Error:
                pass

    def _ack_later(self, size: int, sid: int) -> None:
        if not self.lost:
            self._ack(size, sid)
            self.flush()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, req: Request) -> None:
        try:
            await self._route(req)
        except (Closed, H2Error, asyncio.CancelledError):
            pass
        finally:
            self.requests.pop(req.sid, None)
            self.flush()
            self._close_if_done()

    async def _route(self, req: Request) -> None:
        path = req.path
        q = req.query
        if path == HEALTH_PATH:
            await req.ended.wait()
            self._head(req, [(b"content-type", b"application/grpc")])
            await self._send(req, HEALTH_ANSWER if self.app.serving else NOT_SERVING)
            self._trailers(req, [(b"grpc-status", b"0")])
        elif path in ("/sick", "/well"):
            self.app.serving = path == "/well"
            await req.ended.wait()
            await self._json(req, {"serving": self.app.serving})
        elif path == "/stats":
            await req.ended.wait()
            await self._json(req, self.stats.as_json())
        elif path in ("/echo", "/sink", "/refuse", "/goaway"):
            await req.ended.wait()
            await self._json(req, self._echo(req), length=q.get("nocl") != "1")
        elif path == "/stream":
            n, size = int(q.get("n", "10")), int(q.get("size", "16384"))
            extra = [(b"content-length", b"%d" % (n * size))] if q.get("cl") == "1" else []
            self._head(req, [(b"content-type", b"application/octet-stream"), *extra])
            chunk = pattern_chunk(size)
            for i in range(n):
                await self._send(req, chunk, end=i == n - 1)
            if n == 0:
                self._end(req)
        elif path == "/trailers":
            await req.ended.wait()
            body = pattern_chunk(int(q.get("size", "100000")))
            self._head(req, [(b"content-type", b"application/octet-stream")])
            await self._send(req, body)
            te = req.header(b"te") or b"-"
            checksum = hashlib.sha256(body).hexdigest().encode()
            self._trailers(req, [(b"x-checksum", checksum), (b"x-te", te)])
        elif path == "/slow":
            await asyncio.sleep(float(q.get("seconds", "1")))
            await req.ended.wait()
            self._head(req, [(b"content-type", b"text/plain"), (b"content-length", b"4")])
            await self._send(req, b"slow", end=True)
        elif path == "/overlong":
            await req.ended.wait()
            fields = [(b":status", b"200"), (b"content-length", b"10")]
            self.h2.send_headers(req.sid, fields)  # one write with the DATA
            self.h2.send_data(req.sid, b"x" * 20)  # (h2 checks no length it sends)
            self.flush()
        elif path == "/empty":
            await req.ended.wait()
            self.h2.send_headers(req.sid, [(b":status", b"200")], end_stream=True)
        elif path == "/reset":
            self._head(req, [(b"content-type", b"application/octet-stream")])
            size = int(q.get("bytes", "0"))
            if size:
                await self._send(req, pattern_chunk(size))
            await asyncio.sleep(0.05)
            self.h2.reset_stream(req.sid, ErrorCodes.INTERNAL_ERROR)
        elif path == "/bighead":
            count = int(q.get("fields", "150"))
            fields = [(b"x-field-%d" % i, b"v") for i in range(count)]
            if "bytes" in q:
                fields.append((b"x-big", b"b" * int(q["bytes"])))
            await req.ended.wait()
            self._head(req, [(b"content-length", b"2"), *fields])
            await self._send(req, b"ok", end=True)
        elif path == "/close":
            if q.get("after") == "head":
                self._head(req, [(b"content-type", b"application/octet-stream")])
                await self._send(req, pattern_chunk(1000))
                await asyncio.sleep(0.05)
            self.close()
        else:
            await req.ended.wait()
            self.h2.send_headers(
                req.sid, [(b":status", b"404"), (b"content-length", b"0")], end_stream=True
            )

    def _echo(self, req: Request) -> dict[str, Any]:
        return {
            "method": req.method,
            "path": req.target,
            "authority": req.authority,
            "headers": [[k.decode(), v.decode()] for k, v in req.headers],
            "body_bytes": req.body_bytes,
            "sha256": req.digest.hexdigest(),
            "backend": self.app.name,
            "conn": self.number,
        }

    # -- sending --------------------------------------------------------------------------

    def _head(self, req: Request, fields: list[Field], status: bytes = b"200") -> None:
        if req.reset:
            raise Closed
        self.h2.send_headers(req.sid, [(b":status", status), *fields])
        self.flush()

    def _trailers(self, req: Request, fields: list[Field]) -> None:
        if req.reset:
            raise Closed
        self.h2.send_headers(req.sid, fields, end_stream=True)

    def _end(self, req: Request) -> None:
        if req.reset:
            raise Closed
        self.h2.end_stream(req.sid)

    async def _json(self, req: Request, obj: object, length: bool = True) -> None:
        body = json.dumps(obj).encode()
        fields = [(b"content-type", b"application/json")]
        if length:
            fields.append((b"content-length", b"%d" % len(body)))
        self._head(req, fields)
        await self._send(req, body, end=True)

    async def _send(self, req: Request, data: bytes, end: bool = False) -> None:
        """`data` in DATA frames within the windows, waiting for WINDOW_UPDATEs."""
        h2 = self.h2
        pos = 0
        size = len(data)
        while pos < size:
            if req.reset or self.lost:
                raise Closed
            window = min(h2.local_flow_control_window(req.sid), h2.max_outbound_frame_size)
            if window <= 0:
                req.window.clear()
                await req.window.wait()
                continue
            step = min(window, size - pos)
            h2.send_data(req.sid, data[pos : pos + step])
            pos += step
            if req.tag:
                self.stats.sent[req.tag] = self.stats.sent.get(req.tag, 0) + step
            self.flush()
        if end:
            if req.reset or self.lost:
                raise Closed
            h2.end_stream(req.sid)
            self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close_if_done(self) -> None:
        if self.goaway_last is not None and not self.requests and not self.lingering:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class App:
    def __init__(self, name: str, max_streams: int, goaway_after: int, all_route: str) -> None:
        self.name = name
        self.max_streams = max_streams
        self.goaway_after = goaway_after
        self.all_route = "/" + all_route if all_route else ""
        self.stats = Stats()
        self.serving = True


async def serve(port: int, app: App) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: H2Server(app), "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="h2")
    parser.add_argument("--max-streams", type=int, default=250)
    parser.add_argument("--goaway-after", type=int, default=0)
    parser.add_argument("--all", default="", help="answer every request as this route")
    args = parser.parse_args(argv)
    app = App(args.name, args.max_streams, args.goaway_after, args.all)
    asyncio.run(serve(args.port, app))


if __name__ == "__main__":
    main()

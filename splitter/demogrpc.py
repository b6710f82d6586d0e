"""The demo's gRPC service: a small h2c server in the demo's process, on the `h2` library.

`splitter demo` runs one for each backend of an `h2c` pool in its config (the route
`greeter` of the bundled demo.yaml). It serves, without generated code:

    /demo.Greeter/Hello           unary: the request's message (any bytes, e.g. a name)
                                  back as b"<pool>: hello <message>"; with a fault rate,
                                  that share of calls fails with UNAVAILABLE (a canary
                                  that is broken, for a rollout to roll back)
    /grpc.health.v1.Health/Check  SERVING (splitter probes h2c backends with it)

Anything else is UNIMPLEMENTED. Each answer is a HEADERS, one DATA and the trailers (or
trailers-only for a failure), as grpc servers answer. Try it with curl:

    printf '\\0\\0\\0\\0\\3you' | curl -s --http2-prior-knowledge --data-binary @- \\
        -H 'content-type: application/grpc' -H 'te: trailers' \\
        http://127.0.0.1:8080/demo.Greeter/Hello | tail -c +6
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import H2Error

from splitter.http2.grpc import HEALTH_PATH

__all__ = ["HELLO_PATH", "GreeterProtocol", "frame"]

HELLO_PATH = b"/demo.Greeter/Hello"
_SERVING = b"\x00\x00\x00\x00\x02\x08\x01"  # HealthCheckResponse{status: SERVING}, framed
_MAX_MESSAGE = 64 * 1024


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message, not compressed."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


class GreeterProtocol(asyncio.Protocol):
    """One client connection (see the module docstring); `faults` is shared and may change
    while it runs ({"fail_rate": 0..1})."""

    def __init__(self, pool: str, faults: dict[str, float]) -> None:
        self.pool = pool
        self.faults = faults
        config = H2Configuration(client_side=False, header_encoding=None)
        self.h2 = H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[bytes, bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                path = dict(event.headers or []).get(b":path", b"")
                self.requests[event.stream_id] = (path, bytearray())
            elif isinstance(event, DataReceived):
                request = self.requests.get(event.stream_id)
                if request is not None and len(request[1]) < _MAX_MESSAGE:
                    request[1].extend(event.data or b"")
                self.h2.acknowledge_received_data(event.flow_controlled_length or 0,
                                                  event.stream_id)  # fmt: skip
            elif isinstance(event, StreamEnded):
                request = self.requests.pop(event.stream_id, None)
                if request is not None:
                    self._answer(event.stream_id, request[0], bytes(request[1]))
            elif isinstance(event, StreamReset):
                self.requests.pop(event.stream_id, None)
        self._flush()

    def _answer(self, stream_id: int, path: bytes, body: bytes) -> None:
        head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        if path == HEALTH_PATH:
            self._unary(stream_id, head, _SERVING)
        elif path == HELLO_PATH:
            rate = self.faults.get("fail_rate", 0.0)
            if rate and random.random() < rate:
                self._failure(stream_id, head, 14, f"{self.pool} failed on purpose")
                return
            name = body[5:] if len(body) >= 5 else b""
            self._unary(stream_id, head, frame(self.pool.encode() + b": hello " + name))
        else:
            self._failure(stream_id, head, 12, "unknown method")

    def _unary(self, stream_id: int, head: list[Any], message: bytes) -> None:
        self.h2.send_headers(stream_id, head)
        self.h2.send_data(stream_id, message)
        self.h2.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)

    def _failure(self, stream_id: int, head: list[Any], code: int, message: str) -> None:
        fields = [*head, (b"grpc-status", b"%d" % code), (b"grpc-message", message.encode())]
        self.h2.send_headers(stream_id, fields, end_stream=True)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.requests.clear()

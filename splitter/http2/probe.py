"""The gRPC health check of an `h2c` pool's backend: one probe, one HTTP/2 connection.

Theory of operation
-------------------
`control.health` probes a backend of an `h2c` pool with `probe_grpc` instead of `GET
health_check.path` (section 14 of the contract, docs/configuration.md#grpc-health-checks):
`grpc.health.v1.Health/Check` for the service "", SERVING is up, anything else, or no
answer within `health_check.timeout`, down. One probe is one new TCP connection spoken
HTTP/2 with prior knowledge (the client preface first, no Upgrade), one stream on it,
then GOAWAY and the close:

    -> preface, SETTINGS, HEADERS (grpc.health_request_fields), DATA (grpc.HEALTH_REQUEST,
       END_STREAM)
    <- SETTINGS (acknowledged), HEADERS (:status 200, content-type), DATA (one message),
       HEADERS (trailers: grpc-status, END_STREAM); or one HEADERS with END_STREAM, a
       trailers-only answer
    -> GOAWAY (NO_ERROR), FIN

`HealthCall` is the sans-IO part: the h2 state machine (client side, header names and
values as bytes) fed with what the backend sends, the answer gathered, the bytes to send
handed back, and `result` set once there is a verdict: `grpc.judge_health` on a whole
answer, or what went wrong before one. `probe_grpc` is the shell: it connects, moves
bytes and keeps the time; `timeout` covers everything, the connect to the last trailer.

Bounds: a health answer is a few hundred bytes. What the backend sends is counted as it
arrives: more than `MAX_ANSWER` bytes in all (frames of every kind) or DATA beyond one
health message (`grpc.MAX_HEALTH_MESSAGE` and its 5-byte prefix) fails the probe, so a
probe holds at most that much per backend whatever the backend does. Well below h2's
initial window of 65,535 bytes, so no WINDOW_UPDATE is ever owed.

What a probe saw reads like `control.health.probe`'s line: the call, then what happened
and, when the config can cause it, the key to change ("grpc.health.v1.Health/Check
answered NOT_SERVING", "...: no answer within 1s (health_check.timeout)", "...: the
backend does not speak HTTP/2 (h2c), it answered HTTP/1.1 400; set the pool's protocol
(http1 for an HTTP/1.1 backend)").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError

from splitter.http2.grpc import (
    HEALTH_PATH,
    HEALTH_REQUEST,
    MAX_HEALTH_MESSAGE,
    health_request_fields,
    judge_health,
)

__all__ = ["MAX_ANSWER", "WHAT", "HealthCall", "probe_grpc"]

Field = tuple[bytes, bytes]

WHAT: Final = HEALTH_PATH.decode()[1:]  # "grpc.health.v1.Health/Check", as judge_health says
MAX_ANSWER: Final = 16384  # bytes from the backend, frames of every kind
MAX_BODY: Final = 5 + MAX_HEALTH_MESSAGE
_HINT: Final = "set the pool's protocol (http1 for an HTTP/1.1 backend)"


def _fields(headers: Iterable[tuple[bytes | str, bytes | str]]) -> list[Field]:
    """h2's header list as (bytes, bytes): with `header_encoding=None` they already are."""
    return [(_bytes(name), _bytes(value)) for name, value in headers]


def _bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error code {code}"


class HealthCall:
    """One Health/Check over one HTTP/2 connection, as bytes in and bytes out.

    `data_to_send()` after construction and after each `feed`; `result` is None until
    the verdict, then (up, what happened); `goodbye()` is the GOAWAY to send before the
    close."""

    def __init__(self, authority: bytes) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(self.stream_id, health_request_fields(authority))
        self.h2.send_data(self.stream_id, HEALTH_REQUEST, end_stream=True)
        self.result: tuple[bool, str] | None = None
        self.received = 0  # bytes from the backend
        self.first_bytes = b""  # its first bytes, to name what answered when it is not HTTP/2
        self.spoke_http2 = False  # h2 took a frame of it
        self.status = 0
        self.headers: list[Field] = []
        self.body = bytearray()
        self.trailers: list[Field] = []

    def data_to_send(self) -> bytes:
        return self.h2.data_to_send()

    def feed(self, data: bytes) -> None:
        """What the backend sent; b"" when it closed the connection."""
        if self.result is not None:
            return
        self.received += len(data)
        if len(self.first_bytes) < 64:
            self.first_bytes += data[: 64 - len(self.first_bytes)]
        if self.first_bytes[:1] not in (b"", b"\x00"):
            # An HTTP/2 server's first frame is its SETTINGS, under 64 KiB: a length whose
            # first byte is 0. Anything else is another protocol; an HTTP/1.x status line
            # is read whole (or 64 bytes of it) to name it.
            if data and b"\r\n" not in self.first_bytes and len(self.first_bytes) < 64:
                return
            self._fail(self._not_http2())
            return
        if not data:
            if not self.received:
                self._fail("the backend closed the connection without answering; " + _HINT)
            else:
                self._fail("the backend closed the connection before the answer's end")
            return
        if self.received > MAX_ANSWER:
            self._fail(f"the answer exceeds {MAX_ANSWER} bytes")
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            if self.spoke_http2:
                self._fail(f"HTTP/2 protocol error: {exc}")
            else:  # not one frame that h2 took
                self._fail(self._not_http2())
            return
        self.spoke_http2 = self.spoke_http2 or bool(events)
        for event in events:
            if self.result is not None:
                return
            if isinstance(event, ConnectionTerminated):
                self._fail(f"the backend ended the connection (GOAWAY "
                           f"{_code_name(event.error_code or 0)})")  # fmt: skip
            elif getattr(event, "stream_id", None) != self.stream_id:
                continue  # a SETTINGS, PING, WINDOW_UPDATE...: h2 answers what needs it
            elif isinstance(event, ResponseReceived):
                self.headers = _fields(event.headers)
                status = next((v for n, v in self.headers if n == b":status"), b"0")
                self.status = int(status) if status.isdigit() else 0
            elif isinstance(event, DataReceived):
                self.body += event.data or b""
                if len(self.body) > MAX_BODY:
                    self._fail(f"the answer's body exceeds {MAX_BODY} bytes")
            elif isinstance(event, TrailersReceived):
                self.trailers = _fields(event.headers)
            elif isinstance(event, StreamReset):
                self._fail(f"the backend reset the stream ({_code_name(event.error_code or 0)})")
            elif isinstance(event, StreamEnded):
                self.result = judge_health(self.status, self.headers, bytes(self.body),
                                           self.trailers)  # fmt: skip

    def goodbye(self) -> bytes:
        """GOAWAY (NO_ERROR): h2 sends one in any state, after the backend's own too."""
        self.h2.close_connection()
        return self.h2.data_to_send()

    def _not_http2(self) -> str:
        if self.first_bytes.startswith(b"HTTP/"):
            status_line = self.first_bytes.split(b"\r\n", 1)[0].split(b" ", 2)[:2]
            said = b" ".join(status_line).decode("ascii", "replace")
            return f"the backend does not speak HTTP/2 (h2c), it answered {said}; {_HINT}"
        return f"the backend does not speak HTTP/2 (h2c); {_HINT}"

    def _fail(self, what: str) -> None:
        self.result = (False, f"{WHAT}: {what}")


async def probe_grpc(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """One gRPC health probe of an h2c backend: (up, what happened)."""
    authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()
    call = HealthCall(authority)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(call.data_to_send())
            while call.result is None:
                call.feed(await reader.read(65536))
                if out := call.data_to_send():
                    writer.write(out)
    except TimeoutError:
        return False, f"{WHAT}: no answer within {timeout:g}s (health_check.timeout)"
    except ConnectionRefusedError:
        return False, f"{WHAT}: connection refused"
    except ConnectionResetError:
        return False, f"{WHAT}: connection reset by the backend"
    except OSError as exc:
        return False, f"{WHAT}: {exc.strerror or type(exc).__name__}"
    finally:
        if writer is not None:
            if not writer.is_closing():
                writer.write(call.goodbye())
            writer.close()
    return call.result

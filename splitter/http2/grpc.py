"""gRPC's pure parts: which requests are gRPC, which answers are bad, and the health check.

Theory of operation
-------------------
gRPC is HTTP/2 with a convention (https://github.com/grpc/grpc/blob/master/doc/
PROTOCOL-HTTP2.md): a request whose `content-type` is `application/grpc` (or
`application/grpc+proto`, `+json`, ...), messages framed in the body as

    compressed flag (1 byte: 0 or 1) | length (4 bytes, big-endian) | message (length bytes)

and the outcome in `grpc-status` (a decimal code) and `grpc-message` (percent-encoded
UTF-8), sent in the trailers, or in the headers of a response that has nothing else (a
*trailers-only* response: HTTP 200, `content-type`, `grpc-status`, END_STREAM).

What splitter does with it (docs/configuration.md, section 14 of the contract):

- `grpc_status(fields)`: the code of a trailer (or trailers-only) list; `is_bad(code)` for
  the judge and the statistics: 2 UNKNOWN, 4 DEADLINE_EXCEEDED, 12 UNIMPLEMENTED,
  13 INTERNAL, 14 UNAVAILABLE, 15 DATA_LOSS. A code that is not a decimal from 0 to 16
  counts as UNKNOWN: bad, and it keeps the metric's `grpc_status` label to 17 values.
- `trailers_only(status, reason)`: what splitter answers when it fails a gRPC request
  itself: never a JSON body, which a gRPC client cannot read.
- The health check (`grpc.health.v1.Health/Check`, service ""): `HEALTH_REQUEST` is the
  request body, `read_health_response` reads the answer's body and `judge_health` turns a
  whole answer into the (up, what happened) of a probe, as `control.health.probe` does for
  HTTP. The protobuf is read by hand (three wire types and one field), bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BAD_STATUSES",
    "HEALTH_PATH",
    "HEALTH_REQUEST",
    "MAX_HEALTH_MESSAGE",
    "HealthAnswer",
    "decode_message",
    "encode_message",
    "failure_status",
    "grpc_status",
    "health_request_fields",
    "is_bad",
    "is_grpc",
    "judge_health",
    "read_health_response",
    "trailers_only",
]

Field = tuple[bytes, bytes]

OK: Final = 0
UNKNOWN: Final = 2
DEADLINE_EXCEEDED: Final = 4
UNIMPLEMENTED: Final = 12
UNAVAILABLE: Final = 14
CODE_NAMES: Final = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip
BAD_STATUSES: Final = frozenset({2, 4, 12, 13, 14, 15})

_MEDIA: Final = b"application/grpc"


def is_grpc(content_type: bytes | None) -> bool:
    """`application/grpc`, with a `+subtype` or parameters, in any case; gRPC-Web
    (`application/grpc-web...`) is plain HTTP to splitter."""
    if content_type is None:
        return False
    value = content_type.strip(b" \t").lower()
    if value[: len(_MEDIA)] != _MEDIA:
        return False
    rest = value[len(_MEDIA) :]
    return not rest or rest[:1] in (b"+", b";", b" ", b"\t")


def grpc_status(fields: Iterable[Field]) -> int:
    """The `grpc-status` of a trailer or trailers-only list; -1 when there is none."""
    for name, value in fields:
        if name == b"grpc-status":
            if 0 < len(value) <= 2 and value.isdigit() and int(value) < len(CODE_NAMES):
                return int(value)
            return UNKNOWN
    return -1


def is_bad(code: int) -> bool:
    return code in BAD_STATUSES


# grpc-message: UTF-8, then every byte outside %x20-%x7E, and "%", as %XX (upper case).
_PLAIN: Final = frozenset(range(0x20, 0x7F)) - {ord("%")}
_ESCAPED: Final = tuple(b"%%%02X" % byte for byte in range(256))


def encode_message(text: str) -> bytes:
    """`grpc-message`'s percent-encoding. A space at either end is encoded too: an HTTP/2
    field value may not start or end with one (RFC 9113 8.2.1)."""
    data = text.encode("utf-8")
    out = bytearray()
    last = len(data) - 1
    for i, byte in enumerate(data):
        if byte in _PLAIN and not (byte == 0x20 and (i == 0 or i == last)):
            out.append(byte)
        else:
            out += _ESCAPED[byte]
    return bytes(out)


def decode_message(value: bytes) -> str:
    """The text of a `grpc-message`; lenient as the spec asks: a `%` not followed by two
    hex digits stays as it is, bytes that are not UTF-8 are replaced."""
    out = bytearray()
    i = 0
    size = len(value)
    while i < size:
        byte = value[i]
        if byte == 0x25 and i + 2 < size and _is_hex(value[i + 1]) and _is_hex(value[i + 2]):
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(byte: int) -> bool:
    return byte in b"0123456789abcdefABCDEF"


def failure_status(http_status: int) -> int:
    """The gRPC code of an answer splitter gives itself: UNAVAILABLE for 502 and 503,
    DEADLINE_EXCEEDED for 504 (section 14); for the others, gRPC's own mapping of HTTP
    statuses (doc/http-grpc-status-mapping.md), with the limits' 413 and 431 as
    RESOURCE_EXHAUSTED, as gRPC answers a message over its size limit."""
    if http_status == 502 or http_status == 503:
        return UNAVAILABLE
    if http_status == 504 or http_status == 408:
        return DEADLINE_EXCEEDED
    if http_status == 413 or http_status == 431:
        return 8  # RESOURCE_EXHAUSTED
    return _HTTP_TO_GRPC.get(http_status, UNKNOWN)


_HTTP_TO_GRPC: Final = {400: 13, 401: 16, 403: 7, 404: UNIMPLEMENTED, 429: UNAVAILABLE}


def trailers_only(http_status: int, reason: str, request_id: bytes | None = None) -> list[Field]:
    """The trailers-only response for a gRPC request splitter fails itself: HTTP 200 (a
    gRPC client reads any other status as a transport failure), the code of
    `failure_status`, the reason as `grpc-message`. Sent as one HEADERS frame that ends
    the stream: never followed by an empty DATA frame."""
    fields = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"%d" % failure_status(http_status)),
        (b"grpc-message", encode_message(reason)),
    ]
    if request_id is not None:
        fields.append((b"x-request-id", request_id))
    return fields


# -- the health checking protocol (grpc/doc/health-checking.md) -----------------------------

HEALTH_PATH: Final = b"/grpc.health.v1.Health/Check"
# HealthCheckRequest{service: ""}: proto3 leaves a field at its default out, so the message
# is empty; framed: not compressed (0), length 0 (four zero bytes).
HEALTH_REQUEST: Final = b"\x00\x00\x00\x00\x00"
MAX_HEALTH_MESSAGE: Final = 1024  # a HealthCheckResponse is 2 bytes; a status message is small
SERVING_NAMES: Final = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
SERVING: Final = 1


def health_request_fields(authority: bytes, scheme: bytes = b"http") -> list[Field]:
    """The HEADERS of a health check (the body is HEALTH_REQUEST). `te: trailers` is what
    gRPC servers require to tell a gRPC client from a proxy that would drop trailers."""
    return [
        (b":method", b"POST"),
        (b":scheme", scheme),
        (b":path", HEALTH_PATH),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"user-agent", b"splitter-health"),
    ]


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """A HealthCheckResponse's status (0-3, or another int32 a newer server sends) when
    `problem` is empty; else what was wrong with the body (and `status` is -1)."""

    status: int
    problem: str = ""

    @property
    def serving(self) -> bool:
        return self.status == SERVING


def read_health_response(body: bytes, max_message: int = MAX_HEALTH_MESSAGE) -> HealthAnswer:
    """The status in a unary response body: exactly one length-prefixed message, not
    compressed (splitter offers no `grpc-accept-encoding`, so a server may not compress),
    at most `max_message` bytes, holding a HealthCheckResponse."""
    if len(body) < 5:
        return HealthAnswer(-1, "no message" if not body else "truncated message")
    flag = body[0]
    if flag == 1:
        return HealthAnswer(-1, "compressed message")
    if flag != 0:
        return HealthAnswer(-1, "malformed message frame")
    length = int.from_bytes(body[1:5], "big")
    if length > max_message:
        return HealthAnswer(-1, "message too large")
    if len(body) < 5 + length:
        return HealthAnswer(-1, "truncated message")
    if len(body) > 5 + length:
        return HealthAnswer(-1, "more than one message")
    return _health_status(body[5:])


def _health_status(message: bytes) -> HealthAnswer:
    """Field 1 (`status`, an enum: varint) of a HealthCheckResponse; unknown fields are
    skipped, the last `status` wins (protobuf's rules); absent is 0, UNKNOWN."""
    status = 0
    pos = 0
    size = len(message)
    while pos < size:
        key, pos = _varint(message, pos)
        if key < 0:
            return HealthAnswer(-1, "malformed protobuf")
        number, wire = key >> 3, key & 7
        if number == 0:
            return HealthAnswer(-1, "malformed protobuf")
        if wire == 0:
            value, pos = _varint(message, pos)
            if value < 0:
                return HealthAnswer(-1, "malformed protobuf")
            if number == 1:
                status = value & 0xFFFFFFFF  # an enum is an int32: protobuf truncates
                if status >= 1 << 31:
                    status -= 1 << 32
                continue
        elif number == 1:
            return HealthAnswer(-1, "malformed protobuf")  # status must be a varint
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(message, pos)
            if length < 0:
                return HealthAnswer(-1, "malformed protobuf")
            pos += length
        else:  # 3 and 4 (groups, long deprecated), 6 and 7 (none)
            return HealthAnswer(-1, "malformed protobuf")
        if pos > size:
            return HealthAnswer(-1, "malformed protobuf")
    return HealthAnswer(status)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint at `pos` (at most 10 bytes): (value, next position), or (-1, pos)."""
    value = 0
    for i in range(10):
        if pos + i >= len(data):
            return -1, pos
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value & ((1 << 64) - 1), pos + i + 1
    return -1, pos


def judge_health(
    status: int, headers: Iterable[Field], body: bytes, trailers: Iterable[Field]
) -> tuple[bool, str]:
    """One health check's answer as a probe result: (up, what happened). Up only for HTTP
    200, a gRPC content type, `grpc-status` 0 and SERVING."""
    what = "grpc.health.v1.Health/Check"
    if status != 200:
        return False, f"{what} answered HTTP {status}"
    headers = list(headers)
    content_type = next((v for n, v in headers if n == b"content-type"), None)
    if not is_grpc(content_type):
        return False, f"{what}: not a gRPC answer; is the pool's protocol right?"
    code = grpc_status(trailers)
    if code < 0:
        code = grpc_status(headers)  # a trailers-only answer
    if code < 0:
        return False, f"{what}: no grpc-status"
    if code != OK:
        text = f"{what} answered {CODE_NAMES[code]} ({code})"
        if code == UNIMPLEMENTED:
            text += ": the backend does not serve the health checking protocol"
        return False, text
    answer = read_health_response(body)
    if answer.problem:
        return False, f"{what}: {answer.problem}"
    name = SERVING_NAMES[answer.status] if 0 <= answer.status < 4 else str(answer.status)
    return answer.serving, f"{what} answered {name}"

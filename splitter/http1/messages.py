"""Bytes the data path writes: status lines, chunk framing, error answers, request ids.

Everything is computed once at import where it can be: the request path joins pre-built
fragments and never formats what it can take from a table.
"""

from __future__ import annotations

import binascii
import random
from http import HTTPStatus
from typing import Final

import orjson

_random_bits = random.Random().getrandbits  # its own generator, seeded from os.urandom

CRLF: Final = b"\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

_STATUS_LINES: Final[dict[int, bytes]] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def status_line(status: int, reason: bytes = b"") -> bytes:
    """The status line towards a client, keeping the backend's reason phrase when given."""
    if reason:
        return b"HTTP/1.1 %d %s\r\n" % (status, reason)
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def chunk_header(size: int) -> bytes:
    return b"%x\r\n" % size


def new_request_id() -> bytes:
    """32 hex digits, like a UUID without dashes. An id needs to be unique, not secret:
    `random` costs a fraction of a getrandom() system call per request."""
    return binascii.b2a_hex(_random_bits(128).to_bytes(16, "little"))


_VISIBLE_ASCII: Final = bytes(range(0x21, 0x7F))


def valid_request_id(value: bytes) -> bool:
    """A client's X-Request-Id is passed on when it is short and printable ASCII."""
    return 0 < len(value) <= 200 and not value.translate(None, _VISIBLE_ASCII)


ERROR_MESSAGES: Final = {
    400: "bad request",
    404: "no route",  # the proxy answers 404 only when no route takes a request
    408: "request timeout",
    413: "request body too large",
    414: "request line too long",
    417: "expectation failed",
    431: "request header fields too large",
    501: "not implemented",
    502: "bad gateway",
    503: "no healthy backend",
    504: "gateway timeout",
    505: "http version not supported",
}


def error_body(status: int, request_id: bytes | None, detail: dict[str, str] | None) -> bytes:
    """The JSON body of splitter's own error answers (HTTP/1.1 and HTTP/2 alike)."""
    body_obj: dict[str, object] = {"error": ERROR_MESSAGES.get(status, "error"), "status": status}
    if detail:
        body_obj.update(detail)
    if request_id is not None:
        body_obj["request_id"] = request_id.decode("ascii", "replace")
    body: bytes = orjson.dumps(body_obj)
    return body + b"\n"


def error_response(
    status: int,
    request_id: bytes | None,
    close: bool,
    detail: dict[str, str] | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete JSON error response. The body never echoes anything the client sent."""
    body = error_body(status, request_id, detail)
    parts = [
        status_line(status),
        b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\n",
    ]
    if request_id is not None:
        parts.append(b"X-Request-Id: " + request_id + CRLF)
    parts.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)

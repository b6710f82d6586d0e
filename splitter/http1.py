"""HTTP/1.1 bytes the data path writes, and the header rules it applies.

Everything here works on bytes and is computed once at import: the request path looks
names up in frozen sets and dicts and joins pre-built fragments, it never formats a
header it can take from a table.
"""

from __future__ import annotations

import random
from http import HTTPStatus

import orjson

_random_bits = random.Random().getrandbits  # its own generator, seeded from os.urandom

# Hop-by-hop headers (RFC 9110 7.6.1) plus the ones splitter sets itself; lower-case.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

# Response headers splitter looks at; every other one is passed on as it came.
R_HOP, R_LENGTH, R_TRANSFER_ENCODING, R_CONNECTION, R_UPGRADE = range(5)
RESPONSE_SPECIAL = dict.fromkeys(HOP_BY_HOP, R_HOP) | {
    b"content-length": R_LENGTH,
    b"transfer-encoding": R_TRANSFER_ENCODING,
    b"connection": R_CONNECTION,
    b"upgrade": R_UPGRADE,
    b"x-request-id": R_HOP,  # the client gets the id splitter used
}

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def status_line(status: int, reason: bytes = b"") -> bytes:
    """The status line for a response to the client, keeping the backend's reason phrase."""
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
    return b"%032x" % _random_bits(128)


def valid_request_id(value: bytes) -> bool:
    """A client's X-Request-Id is passed on when it is short and printable ASCII."""
    return 0 < len(value) <= 200 and not value.translate(None, _VISIBLE_ASCII)


_VISIBLE_ASCII = bytes(range(0x21, 0x7F))


ERROR_MESSAGES = {
    400: "bad request",
    408: "request timeout",
    413: "request body too large",
    414: "request line too long",
    431: "request header fields too large",
    501: "not implemented",
    502: "bad gateway",
    503: "no healthy backend",
    504: "gateway timeout",
}


def error_response(
    status: int,
    request_id: bytes | None,
    close: bool,
    detail: dict[str, str] | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete JSON error response. The body never echoes anything the client sent."""
    body_obj: dict[str, object] = {"error": ERROR_MESSAGES.get(status, "error"), "status": status}
    if detail:
        body_obj.update(detail)
    if request_id is not None:
        body_obj["request_id"] = request_id.decode("ascii", "replace")
    body = orjson.dumps(body_obj) + b"\n"
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


# What a Host value may hold: a reg-name or IP literal and a port (RFC 3986 3.2.2).
HOST_CHARS = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:[]"
)


def valid_other_target(target: bytes) -> bool:
    """A request target that is not origin-form: `*`, or absolute-form with a host."""
    if target == b"*":
        return True
    scheme, sep, rest = target.partition(b"://")
    if not sep or not scheme.isalpha():
        return False
    authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].rpartition(b"@")[2]
    return bool(authority) and not authority.startswith(b":")


def connection_tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def is_token(value: bytes) -> bool:
    """RFC 9110 token characters (header names, methods)."""
    return bool(value) and not value.translate(None, _TCHAR)


_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

"""HTTP/2 header lists: a stream's request checked into a `RequestHead`, a response back.

Theory of operation
-------------------
The `h2` library hands a stream's header list after HPACK, as (name, value) byte pairs in
the order they came. `request_head` checks it once, in one pass, and fills the same
`splitter.http1.request.RequestHead` the HTTP/1.1 reader fills, so that the exchange and
the policy serve a stream exactly as they serve an HTTP/1.1 request (`version` is "2").
It never raises: any list gives a `StreamRequest` or a `RequestRefused` with the status
HTTP/1.1 would answer.

    request_head(fields, end_stream, settings, tls) -> StreamRequest | RequestRefused
    response_fields(status, lines)                  -> the h2 list of an HTTP/1.1 head
    check_trailers(fields, limits)                  -> the trailers to pass on, or why not

Rules (RFC 9113 8.2 and 8.3, and docs/configuration.md#proxying for what HTTP/1.1 does):

- Pseudo-header fields come first, each at most once: `:method`, `:scheme` (`http` or
  `https`) and `:path` are required; `:authority` is the Host (a `host` field may stand in
  for it, and when both are sent they must agree). Any other pseudo-header (`:status`,
  `:protocol`, an unknown one) or one after a regular field is malformed: 400. CONNECT,
  extended or not, is a 501, as in HTTP/1.1.
- `:path` is origin-form (starts with `/`), or `*` for OPTIONS; never empty.
- Names are tokens in lower case; values hold no control byte but HTAB and neither start
  nor end with a space or HTAB (RFC 9113 8.2.1; the HTTP/1.1 reader refuses the same
  control bytes, and a value goes on as an HTTP/1.1 line when the backend speaks it).
- The connection-specific fields (`connection`, `keep-alive`, `proxy-connection`,
  `transfer-encoding`, `upgrade`) are malformed; `te` may only say `trailers`.
  `http2-settings` and the other hop-by-hop fields are dropped as HTTP/1.1 drops them.
- Several `cookie` fields (crumbs) are joined with "; " into one Cookie line (RFC 9113
  8.2.3), counted as one field; `splitter_admin` is taken out of it as in HTTP/1.1.
- Section 4a's limits with HTTP/1.1's statuses: the request line (`:method` SP `:path`)
  over `max_request_line` is 414; more fields than `max_header_count` (`:authority`
  counting as Host) or more bytes than `max_header_bytes` (name + value + 4 per field, as
  the HTTP/1.1 line would take) is 431.
- `content-length` as in HTTP/1.1 (one, digits, at most 2^63 - 1; over `max_body`: 413),
  and 0 when the HEADERS frame ends the stream (a length then is malformed). A body
  without a length is sent to an HTTP/1.1 backend chunked.
- X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, X-Splitter-Shadow,
  the override header and the segments' headers are taken out or kept aside exactly as
  `RequestReader` does; `:scheme https` counts as X-Forwarded-Proto: https does (the
  sticky cookie gets `Secure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from splitter.config import ADMIN_COOKIE, Limits
from splitter.errors import RequestRefused
from splitter.http1.messages import CRLF, valid_request_id
from splitter.http1.request import (
    HOP_BY_HOP,
    HOST_CHARS,
    MAX_CONTENT_LENGTH,
    ReadSettings,
    RequestHead,
    without_admin_cookie,
)

__all__ = [
    "CONNECTION_SPECIFIC",
    "Field",
    "StreamRequest",
    "check_trailers",
    "request_head",
    "response_fields",
]

Field = tuple[bytes, bytes]

# RFC 9113 8.2.2: fields that make a message malformed in HTTP/2.
CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Dropped from what is sent on, as the HTTP/1.1 reader and response reader drop them.
_DROPPED: Final = (HOP_BY_HOP - CONNECTION_SPECIFIC - {b"te"}) | {
    b"http2-settings",
    b"x-forwarded-host",  # replaced by splitter's own
    b"x-splitter-shadow",  # marks splitter's shadow copies (docs/shadow.md)
}

_TOKEN: Final = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN_ANY_CASE: Final = _TOKEN + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Control bytes a value may not hold: all but HTAB (and DEL).
_CONTROL: Final = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
_VALUE_OK: Final = bytes(b for b in range(256) if b not in _CONTROL)
# What a :path may hold: anything visible (obs-text too, as llhttp lets through).
_PATH_OK: Final = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_OWS: Final = b" \t"
_ADMIN_COOKIE: Final = ADMIN_COOKIE.encode()
_PSEUDO: Final = frozenset({b":method", b":scheme", b":path", b":authority"})


class StreamRequest:
    """One stream's request: the head the exchange serves, and what only HTTP/2 carries."""

    __slots__ = ("content_type", "head", "te_trailers")

    def __init__(self, head: RequestHead, te_trailers: bool, content_type: bytes | None) -> None:
        self.head = head
        self.te_trailers = te_trailers  # `te: trailers` came: passed to an h2 backend
        self.content_type = content_type  # for gRPC (splitter.http2.grpc.is_grpc)


def _refused(status: int, reason: str) -> RequestRefused:
    return RequestRefused(status, reason)


def _bad_value(value: bytes) -> bool:
    """A control byte (HTAB aside), or a space or HTAB at either end (RFC 9113 8.2.1)."""
    if value.translate(None, _VALUE_OK):
        return True
    return bool(value) and (value[0] in _OWS or value[-1] in _OWS)


def request_head(
    fields: Sequence[Field], end_stream: bool, settings: ReadSettings, tls: bool
) -> StreamRequest | RequestRefused:
    """A stream's request head, checked (see the module docstring); never raises."""
    limits = settings.limits
    method = scheme = path = authority = None
    host: bytes | None = None
    crumbs: list[bytes] | None = None
    te_trailers = protocol = False
    content_type: bytes | None = None
    head = RequestHead()
    head.version = "2"
    count = 0
    size = 0
    regular = False  # a regular field came: no pseudo-header may follow
    for name, value in fields:
        if _bad_value(value):
            return _refused(400, "invalid header value")
        if name[:1] == b":":
            if regular:
                return _refused(400, "pseudo-header after a regular field")
            if name not in _PSEUDO:
                if name != b":protocol":
                    return _refused(400, "unknown pseudo-header")
                protocol = True  # extended CONNECT (RFC 8441), which splitter never offers
                continue
            if name == b":method":
                if method is not None:
                    return _refused(400, "duplicate :method")
                method = value
            elif name == b":scheme":
                if scheme is not None:
                    return _refused(400, "duplicate :scheme")
                scheme = value
            elif name == b":path":
                if path is not None:
                    return _refused(400, "duplicate :path")
                path = value
            else:
                if authority is not None:
                    return _refused(400, "duplicate :authority")
                authority = value
                count += 1
                size += len(value) + 8  # as "host: " + value + CRLF
            continue
        regular = True
        if not name or name.translate(None, _TOKEN):
            return _refused(400, "invalid header name")
        if name == b"cookie":
            size += len(value) + 2  # one line: "; " between crumbs
            if crumbs is None:
                crumbs = [value]
                count += 1
                size += 8  # "cookie: " and CRLF, once
            else:
                crumbs.append(value)
        else:
            count += 1
            size += len(name) + len(value) + 4
        if count > limits.max_header_count:
            return _refused(431, "too many header fields")
        if size > limits.max_header_bytes:
            return _refused(431, "header fields too large")
        if name == b"cookie":
            continue
        if name in CONNECTION_SPECIFIC:
            return _refused(400, "connection-specific header field")
        if name == b"te":
            if value.lower() != b"trailers":
                return _refused(400, "te other than trailers")
            te_trailers = True
        elif name in _DROPPED:
            pass
        elif name == b"host":
            if host is not None:
                return _refused(400, "duplicate Host")
            host = value
        elif name == b"content-length":
            if head.content_length >= 0 or not value.isdigit() or len(value) > 19:
                return _refused(400, "ambiguous Content-Length")
            length = int(value)
            if length > MAX_CONTENT_LENGTH:
                return _refused(400, "Content-Length too large")
            head.content_length = length
        elif name == b"expect":
            if value.lower() != b"100-continue":
                return _refused(417, "unsupported Expect")
            head.expect_continue = True
        elif name == b"x-forwarded-for":
            head.xff = value if head.xff is None else head.xff + b", " + value
        elif name == b"x-forwarded-proto":
            if value.lower() == b"https":
                head.https = True
        elif name == b"x-request-id":
            if head.request_id is None and valid_request_id(value):
                head.request_id = value
        else:
            if name == b"content-type" and content_type is None:
                content_type = value
            if name == settings.override:
                head.override = value.strip()
            if name in settings.segment_headers:
                _keep_segment_value(head, name, value)
            head.lines.append(name + b": " + value + CRLF)
    if method == b"CONNECT":
        return _refused(501, "CONNECT")
    if protocol:
        return _refused(400, ":protocol without extended CONNECT")
    if method is None or scheme is None or path is None:
        return _refused(400, "missing pseudo-header")
    if size > limits.max_header_bytes:  # an :authority alone
        return _refused(431, "header fields too large")
    return _finish(head, method, scheme, path, authority, host, crumbs, end_stream, limits, tls,
                   te_trailers, content_type)  # fmt: skip


def _finish(
    head: RequestHead,
    method: bytes,
    scheme: bytes,
    path: bytes,
    authority: bytes | None,
    host: bytes | None,
    crumbs: list[bytes] | None,
    end_stream: bool,
    limits: Limits,
    tls: bool,
    te_trailers: bool,
    content_type: bytes | None,
) -> StreamRequest | RequestRefused:
    """The checks that need the whole list, and the head's last fields."""
    if not method or method.translate(None, _TOKEN_ANY_CASE):
        return _refused(400, "invalid method")
    if len(method) + 1 + len(path) > limits.max_request_line:
        return _refused(414, "request line too long")
    if scheme != b"http" and scheme != b"https":
        return _refused(400, "invalid :scheme")
    if not path or path.translate(None, _PATH_OK):
        return _refused(400, "invalid :path")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        return _refused(400, "invalid :path")
    if authority is not None:
        if not authority or authority.translate(None, HOST_CHARS):
            return _refused(400, "invalid :authority")
        if host is not None and host.lower() != authority.lower():
            return _refused(400, "Host differs from :authority")
        host = authority
    elif host is None:
        return _refused(400, "missing :authority")
    elif not host or host.translate(None, HOST_CHARS):
        return _refused(400, "invalid Host")
    if end_stream and head.content_length > 0:
        return _refused(400, "Content-Length with no body")
    max_body = limits.max_body
    if max_body is not None and head.content_length > max_body:
        return _refused(413, "body over max_body")
    if crumbs is not None:
        cookie = crumbs[0] if len(crumbs) == 1 else b"; ".join(crumbs)
        head.cookie = cookie
        if _ADMIN_COOKIE in cookie:
            cookie = without_admin_cookie(cookie)
        if cookie:
            head.lines.append(b"cookie: " + cookie + CRLF)
    head.method = method
    head.target = path
    head.host = host
    if scheme == b"https":
        head.https = True
    if tls:
        head.tls = head.https = True
    if not end_stream and head.content_length < 0:
        head.chunked = True  # a body of unknown length: chunked towards an HTTP/1.1 backend
    head.te_trailers = te_trailers
    return StreamRequest(head, te_trailers, content_type)


def _keep_segment_value(head: RequestHead, name: bytes, value: bytes) -> None:
    """The first value of a header a segment reads (as the HTTP/1.1 reader keeps it)."""
    values = head.segment_values
    if values is None:
        head.segment_values = {name: value.strip()}
    elif name not in values:
        values[name] = value.strip()


def check_trailers(fields: Sequence[Field], limits: Limits) -> list[Field] | str:
    """Trailers to pass on between HTTP/2 peers (section 14), or why they cannot pass.

    No pseudo-header (RFC 9113 8.1), the same names and values as a head's, no
    connection-specific field; hop-by-hop fields dropped; counted against the header
    limits, as trailers are in HTTP/1.1."""
    kept: list[Field] = []
    size = 0
    if len(fields) > limits.max_header_count:
        return "too many trailer fields"
    for name, value in fields:
        size += len(name) + len(value) + 4
        if size > limits.max_header_bytes:
            return "trailer fields too large"
        if not name or name.translate(None, _TOKEN):
            return "invalid trailer name"
        if _bad_value(value):
            return "invalid trailer value"
        if name in CONNECTION_SPECIFIC:
            return "connection-specific trailer field"
        if name in HOP_BY_HOP or name == b"http2-settings":
            continue
        kept.append((name, value))
    return kept


_STATUS: Final = {status: b"%d" % status for status in range(100, 1000)}


def response_fields(status: int, lines: bytes) -> list[Field]:
    """An HTTP/1.1 response head as an h2 header list: `:status` first, then each header
    line of `lines` (as `ResponseHead.fields` holds them, CRLF-ended; the caller appends
    Set-Cookie and X-Request-Id the same way) with its name in lower case and its value
    without surrounding whitespace; hop-by-hop and connection-specific fields dropped,
    Content-Length kept. The response reader already refused any line that is not a
    token, a colon and a value without control bytes."""
    out: list[Field] = [(b":status", _STATUS.get(status) or b"%d" % status)]
    start = 0
    end = len(lines)
    while start < end:
        stop = lines.find(b"\r\n", start)
        if stop < 0:
            stop = end
        colon = lines.find(b":", start, stop)
        if colon > start:
            name = lines[start:colon].lower()
            if name not in HOP_BY_HOP and name != b"http2-settings":
                out.append((name, lines[colon + 1 : stop].strip(_OWS)))
        start = stop + 2
    return out

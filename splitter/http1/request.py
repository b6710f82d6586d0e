"""Requests from clients: llhttp parses, this module decides what may pass and what is sent on.

Theory of operation
-------------------
`RequestReader` owns one connection's llhttp parser (httptools) and turns its callbacks into
`RequestHead`s and body events for a `RequestSink` (the downstream protocol). It is bytes
only: no sockets, no clock, no asyncio.

    feed(data) -> sink.on_head_start()          first byte of a head (arms its deadline)
               -> sink.on_request(head)          a complete head that passed every rule
               -> sink.on_request_body(data)     body bytes, chunk framing removed
               -> sink.on_request_end()          the body is complete
               -> sink.on_refused(error)         refused (RequestRefused): nothing more is read
    returns the offset of the first tunnel byte after an Upgrade request, else -1

Rules (docs/configuration.md#proxying and docs/configuration.md#limits-and-timeouts):

- Limits: the request line (`max_request_line`, 414), header fields (`max_header_count`,
  `max_header_bytes`, 431), a head still incomplete (its bytes so far, so that httptools
  never buffers more than the limits allow for a field in progress), and the body
  (`max_body`, 413, before a backend is asked when Content-Length says so).
- Chunked trailers are counted against the header limits, then dropped: they never become
  headers, never reach a backend and never affect routing or hop-by-hop handling. Bytes that
  make no progress (a trailer section, chunk extensions) are bounded the same way.
- Ambiguous framing is refused: Content-Length with Transfer-Encoding, a second or signed
  Content-Length, one above 2^63 - 1, a Transfer-Encoding other than `chunked`.
- An absolute-form target (`GET http://host/path`) is sent on in origin form, with the
  target's authority as Host (RFC 9112 3.2.2); userinfo or a scheme other than http(s) is a
  400; CONNECT is a 501.
- Hop-by-hop headers, and the headers named by `Connection`, are not sent on; the
  X-Forwarded-* headers and X-Request-Id are taken out here and written by the policy;
  X-Splitter-Shadow, which marks splitter's shadow copies, is taken out of every request.
- The override header's value, and the first value of each header a route's segments read
  (`ReadSettings.segment_headers`, splitter.routetable), are kept on the head, stripped;
  the headers themselves are sent on unchanged. Only headers splitter does not handle
  itself can be read this way: never Host, Cookie, the framing and hop-by-hop headers,
  X-Forwarded-* or X-Request-Id: a segment on one of those would never match, so the
  config must not have one.
- The dashboard's session cookie (`splitter_admin`) is taken out of every Cookie header
  sent on (docs/admin-api.md: browsers scope cookies by host, not port, so a backend on the
  admin listener's host would get it); the other cookies pass byte for byte, and a Cookie
  header left empty is dropped. Only a header holding the name is taken apart.
"""

from __future__ import annotations

from typing import Final, Protocol

import httptools

from splitter.config import ADMIN_COOKIE, Limits
from splitter.errors import RequestRefused
from splitter.http1.messages import CRLF, valid_request_id

__all__ = ["HOP_BY_HOP", "ReadSettings", "RequestHead", "RequestReader", "RequestSink"]

# Hop-by-hop headers (RFC 9110 7.6.1), lower-case; `proxy-connection` is an old synonym.
HOP_BY_HOP: Final = frozenset(
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

# Request headers read rather than passed on as they came.
_HOST, _LENGTH, _TE, _CONNECTION, _EXPECT, _XFF, _XFP, _REQUEST_ID, _COOKIE, _UPGRADE, _DROP = (
    range(11)
)
_SPECIAL: Final[dict[bytes, int]] = dict.fromkeys(HOP_BY_HOP, _DROP) | {
    b"host": _HOST,
    b"content-length": _LENGTH,
    b"transfer-encoding": _TE,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _DROP,  # replaced by splitter's own
    # Marks splitter's shadow copies (docs/shadow.md); a client's own would tell a backend
    # that a real request is a copy whose side effects it may skip.
    b"x-splitter-shadow": _DROP,
    b"x-request-id": _REQUEST_ID,
    b"cookie": _COOKIE,
    b"upgrade": _UPGRADE,
}
_CONNECTION_OPTIONS: Final = frozenset({b"keep-alive", b"close", b"upgrade"})
MAX_CONTENT_LENGTH: Final = 2**63 - 1
_ADMIN_COOKIE: Final = ADMIN_COOKIE.encode()

# What a Host value may hold: a reg-name or IP literal and a port (RFC 3986 3.2.2).
HOST_CHARS: Final = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:[]"
)


class RequestHead:
    """One request as it will be sent on: parsed, checked, hop-by-hop headers removed."""

    def __init__(self) -> None:
        self.method = b""
        self.target = b""  # origin-form (or `*`) once the head is complete
        self.version = "1.1"
        self.host: bytes | None = None  # what Host and X-Forwarded-Host will say
        self.xff: bytes | None = None  # X-Forwarded-For as the client sent it
        self.request_id: bytes | None = None
        self.cookie: bytes | None = None
        self.override: bytes | None = None  # the override header's value, stripped
        # The first value of each header in ReadSettings.segment_headers, stripped, by its
        # lower-case name; None when the request has none of them.
        self.segment_values: dict[bytes, bytes] | None = None
        self.https = False  # over TLS, or the client said X-Forwarded-Proto: https
        self.tls = False  # it came over TLS
        self.upgrade = False
        self.upgrade_value = b""
        self.expect_continue = False
        self.chunked = False
        self.content_length = -1
        self.keep_alive = True
        self.te_trailers = False  # HTTP/2: the client sent `te: trailers` (passed on to h2)
        self.lines: list[bytes] = []  # header lines to send on, each ending in CRLF
        self.connection_names: list[bytes] | None = None  # headers named by Connection

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0


class ReadSettings:
    """What the readers of every connection consult; the listener updates it in place."""

    def __init__(
        self,
        limits: Limits,
        override: bytes | None,
        segment_headers: frozenset[bytes] = frozenset(),
    ) -> None:
        self.limits = limits
        self.override = override  # lower-case name of the override header, or None
        # Lower-case names of the headers the routes' segments read (RouteTable.
        # segment_headers): their first values are kept in RequestHead.segment_values.
        self.segment_headers = segment_headers


class RequestSink(Protocol):
    def on_head_start(self) -> None: ...
    def on_request(self, head: RequestHead) -> None: ...
    def on_request_body(self, data: bytes) -> None: ...
    def on_request_end(self) -> None: ...
    def on_refused(self, error: RequestRefused) -> None: ...


class _Nobody:
    """The sink of a closed reader: it hears nothing more."""

    def on_head_start(self) -> None:
        pass

    def on_request(self, head: RequestHead) -> None:
        pass

    def on_request_body(self, data: bytes) -> None:
        pass

    def on_request_end(self) -> None:
        pass

    def on_refused(self, error: RequestRefused) -> None:
        pass


_NOBODY: Final = _Nobody()


class RequestReader:
    """The llhttp callbacks of one client connection (see the module docstring)."""

    def __init__(self, settings: ReadSettings, sink: RequestSink) -> None:
        self.settings = settings
        self.sink: RequestSink = sink
        # The parser holds the reader's callbacks, the reader its sink: `close` breaks
        # both cycles, so that a closed connection is freed as soon as it is dropped.
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.head: RequestHead | None = None  # the request being read
        self.in_head = False
        self.in_body = False
        self.stuck = 0  # bytes fed without progress (see `feed`)
        self.progress = False  # a callback made progress during this feed
        self.fields = 0  # header (or trailer) fields of the section being read
        self.field_bytes = 0
        self.body_received = 0
        self.done = False  # refused, or upgraded: the parser reads nothing more

    def feed(self, data: bytes) -> int:
        """Parse `data`; the offset where tunnel bytes start after an upgrade, else -1."""
        parser = self.parser
        if self.done or parser is None:
            return -1
        self.progress = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.done = True
            return int(upgrade.args[0])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            error = cause if isinstance(cause, RequestRefused) else None
            if error is None:  # a bug of ours: refuse generically, and let the log show it
                raise
            self._refuse(error)
            return -1
        except httptools.HttpParserError as exc:
            self._refuse(RequestRefused(400, _parser_reason(exc)))
            return -1
        if self.in_head or self.in_body:
            # A field in progress is buffered by httptools: bound the bytes that made no
            # progress (no head, field or body bytes completed), a read at most over the limit.
            if self.progress:
                self.stuck = 0
            else:
                self.stuck += len(data)
                limits = self.settings.limits
                if self.stuck > limits.max_header_bytes + limits.max_request_line:
                    head = self.head
                    in_line = self.in_head and head is not None and not head.target
                    self._refuse(RequestRefused(414 if in_line else 431, "head too large"))
            self.progress = False
        return -1

    def close(self) -> None:
        """The connection is gone: read nothing more, and let go of the parser and the sink
        (the parser holds this reader's methods and the sink holds this reader, cycles
        that only the garbage collector would otherwise free, long after the burst of
        connections that made them)."""
        self.done = True
        self.in_head = self.in_body = False
        self.head = None
        self.parser = None
        self.sink = _NOBODY

    def _refuse(self, error: RequestRefused) -> None:
        self.done = True
        self.in_head = self.in_body = False
        self.sink.on_refused(error)

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.progress = True
        self.head = RequestHead()
        self.in_head = True
        self.fields = 0
        self.field_bytes = 0
        self.body_received = 0
        self.sink.on_head_start()

    def on_url(self, url: bytes) -> None:
        head = self.head
        assert head is not None
        head.target += url
        if len(head.target) > self.settings.limits.max_request_line:
            raise RequestRefused(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.progress = True
        self.fields += 1
        self.field_bytes += len(name) + len(value) + 4
        limits = self.settings.limits
        if self.fields > limits.max_header_count:
            raise RequestRefused(431, "too many header fields")
        if self.field_bytes > limits.max_header_bytes:
            raise RequestRefused(431, "header fields too large")
        if self.in_body:
            return  # a chunked trailer field: counted, then dropped
        head = self.head
        assert head is not None
        lname = name.lower()
        kind = _SPECIAL.get(lname)
        if kind is None:
            if lname == self.settings.override:
                head.override = value.strip()
            if lname in self.settings.segment_headers:
                _keep_segment_value(head, lname, value)
            head.lines.append(name + b": " + value + CRLF)
        elif kind != _DROP:
            _special(head, kind, name, value)

    def on_headers_complete(self) -> None:
        head = self.head
        parser = self.parser
        assert head is not None and parser is not None
        self.in_head = False
        self.progress = True
        head.method = parser.get_method()
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive() and head.version == "1.1"
        head.upgrade = parser.should_upgrade()
        _check(head, self.settings.limits)
        if head.connection_names:
            drop = set(head.connection_names)
            head.lines = [h for h in head.lines if h.split(b":", 1)[0].lower() not in drop]
        if head.has_body and not head.upgrade:
            self.in_body = True
            self.fields = 0  # the trailer section gets the header limits afresh
            self.field_bytes = 0
        self.sink.on_request(head)

    def on_body(self, body: bytes) -> None:
        self.progress = True
        self.body_received += len(body)
        max_body = self.settings.limits.max_body
        if max_body is not None and self.body_received > max_body:
            raise RequestRefused(413, "body over max_body")
        self.sink.on_request_body(body)

    def on_chunk_header(self) -> None:
        self.progress = True

    def on_message_complete(self) -> None:
        self.progress = True
        head = self.head
        self.head = None
        self.in_body = False
        if head is not None and head.upgrade:
            return  # llhttp stops with HttpParserUpgrade right after this
        self.sink.on_request_end()


def _keep_segment_value(head: RequestHead, lname: bytes, value: bytes) -> None:
    """The first value of a header a segment reads; a later one is ignored."""
    values = head.segment_values
    if values is None:
        head.segment_values = {lname: value.strip()}
    elif lname not in values:
        values[lname] = value.strip()


def _special(head: RequestHead, kind: int, name: bytes, value: bytes) -> None:
    if kind == _HOST:
        if head.host is not None:
            raise RequestRefused(400, "duplicate Host")
        if value.translate(None, HOST_CHARS):
            raise RequestRefused(400, "invalid Host")
        head.host = value
    elif kind == _LENGTH:
        if head.content_length >= 0 or not value.isdigit() or len(value) > 19:
            raise RequestRefused(400, "ambiguous Content-Length")
        length = int(value)
        if length > MAX_CONTENT_LENGTH:
            raise RequestRefused(400, "Content-Length too large")
        head.content_length = length
    elif kind == _TE:
        if head.chunked:
            raise RequestRefused(400, "Transfer-Encoding twice")
        if value.strip().lower() != b"chunked":
            raise RequestRefused(501, "Transfer-Encoding")
        head.chunked = True
    elif kind == _CONNECTION:
        # keep-alive, close and upgrade are read from the parser; any other token names a
        # header that is hop-by-hop for this message.
        for token in value.split(b","):
            token = token.strip().lower()
            if token and token not in _CONNECTION_OPTIONS:
                if head.connection_names is None:
                    head.connection_names = []
                head.connection_names.append(token)
    elif kind == _EXPECT:
        if value.strip().lower() != b"100-continue":
            raise RequestRefused(417, "unsupported Expect")
        head.expect_continue = True
    elif kind == _XFF:
        head.xff = value if head.xff is None else head.xff + b", " + value
    elif kind == _XFP:
        if value.strip().lower() == b"https":
            head.https = True
    elif kind == _REQUEST_ID:
        if head.request_id is None and valid_request_id(value):
            head.request_id = value
    elif kind == _COOKIE:
        head.cookie = value if head.cookie is None else head.cookie + b"; " + value
        if _ADMIN_COOKIE in value:  # rare: only then is the header taken apart
            value = without_admin_cookie(value)
            if not value:
                return
        head.lines.append(name + b": " + value + CRLF)
    elif kind == _UPGRADE:
        head.upgrade_value = value


def without_admin_cookie(value: bytes) -> bytes:
    """A Cookie header's value without the `splitter_admin` pairs; every other pair as it
    came, the separators between them included (unchanged when there is none to take)."""
    kept = [p for p in value.split(b";") if p.split(b"=", 1)[0].strip(b" \t") != _ADMIN_COOKIE]
    return b";".join(kept).lstrip(b" \t")


def _check(head: RequestHead, limits: Limits) -> None:
    """The rules a complete head must pass; RequestRefused when it does not."""
    if head.version != "1.1" and head.version != "1.0":
        raise RequestRefused(505, "HTTP version")
    if head.host is None and head.version == "1.1":
        raise RequestRefused(400, "missing Host")
    if head.chunked and head.content_length >= 0:
        raise RequestRefused(400, "Content-Length with Transfer-Encoding")
    if head.method == b"CONNECT":
        raise RequestRefused(501, "CONNECT")
    target = head.target
    if target[:1] != b"/" and target != b"*":
        _absolute_form(head)
    max_body = limits.max_body
    if max_body is not None and head.content_length > max_body:
        raise RequestRefused(413, "body over max_body")
    if head.upgrade and head.has_body:
        raise RequestRefused(400, "upgrade with a body")


def _absolute_form(head: RequestHead) -> None:
    """`http://host:port/path?q` -> target `/path?q`, Host `host:port` (RFC 9112 3.2.2)."""
    scheme, sep, rest = head.target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise RequestRefused(400, "invalid request target")
    end = len(rest)
    for stop in (b"/", b"?", b"#"):
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority = rest[:end]
    if not authority or b"@" in authority or authority.startswith(b":"):
        raise RequestRefused(400, "invalid request target")
    if authority.translate(None, HOST_CHARS):
        raise RequestRefused(400, "invalid request target")
    path = rest[end:]
    if path[:1] == b"#":
        raise RequestRefused(400, "invalid request target")
    head.target = path if path[:1] == b"/" else b"/" + path
    head.host = authority


def _parser_reason(exc: httptools.HttpParserError) -> str:
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return "invalid method"
    if isinstance(exc, httptools.HttpParserInvalidURLError):
        return "invalid request target"
    return "malformed request"

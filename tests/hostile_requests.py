"""A corpus of malformed or ambiguous raw HTTP/1.1 requests that a proxy must refuse.

Each `Hostile` case is the exact bytes to send, the statuses that are a right answer, and
a marker (unique per case) that the request carries in its target and, where the case
allows, in a header value: the marker must never come back in the answer, never reach a
backend and never appear in splitter's log.

The classes are the published request-smuggling and parser-differential ones (RFC 9112
sections 2.2, 5, 6, 7; PortSwigger's "HTTP request smuggling"; the "HTTP Garden" and
"TE.0"/"chunk extension" work): CL+TE, duplicate and signed Content-Length, obfuscated
Transfer-Encoding, bad chunk sizes and extensions, obs-fold, whitespace before the colon,
bare CR and LF, NUL and control bytes, invalid methods and versions, oversized heads,
absolute-form oddities, and the Host header rules of RFC 9112 3.2.

Only requests for which a refusal is clearly right are here: things llhttp may accept
safely (a lone LF ending the whole head, `Transfer-Encoding: Chunked`, an unknown but
well-formed method, empty list elements) are left out on purpose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MARK = b"@MARK@"  # replaced by the case's own marker


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes  # the request, marker in place
    statuses: frozenset[int]
    marker: bytes


def marker_for(name: str) -> bytes:
    """A marker unique to the case, that occurs nowhere else by chance."""
    return b"hm" + hashlib.sha256(name.encode()).hexdigest()[:20].encode()


_CASES: list[tuple[str, bytes, set[int]]] = []


def case(name: str, data: bytes, statuses: set[int] | None = None) -> None:
    _CASES.append((name, data, statuses or {400}))


def req(headers: bytes, body: bytes = b"", method: bytes = b"POST") -> bytes:
    """A request whose only fault is in `headers` (raw lines, each ending in CRLF) or body."""
    return (
        method + b" /hostile/" + MARK + b" HTTP/1.1\r\nHost: example.test\r\n"
        b"X-Probe: " + MARK + b"\r\n" + headers + b"\r\n" + body
    )


def line(request_line: bytes, headers: bytes = b"Host: example.test\r\n") -> bytes:
    """A request whose fault is in the request line (the marker goes in a header too)."""
    return request_line + b"\r\n" + headers + b"X-Probe: " + MARK + b"\r\n\r\n"


CHUNKED = b"Transfer-Encoding: chunked\r\n"
GET = b"GET /hostile/" + MARK  # a request line up to the end of the target
TE_REFUSED = {400, 501}
VERSION_REFUSED = {400, 505}
SMUGGLED = b"GET /smuggled-" + MARK + b" HTTP/1.1\r\nHost: example.test\r\n\r\n"

# -- CL + TE (RFC 9112 6.1: a server MAY reject; a proxy that forwards must not pass both)
case("cl-then-te", req(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\nX"))
case("te-then-cl", req(CHUNKED + b"Content-Length: 6\r\n", b"0\r\n\r\nX"))
case("cl0-and-te", req(b"Content-Length: 0\r\n" + CHUNKED, b"0\r\n\r\n"))
case("cl-te-smuggle", req(b"Content-Length: 4\r\n" + CHUNKED, b"5c\r\n" + SMUGGLED + b"0\r\n\r\n"))
case(
    "te-cl-smuggle",
    req(CHUNKED + b"Content-Length: 3\r\n", b"8\r\n" + SMUGGLED[:8] + b"\r\n0\r\n\r\n"),
)
case("cl-te-mixed-case", req(b"content-length: 5\r\ntransfer-encoding: chunked\r\n", b"0\r\n\r\n"))
case(
    "cl-te-http10",
    line(b"POST /hostile/" + MARK + b" HTTP/1.0", b"Content-Length: 5\r\n" + CHUNKED)
    + b"0\r\n\r\n",
)

# -- duplicate, listed, signed or otherwise invalid Content-Length (RFC 9112 6.3 item 5)
case("cl-duplicate-same", req(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"))
case("cl-duplicate-different", req(b"Content-Length: 5\r\nContent-Length: 11\r\n", b"hello world"))
case("cl-duplicate-zero-first", req(b"Content-Length: 0\r\nContent-Length: 5\r\n", b"hello"))
case("cl-list-same", req(b"Content-Length: 5, 5\r\n", b"hello"))
case("cl-list-different", req(b"Content-Length: 5,6\r\n", b"hello!"))
case("cl-plus-sign", req(b"Content-Length: +5\r\n", b"hello"))
case("cl-minus-sign", req(b"Content-Length: -5\r\n", b"hello"))
case("cl-hex", req(b"Content-Length: 0x5\r\n", b"hello"))
case("cl-decimal-point", req(b"Content-Length: 5.0\r\n", b"hello"))
case("cl-inner-space", req(b"Content-Length: 1 1\r\n", b"hello world"))
case("cl-underscore", req(b"Content-Length: 1_1\r\n", b"hello world"))
case("cl-empty", req(b"Content-Length: \r\n", b"hello"))
case("cl-trailing-junk", req(b"Content-Length: 5x\r\n", b"hello"))
case("cl-overflow", req(b"Content-Length: 99999999999999999999999999\r\n", b"hello"), {400, 413})
case("cl-space-before-colon", req(b"Content-Length : 5\r\n", b"hello"))

# -- Transfer-Encoding obfuscations (RFC 9112 6.1; 501 for a coding splitter does not know)
case("te-xchunked", req(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), TE_REFUSED)
case(
    "te-chunked-identity",
    req(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    TE_REFUSED,
)
case(
    "te-chunked-twice-in-list",
    req(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    TE_REFUSED,
)
case("te-twice", req(CHUNKED + CHUNKED, b"0\r\n\r\n"), TE_REFUSED)
case(
    "te-identity-then-chunked",
    req(b"Transfer-Encoding: identity\r\n" + CHUNKED, b"0\r\n\r\n"),
    TE_REFUSED,
)
case("te-identity", req(b"Transfer-Encoding: identity\r\n", b"hello"), TE_REFUSED)
case("te-quoted", req(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), TE_REFUSED)
case("te-chunked-param", req(b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n"), TE_REFUSED)
case("te-space-before-colon", req(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"))
case("te-tab-before-colon", req(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"))
case("te-vtab-before-value", req(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), TE_REFUSED)
case(
    "te-formfeed-before-value", req(b"Transfer-Encoding: \x0cchunked\r\n", b"0\r\n\r\n"), TE_REFUSED
)
case("te-vtab-in-name", req(b"Transfer-Encoding\x0b: chunked\r\n", b"0\r\n\r\n"))
case("te-nul-after-value", req(b"Transfer-Encoding: chunked\x00\r\n", b"0\r\n\r\n"))
case("te-folded-value", req(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"))
case("te-folded-continuation", req(b"Transfer-Encoding: chunked\r\n\t, identity\r\n", b"0\r\n\r\n"))
case("te-cr-inside-value", req(b"Transfer-Encoding: chu\rnked\r\n", b"0\r\n\r\n"))
case("te-empty", req(b"Transfer-Encoding: \r\n", b"hello"), TE_REFUSED)

# -- chunk sizes and extensions (RFC 9112 7.1)
case("chunk-size-not-hex", req(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"))
case("chunk-size-negative", req(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"))
case("chunk-size-0x-prefix", req(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"))
case("chunk-size-overflow", req(CHUNKED, b"1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"))
case("chunk-size-leading-space", req(CHUNKED, b" 5\r\nhello\r\n0\r\n\r\n"))
case("chunk-size-empty", req(CHUNKED, b"\r\nhello\r\n0\r\n\r\n"))
case("chunk-size-bare-lf", req(CHUNKED, b"5\nhello\r\n0\r\n\r\n"))
case("chunk-ext-bare-lf", req(CHUNKED, b"5;ext\nhello\r\n0\r\n\r\n"))
case("chunk-ext-bare-cr", req(CHUNKED, b"5;e\rx\r\nhello\r\n0\r\n\r\n"))
case("chunk-ext-nul", req(CHUNKED, b"5;e=\x00\r\nhello\r\n0\r\n\r\n"))
case("chunk-ext-unterminated-quote", req(CHUNKED, b'5;e="x\r\nhello\r\n0\r\n\r\n'))
case("chunk-data-too-long", req(CHUNKED, b"5\r\nhelloXX\r\n0\r\n\r\n"))
case("chunk-data-no-crlf", req(CHUNKED, b"5\r\nhello0\r\n\r\n"))
case("chunk-data-bare-lf-after", req(CHUNKED, b"5\r\nhello\n0\r\n\r\n"))

# -- obs-fold (RFC 9112 5.2: a server MUST reject or replace it; a proxy here rejects)
case("obs-fold-space", req(b"X-Folded: a\r\n b\r\n"))
case("obs-fold-tab", req(b"X-Folded: a\r\n\tb\r\n"))
case("obs-fold-first-line", line(GET + b" HTTP/1.1", b" Host: example.test\r\n"))
case(
    "obs-fold-host",
    req(b"X-A: b\r\n", method=b"GET").replace(
        b"Host: example.test\r\n", b"Host: example.test\r\n evil.test\r\n"
    ),
)

# -- whitespace and odd bytes in field names (RFC 9112 5.1: MUST reject ws before colon)
case("space-before-colon", req(b"X-Before : v\r\n", method=b"GET"))
case("tab-before-colon", req(b"X-Before\t: v\r\n", method=b"GET"))
case("host-space-before-colon", line(GET + b" HTTP/1.1", b"Host : example.test\r\n"))
case("space-in-name", req(b"X Space: v\r\n", method=b"GET"))
case("empty-name", req(b": v\r\n", method=b"GET"))
case("no-colon", req(b"X-No-Colon v\r\n", method=b"GET"))
case("nul-in-name", req(b"X-N\x00ul: v\r\n", method=b"GET"))
case("control-in-name", req(b"X-C\x01tl: v\r\n", method=b"GET"))
case("high-byte-in-name", req(b"X-\xffHigh: v\r\n", method=b"GET"))
case("bare-cr-in-name", req(b"X-C\rR: v\r\n", method=b"GET"))

# -- bare CR, bare LF, NUL and control bytes in values and lines (RFC 9112 2.2, 5.5)
case("bare-cr-in-value", req(b"X-Value: a\rX-Other: b\r\n", method=b"GET"))
case("bare-cr-ending-line", req(b"X-Value: a\r\rX-Other: b\r\n", method=b"GET"))
case("bare-lf-between-fields", req(b"X-Value: a\nX-Other: b\r\n", method=b"GET"))
case("lf-cr-ending-line", req(b"X-Value: a\n\rX-Other: b\r\n", method=b"GET"))
case("nul-in-value", req(b"X-Value: a\x00b\r\n", method=b"GET"))
case("control-in-value", req(b"X-Value: a\x01b\r\n", method=b"GET"))
case("escape-in-value", req(b"X-Value: a\x1b[2Jb\r\n", method=b"GET"))
case("del-in-value", req(b"X-Value: a\x7fb\r\n", method=b"GET"))
case("nul-in-target", line(GET + b"\x00x HTTP/1.1"))
case("control-in-target", line(GET + b"\x01x HTTP/1.1"))
case("del-in-target", line(GET + b"\x7fx HTTP/1.1"))
case("bare-cr-in-target", line(GET + b"\rx HTTP/1.1"))
case("bare-lf-in-request-line", line(GET + b"\n HTTP/1.1"))
case("space-in-target", line(GET + b" x HTTP/1.1"))
case("bare-cr-ending-request-line", GET + b" HTTP/1.1\rHost: example.test\r\n\r\n")

# -- methods (RFC 9110 9.1: a token) and CONNECT, which splitter does not tunnel
case("method-invalid-char", line(b"G@T /hostile/" + MARK + b" HTTP/1.1"), {400, 501})
case("method-nul", line(b"GE\x00T /hostile/" + MARK + b" HTTP/1.1"), {400, 501})
case("method-leading-space", line(b" GET /hostile/" + MARK + b" HTTP/1.1"), {400, 501})
case("method-empty", line(b" /hostile/" + MARK + b" HTTP/1.1"), {400, 501})
case("method-oversized", line(b"G" * 10000 + b" /hostile/" + MARK + b" HTTP/1.1"), {400, 414, 501})
case("method-connect", line(b"CONNECT " + MARK + b".test:443 HTTP/1.1"), {400, 501})

# -- versions (RFC 9112 2.3)
for _name, _version in [
    ("version-2.0", b"HTTP/2.0"),
    ("version-3.0", b"HTTP/3.0"),
    ("version-0.9", b"HTTP/0.9"),
    ("version-1.2", b"HTTP/1.2"),
    ("version-1.x", b"HTTP/1.x"),
    ("version-lowercase", b"http/1.1"),
    ("version-no-dot", b"HTTP/11"),
    ("version-https", b"HTTPS/1.1"),
    ("version-trailing-space", b"HTTP/1.1 "),
    ("version-two-digits", b"HTTP/1.10"),
]:
    case(_name, line(GET + b" " + _version), VERSION_REFUSED)
case("version-missing", line(b"GET /hostile/" + MARK), VERSION_REFUSED)

# -- request targets (RFC 9112 3.2, RFC 9110 4.2.1)
case("target-not-origin-form", line(b"GET hostile/" + MARK + b" HTTP/1.1"))
case("absolute-form-empty-host", line(b"GET http:///hostile/" + MARK + b" HTTP/1.1"))
case(
    "absolute-form-space-in-host", line(b"GET http://ex ample.test/hostile/" + MARK + b" HTTP/1.1")
)
case(
    "absolute-form-nul-in-host", line(b"GET http://ex\x00ample.test/hostile/" + MARK + b" HTTP/1.1")
)

# -- Host (RFC 9112 3.2: MUST answer 400 when missing in 1.1, repeated, or invalid)
case("host-missing", line(GET + b" HTTP/1.1", b""))
case("host-twice", line(GET + b" HTTP/1.1", b"Host: a.test\r\nHost: b.test\r\n"))
case("host-space-inside", line(GET + b" HTTP/1.1", b"Host: a.test b.test\r\n"))

# -- sizes (docs/configuration.md#limits-and-timeouts: 8 KiB request line, 64 KiB or 100 header
# fields)
case("request-line-oversized", line(GET + b"/" + b"a" * 9000 + b" HTTP/1.1"), {414})
case(
    "too-many-fields",
    req(b"".join(b"X-Field-%d: v\r\n" % i for i in range(120)), method=b"GET"),
    {431},
)
case("one-huge-field", req(b"X-Huge: " + b"h" * 70000 + b"\r\n", method=b"GET"), {431})
case(
    "fields-over-64k",
    req(b"".join(b"X-Big-%d: %s\r\n" % (i, b"b" * 4000) for i in range(20)), method=b"GET"),
    {431},
)
case("huge-field-name", req(b"X-" + b"n" * 70000 + b": v\r\n", method=b"GET"), {431})


def _build() -> list[Hostile]:
    out = []
    names: set[str] = set()
    for name, data, statuses in _CASES:
        assert name not in names, f"duplicate case name {name}"
        names.add(name)
        marker = marker_for(name)
        assert MARK in data, f"{name}: no marker"
        out.append(Hostile(name, data.replace(MARK, marker), frozenset(statuses), marker))
    return out


CORPUS: list[Hostile] = _build()

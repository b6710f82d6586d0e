"""HTTP/2 header lists (splitter.http2.headers): RFC 9113's rules, section 4a's limits, and
the same head the HTTP/1.1 reader makes of the same request."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import Limits
from splitter.errors import RequestRefused
from splitter.http1.request import ReadSettings, RequestHead, RequestReader
from splitter.http1.response import ResponseHead, ResponseReader
from splitter.http2.headers import (
    CONNECTION_SPECIFIC,
    Field,
    StreamRequest,
    check_trailers,
    request_head,
    response_fields,
)

LIMITS = Limits()
PLAIN = ReadSettings(LIMITS, None)
BASE: list[Field] = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/a/b%2Fc?q=1"),
    (b":authority", b"shop.example.com:8080"),
]


def accepted(
    fields: list[Field],
    end_stream: bool = True,
    read: ReadSettings = PLAIN,
    tls: bool = False,
) -> StreamRequest:
    result = request_head(fields, end_stream, read, tls)
    assert isinstance(result, StreamRequest), result
    return result


def refused(fields: list[Field], end_stream: bool = True, read: ReadSettings = PLAIN) -> int:
    result = request_head(fields, end_stream, read, False)
    assert isinstance(result, RequestRefused), result
    return result.status


# -- what a valid request becomes --------------------------------------------------------


def test_a_request_becomes_the_head_the_exchange_serves() -> None:
    head = accepted([*BASE, (b"accept", b"text/html"), (b"x-custom", b"a, b")]).head
    assert head.method == b"GET"
    assert head.target == b"/a/b%2Fc?q=1"  # byte for byte: no re-quoting
    assert head.host == b"shop.example.com:8080"
    assert head.version == "2"
    assert head.lines == [b"accept: text/html\r\n", b"x-custom: a, b\r\n"]
    assert head.keep_alive and not head.upgrade and not head.https and not head.tls
    assert head.content_length == -1 and not head.chunked and not head.has_body


def test_a_body_without_a_length_goes_chunked_and_a_length_is_kept() -> None:
    assert accepted([*BASE], end_stream=False).head.chunked
    with_length = accepted([*BASE, (b"content-length", b"12")], end_stream=False).head
    assert with_length.content_length == 12 and not with_length.chunked
    assert accepted([*BASE, (b"content-length", b"0")]).head.content_length == 0


def test_tls_and_scheme_https_make_the_cookie_secure_but_only_tls_says_https_upstream() -> None:
    over_tls = accepted(BASE, tls=True).head
    assert over_tls.tls and over_tls.https
    https = [(n, b"https" if n == b":scheme" else v) for n, v in BASE]
    said = accepted(https).head
    assert said.https and not said.tls
    assert accepted([*BASE, (b"x-forwarded-proto", b"HTTPS")]).head.https


def test_cookie_crumbs_are_joined_into_one_line_without_the_admin_cookie() -> None:
    head = accepted(
        [
            *BASE,
            (b"cookie", b"a=1"),
            (b"x-other", b"1"),
            (b"cookie", b"splitter_admin=s"),
            (b"cookie", b"b=2"),
        ]
    ).head
    assert head.cookie == b"a=1; splitter_admin=s; b=2"  # what routing reads (the sticky id)
    assert head.lines == [b"x-other: 1\r\n", b"cookie: a=1; b=2\r\n"]
    only_admin = accepted([*BASE, (b"cookie", b"splitter_admin=s")]).head
    assert only_admin.cookie == b"splitter_admin=s" and only_admin.lines == []


def test_forwarding_headers_are_taken_out_as_http1_takes_them() -> None:
    head = accepted(
        [
            *BASE,
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x-forwarded-for", b"10.0.0.2"),
            (b"x-forwarded-host", b"evil"),
            (b"x-splitter-shadow", b"1"),
            (b"x-request-id", b"abc-123"),
            (b"x-request-id", b"second"),
            (b"trailer", b"x"),
            (b"proxy-authorization", b"Basic x"),
            (b"http2-settings", b"x"),
            (b"te", b"trailers"),
            (b"expect", b"100-continue"),
        ]
    )
    assert head.head.xff == b"10.0.0.1, 10.0.0.2"
    assert head.head.request_id == b"abc-123"
    assert head.head.lines == []
    assert head.head.expect_continue
    assert head.te_trailers


def test_the_override_and_segment_headers_are_kept_aside_and_sent_on() -> None:
    read = ReadSettings(LIMITS, b"x-pool", frozenset({b"x-beta", b"x-team"}))
    result = accepted(
        [
            *BASE,
            (b"x-pool", b"canary"),
            (b"x-beta", b"yes"),
            (b"x-beta", b"no"),
            (b"content-type", b"application/grpc+proto"),
        ],
        read=read,
    )
    head = result.head
    assert head.override == b"canary"
    assert head.segment_values == {b"x-beta": b"yes"}
    assert head.lines[:3] == [b"x-pool: canary\r\n", b"x-beta: yes\r\n", b"x-beta: no\r\n"]
    assert result.content_type == b"application/grpc+proto"


def test_host_stands_in_for_authority_and_both_must_agree() -> None:
    no_authority = [f for f in BASE if f[0] != b":authority"]
    assert accepted([*no_authority, (b"host", b"a.example")]).head.host == b"a.example"
    assert accepted([*BASE, (b"host", b"SHOP.example.com:8080")]).head.host == (
        b"shop.example.com:8080"
    )
    assert refused([*BASE, (b"host", b"other.example")]) == 400
    assert refused(no_authority) == 400
    assert refused([*no_authority, (b"host", b"a"), (b"host", b"a")]) == 400
    assert refused([*no_authority, (b"host", b"user@a")]) == 400


def test_options_star_is_the_only_path_not_starting_with_a_slash() -> None:
    star = [(n, b"*" if n == b":path" else b"OPTIONS" if n == b":method" else v) for n, v in BASE]
    assert accepted(star).head.target == b"*"
    for path in (b"*", b"", b"http://a/b", b"a/b", b"/a b", b"/a\x7f"):
        fields = [(n, path if n == b":path" else v) for n, v in BASE]
        assert refused(fields) == 400, path


# -- what is refused, and with which status ----------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")],  # no :path
        [(b":path", b"/"), (b":scheme", b"http"), (b":authority", b"a")],  # no :method
        [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a")],  # no :scheme
        [*BASE, (b":path", b"/again")],
        [*BASE, (b":method", b"POST")],
        [*BASE, (b":scheme", b"http")],
        [*BASE, (b":authority", b"b")],
        [(b"accept", b"*/*"), *BASE],  # a pseudo-header after a regular field
        [*BASE, (b":status", b"200")],
        [*BASE, (b":foo", b"x")],
        [*BASE, (b":protocol", b"websocket")],  # extended CONNECT is not offered
        [(n, b"ftp" if n == b":scheme" else v) for n, v in BASE],
        [(n, b"G T" if n == b":method" else v) for n, v in BASE],
        [(n, b"" if n == b":method" else v) for n, v in BASE],
        [(n, b"a@b" if n == b":authority" else v) for n, v in BASE],
        [(n, b"" if n == b":authority" else v) for n, v in BASE],
        [*BASE, (b"Accept", b"x")],  # names are lower case in HTTP/2
        [*BASE, (b"", b"x")],
        [*BASE, (b"a b", b"x")],
        [*BASE, (b"x", b"a\r\nb")],
        [*BASE, (b"x", b"a\x00b")],
        [*BASE, (b"x", b"a\x01b")],
        [*BASE, (b"x", b" leading")],
        [*BASE, (b"x", b"trailing\t")],
        [*BASE, (b"te", b"gzip")],
        [*BASE, (b"te", b"trailers, gzip")],
        [*BASE, (b"content-length", b"1"), (b"content-length", b"1")],
        [*BASE, (b"content-length", b"-1")],
        [*BASE, (b"content-length", b"+5")],
        [*BASE, (b"content-length", b"9223372036854775808")],
        [*BASE, (b"content-length", b"5")],  # the HEADERS frame ended the stream
    ],
)
def test_malformed_requests_are_400(fields: list[Field]) -> None:
    assert refused(fields) == 400


@pytest.mark.parametrize("name", sorted(CONNECTION_SPECIFIC))
def test_connection_specific_fields_are_malformed(name: bytes) -> None:
    assert refused([*BASE, (name, b"x")]) == 400


def test_connect_is_501_like_http1() -> None:
    assert refused([(b":method", b"CONNECT"), (b":authority", b"a:443")]) == 501
    connect = [(n, b"CONNECT" if n == b":method" else v) for n, v in BASE]
    assert refused([*connect, (b":protocol", b"websocket")]) == 501
    assert refused([(b":protocol", b"websocket"), *connect]) == 501


def test_expect_other_than_100_continue_is_417() -> None:
    assert refused([*BASE, (b"expect", b"something")]) == 417


def test_section_4a_limits_answer_what_http1_answers() -> None:
    small = Limits(max_request_line=64, max_header_bytes=200, max_header_count=5, max_body=10)
    read = ReadSettings(small, None)
    long_path = [(n, b"/" + b"a" * 60 if n == b":path" else v) for n, v in BASE]
    assert refused(long_path, read=read) == 414
    many = [*BASE, *[(b"x-%d" % i, b"v") for i in range(5)]]  # :authority counts as Host
    assert refused(many, read=read) == 431
    assert isinstance(request_head(many[:-1], True, read, False), StreamRequest)
    big = [*BASE, (b"x-big", b"v" * 200)]
    assert refused(big, read=read) == 431
    huge_authority = [(n, b"a" * 300 if n == b":authority" else v) for n, v in BASE]
    assert refused(huge_authority, read=read) == 431
    assert refused([*BASE, (b"content-length", b"11")], end_stream=False, read=read) == 413
    # Cookie crumbs are one field, as the Cookie line they become.
    crumbs = [*BASE, *[(b"cookie", b"c%d=1" % i) for i in range(20)]]
    assert isinstance(request_head(crumbs, True, read, False), StreamRequest)
    assert refused([*crumbs, (b"cookie", b"x" * 100)], read=read) == 431


# -- the same head as HTTP/1.1 -------------------------------------------------------------

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=20
).map(str.encode)
_NAMES = _TOKEN.map(lambda t: b"x-" + t.encode())
_PATHS = st.lists(_TOKEN, max_size=4).map(lambda parts: ("/" + "/".join(parts)).encode())
_HOSTS = st.sampled_from([b"a.example", b"shop.example.com:8443", b"[::1]:80", b"10.0.0.1"])
_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"])


@settings(max_examples=200, deadline=None)
@given(
    method=_METHODS,
    path=_PATHS,
    host=_HOSTS,
    extra=st.lists(st.tuples(_NAMES, _VALUE), max_size=8),
    xff=st.lists(st.sampled_from([b"10.0.0.1", b"192.0.2.7"]), max_size=2),
)
def test_a_valid_request_gives_the_head_the_http1_reader_gives(
    method: bytes, path: bytes, host: bytes, extra: list[Field], xff: list[bytes]
) -> None:
    read = ReadSettings(LIMITS, b"x-a", frozenset({b"x-b", b"x-c"}))
    fields = [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", host),
        *extra,
        *[(b"x-forwarded-for", x) for x in xff],
    ]
    h2 = accepted(fields, read=read).head
    raw = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method, path, host)
    raw += b"".join(b"%s: %s\r\n" % (n, v) for n, v in fields[4:]) + b"\r\n"
    [h1] = _read_http1(raw, read)
    assert (h2.method, h2.target, h2.host) == (method, path, host)
    for name in ("method", "target", "host", "lines", "xff", "override", "segment_values"):
        assert getattr(h2, name) == getattr(h1, name), name


def _read_http1(raw: bytes, read: ReadSettings) -> list[RequestHead]:
    heads: list[RequestHead] = []

    class Sink:
        def on_head_start(self) -> None: ...
        def on_request(self, head: RequestHead) -> None:
            heads.append(head)

        def on_request_body(self, data: bytes) -> None: ...
        def on_request_end(self) -> None: ...
        def on_refused(self, error: RequestRefused) -> None:
            raise AssertionError(error)

    RequestReader(read, Sink()).feed(raw)
    return heads


_ANY_NAME = st.one_of(
    st.sampled_from(
        [
            b":method",
            b":scheme",
            b":path",
            b":authority",
            b":status",
            b":protocol",
            b"host",
            b"cookie",
            b"te",
            b"content-length",
            b"x-request-id",
            b"expect",
            *CONNECTION_SPECIFIC,
        ]
    ),
    st.binary(max_size=12),
)
_ANY_VALUE = st.one_of(
    st.sampled_from([b"GET", b"CONNECT", b"http", b"https", b"/", b"*", b"a", b"trailers", b"0"]),
    st.binary(max_size=24),
)


@settings(max_examples=500, deadline=None)
@given(fields=st.lists(st.tuples(_ANY_NAME, _ANY_VALUE), max_size=12), end=st.booleans())
def test_any_list_gives_a_head_or_a_refusal_and_nothing_connection_specific_passes(
    fields: list[Field], end: bool
) -> None:
    result = request_head(fields, end, PLAIN, False)
    if isinstance(result, RequestRefused):
        assert result.status in (400, 413, 414, 417, 431, 501)
        return
    assert isinstance(result, StreamRequest)
    names = {name for name, _ in fields}
    assert not names & CONNECTION_SPECIFIC
    head = result.head
    assert head.method and head.host and (head.target[:1] == b"/" or head.target == b"*")
    for line in head.lines:  # every line is one well-formed HTTP/1.1 field line
        assert line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]
        assert line.split(b":", 1)[0] not in CONNECTION_SPECIFIC | {b"te", b"host"}


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=4),
    name=st.sampled_from(sorted(CONNECTION_SPECIFIC)),
    value=_VALUE,
)
def test_a_connection_specific_field_anywhere_is_refused(
    index: int, name: bytes, value: bytes
) -> None:
    fields = [*BASE, (b"accept", b"*/*")]
    fields.insert(index, (name, value))
    assert refused(fields) == 400


# -- responses and trailers ----------------------------------------------------------------


def _response(raw: bytes) -> ResponseHead:
    heads: list[ResponseHead] = []

    class Sink:
        def on_response_head(self, head: ResponseHead) -> None:
            heads.append(head)

        def on_response_body(self, data: bytes) -> None: ...
        def on_response_end(self, clean: bool) -> None: ...

    reader = ResponseReader(8192, 65536, 100)
    reader.start(False, False)
    reader.feed(raw, Sink())
    return heads[0]


def test_a_response_head_becomes_an_h2_list() -> None:
    head = _response(
        b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n"
        b"Transfer-Encoding: chunked\r\nSet-Cookie: b=2\r\nX-Spaced:   v  \r\n"
        b"Upgrade: h2c\r\nX-Empty:\r\n\r\n"
    )
    extra = b"set-cookie: sticky=1; Path=/\r\nX-Request-Id: r1\r\n"
    assert response_fields(head.status, head.fields + extra) == [
        (b":status", b"201"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"x-spaced", b"v"),
        (b"x-empty", b""),
        (b"set-cookie", b"sticky=1; Path=/"),
        (b"x-request-id", b"r1"),
    ]
    with_length = _response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert response_fields(200, with_length.fields) == [
        (b":status", b"200"),
        (b"content-length", b"3"),
    ]


_RESPONSE_NAMES = st.one_of(
    _NAMES,
    st.sampled_from([b"Connection", b"TE", b"Trailer", b"Upgrade", b"Keep-Alive", b"X-UP"]),
)


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(min_value=200, max_value=599),
    lines=st.lists(st.tuples(_RESPONSE_NAMES, _VALUE), max_size=10),
)
def test_no_hop_by_hop_or_upper_case_name_reaches_an_h2_client(
    status: int, lines: list[Field]
) -> None:
    raw = b"HTTP/1.1 %d X\r\n" % status + b"".join(b"%s: %s\r\n" % f for f in lines)
    head = _response(raw + b"Content-Length: 0\r\n\r\n")
    out = response_fields(head.status, head.fields)
    assert out[0] == (b":status", b"%d" % status)
    assert out[-1] == (b"content-length", b"0")
    for name, value in out[1:]:
        assert name == name.lower() and not name.startswith(b":")
        assert name not in {b"connection", b"te", b"trailer", b"upgrade", b"keep-alive"}
        assert value == value.strip(b" \t")
    kept = [n.lower() for n, _ in lines if n.lower().startswith(b"x-")]
    connection = [v.lower() for n, v in lines if n == b"Connection"]
    named = {t.strip() for v in connection for t in v.split(b",")}
    assert [n for n, _ in out[1:-1]] == [n for n in kept if n not in named]


def test_trailers_pass_between_h2_peers_without_hop_by_hop_fields() -> None:
    assert check_trailers(
        [(b"grpc-status", b"0"), (b"grpc-message", b"ok"), (b"te", b"x")], LIMITS
    ) == [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]
    assert isinstance(check_trailers([(b":status", b"200")], LIMITS), str)
    assert isinstance(check_trailers([(b"connection", b"close")], LIMITS), str)
    assert isinstance(check_trailers([(b"Grpc-Status", b"0")], LIMITS), str)
    assert isinstance(check_trailers([(b"x", b"a\nb")], LIMITS), str)
    small = Limits(max_header_bytes=50, max_header_count=2)
    assert isinstance(check_trailers([(b"x", b"v" * 50)], small), str)
    assert isinstance(check_trailers([(b"a", b"1"), (b"b", b"1"), (b"c", b"1")], small), str)

"""The request parser (splitter.http1.request): the header values that segments read."""

from __future__ import annotations

from splitter.config import Limits
from splitter.errors import RequestRefused
from splitter.http1.request import ReadSettings, RequestHead, RequestReader


class Sink:
    def __init__(self) -> None:
        self.heads: list[RequestHead] = []
        self.refused: list[RequestRefused] = []

    def on_head_start(self) -> None:
        pass

    def on_request(self, head: RequestHead) -> None:
        self.heads.append(head)

    def on_request_body(self, data: bytes) -> None:
        pass

    def on_request_end(self) -> None:
        pass

    def on_refused(self, error: RequestRefused) -> None:
        self.refused.append(error)


def read(data: bytes, settings: ReadSettings) -> list[RequestHead]:
    sink = Sink()
    RequestReader(settings, sink).feed(data)
    assert not sink.refused
    return sink.heads


def settings(*names: bytes, override: bytes | None = None) -> ReadSettings:
    return ReadSettings(Limits(), override, frozenset(names))


def test_no_segment_headers_keep_nothing() -> None:
    plain = ReadSettings(Limits(), None)
    assert plain.segment_headers == frozenset()
    [head] = read(b"GET / HTTP/1.1\r\nHost: a\r\nX-Beta: yes\r\n\r\n", plain)
    assert head.segment_values is None
    assert head.lines == [b"X-Beta: yes\r\n"]


def test_the_first_value_of_each_segment_header_is_kept_stripped() -> None:
    [head] = read(
        b"GET / HTTP/1.1\r\nHost: a\r\nx-BETA:  yes \r\nX-Team: a\r\nX-Beta: no\r\n"
        b"X-Other: 1\r\nX-Empty:\r\n\r\n",
        settings(b"x-beta", b"x-team", b"x-empty", b"x-absent"),
    )
    assert head.segment_values == {b"x-beta": b"yes", b"x-team": b"a", b"x-empty": b""}
    # Sent on as they came, every one of them.
    assert head.lines == [
        b"x-BETA: yes \r\n",
        b"X-Team: a\r\n",
        b"X-Beta: no\r\n",
        b"X-Other: 1\r\n",
        b"X-Empty: \r\n",
    ]


def test_a_request_without_them_has_none() -> None:
    [head] = read(b"GET / HTTP/1.1\r\nHost: a\r\nX-Other: 1\r\n\r\n", settings(b"x-beta"))
    assert head.segment_values is None


def test_the_headers_splitter_handles_itself_are_never_kept() -> None:
    [head] = read(
        b"GET / HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\nX-Forwarded-For: 10.0.0.1\r\n"
        b"Keep-Alive: 5\r\n\r\n",
        settings(b"host", b"cookie", b"x-forwarded-for", b"keep-alive"),
    )
    assert head.segment_values is None
    assert head.cookie == b"c=1"


def test_chunked_trailers_are_never_kept() -> None:
    [head] = read(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\nX-Beta: yes\r\n\r\n",
        settings(b"x-beta"),
    )
    assert head.segment_values is None


def test_the_override_header_can_be_a_segment_header_too() -> None:
    [head] = read(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Splitter-Pool: green\r\n\r\n",
        settings(b"x-splitter-pool", override=b"x-splitter-pool"),
    )
    assert head.override == b"green"
    assert head.segment_values == {b"x-splitter-pool": b"green"}


def test_each_request_of_a_connection_starts_afresh_and_settings_change_in_place() -> None:
    shared = settings(b"x-beta")
    sink = Sink()
    reader = RequestReader(shared, sink)
    reader.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\nX-Beta: 1\r\n\r\n")
    reader.feed(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    shared.segment_headers = frozenset({b"x-team"})  # a reload
    reader.feed(b"GET /3 HTTP/1.1\r\nHost: a\r\nX-Beta: 1\r\nX-Team: t\r\n\r\n")
    assert [h.segment_values for h in sink.heads] == [{b"x-beta": b"1"}, None, {b"x-team": b"t"}]

"""Responses from backends: one scan of the raw head, then the body by its framing.

Theory of operation
-------------------
A `ResponseReader` reads one backend connection's byte stream, one response at a time
(`start` before each request is sent). It is bytes only and calls a `ResponseSink` (the
exchange) as it goes:

    feed(data) -> sink.on_response_head(head)   the final head (1xx interims are skipped)
               -> sink.on_response_body(data)   body bytes, framing removed
               -> sink.on_response_end(clean)   the body is complete; `clean` is False when
                                                 the backend sent more than its framing allows
    eof()      -> ends a body delimited by the close, else UpstreamProtocolError/UpstreamLost

States (per response):

    HEAD --final head--> LENGTH | CHUNKED | UNTIL_CLOSE | (no body) DONE | (101) TUNNEL
    LENGTH      --Content-Length bytes-->          DONE
    CHUNKED     --last chunk, trailers-->          DONE
    UNTIL_CLOSE --eof-->                           DONE
    DONE        --any byte--> excess: the response already delivered stands, the
                              connection must not be reused (nothing of it reaches a client)
    TUNNEL      bytes are not HTTP any more; the owner relays them

Why not llhttp here, as for requests: the framing of a response depends on the request
(HEAD, an Upgrade), which llhttp cannot be told; and only a reader that knows exactly where
a response ends can tell a backend that sends too much. One scan of the head (find the
blank line, check every line at once with a compiled pattern, split) also costs less than a
Python callback per header.

Rules (docs/configuration.md#proxying and docs/configuration.md#limits-and-timeouts): the status
line must be `HTTP/1.x NNN reason`; a header
name is a token and a value holds no control byte (no obs-fold, no bare CR or LF);
conflicting framing (Content-Length with Transfer-Encoding, two Content-Lengths, a
Transfer-Encoding other than `chunked`) and a head over the limits of a request's (a status
line over `max_request_line`; header fields over `max_header_bytes` or `max_header_count`,
counted as for requests, interim heads and trailers included) are `UpstreamProtocolError`s;
a 101 to a request that did not ask to upgrade as well.
"""

from __future__ import annotations

import re
from typing import Final, Protocol

from splitter.errors import UpstreamLost, UpstreamProtocolError

__all__ = ["ResponseHead", "ResponseReader", "ResponseSink"]

HEAD, LENGTH, CHUNKED, UNTIL_CLOSE, DONE, TUNNEL = range(6)

# Chunked body sub-states.
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)

# Header lines: a token, a colon, a value of visible bytes, spaces and tabs (obs-text too).
_FIELDS: Final = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?")
_VISIBLE: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
MAX_CHUNK_LINE: Final = 4096  # a chunk-size line with its extensions

# Response headers splitter reads or takes out (hop-by-hop, framing, its own request id),
# lower-case; every other line passes on byte for byte.
_HOP, _LENGTH, _TE, _CONNECTION, _UPGRADE = range(5)
_SPECIAL: Final[dict[bytes, int]] = {
    b"connection": _CONNECTION,
    b"keep-alive": _HOP,
    b"proxy-connection": _HOP,
    b"te": _HOP,
    b"trailer": _HOP,
    b"transfer-encoding": _TE,
    b"upgrade": _UPGRADE,
    b"proxy-authorization": _HOP,
    b"proxy-authenticate": _HOP,
    b"content-length": _LENGTH,  # read, and passed on as it came
    b"x-request-id": _HOP,  # the client gets the id splitter used
}
_CONNECTION_OPTIONS: Final = frozenset({b"keep-alive", b"close", b"upgrade"})

_HEAD_BYTES: Final = bytes([9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)])


def _check_partial_head(buffer: bytes) -> None:
    """Refuse at once what can never become a valid head (no waiting for the limits)."""
    start = b"HTTP/1."
    if buffer[: len(start)] != start[: len(buffer)] or buffer.translate(None, _HEAD_BYTES):
        raise UpstreamProtocolError("not an HTTP response")
    line_end = buffer.find(b"\r\n")
    if line_end >= 0 and _STATUS_LINE.fullmatch(buffer, 0, line_end) is None:
        raise UpstreamProtocolError("malformed status line")


class ResponseHead:
    """A response head as it will be passed on: hop-by-hop lines taken out."""

    def __init__(
        self,
        status: int,
        status_line: bytes,
        fields: bytes,
        content_length: int,
        chunked: bool,
        keep_alive: bool,
        upgrade: bytes,
    ) -> None:
        self.status = status
        self.status_line = status_line  # "HTTP/1.1 200 OK\r\n", as the backend's, in 1.1
        self.fields = fields  # the header lines to pass on, with their CRLFs; Content-Length
        # is among them when there is one (it passes as it came)
        self.content_length = content_length  # -1 when absent
        self.chunked = chunked
        self.keep_alive = keep_alive  # the backend keeps the connection open after it
        self.upgrade = upgrade  # the Upgrade header of a 101


class ResponseSink(Protocol):
    def on_response_head(self, head: ResponseHead) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_end(self, clean: bool) -> None: ...


class ResponseReader:
    """The response side of one backend connection (see the module docstring)."""

    def __init__(self, max_line: int, max_field_bytes: int, max_fields: int) -> None:
        self.max_line = max_line  # the status line
        self.max_field_bytes = max_field_bytes  # header fields, interim heads and trailers
        self.max_fields = max_fields
        self.state = DONE
        self.buffer = b""  # a head, chunk-size line or trailer section not yet complete
        self.remaining = 0  # body bytes still to come (LENGTH), or of the current chunk
        self.chunk_state = _SIZE
        self.head_request = False
        self.upgrade_requested = False
        self.field_bytes = 0  # bytes of header fields (interim heads and trailers too)
        self.fields = 0
        self.keep_alive = False  # the head in force said so

    def start(self, head_request: bool, upgrade_requested: bool) -> None:
        """Expect a new response, to a HEAD request or an Upgrade request or neither."""
        self.state = HEAD
        self.buffer = b""
        self.head_request = head_request
        self.upgrade_requested = upgrade_requested
        self.field_bytes = 0
        self.fields = 0
        self.keep_alive = False

    # -- feeding ------------------------------------------------------------------------

    def feed(self, data: bytes, sink: ResponseSink) -> bytes:
        """Read `data`; returns what follows a 101 head (tunnel bytes), else b""."""
        state = self.state
        if state == LENGTH:  # the common case first: a body with a Content-Length
            remaining = self.remaining
            size = len(data)
            if size < remaining:
                self.remaining = remaining - size
                sink.on_response_body(data)
                return b""
            self.state = DONE
            self.remaining = 0
            sink.on_response_body(data if size == remaining else data[:remaining])
            sink.on_response_end(size == remaining)
            return b""
        if state == HEAD:
            return self._feed_head(data, sink)
        if state == CHUNKED:
            self._feed_chunked(data, sink)
            return b""
        if state == UNTIL_CLOSE:
            sink.on_response_body(data)
            return b""
        if state == TUNNEL:
            return data
        return b""  # DONE: nobody is listening; the owner discards the connection

    def eof(self, sink: ResponseSink) -> None:
        """The backend closed its side: the end of a body delimited by the close."""
        if self.state == UNTIL_CLOSE:
            self.state = DONE
            sink.on_response_end(True)
        elif self.state == HEAD and not self.buffer:
            raise UpstreamLost("closed by the backend")
        elif self.state != DONE:
            raise UpstreamLost("closed by the backend before the end of the response")

    # -- the head -----------------------------------------------------------------------

    def _feed_head(self, data: bytes, sink: ResponseSink) -> bytes:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if self.field_bytes + len(buffer) > self.max_field_bytes + self.max_line:
                    raise UpstreamProtocolError("response head over the limits")
                _check_partial_head(buffer)
                self.buffer = buffer
                return b""
            head = self._parse_head(buffer, end)
            rest = buffer[end + 4 :]
            if head is not None:
                break
            buffer = rest  # an interim 1xx: read the next head
        self.buffer = b""
        status = head.status
        if status == 101:
            if not self.upgrade_requested:
                raise UpstreamProtocolError("101 to a request that did not ask to upgrade")
            self.state = TUNNEL
            sink.on_response_head(head)
            return rest
        self.keep_alive = head.keep_alive
        if self.head_request or status == 204 or status == 304:
            self.state = DONE
            sink.on_response_head(head)
            sink.on_response_end(not rest)
            return b""
        if head.chunked:
            self.state = CHUNKED
            self.chunk_state = _SIZE
            sink.on_response_head(head)
            if rest:
                self._feed_chunked(rest, sink)
        elif head.content_length >= 0:
            self.remaining = head.content_length
            if self.remaining == 0:
                self.state = DONE
                sink.on_response_head(head)
                sink.on_response_end(not rest)
                return b""
            self.state = LENGTH
            sink.on_response_head(head)
            if rest:
                self.feed(rest, sink)
        else:
            self.keep_alive = False
            self.state = UNTIL_CLOSE
            sink.on_response_head(head)
            if rest:
                sink.on_response_body(rest)
        return b""

    def _parse_head(self, buffer: bytes, end: int) -> ResponseHead | None:
        """The head in buffer[:end + 2]; None for an interim (1xx but 101) response."""
        line_end = buffer.find(b"\r\n")
        if line_end > self.max_line:
            raise UpstreamProtocolError("response status line over the limits")
        self.field_bytes += end - line_end  # the field lines with their CRLFs
        if self.field_bytes > self.max_field_bytes:
            raise UpstreamProtocolError("response head over the limits")
        match = _STATUS_LINE.fullmatch(buffer, 0, line_end)
        if match is None:
            raise UpstreamProtocolError("malformed status line")
        fields = buffer[line_end + 2 : end + 2]
        if _FIELDS.fullmatch(fields) is None:
            raise UpstreamProtocolError("invalid header field")
        self.fields += fields.count(b"\n")
        if self.fields > self.max_fields:
            raise UpstreamProtocolError("too many header fields in the response")
        status = int(match[2])
        if 100 <= status < 200 and status != 101:
            return None  # 100 and 103 are not forwarded: splitter answers 100-continue itself
        version = match[1]
        if version == b"1":
            status_line = buffer[: line_end + 2]
        else:
            status_line = b"HTTP/1.1" + buffer[8 : line_end + 2]
        content_length = -1
        chunked = False
        close = False
        keep_alive_token = False
        upgrade = b""
        drop: list[bytes] | None = None
        lines = fields.split(b"\r\n")
        lines.pop()  # after the last CRLF
        kept: list[bytes] = []
        for line in lines:
            colon = line.find(b":")
            kind = _SPECIAL.get(line[:colon].lower())
            if kind is None:
                kept.append(line)
                continue
            value = line[colon + 1 :].strip(b" \t")
            if kind == _LENGTH:
                if content_length >= 0 or not value.isdigit() or len(value) > 18:
                    raise UpstreamProtocolError("conflicting Content-Length")
                content_length = int(value)
                kept.append(line)  # end-to-end: it passes on
            elif kind == _TE:
                if chunked or value.lower() != b"chunked":
                    raise UpstreamProtocolError("unsupported Transfer-Encoding")
                chunked = True
            elif kind == _CONNECTION:
                for token in value.split(b","):
                    token = token.strip(b" \t").lower()
                    if token == b"close":
                        close = True
                    elif token == b"keep-alive":
                        keep_alive_token = True
                    elif token and token not in _CONNECTION_OPTIONS:
                        if drop is None:
                            drop = []
                        drop.append(token)
            elif kind == _UPGRADE:
                upgrade = value
        if drop:  # headers named by Connection are hop-by-hop too (rare)
            names = set(drop)
            kept = [line for line in kept if line.split(b":", 1)[0].lower() not in names]
        if len(kept) < len(lines):
            fields = b"\r\n".join(kept) + b"\r\n" if kept else b""
        if chunked and content_length >= 0:
            raise UpstreamProtocolError("Content-Length with Transfer-Encoding")
        if version == b"1":
            keep_alive = not close
        else:  # HTTP/1.0 closes unless it asks to keep alive, with a length to end the body
            keep_alive = keep_alive_token and not close and content_length >= 0
        return ResponseHead(
            status, status_line, fields, content_length, chunked, keep_alive, upgrade
        )

    # -- chunked bodies -----------------------------------------------------------------

    def _feed_chunked(self, data: bytes, sink: ResponseSink) -> None:
        pos = 0
        size = len(data)
        while pos < size:
            state = self.chunk_state
            if state == _DATA:
                take = min(self.remaining, size - pos)
                sink.on_response_body(data[pos : pos + take] if take < size else data)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.chunk_state = _DATA_END
                continue
            if state == _DATA_END:
                need = b"\r\n"[len(self.buffer) :]
                got = data[pos : pos + len(need)]
                if not need.startswith(got):
                    raise UpstreamProtocolError("chunk not followed by CRLF")
                pos += len(got)
                if len(got) < len(need):
                    self.buffer += got
                    return
                self.buffer = b""
                self.chunk_state = _SIZE
                continue
            # _SIZE and _TRAILER read whole lines.
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self.buffer += data[pos:]
                limit = MAX_CHUNK_LINE if state == _SIZE else self.max_field_bytes
                if len(self.buffer) > limit:
                    raise UpstreamProtocolError("chunk line or trailers over the limits")
                return
            line = self.buffer + data[pos:eol] if self.buffer else data[pos:eol]
            self.buffer = b""
            pos = eol + 2
            if state == _SIZE:
                self._chunk_size(line)
            elif self._trailer_line(line):
                self.state = DONE
                sink.on_response_end(pos == size)
                return

    def _chunk_size(self, line: bytes) -> None:
        if len(line) > MAX_CHUNK_LINE:
            raise UpstreamProtocolError("chunk line over the limits")
        digits, _, extensions = line.partition(b";")
        digits = digits.rstrip(b" \t")
        if _HEX.fullmatch(digits) is None or _VISIBLE.fullmatch(extensions) is None:
            raise UpstreamProtocolError("invalid chunk size")
        self.remaining = int(digits, 16)
        self.chunk_state = _DATA if self.remaining else _TRAILER

    def _trailer_line(self, line: bytes) -> bool:
        """One line of the trailer section; True at its end. Trailers are dropped."""
        if not line:
            return True
        self.field_bytes += len(line) + 2
        self.fields += 1
        if self.field_bytes > self.max_field_bytes or self.fields > self.max_fields:
            raise UpstreamProtocolError("response trailers over the limits")
        if _FIELDS.fullmatch(line + b"\r\n") is None:
            raise UpstreamProtocolError("invalid trailer field")
        return False

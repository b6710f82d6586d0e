"""Raw-socket HTTP/1.1 helpers for framing tests (bytes in, bytes out, nothing normalised).

    data = send_raw(port, b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    [resp] = parse_responses(data)

For keep-alive and pipelining, `RawConn` reads exactly one response at a time.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

LOCALHOST = "127.0.0.1"


@dataclass
class Response:
    status: int
    reason: str = ""
    version: str = "HTTP/1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False
    complete: bool = True  # False: the data ended before the body did

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None


class ParseError(ValueError):
    pass


def _parse_head(head: bytes) -> Response:
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ParseError(f"bad status line: {status_line!r}")
    resp = Response(
        status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "", version=parts[0]
    )
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ParseError(f"bad header line: {line!r}")
        resp.headers.append((name, value.strip(" \t")))
    return resp


def parse_one(data: bytes, head: bool = False, eof: bool = True) -> tuple[Response, int] | None:
    """Parse the response at the start of `data`: (response, bytes consumed), or None when
    more data is needed. With `eof` (no more data will come), a response whose body is
    delimited by the close, or that is cut short, is returned (the latter complete=False).
    `head`: the response answers a HEAD request, so a final response has no body."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if eof and data.strip():
            raise ParseError(f"incomplete response head: {data[:200]!r}")
        return None
    resp = _parse_head(data[:end])
    pos = end + 4
    if 100 <= resp.status < 200 or resp.status in (204, 304) or head:
        return resp, pos
    te = resp.header("Transfer-Encoding")
    cl = resp.header("Content-Length")
    if te is not None and "chunked" in te.lower():
        resp.chunked = True
        body = bytearray()
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                break
            size_text = data[pos:line_end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ParseError(f"bad chunk size line: {data[pos:line_end]!r}") from None
            if size == 0:
                tpos = line_end + 2
                while True:
                    t_end = data.find(b"\r\n", tpos)
                    if t_end < 0:
                        break
                    if t_end == tpos:
                        resp.body = bytes(body)
                        return resp, t_end + 2
                    name, _, value = data[tpos:t_end].decode("latin-1").partition(":")
                    resp.trailers.append((name, value.strip(" \t")))
                    tpos = t_end + 2
                resp.trailers.clear()
                break
            if len(data) < line_end + 2 + size + 2:
                break
            body += data[line_end + 2 : line_end + 2 + size]
            if data[line_end + 2 + size : line_end + 4 + size] != b"\r\n":
                raise ParseError("chunk not followed by CRLF")
            pos = line_end + 4 + size
        if not eof:
            return None
        resp.body = bytes(body)
        resp.complete = False
        return resp, len(data)
    if cl is not None:
        length = int(cl)
        if len(data) - pos >= length:
            resp.body = data[pos : pos + length]
            return resp, pos + length
        if not eof:
            return None
        resp.body = data[pos:]
        resp.complete = False
        return resp, len(data)
    # delimited by the close of the connection
    if not eof:
        return None
    resp.body = data[pos:]
    return resp, len(data)


def parse_responses(data: bytes, head: bool = False) -> list[Response]:
    """Every response in `data` (all a connection sent until it closed), in order,
    1xx interim responses included as their own entries."""
    out: list[Response] = []
    pos = 0
    while pos < len(data):
        parsed = parse_one(data[pos:], head=head, eof=True)
        if parsed is None:
            break
        resp, used = parsed
        out.append(resp)
        pos += used
    return out


def open_conn(port: int, timeout: float = 5, host: str = LOCALHOST) -> socket.socket:
    """A connected TCP socket with a timeout (close it, or use it in a `with`)."""
    return socket.create_connection((host, port), timeout=timeout)


def read_until_close(sock: socket.socket, timeout: float = 5) -> bytes:
    """Everything the peer sends until it closes, or until `timeout` seconds pass in total
    (then what arrived so far). A connection reset ends the read too."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def send_raw(
    port: int, data: bytes, timeout: float = 5, half_close: bool = False, host: str = LOCALHOST
) -> bytes:
    """Connect, send `data`, read until the server closes or `timeout`; all bytes received.
    The write side stays open unless `half_close`."""
    with open_conn(port, timeout, host) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before taking everything
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_close(sock, timeout)


class RawConn:
    """A raw connection that reads one response at a time (keep-alive, pipelining).

    with RawConn(port) as c:
        c.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        r = c.read_response()
        assert not c.closed_by_peer(timeout=0.2)
    """

    def __init__(self, port: int, timeout: float = 5, host: str = LOCALHOST) -> None:
        self.sock = open_conn(port, timeout, host)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete response in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_response(self, head: bool = False, timeout: float | None = None) -> Response:
        """The next response (1xx interim ones included). TimeoutError if none completes
        in time; ConnectionError if the peer closes before any byte of it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            parsed = parse_one(self.buffer, head=head, eof=self.eof)
            if parsed is not None:
                resp, used = parsed
                self.buffer = self.buffer[used:]
                return resp
            if self.eof:
                raise ConnectionError("connection closed before a response")
            self._fill(deadline)

    def read_until_close(self, timeout: float | None = None) -> bytes:
        """The rest of the stream (buffer included) until the peer closes or time is up."""
        data = self.buffer + read_until_close(
            self.sock, self.timeout if timeout is None else timeout
        )
        self.buffer = b""
        return data

    def closed_by_peer(self, timeout: float = 1) -> bool:
        """True when the peer closes (or resets) within `timeout` without sending more
        data; False if the connection is still open (any data received is buffered)."""
        if self.eof:
            return True
        try:
            self._fill(time.monotonic() + timeout)
        except TimeoutError:
            return False
        return self.eof


def read_until_end(sock: socket.socket, limit: float) -> tuple[bytes, str]:
    """Everything until the peer closes, and how it ended: "eof", "reset" or "timeout"
    (the peer kept the connection open for `limit` seconds)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + limit
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), "timeout"
        sock.settimeout(remaining)
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), "timeout"
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not piece:
            return b"".join(chunks), "eof"
        chunks.append(piece)


def exchange(port: int, data: bytes, timeout: float = 5) -> tuple[bytes, str]:
    """Send `data` on a new connection; everything received, and how it ended."""
    with open_conn(port, timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # splitter may answer and close before reading it all
        return read_until_end(sock, timeout)

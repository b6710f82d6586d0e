"""End to end: every limit holds in every state of a connection
(docs/configuration.md#limits-and-timeouts, last part).

Each group checks one rule of the paragraph "Every limit holds in every state of a
connection..." and its siblings: the header deadline of a later or pipelined request, the
bytes held before a 101, chunked request trailers, absolute-form targets, an oversized
Content-Length, a backend's 101 to a plain request, a backend's oversized response head or
trailer section, and a backend that sends more than its response framing allows.

One splitter serves the module, in front of two `RawBackend`s: `main` (weight 100), whose
answer a test scripts per request path (`Holes.script`), and `green` (weight 0, reachable
only through the override header). Tests whose backend may leave splitter's pooled
connections broken get a splitter of their own (`fresh`). Limits are small so that the
deadlines and the header limits are reached fast.
"""

from __future__ import annotations

import json
import math
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.rawbackend import DRAIN, RawBackend, Script
from tests.rawhttp import (
    RawConn,
    Response,
    exchange,
    open_conn,
    parse_one,
    parse_responses,
    read_until_end,
)
from tests.support import NO_HEALTH_DOWN, SplitterProc, pools_config, start_splitter, wait_until

HEADER_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096
MAX_HEADER_COUNT = 20
# what splitter may hold itself before a 101 (docs/configuration.md#limits-and-timeouts)
HELD_BEFORE_101 = 64 * 1024
MIB = 1 << 20
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"


# --------------------------------------------------------------------------- the splitter


@dataclass
class Holes:
    main: RawBackend
    green: RawBackend
    proc: SplitterProc
    scripts: dict[bytes, Script] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.proc.proxy_port

    def script(self, *steps: bytes | float | str) -> bytes:
        """A new path; `main` answers a request for it by playing `steps` (see RawBackend)."""
        key = uuid.uuid4().hex.encode()
        self.scripts[key] = steps
        return b"/s/" + key


def _scripted(scripts: dict[bytes, Script], head: bytes) -> Script | None:
    """The script registered for the request's path, or None (the default answer)."""
    target = head.split(b" ", 2)[1]
    if not target.startswith(b"/s/"):
        return None
    return scripts.get(target[3:].split(b"/")[0].split(b"?")[0])


@contextmanager
def _running(workdir: Path) -> Iterator[Holes]:
    scripts: dict[bytes, Script] = {}
    main = RawBackend(reply=partial(_scripted, scripts))
    green = RawBackend()
    proc = None
    try:
        proc = start_splitter(
            pools_config(
                {"main": main.url, "green": green.url},
                {"main": 100},
                override={"header": "X-Splitter-Pool"},
                health_check=NO_HEALTH_DOWN,
                timeouts={"connect": "1s", "read": "4s"},
                limits={
                    "header_timeout": "1s",
                    "body_idle_timeout": "1s",
                    "max_header_bytes": MAX_HEADER_BYTES,
                    "max_header_count": MAX_HEADER_COUNT,
                },
            ),
            workdir,
        )
        yield Holes(main, green, proc, scripts)
    finally:
        if proc is not None:
            code = proc.stop()
            print(f"--- {proc!r} exit={code} stderr:\n{proc.stderr_text()[-4000:]}")
        main.stop()
        green.stop()


@pytest.fixture(scope="module")
def holes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Holes]:
    with _running(tmp_path_factory.mktemp("holes")) as state:
        yield state


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Holes]:
    """The same, for one test: for a backend that may leave splitter's pooled connections
    in a state that must not leak into other tests."""
    with _running(tmp_path) as state:
        yield state


# --------------------------------------------------------------------------- helpers


def _uid() -> bytes:
    return uuid.uuid4().hex[:16].encode()


def _get(path: bytes, rid: bytes, close: bool = False) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\nX-Request-Id: %s\r\n%s\r\n" % (
        path,
        rid,
        b"Connection: close\r\n" if close else b"",
    )


def _json_error(resp: Response, statuses: set[int]) -> dict[str, Any]:
    assert resp.status in statuses, (resp.status, resp.headers, resp.body[:300])
    assert (resp.header("Content-Type") or "").startswith("application/json"), resp.headers
    assert resp.complete
    body = json.loads(resp.body)
    assert isinstance(body, dict) and body.get("error"), body
    return body


def _error_problems(data: bytes, how: str, statuses: set[int]) -> list[str]:
    """What is wrong with `data` (all a connection received, ended by `how`) as one JSON
    error answer with one of `statuses` followed by the close; [] when nothing is."""
    try:
        responses = parse_responses(data)
    except ValueError as exc:
        return [f"unparsable answer ({exc})"]
    if len(responses) != 1:
        return [f"{len(responses)} answers ({how}): {data[:300]!r}"]
    try:
        _json_error(responses[0], statuses)
    except (AssertionError, ValueError) as exc:
        return [f"not a JSON {sorted(statuses)} error: {str(exc)[:300]}"]
    return ["connection left open"] if how == "timeout" else []


def _until_close(conn: RawConn, limit: float) -> tuple[bytes, float | None]:
    """What the peer sends until it closes or resets, and when (monotonic); None when the
    connection is still open after `limit` seconds."""
    data, conn.buffer = conn.buffer, b""
    if conn.eof:
        return data, time.monotonic()
    deadline = time.monotonic() + limit
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, None
        conn.sock.settimeout(remaining)
        try:
            piece = conn.sock.recv(65536)
        except TimeoutError:
            return data, None
        except ConnectionResetError:
            return data, time.monotonic()
        if not piece:
            return data, time.monotonic()
        data += piece


def _send_and_watch(
    sock: socket.socket, pieces: list[bytes], interval: float, limit: float
) -> tuple[bytes, float | None, list[float]]:
    """Send pieces[0] at once and each next one `interval` seconds after the one before,
    reading all the while, until the peer closes or `limit` seconds pass. Returns what
    arrived, when the peer closed (monotonic; None if it did not) and when each piece left."""
    start = time.monotonic()
    data = b""
    sent_at: list[float] = []
    i = 0
    next_send = start
    while True:
        now = time.monotonic()
        if now - start > limit:
            return data, None, sent_at
        if i < len(pieces) and now >= next_send:
            try:
                sock.sendall(pieces[i])
                sent_at.append(now)
                i += 1
            except (BrokenPipeError, ConnectionResetError):
                i = len(pieces)  # what is read next says how it ended
            next_send = now + interval
        wake = next_send if i < len(pieces) else start + limit
        sock.settimeout(max(0.01, min(wake, start + limit) - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, time.monotonic(), sent_at
        if not piece:
            return data, time.monotonic(), sent_at
        data += piece


def _push(sock: socket.socket, seconds: float, total: int, chunk_at: Any) -> int:
    """Send `chunk_at(0)`, `chunk_at(1)`, ... as fast as the socket takes them, for at most
    `seconds` or `total` bytes; the number of bytes the socket took."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    sent = 0
    k = 0
    view = memoryview(chunk_at(0))
    end = time.monotonic() + seconds
    try:
        while sent < total and time.monotonic() < end:
            try:
                n = sock.send(view)
            except BlockingIOError:
                time.sleep(0.002)
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += n
            view = view[n:]
            if not view:
                k += 1
                view = memoryview(chunk_at(k))
    finally:
        sock.settimeout(timeout)
    return sent


def _numbered_chunk(k: int) -> bytes:
    """64 KiB naming its own position: a reordering or a gap shows."""
    return (b"%07d\n" % k) * 8192


def _numbered_stream(n: int) -> bytes:
    return b"".join(_numbered_chunk(k) for k in range(math.ceil(n / 65536)))[:n]


class PeakRss:
    """The peak resident memory of a process from now on: VmHWM, reset to the current RSS
    through /proc/PID/clear_refs ("5")."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.start = self._status("VmRSS")

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {key} in /proc/{self.pid}/status")

    def growth(self) -> int:
        return self._status("VmHWM") - self.start


def _header_values(head: bytes, name: bytes) -> list[bytes]:
    out = []
    for line in head.split(b"\r\n")[1:]:
        k, sep, v = line.partition(b":")
        if sep and k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


def _backend_request(backend: RawBackend, needle: bytes, timeout: float = 3) -> tuple[bytes, bytes]:
    """The head (as received) of the request to `backend` that contains `needle`, and every
    byte its connection received after that head."""

    def find() -> tuple[bytes, bytes] | None:
        for raw, heads in backend.connections():
            for head in heads:
                if needle in head:
                    at = raw.find(head)
                    return head, raw[at + len(head) :]
        return None

    return wait_until(find, timeout, message=f"a request with {needle!r} at the backend")


def _dechunk(data: bytes) -> tuple[bytes, list[bytes] | None, bytes]:
    """A chunked body at the start of `data`: (body, its trailer lines, the bytes after
    it); the trailer lines are None when the body did not end."""
    body = b""
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return body, None, b""
        size = int(data[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            trailers: list[bytes] = []
            while True:
                end = data.find(b"\r\n", pos)
                if end < 0:
                    return body, None, b""
                line = data[pos:end]
                pos = end + 2
                if not line:
                    return body, trailers, data[pos:]
                trailers.append(line)
        if len(data) < pos + size + 2:
            return body + data[pos : pos + size], None, b""
        body += data[pos : pos + size]
        pos += size + 2


def _carried_after(backend: RawBackend, needle: bytes) -> list[list[bytes]]:
    """For each backend connection that carried a request containing `needle`, the request
    lines of the requests it carried after that one."""
    out = []
    for _, heads in backend.connections():
        for i, head in enumerate(heads):
            if needle in head:
                out.append([h.split(b"\r\n", 1)[0] for h in heads[i + 1 :]])
    return out


def _assert_served(port: int) -> None:
    """A plain request on a new connection gets its own id back."""
    rid = b"after-" + _uid()
    data, how = exchange(port, _get(b"/after", rid, close=True))
    responses = parse_responses(data)
    assert [(r.status, r.body) for r in responses] == [(200, rid)], (how, data[:300])


# --------------------------------------------------------------------------- header deadline


@pytest.mark.parametrize("when", ["same-write", "after-the-response"])
def test_partial_later_head_gets_408_at_its_deadline(holes: Holes, when: str) -> None:
    """The second request's head begins (one byte) and never completes: 408 and close,
    a header timeout after its first byte, whether that byte came with the first request
    or after its response."""
    rid = _uid()
    with RawConn(holes.port) as conn:
        if when == "same-write":
            conn.send(_get(b"/first", rid) + b"G")
            started = time.monotonic()
            resp = conn.read_response()
        else:
            conn.send(_get(b"/first", rid))
            resp = conn.read_response()
            conn.send(b"G")
            started = time.monotonic()
        assert (resp.status, resp.body) == (200, rid)
        rest, closed_at = _until_close(conn, HEADER_TIMEOUT + 2)
    assert closed_at is not None, (
        f"connection still open {HEADER_TIMEOUT + 2:.0f}s after a partial head began "
        f"(header_timeout {HEADER_TIMEOUT}s); received {rest!r}"
    )
    elapsed = closed_at - started
    assert HEADER_TIMEOUT - 0.2 <= elapsed <= HEADER_TIMEOUT + 1.0, elapsed
    responses = parse_responses(rest)
    assert len(responses) == 1, rest
    _json_error(responses[0], {408})


SLOW = 1.6  # longer than the header timeout


@pytest.mark.parametrize("client", ["partial", "drip"])
@pytest.mark.parametrize("backend", ["slow-head", "slow-body"])
def test_partial_head_pipelined_behind_slow_response(
    holes: Holes, backend: str, client: str
) -> None:
    """A head pipelined behind a response that takes longer than the header timeout never
    completes (sent at once, or one byte per 0.3 s): the earlier response arrives whole,
    then a 408, then the close."""
    body = b"slow-response-" + _uid()
    if backend == "slow-head":
        path = holes.script(SLOW, OK_HEAD % len(body) + body)
    else:
        path = holes.script(OK_HEAD % len(body) + body[:6], SLOW, body[6:])
    marker = b"never-" + _uid()
    first = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path
    later = b"GET /%s HTTP/1.1\r\nHost: a\r\nX-Pad: %s\r\n" % (marker, b"p" * 40)
    if client == "partial":
        pieces = [first + later]
    else:
        pieces = [first] + [later[i : i + 1] for i in range(len(later))]
    limit = SLOW + 2.0
    with open_conn(holes.port) as sock:
        start = time.monotonic()
        data, closed_at, _ = _send_and_watch(sock, pieces, 0.3, limit)
    responses = parse_responses(data)
    assert responses, f"nothing received in {limit:.1f}s"
    assert (responses[0].status, responses[0].body) == (200, body), data[:300]
    assert responses[0].complete
    assert closed_at is not None, (
        f"connection still open {limit:.1f}s later (the later head started at once, "
        f"header_timeout {HEADER_TIMEOUT}s); received {data!r}"
    )
    assert closed_at - start <= SLOW + 1.5, closed_at - start
    assert len(responses) == 2, data
    _json_error(responses[1], {408})
    assert marker not in holes.main.received()


def test_dripping_later_head_is_cut_at_its_deadline(holes: Holes) -> None:
    """A later head sent one byte per 0.3 s: the deadline runs from its first byte and
    is not pushed back by each byte."""
    rid = _uid()
    drip = b"GET /drip HTTP/1.1\r\nHost: a\r\nX-Drip: " + b"d" * 60
    with RawConn(holes.port) as conn:
        conn.send(_get(b"/first", rid))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, rid)
        pieces = [drip[i : i + 1] for i in range(len(drip))]
        data, closed_at, sent_at = _send_and_watch(conn.sock, pieces, 0.3, HEADER_TIMEOUT + 4)
    assert closed_at is not None, f"still open after {HEADER_TIMEOUT + 4}s of dripping"
    elapsed = closed_at - sent_at[0]
    assert elapsed <= HEADER_TIMEOUT + 1.2, f"cut {elapsed:.2f}s after the first byte"
    responses = parse_responses(data)
    assert len(responses) == 1, data
    _json_error(responses[0], {408})


def test_pipelined_stalled_body_is_cut_after_the_earlier_response(holes: Holes) -> None:
    """A pipelined request whose body stalls, behind a slow response: the earlier response
    arrives whole, then a 408 and the close, a body idle timeout later at the latest."""
    body = b"slow-response-" + _uid()
    path = holes.script(SLOW, OK_HEAD % len(body) + body)
    stalled = b"POST /stalled HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789"
    with open_conn(holes.port) as sock:
        start = time.monotonic()
        data, closed_at, _ = _send_and_watch(
            sock, [b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path + stalled], 0.3, SLOW + 5
        )
    responses = parse_responses(data)
    assert responses and (responses[0].status, responses[0].body) == (200, body), data[:300]
    assert closed_at is not None, "connection still open"
    assert closed_at - start <= SLOW + 1.0 + 1.0, closed_at - start
    assert len(responses) == 2, data
    _json_error(responses[1], {408})


# --------------------------------------------------------------------------- before a 101


def test_upgrade_waiting_for_101_holds_at_most_64k(holes: Holes) -> None:
    """While the backend has not answered an Upgrade request, the client pushes as fast as
    it can: splitter holds at most 64 KiB itself and stops reading, so its memory stays
    flat and the client's sends block; once the 101 comes, every byte held reaches the
    backend intact and in order, and the tunnel works."""
    total = 64 * MIB
    hello = b"TUNNEL-HELLO-" + _uid()
    path = holes.script(
        2.5,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n",
        hello,
        DRAIN,
    )
    head = b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-test\r\n\r\n" % path
    end_marker = b"END-OF-TUNNEL-" + _uid()
    with open_conn(holes.port, timeout=5) as sock:
        sock.sendall(head)
        _backend_request(holes.main, path)  # splitter now waits for the backend's answer
        rss = PeakRss(holes.proc.pid)
        sent = _push(sock, 2.0, total, _numbered_chunk)
        growth = rss.growth()
        sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        # The client's send buffer, splitter's receive buffer as it was when splitter
        # stopped reading (generously 8 MiB), and the 64 KiB splitter holds.
        bound = sndbuf + 8 * MIB + HELD_BEFORE_101
        problems = []
        if growth >= 16 * MIB:
            problems.append(f"splitter's peak RSS grew by {growth / MIB:.1f} MiB")
        if sent > bound:
            problems.append(f"the client pushed {sent / MIB:.1f} MiB (bound {bound / MIB:.1f})")
        assert not problems, "before the 101: " + "; ".join(problems)
        reply = b""
        while hello not in reply:
            piece = sock.recv(65536)
            assert piece, f"closed before the 101 and the backend's first tunnel bytes: {reply!r}"
            reply += piece
        parsed = parse_one(reply, eof=False)
        assert parsed is not None and parsed[0].status == 101, reply
        assert reply[parsed[1] :] == hello, reply
        sock.sendall(end_marker)
        sock.shutdown(socket.SHUT_WR)

        def tunnelled() -> bytes | None:
            _, after = _backend_request(holes.main, path)
            return after if after.endswith(end_marker) else None

        after = wait_until(tunnelled, 15, message="every tunnelled byte at the backend")
    assert len(after) == sent + len(end_marker), (len(after), sent)
    assert after == _numbered_stream(sent) + end_marker, "tunnelled bytes changed or reordered"


# --------------------------------------------------------------------------- request trailers

TRAILER_CASES = [
    pytest.param(b"X-Splitter-Pool: green\r\n", id="override-header"),
    pytest.param(b"Authorization: Bearer %(m)s\r\n", id="authorization"),
    pytest.param(b"Connection: X-Keep\r\n", id="connection"),
    pytest.param(b"Host: %(m)s.example\r\n", id="host"),
    pytest.param(b"X-Request-Id: %(m)s\r\n", id="x-request-id"),
    pytest.param(b"X-Forwarded-For: 198.51.100.7\r\n", id="x-forwarded-for"),
    pytest.param(b"Cookie: session=%(m)s\r\n", id="cookie"),
    pytest.param(b"X-Plain-Trailer: %(m)s\r\n", id="plain"),
]


@pytest.mark.parametrize("delivery", ["one-write", "trailers-later"])
@pytest.mark.parametrize("trailer", TRAILER_CASES)
def test_request_trailers_are_dropped(holes: Holes, trailer: bytes, delivery: str) -> None:
    """A chunked request's trailer fields never become headers, never reach the backend
    (as headers or as trailer bytes), never route (the request goes to its weighted pool)
    and never take part in hop-by-hop handling (X-Keep stays)."""
    m = b"trailer-" + _uid()
    path = b"/tr-" + _uid()
    head = (
        b"POST %s HTTP/1.1\r\nHost: a\r\nX-Keep: kept\r\nTransfer-Encoding: chunked\r\n\r\n" % path
    )
    chunks = b"5\r\nhello\r\n6\r\n world\r\n"
    end = b"0\r\n" + trailer % {b"m": m} + b"X-Trailer-Mark: " + m + b"\r\n\r\n"
    with RawConn(holes.port) as conn:
        if delivery == "one-write":
            conn.send(head + chunks + end)
        else:
            conn.send(head + chunks)
            time.sleep(0.3)
            conn.send(end)
        resp = conn.read_response()
    assert resp.status == 200, (resp.status, resp.body[:300])
    rid = resp.header("X-Request-Id")
    assert rid and m.decode() not in rid, "a trailer set the request id"
    assert resp.body == rid.encode(), "the answer did not come from the main pool's backend"
    assert not any(path in h for h in holes.green.heads()), "a trailer routed the request"
    seen_head, after = _backend_request(holes.main, path)
    assert _header_values(seen_head, b"X-Keep") == [b"kept"], "a trailer stripped X-Keep"
    assert m not in seen_head + after, "a trailer field reached the backend"
    assert _header_values(seen_head, b"Host") == [b"a"]
    assert _header_values(seen_head, b"X-Forwarded-For") == [b"127.0.0.1"]
    assert _header_values(seen_head, b"X-Request-Id") == [rid.encode()]
    for name in (b"X-Splitter-Pool", b"Authorization", b"Content-Length", b"Cookie"):
        assert _header_values(seen_head, name) == [], name
    assert _header_values(seen_head, b"Transfer-Encoding") == [b"chunked"]
    body, trailers, _ = _dechunk(after)
    assert (body, trailers) == (b"hello world", []), (body, trailers)


@pytest.mark.parametrize("delivery", ["one-write", "trailers-later"])
@pytest.mark.parametrize(
    "trailer", [b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"], ids=["cl", "te"]
)
def test_framing_fields_in_request_trailers_are_refused(
    holes: Holes, trailer: bytes, delivery: str
) -> None:
    """A framing field in a trailer section is a smuggling attempt, as llhttp (and Node.js)
    judge it: 400, and the request never completes at the backend."""
    path = b"/trf-" + _uid()
    head = b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" % path
    with RawConn(holes.port) as conn:
        if delivery == "one-write":
            conn.send(head + b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n")
        else:
            conn.send(head + b"5\r\nhello\r\n")
            time.sleep(0.3)
            conn.send(b"0\r\n" + trailer + b"\r\n")
        resp = conn.read_response()
        assert resp.status == 400
        assert conn.closed_by_peer()
    time.sleep(0.2)
    for head_seen in holes.main.heads():
        assert path not in head_seen or delivery == "trailers-later"
    if delivery == "trailers-later":
        _, after = _backend_request(holes.main, path)
        assert not after.endswith(b"0\r\n\r\n"), "the request was completed at the backend"


def _trailer_fields(kind: str) -> bytes:
    if kind == "count":  # small fields, more than max_header_count
        return b"".join(b"X-T%d: v\r\n" % i for i in range(MAX_HEADER_COUNT + 10))
    # a few fields, twice max_header_bytes
    return b"".join(b"X-Big%d: %s\r\n" % (i, b"b" * 1000) for i in range(8))


@pytest.mark.parametrize("delivery", ["one-write", "trailers-later"])
@pytest.mark.parametrize("kind", ["count", "bytes"])
def test_request_trailers_over_header_limits_are_refused(
    holes: Holes, kind: str, delivery: str
) -> None:
    """A trailer section over max_header_count or max_header_bytes: 431 (or 400) and the
    close; the request never completes at the backend."""
    path = b"/tr-limit-" + _uid()
    head = b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" % path
    chunks = b"5\r\nhello\r\n"
    end = b"0\r\n" + _trailer_fields(kind) + b"\r\n"
    with RawConn(holes.port) as conn:
        if delivery == "one-write":
            conn.send(head + chunks + end)
        else:
            conn.send(head + chunks)
            time.sleep(0.3)
            try:
                conn.send(end)
            except (BrokenPipeError, ConnectionResetError):
                pass
        data, closed_at = _until_close(conn, 3)
    responses = parse_responses(data)
    assert len(responses) == 1, data[:500]
    _json_error(responses[0], {400, 431})
    assert closed_at is not None, "connection left open"
    time.sleep(0.2)
    for head_seen in holes.main.heads():
        if path in head_seen:
            _, after = _backend_request(holes.main, path)
            assert _dechunk(after)[1] is None, "the request completed at the backend"


def test_endless_request_trailer_is_refused_with_flat_memory(holes: Holes) -> None:
    """A trailer line that never ends: refused (431 or 400) once past the header limits;
    splitter neither buffers it nor keeps reading."""
    path = b"/tr-endless-" + _uid()
    head = b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" % path
    with open_conn(holes.port) as sock:
        sock.sendall(head + b"5\r\nhello\r\n0\r\nX-Endless: ")
        rss = PeakRss(holes.proc.pid)
        sent = _push(sock, 2.0, 16 * MIB, lambda k: b"a" * 65536)
        growth = rss.growth()
        data, how = read_until_end(sock, 3)
    problems = _error_problems(data, how, {400, 431})
    if growth >= 8 * MIB:
        problems.append(f"peak RSS grew by {growth / MIB:.1f} MiB ({sent / MIB:.1f} MiB sent)")
    assert not problems, "; ".join(problems)


# --------------------------------------------------------------------------- excess response bytes


@dataclass(frozen=True)
class Excess:
    name: str
    method: bytes
    framed: bytes  # the response within its framing
    status: int
    body: bytes
    whole: bool  # the excess looks like a whole response
    later: bool  # the excess comes in a later write

    def steps(self, mark: bytes) -> tuple[bytes | float, ...]:
        excess = OK_HEAD % len(mark) + mark if self.whole else mark
        if self.later:
            return (self.framed, 0.2, excess)
        return (self.framed + excess,)


_CL = OK_HEAD % 5 + b"hello"
_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
_204 = b"HTTP/1.1 204 No Content\r\n\r\n"
_304 = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n'
_HEAD = OK_HEAD % 5

EXCESS_CASES = [
    Excess("content-length", b"GET", _CL, 200, b"hello", False, False),
    Excess("content-length-whole-response", b"GET", _CL, 200, b"hello", True, False),
    Excess("content-length-later", b"GET", _CL, 200, b"hello", False, True),
    Excess("content-length-whole-response-later", b"GET", _CL, 200, b"hello", True, True),
    Excess("204", b"GET", _204, 204, b"", False, False),
    Excess("204-whole-response", b"GET", _204, 204, b"", True, False),
    Excess("304", b"GET", _304, 304, b"", False, False),
    Excess("304-whole-response", b"GET", _304, 304, b"", True, False),
    Excess("head", b"HEAD", _HEAD, 200, b"", False, False),
    Excess("head-whole-response", b"HEAD", _HEAD, 200, b"", True, False),
    Excess("chunked", b"GET", _CHUNKED, 200, b"hello", False, False),
    Excess("chunked-whole-response", b"GET", _CHUNKED, 200, b"hello", True, False),
    Excess("chunked-later", b"GET", _CHUNKED, 200, b"hello", False, True),
]


class _Recording(RawConn):
    """A RawConn that keeps every byte it received in `seen`."""

    seen = b""

    def _fill(self, deadline: float) -> bool:
        before = len(self.buffer)
        more = super()._fill(deadline)
        self.seen += self.buffer[before:]
        return more

    def next(self, what: str, head: bool = False) -> Response:
        try:
            return self.read_response(head=head)
        except (ConnectionError, TimeoutError) as exc:
            raise AssertionError(f"no response to {what} ({exc}); received {self.seen!r}") from None


@pytest.mark.parametrize("case", EXCESS_CASES, ids=[c.name for c in EXCESS_CASES])
def test_backend_excess_bytes_are_dropped_and_connection_discarded(
    fresh: Holes, case: Excess
) -> None:
    """A backend sends more than its framing allows: the client gets exactly the framed
    response, the next request (pipelined or not on the same connection, and on a new
    one) gets its own answer, the backend connection is never reused, and nothing of the
    excess reaches any client. An excess in a later write is checked with the next
    requests sent once it has arrived (a pipelined request could legitimately take that
    connection before the excess is written)."""
    mark = b"EXCESS-" + _uid()
    path = fresh.script(*case.steps(mark))
    bad = b"%s %s HTTP/1.1\r\nHost: a\r\n\r\n" % (case.method, path)
    rids = [b"next-%d-" % i + _uid() for i in range(3)]
    with _Recording(fresh.port) as conn:
        if case.later:
            conn.send(bad)
        else:
            conn.send(bad + _get(b"/pipelined", rids[0]))
        first = conn.next("the request answered with excess", head=case.method == b"HEAD")
        assert (first.status, first.body) == (case.status, case.body), conn.seen[:300]
        if case.method == b"HEAD":
            assert first.header("Content-Length") == "5"
        if case.later:
            time.sleep(0.5)  # the excess has arrived
            conn.send(_get(b"/next", rids[0]))
        second = conn.next("the next request")
        assert (second.status, second.body) == (200, rids[0]), conn.seen[:500]
        conn.send(_get(b"/next", rids[1]))
        third = conn.next("a later request on the same connection")
        assert (third.status, third.body) == (200, rids[1]), conn.seen[:500]
        assert not conn.closed_by_peer(timeout=0.3), "splitter closed the client connection"
        got = conn.seen
    data, _ = exchange(fresh.port, _get(b"/new-client", rids[2], close=True))
    assert [(r.status, r.body) for r in parse_responses(data)] == [(200, rids[2])], data[:300]
    assert mark not in got + data, "the excess reached a client"
    carried = _carried_after(fresh.main, path)
    assert carried == [[]], f"the connection that sent the excess carried afterwards {carried}"


# --------------------------------------------------------------------------- absolute form

ABSOLUTE_CASES = [
    pytest.param(
        b"http://abs.example/p/a%2Fb?q=%20x&r=/&s", b"/p/a%2Fb?q=%20x&r=/&s", b"abs.example",
        id="http",
    ),
    pytest.param(b"http://abs.example:8080/p", b"/p", b"abs.example:8080", id="http-port"),
    pytest.param(b"https://secure.example/p?x=1", b"/p?x=1", b"secure.example", id="https"),
    pytest.param(b"http://abs.example", b"/", b"abs.example", id="empty-path"),
    pytest.param(b"http://abs.example?q=1", b"/?q=1", b"abs.example", id="query-only"),
]  # fmt: skip


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
@pytest.mark.parametrize(("target", "origin", "authority"), ABSOLUTE_CASES)
def test_absolute_form_reaches_backend_in_origin_form(
    holes: Holes, target: bytes, origin: bytes, authority: bytes, version: bytes
) -> None:
    """`GET http://host/path`: the backend gets `/path` (query byte for byte) with Host and
    X-Forwarded-Host set to the target's authority, whatever the Host header said (an
    HTTP/1.1 request here says another name; an HTTP/1.0 one sends none)."""
    rid = b"abs-" + _uid()
    host = b"Host: other.example\r\n" if version == b"HTTP/1.1" else b""
    request = b"GET %s %s\r\n%sX-Request-Id: %s\r\nConnection: close\r\n\r\n" % (
        target,
        version,
        host,
        rid,
    )
    data, _ = exchange(holes.port, request)
    assert [(r.status, r.body) for r in parse_responses(data)] == [(200, rid)], data[:300]
    seen, _ = _backend_request(holes.main, rid)
    assert seen.split(b"\r\n", 1)[0] == b"GET %s HTTP/1.1" % origin
    assert _header_values(seen, b"Host") == [authority]
    assert _header_values(seen, b"X-Forwarded-Host") == [authority]


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        pytest.param(b"GET http://%(m)s@abs.example/p HTTP/1.1", 400, id="userinfo"),
        pytest.param(b"GET http://u:%(m)s@abs.example/p HTTP/1.1", 400, id="userinfo-password"),
        pytest.param(b"GET ftp://abs.example/%(m)s HTTP/1.1", 400, id="ftp"),
        pytest.param(b"GET ws://abs.example/%(m)s HTTP/1.1", 400, id="ws"),
        pytest.param(b"CONNECT abs.example:443 HTTP/1.1", 501, id="connect"),
    ],
)
def test_absolute_form_refusals(holes: Holes, request_line: bytes, status: int) -> None:
    """Userinfo in the target, a scheme other than http or https: 400; CONNECT: 501;
    refused, the connection closed, never forwarded."""
    m = b"abs-refused-" + _uid()
    request = request_line % {b"m": m} + b"\r\nHost: abs.example\r\nX-Probe: %s\r\n\r\n" % m
    data, how = exchange(holes.port, request, timeout=2)
    responses = parse_responses(data)
    assert len(responses) == 1, data[:300]
    _json_error(responses[0], {status})
    assert how != "timeout", "connection left open"
    time.sleep(0.1)
    assert m not in holes.main.received() + holes.green.received()


# --------------------------------------------------------------------------- Host, Content-Length


def test_http10_without_host_gets_the_backends_host(holes: Holes) -> None:
    rid = b"h10-" + _uid()
    data, _ = exchange(holes.port, b"GET /h10 HTTP/1.0\r\nX-Request-Id: %s\r\n\r\n" % rid)
    assert [(r.status, r.body) for r in parse_responses(data)] == [(200, rid)], data[:300]
    seen, _ = _backend_request(holes.main, rid)
    assert _header_values(seen, b"Host") == [b"127.0.0.1:%d" % holes.main.port], seen


@pytest.mark.parametrize(
    "length",
    [b"9223372036854775808", b"18446744073709551615", b"18446744073709551616", b"9" * 30],
)
def test_content_length_over_int63_is_400(holes: Holes, length: bytes) -> None:
    m = b"cl-" + _uid()
    request = b"POST /%s HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\nabc" % (m, length)
    data, how = exchange(holes.port, request, timeout=3)
    responses = parse_responses(data)
    assert len(responses) == 1, (how, data[:300])
    _json_error(responses[0], {400})
    assert how != "timeout", "connection left open"
    time.sleep(0.1)
    assert m not in holes.main.received(), "forwarded"


def test_content_length_int63_max_is_not_refused(holes: Holes) -> None:
    """2^63 - 1 is a valid length: with max_body unset, the request starts."""
    path = b"/cl-max-" + _uid()
    with RawConn(holes.port) as conn:
        conn.send(
            b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n" % path
        )
        seen, _ = _backend_request(holes.main, path)
        assert _header_values(seen, b"Content-Length") == [b"9223372036854775807"]
        assert conn.buffer == b""


# --------------------------------------------------------------------------- backend answers


def test_101_to_a_plain_request_is_502(holes: Holes) -> None:
    """A 101 to a request that did not ask to upgrade: a complete 502 JSON error (not a
    reset), and the backend connection is not used again."""
    path = holes.script(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    for _ in range(3):
        data, how = exchange(holes.port, _get(path, _uid(), close=True))
        responses = parse_responses(data)
        assert len(responses) == 1 and how == "eof", (how, data[:300])
        _json_error(responses[0], {502})
    carried = _carried_after(holes.main, path)
    assert carried == [[], [], []], f"the connections that sent a 101 carried after: {carried}"
    _assert_served(holes.port)


def _fields(n: int, size: int, name: bytes = b"X-F") -> bytes:
    return b"".join(b"%s%d: %s\r\n" % (name, i, b"v" * size) for i in range(n))


ENDLESS = [b"a" * 65536] * 256  # 16 MiB, never a line end

RESPONSE_HEADS_OVER = [
    pytest.param((b"HTTP/1.1 200 OK\r\nX-Endless: ", *ENDLESS), id="endless-line"),
    pytest.param(
        (b"HTTP/1.1 200 OK\r\n" + _fields(8, 1000) + b"Content-Length: 2\r\n\r\nok",),
        id="bytes",
    ),
    pytest.param(
        (
            b"HTTP/1.1 200 OK\r\n"
            + _fields(MAX_HEADER_COUNT + 10, 1)
            + b"Content-Length: 2\r\n\r\nok",
        ),
        id="count",
    ),
    pytest.param(
        (
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"Set-Cookie: c%d=%s\r\n" % (i, b"v" * 200) for i in range(20_000))
            + b"Content-Length: 2\r\n\r\nok",
        ),
        id="set-cookie-flood",
    ),
]


@pytest.mark.parametrize("steps", RESPONSE_HEADS_OVER)
def test_backend_head_over_limits_is_502(holes: Holes, steps: tuple[bytes, ...]) -> None:
    """A response head over max_header_bytes or max_header_count (or a line that never
    ends): 502, and splitter's memory stays flat."""
    path = holes.script(*steps)
    rss = PeakRss(holes.proc.pid)
    start = time.monotonic()
    data, how = exchange(holes.port, _get(path, _uid(), close=True), timeout=6)
    elapsed = time.monotonic() - start
    growth = rss.growth()
    problems = _error_problems(data, how, {502})
    if elapsed >= 3:
        problems.append(f"answered after {elapsed:.1f}s")
    if growth >= 8 * MIB:
        problems.append(f"peak RSS grew by {growth / MIB:.1f} MiB")
    assert not problems, "; ".join(problems)


def test_backend_head_within_limits_passes(holes: Holes) -> None:
    """The control: 20 fields and about 3.4 KiB of them is within the limits."""
    head_fields = _fields(MAX_HEADER_COUNT - 1, 160, b"X-Within-")
    path = holes.script(b"HTTP/1.1 200 OK\r\n" + head_fields + b"Content-Length: 2\r\n\r\nok")
    data, _ = exchange(holes.port, _get(path, _uid(), close=True))
    [resp] = parse_responses(data)
    assert (resp.status, resp.body) == (200, b"ok")
    for i in range(MAX_HEADER_COUNT - 1):
        assert resp.header_all(f"X-Within-{i}") == ["v" * 160]


def _chunked_with_trailers(trailers: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + trailers


def test_response_trailers_are_not_headers(holes: Holes) -> None:
    m = b"resp-trailer-" + _uid()
    path = holes.script(_chunked_with_trailers(b"X-Resp-Trailer: %s\r\n\r\n" % m))
    data, _ = exchange(holes.port, _get(path, _uid(), close=True))
    [resp] = parse_responses(data)
    assert (resp.status, resp.body, resp.complete) == (200, b"hello", True)
    assert not any(m.decode() in v for _, v in resp.headers)


RESPONSE_TRAILERS_OVER = [
    pytest.param(
        (_chunked_with_trailers(_fields(MAX_HEADER_COUNT + 10, 1) + b"\r\n"),), id="count"
    ),
    pytest.param((_chunked_with_trailers(_fields(8, 1000) + b"\r\n"),), id="bytes"),
    pytest.param((_chunked_with_trailers(b"X-Endless: "), *ENDLESS), id="endless"),
]


@pytest.mark.parametrize("steps", RESPONSE_TRAILERS_OVER)
def test_backend_trailers_over_limits_abort_the_response(
    holes: Holes, steps: tuple[bytes, ...]
) -> None:
    """A response's trailer section over the header limits: the client gets a 502 or a
    visibly aborted response (never a complete one), soon, and splitter's memory stays
    flat."""
    path = holes.script(*steps)
    rss = PeakRss(holes.proc.pid)
    start = time.monotonic()
    data, how = exchange(holes.port, _get(path, _uid(), close=True), timeout=6)
    elapsed = time.monotonic() - start
    growth = rss.growth()
    responses = parse_responses(data)
    problems = []
    if responses and responses[0].status == 502:
        problems += _error_problems(data, how, {502})
    elif len(responses) != 1 or responses[0].status != 200 or not responses[0].chunked:
        problems.append(f"unexpected answer ({how}): {data[:300]!r}")
    elif responses[0].complete and how != "reset":
        problems.append(f"a complete response ({how}): {data[:300]!r}")
    if elapsed >= 3:
        problems.append(f"ended after {elapsed:.1f}s")
    if growth >= 8 * MIB:
        problems.append(f"peak RSS grew by {growth / MIB:.1f} MiB")
    assert not problems, "; ".join(problems)

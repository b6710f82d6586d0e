"""HTTP/2 clients that attack, end to end (contract section 14, "Limits"; section 4a): the
real splitter process on loopback, a raw attacker (frames built with hyperframe, header
blocks in HPACK without the dynamic table, written with plain `sendall`), and what the
attacker and the clients beside it see.

- Over 128 concurrent streams: h2 ends the connection (GOAWAY PROTOCOL_ERROR).
- Header lists over section 4a's limits: 431 on the stream, the connection goes on; far
  over them (a block of CONTINUATIONs that never ends, an HPACK bomb): GOAWAY
  ENHANCE_YOUR_CALM, with splitter's memory flat.
- Floods (rapid reset, SETTINGS, PING, empty DATA, PRIORITY, WINDOW_UPDATE, refused
  streams): GOAWAY ENHANCE_YOUR_CALM (11) and the connection closed, while another client
  is served.
- A frame over SETTINGS_MAX_FRAME_SIZE: GOAWAY FRAME_SIZE_ERROR at its header.
- Flow control both ways: responses nobody reads (windows shut, or open and the socket
  unread) and uploads nobody reads hold bounded memory; the send deadline resets what
  waits too long, and a slow reader that keeps reading is not cut; a client that ignores
  splitter's window gets FLOW_CONTROL_ERROR.
- `max_body` (413) and the body's idle gap (408) on one stream, the connection going on;
  the header deadline and the keep-alive idle end the connection; shutdown is not held
  past its grace.
- Garbage after the preface: GOAWAY with a protocol error, one log line per kind and
  second, no traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.e2e.test_http import RssSampler
from tests.h2client import H2Client
from tests.rawbackend import RawBackend
from tests.support import (
    LOCALHOST,
    NO_HEALTH_DOWN,
    Backend,
    SplitterProc,
    http_request,
    pools_config,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR = 1
FLOW_CONTROL_ERROR = 3
FRAME_SIZE_ERROR = 6
REFUSED_STREAM = 7
CANCEL = 8
ENHANCE_YOUR_CALM = 11
MIB = 1024 * 1024

# Small limits, so that every limit is reached quickly (section 4a's keys).
LIMITS: dict[str, Any] = {
    "max_request_line": 1024,
    "max_header_bytes": 4096,
    "max_header_count": 20,
    "max_body": 100_000,
    "header_timeout": "1s",
    "body_idle_timeout": "1s",
    "keepalive_timeout": "2s",
}
# What the HPACK decoder and the flood guard allow one header block (h2session, guard).
BLOCK_BUDGET = 2 * (4096 + 1024)


# --------------------------------------------------------------------------- frames


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """A header block that leaves HPACK's dynamic table as it was (never indexed
    literals), so that raw blocks and an h2 client's can share a connection."""
    encoder = hpack.Encoder()
    never = [hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields]
    return bytes(encoder.encode(never, huffman=False))


def request_fields(
    path: bytes = b"/", method: bytes = b"GET", extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    fields = [(b":method", method), (b":scheme", b"http"), (b":path", path),
              (b":authority", b"example.test")]  # fmt: skip
    return fields + (extra or [])


def headers(sid: int, data: bytes, end_stream: bool = True, end_headers: bool = True) -> bytes:
    flags = ["END_HEADERS"] if end_headers else []
    if end_stream:
        flags.append("END_STREAM")
    return bytes(HeadersFrame(sid, data=data, flags=flags).serialize())


def get(sid: int, path: bytes = b"/") -> bytes:
    return headers(sid, block(request_fields(path)))


def frame(f: Frame) -> bytes:
    return bytes(f.serialize())


def rst(sid: int, code: int = CANCEL) -> bytes:
    return frame(RstStreamFrame(sid, error_code=code))


def data_frame(sid: int, data: bytes, end_stream: bool = False) -> bytes:
    return frame(DataFrame(sid, data=data, flags=["END_STREAM"] if end_stream else []))


# --------------------------------------------------------------------------- the attacker


class Attacker:
    """A raw HTTP/2 connection: bytes out as given; frames in parsed into what a client
    sees (responses' statuses, resets, GOAWAY), reading only when asked."""

    def __init__(self, port: int, preface: bool = True) -> None:
        self.sock = socket.create_connection((LOCALHOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = hpack.Decoder()
        self.inbox = b""
        self.block = b""  # a response header block waiting for its CONTINUATION
        self.block_sid = 0
        self.goaway: tuple[int, int] | None = None  # (last stream, error code)
        self.goaways = 0
        self.status: dict[int, int] = {}
        self.body: dict[int, int] = {}  # DATA bytes received per stream
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.closed = False  # splitter closed (FIN) or reset the connection
        self.cut = False  # a write failed: splitter had closed the connection
        self.sent = 0
        if preface:  # and windows wide open: the attacker reads everything
            settings = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 30})
            window = WindowUpdateFrame(0, window_increment=1 << 30)
            self.send(PREFACE + frame(settings) + frame(window))

    def send(self, data: bytes) -> bool:
        if self.cut:
            return False
        self.sock.settimeout(10)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise AssertionError("splitter stopped reading and kept the connection") from None
        except (BrokenPipeError, ConnectionResetError):
            self.cut = True
            return False
        self.sent += len(data)
        return True

    def pump(self, timeout: float = 0.0) -> None:
        """Read what has come (waiting up to `timeout` for the first bytes)."""
        while not self.closed:
            self.sock.settimeout(timeout if timeout > 0 else 0.0)
            try:
                data = self.sock.recv(262144)
            except (BlockingIOError, TimeoutError):
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
            self._parse(data)
            timeout = 0.0

    def read_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return done()
            self.pump(min(left, 0.2))
        return True

    def wait_ended(self, sid: int, timeout: float = 5.0) -> bool:
        """Read until stream `sid` has its END_STREAM."""
        return self.read_until(lambda: sid in self.ended, timeout)

    def read_until_closed(self, timeout: float = 10.0) -> bool:
        return self.read_until(lambda: self.closed, timeout)

    def _parse(self, data: bytes) -> None:
        self.inbox += data
        buf = self.inbox
        pos = 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if len(buf) - pos < 9 + length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9 : pos + 9 + length]
            pos += 9 + length
            if kind == 7:  # GOAWAY
                self.goaways += 1
                self.goaway = (
                    int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
                    int.from_bytes(payload[4:8], "big"),
                )
            elif kind == 3:  # RST_STREAM
                self.resets[sid] = int.from_bytes(payload[0:4], "big")
            elif kind == 0:  # DATA (splitter never pads)
                self.body[sid] = self.body.get(sid, 0) + length
                if flags & 0x1:
                    self.ended.add(sid)
            elif kind in (1, 9):  # HEADERS, CONTINUATION
                if kind == 1:
                    self.block, self.block_sid = payload, sid
                    if flags & 0x1:
                        self.ended.add(sid)
                else:
                    self.block += payload
                if flags & 0x4:  # END_HEADERS
                    for name, value in self.decoder.decode(self.block, raw=True):
                        if name == b":status":
                            self.status.setdefault(self.block_sid, int(value))
                    self.block = b""
        self.inbox = buf[pos:]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Attacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flood(attacker: Attacker, chunk: Callable[[int], bytes], rounds: int) -> int:
    """Send `chunk(i)` for i in range(rounds) until splitter ends the connection, reading
    its answers between rounds; the number of rounds sent."""
    for i in range(rounds):
        if not attacker.send(chunk(i)):
            return i
        attacker.pump()
        if attacker.closed:
            return i + 1
    return rounds


def assert_calmed(attacker: Attacker) -> None:
    """GOAWAY ENHANCE_YOUR_CALM, and the connection closed."""
    assert attacker.read_until_closed(10), "the connection stayed open"
    assert attacker.goaway is not None, "closed without a GOAWAY"
    assert attacker.goaway[1] == ENHANCE_YOUR_CALM, attacker.goaway


# --------------------------------------------------------------------------- bystanders


class Bystander:
    """A well-behaved client beside an attack, in a thread: an HTTP/1.1 GET and an h2c
    GET in turn, until stopped; every answer must come, and be right."""

    def __init__(self, proc: SplitterProc) -> None:
        self.proc = proc
        self.answers: list[tuple[str, int, bytes]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _once(self) -> None:
        status, _, body = http_request(self.proc.proxy_url + "/", timeout=10)
        self.answers.append(("http/1.1", status, body))
        with H2Client(self.proc.proxy_port, timeout=10) as client:
            answer = client.get("/")
            self.answers.append(("h2c", answer.status, answer.body))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
            except BaseException as exc:  # reported by check()
                self.errors.append(exc)
                return
            self._stop.wait(0.02)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def check(self, body: bytes | None) -> None:
        """Every request of the bystander was answered 200 with `body` (any, when None),
        at least one of each protocol."""
        assert not self._thread.is_alive(), "the bystander is stuck"
        assert not self.errors, self.errors
        assert {kind for kind, _, _ in self.answers} == {"http/1.1", "h2c"}, self.answers
        wrong = [a for a in self.answers if a[1] != 200 or body not in (None, a[2])]
        assert not wrong, wrong


def served(proc: SplitterProc, body: bytes | None) -> None:
    """A new client is served (200 with `body`, any when None), by HTTP/1.1 and by h2c
    (while the attacker's connection is still open, when called from inside an attack)."""
    status, _, got = http_request(proc.proxy_url + "/", timeout=10)
    assert status == 200 and body in (None, got)
    with H2Client(proc.proxy_port, timeout=10) as client:
        answer = client.get("/")
        assert answer.status == 200 and body in (None, answer.body)


# --------------------------------------------------------------------------- helpers


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def as_dict(data: object) -> dict[str, Any]:
    assert isinstance(data, dict)
    return data


def tcp_state(sock: socket.socket) -> str:
    """The kernel's state of the connection of `sock` (CLOSE_WAIT: the peer closed it;
    GONE: it reset it), seen without reading what waits in its receive buffer."""
    port = sock.getsockname()[1]
    states = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "07": "CLOSE"}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return states.get(fields[3], fields[3])
    return "GONE"


def tracebacks(proc: SplitterProc) -> list[str]:
    return [line for line in proc.stderr_text().splitlines() if "Traceback" in line]


def config(backend: Backend | RawBackend | str, **extra: Any) -> dict[str, Any]:
    url = backend if isinstance(backend, str) else backend.url
    out = pools_config({"main": url}, {"main": 100}, health_check=dict(NO_HEALTH_DOWN))
    out["limits"] = dict(LIMITS)
    out.update(extra)
    return out


@pytest.fixture
def blue(three_pools: dict[str, Backend]) -> Backend:
    return three_pools["blue"]


@pytest.fixture
def sp(blue: Backend, splitter_factory: Any) -> SplitterProc:
    """splitter with the small limits in front of the Flask backend (answers "blue")."""
    proc: SplitterProc = splitter_factory(config(blue))
    proc.wait_readyz()
    return proc


class Sink:
    """An HTTP/1.1 backend that answers its health checks and never reads a request
    body (nor answers the request): an upload to it can only fill buffers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        # A small receive buffer (inherited by accepted sockets): the kernel holds little.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.listener.bind((LOCALHOST, 0))
        self.listener.listen(64)
        self.url = f"http://{LOCALHOST}:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        head = b""
        while not self.stopped.is_set():
            try:
                piece = conn.recv(1)  # byte by byte: nothing of a body is read ahead
            except TimeoutError:
                continue
            except OSError:
                break
            if not piece:
                break
            head += piece
            if head.endswith(b"\r\n\r\n"):
                if head.startswith(b"GET /healthz "):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    head = b""
                    continue
                self.held.append(conn)
                self.stopped.wait()  # the body is never read
                break
        conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def sink() -> Iterator[Sink]:
    backend = Sink()
    yield backend
    backend.stop()


# --------------------------------------------------------------------------- streams


def held(backend: RawBackend) -> int:
    return sum(1 for head in backend.heads() if b"/hold" in head)


def test_more_than_128_concurrent_streams_end_the_connection(
    raw_backend: Callable[..., RawBackend], splitter_factory: Any
) -> None:
    # The backend holds each request 3 s: the streams stay open meanwhile.
    ok = RawBackend.OK % 4 + b"held"
    backend = raw_backend(lambda head: [3.0, ok] if b"/hold" in head else None)
    proc: SplitterProc = splitter_factory(config(backend, timeouts={"read": "10s"}))
    with Attacker(proc.proxy_port) as attacker:
        sids = [2 * i + 1 for i in range(128)]
        assert attacker.send(b"".join(get(sid, b"/hold") for sid in sids))
        # All 128 are taken: they reach the backend.
        wait_until(lambda: held(backend) == 128, 10, message="128 requests")
        attacker.pump(0.2)
        assert attacker.goaway is None and not attacker.closed
        served(proc, None)  # the backend's default answer: another client goes on
        # The 129th: h2 treats it as a connection error (RFC 9113 5.1.2 allows a stream
        # error or this), GOAWAY PROTOCOL_ERROR naming the last stream it took.
        attacker.send(get(257, b"/hold"))
        assert attacker.read_until_closed(10)
        assert attacker.goaway == (255, PROTOCOL_ERROR)
        assert 257 not in attacker.status
    time.sleep(0.5)
    assert held(backend) == 128  # the 129th never reached the backend
    assert not tracebacks(proc)


def test_streams_over_the_limit_in_turn_are_served(
    raw_backend: Callable[..., RawBackend], splitter_factory: Any
) -> None:
    """The limit is on streams open at once: 128 open, one ends, another may open."""
    ok = RawBackend.OK % 4 + b"held"
    backend = raw_backend(lambda head: [2.0, ok] if b"/hold" in head else None)
    proc: SplitterProc = splitter_factory(config(backend, timeouts={"read": "10s"}))
    with Attacker(proc.proxy_port) as attacker:
        held = [2 * i + 1 for i in range(127)]
        assert attacker.send(b"".join(get(sid, b"/hold") for sid in held))
        quick = [2 * i + 1 for i in range(127, 137)]  # one at a time, the 128th each
        for sid in quick:
            attacker.send(get(sid, b"/"))
            assert attacker.wait_ended(sid)
            assert attacker.status[sid] == 200
        assert attacker.read_until(lambda: all(s in attacker.ended for s in held), 10)
        assert {attacker.status[s] for s in held} == {200}
        assert attacker.goaway is None and not attacker.closed


# --------------------------------------------------------------------------- header lists


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([(b"x-f%d" % i, b"v") for i in range(30)], id="too-many-fields"),
        pytest.param([(b"x-big", b"a" * 5000)], id="too-many-bytes"),
        pytest.param([(b"x-b%d" % i, b"b" * 300) for i in range(18)], id="bytes-in-fields"),
    ],
)
def test_header_list_over_limits_is_431_and_connection_goes_on(
    sp: SplitterProc, extra: list[tuple[bytes, bytes]]
) -> None:
    with H2Client(sp.proxy_port) as client:
        sid = client.request("GET", "/", headers=[(n.decode(), v.decode()) for n, v in extra])
        answer = client.response(sid)
        assert answer.status == 431
        assert as_dict(answer.json())["status"] == 431
        assert client.goaway is None
        assert client.get("/").body == b"blue"  # the connection goes on
    # ... and so does a list just within them.
    with H2Client(sp.proxy_port) as client:
        fields = [(f"x-f{i}", "v" * 100) for i in range(14)]
        assert client.get("/", headers=fields).status == 200


def test_header_list_in_continuations_over_limits_is_431(sp: SplitterProc) -> None:
    """The same list split over HEADERS and CONTINUATION frames is counted whole."""
    with Attacker(sp.proxy_port) as attacker:
        data = block(request_fields(extra=[(b"x-big%d" % i, b"c" * 600) for i in range(9)]))
        assert len(data) > 5000
        pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        out = headers(1, pieces[0], end_headers=False)
        for i, piece in enumerate(pieces[1:], 1):
            flags = ["END_HEADERS"] if i == len(pieces) - 1 else []
            out += frame(ContinuationFrame(1, data=piece, flags=flags))
        assert attacker.send(out)
        assert attacker.wait_ended(1)
        assert attacker.status[1] == 431
        attacker.send(get(3))
        assert attacker.wait_ended(3)
        assert attacker.status[3] == 200 and attacker.goaway is None


@pytest.mark.parametrize("size", [0, 100, 16384], ids=["empty", "small", "full"])
def test_continuation_flood_is_calmed_with_flat_memory(sp: SplitterProc, size: int) -> None:
    """CVE-2024-27316: a HEADERS without END_HEADERS, then CONTINUATION frames forever."""
    before = rss_kib(sp.pid)
    payload = b"x" * size
    burst = frame(ContinuationFrame(1, data=payload)) * 64
    with Attacker(sp.proxy_port) as attacker:
        attacker.send(headers(1, block(request_fields()), end_headers=False))
        flood(attacker, lambda _: burst, 2000)  # up to 2 GiB when never stopped
        assert_calmed(attacker)
        assert attacker.goaway == (0, ENHANCE_YOUR_CALM)  # the stream was never taken
    grown = rss_kib(sp.pid) - before
    assert grown < 8 * 1024, f"RSS grew {grown} KiB"
    served(sp, b"blue")
    assert not tracebacks(sp)


def test_hpack_bomb_is_calmed(sp: SplitterProc) -> None:
    """A small block that decodes to a huge list: one big field put in HPACK's dynamic
    table, then referenced a hundred times (1 byte each)."""
    before = rss_kib(sp.pid)
    with Attacker(sp.proxy_port) as attacker:
        big = b"a" * 3000
        # Literal with incremental indexing, new name (RFC 7541 6.2.1): dynamic index 62.
        insert = b"\x40" + hpack.Encoder().encode([(b"x-bomb", big)], huffman=False)[1:]
        first = block(request_fields()) + insert
        attacker.send(headers(1, first))
        assert attacker.wait_ended(1)
        assert attacker.status[1] == 200  # 3 KB of field: within the limits
        bomb = block(request_fields()) + b"\xbe" * 100  # 300 KB of fields in 100 bytes
        attacker.send(headers(3, bomb))
        assert_calmed(attacker)
        assert 3 not in attacker.status
    assert rss_kib(sp.pid) - before < 8 * 1024
    served(sp, b"blue")
    assert not tracebacks(sp)


def test_frame_over_max_frame_size_is_refused_at_its_header(sp: SplitterProc) -> None:
    """A frame header that announces 16 MiB (SETTINGS_MAX_FRAME_SIZE is 16 KiB): nothing
    of it is buffered; GOAWAY FRAME_SIZE_ERROR at once (RFC 9113 4.2)."""
    before = rss_kib(sp.pid)
    attackers = []
    try:
        for _ in range(4):
            attacker = Attacker(sp.proxy_port)
            attackers.append(attacker)
            attacker.send(get(1))  # a first request: the header deadline is over
            assert attacker.wait_ended(1)
            # An unknown frame type (which h2 would read whole, then ignore).
            attacker.send(((1 << 24) - 1).to_bytes(3, "big") + b"\xaa\x00\x00\x00\x00\x00")
            for _ in range(15):
                if not attacker.send(b"z" * MIB):
                    break
        for attacker in attackers:
            assert attacker.read_until_closed(5)
            assert attacker.goaway == (1, FRAME_SIZE_ERROR)
            assert attacker.sent < 15 * MIB  # the connection ended before the frame did
        grown = rss_kib(sp.pid) - before
        assert grown < 8 * 1024, f"RSS grew {grown} KiB"
    finally:
        for attacker in attackers:
            attacker.close()
    served(sp, b"blue")
    assert not tracebacks(sp)


# --------------------------------------------------------------------------- floods


def test_rapid_reset_is_calmed_and_spares_the_backend(
    raw_backend: Callable[..., RawBackend], splitter_factory: Any
) -> None:
    """CVE-2023-44487: open a stream and reset it at once, thousands of times."""
    backend = raw_backend()
    proc: SplitterProc = splitter_factory(config(backend))
    batch = 100
    with Bystander(proc) as bystander, Attacker(proc.proxy_port) as attacker:

        def streams(i: int) -> bytes:
            first = 1 + 2 * batch * i
            sids = range(first, first + 2 * batch, 2)
            if i == 3:  # in the middle of the attack, others are served
                served(proc, None)
            return b"".join(get(sid, b"/reset-me") + rst(sid) for sid in sids)

        rounds = flood(attacker, streams, 100)  # at most 10,000 streams
        assert_calmed(attacker)
        opened = rounds * batch
    bystander.check(None)
    assert rounds < 100, "never stopped"
    time.sleep(0.5)
    seen = sum(backend.request_counts())  # the bystander's requests aside
    reached = sum(1 for head in backend.heads() if b"/reset-me" in head)
    print(f"rapid reset: {opened} streams opened, {reached} reached the backend ({seen})")
    assert reached < opened // 4, (reached, opened)
    assert not tracebacks(proc)


def test_refused_streams_count_as_resets(sp: SplitterProc) -> None:
    """A client that makes splitter refuse its streams (malformed heads), a hundred at a
    time, each answered before the next hundred: a reset it provokes counts as one it
    sends."""
    bad = block(request_fields(extra=[(b"x-bad", b"a\x01b")]))
    with Attacker(sp.proxy_port) as attacker:
        for i in range(30):  # 3000 streams at most
            sids = [1 + 2 * (100 * i + k) for k in range(100)]
            if not attacker.send(b"".join(headers(sid, bad) for sid in sids)):
                break
            if not attacker.wait_ended(sids[-1]):
                break
        assert_calmed(attacker)
        answered = len(attacker.status)
        assert set(attacker.status.values()) == {400}  # each refused on its stream
        assert 900 <= answered < 1200, answered  # the guard's burst: 1000 resets
    served(sp, b"blue")
    assert not tracebacks(sp)


def _settings(i: int) -> bytes:
    return frame(SettingsFrame(0)) * 50


def _pings(i: int) -> bytes:
    return b"".join(frame(PingFrame(0, opaque_data=(i * 50 + k).to_bytes(8, "big")))
                    for k in range(50))  # fmt: skip


def _priority(i: int) -> bytes:
    return b"".join(frame(PriorityFrame(1 + 2 * k, depends_on=0, stream_weight=16))
                    for k in range(50))  # fmt: skip


def _window_updates(i: int) -> bytes:
    return frame(WindowUpdateFrame(0, window_increment=1)) * 50


FLOODS = {
    "settings": _settings,
    "ping": _pings,
    "priority": _priority,
    "window_update": _window_updates,
}


@pytest.mark.parametrize("kind", list(FLOODS))
def test_control_frame_flood_is_calmed(sp: SplitterProc, kind: str) -> None:
    before = rss_kib(sp.pid)
    with Bystander(sp) as bystander, Attacker(sp.proxy_port) as attacker:
        flood(attacker, FLOODS[kind], 2000)  # 100,000 frames at most
        assert_calmed(attacker)
    bystander.check(b"blue")
    assert rss_kib(sp.pid) - before < 8 * 1024
    assert re.search(rf"refused a connection: HTTP/2 flood \({kind}\)", sp.stderr_text())
    assert not tracebacks(sp)


def test_empty_data_flood_is_calmed(sp: SplitterProc) -> None:
    with Bystander(sp) as bystander, Attacker(sp.proxy_port) as attacker:
        attacker.send(headers(1, block(request_fields(b"/upload", b"POST")), end_stream=False))
        flood(attacker, lambda _: data_frame(1, b"") * 50, 2000)
        assert_calmed(attacker)
    bystander.check(b"blue")
    assert "HTTP/2 flood (empty_frames)" in sp.stderr_text()


def test_ordinary_use_of_control_frames_is_not_a_flood(sp: SplitterProc) -> None:
    """What a browser or a gRPC channel does in a busy minute: pings for keepalive,
    a few SETTINGS, window updates as data comes, cancelled downloads."""
    with H2Client(sp.proxy_port) as client:
        for i in range(300):
            if i % 10 == 0:
                client.h2.ping(i.to_bytes(8, "big"))
            if i % 100 == 0:
                client.h2.update_settings({0x4: 65535 + i})
            if i % 30 == 0:  # a download cancelled after its headers
                sid = client.request("GET", "/stream?n=4&size=65536")
                client.reset(sid)
            answer = client.get("/stream?n=2&size=20000")
            assert answer.status == 200 and len(answer.body) == 40000, i
        assert client.goaway is None


# --------------------------------------------------------------------------- flow control


def test_responses_nobody_reads_hold_bounded_memory_and_are_reset(
    backend_factory: Callable[..., Backend], splitter_factory: Any
) -> None:
    """100 streams of 10 MB each, and no WINDOW_UPDATE: splitter holds little for each,
    and resets them after timeouts.read."""
    big = backend_factory("big", workers=2, threads=64)
    proc: SplitterProc = splitter_factory(config(big, timeouts={"read": "3s"}))
    proc.wait_readyz()
    before = rss_kib(proc.pid)
    with RssSampler(proc.pid) as rss, H2Client(proc.proxy_port, timeout=20) as client:
        client.auto_ack = False
        sids = [client.request("GET", "/stream?n=160&size=65536") for _ in range(100)]
        start = time.monotonic()
        for sid in sids:
            client.response(sid, timeout=20)
        elapsed = time.monotonic() - start
        answers = [client.answers[sid] for sid in sids]
        received = sum(len(a.body) for a in answers)
        assert received <= 65535  # the connection's window, never opened
        assert all(a.reset == CANCEL for a in answers), {a.reset for a in answers}
        assert elapsed < 15
        # The connection goes on once the client reads.
        client.auto_ack = True
        client.h2.increment_flow_control_window(10 * MIB)
        client.flush()
        answer = client.get("/stream?n=4&size=65536")
        assert answer.status == 200 and len(answer.body) == 4 * 65536
    grown = rss.peak - before
    print(f"100 unread streams of 10 MB: RSS peak +{grown} KiB")
    assert grown < 40 * 1024, f"RSS grew {grown} KiB"
    assert not tracebacks(proc)


def test_client_with_open_windows_that_never_reads_holds_bounded_memory(
    backend_factory: Callable[..., Backend], splitter_factory: Any
) -> None:
    """Windows wide open (flow control allows everything) but the socket never read:
    the connection's write buffer stops the backends' reading, for the streams that
    start after it filled as for those before, and the send deadline cuts the
    connection after timeouts.read."""
    big = backend_factory("big", workers=2, threads=64)
    proc: SplitterProc = splitter_factory(config(big, timeouts={"read": "3s"}))
    proc.wait_readyz()
    before = rss_kib(proc.pid)
    with RssSampler(proc.pid) as rss, Attacker(proc.proxy_port) as attacker:
        attacker.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        path = b"/stream?n=160&size=65536"
        for i in range(10):  # 100 streams of 10 MB, ten at a time
            attacker.send(b"".join(get(1 + 2 * (10 * i + k), path) for k in range(10)))
            time.sleep(0.2)
        time.sleep(1.0)
        middle = rss_kib(proc.pid) - before
        # Never read: splitter gives up on the connection after timeouts.read.
        wait_until(lambda: tcp_state(attacker.sock) != "ESTABLISHED", 15, message="cut")
    grown = rss.peak - before
    print(f"100 streams of 10 MB, socket never read: RSS +{middle} KiB, peak +{grown} KiB")
    assert grown < 40 * 1024, f"RSS grew {grown} KiB"
    assert not tracebacks(proc)


def test_slow_reader_that_keeps_reading_is_not_cut(blue: Backend, splitter_factory: Any) -> None:
    """The send deadline is the client's window staying shut for timeouts.read: a
    client that reads slowly but steadily gets its whole response."""
    proc: SplitterProc = splitter_factory(config(blue, timeouts={"read": "1s"}))
    size = 24 * 65536  # about 4.5 s at 64 KiB per 0.2 s
    with H2Client(proc.proxy_port, timeout=20) as client:
        sid = client.request("GET", "/stream?n=24&size=65536")
        answer = client.answers[sid]
        deadline = time.monotonic() + 30
        while not answer.done and time.monotonic() < deadline:
            client.read_once(5)  # acknowledges what it read: 64 KiB more may come
            time.sleep(0.2)
        assert answer.reset is None, f"reset after {len(answer.body)} bytes"
        assert answer.ended and len(answer.body) == size


def test_upload_faster_than_the_backend_reads_is_held_bounded(
    sink: Sink, splitter_factory: Any
) -> None:
    """20 streams upload to a backend that reads nothing: the client's windows close, and
    splitter's memory stays flat."""
    proc: SplitterProc = splitter_factory(
        config(sink.url, limits={**LIMITS, "max_body": None, "body_idle_timeout": "30s"},
               timeouts={"read": "30s"})
    )  # fmt: skip
    before = rss_kib(proc.pid)
    chunk = b"u" * 16384
    with RssSampler(proc.pid) as rss, H2Client(proc.proxy_port, timeout=20) as client:
        sids = [client.request("POST", "/upload", end=False) for _ in range(20)]
        sent = 0
        last_progress = time.monotonic()
        give_up = last_progress + 30
        while time.monotonic() - last_progress < 1.5 and time.monotonic() < give_up:
            progressed = False
            for sid in sids:
                window = client.h2.local_flow_control_window(sid)
                if window >= len(chunk):
                    client.h2.send_data(sid, chunk)
                    sent += len(chunk)
                    progressed = True
            client.flush()
            with contextlib.suppress(TimeoutError):
                client.read_once(0.05)
            if progressed:
                last_progress = time.monotonic()
        assert time.monotonic() < give_up, "the uploads were never held back"
        assert not client.closed and client.goaway is None
    grown = rss.peak - before
    print(f"20 uploads to a backend that reads nothing: {sent} bytes taken, RSS +{grown} KiB")
    # What the client could send is what the kernel buffers on the way to the backend
    # (splitter's socket's send buffer, autotuned up to tcp_wmem's maximum) and a window.
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem_max = int(f.read().split()[2])
    assert sent < 20 * (wmem_max + MIB), sent
    assert grown < 16 * 1024, f"RSS grew {grown} KiB"
    assert len(sink.held) == 20  # every stream did reach the backend
    assert not tracebacks(proc)


def test_upload_past_splitters_window_is_goaway_flow_control_error(sp: SplitterProc) -> None:
    """A client that ignores splitter's window (64 KiB a stream): FLOW_CONTROL_ERROR at the
    first byte past it, nothing of the excess taken."""
    before = rss_kib(sp.pid)
    with Attacker(sp.proxy_port) as attacker:
        attacker.send(headers(1, block(request_fields(b"/upload", b"POST")), end_stream=False))
        piece = data_frame(1, b"f" * 16384)
        flood(attacker, lambda _: piece * 8, 100)  # 12.5 MiB at most, 64 KiB allowed
        assert attacker.read_until_closed(5)
        assert attacker.goaway == (1, FLOW_CONTROL_ERROR)
    assert rss_kib(sp.pid) - before < 8 * 1024
    served(sp, b"blue")
    assert not tracebacks(sp)


def test_shutdown_with_hostile_clients_ends_within_grace(
    blue: Backend, splitter_factory: Any
) -> None:
    """On SIGTERM: GOAWAY; streams opened after it are refused (REFUSED_STREAM, so a
    client may retry them elsewhere); a body that never ends does not hold splitter past
    shutdown.grace."""
    proc: SplitterProc = splitter_factory(
        config(blue, limits={**LIMITS, "body_idle_timeout": "30s"}, shutdown={"grace": "2s"})
    )
    with Attacker(proc.proxy_port) as attacker:
        attacker.send(headers(1, block(request_fields(b"/upload", b"POST")), end_stream=False))
        attacker.send(data_frame(1, b"x"))
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert attacker.read_until(lambda: attacker.goaway is not None, 5)
        assert attacker.goaway == (1, 0)
        for sid in range(3, 23, 2):  # new streams after the GOAWAY, ignoring it
            attacker.send(get(sid))
            attacker.send(data_frame(1, b"x"))  # stream 1 trickles on
            attacker.pump(0.1)
        assert attacker.read_until_closed(10)
        assert all(attacker.resets.get(sid) == REFUSED_STREAM for sid in range(3, 23, 2))
        assert proc.wait(10) == 0
        assert time.monotonic() - start < 2 + 2.0
    assert not tracebacks(proc)


# --------------------------------------------------------------------------- bodies


def test_body_over_max_body_is_413_on_the_stream(
    raw_backend: Callable[..., RawBackend], splitter_factory: Any
) -> None:
    backend = raw_backend()
    proc: SplitterProc = splitter_factory(config(backend))
    body = b"b" * 150_000
    with H2Client(proc.proxy_port) as client:
        # Content-Length says so: refused before any backend is contacted.
        sid = client.request("POST", "/cl", headers=[("content-length", str(len(body)))],
                             end=False)  # fmt: skip
        answer = client.response(sid)
        assert answer.status == 413 and as_dict(answer.json())["status"] == 413
        assert not any(b"/cl" in head for head in backend.heads())
        # Without a length: refused once the body passes max_body.
        sid = client.request("POST", "/nolength", end=False)
        with contextlib.suppress(Exception):  # the stream may be reset while sending
            client.send_body(sid, body)
        answer = client.response(sid)
        assert answer.status == 413
        assert client.get("/").status == 200  # the connection goes on
        assert client.goaway is None
    assert not tracebacks(proc)


def test_body_idle_is_408_on_that_stream_only(blue: Backend, splitter_factory: Any) -> None:
    proc: SplitterProc = splitter_factory(config(blue))
    with H2Client(proc.proxy_port) as client:
        idle = client.request("POST", "/upload", body=b"x" * 100, end=False)
        busy = client.request("POST", "/upload", body=b"y" * 100, end=False)
        start = time.monotonic()
        for _ in range(8):  # 2.4 s: past the idle gap of 1 s, 10 bytes every 0.3 s
            time.sleep(0.3)
            client.send_body(busy, b"z" * 10, end=False)
            with contextlib.suppress(TimeoutError):
                client.read_once(0.01)
        client.send_body(busy, b"", end=True)
        answer = client.response(idle)
        assert answer.status == 408
        assert 0.8 <= time.monotonic() - start
        done = client.response(busy)
        assert done.status == 200 and as_dict(done.json())["bytes"] == 180
        assert client.get("/").body == b"blue"
        assert client.goaway is None


# --------------------------------------------------------------------------- deadlines


def test_preface_and_nothing_more_is_closed_at_the_header_deadline(sp: SplitterProc) -> None:
    with Attacker(sp.proxy_port) as attacker:
        start = time.monotonic()
        assert attacker.read_until_closed(10)
        elapsed = time.monotonic() - start
        assert 0.8 <= elapsed <= 3.0, elapsed
        assert attacker.goaway is not None and attacker.goaway[0] == 0


def test_header_block_never_finished_is_closed_at_the_header_deadline(
    sp: SplitterProc,
) -> None:
    with Attacker(sp.proxy_port) as attacker:
        attacker.send(headers(1, block(request_fields()), end_headers=False))
        start = time.monotonic()
        assert attacker.read_until_closed(10)
        assert 0.5 <= time.monotonic() - start <= 3.0


def test_idle_connection_gets_goaway_after_keepalive_timeout(sp: SplitterProc) -> None:
    with H2Client(sp.proxy_port) as client:
        assert client.get("/").status == 200
        start = time.monotonic()
        assert client.read_until_closed(10)
        elapsed = time.monotonic() - start
        assert 1.5 <= elapsed <= 4.0, elapsed  # keepalive_timeout: 2s
        assert client.goaway is not None
        assert (client.goaway.last_stream_id, client.goaway.error_code) == (1, 0)


# --------------------------------------------------------------------------- garbage


def test_garbage_after_preface_is_goaway_protocol_error(sp: SplitterProc) -> None:
    before = len(sp.stderr_text())
    with Attacker(sp.proxy_port) as attacker:
        # DATA on stream 0 (hyperframe would refuse to build it): PROTOCOL_ERROR.
        attacker.send(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00nope")
        assert attacker.read_until_closed(5)
        assert attacker.goaway is not None and attacker.goaway[1] == PROTOCOL_ERROR
    time.sleep(0.2)
    lines = [ln for ln in sp.stderr_text()[before:].splitlines() if ln.strip()]
    assert len(lines) == 1 and "HTTP/2 protocol error" in lines[0], lines
    served(sp, b"blue")
    assert not tracebacks(sp)


def _random_frames(rng: random.Random) -> bytes:
    """Frames of any type, flags and stream, each of a length within the frame size."""
    out = b""
    for _ in range(rng.randrange(1, 8)):
        payload = rng.randbytes(rng.randrange(0, 64))
        out += len(payload).to_bytes(3, "big") + bytes([rng.randrange(0, 12), rng.randrange(256)])
        out += rng.randrange(0, 8).to_bytes(4, "big") + payload
    return out


def test_random_garbage_is_refused_without_traceback_or_log_flood(sp: SplitterProc) -> None:
    before = len(sp.stderr_text())
    rng = random.Random(20240327)
    codes = []
    for i in range(80):  # random bytes, then random frames
        garbage = rng.randbytes(rng.randrange(1, 3000)) if i < 20 else _random_frames(rng)
        with Attacker(sp.proxy_port) as attacker:
            attacker.send(garbage)
            attacker.read_until_closed(3)
            if attacker.closed and attacker.goaway is not None:
                codes.append(attacker.goaway[1])
    assert len(codes) >= 40, codes  # most garbage is refused at once
    served(sp, b"blue")
    stderr = sp.stderr_text()[before:]
    assert "Traceback" not in stderr, stderr[-3000:]
    logged = re.findall(r"^(\S+ \S+) WARNING \S+ refused a connection: (.*) \(from ", stderr, re.M)
    print(f"80 garbage connections: {len(logged)} log lines; GOAWAY codes {sorted(set(codes))}")
    # Reasons from a short list, none echoing what the client sent (a stream id, an
    # index), so that "one line a second per reason" bounds the log whatever comes.
    reasons = {reason for _, reason in logged}
    for reason in reasons:
        assert re.fullmatch(r"HTTP/2 [a-z ]+( \([A-Za-z_ ]+\))?", reason), reason
    for reason in reasons:
        times = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t, r in logged if r == reason]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.9 for gap in gaps), (reason, gaps)

"""Playbook tests of the data path: the real protocols, exchanges and readers, driven with
bytes in and bytes out, without sockets or an event loop (mitmproxy's Playbook, uvicorn's
mock transport).

    pb = Playbook()
    client = pb.client()
    client.send(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    backend = pb.accept()                     # the connection splitter asked for, now up
    assert backend.request_line() == b"GET / HTTP/1.1"
    backend.reply(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    [response] = client.responses()
    assert response.body == b"ok" and backend.idle

What is faked is the outside: the transports (they record what is written and how the
connection ended), the connector (a test accepts or refuses each connection splitter asks
for) and time (`pb.advance(seconds)` moves the loop's clock and runs the sweep that
enforces every deadline). Everything between is splitter's own code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from splitter import config as config_mod
from splitter.errors import UpstreamConnectError
from splitter.observe.counters import Counters
from splitter.observe.stats import Recorder
from splitter.proxy.downstream import ClientConn
from splitter.proxy.exchange import Exchange
from splitter.proxy.listener import ProxyListener
from splitter.proxy.upstream import BackendConnections, UpstreamConn
from splitter.state import HealthTable, build_live
from tests.rawhttp import Response, parse_responses


class FakeTransport:
    """Records writes; says how the connection was ended (close, abort, half-close)."""

    def __init__(self, peer: str = "127.0.0.1") -> None:
        self.peer = peer
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.aborted, "write after close"
        self.data += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.write(part)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return (self.peer, 40000)
        return default

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    @property
    def ended(self) -> bool:
        return self.closed or self.aborted

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The few loop methods the listener uses, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.soon: list[tuple[Any, tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Handle:
        return _Handle()  # the sweep is run by the test (`Playbook.advance`)

    def call_soon(self, callback: Any, *args: Any) -> _Handle:
        self.soon.append((callback, args))  # run by the test (`Playbook.run_soon`)
        return _Handle()


class Client:
    """One client connection (a real ClientConn on a fake transport)."""

    def __init__(self, pb: Playbook, peer: str) -> None:
        self.pb = pb
        self.transport = FakeTransport(peer)
        self.conn = ClientConn(pb.listener)
        self.transport.protocol = self.conn
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.received = bytearray()

    def send(self, data: bytes) -> None:
        protocol = self.transport.protocol
        if hasattr(protocol, "get_buffer"):  # reading into a buffer (an upgrade waits)
            view = protocol.get_buffer(len(data))
            n = min(len(view), len(data))
            view[:n] = data[:n]
            protocol.buffer_updated(n)
            assert n == len(data), "more bytes than splitter may hold"
            return
        protocol.data_received(data)

    def eof(self) -> None:
        self.transport.protocol.eof_received()

    def gone(self) -> None:
        self.conn.connection_lost(None)

    def take(self) -> bytes:
        """Everything received since the last call."""
        data = self.transport.take()
        self.received += data
        return data

    def responses(self, head: bool = False) -> list[Response]:
        """Every response received so far (whole data, from the start)."""
        self.take()
        return parse_responses(bytes(self.received), head=head)

    @property
    def closed(self) -> bool:
        return self.transport.ended

    @property
    def aborted(self) -> bool:
        return self.transport.aborted

    @property
    def reading(self) -> bool:
        return self.transport.reading


class Backend:
    """One backend connection splitter opened (a real UpstreamConn on a fake transport)."""

    def __init__(self, conn: UpstreamConn, transport: FakeTransport) -> None:
        self.conn = conn
        self.transport = transport
        self.received = bytearray()

    def take(self) -> bytes:
        data = self.transport.take()
        self.received += data
        return data

    def request_head(self) -> bytes:
        self.take()
        data = bytes(self.received)
        end = data.find(b"\r\n\r\n")
        assert end >= 0, f"no complete request head: {data!r}"
        return data[: end + 4]

    def request_line(self) -> bytes:
        return self.request_head().split(b"\r\n", 1)[0]

    def header(self, name: bytes) -> list[bytes]:
        """Values of header `name` in the request head (case-insensitive)."""
        out = []
        for line in self.request_head().split(b"\r\n")[1:]:
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == name.lower():
                out.append(value.strip())
        return out

    def body(self) -> bytes:
        self.take()
        data = bytes(self.received)
        return data[data.find(b"\r\n\r\n") + 4 :]

    def reply(self, data: bytes) -> None:
        self.conn.data_received(data)

    def eof(self) -> None:
        self.conn.eof_received()

    def lost(self, exc: Exception | None = None) -> None:
        self.transport.closed = True
        self.conn.connection_lost(exc)

    @property
    def idle(self) -> bool:
        return self.conn.in_pool

    @property
    def closed(self) -> bool:
        return self.transport.ended


BASE_CONFIG: dict[str, Any] = {
    "listen": "127.0.0.1:8080",
    "pools": {
        "blue": {"weight": 100, "backends": ["http://127.0.0.1:5001"]},
        "green": {"weight": 0, "backends": ["http://127.0.0.1:5002"]},
    },
    "override": {"header": "X-Splitter-Pool"},
    "health_check": {"interval": "1h"},
}


class Playbook:
    """A listener with fake transports, a manual connector and a manual clock."""

    def __init__(self, **overrides: Any) -> None:
        data = dict(BASE_CONFIG)
        data.update(overrides)
        self.config = config_mod.parse(data, env={})
        self.health = HealthTable()
        live = build_live(self.config, {}, b"k" * 32, self.health)
        self.loop = FakeLoop()
        self.counters = Counters()
        self.recorder = Recorder()
        self.observed: list[Exchange] = []
        self.waiting: list[tuple[Exchange, BackendConnections]] = []
        self.opened: list[Backend] = []
        self.listener = ProxyListener(
            live,
            self.loop,  # type: ignore[arg-type]
            self.counters,
            self.recorder,
            connector=self._connect,
            watch=self.observed.append,
        )
        self.listener.access_log = False

    def _connect(self, ex: Exchange, pool: BackendConnections) -> None:
        self.waiting.append((ex, pool))

    # -- clients and backends -----------------------------------------------------------

    def client(self, peer: str = "127.0.0.1") -> Client:
        return Client(self, peer)

    def accept(self) -> Backend:
        """The oldest connection splitter asked for is up: its request goes out."""
        assert self.waiting, "splitter asked for no backend connection"
        ex, pool = self.waiting.pop(0)
        conn = UpstreamConn(pool, ex)
        transport = FakeTransport()
        transport.protocol = conn
        conn.connection_made(transport)  # type: ignore[arg-type]
        backend = Backend(conn, transport)
        self.opened.append(backend)
        return backend

    def refuse(self, why: str = "connection refused") -> None:
        """The oldest connection splitter asked for cannot be made."""
        ex, _ = self.waiting.pop(0)
        ex.connect_failed(UpstreamConnectError(why))

    def pool(self, url: str = "http://127.0.0.1:5001") -> BackendConnections:
        return self.listener.pools[url]

    # -- time ---------------------------------------------------------------------------

    def run_soon(self) -> None:
        """Run the callbacks splitter asked to run on the loop's next turn."""
        while self.loop.soon:
            callback, args = self.loop.soon.pop(0)
            callback(*args)

    def advance(self, seconds: float) -> None:
        """Move the clock and run the sweep (in steps no longer than its interval)."""
        end = self.loop.now + seconds
        step = self.listener.sweep_interval
        while self.loop.now < end:
            self.loop.now = min(end, self.loop.now + step)
            self.listener._sweep()


def config_with(**sections: Mapping[str, Any] | Any) -> dict[str, Any]:
    return dict(sections)

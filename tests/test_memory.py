"""splitter.memory: when memory is given back (time is the only thing mocked); and what a
closed connection leaves behind (a real listener on loopback, a real backend)."""

from __future__ import annotations

import asyncio
import gc
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from splitter import config as config_mod
from splitter import memory
from splitter.proxy.listener import ProxyListener
from splitter.runtime import bind, new_event_loop
from splitter.state import HealthTable, build_live
from splitter.tls.certs import CertStore
from tests.conftest import BackendFactory
from tests.support import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(memory.time, "monotonic", c)
    monkeypatch.setattr(memory, "_last", 0.0)
    return c


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = memory._trim

    def counting(pad: int) -> int:
        calls.append(pad)
        return real(pad) if real is not None else 0

    monkeypatch.setattr(memory, "_trim", counting)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_malloc_trim_is_found_on_linux() -> None:
    assert memory._trim is not None
    assert memory._trim(0) in (0, 1)


def test_release_if_due_runs_at_most_every_min_gap(clock: FakeClock, trims: list[int]) -> None:
    assert memory.release_if_due()
    assert trims == [0]
    clock.now += memory.MIN_GAP / 2
    assert not memory.release_if_due()
    assert trims == [0]
    clock.now += memory.MIN_GAP
    assert memory.release_if_due()
    assert trims == [0, 0]


def test_burst_watch_releases_once_a_burst_is_over(clock: FakeClock, trims: list[int]) -> None:
    watch = memory.BurstWatch()
    assert not watch.check(memory.BURST + 100)  # the burst is going on
    assert not watch.check(memory.BURST)
    assert not watch.check((memory.BURST + 100) // 4 + 1)  # still above a quarter
    assert not watch.check(10)  # below, but still falling
    assert trims == []
    assert watch.check(10)
    assert trims == [0]
    assert watch.peak == 10  # a new peak is measured from here
    assert not watch.check(5)


def test_burst_watch_waits_until_the_count_stops_falling(
    clock: FakeClock, trims: list[int]
) -> None:
    """The sweep closes a burst's idle backend connections a few at a time; what they
    hold is freed after the sweep that closed them, so the release waits for a sweep that
    closed none."""
    watch = memory.BurstWatch()
    assert not watch.check(2000)  # 1,000 clients and 1,000 backend connections
    for idle in (1000, 400, 120, 30, 0):  # the clients are gone; the idle ones time out
        assert not watch.check(idle)
        clock.now += 0.4
    assert trims == []
    assert watch.check(1)  # a new client: not falling any more
    assert trims == [0]


def test_burst_watch_ignores_small_peaks(clock: FakeClock, trims: list[int]) -> None:
    watch = memory.BurstWatch()
    watch.peak = memory.BURST - 1  # as raised by the accept path
    assert not watch.check(0)
    assert trims == []


def test_burst_watch_waits_for_the_gap_then_releases(clock: FakeClock, trims: list[int]) -> None:
    watch = memory.BurstWatch()
    memory.release()  # one just ran (at start-up, say)
    watch.peak = 1000
    assert not watch.check(0)
    assert watch.peak == 1000  # kept: the release is still owed
    clock.now += memory.MIN_GAP
    assert watch.check(0)
    assert trims == [0, 0]


# -- what a closed connection leaves behind ----------------------------------------------

# splitter's objects of one client connection
CONNECTION_TYPES = {"ClientConn", "RequestReader", "HttpRequestParser", "TLSTransport"}


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cycle collector stopped, so that what only it would free stays to be found."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


def unreachable_types() -> dict[str, int]:
    """What a collection finds unreachable (garbage in cycles), by type name."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    found: dict[str, int] = {}
    for obj in gc.garbage:
        name = type(obj).__name__
        found[name] = found.get(name, 0) + 1
    gc.garbage.clear()
    gc.set_debug(0)
    return found


async def _requests(port: int, n: int, client_tls: ssl.SSLContext | None) -> int:
    """n requests, one connection each (Connection: close), one after another: the 200s."""
    ok = 0
    for _ in range(n):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_tls, server_hostname="localhost" if client_tls else None
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 10):
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass  # a close without close_notify: judge what arrived
        writer.close()
        ok += data.startswith(b"HTTP/1.1 200")
    return ok


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_closed_client_connection_is_freed_without_the_collector(
    tmp_path: Path, backend_factory: BackendFactory, collector_off: None, tls: bool
) -> None:
    """Its TLS shell, reader and parser refer to it and to each other; closing the
    connection breaks those cycles, so it is freed at once. Left to the collector, the
    dead connections of a burst pile up (the full collection comes late: thousands of them
    in a burst of 10,000), which raises the peak and what CPython's allocator keeps after."""
    backend = backend_factory("blue", kind="aio")
    data: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "pools": {"blue": {"weight": 100, "backends": [backend.url]}},
        "health_check": {"interval": "1h"},
    }
    client_tls = None
    if tls:
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost")
        cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        leaf.private_key_pem.write_to_path(str(key))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        data["tls"] = {"certificates": [{"cert": str(cert), "key": str(key)}]}
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
    config = config_mod.parse(data, env={})
    live = build_live(config, {}, b"k" * 32, HealthTable())
    loop = new_event_loop()
    certs = CertStore(config.tls) if config.tls is not None else None
    listener = ProxyListener(live, loop, certs=certs)
    listener.access_log = False
    sock = bind(config.listen, "proxy")
    port = sock.getsockname()[1]
    try:
        loop.run_until_complete(listener.listen(sock))
        assert loop.run_until_complete(_requests(port, 1, client_tls)) == 1  # imports, caches
        unreachable_types()
        assert loop.run_until_complete(_requests(port, 20, client_tls)) == 20
        loop.run_until_complete(asyncio.sleep(0.1))  # the closes' callbacks
        assert not listener.conns
        left = {name: n for name, n in unreachable_types().items() if name in CONNECTION_TYPES}
        assert left == {}
    finally:
        listener.stop_accepting()
        listener.abort_all()
        listener.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        sock.close()

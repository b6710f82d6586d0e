"""End to end: health endpoints and graceful shutdown on SIGTERM
(docs/operations.md#running-splitter, 4b)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.rawhttp import RawConn, open_conn
from tests.support import (
    LOCALHOST,
    SplitterProc,
    http_get,
    http_request,
    pools_config,
    wait_until,
)

SplitterFactory = Callable[..., SplitterProc]
BackendFactory = Callable[..., Any]


class InFlight:
    """A request run in a thread; `result` is (status, headers, body) or the exception."""

    def __init__(self, url: str, timeout: float = 20) -> None:
        self.result: Any = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self._thread.start()

    def _run(self, url: str, timeout: float) -> None:
        try:
            self.result = http_request(url, timeout=timeout)
        except Exception as exc:  # recorded for the test to assert on
            self.result = exc
        self.finished_at = time.monotonic()

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the request did not finish"
        return self.result


def _refused(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _config(backend: Any, **extra: Any) -> dict[str, Any]:
    return pools_config({"blue": backend}, {"blue": 100}, **extra)


def _wait_in_flight(backend_log_wait: float = 0.5) -> None:
    time.sleep(backend_log_wait)  # the request has reached the backend and sleeps there


def test_healthz_and_readyz_when_running(
    three_pools: dict[str, Any], splitter_factory: SplitterFactory
) -> None:
    proc = splitter_factory(_config(three_pools["blue"]))
    status, _ = http_get(proc.admin_url + "/healthz")
    assert status == 200
    proc.wait_readyz(timeout=5)
    status, _ = http_get(proc.admin_url + "/readyz")
    assert status == 200
    status, body = http_get(proc.proxy_url + "/")
    assert (status, body) == (200, b"blue")
    # the admin endpoints are not served on the proxy listener
    status, headers, _ = http_request(proc.proxy_url + "/readyz")
    assert headers.get("x-pool") == "blue" or status != 200


def test_sigterm_lets_in_flight_request_finish_and_refuses_new_connections(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    backend = backend_factory("blue")
    proc = splitter_factory(_config(backend, shutdown={"accept_grace": "0s", "grace": "10s"}))
    flight = InFlight(proc.proxy_url + "/slow?seconds=2")
    _wait_in_flight()
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: _refused(proc.proxy_port), timeout=1.5, message="new connections refused")
    result = flight.join(10)
    assert not isinstance(result, Exception), result
    status, headers, body = result
    assert (status, body) == (200, b"slow")
    assert headers.get("connection", "").lower() == "close"
    assert flight.finished_at is not None and flight.finished_at - sent >= 1.0
    assert proc.wait(timeout=3 + max(0.0, flight.finished_at - time.monotonic())) == 0
    assert time.monotonic() - flight.finished_at <= 3.0


def test_sigterm_readyz_turns_503_and_accept_grace_keeps_accepting(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    backend = backend_factory("blue")
    proc = splitter_factory(_config(backend, shutdown={"accept_grace": "2s", "grace": "10s"}))
    proc.wait_readyz(timeout=5)
    # an idle keep-alive client from before the signal
    with RawConn(proc.proxy_port) as keep:
        keep.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = keep.read_response()
        assert first.status == 200 and first.header("Connection") != "close"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_until(
            lambda: http_get(proc.admin_url + "/readyz", timeout=1)[0] == 503,
            timeout=0.5,
            interval=0.02,
            message="/readyz 503 right after SIGTERM",
        )
        # during accept_grace: new connections are still accepted and told to close
        time.sleep(0.3)
        assert time.monotonic() - sent < 1.5
        status, headers, body = http_request(proc.proxy_url + "/", timeout=5)
        assert (status, body) == (200, b"blue")
        assert headers.get("connection", "").lower() == "close"
        # the kept-alive client's next request is answered with Connection: close
        keep.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        second = keep.read_response()
        assert second.status == 200
        assert (second.header("Connection") or "").lower() == "close"
        assert keep.closed_by_peer(timeout=2)
    assert time.monotonic() - sent < 2.0, "the checks above took too long to be meaningful"
    # after accept_grace, the listener closes
    wait_until(lambda: _refused(proc.proxy_port), timeout=2.0, message="refused after accept_grace")
    assert time.monotonic() - sent >= 1.8, "the listener closed before accept_grace"
    assert proc.wait(timeout=5) == 0


def test_sigterm_with_request_exceeding_grace_still_exits(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    backend = backend_factory("blue")
    proc = splitter_factory(_config(backend, shutdown={"accept_grace": "0s", "grace": "1s"}))
    flight = InFlight(proc.proxy_url + "/slow?seconds=5")
    _wait_in_flight()
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=3) == 0
    assert time.monotonic() - sent <= 3.0
    result = flight.join(5)
    # cut at the end of grace: never a complete 200
    assert isinstance(result, Exception) or result[0] != 200, result


def test_sigterm_closes_idle_keepalive_connection(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    backend = backend_factory("blue")
    proc = splitter_factory(_config(backend, shutdown={"accept_grace": "0s", "grace": "10s"}))
    with RawConn(proc.proxy_port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"blue")
        assert not conn.closed_by_peer(timeout=0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert conn.closed_by_peer(timeout=2), "the idle keep-alive connection stayed open"
        assert conn.buffer == b""
    assert proc.wait(timeout=3) == 0
    assert time.monotonic() - sent <= 3.0


def test_sigterm_with_idle_and_half_sent_request(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory
) -> None:
    """A connection that sent only part of a head does not hold the process past grace."""
    backend = backend_factory("blue")
    proc = splitter_factory(_config(backend, shutdown={"accept_grace": "0s", "grace": "1s"}))
    with open_conn(proc.proxy_port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=4) == 0
        assert time.monotonic() - sent <= 3.0


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_is_like_sigterm(
    backend_factory: BackendFactory, splitter_factory: SplitterFactory, sig: int
) -> None:
    backend = backend_factory("blue")
    proc = splitter_factory(_config(backend))
    assert http_get(proc.proxy_url + "/")[0] == 200
    proc.send_signal(sig)
    assert proc.wait(timeout=3) == 0

"""gRPC through splitter, end to end (contract section 14): real grpcio servers as the
backends of `protocol: h2c` pools, real grpcio clients, the real splitter process: calls
pass with their trailers, statuses and metadata; a canary failing with UNAVAILABLE is
counted bad and rolled back by the judge; splitter's own failures are trailers-only."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_metrics import scrape
from tests.support import (
    LOCALHOST,
    Backend,
    SplitterProc,
    admin_api,
    pools_config,
    start_grpc_backend,
    wait_until,
)

grpc: Any = importlib.import_module("grpc")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def grpc_backends() -> Iterator[dict[str, Backend]]:
    started = {
        "stable": start_grpc_backend("stable"),
        "canary": start_grpc_backend("canary", fail_rate=1.0),
    }
    yield started
    for backend in started.values():
        backend.stop()


def grpc_config(
    backends: dict[str, Backend], weights: dict[str, float], **extra: Any
) -> dict[str, Any]:
    config = pools_config(dict(backends), weights, **extra)
    for pool in config["pools"].values():
        pool["protocol"] = "h2c"
    return config


def _channel(proc: SplitterProc) -> Any:
    return grpc.insecure_channel(f"{LOCALHOST}:{proc.proxy_port}")


def test_unary_calls_pass_with_status_and_metadata(
    grpc_backends: dict[str, Backend], splitter_factory: Any
) -> None:
    proc: SplitterProc = splitter_factory(grpc_config(grpc_backends, {"stable": 100}))
    proc.wait_readyz()
    with _channel(proc) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        for i in range(20):
            assert say(b"hello %d" % i, timeout=5) == b"stable:hello %d" % i
        meta = channel.unary_unary("/echo.Echo/Meta")
        answer = meta(b"", metadata=(("x-tenant", "acme"),), timeout=5).decode()
        assert "x-tenant=acme" in answer
        assert "x-forwarded-for=127.0.0.1" in answer
        # A server-streaming call: every message, then the status.
        count = channel.unary_stream("/echo.Echo/Count")
        assert list(count(b"50", timeout=5)) == [b"%d" % i for i in range(50)]


def test_failing_canary_status_reaches_client_and_counts_bad(
    grpc_backends: dict[str, Backend], splitter_factory: Any
) -> None:
    config = grpc_config(grpc_backends, {"stable": 100}, override={"header": "X-Splitter-Pool"})
    proc: SplitterProc = splitter_factory(config)
    proc.wait_readyz()
    with _channel(proc) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as info:
                say(b"x", metadata=(("x-splitter-pool", "canary"),), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details() == "canary broken"
    text = scrape(proc)
    samples = text.all("splitter_grpc_responses_total", pool="canary", grpc_status="14")
    assert sum(s.value for s in samples) == 5
    # The HTTP status stays 200 in `code`.
    ok = text.all("splitter_requests_total", pool="canary", code="200")
    assert sum(s.value for s in ok) == 5


def test_unreachable_backend_gives_unavailable(splitter_factory: Any) -> None:
    import socket

    dead = socket.socket()
    dead.bind((LOCALHOST, 0))
    port = dead.getsockname()[1]
    dead.close()
    config = pools_config({"stable": f"http://{LOCALHOST}:{port}"}, {"stable": 100})
    config["pools"]["stable"]["protocol"] = "h2c"
    config["health_check"]["interval"] = "1h"
    proc: SplitterProc = splitter_factory(config)
    with _channel(proc) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        with pytest.raises(grpc.RpcError) as info:
            say(b"x", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


class _Calls:
    """gRPC calls at a bounded rate in a thread, for at most `seconds` (or until `stop`):
    how many ended with each status."""

    def __init__(self, proc: SplitterProc, rate: float = 60.0, seconds: float = 40.0) -> None:
        import threading
        from collections import Counter

        self.proc = proc
        self.rate = rate
        self.seconds = seconds
        self.codes: Counter[str] = Counter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with _channel(self.proc) as channel:
            say = channel.unary_unary("/echo.Echo/Say")
            end = time.monotonic() + self.seconds
            gap = 1.0 / self.rate
            while not self.done.is_set() and time.monotonic() < end:
                try:
                    say(b"x", timeout=5)
                    self.codes["OK"] += 1
                except grpc.RpcError as exc:
                    self.codes[exc.code().name] += 1
                time.sleep(gap)

    def __enter__(self) -> _Calls:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)


@pytest.mark.slow
def test_canary_failing_with_unavailable_is_rolled_back(
    grpc_backends: dict[str, Backend], splitter_factory: Any
) -> None:
    config = grpc_config(
        grpc_backends,
        {"stable": 100, "canary": 0},
        rollouts={
            "hold": "2s",
            "max": "30s",
            "analysis": {"warmup": "0s", "min_error_rate": 0.05, "latency_floor": "50ms"},
        },
    )
    proc: SplitterProc = splitter_factory(config)
    proc.wait_readyz()
    with _Calls(proc) as calls:
        status, started = admin_api(proc, "POST", "/api/v1/rollout", {"pool": "canary"})
        assert status == 201, started
        final = wait_until(
            lambda: (
                (r := admin_api(proc, "GET", "/api/v1/rollout")[1])
                and r["status"] in {"rolled_back", "promoted", "paused"}
                and r
            ),
            40,
        )
    assert final["status"] == "rolled_back", final
    assert final["analysis"]["verdict"] == "fail"
    assert final["weights"] == {"stable": 100, "canary": 0}
    assert calls.codes["UNAVAILABLE"] > 0  # the canary's failures reached its clients
    assert calls.codes["OK"] > calls.codes["UNAVAILABLE"]
    print(f"gRPC canary rolled back; calls: {dict(calls.codes)}")


def test_https_backend_that_chooses_h2_gets_streams(tmp_path: Any, splitter_factory: Any) -> None:
    """An https:// backend of an http1 pool that picks h2 by ALPN (a gRPC server over TLS)
    gets its calls as HTTP/2 streams, verified against the pool's CA."""
    from tests.e2e.test_tls import CA, ca_file, issue

    pair = issue(tmp_path / "backend", "127.0.0.1")
    backend = start_grpc_backend("secure", tls=(pair["cert"], pair["key"]))
    try:
        config = pools_config({"secure": backend}, {"secure": 100})
        config["pools"]["secure"]["tls"] = {"ca": ca_file(tmp_path, CA)}
        # The HTTP/1.1 health probe cannot reach a server that speaks only h2: one probe
        # failing must not take it down for this test.
        config["health_check"].update(interval="1h", unhealthy_threshold=5)
        proc: SplitterProc = splitter_factory(config)
        with _channel(proc) as channel:
            say = channel.unary_unary("/echo.Echo/Say")
            for i in range(10):
                assert say(b"%d" % i, timeout=5) == b"secure:%d" % i
            count = channel.unary_stream("/echo.Echo/Count")
            assert list(count(b"20", timeout=5)) == [b"%d" % i for i in range(20)]
    finally:
        backend.stop()

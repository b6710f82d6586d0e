"""The health rule (pure), the probe against real loopback servers, the checker's choice
of probe by a pool's protocol (gRPC's health check for h2c, against a real grpcio server),
and what the real process logs and shows when a backend has no health endpoint or a gRPC
backend stops serving."""

from __future__ import annotations

import asyncio
import importlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from splitter.config import Backend, BackendTLS, HealthCheck
from splitter.control.health import HealthChecker, RiseFall, probe
from tests.conftest import SplitterFactory
from tests.support import admin_api, http_get, wait_until, write_config

grpc: Any = importlib.import_module("grpc")
grpc_health: Any = importlib.import_module("grpc_health.v1.health")
health_pb2: Any = importlib.import_module("grpc_health.v1.health_pb2")
health_pb2_grpc: Any = importlib.import_module("grpc_health.v1.health_pb2_grpc")

RULE = HealthCheck(healthy_threshold=2, unhealthy_threshold=3)


def test_a_backend_starts_up() -> None:
    assert RiseFall().up


def test_unhealthy_threshold_failures_in_a_row_take_it_down() -> None:
    state = RiseFall()
    assert not state.record(False, RULE)
    assert not state.record(False, RULE)
    assert state.record(False, RULE)
    assert not state.up


def test_a_success_resets_the_failure_count() -> None:
    state = RiseFall()
    for ok in (False, False, True, False, False):
        assert not state.record(ok, RULE)
    assert state.up


def test_healthy_threshold_successes_bring_it_back() -> None:
    state = RiseFall(up=False)
    assert not state.record(True, RULE)
    assert state.record(True, RULE)
    assert state.up


def test_a_failure_between_successes_keeps_it_down() -> None:
    state = RiseFall(up=False)
    for ok in (True, False, True):
        assert not state.record(ok, RULE)
    assert not state.up


async def _serve(
    handler: web.RequestHandler,  # type: ignore[type-arg]
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/healthz", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@pytest.mark.parametrize(
    ("status", "ok"), [(200, True), (204, True), (302, True), (404, False), (503, False)]
)
def test_probe_judges_by_status(status: int, ok: bool) -> None:
    async def main() -> tuple[bool, str]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status)

        runner, port = await _serve(handler)
        try:
            return await probe("127.0.0.1", port, "/healthz", 1.0)
        finally:
            await runner.cleanup()

    result, what = asyncio.run(main())
    assert result is ok
    assert what.startswith(f"GET /healthz answered {status}"), what
    # a 4xx is most often a path the backend does not serve: the line says what to change
    assert ("health_check.path" in what) is (400 <= status < 500), what


def test_an_https_backend_is_probed_over_tls_verified(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    async def main(tls: BackendTLS) -> tuple[bool, str]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=200)

        runner, port = await _serve(handler, server)
        try:
            return await probe("127.0.0.1", port, "/healthz", 2.0, tls)
        finally:
            await runner.cleanup()

    assert asyncio.run(main(BackendTLS(ca=str(tmp_path / "ca.pem"))))[0]
    ok, what = asyncio.run(main(BackendTLS()))  # the system's CAs do not know this one
    assert not ok
    assert "unable to get local issuer certificate" in what and "tls.ca" in what, what
    assert asyncio.run(main(BackendTLS(verify=False)))[0]


def test_probe_fails_on_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, what = asyncio.run(probe("127.0.0.1", port, "/healthz", 1.0))
    assert not ok
    assert what.startswith("GET /healthz: "), what


def test_probe_fails_on_timeout() -> None:
    async def main() -> tuple[bool, str]:
        async def handler(request: web.Request) -> web.Response:
            await asyncio.sleep(2)
            return web.Response()

        runner, port = await _serve(handler)
        try:
            return await probe("127.0.0.1", port, "/healthz", 0.2)
        finally:
            await runner.cleanup()

    ok, what = asyncio.run(main())
    assert not ok
    assert what == "GET /healthz: no answer within 0.2s (health_check.timeout)"


# --------------------------------------------------------------------------- gRPC backends


@pytest.fixture
def grpc_backend() -> Iterator[tuple[str, Any]]:
    """A real grpcio server with grpcio's health service on 127.0.0.1: (URL, servicer)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = grpc_health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_the_checker_probes_an_h2c_backend_with_grpc_and_a_protocol_change_restarts_it(
    grpc_backend: tuple[str, Any],
) -> None:
    """As a reload does: the same backend probed with GET while its pool is http1 (a gRPC
    server does not answer that), with gRPC's health check once it is h2c."""
    url, servicer = grpc_backend
    port = int(url.rsplit(":", 1)[1])
    backends = {url: Backend(url, "127.0.0.1", port)}
    rule = HealthCheck(interval=0.05, timeout=1.0, healthy_threshold=1, unhealthy_threshold=1)
    changes: list[tuple[bool, str]] = []

    async def until(count: int) -> None:
        async with asyncio.timeout(5):
            while len(changes) < count:
                await asyncio.sleep(0.01)

    async def main() -> None:
        checker = HealthChecker(lambda u, up, what: changes.append((up, what)))
        try:
            checker.update(backends, rule)  # http1: GET /healthz
            await until(1)
            checker.update(backends, rule, grpc={url})  # now h2c
            await until(2)
            await asyncio.to_thread(servicer.set, "", health_pb2.HealthCheckResponse.NOT_SERVING)
            await until(3)
            checker.update(backends, rule, grpc={url})  # unchanged: the same loop goes on
            assert len(checker.tasks) == 1
            await asyncio.sleep(0.2)
        finally:
            checker.stop()

    asyncio.run(main())
    assert changes[0][0] is False and changes[0][1].startswith("GET /healthz"), changes
    assert changes[1:] == [
        (True, "grpc.health.v1.Health/Check answered SERVING"),
        (False, "grpc.health.v1.Health/Check answered NOT_SERVING"),
    ]


# --------------------------------------------------------------------------- the real process


class _NoHealthz(BaseHTTPRequestHandler):
    """An ordinary backend: `GET /` is 200, anything else 404 (no /healthz)."""

    def do_GET(self) -> None:
        found = self.path == "/"
        body = b"app\n" if found else b"not found\n"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def no_healthz() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoHealthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_backend_without_healthz_is_logged_with_the_probe_and_the_key(
    no_healthz: str, splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    """The first hour of a new user: the default probe on a backend that does not serve
    it. The log line names the probe, its answer and the key to change, once."""
    health = {"interval": "100ms", "unhealthy_threshold": 1, "healthy_threshold": 1}
    sp = splitter_factory(
        {"pools": {"app": {"weight": 1, "backends": [no_healthz]}}, "health_check": health}
    )
    line = sp.wait_for_stderr(r"is down")
    assert line.endswith(
        f"backend {no_healthz} is down (GET /healthz answered 404; set health_check.path "
        "to a path your backend answers with 200)"
    ), line
    wait_until(lambda: http_get(sp.proxy_url + "/")[0] == 503, 5, message="503 once down")
    time.sleep(1)  # ten more probes, each a 404
    assert sp.stderr_text().count("is down") == 1, sp.stderr_text()


def test_a_health_check_path_the_backend_serves_keeps_it_up(
    no_healthz: str, splitter_factory: SplitterFactory
) -> None:
    health = {"path": "/", "interval": "100ms", "unhealthy_threshold": 1}
    sp = splitter_factory(
        {"pools": {"app": {"weight": 1, "backends": [no_healthz]}}, "health_check": health}
    )
    time.sleep(0.5)
    assert http_get(sp.proxy_url + "/") == (200, b"app\n")
    assert "is down" not in sp.stderr_text()


def test_an_h2c_backend_that_stops_serving_goes_down_in_the_api_and_a_reload_to_http1_probes_get(
    grpc_backend: tuple[str, Any], splitter_factory: SplitterFactory
) -> None:
    """A real `splitter run` with an h2c pool whose grpcio backend flips to NOT_SERVING and
    back; then a reload that makes the pool http1, whose probe (GET) a gRPC server fails."""
    url, servicer = grpc_backend
    status_of = health_pb2.HealthCheckResponse
    checks = {"interval": "100ms", "unhealthy_threshold": 1, "healthy_threshold": 1}
    pool = {"weight": 1, "protocol": "h2c", "backends": [url]}
    sp = splitter_factory({"pools": {"grpc": pool}, "health_check": checks})

    def up() -> bool:
        status, pools = admin_api(sp, "GET", "/api/v1/pools")
        assert status == 200, pools
        return bool(pools["grpc"]["backends"][0]["up"])

    time.sleep(0.5)  # five probes, each SERVING: a GET probe would have failed by now
    assert up()
    assert "is down" not in sp.stderr_text(), sp.stderr_text()

    servicer.set("", status_of.NOT_SERVING)
    line = sp.wait_for_stderr(r"is down")
    assert line.endswith(
        f"backend {url} is down (grpc.health.v1.Health/Check answered NOT_SERVING)"
    ), line
    wait_until(lambda: not up(), 5, message="the backend down in GET /api/v1/pools")

    servicer.set("", status_of.SERVING)
    line = sp.wait_for_stderr(r"is up")
    assert line.endswith(f"backend {url} is up (grpc.health.v1.Health/Check answered SERVING)")
    wait_until(up, 5, message="the backend up again in GET /api/v1/pools")

    assert sp.config is not None
    write_config(sp.config_path, {**sp.config, "pools": {"grpc": {**pool, "protocol": "http1"}}})
    status, body = admin_api(sp, "POST", "/api/v1/reload")
    assert status == 200, body
    sp.wait_for_stderr(rf"backend {url} is down \(GET /healthz")
    wait_until(lambda: not up(), 5, message="down once probed with GET")

"""The health rule (pure) and the probe against real loopback servers."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from splitter.config import HealthCheck
from splitter.health import RiseFall, probe

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


async def _serve(handler: web.RequestHandler) -> tuple[web.AppRunner, int]:  # type: ignore[type-arg]
    app = web.Application()
    app.router.add_get("/healthz", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
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
    assert str(status) in what


def test_probe_fails_on_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, _ = asyncio.run(probe("127.0.0.1", port, "/healthz", 1.0))
    assert not ok


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
    assert "no answer" in what

"""`splitter ctl` (splitter/ctl.py), the admin API client, against a fake admin API.

The fake is a real aiohttp server on 127.0.0.1 (own event loop in a background thread)
that imitates CONTRACT.md section 5 with an in-memory weights map. `ctl.main` runs
in-process; its output is read with capsys.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from splitter import ctl
from tests.support import REPO_ROOT, free_port

START_WEIGHTS: dict[str, float] = {"blue": 90.0, "green": 0, "canary": 10}
POOLS = {
    "blue": [("http://127.0.0.1:5001", 1, True), ("http://127.0.0.1:5002", 2, False)],
    "green": [("http://127.0.0.1:5003", 1, True)],
    "canary": [],
}


@dataclass
class FakeAdmin:
    url: str = ""
    token: str | None = None
    reload_ok: bool = True
    weights: dict[str, float] = field(default_factory=lambda: dict(START_WEIGHTS))
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # GET /rollout: each in turn
    routes: dict[str, Any] | None = None  # GET /routes; None: 404, as a server without routes

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_auth])
        app.router.add_get("/api/v1/weights", self.get_weights)
        app.router.add_put("/api/v1/weights", self.put_weights)
        app.router.add_post("/api/v1/switch", self.switch)
        app.router.add_post("/api/v1/reload", self.reload)
        app.router.add_get("/api/v1/events", self.get_events)
        app.router.add_get("/api/v1/pools", self.get_pools)
        app.router.add_get("/api/v1/rollout", self.get_rollout)
        app.router.add_post("/api/v1/rollout", self.post_rollout)
        app.router.add_get("/api/v1/routes", self.get_routes)
        app.router.add_get("/api/v1/routes/{route}/weights", self.get_route_weights)
        app.router.add_get("/text/{tail:.*}", self.text)
        app.router.add_get("/boom/{tail:.*}", self.boom)
        self.events.append(self._event("startup", "started", None, self.weights))
        return app

    @web.middleware
    async def _record_and_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
            }
        )
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            return web.json_response({"error": "missing or wrong token"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    @staticmethod
    def _event(source: str, what: str, old: Any, new: Any) -> dict[str, Any]:
        return {
            "time": "2026-11-28T04:00:00.000Z",
            "source": source,
            "what": what,
            "old": None if old is None else dict(old),
            "new": None if new is None else dict(new),
        }

    async def get_weights(self, request: web.Request) -> web.Response:
        return web.json_response(self.weights)

    async def put_weights(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "not JSON")
        if not isinstance(body, dict):
            return self._error(400, "expected a JSON object")
        for pool, value in body.items():
            if pool not in self.weights:
                return self._error(404, f"unknown pool {pool!r}")
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                return self._error(400, f"bad weight for {pool!r}")
        new = {**self.weights, **body}
        if not any(new.values()):
            return self._error(409, "every weight would be 0")
        self.events.append(self._event("api", "weights set", self.weights, new))
        self.weights = new
        return web.json_response(self.weights)

    async def switch(self, request: web.Request) -> web.Response:
        body = await request.json()
        pool = body.get("pool") if isinstance(body, dict) else None
        if pool not in self.weights:
            return self._error(404, f"unknown pool {pool!r}")
        previous = self.weights
        self.weights = {p: (100 if p == pool else 0) for p in previous}
        self.events.append(self._event("api", f"switch to {pool}", previous, self.weights))
        return web.json_response({"weights": self.weights, "previous": previous})

    async def reload(self, request: web.Request) -> web.Response:
        if not self.reload_ok:
            errors = [
                "pools.blue.weight (line 7): must be a number >= 0",
                "listen (line 1): bad address",
            ]
            return web.json_response({"error": "invalid config", "errors": errors}, status=422)
        self.events.append(self._event("file", "config reloaded", self.weights, self.weights))
        return web.json_response({"status": "reloaded", "weights": self.weights})

    async def get_events(self, request: web.Request) -> web.Response:
        return web.json_response({"events": self.events})

    async def get_pools(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                pool: {
                    "weight": self.weights[pool],
                    "backends": [{"url": u, "weight": w, "up": up} for u, w, up in backends],
                }
                for pool, backends in POOLS.items()
            }
        )

    async def get_rollout(self, request: web.Request) -> web.Response:
        if not self.rollouts:
            return self._error(404, "no rollout yet")
        rollout = self.rollouts.pop(0) if len(self.rollouts) > 1 else self.rollouts[0]
        return web.json_response(rollout)

    async def post_rollout(self, request: web.Request) -> web.Response:
        """The rollout the test set, as started (the body is in `requests`)."""
        if not self.rollouts:
            return self._error(404, "unknown pool")
        return web.json_response(self.rollouts[0], status=201)

    async def get_routes(self, request: web.Request) -> web.Response:
        if self.routes is None:
            raise web.HTTPNotFound()
        return web.json_response(self.routes)

    async def get_route_weights(self, request: web.Request) -> web.Response:
        route = (self.routes or {}).get(request.match_info["route"])
        if route is None:
            return self._error(404, f"unknown route: {request.match_info['route']}")
        return web.json_response(route["weights"])

    async def text(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>this is the proxy listener</html>")

    async def boom(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdmin]:
    """A running fake admin API; the environment has no SPLITTER_ADMIN_* variables."""
    monkeypatch.delenv("SPLITTER_ADMIN_URL", raising=False)
    monkeypatch.delenv("SPLITTER_ADMIN_TOKEN", raising=False)
    fake = FakeAdmin()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    thread = threading.Thread(target=loop.run_forever, name="fake-admin", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        fake.url = f"http://127.0.0.1:{port}"
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = ctl.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- weights / set


def test_weights_table(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "weights")
    assert (status, err) == (0, "")
    assert out == (
        "POOL    WEIGHT  SHARE\n"
        "blue        90    90%\n"  # 90.0 on the wire, printed as an int
        "green        0     0%\n"
        "canary      10    10%\n"
    )
    assert admin.requests[-1]["method"] == "GET"
    assert admin.requests[-1]["path"] == "/api/v1/weights"
    assert "Authorization" not in admin.requests[-1]["headers"]


def test_set_puts_weights_and_prints_the_new_table(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "set", "canary=12.5", "blue=80", "--admin", admin.url)
    assert (status, err) == (0, "")
    request = admin.requests[-1]
    assert (request["method"], request["path"]) == ("PUT", "/api/v1/weights")
    assert request["body"] == {"canary": 12.5, "blue": 80}
    assert request["headers"]["Content-Type"] == "application/json"
    assert out.splitlines() == [
        "POOL    WEIGHT  SHARE",
        "blue        80  86.5%",
        "green        0     0%",
        "canary    12.5  13.5%",
    ]
    assert admin.weights == {"blue": 80, "green": 0, "canary": 12.5}


def test_set_sends_integral_weights_as_ints(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--admin", admin.url, "set", "green=20.0")[0] == 0
    assert admin.requests[-1]["body"] == {"green": 20}
    assert isinstance(admin.requests[-1]["body"]["green"], int)


def test_set_sends_weights_up_to_a_million_and_tiny_ones(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--admin", admin.url, "set", "blue=1e6", "green=-0", "canary=1e-300")[0] == 0
    body = admin.requests[-1]["body"]
    assert body == {"blue": 1000000, "green": 0, "canary": 1e-300}
    assert isinstance(body["blue"], int) and isinstance(body["green"], int)


@pytest.mark.parametrize(
    "args",
    [
        ["canary"],
        ["canary="],
        ["=20"],
        ["canary=abc"],
        ["canary=-1"],
        ["canary=nan"],
        ["canary=inf"],
        ["canary=1000000.5"],
        ["canary=1000001"],
        ["canary=1e20"],
        ["canary=1e308"],
        ["canary=18446744073709551616"],
        ["blue=1", "blue=2"],
        [],
    ],
)
def test_set_bad_syntax_is_a_usage_error(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "set", *args)
    assert status == 2
    assert out == ""
    assert one_line(err).startswith("splitter ctl: ")
    assert admin.requests == []


def test_set_unknown_pool_is_404(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "set", "nope=5")
    assert (status, out) == (1, "")
    assert one_line(err) == "splitter ctl: 404: unknown pool 'nope'"
    assert admin.weights == START_WEIGHTS


def test_set_all_zero_is_409(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "set", "blue=0", "canary=0")
    assert (status, out) == (1, "")
    assert one_line(err) == "splitter ctl: 409: every weight would be 0"


def test_all_zero_weights_print_no_share(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.show.weights_table({"blue": 0, "green": 0}).splitlines() == [
        "POOL   WEIGHT  SHARE",
        "blue        0      -",
        "green       0      -",
    ]


# --------------------------------------------------------------------------- switch / reload


def test_switch(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "switch", "green")
    assert (status, err) == (0, "")
    assert admin.requests[-1]["body"] == {"pool": "green"}
    assert out.splitlines() == [
        "POOL    PREVIOUS     NEW",
        "blue          90  →    0",
        "green          0  →  100",
        "canary        10  →    0",
    ]


def test_switch_unknown_pool(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "switch", "purple")
    assert (status, out) == (1, "")
    assert one_line(err) == "splitter ctl: 404: unknown pool 'purple'"


def test_reload_ok(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "reload")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "config reloaded"
    assert out.splitlines()[1].split() == ["POOL", "WEIGHT", "SHARE"]
    assert admin.requests[-1]["method"] == "POST"
    assert admin.requests[-1]["path"] == "/api/v1/reload"


def test_reload_invalid_lists_the_errors(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.reload_ok = False
    status, out, err = run(capsys, "--admin", admin.url, "reload")
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "splitter ctl: 422: invalid config",
        "  pools.blue.weight (line 7): must be a number >= 0",
        "  listen (line 1): bad address",
    ]


# --------------------------------------------------------------------------- events / pools


def test_events(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--admin", admin.url, "set", "canary=20", "blue=80")[0] == 0
    status, out, err = run(capsys, "--admin", admin.url, "events")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "SOURCE", "WHAT", "CHANGE"]
    assert lines[1].split() == [
        "2026-11-28T04:00:00.000Z", "startup", "started",
        "-", "→", "blue=90", "green=0", "canary=10",
    ]  # fmt: skip
    assert lines[2].split() == [
        "2026-11-28T04:00:00.000Z", "api", "weights", "set",
        "blue=90", "green=0", "canary=10", "→", "blue=80", "green=0", "canary=20",
    ]  # fmt: skip
    # aligned: every column starts at the same offset on every line
    for column in ("SOURCE", "WHAT", "CHANGE"):
        offset = lines[0].index(column)
        assert all(line[offset - 2 : offset] == "  " for line in lines)
        assert all(line[offset] != " " for line in lines)


def test_events_name_their_route_when_there_are_several(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.routes = TWO_ROUTES
    admin.events[0]["route"] = "api"
    status, out, err = run(capsys, "--admin", admin.url, "events")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "SOURCE", "ROUTE", "WHAT", "CHANGE"]
    assert lines[1].split()[:4] == ["2026-11-28T04:00:00.000Z", "startup", "api", "started"]
    # one route: no column
    admin.routes = {"api": TWO_ROUTES["api"]}
    status, out, err = run(capsys, "--admin", admin.url, "events")
    assert out.splitlines()[0].split() == ["TIME", "SOURCE", "WHAT", "CHANGE"]


def test_no_events(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    admin.events.clear()
    assert run(capsys, "--admin", admin.url, "events") == (0, "no events\n", "")


def test_pools(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "pools", "--admin", admin.url)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "blue    weight 90  1/2 up",
        "  http://127.0.0.1:5001  weight 1  up",
        "  http://127.0.0.1:5002  weight 2  DOWN",
        "green   weight 0   1/1 up",
        "  http://127.0.0.1:5003  weight 1  up",
        "canary  weight 10  0/0 up",
        "  (no backends)",
    ]


# --------------------------------------------------------------------------- --json


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["weights"], lambda a: a.weights),
        (["set", "canary=20"], lambda a: a.weights),
        (["switch", "green"], lambda a: {"weights": a.weights, "previous": START_WEIGHTS}),
        (["reload"], lambda a: {"status": "reloaded", "weights": a.weights}),
        (["events"], lambda a: {"events": a.events}),
        (["pools"], lambda a: {p: {"weight": a.weights[p]} for p in POOLS}),
    ],
)
def test_json_prints_the_servers_answer(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], args: list[str], expected: Any
) -> None:
    status, out, err = run(capsys, *args, "--json", "--admin", admin.url)
    assert (status, err) == (0, "")
    payload = json.loads(out)
    want = expected(admin)
    if args == ["pools"]:
        payload = {p: {"weight": v["weight"]} for p, v in payload.items()}
    assert payload == want


def test_json_on_error_still_prints_the_answer_and_fails(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.reload_ok = False
    status, out, err = run(capsys, "--json", "--admin", admin.url, "reload")
    assert status == 1
    assert json.loads(out)["errors"][0].startswith("pools.blue.weight (line 7)")
    assert err.splitlines()[0] == "splitter ctl: 422: invalid config"


# --------------------------------------------------------------------------- token, env


def test_token_required(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    admin.token = "s3cret"
    status, out, err = run(capsys, "--admin", admin.url, "weights")
    assert (status, out) == (1, "")
    assert one_line(err).startswith("splitter ctl: 401: missing or wrong token")
    assert "--token" in err  # a hint, since no token was given

    status, out, err = run(capsys, "--admin", admin.url, "--token", "wrong", "weights")
    assert status == 1
    assert one_line(err) == "splitter ctl: 401: missing or wrong token"
    assert "wrong" not in err.replace("missing or wrong token", "")

    status, out, err = run(capsys, "weights", "--admin", admin.url, "--token", "s3cret")
    assert (status, err) == (0, "")
    assert admin.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"


def test_token_from_env(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.token = "from-env"
    monkeypatch.setenv("SPLITTER_ADMIN_TOKEN", "from-env")
    assert run(capsys, "--admin", admin.url, "set", "blue=50")[0] == 0
    assert admin.requests[-1]["headers"]["Authorization"] == "Bearer from-env"
    # --token wins over the environment
    status, _, err = run(capsys, "--admin", admin.url, "--token", "other", "weights")
    assert (status, one_line(err)) == (1, "splitter ctl: 401: missing or wrong token")
    assert admin.requests[-1]["headers"]["Authorization"] == "Bearer other"


def test_bad_token_is_a_usage_error_and_not_echoed(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "--token", "a\nb", "weights")
    assert (status, out) == (2, "")
    assert "a\nb" not in err
    one_line(err)
    assert admin.requests == []


def test_admin_url_from_env(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLITTER_ADMIN_URL", admin.url + "/")  # a trailing slash is fine
    status, _, err = run(capsys, "weights")
    assert (status, err) == (0, "")
    assert admin.requests[-1]["path"] == "/api/v1/weights"
    # --admin wins over the environment
    monkeypatch.setenv("SPLITTER_ADMIN_URL", f"http://127.0.0.1:{free_port()}")
    assert run(capsys, "weights", "--admin", admin.url)[0] == 0


def test_admin_url_without_scheme(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--admin", admin.url.removeprefix("http://"), "weights")[0] == 0


def test_default_admin_url(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ctl.DEFAULT_ADMIN_URL == "http://127.0.0.1:9901"
    monkeypatch.setattr(ctl, "DEFAULT_ADMIN_URL", admin.url)
    assert run(capsys, "weights")[0] == 0
    assert len(admin.requests) == 1


def test_proxy_environment_is_ignored(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert run(capsys, "--admin", admin.url, "weights")[0] == 0


# --------------------------------------------------------------------------- rollout status

NOW = 1_796_000_000.0  # the clock of the tests below (2026-11-30)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def a_rollout(**change: Any) -> dict[str, Any]:
    """A rollout object as the admin API answers it (docs/rollouts.md)."""
    rollout: dict[str, Any] = {
        "id": "4f1c2a9e", "pool": "canary", "strategy": "canary", "status": "progressing",
        "reason": "step 2 of 4: judging, 0 candidate requests so far",
        "step": 1, "steps": [{"weight": w, "hold": "1m", "max": "10m"} for w in (5, 25, 50, 100)],
        "weights": {"blue": 75, "canary": 25}, "start_weights": {"blue": 100, "canary": 0},
        "started_at": iso(NOW - 90), "updated_at": iso(NOW), "step_started_at": iso(NOW - 18),
        "analysis": {"verdict": "pending", "candidate": {"requests": 0, "bad": 0, "slow": 0},
                     "baseline": {"requests": 0, "bad": 0, "slow": 0}, "needed_requests": None},
        "history": [{"at": iso(NOW - 90), "what": "started", "detail": "canary strategy"}],
    }  # fmt: skip
    rollout.update(change)
    return rollout


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """ctl's clock stands at NOW (moved by `sleep`, which does not wait)."""
    now = [NOW]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    fake = SimpleNamespace(time=lambda: now[0], sleep=sleep)
    monkeypatch.setattr(ctl, "time", fake)
    monkeypatch.setattr(ctl.show, "time", fake)
    return now


def test_rollout_status_names_the_pool_and_the_strategy_apart(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], clock: list[float]
) -> None:
    admin.rollouts = [a_rollout()]
    status, out, err = run(capsys, "--admin", admin.url, "rollout", "status")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[:2] == [
        "rollout 4f1c2a9e of canary: canary strategy, progressing (step 2 of 4)",
        "  step 2 of 4: judging, 0 candidate requests so far",
    ]
    assert "canary of canary" not in out
    assert "warming up" not in out  # no analysis.warmup_until: the step is being judged


def test_rollout_status_shows_the_warmup_left(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], clock: list[float]
) -> None:
    rollout = a_rollout()
    rollout["analysis"]["warmup_until"] = iso(NOW + 12)
    admin.rollouts = [rollout]
    status, out, err = run(capsys, "--admin", admin.url, "rollout", "status")
    assert (status, err) == (0, "")
    local = time.strftime("%H:%M:%S", time.localtime(NOW + 12))  # a wall clock's time
    assert out.splitlines()[2] == f"  warming up until {local} (12s left)", out


def test_rollout_status_watch_counts_the_warmup_down(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], clock: list[float]
) -> None:
    warming = a_rollout()
    warming["analysis"]["warmup_until"] = iso(NOW + 2)
    done = a_rollout(status="promoted", reason="promoted", weights={"blue": 0, "canary": 100})
    admin.rollouts = [warming, warming, warming, done]
    status, out, err = run(capsys, "--admin", admin.url, "rollout", "status", "--watch")
    assert (status, err) == (0, "")
    local = time.strftime("%H:%M:%S", time.localtime(NOW + 2))
    shown = [ln for ln in out.splitlines() if "warming up" in ln]
    assert shown == [f"  warming up until {local} ({left}s left)" for left in (2, 1, 0)]
    heads = [ln for ln in out.splitlines() if ln.startswith("rollout ")]
    assert heads[-1] == "rollout 4f1c2a9e of canary: canary strategy, promoted (step 2 of 4)"


# --------------------------------------------------------------------------- rollout start


@pytest.mark.parametrize(
    ("args", "steps"),
    [
        (["--shadow", "10%"], [{"shadow": {"share": 0.1}}, 5, 25, 50, 100]),
        (["--shadow", "0.1"], [{"shadow": {"share": 0.1}}, 5, 25, 50, 100]),
        (["--shadow", "12.5%", "--steps", "30,pause,100"],
         [{"shadow": {"share": 0.125}}, 30, {"pause": True}, 100]),
        (["--shadow", " 100% ", "--steps", "50", "--hold", "1m", "--max", "5m"],
         [{"shadow": {"share": 1.0, "hold": "1m", "max": "5m"}},
          {"weight": 50, "hold": "1m", "max": "5m"}]),
        (["--steps", "50,100"], [50, 100]),
    ],
)  # fmt: skip
def test_rollout_start_with_a_shadow_test_step_first(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], args: list[str], steps: list[Any]
) -> None:
    admin.rollouts = [a_rollout(step=0)]
    status, out, err = run(capsys, "--admin", admin.url, "rollout", "start", "canary", *args)
    assert (status, err) == (0, "") and out.startswith("rollout 4f1c2a9e of canary")
    (request,) = [r for r in admin.requests if r["method"] == "POST"]
    assert request["path"] == "/api/v1/rollout"
    assert request["body"] == {"pool": "canary", "steps": steps}


@pytest.mark.parametrize(
    "value", ["0", "0%", "-5%", "150%", "2", "10", "ten", "nan", "inf", "%", ""]
)
def test_a_bad_shadow_share_is_a_usage_error_and_nothing_is_sent(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    args = ["--admin", admin.url, "rollout", "start", "canary", f"--shadow={value}"]
    status, out, err = run(capsys, *args)
    assert (status, out) == (2, "")
    assert one_line(err) == (
        f"splitter ctl: --shadow: not a share above 0 and at most 1 (10% or 0.1): {value!r} "
        "(see 'splitter ctl --help')"
    )
    assert admin.requests == []


def test_shadow_is_for_a_canary(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url, "rollout", "start", "green",
                           "--bluegreen", "--shadow", "10%")  # fmt: skip
    assert (status, out) == (2, "")
    assert one_line(err) == (
        "splitter ctl: --shadow is for a canary; a blue-green rollout has a preview "
        "(see 'splitter ctl --help')"
    )
    assert admin.requests == []


def test_rollout_status_at_the_test_step_shows_the_copies(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], clock: list[float]
) -> None:
    rollout = a_rollout(
        step=0, reason="step 1 of 5: shadow test, 300 of about 1200 copies compared"
    )
    rollout["steps"].insert(0, {"shadow": {"share": 0.1, "hold": "1m", "max": "10m",
                                           "max_diff_rate": 0.01}})  # fmt: skip
    rollout["analysis"].update(
        kind="shadow", needed_requests=900,
        candidate={"requests": 310, "bad": 1, "slow": 0},
        baseline={"requests": 310, "bad": 0, "slow": 0},
        shadow={"compared": 300, "differ": 2, "diff_rate": 0.006667, "pairs": 310,
                "shadow_bad": 1, "primary_bad": 0, "needed": 900},
    )  # fmt: skip
    admin.rollouts = [rollout]
    status, out, err = run(capsys, "--admin", admin.url, "rollout", "status")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "rollout 4f1c2a9e of canary: canary strategy, progressing (step 1 of 5)"
    assert lines[3] == (
        "  verdict  pending: 300 copies compared, 2 differ (0.7%); 310 pairs, 1 bad on the "
        "copies, 0 on the primary"
    )
    assert lines[4].startswith("  judged   [######") and lines[4].endswith(" 300 of about 1200")


# --------------------------------------------------------------------------- failures


def test_cannot_connect(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, out, err = run(capsys, "--admin", url, "weights")
    assert (status, out) == (1, "")
    assert one_line(err) == (
        f"splitter ctl: cannot reach the admin API at {url}: Connection refused"
    )


def test_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    # accepts connections (the backlog) but never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        status, out, err = run(capsys, "--timeout", "0.2", "--admin", url, "weights")
    assert (status, out) == (1, "")
    assert one_line(err) == (
        f"splitter ctl: cannot reach the admin API at {url}: timed out after 0.2s"
    )


def test_an_answer_that_is_not_json(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    for json_flag in ([], ["--json"]):
        status, out, err = run(capsys, *json_flag, "--admin", admin.url + "/text", "weights")
        assert (status, out) == (1, "")
        assert "not JSON" in one_line(err)


def test_server_error_without_json(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--admin", admin.url + "/boom", "weights")
    assert (status, out) == (1, "")
    assert one_line(err) == "splitter ctl: 500: internal server error"


def test_unknown_path_without_json(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "--admin", admin.url + "/elsewhere", "weights")
    assert (status, one_line(err)) == (1, "splitter ctl: 404: not found")


# --------------------------------------------------------------------------- routes

TWO_ROUTES: dict[str, Any] = {
    "shop": {
        "hosts": ["shop.test", "*.shop.test"],
        "path_prefix": "/",
        "weights": {"blue": 90, "canary": 10},
        "segments": [{"pool": "canary", "header": {"name": "X-Beta", "value": "1"}}],
        "rollout": {"pool": "canary", "status": "progressing", "route": "shop"},
    },
    "api": {
        "hosts": [],
        "path_prefix": "/api",
        "weights": {"blue": 100.0, "canary": 0},
        "segments": [],
        "rollout": None,
    },
}


def test_routes_table(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    admin.routes = TWO_ROUTES
    status, out, err = run(capsys, "--admin", admin.url, "routes")
    assert (status, err) == (0, "")
    assert out == (
        "ROUTE  HOSTS                  PATH  WEIGHTS            SEGMENTS  ROLLOUT\n"
        "shop   shop.test,*.shop.test  /     blue=90 canary=10         1  canary progressing\n"
        "api    *                      /api  blue=100 canary=0         0  -\n"
    )  # fmt: skip
    assert admin.requests[-1]["path"] == "/api/v1/routes"


def test_route_option_names_the_route_in_the_path(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.routes = TWO_ROUTES
    for args in (["--route", "api", "weights"], ["weights", "--route", "api"]):
        status, out, err = run(capsys, "--admin", admin.url, *args)
        assert (status, err) == (0, "")
        assert out.splitlines()[1].split() == ["blue", "100", "100%"]
        assert admin.requests[-1]["path"] == "/api/v1/routes/api/weights"


def test_unknown_route_is_a_usage_error_with_the_api_s_line(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.routes = TWO_ROUTES
    status, out, err = run(capsys, "--admin", admin.url, "--route", "nope", "weights")
    assert (status, out) == (2, "")
    assert one_line(err) == "splitter ctl: 404: unknown route: nope"
    # a 404 that is not about the route keeps exit status 1
    status, _, err = run(capsys, "--admin", admin.url, "--route", "api", "pools")
    assert (status, one_line(err)) == (1, "splitter ctl: 404: not found")


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["switch"],
        ["switch", "a", "b"],
        ["weights", "--timeout", "0"],
        ["weights", "--timeout", "soon"],
        ["--admin", "ftp://127.0.0.1:9901", "weights"],
        ["--admin", "http://127.0.0.1:port", "weights"],
        ["weights", "--bogus"],
        ["weights", "--route", " "],
        ["reload", "--route", "api"],
        ["--route", "api", "events"],
        ["routes", "--route", "api"],
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    status, out, err = run(capsys, *args)
    assert (status, out) == (2, "")
    assert one_line(err).startswith("splitter ctl: ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys)
    assert (status, out) == (2, "")
    assert err.startswith("usage: splitter ctl")


@pytest.mark.parametrize("args", [["--help"], ["set", "--help"], ["-h"]])
def test_help(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    status, out, err = run(capsys, *args)
    assert (status, err) == (0, "")
    assert out.startswith("usage: splitter ctl")
    assert "--admin" in out and "--token" in out and "--json" in out


def test_does_not_import_aiohttp() -> None:
    code = "import sys, splitter.ctl; print(sorted(m for m in sys.modules if 'aiohttp' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- shadow
# (against a real splitter: tests/e2e/test_ctl_shadow.py)


@pytest.mark.parametrize(
    ("text", "share"),
    [("10%", 0.1), ("12.5%", 0.125), (" 5 % ", 0.05), ("0%", 0.0), ("100%", 1.0),
     ("0.1", 0.1), ("0", 0.0), ("-0", 0.0), ("1", 1.0), ("1e-3", 0.001)],
)  # fmt: skip
def test_shadow_share_as_a_percent_or_a_fraction(text: str, share: float) -> None:
    assert ctl._parse_share(text) == share


@pytest.mark.parametrize(
    "args",
    [
        ["shadow", "set"],
        ["shadow", "set", "abc"],
        ["shadow", "set", "%"],
        ["shadow", "set", "10"],  # neither a fraction nor a percent
        ["shadow", "set", "1.5"],
        ["shadow", "set", "150%"],
        ["shadow", "set", "-1"],
        ["shadow", "set", "-5%"],
        ["shadow", "set", "nan"],
        ["shadow", "set", "inf%"],
        ["shadow", "set", "10%", "20%"],
        ["shadow", "set", "10%", "--pool", " "],
        ["shadow", "set", "10%", "--reference", ""],
        ["shadow", "set", "10%", "--reference", "green", "--no-reference"],
        ["shadow", "stop", "now"],
        ["shadow", "start"],
        ["shadow", "--route", " "],
    ],
)
def test_shadow_usage_errors(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    status, out, err = run(capsys, "--admin", admin.url, *args)
    assert (status, out) == (2, "")
    assert one_line(err).startswith("splitter ctl: ")
    assert "Traceback" not in err
    assert admin.requests == []  # nothing was asked of the server


def test_shadow_share_usage_error_suggests_a_percent(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "shadow", "set", "10")
    assert status == 2
    assert "did you mean 10%?" in one_line(err)


def test_shadow_values_are_made_safe_for_a_terminal() -> None:
    """Paths and values come from clients and backends: no escape sequence, no line
    break reaches the terminal, and a long value is cut."""
    body = {
        "pool": "canary", "share": 0.05, "reference": None, "compared": 3, "same": 1,
        "differ": 2, "noise": 0, "skipped": 0, "errors": 0, "diff_rate": 2 / 3,
        "fields": [{"field": "/name", "differ": 2}],
        "recent": [
            {"at": "2026-11-30T10:00:00.000Z", "method": "GET", "path": "/a\x1b]0;owned\x07",
             "primary_status": 200, "shadow_status": 200, "field": "/name",
             "primary": '"x"', "shadow": "line\nbreak\r\x1b[2J"},
            {"at": "not a time", "method": "GET", "path": "/b", "primary_status": 200,
             "shadow_status": 502, "field": "status", "primary": "200", "shadow": "y" * 200},
        ],
    }  # fmt: skip
    out = ctl.show.show_shadow(body)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "shadow: canary gets copies of 5% of the requests, no reference"
    assert lines[3].split() == ["3", "1", "2", "0", "0", "0", "66.7%"]
    assert lines[-2].split()[2] == "/a\\x1b]0;owned\\x07"
    assert lines[-2].endswith('"x" → line\\nbreak\\r\\x1b[2J')
    assert lines[-1].split()[:4] == ["not", "a", "time", "GET"]  # shown as it came
    assert lines[-1].split()[4:7] == ["/b", "200", "→"]
    assert lines[-1].endswith("200 → " + "y" * 39 + "…")
    assert len(lines) == 11  # nothing split a row


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(0, "0%"), (1, "100%"), (1 / 6, "16.7%"), (0.0123, "1.23%"), (0.5, "50%"),
     (0.00001, "<0.01%"), (None, "-")],
)  # fmt: skip
def test_shadow_diff_rate_as_a_percentage(ratio: Any, text: str) -> None:
    assert ctl.show.percent(ratio) == text


def test_no_shadow(capsys: pytest.CaptureFixture[str]) -> None:
    body = {"pool": None, "share": 0, "reference": None, "compared": 0, "same": 0,
            "differ": 0, "noise": 0, "skipped": 0, "errors": 0, "diff_rate": 0,
            "fields": [], "recent": []}  # fmt: skip
    assert ctl.show.show_shadow(body) == "no shadow traffic on this route"
    with pytest.raises(ctl.show.Failure):
        ctl.show.show_shadow({"weights": {}})

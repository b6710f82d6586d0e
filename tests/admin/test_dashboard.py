"""splitter/admin/dashboard.py in process: the statistics computed from a known window at a known
time, and sessions that expire (the clock is the only thing faked; the admin app is real
and served on loopback by aiohttp's test server)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from splitter.admin.api import shadow_json
from splitter.admin.dashboard import DASHBOARD_KEY, LAG, Dashboard
from splitter.admin.routes import make_admin_app
from splitter.admin.stream import Feed, Subscriber
from splitter.config import Config, load
from splitter.control.controller import Controller, EventLog
from splitter.control.route import RouteControl
from splitter.errors import ConfigError
from splitter.observe.stats import latency_bucket
from splitter.shadow import Tally
from splitter.state import StateFile
from tests.support import FakeClock

TOKEN = "t0ken-of-16-chars"
T0 = 1_800_000_000.0  # a whole second


class Host:
    """What live.py needs of a running splitter, without a proxy."""

    def __init__(self, config: Config, state_path: Path) -> None:
        # Not started: its weights are the config's, which is all the statistics read.
        self.config = config
        self.events = EventLog()
        self.feed = Feed()
        self.live = None
        self.leader = True
        controller = Controller(
            config, StateFile(str(state_path)), lambda c, w: None, events=self.events
        )
        self.main: RouteControl | None = RouteControl(self, controller, _post, settled=2)
        self.replicas = 1
        self.metrics = self
        self.stopping = False
        self.window = self.main.window
        self.started_at = T0
        self.down: set[str] = set()
        self.tallies: dict[str, Tally] = {}  # "route/pool" -> its copies' tally
        self.tallies_read: list[str] = []

    def shadow_tally(self, key: str) -> Tally:
        self.tallies_read.append(key)
        return self.tallies.get(key) or Tally()

    def route_control(self, name: str) -> RouteControl | None:
        return self.main if self.main is not None and name == self.main.name else None

    def route_controls(self) -> list[RouteControl]:
        return [self.main] if self.main is not None else []

    def render(self) -> bytes:
        return b""

    def catch_up_with_file(self) -> None:
        pass

    def backend_up(self, url: str) -> bool:
        return url not in self.down

    def reload(self, source: str) -> ConfigError | None:
        return None

    def is_ready(self) -> bool:
        return True


async def _post(url: str, body: dict[str, Any], timeout: float) -> int:
    raise AssertionError("no webhook here")


def make_host(tmp_path: Path, token: str = "", extra: str = "") -> Host:
    path = tmp_path / "splitter.yaml"
    path.write_text(
        f"""
listen: 127.0.0.1:1
admin: {{listen: 127.0.0.1:2, token: "{token}"}}
state_file: {tmp_path / "state.json"}
pools:
  blue: {{weight: 75, backends: [http://127.0.0.1:3, http://127.0.0.1:4]}}
  canary: {{weight: 25, backends: [http://127.0.0.1:5]}}
{extra}
"""
    )
    return Host(load(str(path)), tmp_path / "state.json")


def second(pools: dict[str, tuple[int, int, float]]) -> dict[str, Any]:
    """One drained second: pool -> (requests, errors, latency of each in seconds)."""
    out = {}
    for name, (requests, errors, latency) in pools.items():
        counts = [requests, errors, 0, 0, 0, 0, 0, 0]
        out[name] = (counts, {}, {latency_bucket(latency): requests}, {})
    return out


def test_stats_over_a_known_window(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    host.started_at = T0 - 1000  # old enough: rps divides by the window
    dashboard = Dashboard(host)
    for s in range(10):
        host.window.add(
            {
                int(T0) + s: second(
                    {"blue": (30, 0, 0.002), "canary": (10, 1, 0.050), "none": (2, 0, 0.0001)}
                )
            }
        )
    host.down.add("http://127.0.0.1:4")
    now = T0 + 10 + LAG  # the 10 seconds are complete
    body = dashboard.stats(host.main, 10, now)
    assert body["window"] == 10 and body["at"].endswith("Z")
    blue, canary, none = body["pools"]["blue"], body["pools"]["canary"], body["pools"]["none"]
    assert blue["requests"] == 300 and blue["rps"] == 30.0 and blue["share"] == 0.75
    assert canary["requests"] == 100 and canary["rps"] == 10.0 and canary["share"] == 0.25
    assert canary["error_rate"] == 0.1 and blue["error_rate"] == 0
    assert blue["weight"] == 75 and blue["backends_up"] == 1 and blue["backends"] == 2
    assert 2.0 <= blue["p50_ms"] <= 2.0 * 1.19 and blue["p99_ms"] == blue["p50_ms"]
    assert 50.0 <= canary["p99_ms"] <= 50.0 * 1.19
    assert none == {**none, "requests": 20, "rps": 2.0} and "share" not in none
    # a second still being drained is not counted yet
    host.window.add({int(T0) + 10: second({"blue": (999, 0, 0.002)})})
    assert dashboard.stats(host.main, 10, now)["pools"]["blue"]["requests"] == 300
    assert dashboard.stats(host.main, 10, now + 1)["pools"]["blue"]["requests"] == 270 + 999


def test_a_young_process_divides_by_its_uptime(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    host.started_at = T0 + 0.5
    dashboard = Dashboard(host)
    host.window.add({int(T0) + s: second({"blue": (20, 0, 0.001)}) for s in range(4)})
    # complete: seconds T0..T0+3, 3.5 s of uptime
    body = dashboard.stats(
        host.main, 60, T0 + 4 + LAG
    )  # complete: seconds T0..T0+3, 3.5 s of uptime
    assert body["pools"]["blue"]["rps"] == round(80 / 3.5, 3)


def test_series_fills_missing_seconds_with_zeros(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    dashboard = Dashboard(host)
    host.window.add({int(T0) + 1: second({"canary": (7, 2, 0.01)})})
    body = dashboard.series(host.main, int(T0), int(T0) + 3, T0 + 3 + LAG)
    assert body["start"] == int(T0) and body["seconds"] == 3
    assert body["pools"]["canary"] == {"requests": [0, 7, 0], "errors": [0, 2, 0]}
    assert body["pools"]["blue"] == {"requests": [0, 0, 0], "errors": [0, 0, 0]}
    assert "none" not in body["pools"]


def test_an_expired_session_is_401_and_ends_its_stream(tmp_path: Path) -> None:
    async def main() -> None:
        host = make_host(tmp_path, TOKEN)
        app: web.Application = make_admin_app(host)
        dashboard = app[DASHBOARD_KEY]
        clock = FakeClock(time.monotonic())
        dashboard.sessions.clock = clock
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/api/v1/session", json={"token": TOKEN})
            assert response.status == 204
            cookie = response.cookies["splitter_admin"].value
            headers = {"Cookie": f"splitter_admin={cookie}", "X-Requested-With": "splitter"}
            assert (await client.get("/api/v1/weights", headers=headers)).status == 200
            stream = await client.get("/api/v1/stream", headers=headers)
            assert stream.status == 200
            assert (await stream.content.readuntil(b"\n\n")).startswith(b"retry:")

            clock.now += 12 * 3600  # twelve hours later
            assert (await client.get("/api/v1/weights", headers=headers)).status == 401
            response = await client.put("/api/v1/weights", json={"blue": 1}, headers=headers)
            assert response.status == 401
            host.feed.publish("event", {"what": "anything"})  # the stream checks, and ends
            rest = await asyncio.wait_for(stream.content.read(), 5)
            assert b"anything" not in rest
            assert (await client.get("/api/v1/stream", headers=headers)).status == 401

    asyncio.run(main())


# --------------------------------------------------------------------------- shadow


def received(subscriber: Subscriber) -> list[tuple[str, Any]]:
    """The messages queued for a stream client: (kind, data), and the queue emptied."""
    out = []
    for message in subscriber.queue:
        event, data = message.decode().strip().split("\n")
        out.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    subscriber.queue.clear()
    return out


def test_the_ticker_publishes_the_shadow_of_a_route_that_has_one(tmp_path: Path) -> None:
    async def main() -> None:
        host = make_host(tmp_path, extra="shadow: {pool: canary, share: 0.5}")
        assert host.main is not None
        route = host.main
        await route.controller.start()
        dashboard = Dashboard(host)
        stats_only = host.feed.subscribe({"stats"})
        dashboard.tick(T0)
        assert host.tallies_read == []  # nobody listens for it: not even computed
        assert [kind for kind, _ in received(stats_only)] == ["stats"]

        listener = host.feed.subscribe({"shadow"})
        tally = host.tallies["default/canary"] = Tally()
        tally.counts["same"], tally.counts["differ"] = 6, 2
        tally.fields["/price"] = 2
        dashboard.tick(T0 + 1)
        [(kind, body)] = received(listener)
        assert kind == "shadow"
        assert body == {"route": "default", **shadow_json(route)}
        assert (body["pool"], body["share"], body["reference"]) == ("canary", 0.5, None)
        assert (body["compared"], body["differ"], body["diff_rate"]) == (8, 2, 0.25)
        assert body["fields"] == [{"field": "/price", "differ": 2}]
        assert received(stats_only) != []  # and the rest as before
        dashboard.tick(T0 + 2)
        assert [kind for kind, _ in received(listener)] == ["shadow"]  # every second

        # Stopped: no pool, and what was compared stays in view.
        await route.shadow.stop(route.shadow_in_force())
        dashboard.tick(T0 + 3)
        [(_, body)] = received(listener)
        assert (body["pool"], body["compared"]) == (None, 8)
        # Nothing counted any more (say, the file's section gone): one last message, so
        # that a page hides its panel, then none.
        del host.tallies["default/canary"]
        dashboard.tick(T0 + 4)
        [(_, body)] = received(listener)
        assert (body["route"], body["pool"], body["compared"]) == ("default", None, 0)
        dashboard.tick(T0 + 5)
        assert received(listener) == []

    asyncio.run(main())


def test_no_shadow_message_for_a_route_without_shadow(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    dashboard = Dashboard(host)
    listener = host.feed.subscribe()  # every kind, as the page's stream
    for s in range(3):
        dashboard.tick(T0 + s)
    kinds = {kind for kind, _ in received(listener)}
    assert "stats" in kinds and "series" in kinds  # it listens and gets the rest
    assert "shadow" not in kinds

"""End to end: routes shared by several replicas through a store (docs/operations.md
#several-replicas, docs/configuration.md#routes-and-segments): three real `splitter run`
processes on one real `redis-server`, two routes over real Flask backends.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redisserver import RedisServer
from tests.support import (
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    route_entry,
    routes_config,
    wait_until,
)
from tests.traffic import Traffic

pytestmark = pytest.mark.slow

PREFIX = "routes"
SplitterFactory = Callable[..., SplitterProc]


def api(sp: SplitterProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return admin_api(sp, method, path, body)


def weights(sp: SplitterProc, route: str) -> dict[str, float]:
    status, body = api(sp, "GET", f"/api/v1/routes/{route}/weights")
    assert status == 200, body
    return dict(body)


def rollout(sp: SplitterProc, route: str) -> dict[str, Any]:
    status, body = api(sp, "GET", f"/api/v1/routes/{route}/rollout")
    assert status == 200, body
    return dict(body)


def served_by(sp: SplitterProc, host: str, n: int = 10) -> Counter[str]:
    """The pools (X-Pool) of n new clients' requests with this Host through `sp`."""
    answers = [http_request(sp.proxy_url, headers={"Host": host}) for _ in range(n)]
    return Counter(headers["x-pool"] for _, headers, _ in answers)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.kill()


def fleet_of(
    factory: SplitterFactory, pools: dict[str, Backend], url: str, tmp_path: Path
) -> list[SplitterProc]:
    fleet = []
    for name in "abc":
        config = routes_config(
            route_entry("shop", {"blue": pools["blue"], "canary": pools["canary"]},
                        {"blue": 100}, hosts=["shop.test"]),
            route_entry("api", {"blue": pools["blue"], "canary": pools["canary"]},
                        {"blue": 100}, hosts=["api.test"]),
            sticky={"cookie": "splitter"},
            store={"url": url, "prefix": PREFIX},
            state_file=str(tmp_path / f"state-{name}.json"),
            rollouts={"hold": "2s", "max": "30s",
                      "analysis": {"warmup": "0s", "min_error_rate": 0.05,
                                   "latency_floor": "50ms"}},
        )  # fmt: skip
        fleet.append(factory(config))
    for sp in fleet:
        sp.wait_readyz()
    return fleet


def leader_of(server: RedisServer, fleet: list[SplitterProc]) -> SplitterProc | None:
    holder = server.client().get(f"{PREFIX}:leader")
    for sp in fleet:
        if holder is not None and f"-{sp.pid}-" in holder.decode():
            return sp
    return None


def test_three_replicas_share_two_routes_weights_and_a_rollout_on_one_of_them(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = fleet_of(splitter_factory, three_pools, redis_server.url, tmp_path)
    leader = wait_until(lambda: leader_of(redis_server, fleet), 5, message="a leader")
    assert leader is not None
    first, others = fleet[0], fleet[1:]

    # Weights set on shop through one replica: in force on the others, api untouched.
    sent = time.monotonic()
    status, answer = api(first, "PUT", "/api/v1/routes/shop/weights", {"blue": 0, "canary": 100})
    assert (status, answer) == (200, {"blue": 0, "canary": 100})
    for sp in others:
        wait_until(lambda sp=sp: weights(sp, "shop")["canary"] == 100, 2, interval=0.01)
    took = time.monotonic() - sent
    print(f"shop's weights set through one replica were in force on the others in {took:.2f}s")
    assert took < 1.0, f"in force everywhere {took:.2f}s after the request (contract: 1 s)"
    for sp in fleet:
        assert weights(sp, "api") == {"blue": 100, "canary": 0}
        assert served_by(sp, "shop.test") == {"canary": 10}, sp
        assert served_by(sp, "api.test") == {"blue": 10}, sp

    # A rollout on api, started through a replica that does not lead: the leader drives it
    # on the traffic of all three, and every replica sees it promoted.
    via = next(sp for sp in fleet if sp is not leader)
    body = {"pool": "canary", "steps": [{"weight": 20, "hold": "2s"}, 100]}
    traffic = [
        Traffic(sp.proxy_port, clients=100, rate=40, seconds=60, headers={"Host": "api.test"})
        for sp in fleet
    ]
    for t in traffic:
        t.start()
    try:
        status, started = api(via, "POST", "/api/v1/routes/api/rollout", body)
        assert status == 201 and started["route"] == "api", started
        for sp in fleet:
            wait_until(lambda sp=sp: weights(sp, "api")["canary"] == 20, 2, interval=0.02)
        final = wait_until(
            lambda: (
                all(rollout(sp, "api")["status"] == "promoted" for sp in fleet)
                and rollout(leader, "api")
            ),
            40,
            message="api's rollout promoted on every replica",
        )
    finally:
        for t in traffic:
            t.stop()
    steps = [h["detail"].split(":")[0] for h in final["history"] if h["what"] == "step"]
    assert steps == ["step 1 of 2"], final["history"]
    assert final["analysis"]["verdict"] == "pass"
    assert leader_of(redis_server, fleet) is leader  # one leader throughout
    for sp in fleet:
        assert weights(sp, "api") == {"blue": 0, "canary": 100}
        assert weights(sp, "shop") == {"blue": 0, "canary": 100}  # untouched by it
        assert api(sp, "GET", "/api/v1/routes/shop/rollout")[0] == 404
        assert served_by(sp, "api.test") == {"canary": 10}
    assert all(t.count(pool="canary") > 0 for t in traffic)  # each replica served it
    assert all(set(t.statuses()) == {200} for t in traffic), [t.statuses() for t in traffic]

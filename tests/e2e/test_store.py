"""End to end: several replicas sharing a store (docs/operations.md#several-replicas): three real
`splitter run` processes, one real `redis-server`, real Flask backends under gunicorn.

Every bound of the contract is measured, printed, and put in the assertion's message:
a change in force everywhere within 1 s, every replica in sync within 2 s of the
store's return, a new rollout leader within 15 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.loadgen import LoadResult, run_load
from tests.redisserver import Certificates, RedisServer
from tests.support import (
    Backend,
    SplitterProc,
    admin_api,
    http_request,
    pools_config,
    run_cli,
    wait_until,
    write_config,
)
from tests.traffic import Traffic

pytestmark = pytest.mark.slow

PREFIX = "test"
SplitterFactory = Callable[..., SplitterProc]
START = {"blue": 100, "green": 0, "canary": 0}


# --------------------------------------------------------------------------- helpers


def api(sp: SplitterProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return admin_api(sp, method, path, body)


def weights(sp: SplitterProc) -> dict[str, float]:
    status, body = api(sp, "GET", "/api/v1/weights")
    assert status == 200, body
    return dict(body)


def events(sp: SplitterProc) -> list[dict[str, Any]]:
    status, body = api(sp, "GET", "/api/v1/events")
    assert status == 200, body
    return list(body["events"])


def metric(sp: SplitterProc, name: str) -> float | None:
    status, _, raw = http_request(f"{sp.admin_url}/metrics")
    assert status == 200
    for line in raw.decode().splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    return None


def rollout(sp: SplitterProc) -> dict[str, Any]:
    status, body = api(sp, "GET", "/api/v1/rollout")
    assert status == 200, body
    return dict(body)


def stored(server: RedisServer) -> dict[str, Any] | None:
    raw = server.client().hget(f"{PREFIX}:doc", "doc")
    return None if raw is None else dict(json.loads(raw))


def replica_config(
    pools: dict[str, Backend], url: str, tmp_path: Path, name: str, **extra: Any
) -> dict[str, Any]:
    extra.setdefault("rollouts", {"hold": "1h", "max": "2h", "analysis": {"warmup": "0s"}})
    return pools_config(
        dict(pools),
        START,
        sticky={"cookie": "splitter"},
        override={"header": "X-Splitter-Pool"},
        store={"url": url, "prefix": PREFIX},
        state_file=str(tmp_path / f"state-{name}.json"),
        **extra,
    )


def start_fleet(
    factory: SplitterFactory,
    pools: dict[str, Backend],
    url: str,
    tmp_path: Path,
    names: str = "abc",
    env: dict[str, str] | None = None,
) -> list[SplitterProc]:
    fleet = [factory(replica_config(pools, url, tmp_path, n), env=env) for n in names]
    for sp in fleet:
        sp.wait_readyz()
    return fleet


def until(predicate: Callable[[], Any], timeout: float, what: str = "") -> Any:
    """`predicate`'s first true answer, polled every 10 ms; AssertionError after timeout."""
    return wait_until(predicate, timeout=timeout, interval=0.01, message=what)


def time_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `predicate` holds (polled every 5 ms); AssertionError after timeout."""
    t0 = time.monotonic()
    wait_until(predicate, timeout=timeout, interval=0.005, message=what)
    return time.monotonic() - t0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.kill()


# --------------------------------------------------------------------------- propagation


def test_a_change_through_one_replica_is_in_force_in_the_others_within_a_second(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    figures = []
    for i in range(12):
        via = fleet[i % 3]
        others = [sp for sp in fleet if sp is not via]
        if i % 4 == 3:
            target = {"blue": 0, "green": 100, "canary": 0} if i % 8 == 3 else START
            sent = time.monotonic()
            status, body = api(via, "POST", "/api/v1/switch",
                               {"pool": max(target, key=lambda p: target[p])})  # fmt: skip
            assert status == 200, body
        else:
            target = {"blue": 100 - 10 * i, "green": 0, "canary": 10 * i}
            sent = time.monotonic()
            status, body = api(via, "PUT", "/api/v1/weights", target)
            assert status == 200 and body == target, body
        took = max(
            time_until(lambda sp=sp, t=target: weights(sp) == t, 5, f"{target} in {sp}")
            for sp in others
        )
        figures.append(time.monotonic() - sent)
        assert took < 1.0, f"change {i}: in force everywhere {took:.3f}s after the answer"
    worst = max(figures)
    print(f"a change made through one replica was in force in the two others within "
          f"{worst * 1000:.0f} ms of its request at worst ({len(figures)} changes, median "
          f"{sorted(figures)[len(figures) // 2] * 1000:.0f} ms)")  # fmt: skip
    assert worst < 1.0, f"propagation took up to {worst:.3f}s (contract: 1 s)"

    # And the proxied requests follow: a switch through C moves B's clients at once.
    status, _ = api(fleet[2], "POST", "/api/v1/switch", {"pool": "green"})
    assert status == 200
    took = time_until(
        lambda: {http_request(fleet[1].proxy_url)[1]["x-pool"] for _ in range(5)} == {"green"},
        1.0,
        "B's requests served by green",
    )
    print(f"B served green {took * 1000:.0f} ms after the switch through C answered")
    # The events of every replica are shared.
    for sp in fleet:
        until(
            lambda sp=sp: len([e for e in events(sp) if e["source"] == "api"]) == 13,
            2.0,
            f"the 13 changes in the events of {sp}",
        )


def test_stats_on_any_replica_show_the_whole_fleet(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    sent = [0, 0, 0]
    for i, sp in enumerate(fleet):  # a known number of requests through each replica
        for _ in range(20 * (i + 1)):
            assert http_request(sp.proxy_url)[0] == 200
            sent[i] += 1

    def fleet_requests(sp: SplitterProc) -> int:
        status, body = api(sp, "GET", "/api/v1/stats?window=60")
        assert status == 200, body
        assert body["replicas"] == 3, body
        return int(sum(p.get("requests", 0) for p in body["pools"].values()))

    for sp in fleet:  # every replica counts the 120 requests, whichever served them
        until(lambda sp=sp: fleet_requests(sp) == sum(sent), 10, f"120 requests in {sp}")


def test_a_cookie_from_one_replica_keeps_its_pool_on_the_others(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """C runs two workers: its primary owns the store's connection and hands the fleet's
    secret and weights to them."""
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path, names="ab")
    with_workers = replica_config(three_pools, redis_server.url, tmp_path, "c", workers=2)
    fleet.append(splitter_factory(with_workers))
    fleet[2].wait_readyz()
    assert api(fleet[0], "PUT", "/api/v1/weights", {"blue": 50, "green": 50})[0] == 200
    for sp in fleet:
        until(lambda sp=sp: weights(sp)["green"] == 50, 2)
    secret = redis_server.client().get(f"{PREFIX}:secret")
    assert secret is not None and len(secret) == 64
    for name in "abc":  # every replica keeps the fleet's secret in its file
        state = json.loads((tmp_path / f"state-{name}.json").read_text())
        assert state["cookie_secret"].encode() == secret
    cookies = []
    for _ in range(40):
        status, headers, _ = http_request(fleet[0].proxy_url)
        assert status == 200
        cookies.append((headers["set-cookie"].split(";", 1)[0], headers["x-pool"]))
    assert {pool for _, pool in cookies} == {"blue", "green"}
    for sp in fleet[1:]:
        for cookie, pool in cookies:
            status, headers, _ = http_request(sp.proxy_url, headers={"Cookie": cookie})
            assert (status, headers["x-pool"]) == (200, pool), (sp, cookie)
            assert "set-cookie" not in headers  # its signature is valid here too


def test_concurrent_changes_through_two_replicas_lose_nothing(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    answers: dict[str, list[tuple[int, Any]]] = {"blue": [], "green": []}

    def put_all(sp: SplitterProc, pool: str) -> None:
        for i in range(1, 51):
            answers[pool].append(api(sp, "PUT", "/api/v1/weights", {pool: i}))

    threads = [
        threading.Thread(target=put_all, args=(fleet[0], "blue")),
        threading.Thread(target=put_all, args=(fleet[1], "green")),
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    took = time.monotonic() - t0
    for pool, got in answers.items():
        assert [status for status, _ in got] == [200] * 50, got
        assert [body[pool] for _, body in got] == list(range(1, 51)), got
    final = {"blue": 50, "green": 50, "canary": 0}
    for sp in fleet:
        until(lambda sp=sp: weights(sp) == final, 1.0, f"{final} in {sp}")
    doc = stored(redis_server)
    assert doc is not None and doc["weights"] == final

    def all_events(sp: SplitterProc) -> bool:
        made = [e for e in events(sp) if e["source"] == "api"]
        return sorted(e["new"]["blue"] for e in made) == sorted(
            [b["blue"] for _, b in answers["blue"]] + [b["blue"] for _, b in answers["green"]]
        )

    for sp in fleet:
        until(lambda sp=sp: all_events(sp), 3, f"the 100 events on {sp}")
    print(f"100 concurrent PUTs through two replicas in {took:.1f}s: all answered 200, "
          f"the final weights are {final} on every replica and in the store, "
          f"every replica lists the 100 events")  # fmt: skip


def test_a_changed_file_is_shared_and_a_file_not_updated_yet_keeps_the_shared_weights(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    a, b, c = fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    assert api(b, "PUT", "/api/v1/weights", {"green": 30})[0] == 200
    runtime = {"blue": 100, "green": 30, "canary": 0}
    for sp in fleet:
        until(lambda sp=sp: weights(sp) == runtime, 1.0)

    def edit(sp: SplitterProc, w: dict[str, float]) -> None:
        assert sp.config is not None
        config = {**sp.config, "pools": {k: dict(v) for k, v in sp.config["pools"].items()}}
        for pool, weight in w.items():
            config["pools"][pool]["weight"] = weight
        write_config(sp.config_path, config, atomic=True)

    new_file = {"blue": 50, "green": 0, "canary": 50}
    edit(a, new_file)  # the file's weights change on A only (a rolling deploy)
    took = max(time_until(lambda sp=sp: weights(sp) == new_file, 3.0, f"the file's on {sp}")
               for sp in fleet)  # fmt: skip
    print(f"a file edit on one replica was in force on all within {took * 1000:.0f} ms "
          "of the first (the watcher polls every 0.5 s)")  # fmt: skip
    until(lambda: any("runtime weights dropped" in e["what"] for e in events(c)), 2.0)
    # B's file still has the old weights: a reload of it keeps the shared ones.
    revision = redis_server.client().hget(f"{PREFIX}:doc", "rev")
    assert api(b, "POST", "/api/v1/reload")[0] == 200
    time.sleep(0.6)
    assert all(weights(sp) == new_file for sp in fleet)
    assert redis_server.client().hget(f"{PREFIX}:doc", "rev") == revision
    # A change made now, then C's file updated to the same weights: the change stays.
    assert api(c, "PUT", "/api/v1/weights", {"canary": 40})[0] == 200
    changed = {"blue": 50, "green": 0, "canary": 40}
    for sp in fleet:
        until(lambda sp=sp: weights(sp) == changed, 1.0)
    edit(c, new_file)
    until(lambda: any(e["what"] == "config reloaded" and e["source"] == "file"
                      for e in events(c)[-3:]), 3.0)  # fmt: skip
    time.sleep(0.6)
    assert all(weights(sp) == changed for sp in fleet), [weights(sp) for sp in fleet]
    # B restarts on its old file: it joins the fleet's state, it does not overwrite it.
    assert b.stop() == 0
    again = splitter_factory(b.config_path)
    assert weights(again) == changed
    time.sleep(0.6)
    assert all(weights(sp) == changed for sp in (a, c, again))


# --------------------------------------------------------------------------- store down


def _load(sp: SplitterProc, seconds: float, connections: int, out: list[LoadResult]) -> None:
    out.append(run_load(sp.proxy_port, connections=connections, duration=seconds))


def test_redis_killed_under_load_fails_no_request_and_the_fleet_converges_when_it_returns(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    results: list[LoadResult] = []
    loaders = [
        threading.Thread(target=_load, args=(sp, 16.0, n, results))
        for sp, n in zip(fleet, (22, 21, 21), strict=True)
    ]  # 64 connections over the three replicas
    for t in loaders:
        t.start()
    time.sleep(2.0)
    redis_server.kill()
    down = time_until(
        lambda: all(metric(sp, "splitter_store_up") == 0 for sp in fleet), 5, "store_up 0"
    )
    print(f"splitter_store_up was 0 on every replica {down * 1000:.0f} ms after SIGKILL")

    unavailable = {"error": "store unavailable"}
    assert api(fleet[0], "PUT", "/api/v1/weights", {"green": 10}) == (503, unavailable)
    assert api(fleet[1], "POST", "/api/v1/switch", {"pool": "green"}) == (503, unavailable)
    assert api(fleet[2], "POST", "/api/v1/rollout", {"pool": "canary"}) == (503, unavailable)
    for sp in fleet:
        assert weights(sp) == START
        assert http_request(f"{sp.admin_url}/readyz")[0] == 200
        errors = metric(sp, "splitter_store_errors_total")
        assert errors is not None and errors >= 1

    # A reload during the outage is in force on its replica at once.
    a = fleet[0]
    assert a.config is not None
    edited = dict(a.config)
    edited["pools"] = {k: dict(v) for k, v in a.config["pools"].items()}
    edited["pools"]["blue"]["weight"] = 80
    edited["pools"]["green"]["weight"] = 20
    write_config(a.config_path, edited, atomic=True)
    reloaded = {"blue": 80, "green": 20, "canary": 0}
    until(lambda: weights(a) == reloaded, 2.0, "A's reload in force")
    assert weights(fleet[1]) == START and weights(fleet[2]) == START
    time.sleep(1.0)

    redis_server.start()
    back = time.monotonic()
    took = time_until(
        lambda: (
            all(weights(sp) == reloaded for sp in fleet)
            and all(metric(sp, "splitter_store_up") == 1 for sp in fleet)
        ),
        2.0,
        "every replica in sync with A's reload",
    )
    print(f"after Redis came back (empty), every replica was in sync within {took * 1000:.0f} ms")
    doc = stored(redis_server)
    assert doc is not None and doc["file_weights"] == reloaded, doc
    until(
        lambda: any(e["what"] == "config reloaded" and e["new"] == reloaded
                    for e in events(fleet[2])),
        2.0,
        "A's reload event on C",
    )  # fmt: skip
    assert time.monotonic() - back < 10
    assert api(fleet[1], "PUT", "/api/v1/weights", {"canary": 5})[0] == 200

    for t in loaders:
        t.join(40)
    assert len(results) == 3
    total = sum(r.sent for r in results)
    for r in results:
        assert r.failed == 0 and r.connect_errors == 0, r.summary()
        assert set(r.statuses) == {200}, r.summary()
    print(f"{total} proxied requests on 64 connections over the outage: none failed")


def test_flushall_is_refilled_by_the_fleet_and_nobody_changes_weights(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    target = {"blue": 30, "green": 70, "canary": 0}
    changes = [{"blue": 10}, {"green": 70}, {"blue": 30}]  # one through each replica
    for sp, change in zip(fleet, changes, strict=True):
        assert api(sp, "PUT", "/api/v1/weights", change)[0] == 200
    for sp in fleet:
        until(lambda sp=sp: weights(sp) == target, 1.0)
    client = redis_server.client()
    secret = client.get(f"{PREFIX}:secret")
    until(lambda: client.xlen(f"{PREFIX}:events") >= 3, 2)
    assert client.flushall()
    flushed = time.monotonic()
    seen: list[dict[str, float]] = []
    while time.monotonic() - flushed < 3.0:
        seen.extend(weights(sp) for sp in fleet)
        time.sleep(0.02)
    assert all(w == target for w in seen), [w for w in seen if w != target][:3]
    doc = stored(redis_server)
    assert doc is not None and doc["weights"] == target, doc
    assert client.get(f"{PREFIX}:secret") == secret
    refilled = [json.loads(f[b"e"]) for _, f in client.xrange(f"{PREFIX}:events")]
    news = sorted(json.dumps(e["new"]) for e in refilled if e["what"] == "weights set")
    assert news == sorted(json.dumps(e["new"]) for e in events(fleet[0]) if e["source"] == "api")
    assert len(news) == 3, refilled  # each replica's change, once
    # Every replica still agrees with the refilled store, and a change goes through.
    assert api(fleet[2], "PUT", "/api/v1/weights", {"canary": 10})[0] == 200
    for sp in fleet:
        until(lambda sp=sp: weights(sp)["canary"] == 10, 1.0)
    print(f"after FLUSHALL the store held the fleet's weights, secret and {len(refilled)} "
          f"events again; no replica's weights changed")  # fmt: skip


def test_a_replica_started_while_redis_is_down_adopts_the_store_once_it_is_back(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis-aof", persist=True)
    try:
        a = start_fleet(splitter_factory, three_pools, server.url, tmp_path, names="a")[0]
        target = {"blue": 40, "green": 0, "canary": 60}
        assert api(a, "PUT", "/api/v1/weights", target)[0] == 200
        secret = server.client().get(f"{PREFIX}:secret")
        server.stop()  # a clean stop: the append-only file keeps everything

        t0 = time.monotonic()  # B runs two workers: the secret it takes up reaches them
        b = splitter_factory(replica_config(three_pools, server.url, tmp_path, "b", workers=2))
        started = time.monotonic() - t0
        b.wait_readyz()
        assert weights(b) == START  # its config and (empty) state file
        assert metric(b, "splitter_store_up") == 0
        own = json.loads((tmp_path / "state-b.json").read_text())["cookie_secret"]
        assert own.encode() != secret
        print(f"a replica started without its store in {started:.1f}s")

        server.start()
        took = time_until(lambda: weights(b) == target, 3.0, "B takes up the store's weights")
        state = json.loads((tmp_path / "state-b.json").read_text())
        assert state["cookie_secret"].encode() == secret
        print(f"it took up the store's state {took * 1000:.0f} ms after Redis came back")
        cookies = []
        for _ in range(20):
            _, headers, _ = http_request(a.proxy_url)
            cookies.append((headers["set-cookie"].split(";", 1)[0], headers["x-pool"]))
        for cookie, pool in cookies:
            _, headers, _ = http_request(b.proxy_url, headers={"Cookie": cookie})
            assert headers["x-pool"] == pool and "set-cookie" not in headers
    finally:
        server.kill()


# --------------------------------------------------------------------------- rollouts


def _replica_of(server: RedisServer, fleet: list[SplitterProc]) -> SplitterProc | None:
    holder = server.client().get(f"{PREFIX}:leader")
    if holder is None:
        return None
    for sp in fleet:
        if f"-{sp.pid}-" in holder.decode():
            return sp
    return None


def test_the_rollout_leader_killed_is_replaced_and_any_replica_drives_the_rollout(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    leader = until(lambda: _replica_of(redis_server, fleet), 5, "a leader")
    others = [sp for sp in fleet if sp is not leader]
    body = {"pool": "canary", "steps": [{"weight": 20, "hold": "1h", "max": "2h"}, 100]}
    status, started = api(others[0], "POST", "/api/v1/rollout", body)
    assert status == 201, started
    expected = {"blue": 80, "green": 0, "canary": 20}
    for sp in fleet:
        until(lambda sp=sp: weights(sp) == expected, 1.0)

    # The leader judges the requests of every replica: here, only the two others get any.
    with Traffic(others[0].proxy_port, clients=100, rate=60, seconds=30), \
            Traffic(others[1].proxy_port, clients=100, rate=60, seconds=30):  # fmt: skip
        judged = until(
            lambda: (n := rollout(leader)["analysis"]["candidate"]["requests"]) >= 30 and n,
            15,
            "the leader judges the others' requests",
        )
    print(f"the leader judged {judged} candidate requests, all served by the other replicas")

    leader.kill()
    killed = time.monotonic()
    survivor = others[1]
    took = time_until(lambda: rollout(survivor)["history"][-1]["what"] == "restarted", 15.0,
                      "another replica takes over")  # fmt: skip
    new_leader = _replica_of(redis_server, others)
    assert new_leader is not None
    print(f"the leader was killed; replica pid {new_leader.pid} took the rollout over after "
          f"{time.monotonic() - killed:.1f}s")  # fmt: skip
    assert took < 15.0, f"takeover after {took:.1f}s (contract: 15 s)"
    now = rollout(survivor)
    assert (now["id"], now["status"], now["step"]) == (started["id"], "progressing", 0)
    assert weights(survivor) == expected

    # Transitions through either replica are in force in both within a second.
    follower = others[0] if new_leader is others[1] else others[1]
    status, paused = api(follower, "POST", "/api/v1/rollout/pause")
    assert status == 200 and paused["status"] == "paused", paused
    until(lambda: rollout(new_leader)["status"] == "paused", 1.0, "paused on the leader")
    assert api(new_leader, "POST", "/api/v1/rollout/resume")[1]["status"] == "progressing"
    until(lambda: rollout(follower)["status"] == "progressing", 1.0)
    status, aborted = api(follower, "POST", "/api/v1/rollout/abort")
    assert status == 200 and aborted["status"] == "rolled_back", aborted
    for sp in others:
        until(lambda sp=sp: weights(sp) == START, 1.0)
    assert rollout(new_leader)["status"] == "rolled_back"
    expected_events = [
        "rollout of canary started",
        "rollout of canary step",
        "rollout of canary paused",
        "rollout of canary resumed",
        "rollout of canary rolled_back",
    ]
    for sp in others:  # the same events, once each, on both
        until(
            lambda sp=sp: [e["what"].split(":")[0] for e in events(sp)
                           if e["source"] == "rollout"] == expected_events,
            2.0,
            f"the rollout's events on {sp}",
        )  # fmt: skip


def test_a_rollout_holds_while_redis_is_down_and_goes_on_when_it_is_back(
    three_pools: dict[str, Backend],
    splitter_factory: SplitterFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(splitter_factory, three_pools, redis_server.url, tmp_path)
    traffic = [Traffic(sp.proxy_port, clients=100, rate=50, seconds=80) for sp in fleet]
    for t in traffic:
        t.start()
    try:
        steps = [{"weight": 20, "hold": "3s"}, {"weight": 50, "hold": "3s"}, 100]
        analysis = {"min_error_rate": 0.05, "warmup": "0s"}
        body = {"pool": "canary", "analysis": analysis, "steps": steps}
        status, started = api(fleet[0], "POST", "/api/v1/rollout", body)
        assert status == 201, started

        def known(sp: SplitterProc) -> bool:
            status, body = api(sp, "GET", "/api/v1/rollout")
            return status == 200 and body["id"] == started["id"]

        until(lambda: all(known(sp) for sp in fleet), 5)  # every replica has it, then
        redis_server.kill()
        until(lambda: all(metric(sp, "splitter_store_up") == 0 for sp in fleet), 5)
        held = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.0:  # longer than a step's hold
            held.extend((rollout(sp)["status"], rollout(sp)["step"], weights(sp)["canary"])
                        for sp in fleet)  # fmt: skip
            time.sleep(0.2)
        assert set(held) == {("progressing", 0, 20)}, set(held)
        redis_server.start()
        final = until(
            lambda: all(rollout(sp)["status"] == "promoted" for sp in fleet) and rollout(fleet[1]),
            60,
            "promoted on every replica",
        )
    finally:
        for t in traffic:
            t.stop()
    steps = [h["detail"] for h in final["history"] if h["what"] == "step"]
    assert [d.split(":")[0] for d in steps] == ["step 1 of 3", "step 2 of 3"], final["history"]
    for sp in fleet:
        assert weights(sp) == {"blue": 0, "green": 0, "canary": 100}
    assert all(s in (0, 200) for t in traffic for s in t.statuses())
    assert sum(t.statuses()[0] for t in traffic) == 0, [t.statuses() for t in traffic]
    print("the rollout held at step 1 for 6 s without Redis, then was promoted: "
          f"{[h['what'] for h in final['history']]}")  # fmt: skip


# --------------------------------------------------------------------------- security


def test_the_store_password_from_the_environment_is_never_logged(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    password = "pw-Zq8#x:y@z"
    server = RedisServer(tmp_path / "redis-auth", password=password)
    try:
        url = f"redis://:${{SPLITTER_TEST_REDIS_PASSWORD}}@127.0.0.1:{server.port}/0"
        env = {"SPLITTER_TEST_REDIS_PASSWORD": password}
        fleet = start_fleet(splitter_factory, three_pools, url, tmp_path, names="ab", env=env)
        assert api(fleet[0], "PUT", "/api/v1/weights", {"green": 5})[0] == 200
        until(lambda: weights(fleet[1])["green"] == 5, 1.0)
        wrong = "wrong-Pw-5%$"
        intruder = splitter_factory(
            replica_config(three_pools, url, tmp_path, "c"),
            env={"SPLITTER_TEST_REDIS_PASSWORD": wrong},
        )
        assert metric(intruder, "splitter_store_up") == 0  # refused: a wrong password
        server.kill()
        until(lambda: metric(fleet[0], "splitter_store_up") == 0, 5)
        server.start()
        until(lambda: metric(fleet[0], "splitter_store_up") == 1, 5)
        bad = {"store": {"url": "redis://:hunter2-x@127.0.0.1:0/0"}}
        bad_path = write_config(tmp_path / "bad.yaml", {**(fleet[0].config or {}), **bad})
        checked = run_cli("check", "-c", str(bad_path))
        assert checked.returncode == 2 and "store.url" in checked.stderr + checked.stdout
        outputs = [checked.stdout + checked.stderr]
        for sp in [*fleet, intruder]:
            outputs.append(sp.stderr_text() + sp.stdout_text())
        for text in outputs:
            for secret in (password, wrong, "hunter2-x"):
                assert secret not in text, f"{secret!r} logged:\n{text[-3000:]}"
        assert "***@127.0.0.1" in fleet[0].stderr_text()  # the URL is logged redacted
    finally:
        server.kill()


def test_rediss_with_a_test_certificate(
    three_pools: dict[str, Backend], splitter_factory: SplitterFactory, tmp_path: Path
) -> None:
    certs = Certificates(tmp_path / "certs")
    try:
        server = RedisServer(tmp_path / "redis-tls", tls=certs)
    except AssertionError as exc:
        if "tls" in str(exc).lower():
            pytest.skip(f"redis-server here does not serve TLS: {exc}")
        raise
    try:
        assert server.url.startswith("rediss://")
        env = {"SSL_CERT_FILE": str(certs.ca)}  # the test CA, through OpenSSL's default paths
        fleet = start_fleet(splitter_factory, three_pools, server.url, tmp_path, names="ab",
                            env=env)  # fmt: skip
        assert api(fleet[0], "PUT", "/api/v1/weights", {"canary": 25})[0] == 200
        took = time_until(lambda: weights(fleet[1])["canary"] == 25, 1.0, "over TLS")
        print(f"over rediss:// a change reached the other replica in {took * 1000:.0f} ms")
        assert metric(fleet[1], "splitter_store_up") == 1
        # Without the CA, the server's certificate is not trusted: no connection.
        untrusted = splitter_factory(replica_config(three_pools, server.url, tmp_path, "c"))
        assert metric(untrusted, "splitter_store_up") == 0
        assert weights(untrusted) == START
    finally:
        server.kill()

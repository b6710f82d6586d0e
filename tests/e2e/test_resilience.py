"""Resilience under load: a backend killed mid-run, blue/green flips every 50 ms, no
response handed to another request, and a slowloris that must not starve anyone
(docs/configuration.md#choosing-a-pool and docs/configuration.md#proxying and
docs/configuration.md#limits-and-timeouts). Each test prints its figures (`pytest -s` shows them).

Every load is bounded in count and in time, and talks only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping

import pytest

from tests.loadgen import LoadResult, run_load, uvloop
from tests.support import admin_api, http_request, pools_config

pytestmark = pytest.mark.slow


def _bump_nofile(needed: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards `needed` (up to the hard
    limit); the splitter started afterwards inherits it. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _admin_json(admin_url: str, path: str, method: str = "GET", body: object = None) -> object:
    status, answer = admin_api(admin_url, method, path, body, timeout=5)
    assert status == 200, (path, status, answer)
    return answer


def _assert_clean(res: LoadResult) -> None:
    assert res.sent > 0, res.summary()
    assert res.connect_errors == 0, res.summary()
    assert res.failed == 0, res.summary()
    assert res.ok == res.sent, res.summary()  # every request written got a 2xx
    assert set(res.statuses) == {200}, res.summary()


# --------------------------------------------------------------------------- kill


@pytest.mark.timeout(120)
def test_backend_killed_mid_run_loses_no_get(backend_factory, splitter_factory) -> None:
    connections, duration, kill_after = 1000, 30.0, 5.0
    nofile = _bump_nofile(4 * connections + 1024)
    if nofile < 2 * connections + 256:
        connections = max(64, (nofile - 256) // 2)
        print(f"NOTE: RLIMIT_NOFILE is {nofile}: only {connections} connections possible")
    backends = [backend_factory("blue", f"blue-{n}", kind="aio") for n in range(3)]
    health = {
        "path": "/healthz",
        "interval": "500ms",
        "timeout": "1s",
        "healthy_threshold": 1,
        "unhealthy_threshold": 2,
    }
    sp = splitter_factory(pools_config({"blue": backends}, {"blue": 100}, health_check=health))
    sp.wait_readyz()
    victim = backends[1]

    outcome: dict[str, LoadResult] = {}
    load = threading.Thread(
        target=lambda: outcome.setdefault(
            "res", run_load(sp.proxy_port, connections, total=2_000_000, duration=duration)
        ),
        name="load",
    )
    seen_down: dict[str, float] = {}

    def poll_admin(t_kill: float) -> None:
        deadline = t_kill + 10
        while time.monotonic() < deadline:
            try:
                pools = _admin_json(sp.admin_url, "/api/v1/pools")
                state = {b["url"]: b["up"] for b in pools["blue"]["backends"]}  # type: ignore[index]
                if state.get(victim.url) is False:
                    seen_down["after"] = time.monotonic() - t_kill
                    seen_down["others_up"] = all(
                        up for url, up in state.items() if url != victim.url
                    )
                    return
            except Exception as exc:  # a slow admin under load: keep polling, but say so
                seen_down.setdefault("errors", 0)
                seen_down["errors"] += 1
                seen_down["last_error"] = repr(exc)  # type: ignore[assignment]
            time.sleep(0.1)

    fd_before = _fd_count(sp.pid)
    load.start()
    time.sleep(kill_after)
    fd_loaded = _fd_count(sp.pid)
    t_kill = time.monotonic()
    victim.kill()  # SIGKILL, then reaped
    poller = threading.Thread(target=poll_admin, args=(t_kill,), name="admin-poll")
    poller.start()
    poller.join(15)
    load.join(duration + 60)
    assert not load.is_alive(), "the load did not stop by itself"
    res = outcome["res"]
    t_end = time.monotonic()  # idle backend connections close after ~4 s: wait up to 8
    while _fd_count(sp.pid) > fd_before + 10 and time.monotonic() - t_end < 8:
        time.sleep(0.2)
    fd_settled, settle = _fd_count(sp.pid), time.monotonic() - t_end

    _, _, metrics = http_request(f"{sp.admin_url}/metrics")
    upstream_errors = [
        line
        for line in metrics.decode().splitlines()
        if line.startswith("splitter_upstream_errors_total{") and not line.endswith(" 0.0")
    ]
    print(
        f"\nKILL: upstream errors absorbed by retries: {upstream_errors}"
        f"\nKILL: connections={connections} nofile={nofile} {res.summary()}\n"
        f"KILL: victim={victim.url} marked down {seen_down.get('after', float('nan')):.3f}s "
        f"after SIGKILL (admin poll errors: {seen_down.get('errors', 0)} "
        f"{seen_down.get('last_error', '')}); splitter fds before={fd_before} "
        f"under load={fd_loaded} settled={fd_settled} {settle:.1f}s after the load"
    )
    _assert_clean(res)
    assert "after" in seen_down, f"{victim.url} never shown up: false in /api/v1/pools"
    assert seen_down["after"] <= 2.0, f"marked down only {seen_down['after']:.3f}s after the kill"
    assert seen_down["others_up"], "a surviving backend was shown down"


# --------------------------------------------------------------------------- switch


@pytest.mark.timeout(90)
def test_blue_green_switch_every_50ms_fails_nothing(backend_factory, splitter_factory) -> None:
    blue = backend_factory("blue", kind="aio")
    green = backend_factory("green", kind="aio")
    sp = splitter_factory(pools_config({"blue": blue, "green": green}, {"blue": 100}))
    sp.wait_readyz()

    seen: Counter[bytes] = Counter()

    def check(_sent: Mapping[str, str], status: int, headers: dict[str, str], body: bytes) -> bool:
        seen[body] += 1
        return (
            status == 200
            and body in (b"blue", b"green")
            and headers.get("x-pool") == (body.decode("latin-1"))
        )

    stop = threading.Event()
    switches: Counter[str] = Counter()
    switch_errors: list[str] = []

    def flip() -> None:
        target, deadline = "green", time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answer = _admin_json(sp.admin_url, "/api/v1/switch", "POST", {"pool": target})
                assert answer["weights"][target] == 100, answer  # type: ignore[index]
                switches[target] += 1
            except Exception as exc:
                switch_errors.append(repr(exc))
            target = "blue" if target == "green" else "green"
            stop.wait(0.05)

    flipper = threading.Thread(target=flip, name="flipper")
    flipper.start()
    try:
        res = run_load(sp.proxy_port, 64, total=100_000, duration=10, check_fn=check)
    finally:
        stop.set()
        flipper.join(10)

    print(
        f"\nSWITCH: {res.summary()}\nSWITCH: switches={dict(switches)} "
        f"switch_errors={switch_errors[:3]} bodies={dict(seen)}"
    )
    _assert_clean(res)
    assert res.mismatches == 0, res.mismatch_samples
    assert not switch_errors, switch_errors[:3]
    assert sum(switches.values()) >= 20, switches
    assert seen[b"blue"] > 0 and seen[b"green"] > 0, seen


# --------------------------------------------------------------------------- ids


@pytest.mark.timeout(300)
def test_no_response_belongs_to_another_request(backend_factory, splitter_factory) -> None:
    backends = [backend_factory("blue", f"blue-{n}", kind="aio") for n in range(2)]
    sp = splitter_factory(pools_config({"blue": backends}, {"blue": 100}))
    sp.wait_readyz()
    run_tag = uuid.uuid4().hex[:12]

    def headers(i: int) -> dict[str, str]:
        return {"X-Request-Id": f"{run_tag}-{i}"}

    def check(sent: Mapping[str, str], status: int, headers: dict[str, str], body: bytes) -> bool:
        rid = sent["X-Request-Id"]
        return status == 200 and body == rid.encode() and headers.get("x-request-id") == rid

    total = 100_000
    res = run_load(
        sp.proxy_port, 64, total=total, duration=240, path="/echo-id",
        headers_fn=headers, check_fn=check,
    )  # fmt: skip
    print(f"\nIDS: {res.summary()}")
    _assert_clean(res)
    assert res.sent == total, f"only {res.sent} of {total} sent in the time allowed"
    assert res.mismatches == 0, res.mismatch_samples


# --------------------------------------------------------------------------- slowloris


async def _slowloris(port: int, n: int, budget: float) -> dict[str, object]:
    """`n` connections each sending one byte of a request head every 0.5 s until `budget`
    seconds have passed; one the server hangs up is opened again at once, so `n` stay
    open all along. Returns figures about how the server ended them."""
    payload = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 64
    started = time.monotonic()
    deadline = started + budget
    closed_after: list[float] = []  # seconds from connect to the server hanging up
    answers: Counter[bytes] = Counter()
    refused: list[str] = []

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """True when the server hung up before the deadline."""
        opened, got = time.monotonic(), b""
        for byte in payload:
            if time.monotonic() >= deadline:
                return False
            writer.write(bytes([byte]))
            try:
                async with asyncio.timeout(min(0.5, max(0.0, deadline - time.monotonic()))):
                    while data := await reader.read(4096):
                        got += data
            except TimeoutError:
                continue
            except OSError:  # a reset after (or instead of) the answer
                pass
            closed_after.append(time.monotonic() - opened)
            answers[got.split(b"\r\n", 1)[0] or b"(nothing)"] += 1
            return True
        return False

    async def attacker() -> None:
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                refused.append(repr(exc))
                await asyncio.sleep(0.1)
                continue
            try:
                if not await dribble(reader, writer):
                    return
            finally:
                writer.transport.abort()

    await asyncio.gather(*(attacker() for _ in range(n)))
    return {
        "elapsed": round(time.monotonic() - started, 2),
        "connections": n + len(closed_after),
        "hung_up_by_server": len(closed_after),
        "hang_up_after_min": round(min(closed_after, default=float("nan")), 2),
        "hang_up_after_max": round(max(closed_after, default=float("nan")), 2),
        "answers": dict(answers),
        "connect_errors": len(refused),
        "connect_error_samples": refused[:3],
    }


@pytest.mark.timeout(90)
def test_slowloris_does_not_starve_others(backend_factory, splitter_factory) -> None:
    attackers, budget, probes = 500, 5.0, 200
    _bump_nofile(4 * attackers)
    backend = backend_factory("blue", kind="aio")
    sp = splitter_factory(
        pools_config({"blue": backend}, {"blue": 100}, limits={"header_timeout": "2s"})
    )
    sp.wait_readyz()
    for _ in range(20):  # warm up: a backend connection is pooled
        assert http_request(f"{sp.proxy_url}/")[0] == 200
    time.sleep(0.5)
    fd_before = _fd_count(sp.pid)

    latencies: list[float] = []
    probe_errors: list[str] = []
    fd_peak = [fd_before]

    def probe() -> None:
        deadline = time.monotonic() + 30
        for _ in range(probes):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            try:
                status, _, body = http_request(f"{sp.proxy_url}/", timeout=5)
                if status != 200 or body != b"blue":
                    probe_errors.append(f"{status} {body[:60]!r}")
            except Exception as exc:
                probe_errors.append(repr(exc))
            latencies.append(time.perf_counter() - t0)
            fd_peak[0] = max(fd_peak[0], _fd_count(sp.pid))
            time.sleep(0.02)

    prober = threading.Thread(target=probe, name="prober")
    factory = uvloop.new_event_loop if uvloop is not None else None
    prober.start()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            attack = runner.run(_slowloris(sp.proxy_port, attackers, budget))
    finally:
        prober.join(60)
    t_end = time.monotonic()
    fd_after_attack = _fd_count(sp.pid)
    fd_settled = fd_after_attack
    while fd_settled > fd_before + 10 and time.monotonic() - t_end < 5:
        time.sleep(0.1)
        fd_settled = _fd_count(sp.pid)
    settle = time.monotonic() - t_end

    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] if ordered else float("nan")
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    print(
        f"\nSLOWLORIS: attackers={attackers} {attack}\n"
        f"SLOWLORIS: probes={len(latencies)} errors={len(probe_errors)} {probe_errors[:3]} "
        f"p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms max={ordered[-1] * 1000:.1f}ms\n"
        f"SLOWLORIS: splitter fds before={fd_before} peak(sampled)={fd_peak[0]} "
        f"right after={fd_after_attack} settled={fd_settled} in {settle:.2f}s"
    )
    assert attack["connect_errors"] == 0, attack
    assert len(latencies) == probes and not probe_errors, probe_errors[:5]
    assert p99 < 0.2, f"probe p99 {p99 * 1000:.1f}ms"
    assert fd_peak[0] >= fd_before + attackers // 2, "the attack never held connections open"
    # Each attacker was hung up on (408) about header_timeout (2 s) after it connected.
    assert attack["hung_up_by_server"] >= attackers, attack
    assert set(attack["answers"]) == {b"HTTP/1.1 408 Request Timeout"}, attack  # type: ignore[arg-type]
    assert attack["hang_up_after_max"] < 3.0, attack  # type: ignore[operator]
    assert fd_settled <= fd_before + 10, (fd_before, fd_settled)

"""`workers: N`: several processes on one port behaving as one splitter."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from tests.support import admin_api, pools_config, wait_until, write_config


def _children(pid: int) -> set[int]:
    """Worker processes of the splitter primary (multiprocessing's spawn children)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == pid and b"multiprocessing.spawn" in cmdline:
            found.add(int(entry))
    return found


def _get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip()
    finally:
        conn.close()


def _admin(admin_url: str, method: str, path: str, body: object = None) -> object:
    _, answer = admin_api(admin_url, method, path, body, timeout=5)
    return answer.decode() if isinstance(answer, bytes) else answer


def _requests_total(admin_url: str) -> dict[str, float]:
    text = _admin(admin_url, "GET", "/metrics")
    assert isinstance(text, str)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "splitter_requests":
            for sample in family.samples:
                if sample.name == "splitter_requests_total":
                    out[sample.labels["pool"]] = out.get(sample.labels["pool"], 0) + sample.value
    return out


def test_two_workers_serve_and_count_as_one(three_pools, splitter_factory) -> None:
    sp = splitter_factory(
        pools_config(
            {"blue": three_pools["blue"], "green": three_pools["green"]}, {"blue": 100}, workers=2
        )
    )
    workers = _children(sp.pid)
    assert len(workers) == 2
    # Fresh connections are spread by the kernel over both workers; all answer.
    results = Counter(_get(sp.proxy_port) for _ in range(200))
    assert results == {(200, "blue"): 200}
    # /metrics is the sum over the workers (each reports every 0.5 s).
    wait_until(lambda: _requests_total(sp.admin_url).get("blue") == 200, 5)


def test_a_weight_change_reaches_every_worker_within_a_second(
    three_pools, splitter_factory
) -> None:
    sp = splitter_factory(
        pools_config(
            {"blue": three_pools["blue"], "green": three_pools["green"]}, {"blue": 100}, workers=2
        )
    )
    assert _get(sp.proxy_port)[1] == "blue"
    _admin(sp.admin_url, "POST", "/api/v1/switch", {"pool": "green"})
    time.sleep(1.0)
    assert Counter(_get(sp.proxy_port)[1] for _ in range(100)) == {"green": 100}


def test_a_dead_worker_is_started_again(three_pools, splitter_factory) -> None:
    sp = splitter_factory(pools_config({"blue": three_pools["blue"]}, {"blue": 100}, workers=2))
    before = _children(sp.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_until(
        lambda: (c := _children(sp.pid)) and len(c) == 2 and victim not in c and c, 10
    )
    assert len(after & before) == 1
    wait_until(lambda: all(_get(sp.proxy_port) == (200, "blue") for _ in range(20)), 10)
    assert "starting it again" in sp.stderr_text()


def test_sigterm_drains_every_worker(three_pools, splitter_factory) -> None:
    sp = splitter_factory(pools_config({"blue": three_pools["blue"]}, {"blue": 100}, workers=2))
    workers = _children(sp.pid)
    results: list[tuple[int, str]] = []
    slow = [
        threading.Thread(target=lambda: results.append(_get(sp.proxy_port, "/slow?seconds=1.5")))
        for _ in range(4)
    ]
    for t in slow:
        t.start()
    time.sleep(0.5)
    sp.send_signal(signal.SIGTERM)
    for t in slow:
        t.join(10)
    assert results == [(200, "slow")] * 4
    assert sp.wait(15) == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)


def test_a_reload_reaches_every_worker(three_pools, splitter_factory) -> None:
    sp = splitter_factory(
        pools_config(
            {"blue": three_pools["blue"], "green": three_pools["green"]}, {"blue": 100}, workers=2
        )
    )
    assert sp.config is not None
    edited = json.loads(json.dumps(sp.config))
    edited["pools"]["blue"]["weight"] = 0
    edited["pools"]["green"]["weight"] = 100
    write_config(sp.config_path, edited)
    sp.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    # Fresh connections land on both workers; every one of them has the new weights.
    assert Counter(_get(sp.proxy_port)[1] for _ in range(100)) == {"green": 100}
    assert len(_children(sp.pid)) == 2


def test_a_runtime_change_with_workers_survives_a_kill_of_the_primary(
    three_pools, splitter_factory
) -> None:
    config = pools_config(
        {"blue": three_pools["blue"], "green": three_pools["green"]}, {"blue": 100}, workers=2
    )
    first = splitter_factory(config)
    _admin(first.admin_url, "POST", "/api/v1/switch", {"pool": "green"})
    workers = _children(first.pid)
    first.kill()  # kill -9 of the primary: the state file was written before the answer
    # The workers notice their primary is gone and leave by themselves.
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), 10)
    second = splitter_factory(first.config_path)
    weights = _admin(second.admin_url, "GET", "/api/v1/weights")
    assert weights == {"blue": 0, "green": 100}
    assert Counter(_get(second.proxy_port)[1] for _ in range(50)) == {"green": 50}

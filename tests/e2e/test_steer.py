"""End to end: clients trying to steer a rollout (docs/rollouts.md#evidence-no-client-can-steer),
through a real `splitter run` in front of Flask backends under gunicorn.

Honest users come from 127.0.0.1 with sticky cookies; the attacker from 127.0.0.2 (any
address of 127.0.0.0/8 is this machine), so that the per-address limit is the attacker's
alone. Every load is bounded in time and count.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import Backend, SplitterProc, admin_api, pools_config, wait_until
from tests.traffic import Traffic

pytestmark = pytest.mark.slow

TOKEN = "steer-test-token-0123456789"
ATTACKER = "127.0.0.2"
RULES = {
    "hold": "5s",
    "max": "60s",
    "on_inconclusive": "pause",
    "analysis": {"warmup": "1s", "min_error_rate": 0.02, "latency_floor": "50ms"},
}


def _api(sp: SplitterProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return admin_api(sp, method, path, body, token=TOKEN)


def _rollout(sp: SplitterProc) -> dict[str, Any]:
    status, body = _api(sp, "GET", "/api/v1/rollout")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _wait_end(sp: SplitterProc, timeout: float) -> dict[str, Any]:
    ends = {"promoted", "rolled_back", "paused", "cancelled"}
    return wait_until(lambda: (r := _rollout(sp))["status"] in ends and r, timeout)


def _fault(path: Path, fail_rate: float = 0.0) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fail_rate": fail_rate, "delay": 0.0}))
    os.replace(tmp, path)


def _config(pools: dict[str, Backend], **extra: Any) -> dict[str, Any]:
    extra.setdefault("rollouts", RULES)
    return pools_config(
        dict(pools),
        {"blue": 100, "canary": 0},
        sticky={"cookie": "splitter"},
        override={"header": "X-Splitter-Pool"},
        admin={"token": TOKEN},
        health_check={"interval": "500ms", "unhealthy_threshold": 2, "healthy_threshold": 1},
        **extra,
    )


def _cookies_of(port: int, pool: str, wanted: int, source: str = ATTACKER) -> list[str]:
    """Sticky cookies of `pool`, collected as a new client would: ask without a cookie
    until the weights place it there (bounded)."""
    found: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        for _ in range(4000):
            if len(found) >= wanted:
                break
            conn.request("GET", "/echo")
            response = conn.getresponse()
            response.read()
            cookie = response.getheader("Set-Cookie")
            if cookie and response.getheader("X-Pool") == pool:
                found.append(cookie.split(";", 1)[0])
    finally:
        conn.close()
    assert len(found) >= wanted, f"collected {len(found)} {pool} cookies of {wanted}"
    return found


class Attacker:
    """Requests from ATTACKER in a few threads at a bounded rate, with the cookies and
    headers given, until stopped (or `seconds`)."""

    def __init__(self, port: int, path: str, rate: float, seconds: float,
                 cookies: list[str] | None = None, headers: dict[str, str] | None = None,
                 threads: int = 3) -> None:  # fmt: skip
        self.traffic = Traffic(port, clients=max(1, len(cookies or [])) if cookies else 10_000,
                               rate=rate, seconds=seconds, threads=threads, path=path,
                               headers=headers, source=ATTACKER, cookies=cookies,
                               max_requests=int(rate * seconds) + 10)  # fmt: skip

    def __enter__(self) -> Traffic:
        return self.traffic.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.traffic.stop()


@pytest.fixture
def pools(backend_factory: Callable[..., Backend], tmp_path: Path) -> dict[str, Backend]:
    out = {}
    for name in ("blue", "canary"):
        fault = tmp_path / f"{name}.fault"
        _fault(fault)
        out[name] = backend_factory(name, env={"FAULT_FILE": str(fault)})
    return out


def test_errors_aimed_at_a_healthy_canary_do_not_roll_it_back(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    """Five `GET /status/500` a second through the override header, and as many again with
    80 canary cookies: the canary's only backend is not ejected (a 500 is the app's own
    answer), and the judge sees no evidence in a class only the canary serves."""
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=300, rate=100, seconds=70) as users:
        status, body = _api(sp, "POST", "/api/v1/rollout",
                            {"pool": "canary", "steps": [20, 100]})  # fmt: skip
        assert status == 201, body
        cookies = _cookies_of(sp.proxy_port, "canary", 80)
        aimed = {"X-Splitter-Pool": "canary"}
        with Attacker(sp.proxy_port, "/status/500", 5, 60, headers=aimed, threads=1) as a1, \
             Attacker(sp.proxy_port, "/status/500", 5, 60, cookies=cookies) as a2:  # fmt: skip
            final = _wait_end(sp, 65)
        served = a1.count(status=500) + a2.count(status=500)
    assert served >= 50, f"the attack sent only {served} errors"
    assert final["status"] == "promoted", final
    assert users.count(status=503) == 0  # the canary's backend never went out of service
    _, pool_state = _api(sp, "GET", "/api/v1/pools")
    assert all(b["up"] for b in pool_state["canary"]["backends"]), pool_state


def test_a_flood_of_good_requests_cannot_carry_a_broken_canary(
    backend_factory: Callable[..., Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    """The canary fails every 10th `GET /`; an attacker sends `GET /echo` (always 200)
    with 20 canary cookies from three threads as fast as it can: rolled back all the same."""
    pools = {
        "blue": backend_factory("blue"),
        "canary": backend_factory("canary", env={"FAIL_EVERY": "10"}),
    }
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=300, rate=100, seconds=70) as users:
        status, body = _api(sp, "POST", "/api/v1/rollout",
                            {"pool": "canary", "steps": [20, 100]})  # fmt: skip
        assert status == 201, body
        cookies = _cookies_of(sp.proxy_port, "canary", 20)
        with Attacker(sp.proxy_port, "/echo", 2000, 60, cookies=cookies) as flood:
            final = _wait_end(sp, 65)
        sent = len(flood.snapshot())
    assert final["status"] == "rolled_back", final
    assert "bad rate" in final["reason"], final["reason"]
    print(f"rolled back despite {sent} flood requests; users saw "
          f"{users.count(status=500)} errors; judged {final['analysis']}")  # fmt: skip


def test_a_crashing_canary_is_rolled_back_within_a_second_of_the_evidence(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    """Half of the canary's answers fail, at about 300 requests a second, in three rollouts
    one after the other: the judge looks at the second as it fills, so it rolls back on
    evidence a fraction of a second old: the last bad answer it counted came well under a
    second before the rollback was decided (whole seconds, read once settled two seconds
    later, were always more than a second old). The median of the three is asserted."""
    sp = splitter_factory(_config(pools, rollouts={**RULES, "analysis": {"warmup": "0s"}}))
    _fault(tmp_path / "canary.fault", fail_rate=0.5)
    wall_offset = time.time() - time.monotonic()  # the traffic's times are monotonic
    lags = []
    with Traffic(sp.proxy_port, clients=600, rate=300, seconds=45, threads=8) as users:
        time.sleep(2)  # the baseline's traffic first
        for _ in range(3):
            since = time.monotonic()
            status, body = _api(sp, "POST", "/api/v1/rollout",
                                {"pool": "canary", "steps": [25, 100]})  # fmt: skip
            assert status == 201, body
            final = wait_until(lambda: (r := _rollout(sp))["status"] != "progressing" and r, 20)
            assert final["status"] == "rolled_back", final
            time.sleep(1)
            canary = sorted((t, s) for t, _, pool, s in users.snapshot()
                            if pool == "canary" and t >= since)  # fmt: skip
            judged_bad = final["analysis"]["candidate"]["bad"]
            # The judge counts from the first whole second of the step (warmup 0 here).
            step = datetime.fromisoformat(final["step_started_at"].replace("Z", "+00:00"))
            counted_from = int(step.timestamp()) + 1
            bad = [t + wall_offset for t, s in canary if s == 500]
            bad = [t for t in bad if t >= counted_from]
            assert 0 < judged_bad <= len(bad), (judged_bad, len(bad))
            # The last bad answer the judge counted (wall clock), against the time the
            # rollback was decided (the history's, to the millisecond).
            evidence = bad[judged_bad - 1]
            at = next(h["at"] for h in final["history"] if h["what"] == "rolled_back")
            decided = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            lags.append(decided - evidence)
    print(
        f"a canary failing 50% at ~75 req/s, rolled back {', '.join(f'{x:.2f}' for x in lags)}"
        " s after the last bad answer the judge counted"
    )
    assert sorted(lags)[1] < 0.75, f"the evidence was {sorted(lags)[1]:.2f}s old (median)"


def test_the_rollback_needs_the_active_checks_not_ejection(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc], tmp_path: Path
) -> None:
    """A canary whose health check fails is still rolled back ("no live backend")."""
    sp = splitter_factory(_config(pools))
    with Traffic(sp.proxy_port, clients=100, rate=40, seconds=40):
        status, body = _api(sp, "POST", "/api/v1/rollout",
                            {"pool": "canary", "steps": [20, 100]})  # fmt: skip
        assert status == 201, body
        pools["canary"].stop()
        final = _wait_end(sp, 30)
    assert final["status"] == "rolled_back", final


def test_many_addresses_each_within_its_allowance(
    pools: dict[str, Backend], splitter_factory: Callable[..., SplitterProc]
) -> None:
    """One address cannot add more than `max_per_address` client-seconds a second: a
    cookie-less flood of 400 req/s from one address counts as at most 5 a second here."""
    analysis = {"warmup": "1s", "min_error_rate": 0.02, "max_per_address": 5}
    sp = splitter_factory(_config(pools, rollouts={**RULES, "analysis": analysis}))
    steps = [{"weight": 50, "hold": "5s", "max": "8s"}, 100]
    status, body = _api(sp, "POST", "/api/v1/rollout", {"pool": "canary", "steps": steps})
    assert status == 201, body
    with Attacker(sp.proxy_port, "/echo", 400, 6, threads=4) as flood:
        time.sleep(6)
    sent = len(flood.snapshot())
    analysis_now = _rollout(sp)["analysis"]
    judged = analysis_now["candidate"]["requests"] + analysis_now["baseline"]["requests"]
    assert sent > 600, sent
    # at most 5 client-seconds a second and pool, over the 6 s of the flood (2 pools)
    assert judged <= 2 * 5 * 8, (judged, sent)

"""Health checks drive routing: a dead pool's clients go elsewhere and come back."""

from __future__ import annotations

import http.client
import json
from collections import Counter

from tests.support import free_port, http_request, pools_config, wait_until


def _get(
    port: int, cookie: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = cookie
        conn.request("GET", "/", headers=h)
        resp = conn.getresponse()
        body = resp.read().decode().strip()
        set_cookie = resp.getheader("Set-Cookie")
        return resp.status, body, set_cookie.split(";", 1)[0] if set_cookie else None
    finally:
        conn.close()


def _readyz(admin_port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_clients_of_a_dead_pool_move_and_return(backend_factory, splitter_factory) -> None:
    blue = backend_factory("blue")
    canary = backend_factory("canary")
    sp = splitter_factory(
        pools_config({"blue": blue, "canary": canary}, {"blue": 50, "canary": 50}, sticky={})
    )
    clients = []
    for _ in range(60):
        status, pool, cookie = _get(sp.proxy_port)
        assert status == 200 and cookie
        clients.append((cookie, pool))
    assert {pool for _, pool in clients} == {"blue", "canary"}

    canary.kill()
    wait_until(lambda: all(_get(sp.proxy_port, c)[1] == "blue" for c, _ in clients[:10]), 10)
    # Everyone is served by blue while canary is down; nobody gets a new cookie.
    for cookie, _ in clients:
        status, pool, new_cookie = _get(sp.proxy_port, cookie)
        assert (status, pool, new_cookie) == (200, "blue", None)

    # Back on its port: exactly its own clients return to it.
    backend_factory("canary", port=canary.port)
    wait_until(lambda: _get(sp.proxy_port, clients[0][0])[1] == clients[0][1], 10)
    wait_until(lambda: all(_get(sp.proxy_port, c)[1] == p for c, p in clients), 10)


def test_nothing_live_gives_503_and_readyz_follows(backend_factory, splitter_factory) -> None:
    blue = backend_factory("blue")
    sp = splitter_factory(pools_config({"blue": blue}, {"blue": 100}))
    assert _get(sp.proxy_port)[0] == 200
    assert _readyz(sp.admin_port) == 200
    blue.kill()
    wait_until(lambda: _readyz(sp.admin_port) == 503, 10)
    status, body, _ = _get(sp.proxy_port)
    assert status == 503
    assert "no healthy backend" in body
    # The access log is flushed within a sweep interval; the 503 is logged with no pool.
    last = wait_until(lambda: [e for e in sp.access_log() if e["status"] == 503], 5)[-1]
    assert last["pool"] is None


def test_override_to_a_dead_pool_is_503_and_others_unaffected(
    backend_factory, splitter_factory
) -> None:
    blue = backend_factory("blue")
    dead_url = f"http://127.0.0.1:{free_port()}"
    sp = splitter_factory(
        pools_config({"blue": blue, "green": dead_url}, {"blue": 100}, override={})
    )
    wait_until(lambda: _get(sp.proxy_port, headers={"X-Splitter-Pool": "green"})[0] == 503, 10)
    counts = Counter(_get(sp.proxy_port)[1] for _ in range(20))
    assert counts == {"blue": 20}


NO_ACTIVE_CHECKS = {"interval": "1h", "healthy_threshold": 1000, "unhealthy_threshold": 1000}


def _pools(admin_port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/api/v1/pools")
        resp = conn.getresponse()
        return json.loads(resp.read())
    finally:
        conn.close()


def test_a_failing_backend_is_ejected_and_comes_back(backend_factory, splitter_factory) -> None:
    blue = backend_factory("blue")
    dead_url = f"http://127.0.0.1:{free_port()}"
    sp = splitter_factory(
        pools_config({"blue": [blue, dead_url]}, {"blue": 100}, health_check=NO_ACTIVE_CHECKS)
    )
    statuses = Counter(_get(sp.proxy_port)[0] for _ in range(20))
    assert statuses == {200: 20}  # connect failures are retried on the live backend

    def dead_is(up: bool) -> bool:
        backends = _pools(sp.admin_port)["blue"]["backends"]
        return {b["url"]: b["up"] for b in backends}[dead_url] is up

    assert dead_is(False)  # ejected after 5 failures in a row, without an active check
    assert "ejected" in sp.stderr_text()
    # The first ejection lasts 2 s; then it is tried again and, still failing, ejected again.
    wait_until(lambda: dead_is(True), 5)
    for _ in range(20):
        assert _get(sp.proxy_port)[0] == 200
    assert dead_is(False)


def test_the_last_live_backend_is_never_ejected(splitter_factory) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    sp = splitter_factory(
        pools_config({"blue": dead_url}, {"blue": 100}, health_check=NO_ACTIVE_CHECKS)
    )
    for _ in range(10):
        assert _get(sp.proxy_port)[0] == 502
    assert _pools(sp.admin_port)["blue"]["backends"][0]["up"] is True
    assert "last one live" in sp.stderr_text()


def _backend_up_metric(admin_port: int, url: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith("splitter_backend_up{") and f'backend="{url}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no splitter_backend_up series for {url}")


def test_application_errors_never_eject_but_gateway_errors_do(
    backend_factory, splitter_factory
) -> None:
    """A 500 is the application's own answer (the judge weighs it): no client can eject a
    canary's only backend by asking for errors. 502, 503 and 504 answers still count."""
    blue, canary = backend_factory("blue"), backend_factory("canary")
    sp = splitter_factory(
        pools_config(
            {"blue": blue, "canary": canary},
            {"blue": 90, "canary": 10},
            override={},
            health_check=NO_ACTIVE_CHECKS,
        )
    )
    to_canary = {"X-Splitter-Pool": "canary"}

    def canary_up() -> bool:
        backends = _pools(sp.admin_port)["canary"]["backends"]
        return bool(backends[0]["up"])

    for _ in range(30):
        status, _, _ = http_request(f"{sp.proxy_url}/status/500", headers=to_canary)
        assert status == 500
    assert canary_up()
    assert _backend_up_metric(sp.admin_port, canary.url) == 1
    # The backend still answers: a 500 ends a run of gateway failures, like any answer.
    for code in (502, 503, 504, 500) * 3:
        status, _, _ = http_request(f"{sp.proxy_url}/status/{code}", headers=to_canary)
        assert status == code
    assert canary_up()

    for _ in range(5):
        status, _, _ = http_request(f"{sp.proxy_url}/status/502", headers=to_canary)
        assert status == 502
    assert not canary_up()
    assert _backend_up_metric(sp.admin_port, canary.url) == 0
    assert "ejected" in sp.stderr_text()

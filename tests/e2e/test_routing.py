"""End to end: choosing a pool (CONTRACT.md section 3) through a real splitter process.

Real gunicorn backends, a real `splitter run` process, requests over loopback. Weight
changes are made by restarting splitter on a new config with the same state_file (the
cookie secret is kept there), which is what an operator without the admin API would do.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support import (
    Backend,
    SplitterProc,
    free_port,
    http_request,
    pools_config,
    wait_until,
)

COOKIE = "splitter"
MAX_AGE = 3600
STICKY = {"cookie": COOKIE, "max_age": MAX_AGE}
OVERRIDE = {"header": "X-Splitter-Pool"}

T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- helpers


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    set_cookies: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def pool(self) -> str:
        return self.body.decode("utf-8", "replace").strip()


class Client:
    """A keep-alive http.client connection to the proxy that never stores cookies:
    each request carries exactly the headers given (a fresh client unless a Cookie is)."""

    def __init__(self, base_url: str, timeout: float = 5) -> None:
        hostport = base_url.removeprefix("http://").rstrip("/")
        host, _, port = hostport.rpartition(":")
        self.host, self.port, self.timeout = host.strip("[]"), int(port), timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> Reply:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", path, headers=dict(headers or {}))
                resp = self.conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
                continue  # a kept-alive connection closed by the server: once more, fresh
            reply = Reply(
                resp.status, resp.getheaders(), body, resp.msg.get_all("Set-Cookie") or []
            )
            if resp.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def parallel(
    base_url: str, items: Sequence[T], fn: Callable[[Client, T], R], workers: int = 6
) -> list[R]:
    """`fn(client, item)` for every item, on `workers` threads with one connection each;
    results in the order of `items`."""
    local = threading.local()
    clients: list[Client] = []
    lock = threading.Lock()

    def run(item: T) -> R:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(base_url)
            with lock:
                clients.append(client)
        return fn(client, item)

    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, items))
    finally:
        for client in clients:
            client.close()


def parse_set_cookie(value: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, {attribute-lower: value}) of one Set-Cookie header."""
    first, *attrs = [part.strip() for part in value.split(";")]
    name, _, cookie_value = first.partition("=")
    out: dict[str, str] = {}
    for attr in attrs:
        if attr:
            key, _, val = attr.partition("=")
            out[key.strip().lower()] = val.strip()
    return name.strip(), cookie_value.strip(), out


def our_cookie(reply: Reply) -> str | None:
    """The value of the sticky cookie the reply sets, None when it sets none."""
    found = [parse_set_cookie(v) for v in reply.set_cookies]
    ours = [value for name, value, _ in found if name == COOKIE]
    assert len(ours) <= 1, f"several sticky Set-Cookie headers: {reply.set_cookies}"
    return ours[0] if ours else None


def new_clients(base_url: str, count: int) -> list[tuple[str, str | None]]:
    """`count` requests without a cookie: [(pool, sticky cookie value or None)]."""

    def one(client: Client, _: int) -> tuple[str, str | None]:
        reply = client.get("/")
        assert reply.status == 200, (reply.status, reply.body)
        return reply.pool, our_cookie(reply)

    return parallel(base_url, range(count), one)


def returning_clients(base_url: str, cookies: Iterable[str]) -> list[tuple[str, str | None]]:
    """One request per cookie value: [(pool, new sticky cookie value or None)]."""

    def one(client: Client, cookie: str) -> tuple[str, str | None]:
        reply = client.get("/", {"Cookie": f"{COOKIE}={cookie}"})
        assert reply.status == 200, (reply.status, reply.body)
        return reply.pool, our_cookie(reply)

    return parallel(base_url, list(cookies), one)


def restart(sp: SplitterProc, factory: Callable[..., SplitterProc], config: Any) -> SplitterProc:
    """Stop `sp` (gracefully) and start splitter on `config` (same tmp dir, so the same
    default state_file)."""
    code = sp.stop()
    assert code == 0, f"splitter exit status on SIGTERM: {code}"
    new = factory(config)
    new.wait_readyz()
    return new


def start(factory: Callable[..., SplitterProc], config: Any) -> SplitterProc:
    sp = factory(config)
    sp.wait_readyz()
    return sp


def assert_share(
    counts: Counter[str], total: int, expected: Mapping[str, float], tol: float
) -> None:
    weight_sum = sum(expected.values())
    for pool, weight in expected.items():
        share = counts.get(pool, 0) / total
        want = weight / weight_sum
        assert abs(share - want) <= tol, (
            f"pool {pool}: share {share:.3f}, expected {want:.3f} +- {tol} (counts {dict(counts)})"
        )
    assert set(counts) <= set(expected), f"unexpected pools: {dict(counts)}"


# --------------------------------------------------------------------------- weighted shares


def test_weighted_shares_with_sticky(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    sp = start(
        splitter_factory,
        pools_config(three_pools, {"blue": 70, "canary": 30}, sticky=STICKY),
    )
    results = new_clients(sp.proxy_url, 1500)
    counts = Counter(pool for pool, _ in results)
    assert_share(counts, 1500, {"blue": 70, "canary": 30}, 0.05)
    assert counts["green"] == 0
    cookies = [cookie for _, cookie in results]
    assert all(cookies), "every fresh client gets a sticky cookie"
    assert len(set(cookies)) == 1500, "every fresh client gets its own id"


def test_weighted_shares_without_sticky(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    sp = start(splitter_factory, pools_config(three_pools, {"blue": 70, "canary": 30}))

    def one(client: Client, _: int) -> tuple[str, list[str]]:
        reply = client.get("/")
        assert reply.status == 200
        return reply.pool, reply.set_cookies

    results = parallel(sp.proxy_url, range(1500), one)
    counts = Counter(pool for pool, _ in results)
    assert_share(counts, 1500, {"blue": 70, "canary": 30}, 0.05)
    with_cookie = [cookies for _, cookies in results if cookies]
    assert not with_cookie, f"no Set-Cookie without a sticky section: {with_cookie[:3]}"
    # Without a cookie a client is re-drawn on every request: one client sees both pools.
    client = Client(sp.proxy_url)
    try:
        seen = {client.get("/", {"Cookie": f"{COOKIE}=whatever"}).pool for _ in range(60)}
    finally:
        client.close()
    assert seen == {"blue", "canary"}


# --------------------------------------------------------------------------- stickiness


def test_sticky_client_keeps_its_pool(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    sp = start(
        splitter_factory,
        pools_config(three_pools, {"blue": 50, "canary": 50}, sticky=STICKY),
    )
    results = new_clients(sp.proxy_url, 20)
    assert {pool for pool, _ in results} == {"blue", "canary"}
    client = Client(sp.proxy_url)
    try:
        for first_pool, cookie in results:
            assert cookie
            for _ in range(20):
                reply = client.get("/", {"Cookie": f"{COOKIE}={cookie}"})
                assert reply.status == 200
                assert reply.pool == first_pool
                assert our_cookie(reply) is None, "a valid cookie is not re-issued"
            # other cookies around ours do not matter
            reply = client.get("/", {"Cookie": f"a=1; {COOKIE}={cookie}; b=2"})
            assert reply.pool == first_pool and our_cookie(reply) is None
    finally:
        client.close()


def test_set_cookie_attributes(three_pools: dict[str, Backend], splitter_factory: Any) -> None:
    sp = start(splitter_factory, pools_config(three_pools, {"blue": 1}, sticky=STICKY))
    status, _, _ = http_request(sp.proxy_url + "/")
    assert status == 200
    client = Client(sp.proxy_url)
    try:
        reply = client.get("/")
        sticky = [parse_set_cookie(v) for v in reply.set_cookies]
        assert [name for name, _, _ in sticky] == [COOKIE], reply.set_cookies
        _, value, attrs = sticky[0]
        assert value
        assert attrs.get("path") == "/"
        assert "httponly" in attrs
        assert attrs.get("samesite", "").lower() == "lax"
        assert attrs.get("max-age") == str(MAX_AGE)
        assert "secure" not in attrs, reply.set_cookies

        reply = client.get("/", {"X-Forwarded-Proto": "https"})
        sticky = [parse_set_cookie(v) for v in reply.set_cookies]
        assert len(sticky) == 1, reply.set_cookies
        _, _, attrs = sticky[0]
        assert "secure" in attrs, reply.set_cookies
        assert attrs.get("path") == "/" and "httponly" in attrs
        assert attrs.get("samesite", "").lower() == "lax"
        assert attrs.get("max-age") == str(MAX_AGE)
    finally:
        client.close()


def test_tampered_cookie_is_treated_as_absent(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    sp = start(
        splitter_factory,
        pools_config(three_pools, {"blue": 50, "canary": 50}, sticky=STICKY),
    )
    client = Client(sp.proxy_url)
    try:
        cookie = our_cookie(client.get("/"))
        assert cookie and "." in cookie
        client_id, _, signature = cookie.rpartition(".")
        flip = "A" if signature[0] != "A" else "B"
        tampered_values = [
            f"{client_id}.{flip}{signature[1:]}",  # signature changed
            f"{'A' if client_id[0] != 'A' else 'B'}{client_id[1:]}.{signature}",  # id changed
            client_id,  # no signature
            "garbage",
            "",
        ]
        for tampered in tampered_values:
            reply = client.get("/", {"Cookie": f"{COOKIE}={tampered}"})
            assert reply.status == 200
            new = our_cookie(reply)
            assert new, f"tampered cookie {tampered!r} must be replaced by a new one"
            assert new != cookie and new != tampered
        # the genuine one still works
        assert our_cookie(client.get("/", {"Cookie": f"{COOKIE}={cookie}"})) is None
    finally:
        client.close()


def test_tampered_cookie_does_not_pin_the_pool(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    """A forged id gets a fresh random id, so the pools of forged requests spread by
    weight instead of following the forged id."""
    sp = start(
        splitter_factory,
        pools_config(three_pools, {"blue": 50, "canary": 50}, sticky=STICKY),
    )

    def one(client: Client, _: int) -> str:
        reply = client.get("/", {"Cookie": f"{COOKIE}=forgedid00000000000000.AAAAAAAA"})
        assert our_cookie(reply)
        return reply.pool

    seen = Counter(parallel(sp.proxy_url, range(80), one))
    assert seen["blue"] > 10 and seen["canary"] > 10, dict(seen)


# --------------------------------------------------------------------------- minimal disruption


def test_minimal_disruption_when_canary_weight_changes(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    def config(blue: float, canary: float) -> dict[str, Any]:
        return pools_config(
            three_pools, {"blue": blue, "green": 0, "canary": canary}, sticky=STICKY
        )

    sp = start(splitter_factory, config(90, 10))
    first = new_clients(sp.proxy_url, 600)
    cookies = [cookie for _, cookie in first]
    assert all(cookies)
    before = [pool for pool, _ in first]
    counts = Counter(before)
    assert counts["green"] == 0, "a weight-0 pool gets no client"
    assert 20 <= counts["canary"] <= 110, dict(counts)

    # canary 10 -> 30: only moves into canary
    sp = restart(sp, splitter_factory, config(90, 30))
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert [c for _, c in again if c] == [], "valid cookies survive the restart (no new cookie)"
    after = [pool for pool, _ in again]
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert moved, "raising canary 10 -> 30 moves some clients"
    assert set(moved) == {("blue", "canary")}, Counter(moved)
    assert Counter(after)["green"] == 0
    assert abs(Counter(after)["canary"] / 600 - 0.25) < 0.07, Counter(after)

    # canary 30 -> 5: only moves out of canary
    before = after
    sp = restart(sp, splitter_factory, config(90, 5))
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert [c for _, c in again if c] == []
    after = [pool for pool, _ in again]
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert moved, "lowering canary 30 -> 5 moves some clients"
    assert set(moved) == {("canary", "blue")}, Counter(moved)
    assert Counter(after)["green"] == 0


def test_blue_green_switch_moves_everyone(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    def config(blue: float, green: float) -> dict[str, Any]:
        return pools_config(three_pools, {"blue": blue, "green": green}, sticky=STICKY)

    sp = start(splitter_factory, config(100, 0))
    first = new_clients(sp.proxy_url, 200)
    assert {pool for pool, _ in first} == {"blue"}
    cookies = [cookie for _, cookie in first]

    sp = restart(sp, splitter_factory, config(0, 100))
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert {pool for pool, _ in again} == {"green"}, Counter(p for p, _ in again)
    assert [c for _, c in again if c] == []

    # and a rollback takes effect for returning clients on their next request
    sp = restart(sp, splitter_factory, config(100, 0))
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert {pool for pool, _ in again} == {"blue"}


# --------------------------------------------------------------------------- cookie secret


def test_cookies_survive_a_restart_with_the_state_file(
    three_pools: dict[str, Backend], splitter_factory: Any, tmp_path: Path
) -> None:
    cfg = pools_config(three_pools, {"blue": 50, "canary": 50}, sticky=STICKY)
    sp = start(splitter_factory, cfg)
    first = new_clients(sp.proxy_url, 100)
    state = json.loads((tmp_path / "splitter-state.json").read_text())
    assert state.get("cookie_secret"), state

    sp = restart(sp, splitter_factory, sp.config_path)
    again = returning_clients(sp.proxy_url, [c for _, c in first])  # type: ignore[misc]
    assert [c for _, c in again if c] == [], "cookies stay valid across a restart"
    assert [p for p, _ in again] == [p for p, _ in first]

    # a fresh state file means a fresh secret: the old cookies are no longer valid
    cfg2 = dict(cfg, state_file=str(tmp_path / "other-state.json"))
    sp = restart(sp, splitter_factory, cfg2)
    again = returning_clients(sp.proxy_url, [c for _, c in first])  # type: ignore[misc]
    assert all(c for _, c in again), "a cookie signed with another secret is re-issued"


def test_configured_sticky_secret(
    three_pools: dict[str, Backend], splitter_factory: Any, tmp_path: Path
) -> None:
    def config(secret: str, state: str) -> dict[str, Any]:
        return pools_config(
            three_pools,
            {"blue": 50, "canary": 50},
            sticky={**STICKY, "secret": secret},
            state_file=str(tmp_path / state),
        )

    sp = start(splitter_factory, config("configured-secret-0123456789", "a.json"))
    first = new_clients(sp.proxy_url, 60)
    cookies = [c for _, c in first]
    assert all(cookies)

    # same secret, another state file: the configured secret is what signs
    sp = restart(sp, splitter_factory, config("configured-secret-0123456789", "b.json"))
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert [c for _, c in again if c] == []
    assert [p for p, _ in again] == [p for p, _ in first]

    # another secret, the first state file: the old cookies are invalid
    sp = restart(sp, splitter_factory, config("another-secret-9876543210", "a.json"))
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert all(c for _, c in again)

    # the secret from the environment (${VAR}) works the same
    cfg = config("${MY_COOKIE_SECRET}", "c.json")
    sp.stop()
    sp = splitter_factory(cfg, env={"MY_COOKIE_SECRET": "configured-secret-0123456789"})
    sp.wait_readyz()
    again = returning_clients(sp.proxy_url, cookies)  # type: ignore[arg-type]
    assert [c for _, c in again if c] == []


# --------------------------------------------------------------------------- override header


def test_override_header(three_pools: dict[str, Backend], splitter_factory: Any) -> None:
    sp = start(
        splitter_factory,
        pools_config(
            three_pools, {"blue": 100, "green": 0, "canary": 0}, sticky=STICKY, override=OVERRIDE
        ),
    )
    client = Client(sp.proxy_url)
    try:
        for pool in ("green", "canary", "blue"):
            for _ in range(5):
                reply = client.get("/", {"X-Splitter-Pool": pool})
                assert reply.status == 200
                assert reply.pool == pool and reply.header("X-Pool") == pool
                assert our_cookie(reply) is None, "no sticky cookie for an override"
        # a header name is case-insensitive
        reply = client.get("/", {"x-splitter-pool": "green"})
        assert reply.pool == "green"
        # the override wins over a cookie, and does not replace it
        cookie = our_cookie(client.get("/"))
        assert cookie
        reply = client.get("/", {"X-Splitter-Pool": "green", "Cookie": f"{COOKIE}={cookie}"})
        assert reply.pool == "green" and our_cookie(reply) is None
        # unknown name: ignored, normal routing (blue, with a new sticky cookie)
        for name in ("purple", "", "GREEN-ish"):
            reply = client.get("/", {"X-Splitter-Pool": name})
            assert reply.status == 200
            assert reply.pool == "blue", (name, reply.pool)
            assert our_cookie(reply), "normal routing sets the cookie"
    finally:
        client.close()


def test_override_header_without_override_section_is_ignored(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    sp = start(splitter_factory, pools_config(three_pools, {"blue": 100}, sticky=STICKY))
    client = Client(sp.proxy_url)
    try:
        for _ in range(10):
            reply = client.get("/", {"X-Splitter-Pool": "green"})
            assert reply.pool == "blue"
    finally:
        client.close()


def test_override_to_a_pool_with_no_healthy_backend_is_503(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sp = start(
        splitter_factory,
        pools_config(
            {"blue": three_pools["blue"], "dark": dead},
            {"blue": 100, "dark": 0},
            sticky=STICKY,
            override=OVERRIDE,
        ),
    )

    def answer() -> tuple[int, dict[str, str], bytes]:
        return http_request(sp.proxy_url + "/", headers={"X-Splitter-Pool": "dark"})

    # the health check (every 200ms, threshold 1) marks the backend down soon
    last: list[tuple[int, dict[str, str], bytes]] = []

    def is_503() -> bool:
        last[:] = [answer()]
        return last[0][0] == 503

    try:
        wait_until(is_503, timeout=5, message="override to a dead pool -> 503")
    except AssertionError:
        raise AssertionError(f"override to a pool with no healthy backend: {last}") from None
    status, headers, body = last[0]
    assert headers.get("content-type", "").startswith("application/json"), headers
    payload = json.loads(body)
    assert isinstance(payload, dict) and payload.get("error"), payload
    assert "set-cookie" not in headers
    for _ in range(5):
        assert answer()[0] == 503
    # and it falls back to nothing else: normal traffic is unaffected
    status, _, body = http_request(sp.proxy_url + "/")
    assert status == 200 and body.strip() == b"blue"


# --------------------------------------------------------------------------- backends by weight


def test_backends_within_a_pool_by_weight(backend_factory: Any, splitter_factory: Any) -> None:
    one = backend_factory("blue", "blue-1")
    three = backend_factory("blue", "blue-3")
    sp = start(
        splitter_factory,
        pools_config({"blue": [one, {"url": three.url, "weight": 3}]}, {"blue": 1}),
    )

    def get(client: Client, _: int) -> str | None:
        reply = client.get("/")
        assert reply.status == 200 and reply.pool == "blue"
        return reply.header("X-Backend")

    counts = Counter(parallel(sp.proxy_url, range(400), get))
    assert set(counts) == {"blue-1", "blue-3"}, dict(counts)
    assert 65 <= counts["blue-1"] <= 135, f"expected about 100 of 400 on blue-1: {dict(counts)}"
    assert counts["blue-1"] + counts["blue-3"] == 400


# --------------------------------------------------------------------------- access log


def test_access_log_one_json_line_per_request(
    three_pools: dict[str, Backend], splitter_factory: Any
) -> None:
    sp = start(
        splitter_factory,
        pools_config(three_pools, {"blue": 100}, sticky=STICKY, override=OVERRIDE),
    )
    backend_url = {name: b.url for name, b in three_pools.items()}
    sent: list[tuple[str, str, int, str]] = []  # (request_id, target, status, pool)
    client = Client(sp.proxy_url)
    try:
        for i in range(10):
            rid = f"test-req-{i:03d}"
            pool = "green" if i % 3 == 0 else "blue"
            target = "/" if i % 2 == 0 else f"/status/{404 if i % 4 == 1 else 201}?n={i}"
            headers = {"X-Request-Id": rid}
            if pool == "green":
                headers["X-Splitter-Pool"] = "green"
            reply = client.get(target, headers)
            assert reply.header("X-Request-Id") == rid
            sent.append((rid, target, reply.status, pool))
        # without an X-Request-Id: one is generated and logged
        reply = client.get("/")
        generated = reply.header("X-Request-Id")
        assert generated
        sent.append((generated, "/", 200, "blue"))
    finally:
        client.close()

    wait_until(
        lambda: len(sp.access_log()) >= len(sent),
        timeout=5,
        message=f"{len(sent)} access log lines",
    )
    entries = sp.access_log()
    assert len(entries) == len(sent), entries
    by_id = {e["request_id"]: e for e in entries}
    for rid, target, status, pool in sent:
        entry = by_id[rid]
        for key in ("time", "client", "method", "target", "status", "pool", "backend",
                    "duration", "bytes", "request_id"):  # fmt: skip
            assert key in entry, (key, entry)
        assert entry["method"] == "GET"
        assert entry["target"] == target
        assert entry["status"] == status
        assert entry["pool"] == pool
        assert entry["backend"] == backend_url[pool]
        assert entry["client"].startswith("127.0.0.1")
        assert isinstance(entry["duration"], (int, float)) and entry["duration"] >= 0
        assert isinstance(entry["bytes"], int) and entry["bytes"] >= 0
    assert {s for _, _, s, _ in sent} >= {200, 201, 404}
    # stdout holds nothing but the access log
    lines = [ln for ln in sp.stdout_text().splitlines() if ln.strip()]
    assert len(lines) == len(sent)


def test_access_log_off(three_pools: dict[str, Backend], splitter_factory: Any) -> None:
    sp = start(splitter_factory, pools_config(three_pools, {"blue": 100}, access_log=False))
    client = Client(sp.proxy_url)
    try:
        for _ in range(20):
            assert client.get("/").status == 200
    finally:
        client.close()
    code = sp.stop()
    assert code == 0
    assert sp.stdout_text().strip() == ""

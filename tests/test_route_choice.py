"""The pool choice per route, through the request path's own code (docs/configuration.md
#choosing-a-pool and #routes-and-segments).

A config of several routes (hosts and prefixes mixed, every route with pools of the same
names) goes through `build_live`, and requests through `policy.route`, with signed sticky
cookies for clients of known ids. Within each route every property of the contract's
section 3 holds: shares follow weights, minimal disruption, weight 0 gets nobody, pools
without a live backend are skipped. Across routes the choices are independent (the route's
name salts the hash), except that the route `default` keeps the hash from before routes.
Returning clients keep the canary's share at its weight over weight changes, with segment
and override requests (which set no cookie) mixed in: no creep (Flagger #1532).

Statistics: client ids are seeded; each share is checked against its binomial standard
deviation with a z that keeps the chance of a false alarm, over every check a test makes,
below `ALPHA` (`tolerance`).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Container, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import Config, parse
from splitter.errors import RequestRefused
from splitter.http1.request import ReadSettings, RequestHead, RequestReader
from splitter.observe.observation import Observation
from splitter.proxy import policy
from splitter.routing import ClientIds, PoolChooser, choose_pool, route_salt
from splitter.state import HealthTable, Live, RouteWeights, build_live

SECRET = "route-choice-secret-0123456789abcdef"
COOKIE = "splitter"
POOLS = ("blue", "green", "canary")
ALPHA = 1e-6  # the chance that a test fails on a correct choice, over all its checks

# name -> (hosts, path_prefix, a request it takes: Host, target). Every route has the pools
# POOLS: a choice that ignored the route would give each client the same pool everywhere.
ROUTES: dict[str, tuple[list[str], str, tuple[bytes, bytes]]] = {
    "shop": (["shop.example.com", "*.shop.example.com"], "/", (b"m.shop.example.com", b"/cart")),
    "shop-admin": (["shop.example.com"], "/admin", (b"shop.example.com:8080", b"/admin/x")),
    "api": ([], "/api", (b"other.example.org", b"/api/v1/items?q=1")),
    "www": ([], "/", (b"other.example.org", b"/index.html")),
}
ROUTE_NAMES = tuple(ROUTES)


def _ids(count: int, seed: int) -> list[str]:
    """Client ids as `ClientIds.new_id` makes them (16 bytes, base64url), seeded."""
    rng = random.Random(seed)
    return [base64.urlsafe_b64encode(rng.randbytes(16)).rstrip(b"=").decode() for _ in range(count)]


IDS = _ids(6000, seed=7)


_SIGNER = ClientIds(SECRET.encode())
COOKIES = {client_id: _SIGNER.cookie_value(client_id) for client_id in IDS}  # valid cookies


def _backend(route: str, pool: str) -> str:
    port = 20000 + 10 * ROUTE_NAMES.index(route) + POOLS.index(pool)
    return f"http://127.0.0.1:{port}"


def _config(
    weights: Mapping[str, Sequence[float]],
    segments: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Config:
    """The routes of ROUTES (those in `weights`), each pool at its weight, distinct backends."""
    routes = []
    for name, ws in weights.items():
        hosts, prefix, _ = ROUTES[name]
        route: dict[str, Any] = {
            "name": name,
            "path_prefix": prefix,
            "pools": {
                pool: {"weight": w, "backends": [_backend(name, pool)]}
                for pool, w in zip(POOLS, ws, strict=True)
            },
        }
        if hosts:
            route["hosts"] = hosts
        if segments and name in segments:
            route["segments"] = segments[name]
        routes.append(route)
    return parse({
        "listen": "127.0.0.1:8080",
        "sticky": {"cookie": COOKIE, "secret": SECRET},
        "override": {"header": "X-Splitter-Pool"},
        "routes": routes,
    })  # fmt: skip


def _live(config: Config, weights: RouteWeights | None = None) -> Live:
    return build_live(config, weights or {}, b"unused" * 8, HealthTable())


def _request(
    host: bytes | None, target: bytes, cookie: str | None = None, override: bytes | None = None
) -> RequestHead:
    """A head as the reader leaves it (lower-case names read, the rest in `lines`)."""
    req = RequestHead()
    req.method = b"GET"
    req.target = target
    req.host = host
    req.request_id = b"0123456789abcdef"
    if cookie is not None:
        req.cookie = f"theme=dark; {COOKIE}={cookie}; lang=en".encode()
    req.override = override
    return req


class _Heads:
    """A request sink that keeps the heads the parser completes."""

    def __init__(self) -> None:
        self.heads: list[RequestHead] = []

    def on_head_start(self) -> None:
        pass

    def on_request(self, head: RequestHead) -> None:
        self.heads.append(head)

    def on_request_body(self, data: bytes) -> None:
        pass

    def on_request_end(self) -> None:
        pass

    def on_refused(self, error: RequestRefused) -> None:
        raise AssertionError(error)


def _parsed(
    settings: ReadSettings, host: bytes, target: bytes, cookie: str | None, *headers: bytes
) -> RequestHead:
    """The head the proxy's own parser makes of a GET with these fields."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: " + host, *headers]
    if cookie is not None:
        lines.append(f"Cookie: theme=dark; {COOKIE}={cookie}; lang=en".encode())
    sink = _Heads()
    RequestReader(settings, sink).feed(b"\r\n".join(lines) + b"\r\n\r\n")
    (head,) = sink.heads
    return head


class Answer:
    __slots__ = ("obs", "pool", "set_cookie")

    def __init__(self, live: Live, req: RequestHead) -> None:
        self.obs = Observation(0.0)
        self.obs.client_addr = "198.51.100.7"
        pool, set_cookie = policy.route(live, req, self.obs)
        self.pool = None if pool is None else pool.name
        self.set_cookie: str | None = None
        if set_cookie is not None:
            line = set_cookie.decode("latin-1")
            assert line.startswith(f"Set-Cookie: {COOKIE}=") and line.endswith("\r\n"), line
            self.set_cookie = line.split("=", 1)[1].split(";", 1)[0]
        if pool is not None:
            assert pool.route == self.obs.route_name


def _pools_on(live: Live, route: str, ids: Sequence[str] = IDS) -> list[str | None]:
    """The pool each returning client (valid cookie) gets on `route`, by `policy.route`."""
    host, target = ROUTES[route][2]
    out = []
    for client_id in ids:
        answer = Answer(live, _request(host, target, COOKIES[client_id]))
        assert answer.obs.route_name == route
        assert answer.set_cookie is None  # a valid cookie is kept
        assert answer.obs.client_id == client_id
        out.append(answer.pool)
    return out


def tolerance(p: float, n: int, checks: int) -> float:
    """How far a share of `n` binomial draws of probability `p` may stray, when a test
    makes `checks` such comparisons and may fail falsely with probability ALPHA at most."""
    z = NormalDist().inv_cdf(1.0 - ALPHA / (2 * checks))
    return z * math.sqrt(p * (1.0 - p) / n) + 1.0 / n


def _check_shares(
    chosen: Sequence[str | None], weights: Mapping[str, float], checks: int, what: str
) -> None:
    """Each pool's share of `chosen` is its weight's share; a pool at 0 gets nobody."""
    counts = Counter(chosen)
    total = sum(weights.values())
    n = len(chosen)
    assert set(counts) <= {name for name, w in weights.items() if w > 0}, (what, counts)
    for name, w in weights.items():
        p = w / total
        assert abs(counts[name] / n - p) <= tolerance(p, n, checks), (what, name, p, counts)


# 3 pools (POOLS), each at 0 or in [0.5, 100], at least one above 0 (at least two).
positive = st.floats(min_value=0.5, max_value=100.0)
weight_triples = st.tuples(*[st.one_of(st.just(0.0), positive)] * 3).filter(lambda ws: sum(ws) > 0)
two_above_zero = (
    st.tuples(positive, positive, st.one_of(st.just(0.0), positive))
    .flatmap(st.permutations)
    .map(lambda ws: (ws[0], ws[1], ws[2]))
)


# --- the route table ---------------------------------------------------------------------------


def test_each_request_reaches_its_route() -> None:
    live = _live(_config({name: (1.0, 1.0, 0.0) for name in ROUTES}))
    for name, (_, _, (host, target)) in ROUTES.items():
        answer = Answer(live, _request(host, target))
        assert answer.obs.route_name == name
        assert answer.pool in ("blue", "green")
        assert answer.set_cookie is not None  # a new client gets its cookie on any route


# --- within each route: section 3 ---------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(weights=st.tuples(*[weight_triples] * len(ROUTES)))
def test_each_route_shares_follow_its_own_weights(
    weights: tuple[tuple[float, float, float], ...],
) -> None:
    """Every route's shares follow its weights (not another route's), and a pool at weight
    0 gets nobody: 4 routes, 6000 clients, through `policy.route`."""
    by_route = dict(zip(ROUTE_NAMES, weights, strict=True))
    live = _live(_config(by_route))
    checks = 8 * len(ROUTES) * len(POOLS)
    for name, ws in by_route.items():
        chosen = _pools_on(live, name)
        _check_shares(chosen, dict(zip(POOLS, ws, strict=True)), checks, name)


@settings(max_examples=30, deadline=None)
@given(
    weights=st.tuples(*[weight_triples] * len(ROUTES)),
    route=st.sampled_from(ROUTE_NAMES),
    pool=st.sampled_from(POOLS),
    new_weight=st.one_of(st.just(0.0), st.floats(min_value=0.5, max_value=100.0)),
)
def test_a_weight_change_moves_clients_only_into_or_out_of_that_pool_of_that_route(
    weights: tuple[tuple[float, float, float], ...], route: str, pool: str, new_weight: float
) -> None:
    """Raising one pool's weight only moves clients into it; lowering it only moves clients
    out of it; the other routes' clients do not move at all (runtime weights, as the admin
    API sets them)."""
    by_route = dict(zip(ROUTE_NAMES, weights, strict=True))
    config = _config(by_route)
    old = dict(zip(POOLS, by_route[route], strict=True))
    new = old | {pool: new_weight}
    if sum(new.values()) == 0:
        new_weight = old[pool] or 1.0
        new = old | {pool: new_weight}
    before_live = _live(config)
    after_live = _live(config, {route: new})
    for name in ROUTE_NAMES:
        ids = IDS[:2000] if name == route else IDS[:300]
        before = _pools_on(before_live, name, ids)
        after = _pools_on(after_live, name, ids)
        if name != route:
            assert after == before, name
            continue
        moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        if new_weight > old[pool]:
            assert all(a == pool for _, a in moved), moved[:5]
        elif new_weight < old[pool]:
            assert all(b == pool for b, _ in moved), moved[:5]
        else:
            assert not moved
        if new_weight == 0:
            assert pool not in after


def test_a_blue_green_switch_on_one_route_moves_everyone_on_it_and_nobody_elsewhere() -> None:
    config = _config({name: (100.0, 0.0, 0.0) for name in ROUTES})
    switched = _live(config, {"api": {"blue": 0.0, "green": 100.0, "canary": 0.0}})
    for name in ROUTE_NAMES:
        expected = "green" if name == "api" else "blue"
        assert set(_pools_on(switched, name, IDS[:500])) == {expected}


def _set_down(live: Live, health: HealthTable, url: str, up: bool) -> None:
    health.set_checked(url, up, time.monotonic())
    live.refresh_health()


@settings(max_examples=10, deadline=None)
@given(
    weights=st.tuples(*[two_above_zero] * len(ROUTES)),
    route=st.sampled_from(ROUTE_NAMES),
    data=st.data(),
)
def test_a_pool_without_live_backends_is_skipped_on_its_route_only(
    weights: tuple[tuple[float, float, float], ...], route: str, data: st.DataObject
) -> None:
    """A pool whose backends are all down: its clients spread over the route's other pools
    by weight, nobody else moves, the other routes do not notice; back up, exactly its own
    clients return."""
    by_route = dict(zip(ROUTE_NAMES, weights, strict=True))
    ws = dict(zip(POOLS, by_route[route], strict=True))
    dead = data.draw(st.sampled_from([p for p, w in ws.items() if w > 0]))
    health = HealthTable()
    live = build_live(_config(by_route), {}, b"unused" * 8, health)
    ids = {name: IDS[:4000] if name == route else IDS[:500] for name in ROUTE_NAMES}
    before = {name: _pools_on(live, name, ids[name]) for name in ROUTE_NAMES}

    _set_down(live, health, _backend(route, dead), False)
    during = {name: _pools_on(live, name, ids[name]) for name in ROUTE_NAMES}
    for name in ROUTE_NAMES:
        if name != route:
            assert during[name] == before[name], name
    orphans = []
    for b, d in zip(before[route], during[route], strict=True):
        assert d != dead
        if b != dead:
            assert d == b
        else:
            orphans.append(d)
    others = {p: w for p, w in ws.items() if p != dead}
    if len(orphans) >= 100:
        _check_shares(orphans, others, 10 * len(POOLS), f"{route} without {dead}")

    _set_down(live, health, _backend(route, dead), True)
    assert {name: _pools_on(live, name, ids[name]) for name in ROUTE_NAMES} == before


def test_a_route_without_live_pools_has_no_pool_and_the_others_are_served() -> None:
    health = HealthTable()
    live = build_live(_config({name: (1.0, 1.0, 1.0) for name in ROUTES}), {}, b"k" * 32, health)
    for pool in POOLS:
        health.set_checked(_backend("api", pool), False, time.monotonic())
    live.refresh_health()
    assert set(_pools_on(live, "api", IDS[:200])) == {None}  # 503 for the route's requests
    assert None not in _pools_on(live, "www", IDS[:200])


# --- across routes: independent choices --------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(ws=two_above_zero)
def test_routes_with_the_same_pools_and_weights_choose_independently(
    ws: tuple[float, float, float],
) -> None:
    """Same pool names and weights on every route: for every pair of routes, the share of
    clients in pool i on one and pool j on the other is p_i * p_j (a choice that ignored the
    route would put everyone on the diagonal)."""
    live = _live(_config(dict.fromkeys(ROUTE_NAMES, ws)))
    chosen = {name: _pools_on(live, name) for name in ROUTE_NAMES}
    total = sum(ws)
    p = {pool: w / total for pool, w in zip(POOLS, ws, strict=True) if w > 0}
    pairs = list(itertools.combinations(ROUTE_NAMES, 2))
    checks = 6 * len(pairs) * len(p) ** 2
    n = len(IDS)
    for a, b in pairs:
        cells = Counter(zip(chosen[a], chosen[b], strict=True))
        for i, j in itertools.product(p, p):
            expected = p[i] * p[j]
            assert abs(cells[i, j] / n - expected) <= tolerance(expected, n, checks), (
                a, b, i, j, expected, cells
            )  # fmt: skip


def test_a_canarys_clients_on_one_route_are_not_the_canarys_clients_on_another() -> None:
    """The case that matters: 10% canary on two services. A client in one's canary is in
    the other's canary with probability 0.1 (the choice before routes salted nothing: 1.0)."""
    live = _live(_config({"shop": (90.0, 0.0, 10.0), "api": (90.0, 0.0, 10.0)}))
    shop = _pools_on(live, "shop")
    api = _pools_on(live, "api")
    in_shop_canary = [a for s, a in zip(shop, api, strict=True) if s == "canary"]
    share = in_shop_canary.count("canary") / len(in_shop_canary)
    assert abs(share - 0.1) <= tolerance(0.1, len(in_shop_canary), 1), share
    same = sum(s == a for s, a in zip(shop, api, strict=True)) / len(IDS)
    assert abs(same - 0.82) <= tolerance(0.82, len(IDS), 1), same  # 0.9^2 + 0.1^2


def test_the_route_default_and_another_route_choose_independently() -> None:
    config = parse({
        "listen": "127.0.0.1:8080",
        "sticky": {"cookie": COOKIE, "secret": SECRET},
        "routes": [
            {"name": "default", "pools": {p: {"weight": 1, "backends": [_backend("www", p)]}
                                          for p in POOLS}},
            {"name": "api", "path_prefix": "/api",
             "pools": {p: {"weight": 1, "backends": [_backend("api", p)]} for p in POOLS}},
        ],
    })  # fmt: skip
    live = _live(config)
    default = [Answer(live, _request(b"h", b"/", COOKIES[i])).pool for i in IDS]
    api = _pools_on(live, "api")
    # The route `default` chooses as before routes; "api" independently of it.
    assert default == [_old_choose_pool(i, [(p, 1.0) for p in POOLS]) for i in IDS]
    same = sum(d == a for d, a in zip(default, api, strict=True)) / len(IDS)
    assert abs(same - 1 / 3) <= tolerance(1 / 3, len(IDS), 1), same


# --- the route `default` keeps the choice from before routes ----------------------------------


def _old_choose_pool(
    client_id: str,
    weights: Sequence[tuple[str, float]],
    live: Container[str] | None = None,
) -> str | None:
    """`choose_pool` as it was before routes (375491c), verbatim but for the names."""
    prefix = client_id.encode() + b"\0"
    best_name: str | None = None
    best_score = 0.0
    for name, weight in weights:
        if not weight > 0.0:
            continue
        if live is not None and name not in live:
            continue
        h = int.from_bytes(hashlib.blake2b(prefix + name.encode(), digest_size=8).digest(), "big")
        u = (h + 0.5) / float(2**64)
        if u >= 1.0:
            u = math.nextafter(1.0, 0.0)
        score = -weight / math.log(u)
        if best_name is None or score > best_score or (score == best_score and name < best_name):
            best_name = name
            best_score = score
    return best_name


pool_weights = st.lists(
    st.tuples(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12),
        st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=1000.0)),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda pw: pw[0],
)


@settings(max_examples=200, deadline=None)
@given(weights=pool_weights, data=st.data())
def test_without_a_salt_the_choice_is_the_one_from_before_routes(
    weights: list[tuple[str, float]], data: st.DataObject
) -> None:
    names = [name for name, _ in weights]
    live = data.draw(st.one_of(st.none(), st.sets(st.sampled_from(names))))
    chooser = PoolChooser(weights, live, route_salt("default"))
    for client_id in IDS[:200]:
        old = _old_choose_pool(client_id, weights, live)
        assert choose_pool(client_id, weights, live) == old
        assert chooser.for_client(client_id) == old


@settings(max_examples=100, deadline=None)
@given(weights=pool_weights, route=st.sampled_from(["shop", "api", "a", "shop-admin"]))
def test_a_routes_choice_hashes_its_name_before_the_client_id(
    weights: list[tuple[str, float]], route: str
) -> None:
    """The salted hash is the old one of "<route>\\0<client id>": stable across releases,
    the same in every replica."""
    salt = route_salt(route)
    assert salt == route.encode() + b"\0"
    chooser = PoolChooser(weights, None, salt)
    for client_id in IDS[:200]:
        expected = _old_choose_pool(f"{route}\0{client_id}", weights)
        assert choose_pool(client_id, weights, None, salt) == expected
        assert chooser.for_client(client_id) == expected


def test_a_config_with_top_level_pools_keeps_every_clients_pool() -> None:
    """Upgrading a config with the top-level pools: every returning client keeps its pool,
    whatever the weights and live pools."""
    weights = {"blue": 70.0, "green": 20.0, "canary": 10.0}
    health = HealthTable()
    config = parse({
        "listen": "127.0.0.1:8080",
        "sticky": {"cookie": COOKIE, "secret": SECRET},
        "pools": {p: {"weight": w, "backends": [_backend("www", p)]} for p, w in weights.items()},
    })  # fmt: skip
    assert [r.name for r in config.routes] == ["default"]
    live = build_live(config, {}, b"k" * 32, health)
    items = list(weights.items())
    for live_pools in (None, {"blue", "canary"}):
        if live_pools is not None:
            health.set_checked(_backend("www", "green"), False, time.monotonic())
            live.refresh_health()
        for client_id in IDS:
            answer = Answer(live, _request(b"any.host", b"/x", COOKIES[client_id]))
            assert answer.obs.route_name == "default"
            assert answer.pool == _old_choose_pool(client_id, items, live_pools)


# --- returning clients: no creep (Flagger #1532) ------------------------------------------------


def test_returning_clients_keep_the_canary_at_its_weight_over_weight_changes() -> None:
    """Clients come back with the cookie they were given, over several canary weights, with
    segment (`?preview`, `X-Beta: 1`) and override requests mixed in: those go to the
    canary and set no cookie. At every stage the canary's share of returning clients is its
    weight (a cookie given only to the canary's clients, or by a segment, would make it
    creep up), and clients move only as minimal disruption allows. Requests are parsed by
    the proxy's parser, which keeps the segments' headers."""
    rng = random.Random(1532)
    segments = {
        "shop": [
            {"pool": "canary", "query": {"name": "preview"}},
            {"pool": "canary", "header": {"name": "X-Beta", "value": "1"}},
        ]
    }
    config = _config({"shop": (100.0, 0.0, 0.0), "api": (100.0, 0.0, 0.0)}, segments)
    host, target = ROUTES["shop"][2]
    override = b"X-Splitter-Pool: canary"
    stages = [10.0, 30.0, 60.0, 30.0, 0.0, 20.0, 5.0]
    checks = 2 * len(stages)
    jars: list[str | None] = []  # each client's sticky cookie, None until it has one
    last: list[str | None] = []  # each client's pool at its last page request
    for stage, canary in enumerate(stages):
        live = _live(config, {"shop": {"blue": 100.0 - canary, "canary": canary}})
        settings = ReadSettings(config.limits, live.override_header, live.segment_headers)
        returning = len(jars)  # clients 0..returning-1 were seen before this stage
        jars.extend([None] * 1000)
        last.extend([None] * 1000)
        page_pools: list[str | None] = []
        for visit in range(3):
            for client in range(len(jars)):
                jar = jars[client]
                if rng.random() < 0.25:  # a preview link, a beta tester, a tester's header
                    kind = rng.randrange(3)
                    if kind == 0:
                        req = _parsed(settings, host, target + b"?x=1&preview", jar)
                    elif kind == 1:
                        req = _parsed(settings, host, target, jar, b"X-Beta: 1")
                    else:
                        req = _parsed(settings, host, target, jar, override)
                    answer = Answer(live, req)
                    assert answer.pool == "canary"
                    assert answer.set_cookie is None  # neither sets nor renews a cookie
                    assert answer.obs.by_override
                    assert answer.obs.by_segment == (kind != 2)
                # A page request (now and then with the beta header at another value).
                beta = (b"X-Beta: 0",) if rng.random() < 0.1 else ()
                answer = Answer(live, _parsed(settings, host, target, jar, *beta))
                assert answer.obs.route_name == "shop"
                assert not answer.obs.by_override
                if jars[client] is None:
                    assert answer.set_cookie is not None
                    jars[client] = answer.set_cookie
                else:
                    assert answer.set_cookie is None  # the cookie given is kept
                previous = last[client]
                if previous is not None and client < returning and visit == 0:
                    if canary > stages[stage - 1]:
                        assert previous == answer.pool or answer.pool == "canary"
                    else:
                        assert previous == answer.pool or previous == "canary"
                elif previous is not None:
                    assert answer.pool == previous  # sticky within a stage
                last[client] = answer.pool
                if visit == 2:
                    page_pools.append(answer.pool)
        p = canary / 100.0
        if returning:
            share = page_pools[:returning].count("canary") / returning
            assert abs(share - p) <= tolerance(p, returning, checks), (stage, canary, share)
        share = page_pools.count("canary") / len(page_pools)
        assert abs(share - p) <= tolerance(p, len(page_pools), checks), (stage, canary, share)
        if canary == 0.0:
            assert "canary" not in page_pools


@pytest.mark.parametrize("canary", [1.0, 50.0])
def test_a_client_without_a_cookie_gets_one_whichever_pool_it_lands_in(canary: float) -> None:
    """Both pools' new clients get a cookie (Flagger #1532: only the canary's did)."""
    live = _live(_config({"shop": (100.0 - canary, 0.0, canary)}))
    host, target = ROUTES["shop"][2]
    given_by_pool: Counter[str | None] = Counter()
    for _ in range(3000):
        answer = Answer(live, _request(host, target))
        assert answer.set_cookie is not None
        given_by_pool[answer.pool] += 1
        again = Answer(live, _request(host, target, answer.set_cookie))
        assert again.pool == answer.pool and again.set_cookie is None
    assert given_by_pool["blue"] > 0 and given_by_pool["canary"] > 0

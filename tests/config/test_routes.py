"""Routes and segments in the config (docs/configuration.md#routes-and-segments): what a
valid file becomes, and every problem named by its path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from splitter.config import (
    Address,
    Analysis,
    Backend,
    Config,
    Pool,
    Rollouts,
    Route,
    Segment,
    Webhook,
    load,
    parse,
)
from splitter.config.convert import Invalid
from splitter.config.routes import _HOP_BY_HOP, to_path_prefix, to_route_host
from splitter.errors import ConfigError, ConfigProblem
from splitter.http1.request import HOP_BY_HOP
from tests.support import run_cli

CONTRACT_ROUTES = """\
listen: 0.0.0.0:8080
routes:                           # instead of the top-level `pools` (never both)
  - name: shop                    # [a-z0-9][a-z0-9_-]{0,39}, unique
    hosts: [shop.example.com, "*.shop.example.com"]  # optional; matched against Host
    path_prefix: /                # optional, default "/"
    pools:                        # exactly as section 2's pools
      blue:   {weight: 100, backends: [http://10.0.0.1:8000]}
      canary: {weight: 0,   backends: [http://10.0.0.2:8000]}
    segments:                     # optional; in order, the first that matches wins
      - {pool: canary, header: {name: X-Beta, value: "1"}}   # no value: present, any value
      - {pool: canary, cookie: {name: beta, value: "yes"}}
      - {pool: canary, query: {name: preview}}
      - {pool: canary, source: [10.0.0.0/8, "2001:db8::/32"]} # the client's address
    rollouts: {hold: 30s}         # optional: over the top-level rollouts defaults
  - name: api
    path_prefix: /api
    pools:
      blue: {weight: 1, backends: [http://10.0.0.3:8000]}
"""

BLUE = {"weight": 1, "backends": ["http://127.0.0.1:5001"]}
CANARY = {"weight": 0, "backends": ["http://127.0.0.1:5002"]}
BLUE_POOL = Pool("blue", 1, (Backend("http://127.0.0.1:5001", "127.0.0.1", 5001),))
CANARY_POOL = Pool("canary", 0, (Backend("http://127.0.0.1:5002", "127.0.0.1", 5002),))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "splitter.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    """The problems of a file, as `splitter check` prints them (path, line, message)."""
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env={})
    return [str(p) for p in caught.value.problems]


def route(**changes: Any) -> dict[str, Any]:
    """A valid route (name r, pools blue and canary), with keys replaced; None drops one."""
    data: dict[str, Any] = {"name": "r", "pools": {"blue": BLUE, "canary": CANARY}}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def config(*routes: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"listen": "127.0.0.1:8080", "routes": list(routes), **top}


def problems(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse(data, env={})
    return [(p.path, p.message) for p in caught.value.problems]


def one_problem(data: Any) -> tuple[str, str]:
    (problem,) = problems(data)
    return problem


# --- valid configs ----------------------------------------------------------------------


def test_contract_example_loads_into_dataclasses(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, CONTRACT_ROUTES), env={})
    canary = "canary"
    assert loaded == Config(
        listen=Address("0.0.0.0", 8080),
        routes=(
            Route(
                name="shop",
                pools=(
                    Pool("blue", 100, (Backend("http://10.0.0.1:8000", "10.0.0.1", 8000),)),
                    Pool("canary", 0, (Backend("http://10.0.0.2:8000", "10.0.0.2", 8000),)),
                ),
                hosts=("shop.example.com", "*.shop.example.com"),
                path_prefix="/",
                segments=(
                    Segment(canary, "header", name="X-Beta", value="1"),
                    Segment(canary, "cookie", name="beta", value="yes"),
                    Segment(canary, "query", name="preview", value=None),
                    Segment(canary, "source", source=("10.0.0.0/8", "2001:db8::/32")),
                ),
                rollouts=Rollouts(hold=30.0),
            ),
            Route(
                name="api",
                pools=(Pool("blue", 1, (Backend("http://10.0.0.3:8000", "10.0.0.3", 8000),)),),
                path_prefix="/api",
                rollouts=Rollouts(),
            ),
        ),
    )
    # Two routes, neither named default: the unprefixed API has no route to act on.
    assert loaded.main_route is None and loaded.pools == () and loaded.weights() == {}
    assert loaded.route("api") is loaded.routes[1]


def test_top_level_pools_and_segments_are_the_default_route() -> None:
    loaded = parse(
        {
            "listen": "127.0.0.1:8080",
            "pools": {"blue": BLUE, "canary": CANARY},
            "segments": [{"pool": "canary", "header": {"name": "X-Beta"}}],
            "rollouts": {"hold": "5s"},
        }
    )
    assert loaded.routes == (
        Route(
            "default",
            (BLUE_POOL, CANARY_POOL),
            segments=(Segment("canary", "header", name="X-Beta"),),
            rollouts=Rollouts(hold=5.0),
        ),
    )
    assert loaded.main_route is loaded.routes[0]
    assert loaded.weights() == {"blue": 1, "canary": 0}


def test_a_route_may_be_named_default_and_is_then_the_main_route() -> None:
    loaded = parse(config(route(name="api", path_prefix="/api"), route(name="default")))
    assert loaded.main_route is not None and loaded.main_route.name == "default"
    assert loaded.main_route is loaded.routes[1]


def test_one_route_is_the_main_route_whatever_its_name() -> None:
    loaded = parse(config(route(name="shop", hosts=["shop.example.com"])))
    assert loaded.main_route is loaded.routes[0]
    assert [p.name for p in loaded.pools] == ["blue", "canary"]


def test_a_route_takes_only_its_keys_defaults() -> None:
    (only,) = parse(config(route())).routes
    assert only == Route("r", (BLUE_POOL, CANARY_POOL), (), "/", (), Rollouts())


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("shop.example.com", "shop.example.com"),
        ("Shop.EXAMPLE.com", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        (" shop.example.com ", "shop.example.com"),
        ("*.Example.com.", "*.example.com"),
        ("localhost", "localhost"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c0", "a-b.c0"),
        ("10.0.0.1", "10.0.0.1"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
        ("2001:DB8:0:0::1", "[2001:db8::1]"),
        ("[2001:DB8::0:1]", "[2001:db8::1]"),
    ],
)
def test_hosts_are_normalised(written: str, kept: str) -> None:
    assert to_route_host(written) == kept
    (only,) = parse(config(route(hosts=[written]))).routes
    assert only.hosts == (kept,)


@pytest.mark.parametrize(
    ("written", "kept"),
    [("/", "/"), ("/api", "/api"), ("/api/", "/api"), ("/api/v1/", "/api/v1"),
     ("/a.b/..c/.d", "/a.b/..c/.d"), ("/caf%C3%A9", "/caf%C3%A9"), ("/API", "/API")],
)  # fmt: skip
def test_path_prefixes_are_normalised(written: str, kept: str) -> None:
    assert to_path_prefix(written) == kept
    (only,) = parse(config(route(path_prefix=written))).routes
    assert only.path_prefix == kept


def test_route_rollouts_are_the_top_level_ones_with_the_routes_keys_replaced() -> None:
    hook = {"url": "http://hooks.example/a", "events": ["rolled_back"]}
    top = {
        "hold": "1m", "max": "20m", "on_inconclusive": "rollback", "webhooks": [hook],
        "analysis": {"confidence": 0.95, "max_per_address": 7, "warmup": "10s"},
    }  # fmt: skip
    loaded = parse(
        config(
            route(name="a", path_prefix="/a"),
            route(name="b", path_prefix="/b", rollouts={"hold": "2m", "analysis": {"warmup": 0}}),
            route(name="c", path_prefix="/c", rollouts={"max": "1h", "webhooks": []}),
            route(name="d", path_prefix="/d", rollouts={"on_inconclusive": "pause"}),
            route(name="e", path_prefix="/e", rollouts=None),
            rollouts=top,
        )
    )
    analysis = Analysis(confidence=0.95, max_per_address=7, warmup=10.0)
    webhooks = (Webhook("http://hooks.example/a", ("rolled_back",)),)
    base = Rollouts(60.0, 1200.0, "rollback", analysis, webhooks)
    assert loaded.rollouts == base
    assert [r.rollouts for r in loaded.routes] == [
        base,
        Rollouts(
            120.0, 1200.0, "rollback", Analysis(0.95, max_per_address=7, warmup=0.0), webhooks
        ),
        Rollouts(60.0, 3600.0, "rollback", analysis, ()),
        Rollouts(60.0, 1200.0, "pause", analysis, webhooks),
        base,
    ]


def test_every_segment_kind() -> None:
    segments = [
        {"pool": "canary", "header": {"name": "X-Beta", "value": "1"}},
        {"pool": "canary", "header": {"name": "X-Any"}},
        {"pool": "blue", "cookie": {"name": "beta", "value": "yes"}},
        {"pool": "canary", "cookie": {"name": "quoted", "value": '"a b"'.replace(" ", "")}},
        {"pool": "canary", "query": {"name": "preview"}},
        {"pool": "canary", "query": {"name": "v", "value": ""}},
        {"pool": "canary", "source": ["10.0.0.0/8", " 2001:DB8::/32 ", "192.0.2.7", "10.0.0.0/8",
                                      "::ffff:198.51.100.0/120"]},
    ]  # fmt: skip
    (only,) = parse(config(route(segments=segments))).routes
    assert only.segments == (
        Segment("canary", "header", name="X-Beta", value="1"),
        Segment("canary", "header", name="X-Any", value=None),
        Segment("blue", "cookie", name="beta", value="yes"),
        Segment("canary", "cookie", name="quoted", value='"ab"'),
        Segment("canary", "query", name="preview", value=None),
        Segment("canary", "query", name="v", value=""),
        Segment(
            "canary",
            "source",
            source=("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32", "198.51.100.0/24"),
        ),
    )


def test_a_segment_may_send_to_a_pool_at_weight_0() -> None:
    (only,) = parse(config(route(segments=[{"pool": "canary", "query": {"name": "p"}}]))).routes
    assert only.pool("canary") == CANARY_POOL and only.segments[0].pool == "canary"


@pytest.mark.parametrize(("written", "kept"), [(1, "1"), (0, "0"), (12345, "12345"), ("1", "1")])
def test_an_integer_value_is_its_decimal_string(written: Any, kept: str) -> None:
    for kind in ("header", "cookie", "query"):
        segment = {"pool": "canary", kind: {"name": "x", "value": written}}
        (only,) = parse(config(route(segments=[segment]))).routes
        assert only.segments[0].value == kept


def test_the_override_header_may_be_a_segment_when_override_is_off() -> None:
    segment = {"pool": "canary", "header": {"name": "X-Splitter-Pool", "value": "canary"}}
    (only,) = parse(config(route(segments=[segment]))).routes
    assert only.segments[0].name == "X-Splitter-Pool"


def test_routes_that_cannot_tie() -> None:
    pools = {"blue": BLUE}
    loaded = parse(
        config(
            {"name": "every", "pools": pools},
            {"name": "api", "path_prefix": "/api", "pools": pools},
            {"name": "api-v1", "path_prefix": "/api/v1", "pools": pools},
            {"name": "shop", "hosts": ["shop.example.com"], "pools": pools},
            {"name": "shop-api", "hosts": ["shop.example.com"], "path_prefix": "/api",
             "pools": pools},
            {"name": "wild", "hosts": ["*.example.com"], "pools": pools},
            {"name": "wilder", "hosts": ["*.shop.example.com"], "pools": pools},
            {"name": "apex", "hosts": ["example.com"], "pools": pools},
            {"name": "v6", "hosts": ["::1", "127.0.0.1"], "pools": pools},
        )
    )  # fmt: skip
    assert [r.name for r in loaded.routes] == [
        "every", "api", "api-v1", "shop", "shop-api", "wild", "wilder", "apex", "v6",
    ]  # fmt: skip


# --- the top level ----------------------------------------------------------------------


def test_pools_and_routes_are_never_both(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue: {weight: 1, backends: [http://127.0.0.1:5001]}
        routes:
          - name: shop
            pools:
              blue: {weight: 1, backends: [http://127.0.0.1:5001]}
        """,
    ) == [
        "routes (line 4): cannot be used with the top-level pools: either pools (one route, "
        "default) or routes, each with its own pools",
    ]


def test_pools_or_routes_is_required() -> None:
    assert problems({"listen": "127.0.0.1:8080"}) == [
        (
            "pools",
            "is required: at least one pool with its backends (or routes: a list of routes, "
            "each with its own pools)",
        )
    ]


def test_top_level_segments_go_with_the_top_level_pools(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - name: shop
            pools:
              blue: {weight: 1, backends: [http://127.0.0.1:5001]}
        segments:
          - {pool: blue, query: {name: preview}}
        """,
    ) == [
        "segments (line 6): the top-level segments go with the top-level pools: with routes, "
        "each route has its own segments",
    ]


def test_top_level_segments_are_checked_at_their_paths(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue: {weight: 1, backends: [http://127.0.0.1:5001]}
          canary: {weight: 0, backends: [http://127.0.0.1:5002]}
        segments:
          - {pool: canary, header: {name: X-Beta}}
          - pool: canry
            cookie: {name: beta}
          - {pool: canary, query: {}}
        """,
    ) == [
        "segments[1].pool (line 7): unknown pool 'canry' (the pools are blue, canary)",
        "segments[2].query.name (line 9): is required",
    ]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"name": "shop"}, "must be a list of routes, each with a name and its pools"),
        ("shop", "must be a list of routes, each with a name and its pools"),
        ([], "must list at least one route"),
    ],
)
def test_routes_must_be_a_non_empty_list(routes: Any, message: str) -> None:
    assert problems({"listen": "127.0.0.1:8080", "routes": routes}) == [("routes", message)]


# --- a route ----------------------------------------------------------------------------


def test_route_problems_have_their_paths_and_lines(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - name: shop
            host: [shop.example.com]
            pools:
              blue: {weight: -1, backends: [http://127.0.0.1:5001]}
              green: {weight: 1, backends: []}
          - shop
          - name: api
            path_prefix: /api
        """,
    ) == [
        "routes[0].host (line 4): unknown key (did you mean 'hosts'?)",
        "routes[0].pools.blue.weight (line 6): must be >= 0",
        "routes[0].pools.green.backends (line 7): must list at least one backend",
        "routes[1] (line 8): must be a mapping",
        "routes[2].pools (line 9): is required: at least one pool with its backends",
    ]


def test_each_routes_pools_need_a_weight_above_0() -> None:
    data = config(route(name="a", path_prefix="/a"), route(pools={"canary": CANARY}))
    assert problems(data) == [("routes[1].pools", "at least one pool must have a weight > 0")]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "is required: a name such as shop"),
        ("Shop", "must be a route name: up to 40 lower-case letters, digits, '_' and '-', "
                 "starting with a letter or digit"),
        ("-shop", "must be a route name"),
        ("shop.api", "must be a route name"),
        ("s" * 41, "must be a route name"),
        (7, "must be a route name"),
        ("none", "'none' is reserved; name the route otherwise"),
    ],
)  # fmt: skip
def test_bad_route_names(name: Any, message: str) -> None:
    path, said = one_problem(config(route(name=name) if name else route(name=None)))
    assert path == "routes[0].name" and said.startswith(message)


def test_route_names_are_unique(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - {name: shop, hosts: [a.example], pools: {blue: {weight: 1, backends: [http://b:1]}}}
          - {name: s_1-9, hosts: [b.example], pools: {blue: {weight: 1, backends: [http://b:1]}}}
          - {name: shop, hosts: [c.example], pools: {blue: {weight: 1, backends: [http://b:1]}}}
          - {name: shop, hosts: [d.example], pools: {blue: {weight: 1, backends: [http://b:1]}}}
        """,
    ) == [
        "routes[2].name (line 5): duplicate route name (same as routes[0])",
        "routes[3].name (line 6): duplicate route name (same as routes[0])",
    ]


HOST_HINT = "must be a host name (shop.example.com), a wildcard (*.example.com) or an IP address"


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("shop.example.com:8080", "the port is not part of a host: routes match the Host "
                                  "without its port (write shop.example.com)"),
        ("[::1]:8080", "the port is not part of a host: routes match the Host without its port "
                       "(write [::1])"),
        ("shop.example.com:", "the port is not part of a host"),
        ("*.*.example.com", "a '*' stands only as the whole first label, as in *.example.com"),
        ("*example.com", "a '*' stands only as the whole first label"),
        ("shop.*.com", "a '*' stands only as the whole first label"),
        ("*", "a '*' stands only as the whole first label"),
        ("*.", "a '*' stands only as the whole first label"),
        ("", HOST_HINT),
        (".", HOST_HINT),
        ("shop..example.com", HOST_HINT),
        ("-shop.example.com", HOST_HINT),
        ("shop-.example.com", HOST_HINT),
        ("shop_api.example.com", HOST_HINT),
        ("shop example.com", HOST_HINT),
        ("http://shop.example.com", f"{HOST_HINT}, not a URL or a path"),
        ("shop.example.com/api", f"{HOST_HINT}, not a URL or a path"),
        ("a" * 64 + ".example.com", HOST_HINT),
        (".".join(["a" * 60] * 5), HOST_HINT),
        ("bücher.example", f"{HOST_HINT}: write an internationalised name in its xn-- form"),
        ("10.0.0.256", f"{HOST_HINT}: 10.0.0.256 is not an IPv4 address"),
        ("1.2.3", f"{HOST_HINT}: 1.2.3 is not an IPv4 address"),
        ("*.10.0.0.1", "a wildcard (*.) goes in front of a name, not an address"),
        ("[shop.example.com]", HOST_HINT),
        ("[::1", HOST_HINT),
        ("::g", f"{HOST_HINT} (an IPv6 address, such as [2001:db8::1])"),
        ("fe80::1%eth0", "must be an IPv6 address without a zone (%eth0)"),
        (8080, f"{HOST_HINT} (a string)"),
    ],
)  # fmt: skip
def test_bad_hosts(written: Any, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        to_route_host(written)
    assert str(caught.value).startswith(message)
    data = config(route(hosts=["ok.example.com", written]))
    assert one_problem(data) == ("routes[0].hosts[1]", str(caught.value))


def test_host_problems_have_their_lines(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - name: shop
            hosts:
              - Shop.Example.com
              - shop.example.com:8080
              - shop.example.com.
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: api
            hosts: api.example.com
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: none-listed
            hosts: []
            pools: {blue: {weight: 1, backends: [http://b:1]}}
        """,
    ) == [
        "routes[0].hosts[1] (line 6): the port is not part of a host: routes match the Host "
        "without its port (write shop.example.com)",
        "routes[0].hosts[2] (line 7): duplicate host shop.example.com (same as routes[0].hosts[0])",
        "routes[1].hosts (line 10): must be a list of host names, such as [shop.example.com]",
        "routes[2].hosts (line 13): must list at least one host (leave hosts out to match "
        "every Host)",
    ]


def test_duplicate_hosts_are_found_after_normalisation() -> None:
    data = config(route(hosts=["[::1]", "*.a.example", "0:0::1", "*.A.Example."]))
    assert problems(data) == [
        ("routes[0].hosts[2]", "duplicate host [::1] (same as routes[0].hosts[0])"),
        ("routes[0].hosts[3]", "duplicate host *.a.example (same as routes[0].hosts[1])"),
    ]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("api", "must be a path starting with '/', such as /api"),
        ("", "must be a path starting with '/'"),
        (7, "must be a path starting with '/'"),
        ("/api?x=1", "must be a path only, without a query (?) or fragment (#)"),
        ("/api#top", "must be a path only, without a query (?) or fragment (#)"),
        ("//api", "must not have an empty segment (//)"),
        ("/api//v1", "must not have an empty segment (//)"),
        ("/api//", "must not have an empty segment (//)"),
        ("/./api", "must not have a '.' or '..' segment"),
        ("/api/..", "must not have a '.' or '..' segment"),
        ("/api/../admin", "must not have a '.' or '..' segment"),
        ("/api/%2E%2e/admin", "must not have a '.' or '..' segment"),
        ("/api/.", "must not have a '.' or '..' segment"),
        ("/my api", "must be printable ASCII without spaces (percent-encode the rest: %20)"),
        ("/café", "must be printable ASCII without spaces"),
        ("/api\t", "must be printable ASCII without spaces"),
    ],
)
def test_bad_path_prefixes(written: Any, message: str) -> None:
    path, said = one_problem(config(route(path_prefix=written)))
    assert path == "routes[0].path_prefix" and said.startswith(message)


def test_route_rollouts_problems(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        rollouts: {hold: 1m, max: 5m}
        routes:
          - name: a
            path_prefix: /a
            pools: {blue: {weight: 1, backends: [http://b:1]}}
            rollouts:
              hold: 10m
              analysis: {max_per_address: 5, warmup: -1}
          - name: b
            path_prefix: /b
            pools: {blue: {weight: 1, backends: [http://b:1]}}
            rollouts:
              hold: 1s
              max: 0.5s
              on_inconclusive: maybe
              hooks: []
          - name: c
            path_prefix: /c
            pools: {blue: {weight: 1, backends: [http://b:1]}}
            rollouts:
              webhooks: [{url: ftp://x}]
        """,
    ) == [
        "routes[0].rollouts.hold (line 8): must be at most max (300s, from the top-level "
        "rollouts; set max here too)",
        "routes[0].rollouts.analysis.max_per_address (line 9): applies to the whole config: "
        "set it in the top-level rollouts.analysis only",
        "routes[0].rollouts.analysis.warmup (line 9): must be >= 0",
        "routes[1].rollouts.max (line 15): must be at least hold",
        "routes[1].rollouts.on_inconclusive (line 16): must be pause, promote or rollback",
        "routes[1].rollouts.hooks (line 17): unknown key (did you mean 'webhooks'?)",
        "routes[2].rollouts.webhooks[0].url (line 22): must be an http:// or https:// URL",
    ]


def test_route_rollouts_max_is_judged_against_the_merged_hold() -> None:
    # the route's max below the top-level hold
    data = config(route(rollouts={"max": "30s"}), rollouts={"hold": "1m"})
    assert problems(data) == [("routes[0].rollouts.max", "must be at least hold")]
    # the route's hold above the top-level max: fine when the route also raises max
    parse(config(route(rollouts={"hold": "20m", "max": "30m"})))


# --- segments ---------------------------------------------------------------------------


def test_segment_problems_have_their_paths_and_lines(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - name: shop
            hosts: [shop.example.com]
            pools:
              blue: {weight: 100, backends: [http://10.0.0.1:8000]}
              canary: {weight: 0, backends: [http://10.0.0.2:8000]}
          - name: api
            path_prefix: /api
            pools:
              blue: {weight: 100, backends: [http://10.0.0.1:8000]}
              canary: {weight: 0, backends: [http://10.0.0.2:8000]}
            segments:
              - {pool: canary, header: {name: X-Beta, value: "1"}}
              - {pool: canry, header: {name: X-Beta}}
              - pool: canary
                cookie:
                  name: beta
                  value: yes
              - pool: canary
                query: {name: preview}
                source: [10.0.0.0/8]
              - {pool: canary}
              - {header: {name: X-Beta}}
              - {pool: canary, source: [10.0.0.1/8, nonsense]}
              - {pool: canary, header: {name: X-Beta}, tier: gold}
        """,
    ) == [
        "routes[1].segments[1].pool (line 15): unknown pool 'canry' (the pools of route 'api' "
        "are blue, canary)",
        # YAML 1.1 reads an unquoted yes as true
        'routes[1].segments[2].cookie.value (line 19): must be a string (quote it: "1", "true")',
        "routes[1].segments[3] (line 20): has query and source: a segment has exactly one of "
        "header, cookie, query or source",
        "routes[1].segments[4] (line 23): a segment has exactly one of header, cookie, query or "
        "source",
        "routes[1].segments[5].pool (line 24): is required: the pool the segment's requests go to",
        "routes[1].segments[6].source[0] (line 25): not a CIDR: 10.0.0.1/8 has host bits set "
        "(did you mean 10.0.0.0/8?)",
        "routes[1].segments[6].source[1] (line 25): not a CIDR: must be a CIDR such as "
        "10.0.0.0/8 or 2001:db8::/32, or one address",
        "routes[1].segments[7].tier (line 26): unknown key",
    ]


@pytest.mark.parametrize(
    ("segments", "path", "message"),
    [
        ({"pool": "canary"}, "routes[0].segments",
         "must be a list of segments, each a pool and one of header, cookie, query or source"),
        (["canary"], "routes[0].segments[0]", "must be a mapping"),
        ([{"pool": 1, "query": {"name": "p"}}], "routes[0].segments[0].pool",
         "must be a pool name"),
        ([{"pool": "canary", "header": "X-Beta"}], "routes[0].segments[0].header",
         "must be a mapping"),
        ([{"pool": "canary", "header": None}], "routes[0].segments[0].header",
         "must be a mapping"),
        ([{"pool": "canary", "header": {"value": "1"}}], "routes[0].segments[0].header.name",
         "is required"),
        ([{"pool": "canary", "header": {"name": "X-Beta", "values": "1"}}],
         "routes[0].segments[0].header.values", "unknown key (did you mean 'value'?)"),
        ([{"pool": "canary", "source": []}], "routes[0].segments[0].source",
         "must be a non-empty list of CIDRs (a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one "
         "address)"),
        ([{"pool": "canary", "source": "10.0.0.0/8"}], "routes[0].segments[0].source",
         "must be a non-empty list of CIDRs"),
    ],
)  # fmt: skip
def test_bad_segments(segments: Any, path: str, message: str) -> None:
    said_path, said = one_problem(config(route(segments=segments)))
    assert said_path == path and said.startswith(message)


TOKEN = "letters, digits and !#$%&'*+-.^_`|~"


@pytest.mark.parametrize(
    ("kind", "field", "value", "message"),
    [
        ("header", "name", "", f"must be a header name of {TOKEN}"),
        ("header", "name", "X Beta", f"must be a header name of {TOKEN}"),
        ("header", "name", "X-Beta:", f"must be a header name of {TOKEN}"),
        ("header", "name", 7, f"must be a header name of {TOKEN}"),
        ("header", "name", "host", "Host is matched by the route's hosts, not by a segment"),
        ("header", "name", "Cookie",
         "use a cookie segment: {pool: ..., cookie: {name: ..., value: ...}}"),
        ("header", "value", " 1", "must be a header value: printable ASCII, no spaces at either "
                                  "end"),
        ("header", "value", "a\r\nb", "must be a header value"),
        ("header", "value", "é", "must be a header value"),
        ("header", "value", True, 'must be a string (quote it: "1", "true")'),
        ("header", "value", 1.5, "must be a string"),
        ("cookie", "name", "", f"must be a cookie name of {TOKEN}"),
        ("cookie", "name", "be ta", f"must be a cookie name of {TOKEN}"),
        ("cookie", "name", "beta=", f"must be a cookie name of {TOKEN}"),
        ("cookie", "value", "a b",
         "must be a cookie value: no spaces, quotes, commas, ';' or '\\'"),
        ("cookie", "value", "a;b", "must be a cookie value"),
        ("cookie", "value", "a,b", "must be a cookie value"),
        ("cookie", "value", '"ab', "must be a cookie value"),
        ("cookie", "value", False, "must be a string"),
        ("query", "name", "", "must be a query parameter's name, without & = # or ? (its value "
                              "goes in value)"),
        ("query", "name", "preview=1", "must be a query parameter's name"),
        ("query", "name", "a&b", "must be a query parameter's name"),
        ("query", "name", 1.0, "must be a string"),
        ("query", "value", "a\nb", "must be printable text"),
        ("query", "value", 0.5, "must be a string"),
    ],
)  # fmt: skip
def test_bad_names_and_values(kind: str, field: str, value: Any, message: str) -> None:
    match = {"name": "x", field: value}
    data = config(route(segments=[{"pool": "canary", kind: match}]))
    path, said = one_problem(data)
    assert path == f"routes[0].segments[0].{kind}.{field}" and said.startswith(message)


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_a_hop_by_hop_header_is_no_segment(name: bytes) -> None:
    for written in (name.decode(), name.decode().title()):
        data = config(route(segments=[{"pool": "canary", "header": {"name": written}}]))
        assert one_problem(data) == (
            "routes[0].segments[0].header.name",
            "is a hop-by-hop header: it describes a connection, not a client",
        )


def test_the_config_knows_the_proxys_hop_by_hop_headers() -> None:
    assert {name.encode() for name in _HOP_BY_HOP} == HOP_BY_HOP


def test_the_override_header_is_no_segment_when_override_is_on() -> None:
    segment = {"pool": "canary", "header": {"name": "x-canary-please", "value": "canary"}}
    data = config(route(segments=[segment]), override={"header": "X-Canary-Please"})
    assert one_problem(data) == (
        "routes[0].segments[0].header.name",
        "is the override header (override.header), which names a pool itself",
    )
    segment = {"pool": "canary", "header": {"name": "X-Splitter-Pool"}}
    data = config(route(segments=[segment]), override={})
    assert one_problem(data)[0] == "routes[0].segments[0].header.name"


def test_a_segment_to_a_pool_with_a_problem_is_not_also_an_unknown_pool() -> None:
    pools = {"blue": BLUE, "canary": {"weight": "lots", "backends": ["http://c:1"]}}
    data = config(route(pools=pools, segments=[{"pool": "canary", "query": {"name": "p"}}]))
    assert problems(data) == [("routes[0].pools.canary.weight", "must be a number >= 0")]
    # an unreadable pools: no segment is judged against it
    data = config(route(pools=["blue"], segments=[{"pool": "canary", "query": {"name": "p"}}]))
    assert [p for p, _ in problems(data)] == ["routes[0].pools"]


# --- ties -------------------------------------------------------------------------------


def test_routes_without_hosts_and_the_same_path_prefix_tie(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - name: web
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: api
            path_prefix: /api/
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: api2
            path_prefix: /api
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: web2
            pools: {blue: {weight: 1, backends: [http://b:1]}}
        """,
    ) == [
        "routes[2].path_prefix (line 9): route 'api' (routes[1]) has the same path_prefix /api "
        "and no hosts either: a request could match both (give one of them hosts or another "
        "path_prefix)",
        # no path_prefix of its own: the line of the route
        "routes[3].path_prefix (line 11): route 'web' (routes[0]) has the same path_prefix / "
        "and no hosts either: a request could match both (give one of them hosts or another "
        "path_prefix)",
    ]


def test_routes_with_a_host_in_common_and_the_same_path_prefix_tie(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        routes:
          - name: shop
            hosts: [shop.example.com, "*.example.com"]
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: shop2
            hosts:
              - www.example.com
              - "*.EXAMPLE.com."
              - Shop.Example.Com
            path_prefix: /
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: v6
            hosts: ["::1"]
            pools: {blue: {weight: 1, backends: [http://b:1]}}
          - name: v6b
            hosts: ["[0::1]"]
            pools: {blue: {weight: 1, backends: [http://b:1]}}
        """,
    ) == [
        "routes[1].hosts[1] (line 9): route 'shop' (routes[0]) also has *.example.com with "
        "path_prefix /: a request could match both",
        "routes[1].hosts[2] (line 10): route 'shop' (routes[0]) also has shop.example.com with "
        "path_prefix /: a request could match both",
        "routes[3].hosts[0] (line 17): route 'v6' (routes[2]) also has [::1] with path_prefix /: "
        "a request could match both",
    ]


def test_a_tie_names_the_first_route_it_ties_with() -> None:
    same = {"hosts": ["a.example"], "path_prefix": "/x"}
    data = config(route(name="r0", **same), route(name="r1", **same), route(name="r2", **same))
    assert [(path, message.partition(" also")[0]) for path, message in problems(data)] == [
        ("routes[1].hosts[0]", "route 'r0' (routes[0])"),
        ("routes[2].hosts[0]", "route 'r0' (routes[0])"),
    ]


def test_a_route_with_an_unreadable_host_or_prefix_claims_nothing() -> None:
    # Only the problems themselves: a bad path_prefix is not also taken for "/".
    data = config(route(name="a"), route(name="b", path_prefix="api"))
    assert problems(data) == [
        ("routes[1].path_prefix", "must be a path starting with '/', such as /api")
    ]
    data = config(route(name="a"), route(name="b", hosts="a.example"))
    assert [p for p, _ in problems(data)] == ["routes[1].hosts"]


# --- lines of list items, and `splitter check` ------------------------------------------


def test_every_list_item_of_a_route_has_its_line(tmp_path: Path) -> None:
    text = """\
    listen: 0.0.0.0:8080
    routes:
    - name: a
      pools: {blue: {weight: 1, backends: [http://b:1]}}
    - name: b
      hosts:
      - b.example
      pools: {blue: {weight: 1, backends: [http://b:1]}}
      segments:

      - pool: nope
        header:
          name: Host
      - {pool: blue, source: [10.0.0.0/8,
                              "fe80::/64",
                              10.1.1.1/8]}
    """
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env={})
    assert caught.value.problems == [
        ConfigProblem(
            "routes[1].segments[0].pool",
            "unknown pool 'nope' (the pools of route 'b' are blue)",
            11,
        ),
        ConfigProblem(
            "routes[1].segments[0].header.name",
            "Host is matched by the route's hosts, not by a segment",
            13,
        ),
        ConfigProblem(
            "routes[1].segments[1].source[2]",
            "not a CIDR: 10.1.1.1/8 has host bits set (did you mean 10.0.0.0/8?)",
            16,
        ),
    ]


BAD_ROUTES = """\
listen: 127.0.0.1:8080
routes:
  - name: shop
    hosts: [shop.example.com:443]
    pools:
      blue: {weight: 100, backends: [http://10.0.0.1:8000]}
      canary: {weight: 0, backends: [http://10.0.0.2:8000]}
    segments:
      - {pool: canary, header: {name: X-Beta, value: "1"}}
      - {pool: green, cookie: {name: beta}}
  - name: shop
    pools:
      blue: {weight: 100, backends: [http://10.0.0.1:8000]}
"""


def test_check_names_the_paths_of_a_bad_routes_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(BAD_ROUTES)
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: routes[0].hosts[0] (line 4): the port is not part of a host: routes match "
        "the Host without its port (write shop.example.com)",
        f"{path}: routes[0].segments[1].pool (line 10): unknown pool 'green' (the pools of "
        "route 'shop' are blue, canary)",
        f"{path}: routes[1].name (line 11): duplicate route name (same as routes[0])",
    ]
    good = tmp_path / "good.yaml"
    good.write_text(CONTRACT_ROUTES)
    result = run_cli("check", "-c", str(good))
    assert result.returncode == 0, result.stderr


def test_the_routes_example_of_the_docs_is_valid() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = page.split("## Routes and segments", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = parse({"listen": "0.0.0.0:8080", **yaml.safe_load(example)}, env={})
    assert [(r.name, r.hosts, r.path_prefix, len(r.segments)) for r in loaded.routes] == [
        ("shop", ("shop.example.com", "*.shop.example.com"), "/", 4),
        ("api", (), "/api", 0),
    ]
    segments = page.split("### Segments", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    pools = {"blue": BLUE, "canary": CANARY}
    data = {"listen": "0.0.0.0:8080", "pools": pools, **yaml.safe_load(segments)}
    assert len(parse(data, env={}).routes[0].segments) == 5


def test_the_route_choice_example_of_the_docs_has_no_tie() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = page.split("### Which route serves a request", 1)[1]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    for item in example["routes"]:
        assert item["pools"] == "..."
        item["pools"] = {"blue": BLUE}
    loaded = parse({"listen": "0.0.0.0:8080", **example}, env={})
    names = ["shop", "shop-api", "tenants", "stores", "api", "web"]
    assert [r.name for r in loaded.routes] == names

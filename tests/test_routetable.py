"""The compiled route table and segment matchers (splitter.routetable): every rule of route
choice and of segments, and the table against a slow, obviously correct reference."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from splitter.config.model import Route, Segment
from splitter.routetable import RouteTable, SegmentMatcher, host_key, query_value


def route(
    name: str,
    hosts: tuple[str, ...] = (),
    prefix: str = "/",
    segments: tuple[Segment, ...] = (),
) -> Route:
    return Route(name=name, pools=(), hosts=hosts, path_prefix=prefix, segments=segments)


def chosen(table: RouteTable, host: bytes | None, target: bytes) -> str | None:
    index = table.match(host, target)
    return None if index < 0 else table.routes[index].name


# -- one route ---------------------------------------------------------------------------------


def test_the_default_route_takes_every_request_without_looking() -> None:
    table = RouteTable([route("default")])
    assert table.only == 0
    for host in (None, b"", b"example.com", b"[::1]:8080"):
        for target in (b"/", b"/x?y", b"*", b"/%61pi"):
            assert table.match(host, target) == 0


def test_one_route_with_a_prefix_or_a_host_is_looked_at() -> None:
    api = RouteTable([route("api", prefix="/api")])
    assert api.only == -1
    assert api.match(b"x.com", b"/api/v1") == 0
    assert api.match(b"x.com", b"/other") == -1
    shop = RouteTable([route("shop", hosts=("shop.example.com",))])
    assert shop.only == -1
    assert shop.match(b"shop.example.com", b"/") == 0
    assert shop.match(b"example.com", b"/") == -1
    assert shop.match(None, b"/") == -1


def test_no_routes_match_nothing() -> None:
    table = RouteTable([])
    assert table.match(b"x.com", b"/") == -1
    assert table.match(None, b"*") == -1


# -- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"example.com", b"example.com"),
        (b"Example.COM", b"example.com"),
        (b"example.com:8080", b"example.com"),
        (b"example.com.", b"example.com"),
        (b"EXAMPLE.com.:443", b"example.com"),
        (b"example.com..", b"example.com."),  # one dot only: matches nothing
        (b"example.com:", b"example.com"),
        (b"[::1]", b"[::1]"),
        (b"[::1]:8080", b"[::1]"),
        (b"[2001:DB8:0:0::1]:8080", b"[2001:db8::1]"),
        (b"[::ffff:10.0.0.1]", b"[::ffff:10.0.0.1]"),
        (b"[fe80::1%25eth0]:80", b"[fe80::1%25eth0]"),  # not an address: as text
        (b"[::1", b"[::1"),
        (b"10.0.0.1:80", b"10.0.0.1"),
        (b"", b""),
        (b":80", b""),
    ],
)
def test_hosts_are_compared_without_port_case_or_trailing_dot(raw: bytes, key: bytes) -> None:
    assert host_key(raw) == key


def test_host_forms_reach_the_same_route() -> None:
    table = RouteTable([route("site", hosts=("example.com",)), route("v6", hosts=("[::1]",))])
    for host in (b"example.com", b"EXAMPLE.Com", b"example.com:8080", b"example.com.:80"):
        assert chosen(table, host, b"/") == "site"
    for host in (b"[::1]", b"[::1]:8080", b"[0:0::1]", b"[0000::0001]:1"):
        assert chosen(table, host, b"/") == "v6"
    assert chosen(table, b"www.example.com", b"/") is None
    assert chosen(table, b"example.co", b"/") is None
    assert chosen(table, b"example.com.evil", b"/") is None


def test_config_hosts_are_normalised_the_same_way() -> None:
    table = RouteTable([route("v6", hosts=("[2001:DB8:0::1]",)), route("w", hosts=("*.X.Com",))])
    assert chosen(table, b"[2001:db8::1]:443", b"/") == "v6"
    assert chosen(table, b"a.x.com", b"/") == "w"


def test_without_a_host_header_only_routes_without_hosts_match() -> None:
    table = RouteTable(
        [route("site", hosts=("example.com",), prefix="/"), route("any", prefix="/a")]
    )
    assert chosen(table, None, b"/") is None
    assert chosen(table, None, b"/a/b") == "any"
    assert chosen(table, b"example.com", b"/a/b") == "site"


def test_a_wildcard_matches_one_or_more_labels_and_not_the_bare_suffix() -> None:
    table = RouteTable([route("shop", hosts=("*.shop.example.com",))])
    assert chosen(table, b"eu.shop.example.com", b"/") == "shop"
    assert chosen(table, b"a.b.shop.example.com:8080", b"/") == "shop"
    assert chosen(table, b"EU.Shop.Example.Com.", b"/") == "shop"
    assert chosen(table, b"shop.example.com", b"/") is None
    assert chosen(table, b".shop.example.com", b"/") is None  # no label in front
    assert chosen(table, b"eushop.example.com", b"/") is None
    assert chosen(table, b"example.com", b"/") is None
    assert chosen(table, b"[::1]", b"/") is None


def test_the_more_specific_wildcard_wins() -> None:
    table = RouteTable(
        [
            route("com", hosts=("*.com",)),
            route("wide", hosts=("*.example.com",)),
            route("narrow", hosts=("*.shop.example.com",)),
        ]
    )
    assert chosen(table, b"a.shop.example.com", b"/") == "narrow"
    assert chosen(table, b"shop.example.com", b"/") == "wide"
    assert chosen(table, b"a.other.example.com", b"/") == "wide"
    assert chosen(table, b"example.com", b"/") == "com"
    assert chosen(table, b"org", b"/") is None


def test_a_more_specific_wildcard_beats_a_longer_prefix_of_a_wider_one() -> None:
    table = RouteTable(
        [
            route("exact", hosts=("a.b.x.com",), prefix="/api"),
            route("narrow", hosts=("*.b.x.com",), prefix="/"),
            route("wide", hosts=("*.x.com",), prefix="/v1"),
            route("widest", hosts=("*.com",), prefix="/v1/x"),
        ]
    )
    for host in (b"a.b.x.com", b"c.b.x.com", b"c.c.b.x.com"):
        assert chosen(table, host, b"/v1/x") == "narrow"
    assert chosen(table, b"c.x.com", b"/v1/x") == "wide"
    assert chosen(table, b"x.com", b"/v1/x") == "widest"


def test_exact_beats_wildcard_beats_no_hosts() -> None:
    table = RouteTable(
        [
            route("any"),
            route("wild", hosts=("*.example.com",)),
            route("exact", hosts=("www.example.com",)),
        ]
    )
    assert chosen(table, b"www.example.com", b"/x") == "exact"
    assert chosen(table, b"api.example.com", b"/x") == "wild"
    assert chosen(table, b"example.com", b"/x") == "any"
    assert chosen(table, None, b"/x") == "any"


def test_a_class_whose_prefixes_do_not_match_gives_way() -> None:
    table = RouteTable([route("a", hosts=("x.com",), prefix="/api"), route("b")])
    assert chosen(table, b"x.com", b"/api/v1") == "a"
    assert chosen(table, b"x.com", b"/other") == "b"
    table = RouteTable(
        [
            route("exact", hosts=("a.x.com",), prefix="/api"),
            route("narrow", hosts=("*.x.com",), prefix="/v1"),
            route("wide", hosts=("*.com",), prefix="/v2"),
            route("rest", prefix="/"),
        ]
    )
    assert chosen(table, b"a.x.com", b"/api") == "exact"
    assert chosen(table, b"a.x.com", b"/v1") == "narrow"
    assert chosen(table, b"a.x.com", b"/v2") == "wide"
    assert chosen(table, b"a.x.com", b"/v3") == "rest"
    assert chosen(table, b"b.x.com", b"/api") == "rest"


def test_class_beats_prefix_length() -> None:
    table = RouteTable(
        [route("long", prefix="/a/b/c"), route("host", hosts=("x.com",), prefix="/a")]
    )
    assert chosen(table, b"x.com", b"/a/b/c/d") == "host"
    assert chosen(table, b"y.com", b"/a/b/c/d") == "long"


def test_a_route_listing_a_host_and_its_wildcard_counts_once_as_exact() -> None:
    table = RouteTable(
        [
            route("both", hosts=("a.x.com", "*.x.com"), prefix="/p"),
            route("other", hosts=("*.x.com",), prefix="/p/q"),
        ]
    )
    assert chosen(table, b"a.x.com", b"/p/q") == "both"  # exact class first
    assert chosen(table, b"b.x.com", b"/p/q") == "other"  # both wildcards: longest prefix
    assert table.exact[b"a.x.com"] == ((b"/p", 0), (b"/p/q", 1))


def test_routes_that_tie_go_to_the_first_in_the_config() -> None:
    # The config parser refuses these; the table stays deterministic all the same.
    table = RouteTable([route("one", hosts=("x.com",)), route("two", hosts=("x.com",))])
    assert chosen(table, b"x.com", b"/") == "one"


@pytest.mark.parametrize("entry", ["*", "*.", "a.*.com", "", "x*.com"])
def test_what_is_not_a_host_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host"):
        RouteTable([route("r", hosts=(entry,))])


def test_a_table_without_hosts_ignores_the_host() -> None:
    table = RouteTable([route("api", prefix="/api"), route("web")])
    assert not table.by_host
    assert chosen(table, b"anything", b"/api") == "api"
    assert chosen(table, None, b"/x") == "web"


def test_known_hosts_are_cached_and_the_cache_is_bounded() -> None:
    table = RouteTable([route("w", hosts=("*.x.com",)), route("any", prefix="/z")])
    assert chosen(table, b"a.x.com:80", b"/") == "w"
    assert b"a.x.com:80" in table._cache
    for i in range(3000):
        host = b"h%d.x.com" % i if i % 2 else b"h%d.y.com" % i
        assert chosen(table, host, b"/z") == ("w" if i % 2 else "any")
        assert chosen(table, host, b"/") == ("w" if i % 2 else None)
    assert len(table._cache) <= 1024
    long_host = b"a" * 300 + b".x.com"
    assert chosen(table, long_host, b"/") == "w"
    assert long_host not in table._cache


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "matches"),
    [
        (b"/api", True),
        (b"/api/", True),
        (b"/api/x", True),
        (b"/api?q=1", True),
        (b"/api#frag", True),
        (b"/apix", False),
        (b"/ap", False),
        (b"/API", False),  # paths are case-sensitive
        (b"/%61pi", False),  # not decoded
        (b"//api", False),
        (b"/x/api", False),
        (b"/api/../admin", True),  # not normalised: the backend gets it as it is
        (b"*", False),
    ],
)
def test_a_prefix_matches_whole_segments(target: bytes, matches: bool) -> None:
    table = RouteTable([route("api", prefix="/api")])
    assert (table.match(b"x.com", target) == 0) is matches


def test_the_longest_prefix_wins() -> None:
    table = RouteTable([route("root"), route("api", prefix="/api"), route("v1", prefix="/api/v1")])
    assert chosen(table, b"x", b"/api/v1/users") == "v1"
    assert chosen(table, b"x", b"/api/v1") == "v1"
    assert chosen(table, b"x", b"/api/v1?x") == "v1"
    assert chosen(table, b"x", b"/api/v10") == "api"
    assert chosen(table, b"x", b"/api") == "api"
    assert chosen(table, b"x", b"/apiv1") == "root"
    assert chosen(table, b"x", b"/") == "root"
    assert chosen(table, b"x", b"/?api") == "root"


def test_options_star_goes_to_the_route_of_the_root() -> None:
    table = RouteTable([route("api", hosts=("x.com",), prefix="/api"), route("web", prefix="/")])
    assert chosen(table, b"x.com", b"*") == "web"
    assert chosen(table, None, b"*") == "web"
    only_api = RouteTable([route("api", prefix="/api"), route("site", hosts=("x.com",))])
    assert chosen(only_api, b"y.com", b"*") is None
    assert chosen(only_api, b"x.com", b"*") == "site"


def test_a_prefix_given_with_a_trailing_slash_is_the_same_prefix() -> None:
    table = RouteTable([route("api", prefix="/api/")])
    assert table.match(b"x", b"/api") == 0
    assert table.match(b"x", b"/apix") == -1
    with pytest.raises(ValueError, match="starts with"):
        RouteTable([route("api", prefix="api")])


# -- the table against a reference -------------------------------------------------------------

LABELS = ["a", "b", "c"]
# Names that nest (each a label suffix of others), so that exact hosts and wildcards of
# several depths meet in one request.
domains = st.sampled_from(["b", "a.b", "b.a.b", "a.b.a.b", "c.b.a.b", "a", "b.a", "c.a.b"])
host_entries = st.one_of(domains, domains.map(lambda d: "*." + d))
prefixes = st.sampled_from(["/", "/api", "/api/v1", "/api/v1/x", "/x", "/v1"])
routes = st.lists(
    st.tuples(st.lists(host_entries, max_size=2, unique=True).map(tuple), prefixes),
    min_size=1,
    max_size=6,
).map(lambda specs: [route(f"r{i}", hosts, prefix) for i, (hosts, prefix) in enumerate(specs)])


@st.composite
def request_hosts(draw: st.DrawFn) -> bytes | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    labels = draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=5))
    host = ".".join(label.upper() if draw(st.booleans()) else label for label in labels)
    host = draw(st.sampled_from(["", "", "", "", "", "."])) + host  # ".a.b": no label in front
    host += draw(st.sampled_from(["", "", "", ".", ".."]))
    host += draw(st.sampled_from(["", "", ":80", ":8080"]))
    return host.encode()


targets = st.one_of(
    st.just("*"),
    st.tuples(
        st.lists(st.sampled_from(["api", "apix", "v1", "x", ""]), max_size=4),
        st.sampled_from(["", "", "/", "?q=/api", "#x", "?"]),
    ).map(lambda t: "/" + "/".join(t[0]) + t[1]),
).map(str.encode)


def could_tie(table_routes: list[Route]) -> bool:
    for i, one in enumerate(table_routes):
        for other in table_routes[i + 1 :]:
            if one.path_prefix != other.path_prefix:
                continue
            if not one.hosts and not other.hosts:
                return True
            if set(one.hosts) & set(other.hosts):
                return True
    return False


def reference(table_routes: list[Route], raw_host: bytes | None, raw_target: bytes) -> int:
    """Every route scored by (host class, -len(prefix)); the lowest score that matches."""
    host = None
    if raw_host is not None:
        host = raw_host.decode().split(":")[0].lower()
        if host.endswith("."):
            host = host[:-1]
    target = raw_target.decode()
    path = target if target.startswith("/") else "/"
    path = path.split("?")[0].split("#")[0]
    best: tuple[tuple[int, int, int], int] | None = None
    for index, r in enumerate(table_routes):
        prefix = r.path_prefix
        if not (prefix == "/" or path == prefix or path.startswith(prefix + "/")):
            continue
        if not r.hosts:
            rank = (2, 0)
        else:
            ranks = []
            for entry in r.hosts if host is not None else ():
                if entry.startswith("*."):
                    suffix = entry[2:]
                    if host.endswith("." + suffix) and len(host) > len(suffix) + 1:
                        ranks.append((1, -len(suffix)))
                elif entry == host:
                    ranks.append((0, 0))
            if not ranks:
                continue
            rank = min(ranks)
        score = (*rank, -len(prefix))
        if best is None or score < best[0]:
            best = (score, index)
    return -1 if best is None else best[1]


@st.composite
def requests_for(draw: st.DrawFn, table_routes: list[Route]) -> tuple[bytes | None, bytes]:
    """A random request, or one aimed at a route (its host, its prefix), then varied."""
    host, target = draw(request_hosts()), draw(targets)
    if draw(st.booleans()):
        aimed = draw(st.sampled_from(table_routes))
        if aimed.hosts and draw(st.integers(0, 3)):
            entry = draw(st.sampled_from(aimed.hosts))
            if entry.startswith("*."):
                front = draw(st.lists(st.sampled_from(LABELS), max_size=2))
                entry = ".".join([*front, entry[2:]])
            host = (entry + draw(st.sampled_from(["", ".", ":80"]))).encode()
        if draw(st.integers(0, 3)):
            rest = draw(st.sampled_from(["", "/", "x", "/v1", "/x?y", "?a", "#b"]))
            target = (aimed.path_prefix + rest).replace("//", "/").encode()
    return host, target


@settings(max_examples=800, deadline=None)
@given(routes, st.data())
@example(
    [route("r0", ("a.b",), "/api"), route("r1", (), "/")],
    [(b"a.b", b"/x"), (b"A.B.:80", b"/api?x")],
)
@example([route("r0", ("*.b",), "/"), route("r1", ("*.a.b",), "/")], [(b"c.a.b", b"/")])
@example([route("r0", ("a",), "/x"), route("r1", (), "/")], [(b"a", b"*")])
@example(
    [route("r0", ("a.b.a",), "/api"), route("r1", ("*.b.a",), "/"), route("r2", ("*.a",), "/x")],
    [(b"a.b.a", b"/x"), (b"c.b.a", b"/x")],
)
def test_the_table_agrees_with_the_reference(table_routes: list[Route], data) -> None:
    assume(not could_tie(table_routes))
    if isinstance(data, list):  # an @example
        requests = data
    else:
        requests = data.draw(st.lists(requests_for(table_routes), min_size=1, max_size=12))
    table = RouteTable(table_routes)
    for host, target in requests + requests:  # twice: the cached hosts too
        assert table.match(host, target) == reference(table_routes, host, target), (host, target)


# -- segments ----------------------------------------------------------------------------------


def header(pool: str, name: str, value: str | None = None) -> Segment:
    return Segment(pool=pool, kind="header", name=name, value=value)


def cookie(pool: str, name: str, value: str | None = None) -> Segment:
    return Segment(pool=pool, kind="cookie", name=name, value=value)


def query(pool: str, name: str, value: str | None = None) -> Segment:
    return Segment(pool=pool, kind="query", name=name, value=value)


def source(pool: str, *cidrs: str) -> Segment:
    return Segment(pool=pool, kind="source", source=cidrs)


def test_no_segments_cost_nothing() -> None:
    matcher = SegmentMatcher([])
    assert matcher.empty
    assert matcher.header_names == frozenset()
    assert matcher.match({b"x": b"y"}, b"a=b", b"/?a=b", "10.0.0.1") is None
    assert RouteTable([route("default")]).segment_headers == frozenset()


def test_header_segments() -> None:
    matcher = SegmentMatcher([header("beta", "X-Beta", "yes"), header("any", "X-Team")])
    assert not matcher.empty
    assert matcher.header_names == frozenset({b"x-beta", b"x-team"})
    assert matcher.match({b"x-beta": b"yes"}, None, b"/", "") == "beta"
    assert matcher.match({b"x-beta": b"Yes"}, None, b"/", "") is None  # values: exact
    assert matcher.match({b"x-beta": b"no"}, None, b"/", "") is None
    assert matcher.match({b"x-team": b""}, None, b"/", "") == "any"  # present, even empty
    assert matcher.match({b"x-beta": b"no", b"x-team": b"a"}, None, b"/", "") == "any"
    assert matcher.match({b"other": b"yes"}, None, b"/", "") is None
    assert matcher.match(None, b"x-beta=yes", b"/?x-beta=yes", "") is None


def test_cookie_segments() -> None:
    matcher = SegmentMatcher([cookie("beta", "beta", "1"), cookie("staff", "staff")])
    assert matcher.header_names == frozenset()
    assert matcher.match(None, b"a=1; beta=1; b=2", b"/", "") == "beta"
    assert matcher.match(None, b'beta="1"', b"/", "") == "beta"
    assert matcher.match(None, b"beta=1 ", b"/", "") == "beta"
    assert matcher.match(None, b"beta=0; beta=1", b"/", "") is None  # the first one counts
    assert matcher.match(None, b"staff=", b"/", "") == "staff"
    assert matcher.match(None, b"xbeta=1; abeta=1", b"/", "") is None
    assert matcher.match(None, None, b"/?beta=1", "") is None
    assert matcher.match({b"cookie": b"beta=1"}, None, b"/", "") is None


def test_cookie_values_compare_as_bytes() -> None:
    matcher = SegmentMatcher([cookie("eu", "région", "été")])
    assert matcher.match(None, "région=été".encode(), b"/", "") == "eu"
    assert matcher.match(None, "région=été".encode("latin-1"), b"/", "") is None


def test_query_segments() -> None:
    matcher = SegmentMatcher([query("beta", "beta", "on"), query("debug", "debug")])
    assert matcher.match(None, None, b"/p?beta=on", "") == "beta"
    assert matcher.match(None, None, b"/p?x=1&beta=on&y", "") == "beta"
    assert matcher.match(None, None, b"/p?beta=off", "") is None
    assert matcher.match(None, None, b"/p?beta=off&beta=on", "") is None  # the first counts
    assert matcher.match(None, None, b"/p?%62eta=%6Fn", "") == "beta"
    assert matcher.match(None, None, b"/p?debug", "") == "debug"  # present without "="
    assert matcher.match(None, None, b"/p?debug=", "") == "debug"
    assert matcher.match(None, None, b"/p?debugx=1&xdebug=1", "") is None
    assert matcher.match(None, None, b"/p#?debug", "") is None  # a fragment is no query
    assert matcher.match(None, None, b"/p?x#debug", "") is None
    assert matcher.match(None, None, b"/p?beta=on#x", "") == "beta"
    assert matcher.match(None, None, b"/debug", "") is None
    assert matcher.match(None, None, b"*", "") is None


def test_query_values_are_decoded_as_forms() -> None:
    matcher = SegmentMatcher([query("q", "who am", "a b+c/é")])
    assert matcher.match(None, None, b"/?who+am=a+b%2Bc%2f%C3%A9", "") == "q"
    assert matcher.match(None, None, b"/?who%20am=a%20b%2Bc/%C3%A9", "") == "q"
    assert matcher.match(None, None, b"/?who+am=a+b+c/%C3%A9", "") is None


@pytest.mark.parametrize(
    ("query_string", "name", "value"),
    [
        (b"a=1&b=2", b"b", b"2"),
        (b"a=1&&a=2", b"a", b"1"),
        (b"a", b"a", b""),
        (b"a=b=c", b"a", b"b=c"),
        (b"a=%zz", b"a", b"%zz"),  # an invalid escape stays
        (b"a=%4", b"a", b"%4"),
        (b"%=1", b"%", b"1"),
        (b"a;b=1", b"b", None),  # only "&" separates
        (b"", b"a", None),
    ],
)
def test_query_values(query_string: bytes, name: bytes, value: bytes | None) -> None:
    assert query_value(query_string, name) == value


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "a b", "%", "é"]), st.text("ab+%=é &2", max_size=5))
    ),
    st.sampled_from(["a", "b", "a b", "%", "é", "c"]),
)
def test_query_values_agree_with_the_standard_library(pairs, name) -> None:
    from urllib.parse import quote_plus

    encoded = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()
    expected = dict(reversed(parse_qsl(encoded.decode(), keep_blank_values=True)))
    got = query_value(encoded, name.encode())
    assert got == (expected[name].encode() if name in expected else None)


def test_source_segments() -> None:
    matcher = SegmentMatcher(
        [source("office", "10.0.0.0/8", "192.0.2.7/32"), source("v6", "2001:db8::/32")]
    )
    assert matcher.match(None, None, b"/", "10.1.2.3") == "office"
    assert matcher.match(None, None, b"/", "192.0.2.7") == "office"
    assert matcher.match(None, None, b"/", "192.0.2.8") is None
    assert matcher.match(None, None, b"/", "::ffff:10.1.2.3") == "office"  # IPv4-mapped
    assert matcher.match(None, None, b"/", "2001:db8::1") == "v6"
    assert matcher.match(None, None, b"/", "2001:db9::1") is None
    assert matcher.match(None, None, b"/", "") is None
    assert matcher.match(None, None, b"/", "unix:/run/x.sock") is None
    assert matcher.match(None, None, b"/", "10.1.2.3") == "office"  # cached
    assert matcher._clients["10.1.2.3"] == 0b01


def test_an_ipv4_mapped_network_is_its_ipv4_network() -> None:
    matcher = SegmentMatcher([source("net", "::ffff:10.0.0.0/104")])
    assert matcher.match(None, None, b"/", "10.9.9.9") == "net"
    assert matcher.match(None, None, b"/", "::ffff:10.9.9.9") == "net"
    assert matcher.match(None, None, b"/", "11.0.0.1") is None
    everyone = SegmentMatcher([source("all", "0.0.0.0/0", "::/0")])
    assert everyone.match(None, None, b"/", "203.0.113.1") == "all"
    assert everyone.match(None, None, b"/", "2001:db8::1") == "all"


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.0/x", "nope/8", "::ffff:0:0/80", ""])
def test_what_is_not_a_cidr_is_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match="not a CIDR"):
        SegmentMatcher([source("p", cidr)])


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown segment kind"):
        SegmentMatcher([Segment(pool="p", kind="body", name="x")])


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_networks = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
    st.tuples(st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"), st.integers(96, 128)),
).map(lambda pair: ipaddress.ip_network(f"{pair[0]}/{pair[1]}", strict=False))
_addresses = st.one_of(
    st.ip_addresses(),
    st.ip_addresses(v=4).map(lambda a: ipaddress.ip_address(f"::ffff:{a}")),
    st.sampled_from(["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1"]).map(ipaddress.ip_address),
)


def _as_ipv4(network: ipaddress.IPv4Network | ipaddress.IPv6Network):
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        return ipaddress.ip_network(
            f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}"
        )
    return network


@given(st.lists(_networks, min_size=1, max_size=4), _addresses)
@example([ipaddress.ip_network("10.0.0.0/8")], ipaddress.ip_address("::ffff:10.0.0.1"))
@example([ipaddress.ip_network("::ffff:10.0.0.0/104")], ipaddress.ip_address("10.1.2.3"))
@example([ipaddress.ip_network("::/0")], ipaddress.ip_address("::ffff:10.0.0.1"))
def test_source_segments_agree_with_the_standard_library(networks, address) -> None:
    # An IPv4-mapped address is its IPv4 address and a mapped network its IPv4 network (as
    # splitter.proxy.clientaddr has them): an IPv6 network never holds an IPv4 client.
    matcher = SegmentMatcher([source("p", *(str(n) for n in networks))])
    client = getattr(address, "ipv4_mapped", None) or address
    expected = any(client in n for n in map(_as_ipv4, networks) if n.version == client.version)
    assert (matcher.match(None, None, b"/", str(address)) == "p") is expected


def test_the_first_segment_that_matches_wins() -> None:
    matcher = SegmentMatcher(
        [
            source("office", "10.0.0.0/8"),
            query("q", "pool", "green"),
            cookie("c", "pool", "canary"),
            header("h", "X-Pool", "dark"),
            header("fallback", "X-Pool"),
        ]
    )
    everything = ({b"x-pool": b"dark"}, b"pool=canary", b"/?pool=green", "10.0.0.1")
    assert matcher.match(*everything) == "office"
    assert matcher.match(*everything[:3], "11.0.0.1") == "q"
    assert matcher.match(*everything[:2], b"/", "11.0.0.1") == "c"
    assert matcher.match(everything[0], None, b"/", "11.0.0.1") == "h"
    assert matcher.match({b"x-pool": b"other"}, None, b"/", "11.0.0.1") == "fallback"
    assert matcher.match(None, None, b"/", "11.0.0.1") is None
    assert matcher.header_names == frozenset({b"x-pool"})


def test_the_table_compiles_each_routes_segments() -> None:
    table = RouteTable(
        [
            route("a", prefix="/a", segments=(header("x", "X-One"),)),
            route("b", segments=(header("y", "x-two", "1"), cookie("z", "c"))),
            route("c", prefix="/c"),
        ]
    )
    assert [m.empty for m in table.matchers] == [False, False, True]
    assert table.segment_headers == frozenset({b"x-one", b"x-two"})
    assert table.matchers[1].match({b"x-two": b"1"}, None, b"/", "") == "y"

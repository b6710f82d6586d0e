#!/usr/bin/env python3
"""Nanoseconds per call of the route table and of a segment matcher (splitter.routetable).

    python benchmarks/routetable_micro.py [--repeat 7]

Run it from a checkout with the venv's python; it uses whichever splitter.routetable is
imported (the plain module, or the compiled one of an installed build: the first line
says which; SPLITTER_PURE=1 forces the plain one). Each figure is the best of `--repeat`
timings of a loop of calls, so it is the cost of the call itself, warm (cached hosts and
client addresses), not of a request.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from splitter.config.model import Route, Segment
from splitter.routetable import RouteTable, SegmentMatcher


def fifty_routes() -> list[Route]:
    """50 routes: 20 exact hosts (10 of them with two prefixes), 10 wildcards of two
    depths, 10 routes without hosts by prefix, and a catch-all."""
    routes: list[Route] = []
    for i in range(10):
        routes.append(Route(f"site{i}", (), (f"site{i}.example.com",), "/"))
        routes.append(Route(f"site{i}-api", (), (f"site{i}.example.com",), "/api/v1"))
    for i in range(10):
        routes.append(Route(f"host{i}", (), (f"host{i}.example.org", f"www.host{i}.org"), "/"))
    for i in range(5):
        routes.append(Route(f"wild{i}", (), (f"*.tenant{i}.example.net",), "/"))
        routes.append(Route(f"deep{i}", (), (f"*.eu.tenant{i}.example.net",), "/app"))
    for i in range(9):
        routes.append(Route(f"path{i}", (), (), f"/svc{i}"))
    routes.append(Route("default", (), (), "/"))
    assert len(routes) == 50
    return routes


def five_segments() -> list[Segment]:
    return [
        Segment(pool="beta", kind="header", name="X-Beta", value="yes"),
        Segment(pool="staff", kind="cookie", name="staff", value="1"),
        Segment(pool="preview", kind="query", name="preview"),
        Segment(pool="office", kind="source", source=("10.0.0.0/8", "2001:db8::/32")),
        Segment(pool="team", kind="header", name="X-Team"),
    ]


def ns_per_call(call: Callable[[], object], repeat: int) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    number = max(number, 10_000)
    return min(timer.repeat(repeat, number)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import splitter.routetable as module

    build = "plain Python" if module.__file__ and module.__file__.endswith(".py") else "compiled"
    print(f"splitter.routetable: {build} ({sys.implementation.name} {sys.version.split()[0]})")

    cases: list[tuple[str, Callable[[], object]]] = []
    one = RouteTable([Route("default", (), (), "/")])
    cases.append(("1 route (default): any request", lambda: one.match(b"example.com", b"/a?b")))
    one_host = RouteTable([Route("shop", (), ("shop.example.com",), "/api")])
    cases.append(
        ("1 route (host, prefix): hit", lambda: one_host.match(b"shop.example.com", b"/api/x"))
    )

    table = RouteTable(fifty_routes())
    requests = [
        ("50 routes: exact host, longest prefix", b"site7.example.com", b"/api/v1/users?x=1"),
        ("50 routes: exact host, its / prefix", b"Site7.Example.com:8443", b"/index.html"),
        ("50 routes: wildcard, 2 deep", b"a.eu.tenant3.example.net", b"/app/x"),
        ("50 routes: wildcard, falls to wider", b"a.eu.tenant3.example.net", b"/other"),
        ("50 routes: unknown host, by prefix", b"unknown.example.com", b"/svc8/x"),
        ("50 routes: unknown host, catch-all", b"unknown.example.com", b"/zzz"),
        ("50 routes: no Host (HTTP/1.0)", None, b"/svc0"),
    ]
    for name, host, target in requests:
        cases.append((name, lambda h=host, t=target: table.match(h, t)))
    uncached = b"x.y.a.eu.tenant3.example.net:80"
    cases.append(("50 routes: Host not cached (lookup)", lambda: table._lookup(uncached)))

    matcher = SegmentMatcher(five_segments())
    headers = {b"x-other": b"1"}
    cookie = b"session=abc; theme=dark"
    cases.append(
        (
            "5 segments: none matches",
            lambda: matcher.match(headers, cookie, b"/p?q=1&page=2", "203.0.113.9"),
        )
    )
    cases.append(
        (
            "5 segments: the first (header)",
            lambda: matcher.match({b"x-beta": b"yes"}, cookie, b"/p", "203.0.113.9"),
        )
    )
    cases.append(
        (
            "5 segments: the 4th (source, IPv4-mapped)",
            lambda: matcher.match(None, None, b"/p", "::ffff:10.1.2.3"),
        )
    )
    cases.append(
        (
            "5 segments: query, percent-encoded",
            lambda: matcher.match(None, None, b"/p?a=1&%70review=on", "203.0.113.9"),
        )
    )
    empty = SegmentMatcher([])
    cases.append(("0 segments", lambda: empty.match(None, None, b"/", "203.0.113.9")))

    width = max(len(name) for name, _ in cases)
    for name, call in cases:
        print(f"{name:<{width}}  {ns_per_call(call, args.repeat):7.0f} ns")


if __name__ == "__main__":
    main()

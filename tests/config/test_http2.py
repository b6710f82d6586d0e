"""The top-level `http2` and a pool's `protocol` (docs/configuration.md#http2-and-grpc):
defaults, values, and every wrong one named by its path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from splitter.config import PROTOCOLS, ConfigError, load, parse


def config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "listen": "127.0.0.1:8080",
        "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
    }
    data.update(changes)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, env={})
    return [str(p) for p in caught.value.problems]


def file_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "splitter.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(str(path), env={})
    return [str(p) for p in caught.value.problems]


def test_http2_is_on_by_default_and_takes_a_boolean() -> None:
    assert parse(config(), env={}).http2 is True
    assert parse(config(http2=False), env={}).http2 is False
    assert parse(config(http2="false"), env={}).http2 is False  # "${HTTP2:-false}"
    assert parse(config(http2=None), env={}).http2 is True  # null: the default


def test_a_pool_is_http1_unless_it_says_h2c() -> None:
    pools = {
        "blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]},
        "grpc": {"weight": 1, "protocol": "h2c", "backends": ["http://127.0.0.1:50051"]},
        "tls": {"protocol": "http1", "backends": ["https://api.internal"]},
    }
    route = parse(config(pools=pools), env={}).routes[0]
    assert [(p.name, p.protocol) for p in route.pools] == [
        ("blue", "http1"),
        ("grpc", "h2c"),
        ("tls", "http1"),
    ]
    assert PROTOCOLS == ("http1", "h2c")


def test_pools_in_routes_take_protocol() -> None:
    routes = [
        {"name": "web", "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}}},
        {
            "name": "api",
            "hosts": ["grpc.example.com"],
            "pools": {
                "grpc": {"weight": 1, "protocol": "h2c", "backends": ["http://127.0.0.1:50051"]}
            },
        },
    ]
    parsed = parse({"listen": "127.0.0.1:8080", "routes": routes}, env={})
    assert [(r.name, r.pools[0].protocol) for r in parsed.routes] == [
        ("web", "http1"),
        ("api", "h2c"),
    ]


def test_wrong_values_are_named_with_path_and_line(tmp_path: Path) -> None:
    found = file_problems(
        tmp_path,
        """\
        listen: 127.0.0.1:8080
        http2: yes please
        pools:
          blue:
            weight: 1
            protocol: h2
            backends: [http://127.0.0.1:5001]
          green:
            protocol: HTTP1
            backends: [http://127.0.0.1:5002]
          canary:
            protocol: 2
            backends: [http://127.0.0.1:5003]
        """,
    )
    assert found == [
        "http2 (line 2): must be true or false",
        "pools.blue.protocol (line 6): must be http1 or h2c (an https:// backend negotiates h2 "
        "by ALPN)",
        "pools.green.protocol (line 9): must be http1 or h2c",
        "pools.canary.protocol (line 12): must be http1 or h2c",
    ]


def test_h2c_with_an_https_backend_is_an_error_at_the_pool_protocol(tmp_path: Path) -> None:
    found = file_problems(
        tmp_path,
        """\
        listen: 127.0.0.1:8080
        routes:
          - name: api
            pools:
              grpc:
                weight: 1
                protocol: h2c
                backends:
                  - http://127.0.0.1:50051
                  - https://grpc.internal:50052
        """,
    )
    assert found == [
        "routes[0].pools.grpc.protocol (line 7): h2c is HTTP/2 on plain TCP, not for "
        "https://grpc.internal:50052: https backends negotiate h2 by ALPN; use http:// for h2c"
    ]


def test_one_backend_in_pools_of_two_protocols_is_an_error(tmp_path: Path) -> None:
    """A backend has one health check, chosen by its protocol: the pools that list it
    (in any route, by host and port) must agree."""
    found = file_problems(
        tmp_path,
        """\
        listen: 127.0.0.1:8080
        routes:
          - name: web
            pools:
              blue: {weight: 1, backends: [http://127.0.0.1:5001]}
          - name: api
            path_prefix: /api
            pools:
              grpc:
                weight: 1
                protocol: h2c
                backends: [http://127.0.0.1:50051, "http://127.0.0.1:5001/"]
        """,
    )
    assert found == [
        "routes[1].pools.grpc.protocol (line 11): is h2c, but http://127.0.0.1:5001/ is also "
        "in routes[0].pools.blue, whose protocol is http1: a backend speaks one protocol (and "
        "is health-checked by it)"
    ]
    pools = {
        "blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]},
        "green": {"weight": 0, "protocol": "h2c", "backends": ["http://LOCALHOST:80"]},
        "canary": {"weight": 0, "backends": ["http://localhost"]},
    }
    assert problems(config(pools=pools)) == [
        "pools.canary.protocol: is http1, but http://localhost is also in pools.green, whose "
        "protocol is h2c: a backend speaks one protocol (and is health-checked by it)"
    ]
    # the same protocol everywhere is fine
    pools["canary"]["protocol"] = "h2c"
    assert parse(config(pools=pools), env={}).routes[0].pools[2].protocol == "h2c"


def test_a_protocol_error_comes_with_the_others_of_the_pool() -> None:
    pools = {"blue": {"weight": -1, "protocol": "grpc", "backends": ["http://127.0.0.1:5001"]}}
    assert problems(config(pools=pools)) == [
        "pools.blue.weight: must be >= 0",
        "pools.blue.protocol: must be http1 or h2c",
    ]

"""Config file: YAML in, frozen dataclasses out, every problem named by path and line."""

from __future__ import annotations

import math
import os
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from splitter.config import (
    Address,
    Admin,
    Backend,
    Config,
    HealthCheck,
    Limits,
    MetricsListener,
    Override,
    Pool,
    Rollouts,
    Route,
    Shutdown,
    Sticky,
    Timeouts,
    is_loopback_host,
    load,
    parse,
)
from splitter.errors import ConfigError, ConfigProblem

CONTRACT_EXAMPLE = """\
listen: 0.0.0.0:8080            # host:port of the proxy
admin:
  listen: 127.0.0.1:9901        # host:port of the admin API, /metrics, /healthz
  token: ${SPLITTER_ADMIN_TOKEN:-}   # bearer token; empty means no auth (loopback only)
pools:                          # any names; order is kept; blue/green/canary are usual
  blue:
    weight: 90                  # number >= 0; a pool's share is weight / sum of weights
    backends:
      - http://127.0.0.1:5001   # a URL, or {url: ..., weight: N}
      - {url: http://127.0.0.1:5002, weight: 2}
  green:
    weight: 0
    backends: [http://127.0.0.1:5101]
  canary:
    weight: 10
    backends: [http://127.0.0.1:5201]
sticky:
  cookie: splitter              # cookie name; omit the sticky section to disable
  max_age: 86400                # seconds
  secret: ${SPLITTER_COOKIE_SECRET:-}  # HMAC key; when empty one is generated once and kept
                                       # in state_file, so cookies survive restarts
override:
  header: X-Splitter-Pool       # a request header naming a pool sends it there
health_check:
  path: /healthz
  interval: 2s
  timeout: 1s
  healthy_threshold: 2
  unhealthy_threshold: 2
timeouts:
  connect: 2s
  read: 60s                     # to the response headers, and the longest gap between body reads
state_file: ./splitter-state.json   # where runtime changes are kept across restarts
limits: {max_body: null, header_timeout: 10s, body_idle_timeout: 30s, keepalive_timeout: 75s}
shutdown: {accept_grace: 0s, grace: 10s}
access_log: true                # one JSON line per request on stdout
"""

MINIMAL = """\
listen: 127.0.0.1:8080
pools:
  blue:
    weight: 1
    backends: [http://127.0.0.1:5001]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "splitter.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env=env or {})
    return [str(p) for p in caught.value.problems]


def minimal(**changes: Any) -> dict[str, Any]:
    """A valid parsed document, with top-level keys replaced."""
    data: dict[str, Any] = {
        "listen": "127.0.0.1:8080",
        "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
    }
    data.update(changes)
    return data


def parse_problems(data: Any, env: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse(data, env=env or {})
    return caught.value.problems


# --- valid files ------------------------------------------------------------------------


def test_contract_example_loads_into_dataclasses(tmp_path: Path) -> None:
    env = {"SPLITTER_ADMIN_TOKEN": "t0k-of-sixteen-chars", "SPLITTER_COOKIE_SECRET": "s3cret"}
    config = load(write(tmp_path, CONTRACT_EXAMPLE), env=env)
    assert config == Config(
        listen=Address("0.0.0.0", 8080),
        admin=Admin(listen=Address("127.0.0.1", 9901), token="t0k-of-sixteen-chars"),
        routes=(
            Route(
                "default",
                (
                    Pool(
                        "blue",
                        90,
                        (
                            Backend("http://127.0.0.1:5001", "127.0.0.1", 5001, 1),
                            Backend("http://127.0.0.1:5002", "127.0.0.1", 5002, 2),
                        ),
                    ),
                    Pool("green", 0, (Backend("http://127.0.0.1:5101", "127.0.0.1", 5101, 1),)),
                    Pool("canary", 10, (Backend("http://127.0.0.1:5201", "127.0.0.1", 5201, 1),)),
                ),
                rollouts=Rollouts(),
            ),
        ),
        sticky=Sticky(cookie="splitter", max_age=86400, secret="s3cret"),
        override=Override("X-Splitter-Pool"),
        health_check=HealthCheck("/healthz", 2.0, 1.0, 2, 2),
        timeouts=Timeouts(connect=2.0, read=60.0),
        state_file="./splitter-state.json",
        limits=Limits(max_body=None, header_timeout=10, body_idle_timeout=30, keepalive_timeout=75),
        shutdown=Shutdown(accept_grace=0.0, grace=10.0),
        access_log=True,
    )
    assert config.weights() == {"blue": 90, "green": 0, "canary": 10}


def test_contract_example_with_empty_environment_has_no_token_or_secret(tmp_path: Path) -> None:
    config = load(write(tmp_path, CONTRACT_EXAMPLE), env={})
    assert config.admin.token == ""
    assert config.sticky is not None and config.sticky.secret == ""


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL), env={})
    assert config.admin == Admin()
    assert config.admin.listen == Address("127.0.0.1", 9901)
    assert config.sticky is None
    assert config.override is None
    assert config.health_check == HealthCheck()
    assert config.timeouts == Timeouts()
    assert config.limits == Limits()
    assert config.shutdown == Shutdown()
    assert config.state_file == "./splitter-state.json"
    assert config.access_log is True


def test_pool_weight_defaults_to_zero_and_backend_weight_to_one() -> None:
    config = parse(
        minimal(
            pools={
                "blue": {"weight": 5, "backends": [{"url": "http://b:1"}]},
                "green": {"backends": ["http://g:2"]},
            }
        )
    )
    assert [p.weight for p in config.pools] == [5, 0]
    assert config.pools[0].backends[0].weight == 1


def test_pool_order_is_kept() -> None:
    names = ["zeta", "alpha", "mid"]
    pools = {n: {"weight": 1, "backends": [f"http://{n}:80"]} for n in names}
    assert [p.name for p in parse(minimal(pools=pools)).pools] == names


def test_empty_sticky_section_enables_sticky_with_defaults() -> None:
    assert parse(minimal(sticky={})).sticky == Sticky()
    assert parse(minimal(sticky=None)).sticky is None
    assert parse(minimal(override={})).override == Override()


def test_null_sections_take_their_defaults() -> None:
    config = parse(minimal(admin=None, limits=None, health_check=None))
    assert (config.admin, config.limits, config.health_check) == (Admin(), Limits(), HealthCheck())


def test_sticky_max_age_accepts_a_duration() -> None:
    config = parse(minimal(sticky={"max_age": "1h", "cookie": "sid"}))
    assert config.sticky == Sticky(cookie="sid", max_age=3600)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:8080", Address("0.0.0.0", 8080)),
        ("[::1]:8080", Address("::1", 8080)),
        ("[::]:80", Address("::", 80)),
        ("localhost:9000", Address("localhost", 9000)),
        ("proxy.example.com:443", Address("proxy.example.com", 443)),
        ("127.0.0.1:0", Address("127.0.0.1", 0)),  # 0: the OS picks a port
        ("127.0.0.1:65535", Address("127.0.0.1", 65535)),
    ],
)
def test_listen_address_forms(listen: str, expected: Address) -> None:
    assert parse(minimal(listen=listen)).listen == expected


@pytest.mark.parametrize(
    "listen", ["8080", 8080, ":8080", "::1:8080", "[::1]", "127.0.0.1:65536", "1.2.3:80",
               "host:port", "[nothex]:80", "a b:80", "127.0.0.1:-1"],
)  # fmt: skip
def test_bad_listen_addresses_are_rejected(listen: Any) -> None:
    problems = parse_problems(minimal(listen=listen))
    assert [p.path for p in problems] == ["listen"]
    assert "host:port" in problems[0].message


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://127.0.0.1:5001", "127.0.0.1", 5001),
        ("http://127.0.0.1:5001/", "127.0.0.1", 5001),
        ("http://backend.internal", "backend.internal", 80),
        ("http://[::1]:5001", "::1", 5001),
        ("http://[fe80::1]", "fe80::1", 80),
        ("HTTP://Example.com:8080", "Example.com", 8080),
    ],
)
def test_backend_url_forms(url: str, host: str, port: int) -> None:
    pools = {"blue": {"weight": 1, "backends": [url]}}
    (backend,) = parse(minimal(pools=pools)).pools[0].backends
    assert backend == Backend(url=url, host=host, port=port, weight=1)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1:5001/app", "https://host[:port] only"),
        ("http://127.0.0.1:5001/app", "no path, query or user info"),
        ("http://127.0.0.1:5001/?q=1", "no path, query or user info"),
        ("http://user:pw@127.0.0.1:5001", "no path, query or user info"),
        ("http://127.0.0.1:5001#frag", "no path, query or user info"),
        ("ftp://127.0.0.1", "http://"),
        ("127.0.0.1:5001", "http://"),
        ("http://", "http://"),
        ("http://127.0.0.1:0", "port 1..65535"),
        ("http://127.0.0.1:99999", "port 1..65535"),
        ("http://127.0.0.1:", "port 1..65535"),
        ("http://::1:5001", "brackets"),
        (5001, "http://"),
    ],
)
def test_bad_backend_urls_name_the_list_item(url: Any, message: str) -> None:
    pools = {"blue": {"weight": 1, "backends": ["http://ok:1", url]}}
    (problem,) = parse_problems(minimal(pools=pools))
    assert problem.path == "pools.blue.backends[1]"
    assert message in problem.message


# --- problems, paths and lines ----------------------------------------------------------


def test_negative_pool_weight_names_path_and_line(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue:
            weight: 90
            backends:
              - http://127.0.0.1:5001
          canary:
            weight: -5
            backends: [http://127.0.0.1:5201]
        """,
    )
    assert problems == ["pools.canary.weight (line 8): must be >= 0"]


def test_check_output_line_carries_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("weight: 1", "weight: -1"))
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert caught.value.source == path
    assert caught.value.lines() == [f"{path}: pools.blue.weight (line 4): must be >= 0"]


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:99999
        admin:
          listen: 127.0.0.1:9901
        pools:
          blue:
            weight: lots
            backends:
              - http://127.0.0.1:5001
              - {url: https://127.0.0.1:5002/x, weight: -2}
          green:
            backends: []
        timeouts:
          connect: fast
        access_log: yes please
        """,
    )
    assert problems == [
        "listen (line 1): must be host:port, e.g. 0.0.0.0:8080 or [::1]:8080 (port 0..65535)",
        "pools.blue.weight (line 6): must be a number >= 0",
        "pools.blue.backends[1].weight (line 9): must be >= 0",
        "pools.blue.backends[1].url (line 9): must be https://host[:port] only: no path, query "
        "or user info",
        "pools.green.backends (line 11): must list at least one backend",
        "timeouts.connect (line 13): must be a duration such as 250ms, 2s or 1m",
        "access_log (line 14): must be true or false",
    ]


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue:
            wieght: 10
            backends: [http://127.0.0.1:5001]
        helth_check: {path: /healthz}
        colour: blue
        """,
    )
    assert problems == [
        # the misspelt weight is ignored, so no pool has a weight > 0
        "pools (line 2): at least one pool must have a weight > 0",
        "pools.blue.wieght (line 4): unknown key (did you mean 'weight'?)",
        "helth_check (line 6): unknown key (did you mean 'health_check'?)",
        "colour (line 7): unknown key",
    ]


def test_unknown_key_in_a_backend_mapping() -> None:
    pools = {"blue": {"weight": 1, "backends": [{"url": "http://a:1", "wieght": 2}]}}
    (problem,) = parse_problems(minimal(pools=pools))
    assert (problem.path, problem.message) == (
        "pools.blue.backends[0].wieght",
        "unknown key (did you mean 'weight'?)",
    )


def test_missing_required_keys(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "admin: {token: x-sixteen-characters}\n") == [
        "listen: is required (host:port of the proxy, e.g. 0.0.0.0:8080)",
        "pools: is required: at least one pool with its backends (or routes: a list of routes,"
        " each with its own pools)",
    ]


def test_missing_key_points_at_the_enclosing_line(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue:
            weight: 1
            backends:
              - http://127.0.0.1:5001
              - weight: 3
          green: {weight: 1}
        """,
    )
    assert problems == [
        "pools.blue.backends[1].url (line 7): is required",
        "pools.green.backends (line 8): is required: a list of backend URLs",
    ]


def test_parse_without_lines_reports_no_line() -> None:
    (problem,) = parse_problems(minimal(access_log="maybe"))
    assert problem == ConfigProblem("access_log", "must be true or false", None)


def test_all_pool_weights_zero_is_an_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, MINIMAL.replace("weight: 1", "weight: 0"))
    assert problems == ["pools (line 2): at least one pool must have a weight > 0"]


@pytest.mark.parametrize("pools", [{}, [], "blue", None])
def test_pools_must_be_a_non_empty_mapping(pools: Any) -> None:
    problems = parse_problems(minimal(pools=pools))
    assert [p.path for p in problems] == ["pools"]


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "ünï"])
def test_bad_pool_names(name: str) -> None:
    pools = {name: {"weight": 1, "backends": ["http://a:1"]}}
    (problem,) = parse_problems(minimal(pools=pools))
    assert "pool name" in problem.message


def test_duplicate_backend_in_a_pool_is_an_error() -> None:
    backends = ["http://127.0.0.1:5001", "http://127.0.0.1:5002", {"url": "http://127.0.0.1:5001/"}]
    (problem,) = parse_problems(minimal(pools={"blue": {"weight": 1, "backends": backends}}))
    assert problem.path == "pools.blue.backends[2].url"
    assert problem.message == "duplicate backend (same as pools.blue.backends[0])"


def test_same_backend_in_two_pools_is_allowed() -> None:
    pools = {
        "blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]},
        "green": {"weight": 1, "backends": ["http://127.0.0.1:5001"]},
    }
    assert len(parse(minimal(pools=pools)).pools) == 2


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (-1, "must be >= 0"),
        (-0.5, "must be >= 0"),
        (True, "must be a number >= 0"),
        ("ten", "must be a number >= 0"),
        ([1], "must be a number >= 0"),
        (math.nan, "must be a finite number (got nan)"),
        (math.inf, "must be a finite number (got inf)"),
    ],
)
def test_bad_pool_weights(weight: Any, message: str) -> None:
    pools = {"blue": {"weight": weight, "backends": ["http://a:1"]}, "g": {"weight": 1,
             "backends": ["http://b:1"]}}  # fmt: skip
    (problem,) = parse_problems(minimal(pools=pools))
    assert (problem.path, problem.message) == ("pools.blue.weight", message)


@pytest.mark.parametrize(
    "weight",
    [
        1000000.5,
        1000001,
        "1000000.5",
        "1e7",
        "1e20",
        1e20,
        1e308,
        2**63,
        2**64 + 1,
        10**30,
        "9" * 400,  # a numeric string, as after ${VAR} substitution
    ],
)
def test_weights_above_a_million_are_refused(weight: Any) -> None:
    pools = {"blue": {"weight": weight, "backends": ["http://a:1"]},
             "g": {"weight": 1, "backends": [{"url": "http://b:1", "weight": weight}]}}  # fmt: skip
    problems = parse_problems(minimal(pools=pools))
    assert [p.path for p in problems] == ["pools.blue.weight", "pools.g.backends[0].weight"]
    for problem in problems:
        assert problem.message.startswith("must be "), problem
        assert "1000000" in problem.message or "finite" in problem.message, problem


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (1000000, 1e6),
        (1e6, 1e6),
        ("1e6", 1e6),
        ("1000000.0", 1e6),
        (1e-300, 1e-300),
        (5e-324, 5e-324),
        ("1e-300", 1e-300),
    ],
)
def test_weights_up_to_a_million_and_tiny_ones_are_taken(weight: Any, expected: float) -> None:
    pools = {"blue": {"weight": weight, "backends": [{"url": "http://a:1", "weight": weight}]}}
    pool = parse(minimal(pools=pools)).pools[0]
    assert (pool.weight, pool.backends[0].weight) == (expected, expected)


@pytest.mark.parametrize("weight", [-0.0, "-0.0", "-0"])
def test_negative_zero_weight_is_zero(weight: Any) -> None:
    pools = {"blue": {"weight": 1, "backends": [{"url": "http://a:1", "weight": weight}]},
             "g": {"weight": weight, "backends": ["http://b:1"]}}  # fmt: skip
    config = parse(minimal(pools=pools))
    for value in (config.pools[1].weight, config.pools[0].backends[0].weight):
        assert value == 0 and math.copysign(1.0, value) == 1.0


def test_weight_above_a_million_names_path_and_line(tmp_path: Path) -> None:
    text = MINIMAL + "  green:\n    weight: 1e7\n    backends: [http://127.0.0.1:5002]\n"
    assert problems_of(tmp_path, text) == ["pools.green.weight (line 7): must be <= 1000000"]


def test_fractional_weights_are_numbers() -> None:
    pools = {"blue": {"weight": 0.5, "backends": [{"url": "http://a:1", "weight": 2.5}]}}
    pool = parse(minimal(pools=pools)).pools[0]
    assert (pool.weight, pool.backends[0].weight) == (0.5, 2.5)


def test_non_loopback_admin_without_token_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL + "admin:\n  listen: 0.0.0.0:9901\n"
    assert problems_of(tmp_path, text) == [
        "admin.token (line 6): required when admin.listen is not a loopback address"
    ]
    text = MINIMAL + "admin:\n  listen: 0.0.0.0:9901\n  token: ${ADMIN_TOKEN:-}\n"
    assert problems_of(tmp_path, text) == [
        "admin.token (line 8): required when admin.listen is not a loopback address"
    ]
    config = load(write(tmp_path, text), env={"ADMIN_TOKEN": "secret-of-16-chars"})
    assert config.admin == Admin(Address("0.0.0.0", 9901), "secret-of-16-chars")


@pytest.mark.parametrize("listen", ["127.0.0.1:9901", "127.9.8.7:1", "[::1]:9901", "localhost:1"])
def test_loopback_admin_needs_no_token(listen: str) -> None:
    assert parse(minimal(admin={"listen": listen})).admin.token == ""


@pytest.mark.parametrize("section", [None, {}, {"listen": None}])
def test_no_metrics_listener_unless_one_is_named(section: Any) -> None:
    data = minimal() if section is None else minimal(metrics=section)
    assert parse(data).metrics == MetricsListener(listen=None)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("0.0.0.0:9902", Address("0.0.0.0", 9902)), ("[::]:9902", Address("::", 9902))],
)
def test_metrics_listener_on_any_address_needs_no_token(listen: str, expected: Address) -> None:
    config = parse(minimal(metrics={"listen": listen}))
    assert config.metrics.listen == expected
    assert config.admin.token == ""


def test_bad_metrics_section_names_path_and_line(tmp_path: Path) -> None:
    text = MINIMAL + "metrics:\n  listen: 9902\n  scrape: true\n"
    assert problems_of(tmp_path, text) == [
        "metrics.listen (line 7): must be host:port, e.g. 0.0.0.0:8080 or [::1]:8080",
        "metrics.scrape (line 8): unknown key",
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("sticky", "cookie", "bad cookie", "must be a name of letters"),
        ("sticky", "max_age", -1, "must be >= 0"),
        ("sticky", "secret", 1234, "must be a string (quote it)"),
        ("override", "header", "X Pool", "must be a name of letters"),
        ("health_check", "path", "healthz", "must be a path starting with '/'"),
        ("health_check", "interval", 0, "must be > 0"),
        ("health_check", "healthy_threshold", 0, "must be >= 1"),
        ("health_check", "unhealthy_threshold", 1.5, "must be an integer >= 1"),
        ("timeouts", "read", "-1s", "must be > 0"),
        ("limits", "max_body", "lots", "must be a size in bytes"),
        ("limits", "max_body", -1, "must be >= 0"),
        ("limits", "max_header_count", 0, "must be >= 1"),
        ("limits", "upstream_idle_timeout", "0s", "must be > 0"),
        ("shutdown", "grace", "-2s", "must be >= 0"),
        ("admin", "token", 123, "must be a string (quote it)"),
    ],
)
def test_bad_section_values_name_their_path(
    section: str, key: str, value: Any, message: str
) -> None:
    (problem,) = parse_problems(minimal(**{section: {key: value}}))
    assert problem.path == f"{section}.{key}"
    assert message in problem.message


@pytest.mark.parametrize(
    "section", ["admin", "sticky", "override", "limits", "timeouts", "metrics"]
)
def test_sections_must_be_mappings(section: str) -> None:
    (problem,) = parse_problems(minimal(**{section: ["not", "a", "mapping"]}))
    assert (problem.path, problem.message) == (section, "must be a mapping")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "- listen\n- pools\n") == [
        "(document): must be a mapping (listen: ..., pools: ...)"
    ]


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2s", 2.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        (" 3 s ", 3.0),
        (".5s", 0.5),
        ("10", 10.0),
        ("0.5", 0.5),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse(minimal(timeouts={"read": text})).timeouts.read == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "fast", "2 minutes", "1d", "2S", "1m30s", True, False, [1], "nan", "inf",
             math.nan, math.inf],
)  # fmt: skip
def test_bad_durations(text: Any) -> None:
    (problem,) = parse_problems(minimal(timeouts={"read": text}))
    assert problem.path == "timeouts.read"
    assert "duration" in problem.message or "finite" in problem.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("timeouts.read", '"' + "1" * 400 + '"'),  # a float overflow: infinite
        ("timeouts.read", "1" * 400 + "s"),
        ("health_check.interval", "721h"),
        ("limits.keepalive_timeout", 30 * 86400 + 1),
        ("shutdown.grace", "43201m"),
        ("sticky.max_age", 30 * 86400 + 1),
        ("rollouts.hold", "1" * 400 + "ms"),
        ("rollouts.analysis.warmup", '"' + "1" * 400 + '"'),
        ("rollouts.analysis.latency_floor", "2592000.5"),
    ],
)
def test_a_duration_over_30_days_is_an_error_with_its_line(
    tmp_path: Path, path: str, value: Any
) -> None:
    *parents, key = path.split(".")
    text = MINIMAL
    for depth, name in enumerate(parents):
        text += "  " * depth + f"{name}:\n"
    text += "  " * len(parents) + f"{key}: {value}\n"
    (problem,) = problems_of(tmp_path, text)
    line = len(text.splitlines())
    assert problem == f"{path} (line {line}): must be at most 30 days (720h)"


def test_a_duration_of_30_days_is_taken() -> None:
    config = parse(minimal(timeouts={"read": "720h"}, rollouts={"hold": "720h", "max": 2592000}))
    assert config.timeouts.read == config.rollouts.hold == config.rollouts.max == 2592000


@pytest.mark.parametrize("token", ["x", "fifteen-chars-x"])  # 1 and 15 characters
def test_a_token_shorter_than_16_characters_is_an_error_with_its_line(
    tmp_path: Path, token: str
) -> None:
    text = MINIMAL + f"admin:\n  token: {token}\n"
    assert problems_of(tmp_path, text) == ["admin.token (line 7): must be at least 16 characters"]
    assert parse(minimal(admin={"token": "sixteen-chars-xy"})).admin.token == "sixteen-chars-xy"


def test_zero_duration_is_allowed_only_where_it_means_something() -> None:
    assert parse(minimal(shutdown={"accept_grace": "0s"})).shutdown.accept_grace == 0
    (problem,) = parse_problems(minimal(timeouts={"connect": 0}))
    assert problem.message == "must be > 0"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (1048576, 1048576),
        ("100", 100),
        ("100B", 100),
        ("10kB", 10_000),
        ("10MB", 10_000_000),
        ("1GB", 1_000_000_000),
        ("10M", 10_000_000),
        ("512KiB", 512 * 1024),
        ("2MiB", 2 * 1024**2),
        ("1GiB", 1024**3),
        ("1.5MB", 1_500_000),
        (None, None),
    ],
)
def test_max_body_sizes(text: Any, size: int | None) -> None:
    assert parse(minimal(limits={"max_body": text})).limits.max_body == size


def test_limits_accept_every_key() -> None:
    limits = {
        "max_body": "1MiB", "header_timeout": "5s", "body_idle_timeout": "6s",
        "keepalive_timeout": "7s", "max_request_line": 100, "max_header_bytes": 200,
        "max_header_count": 10, "upstream_idle_timeout": "2s",
    }  # fmt: skip
    assert parse(minimal(limits=limits)).limits == Limits(2**20, 5, 6, 7, 100, 200, 10, 2)


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), ("false", False)])
def test_access_log_is_a_boolean(value: Any, expected: bool) -> None:
    assert parse(minimal(access_log=value)).access_log is expected


# --- environment ------------------------------------------------------------------------


def test_env_default_applies_when_variable_is_unset_or_empty() -> None:
    data = minimal(admin={"token": "${TOKEN:-fallback-of-16-chars}"})
    assert parse(data, env={}).admin.token == "fallback-of-16-chars"
    assert parse(data, env={"TOKEN": ""}).admin.token == "fallback-of-16-chars"
    assert parse(data, env={"TOKEN": "real-token-0123456"}).admin.token == "real-token-0123456"


def test_env_variable_is_substituted_inside_a_longer_value() -> None:
    data = minimal(state_file="${DIR}/state-${NAME:-x}.json")
    assert parse(data, env={"DIR": "/var/lib"}).state_file == "/var/lib/state-x.json"


def test_unset_env_variable_without_default_is_an_error_naming_it(tmp_path: Path) -> None:
    text = MINIMAL + "sticky:\n  secret: ${COOKIE_SECRET}\n"
    assert problems_of(tmp_path, text) == [
        "sticky.secret (line 7): environment variable COOKIE_SECRET is not set"
    ]


def test_env_variable_set_to_empty_without_default_is_empty() -> None:
    assert parse(minimal(admin={"token": "${TOKEN}"}), env={"TOKEN": ""}).admin.token == ""


def test_env_values_holding_colon_and_hash_are_kept_whole(tmp_path: Path) -> None:
    text = MINIMAL + 'admin:\n  token: ${TOKEN}\nsticky:\n  secret: "${S:-a:b # not a comment}"\n'
    config = load(write(tmp_path, text), env={"TOKEN": "abc: def # ghi jkl"})
    assert config.admin.token == "abc: def # ghi jkl"
    assert config.sticky is not None and config.sticky.secret == "a:b # not a comment"


def test_unquoted_default_cut_by_a_yaml_comment_is_an_error(tmp_path: Path) -> None:
    # YAML ends the scalar at " #", leaving "${S:-a:b": reported, not used as a secret.
    text = MINIMAL + "sticky:\n  secret: ${S:-a:b # comment}\n"
    assert problems_of(tmp_path, text) == [
        "sticky.secret (line 7): unsupported ${...}: use ${VAR} or ${VAR:-default}"
    ]


def test_env_substitution_gives_numbers_where_numbers_are_expected(tmp_path: Path) -> None:
    text = MINIMAL.replace("weight: 1", 'weight: "${W:-10}"') + "timeouts:\n  read: ${READ:-5s}\n"
    config = load(write(tmp_path, text), env={"W": "2.5"})
    assert config.pools[0].weight == 2.5
    assert config.timeouts.read == 5.0


def test_env_substitution_does_not_touch_keys() -> None:
    pools = {"${POOL}": {"weight": 1, "backends": ["http://a:1"]}}
    (problem,) = parse_problems(minimal(pools=pools), env={"POOL": "blue"})
    assert problem.path == "pools.${POOL}"


def test_unsupported_env_syntax_is_an_error() -> None:
    (problem,) = parse_problems(minimal(state_file="${DIR:/tmp}/s.json"))
    assert problem.path == "state_file"
    assert "${VAR:-default}" in problem.message


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLITTER_TEST_TOKEN", "from-env-0123456789")
    config = parse(minimal(admin={"token": "${SPLITTER_TEST_TOKEN}"}))
    assert config.admin.token == "from-env-0123456789"


# --- reading the file -------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.source == path
    assert [str(p) for p in caught.value.problems] == [
        "(document): cannot read config file: No such file or directory"
    ]
    assert str(caught.value).startswith(f"{path}: (document): cannot read config file")


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(str(tmp_path))


def test_yaml_syntax_error_reports_its_line(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue:
            weight: 1
           backends: [http://127.0.0.1:5001]
        """,
    )
    assert len(problems) == 1
    assert problems[0].startswith("(document) (line 5): invalid YAML: ")


def test_unclosed_flow_list_reports_a_line(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "listen: 0.0.0.0:8080\npools: {blue: [\n")
    assert "invalid YAML" in problem and "(line " in problem


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    assert problems_of(tmp_path, text) == ["(document): empty config file"]


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"listen: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(str(path))


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL + "access_log: true\naccess_log: false\n"
    assert problems_of(tmp_path, text) == ["access_log (line 7): duplicate key"]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    config = load(
        write(
            tmp_path,
            """\
            listen: 0.0.0.0:8080
            pools:
              blue: &base
                weight: 1
                backends: [http://127.0.0.1:5001]
              green:
                <<: *base
                weight: 0
            """,
        ),
        env={},
    )
    assert config.weights() == {"blue": 1, "green": 0}


def test_several_documents_are_an_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, MINIMAL + "---\n" + MINIMAL)
    assert "invalid YAML" in problem


def test_list_items_have_their_own_lines(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        listen: 0.0.0.0:8080
        pools:
          blue:
            weight: 1
            backends:
              - http://127.0.0.1:5001

              - http://127.0.0.1:5001/
        """,
    )
    assert problems == [
        "pools.blue.backends[1] (line 8): duplicate backend (same as pools.blue.backends[0])"
    ]


def test_pool_named_none_is_reserved() -> None:
    data = {
        "listen": "127.0.0.1:8080",
        "pools": {"none": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
    }
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert [str(p) for p in info.value.problems] == [
        "pools.none: 'none' is reserved; name the pool otherwise"
    ]


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (4, 4), ("2", 2), ("auto", None)])
def test_workers(value: object, expected: int | None) -> None:
    data = {
        "listen": "127.0.0.1:8080",
        "workers": value,
        "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
    }
    config = parse(data)
    assert config.workers == (expected or os.cpu_count() or 1)


@pytest.mark.parametrize("value", [0, -1, 1.5, "many", True, 1000])
def test_bad_workers(value: object) -> None:
    data = {
        "listen": "127.0.0.1:8080",
        "workers": value,
        "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
    }
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.problems[0].path == "workers"


# --- bounded work -----------------------------------------------------------------------


def alias_bomb(levels: int, width: int = 10, used_at: str = "backends") -> str:
    """A "billion laughs": each level lists `width` aliases of the one before; the last
    is used as the pool's backends (or defined only, when `used_at` is "")."""
    lines = ["listen: 127.0.0.1:8080", 'l0: &l0 ["http://127.0.0.1:5001"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    lines += ["pools:", "  blue:", "    weight: 1"]
    lines.append(f"    backends: *l{levels}" if used_at else "    backends: [http://a:1]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [5, 9, 30])
@pytest.mark.parametrize("used_at", ["backends", ""])
def test_alias_bomb_is_refused_before_it_is_expanded(
    tmp_path: Path, levels: int, used_at: str
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels, used_at=used_at))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as caught:
            load(str(path), env={})
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (problem,) = caught.value.problems
    # the first level that alone goes over the bound, at its own line
    assert problem.path == "l5" and problem.line == 7, problem
    assert "more than 100000" in problem.message and "alias" in problem.message, problem
    assert elapsed < 2, elapsed  # generous: it takes milliseconds; the 9 levels took forever
    assert peak < 20 * 2**20, peak  # and a few MB at most (172 MB for 5 levels before)


def test_alias_bomb_nested_in_mappings_and_merge_keys_is_refused(tmp_path: Path) -> None:
    lines = ["listen: 127.0.0.1:8080", "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7}"]
    for i in range(1, 12):
        merges = ", ".join([f"*m{i - 1}"] * 4)
        lines.append(f"m{i}: &m{i} {{<<: [{merges}], x{i}: *m{i - 1}, y{i}: [*m{i - 1}]}}")
    lines += ["pools: {blue: {weight: 1, backends: [http://a:1]}}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load(str(path), env={})
    assert time.monotonic() - started < 2
    (problem,) = caught.value.problems
    assert "more than 100000" in problem.message, problem
    assert problem.path.startswith("m") and problem.line is not None, problem


def test_recursive_alias_is_an_error_with_its_line(tmp_path: Path) -> None:
    for text in ("x: &x [1, *x]\n", "x: &x {a: *x}\n", "x: &x {<<: *x}\n"):
        problems = problems_of(tmp_path, MINIMAL + text)
        assert len(problems) == 1, problems
        assert "recursive" in problems[0] and "(line 6)" in problems[0], problems


def test_config_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    padding = "# " + "x" * 1000 + "\n"
    text = MINIMAL + padding * (2**20 // len(padding) + 1)
    assert len(text.encode()) > 2**20
    (problem,) = problems_of(tmp_path, text)
    assert "larger than 1 MiB" in problem, problem
    # just under it is read
    text = MINIMAL + padding * ((2**20 - len(MINIMAL)) // len(padding))
    assert len(text.encode()) <= 2**20
    assert load(write(tmp_path, text), env={}).pools[0].name == "blue"


@pytest.mark.parametrize(
    "number",
    [
        "1" * 5000,  # more digits than Python turns into an int from text
        ":".join(["59"] * 300_000),  # a YAML 1.1 base-60 int: quadratic to build
        "0x" + "f" * 10_000,
    ],
    ids=["5000-digits", "base-60", "hex"],
)
def test_overlong_integer_is_an_error_not_a_crash(tmp_path: Path, number: str) -> None:
    text = MINIMAL.replace("weight: 1", f"weight: {number}")
    started = time.monotonic()
    problems = problems_of(tmp_path, text)
    assert time.monotonic() - started < 2
    assert len(problems) == 1, problems
    assert problems[0].startswith("pools.blue.weight (line 4): "), problems


def test_aliases_and_merge_keys_still_work_with_their_lines(tmp_path: Path) -> None:
    text = """\
        listen: 127.0.0.1:8080
        pools:
          blue: &pool
            weight: 90
            backends: &two
              - http://127.0.0.1:5001
              - {url: http://127.0.0.1:5002, weight: 2}
          green:
            <<: *pool
            weight: 0
          canary:
            <<: *pool
            backends: *two
            weight: 10
        """
    config = load(write(tmp_path, text), env={})
    assert config.weights() == {"blue": 90, "green": 0, "canary": 10}
    assert [len(p.backends) for p in config.pools] == [2, 2, 2]
    assert config.pools[2].backends[1].weight == 2

    bad = text.replace("weight: 10", "weight: 1e7").replace("weight: 0", "wieght: 0")
    assert problems_of(tmp_path, bad) == [
        "pools.green.wieght (line 10): unknown key (did you mean 'weight'?)",
        "pools.canary.weight (line 14): must be <= 1000000",
    ]


# --- store (docs/configuration.md#the-config-file and docs/operations.md#several-replicas)

STORE_BASE = {
    "listen": "127.0.0.1:8080",
    "pools": {"blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]}},
}


@pytest.mark.parametrize(
    ("url", "tls", "host", "port", "db", "username", "password"),
    [
        ("redis://127.0.0.1:6379/0", False, "127.0.0.1", 6379, 0, None, None),
        ("redis://redis", False, "redis", 6379, 0, None, None),
        ("rediss://:s3cret@redis.example:6380/2", True, "redis.example", 6380, 2, None, "s3cret"),
        ("redis://app:p@ss/w:rd@[::1]:7000/3", False, "::1", 7000, 3, "app", "p@ss/w:rd"),
        ("redis://onlypassword@localhost", False, "localhost", 6379, 0, None, "onlypassword"),
    ],
)
def test_store_url_is_split_and_the_password_never_shown(
    url: str, tls: bool, host: str, port: int, db: int, username: str | None, password: str | None
) -> None:
    store = parse({**STORE_BASE, "store": {"url": url, "prefix": "edge-1"}}, env={}).store
    assert store is not None
    assert (store.tls, store.host, store.port, store.db) == (tls, host, port, db)
    assert (store.username, store.password, store.prefix) == (username, password, "edge-1")
    if password:
        assert password not in repr(store) and password not in store.redacted
        assert "***@" in store.redacted


def test_store_password_comes_from_the_environment() -> None:
    data = {**STORE_BASE, "store": {"url": "redis://:${REDIS_PASSWORD}@redis:6379/0"}}
    store = parse(data, env={"REDIS_PASSWORD": "x#y:z@w"}).store
    assert store is not None and store.password == "x#y:z@w" and store.host == "redis"
    assert store.prefix == "splitter"
    [problem] = parse_problems(data, env={})
    assert problem.path == "store.url" and "REDIS_PASSWORD" in problem.message


@pytest.mark.parametrize(
    ("store", "path", "fragment"),
    [
        ({"url": "http://redis:6379"}, "store.url", "redis://"),
        ({"url": "redis://:hunter2@"}, "store.url", "host is missing"),
        ({"url": "redis://:hunter2@redis:70000"}, "store.url", "port"),
        ({"url": "redis://:hunter2@redis/zero"}, "store.url", "db is a number"),
        ({"url": "redis://:hunter2@redis/0?ssl=1"}, "store.url", "no query"),
        ({"url": 6379}, "store.url", "redis://"),
        ({}, "store.url", "is required"),
        ({"url": "redis://redis", "prefix": "a b"}, "store.prefix", "short name"),
        ({"url": "redis://redis", "prefix": "x" * 65}, "store.prefix", "short name"),
        ({"url": "redis://redis", "prefx": "a"}, "store.prefx", "unknown key"),
        ("redis://redis", "store", "mapping"),
    ],
)
def test_bad_store_settings_are_errors_with_their_path(
    store: Any, path: str, fragment: str
) -> None:
    problems = parse_problems({**STORE_BASE, "store": store})
    assert [p.path for p in problems] == [path], problems
    assert fragment in problems[0].message
    assert "hunter2" not in problems[0].message  # the URL is never echoed


def test_store_errors_have_their_line(tmp_path: Path) -> None:
    text = MINIMAL + "store:\n  url: redis://:hunter2@redis:0/0\n"
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env={})
    [problem] = caught.value.problems
    assert problem.path == "store.url" and problem.line == text.count("\n") - 0
    assert "hunter2" not in str(caught.value)


# --- the client's address (docs/rollouts.md: trusted_proxies, proxy_protocol) -------------------


def test_client_address_keys_default_to_the_peer_alone(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL), env={})
    assert config.trusted_proxies == ()
    assert config.proxy_protocol is False


def test_trusted_proxies_are_normalised_cidrs_of_both_families() -> None:
    config = parse(
        minimal(
            trusted_proxies=[
                "10.0.0.0/8", " 192.0.2.1 ", "2001:DB8::/32", "::1", "::ffff:172.16.0.0/108",
                "10.0.0.0/8",
            ],
            proxy_protocol="${PP:-true}",
        ),
        env={},
    )  # fmt: skip
    # a bare address is one host; an IPv4-mapped network is its IPv4 network; no duplicates
    assert config.trusted_proxies == (
        "10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "::1/128", "172.16.0.0/12",
    )  # fmt: skip
    assert config.proxy_protocol is True


def test_bad_trusted_proxies_are_named_by_path_and_line(tmp_path: Path) -> None:
    text = """\
    listen: 127.0.0.1:8080
    trusted_proxies:
      - 10.0.0.0/8
      - not-a-cidr
      - 10.0.0.1/8
      - 2001:db8::/129
      - 12
    proxy_protocol: maybe
    pools:
      blue: {weight: 1, backends: [http://127.0.0.1:5001]}
    """
    assert problems_of(tmp_path, text) == [
        "trusted_proxies[1] (line 4): not a CIDR: must be a CIDR such as 10.0.0.0/8 or "
        "2001:db8::/32, or one address",
        "trusted_proxies[2] (line 5): not a CIDR: 10.0.0.1/8 has host bits set "
        "(did you mean 10.0.0.0/8?)",
        "trusted_proxies[3] (line 6): not a CIDR: must be a CIDR such as 10.0.0.0/8 or "
        "2001:db8::/32, or one address",
        "trusted_proxies[4] (line 7): not a CIDR: must be a CIDR such as 10.0.0.0/8 or "
        "2001:db8::/32, or one address",
        "proxy_protocol (line 8): must be true or false",
    ]


def test_trusted_proxies_must_be_a_list() -> None:
    [problem] = parse_problems(minimal(trusted_proxies="10.0.0.0/8"))
    assert problem.path == "trusted_proxies"
    assert problem.message.startswith("must be a list of CIDRs")

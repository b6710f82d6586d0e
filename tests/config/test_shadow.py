"""The `shadow` section (config.shadow): what a valid section becomes, and every problem
named by its path and line; most tests parse the section with `shadow_section` directly,
the last ones through `parse`, at the top level and in a route."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from splitter.config import SHADOW_IGNORE_HEADERS, Shadow, parse
from splitter.config.convert import Checker, Invalid
from splitter.config.load import _index_lines
from splitter.config.shadow import (
    FRAMING_HEADERS,
    MAX_POINTERS,
    pointer_tokens,
    shadow_section,
    to_json_pointer,
)
from splitter.errors import ConfigError
from splitter.http1.request import HOP_BY_HOP

CONTRACT_SHADOW = """\
routes:
  - name: shop
    pools:
      blue: {weight: 100, backends: [http://10.0.0.1:8000]}
      green: {weight: 0, backends: [http://10.0.0.3:8000]}
      canary: {weight: 0, backends: [http://10.0.0.2:8000]}
    shadow:                           # top level, or in a route
      pool: canary                    # gets the copies
      share: 0.05                     # of the requests that the route's weighted choice sends elsewhere
      reference: green                # optional: a second copy of the primary's version
      methods: [GET, HEAD]            # default; others only when listed
      max_body: 64KiB                 # a request or response body above it is counted, not compared
      max_in_flight: 64               # copies at once; beyond, a copy is skipped and counted
      ignore_headers: [date, x-request-id, set-cookie, server, etag, last-modified]
      ignore_json: ["/generated_at", "/items/*/updated_at"]   # JSON pointers, * for any key/index
"""  # noqa: E501

WEIGHTS: dict[str, float | None] = {"blue": 100.0, "green": 0.0, "canary": 0.0}


def from_yaml(text: str) -> tuple[Shadow | None, list[str]]:
    """The route's shadow section of a YAML file (routes[0].shadow), as `load` would read
    it (with lines), and its problems as `splitter check` prints them."""
    text = textwrap.dedent(text)
    lines: dict[str, int] = {}
    _index_lines(yaml.compose(text), "", lines, [], set())
    route = yaml.safe_load(text)["routes"][0]
    weights = {name: float(pool["weight"]) for name, pool in route["pools"].items()}
    ck = Checker(lines)
    shadow = shadow_section(
        ck, route.get("shadow"), "routes[0].shadow", weights, "the pools of route 'shop'"
    )
    return shadow, [str(p) for p in ck.problems]


def section(
    value: Any, weights: Mapping[str, float | None] | None = WEIGHTS
) -> tuple[Shadow | None, list[tuple[str, str]]]:
    ck = Checker(None)
    shadow = shadow_section(ck, value, "shadow", weights, "the pools")
    return shadow, [(p.path, p.message) for p in ck.problems]


def valid(value: Any, weights: Mapping[str, float | None] | None = WEIGHTS) -> Shadow:
    shadow, problems = section(value, weights)
    assert problems == []
    assert shadow is not None
    return shadow


def one_problem(
    value: Any, weights: Mapping[str, float | None] | None = WEIGHTS
) -> tuple[str, str]:
    _, problems = section(value, weights)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid sections ---------------------------------------------------------------------


def test_the_contract_example_becomes_a_shadow() -> None:
    shadow, problems = from_yaml(CONTRACT_SHADOW)
    assert problems == []
    assert shadow == Shadow(
        pool="canary",
        share=0.05,
        reference="green",
        methods=("GET", "HEAD"),
        max_body=65536,
        max_in_flight=64,
        ignore_headers=("date", "x-request-id", "set-cookie", "server", "etag", "last-modified"),
        ignore_json=("/generated_at", "/items/*/updated_at"),
    )


def test_pool_and_share_alone_take_the_defaults() -> None:
    assert valid({"pool": "canary", "share": 0.1}) == Shadow(
        pool="canary",
        share=0.1,
        reference=None,
        methods=("GET", "HEAD"),
        max_body=64 * 1024,
        max_in_flight=64,
        ignore_headers=SHADOW_IGNORE_HEADERS,
        ignore_json=(),
    )


def test_no_section_is_no_shadow() -> None:
    assert section(None) == (None, [])


@pytest.mark.parametrize("share", [0, 0.0, 1, "0.25", "1"])
def test_a_share_from_0_to_1(share: Any) -> None:
    assert valid({"pool": "canary", "share": share}).share == float(share)


def test_methods_are_upper_case_and_headers_lower_case() -> None:
    shadow = valid(
        {
            "pool": "canary",
            "share": 1,
            "methods": ["get", "Post", "PROPFIND"],
            "ignore_headers": ["X-Request-Id", "Date"],
        }
    )
    assert shadow.methods == ("GET", "POST", "PROPFIND")
    assert shadow.ignore_headers == ("x-request-id", "date")


def test_ignore_headers_replaces_the_default_and_may_be_empty() -> None:
    assert valid({"pool": "canary", "share": 1, "ignore_headers": []}).ignore_headers == ()
    assert valid({"pool": "canary", "share": 1, "ignore_headers": ["age"]}).ignore_headers == (
        "age",
    )


def test_sizes_and_counts() -> None:
    shadow = valid({"pool": "canary", "share": 1, "max_body": "1MiB", "max_in_flight": 500})
    assert (shadow.max_body, shadow.max_in_flight) == (1 << 20, 500)
    assert valid({"pool": "canary", "share": 1, "max_body": "16MiB"}).max_body == 16 << 20


def test_the_shadow_pool_may_have_a_weight_beside_another() -> None:
    weights = {"blue": 90.0, "canary": 10.0}
    assert valid({"pool": "canary", "share": 0.5}, weights).pool == "canary"


def test_the_reference_may_be_a_pool_with_a_weight() -> None:
    # the reference is a second copy of the primary's version: the primary's pool will do
    assert valid({"pool": "canary", "share": 1, "reference": "blue"}).reference == "blue"


def test_pools_that_cannot_be_read_are_not_judged() -> None:
    # the route's pools were not a mapping: no pool name can be judged
    shadow = valid({"pool": "anything", "share": 1, "reference": "else"}, None)
    assert (shadow.pool, shadow.reference) == ("anything", "else")
    # a weight that could not be read: "the only pool with a weight" is not judged
    assert valid({"pool": "canary", "share": 1}, {"blue": None, "canary": 5.0}).pool == "canary"


# --- problems ---------------------------------------------------------------------------


def test_problems_have_their_paths_and_lines() -> None:
    shadow, problems = from_yaml(
        """\
        routes:
          - name: shop
            pools:
              blue: {weight: 100, backends: [http://10.0.0.1:8000]}
              canary: {weight: 0, backends: [http://10.0.0.2:8000]}
            shadow:
              pool: canry
              share: 5%
              reference: canary
              methods: [GET, CONNECT, get]
              max_body: 1GiB
              max_in_flight: 0
              ignore_headers: [Content-Type, date, "x y"]
              ignore_json:
                - /generated_at
                - generated_at
                - "/a~2b"
              compare: all
        """
    )
    assert shadow is None
    assert problems == [
        "routes[0].shadow.compare (line 18): unknown key",
        "routes[0].shadow.pool (line 7): unknown pool 'canry' (the pools of route 'shop' are "
        "blue, canary)",
        "routes[0].shadow.share (line 8): must be a number from 0 to 1",
        "routes[0].shadow.methods[1] (line 10): CONNECT opens a tunnel: there is no answer to "
        "compare",
        "routes[0].shadow.methods[2] (line 10): duplicate: GET (same as "
        "routes[0].shadow.methods[0])",
        "routes[0].shadow.ignore_headers[0] (line 13): content-type is always compared: it says "
        "how the body is compared",
        "routes[0].shadow.ignore_headers[2] (line 13): must be a header name of letters, digits "
        "and !#$%&'*+-.^_`|~",
        "routes[0].shadow.ignore_json[1] (line 16): must be a JSON pointer such as /generated_at "
        "or /items/*/updated_at: a JSON pointer starts with '/'",
        "routes[0].shadow.ignore_json[2] (line 17): must be a JSON pointer such as /generated_at "
        "or /items/*/updated_at: '~' must be followed by 0 (for ~) or 1 (for /)",
        "routes[0].shadow.max_body (line 11): must be at most 16MiB: each body compared is held "
        "in memory, max_in_flight at once",
        "routes[0].shadow.max_in_flight (line 12): must be >= 1",
    ]


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ("canary", "shadow", "must be a mapping"),
        ({"share": 1}, "shadow.pool", "is required: the pool that gets the copies"),
        ({"pool": 3, "share": 1}, "shadow.pool", "must be a pool name"),
        ({"pool": "canary"}, "shadow.share", "is required: the share of requests copied, 0 to 1"),
        ({"pool": "canary", "share": 1.5}, "shadow.share", "must be from 0 to 1"),
        ({"pool": "canary", "share": -0.1}, "shadow.share", "must be from 0 to 1"),
        ({"pool": "canary", "share": True}, "shadow.share", "must be a number from 0 to 1"),
        ({"pool": "canary", "share": "nan"}, "shadow.share", "must be a finite number"),
        ({"pool": "canary", "share": 1, "reference": "canary"}, "shadow.reference",
         "must be another pool than pool: the reference is a second copy of the primary's "
         "version"),
        ({"pool": "canary", "share": 1, "reference": "gren"}, "shadow.reference",
         "unknown pool 'gren' (the pools are blue, green, canary)"),
        ({"pool": "canary", "share": 1, "reference": ["green"]}, "shadow.reference",
         "must be a pool name"),
        ({"pool": "canary", "share": 1, "methods": []}, "shadow.methods",
         "must be a non-empty list of methods such as GET"),
        ({"pool": "canary", "share": 1, "methods": "GET"}, "shadow.methods",
         "must be a non-empty list of methods such as GET"),
        ({"pool": "canary", "share": 1, "methods": ["G T"]}, "shadow.methods[0]",
         "must be a method name of letters, digits and !#$%&'*+-.^_`|~, such as GET"),
        ({"pool": "canary", "share": 1, "methods": ["connect"]}, "shadow.methods[0]",
         "CONNECT opens a tunnel: there is no answer to compare"),
        ({"pool": "canary", "share": 1, "max_body": "lots"}, "shadow.max_body",
         "must be a size in bytes such as 1048576, 512KiB or 10MB"),
        ({"pool": "canary", "share": 1, "max_body": (16 << 20) + 1}, "shadow.max_body",
         "must be at most 16MiB"),
        ({"pool": "canary", "share": 1, "max_in_flight": 10_001}, "shadow.max_in_flight",
         "must be at most 10000"),
        ({"pool": "canary", "share": 1, "max_in_flight": 1.5}, "shadow.max_in_flight",
         "must be an integer >= 1"),
        ({"pool": "canary", "share": 1, "ignore_headers": "date"}, "shadow.ignore_headers",
         "must be a list of header names"),
        ({"pool": "canary", "share": 1, "ignore_headers": ["Transfer-Encoding"]},
         "shadow.ignore_headers[0]",
         "transfer-encoding is never compared (it says how an answer was sent): leave it out"),
        ({"pool": "canary", "share": 1, "ignore_headers": ["Date", "date"]},
         "shadow.ignore_headers[1]", "duplicate: date (same as shadow.ignore_headers[0])"),
        ({"pool": "canary", "share": 1, "ignore_json": "/a"}, "shadow.ignore_json",
         "must be a list of JSON pointers such as /generated_at"),
        ({"pool": "canary", "share": 1, "ignore_json": [""]}, "shadow.ignore_json[0]",
         "must be a JSON pointer such as /generated_at or /items/*/updated_at: the empty "
         "pointer would ignore the whole body"),
        ({"pool": "canary", "share": 1, "ignore_json": [7]}, "shadow.ignore_json[0]",
         "must be a JSON pointer such as /generated_at or /items/*/updated_at (a string)"),
        ({"pool": "canary", "share": 1, "ignore_json": ["/a" * 65]}, "shadow.ignore_json[0]",
         "has 65 tokens: JSON is compared 64 levels deep, no deeper, so it could never match"),
        ({"pool": "canary", "share": 1, "ignore_json": ["/a", "/a"]}, "shadow.ignore_json[1]",
         "duplicate: /a (same as shadow.ignore_json[0])"),
        ({"pool": "canary", "share": 1, "ignore_json": [f"/{i}" for i in range(MAX_POINTERS + 1)]},
         "shadow.ignore_json", "must list at most 100 JSON pointers"),
        ({"pool": "canary", "share": 1, "mirror": True}, "shadow.mirror", "unknown key"),
        ({"pool": "canary", "share": 1, "max_inflight": 3}, "shadow.max_inflight",
         "unknown key (did you mean 'max_in_flight'?)"),
    ],
)  # fmt: skip
def test_bad_sections(value: Any, path: str, message: str) -> None:
    said_path, said = one_problem(value)
    assert said_path == path
    assert said.startswith(message)


def test_the_only_pool_with_a_weight_cannot_be_shadowed() -> None:
    assert one_problem({"pool": "blue", "share": 1}) == (
        "shadow.pool",
        "blue is the only pool with a weight above 0: every request goes to it, so none would "
        "be copied (shadow a pool at weight 0)",
    )
    # the same pool, once another has a weight too, is fine
    assert valid({"pool": "blue", "share": 1}, {"blue": 1.0, "canary": 1.0}).pool == "blue"


def test_a_section_with_a_problem_in_pool_or_share_is_no_shadow() -> None:
    assert section({"pool": "nope", "share": 1})[0] is None
    assert section({"pool": "canary"})[0] is None
    # a problem elsewhere leaves a shadow with the default there (parse raises anyway)
    shadow, problems = section({"pool": "canary", "share": 1, "max_in_flight": 0})
    assert shadow is not None and shadow.max_in_flight == 64 and len(problems) == 1


# --- JSON pointers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "tokens"),
    [
        ("/a", ("a",)),
        ("/items/*/updated_at", ("items", "*", "updated_at")),
        ("/a~1b/c~0d", ("a/b", "c~d")),
        ("/~01", ("~1",)),  # ~0 then 1: "~1" unescaped once, not "/"
        ("/", ("",)),  # the key "" of the root object
        ("/a//b", ("a", "", "b")),
        ("/0", ("0",)),
    ],
)
def test_pointer_tokens(pointer: str, tokens: tuple[str, ...]) -> None:
    assert pointer_tokens(pointer) == tokens
    assert to_json_pointer(pointer) == pointer


@given(st.lists(st.text(max_size=8), min_size=1, max_size=10))
def test_every_key_path_can_be_written_as_a_pointer(tokens: list[str]) -> None:
    pointer = "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)
    assert pointer_tokens(pointer) == tuple(tokens)
    assert to_json_pointer(pointer) == pointer


@given(st.text(max_size=20))
def test_any_text_is_a_pointer_or_invalid(text: str) -> None:
    try:
        to_json_pointer(text)
    except Invalid:
        return
    assert text.startswith("/")


def test_framing_headers_are_the_proxys_hop_by_hop_headers_and_content_length() -> None:
    assert FRAMING_HEADERS == {h.decode() for h in HOP_BY_HOP} | {"content-length"}


# --- in the whole config -------------------------------------------------------------------

POOLS = {
    "blue": {"weight": 1, "backends": ["http://127.0.0.1:5001"]},
    "canary": {"weight": 0, "backends": ["http://127.0.0.1:5002"]},
}


def test_the_top_level_shadow_is_the_default_routes() -> None:
    config = parse(
        {"listen": "127.0.0.1:8080", "pools": POOLS, "shadow": {"pool": "canary", "share": 0.1}},
        env={},
    )
    assert config.routes[0].shadow == Shadow(pool="canary", share=0.1)


def test_each_route_has_its_own_shadow() -> None:
    config = parse(
        {
            "listen": "127.0.0.1:8080",
            "routes": [
                {"name": "a", "path_prefix": "/a", "pools": POOLS,
                 "shadow": {"pool": "canary", "share": 0.5}},
                {"name": "b", "pools": POOLS},
            ],
        },
        env={},
    )  # fmt: skip
    assert config.routes[0].shadow == Shadow(pool="canary", share=0.5)
    assert config.routes[1].shadow is None


def test_a_top_level_shadow_with_routes_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(
            {"listen": "127.0.0.1:8080", "routes": [{"name": "r", "pools": POOLS}],
             "shadow": {"pool": "canary", "share": 0.1}},
            env={},
        )  # fmt: skip
    (problem,) = caught.value.problems
    assert problem.path == "shadow"
    assert "each route has its own shadow" in problem.message


def test_a_routes_shadow_problem_is_named_by_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(
            {"listen": "127.0.0.1:8080",
             "routes": [{"name": "r", "pools": POOLS, "shadow": {"pool": "blue", "share": 0.1}}]},
            env={},
        )  # fmt: skip
    (problem,) = caught.value.problems
    assert problem.path == "routes[0].shadow.pool"
    assert "only pool with a weight above 0" in problem.message


def test_a_segment_cannot_read_the_shadow_mark() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(
            {"listen": "127.0.0.1:8080", "pools": POOLS,
             "segments": [{"pool": "canary", "header": {"name": "X-Splitter-Shadow"}}]},
            env={},
        )  # fmt: skip
    (problem,) = caught.value.problems
    assert problem.path == "segments[0].header.name"
    assert "shadow copies" in problem.message

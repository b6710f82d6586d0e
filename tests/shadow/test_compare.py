"""One request's answers compared (shadow.compare): the rules of the module's docstring,
as examples and as properties over generated answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import Shadow
from splitter.shadow.compare import (
    ABSENT,
    DIFFER,
    HIDDEN,
    MAX_DEPTH,
    MAX_DIFFERENCES,
    MAX_SHOWN,
    MAX_VALUES,
    NOISE,
    SAME,
    SKIP_MAX_BODY,
    SKIP_UPGRADE,
    SKIPPED,
    Comparison,
    Difference,
    Header,
    Response,
    Rules,
    _step,
    compare,
    cut,
)

JSON_TYPE: list[Header] = [(b"Content-Type", b"application/json")]
RULES = Rules()


def answer(body: Any, *headers: Header, status: int = 200) -> Response:
    """A JSON answer of `body` (bytes as they are), with its content-type first."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, [*JSON_TYPE, *headers], raw)


def fields(c: Comparison) -> list[str]:
    return [d.field for d in c.differences]


def diff(
    primary: Response, shadow: Response, rules: Rules = RULES, reference: Response | None = None
) -> list[Difference]:
    c = compare(primary, shadow, rules, reference)
    assert c.result == DIFFER, c
    return list(c.differences)


# --- JSON bodies ------------------------------------------------------------------------


def test_key_order_does_not_matter_and_numbers_are_json_values() -> None:
    a = answer(b'{"price": 1, "items": [{"n": 2.50, "ok": true}], "x": null}')
    b = answer(b'{"x": null, "items": [{"ok": true, "n": 2.5}], "price": 1.0}')
    assert compare(a, b, RULES) == Comparison(SAME, 200, 200)


def test_true_is_not_1_and_null_is_not_absent() -> None:
    assert diff(answer({"a": 1, "b": None}), answer({"a": True})) == [
        Difference("/a", "/a", "1", "true"),
        Difference("/b", "/b", "null", ABSENT),
    ]


def test_a_difference_is_named_at_the_highest_place_it_is() -> None:
    primary = answer({"items": [{"name": "a", "tags": ["x"]}, {"name": "b"}], "n": 1})
    shadow = answer({"items": [{"name": "a", "tags": "x"}, {"name": "c"}, {"name": "d"}], "n": 1})
    assert diff(primary, shadow) == [
        Difference("/items/0/tags", "/items/*/tags", '["x"]', '"x"'),
        Difference("/items/1/name", "/items/*/name", '"b"', '"c"'),
        Difference("/items/2", "/items/*", ABSENT, '{"name":"d"}'),
    ]


def test_a_difference_at_the_root_is_the_body() -> None:
    assert diff(answer([1]), answer({"a": 1})) == [Difference("body", "body", "[1]", '{"a":1}')]


def test_pointers_escape_slash_and_tilde_and_a_numeric_key_is_no_index() -> None:
    (d,) = diff(answer({"a/b": {"~": {"3": 1}}}), answer({"a/b": {"~": {"3": 2}}}))
    assert (d.field, d.group) == ("/a~1b/~0/3", "/a~1b/~0/3")


def test_ignore_json_with_a_wildcard_for_any_key_or_index() -> None:
    rules = Rules(ignore_json=("/generated_at", "/items/*/updated_at", "/by_id/*/seen"))
    primary = answer(
        {"generated_at": 1, "items": [{"updated_at": 1, "n": 1}], "by_id": {"k1": {"seen": 1}}}
    )
    shadow = answer(
        {"generated_at": 2, "items": [{"updated_at": 2, "n": 1}], "by_id": {"k1": {"seen": 2}}}
    )
    assert compare(primary, shadow, rules).result == SAME
    # an ignored key that only one side has is ignored too; its neighbours are not
    shadow = answer({"items": [{"n": 2}], "by_id": {"k1": {}}})
    assert [d.field for d in diff(primary, shadow, rules)] == ["/items/0/n"]


def test_an_ignored_index_is_ignored_even_past_the_other_sides_end() -> None:
    rules = Rules(ignore_json=("/log/*",))
    assert compare(answer({"log": [1]}), answer({"log": [1, 2, 3]}), rules).result == SAME


@pytest.mark.parametrize(
    "content_type",
    [b"application/json", b"application/problem+json", b"Application/JSON; charset=UTF-8"],
)
def test_json_by_content_type(content_type: bytes) -> None:
    headers: list[Header] = [(b"content-type", content_type)]
    a = Response(200, headers, b'{"a": 1, "b": 2}')
    b = Response(200, headers, b'{"b": 2, "a": 1}')
    assert compare(a, b, RULES).result == SAME


@pytest.mark.parametrize(
    ("headers", "body_a", "body_b"),
    [
        # not JSON by its content-type
        ([(b"content-type", b"text/plain")], b'{"a":1,"b":2}', b'{"b":2,"a":1}'),
        ([], b'{"a":1,"b":2}', b'{"b":2,"a":1}'),
        # compressed: the comparison never decompresses
        ([*JSON_TYPE, (b"content-encoding", b"gzip")], b'{"a":1,"b":2}', b'{"b":2,"a":1}'),
        # ambiguous: a duplicate key
        (JSON_TYPE, b'{"a":1,"a":2}', b'{"a":2}'),
        # not JSON: NaN, Infinity
        (JSON_TYPE, b'{"a":NaN}', b'{"a": NaN}'),
        (JSON_TYPE, b'{"a":Infinity}', b'{"a": Infinity}'),
        # an integer of more than 100 digits
        (JSON_TYPE, b'{"a":' + b"1" * 101 + b"}", b'{"a": ' + b"1" * 101 + b"}"),
        # not UTF-8
        (JSON_TYPE, b'{"a":"\xff"}', b'{"a": "\xff"}'),
    ],
)
def test_other_bodies_are_compared_byte_for_byte(
    headers: list[Header], body_a: bytes, body_b: bytes
) -> None:
    a, b = Response(200, headers, body_a), Response(200, headers, body_b)
    assert fields(compare(a, b, RULES)) == ["body"]
    assert compare(a, Response(200, headers, body_a), RULES).result == SAME


def test_a_100_digit_integer_is_still_json() -> None:
    number = b"1" * 100
    c = compare(answer(b'{"a":' + number + b"}"), answer(b'{"a": ' + number + b"}"), RULES)
    assert c.result == SAME


def test_one_side_json_the_other_not_is_a_body_and_content_type_difference() -> None:
    a = answer({"a": 1})
    b = Response(200, [(b"content-type", b"text/html")], b"<p>oops</p>")
    assert fields(compare(a, b, RULES)) == ["header:content-type", "body"]


def nested(depth: int, leaf: Any) -> Any:
    """`leaf` inside `depth` lists: its pointer has `depth` tokens."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def test_json_is_compared_64_levels_deep_and_deeper_bodies_byte_for_byte() -> None:
    (d,) = diff(answer(nested(MAX_DEPTH, 1)), answer(nested(MAX_DEPTH, 2)))
    assert d.field == "/0" * MAX_DEPTH
    # an empty list at the deepest level is still within
    deepest_empty = answer(nested(MAX_DEPTH, []))
    assert compare(deepest_empty, answer(nested(MAX_DEPTH, [])), RULES).result == SAME
    (d,) = diff(answer(nested(MAX_DEPTH + 1, 1)), answer(nested(MAX_DEPTH + 1, 2)))
    assert d.field == "body"
    # key order no longer ignored: the bytes differ
    deep_a = json.dumps(nested(MAX_DEPTH, {"a": 1, "b": 2})).encode()
    deep_b = json.dumps(nested(MAX_DEPTH, {"b": 2, "a": 1})).encode()
    assert fields(compare(answer(deep_a), answer(deep_b), RULES)) == ["body"]
    # far deeper than Python's recursion limit: refused without recursing
    very_deep = b"[" * 100_000 + b"]" * 100_000
    assert fields(compare(answer(very_deep), answer(very_deep + b" "), RULES)) == ["body"]


def test_at_most_10000_values_are_compared_structurally() -> None:
    # a list of n numbers has n values, n - 1 commas and one bracket
    within = list(range(MAX_VALUES - 2))
    (d,) = diff(answer({"a": within}), answer({"a": [*within[:-1], -1]}))
    assert d.field == f"/a/{MAX_VALUES - 3}"
    over = list(range(MAX_VALUES))
    (d,) = diff(answer({"a": over}), answer({"a": [*over[:-1], -1]}))
    assert d.field == "body"


def test_a_hostile_body_is_compared_byte_for_byte() -> None:
    """16 MiB (the largest max_body) of the worst shapes: too many values for structure
    (judged from a count of ',', '[' and '{', before anything is parsed), or one long
    string (one value, parsed in C)."""
    size = 16 << 20
    hostile = [
        b"[" + b"0," * (size // 2 - 1) + b"0]",
        b"[" * (size // 2) + b"]" * (size // 2),
        b"[" + b",".join([b"9" * 100] * (size // 101 - 1)) + b"]",
    ]
    for body in hostile:
        other = body.replace(b"0", b"1", 1).replace(b"9", b"8", 1).replace(b"]", b" ]", 1)
        assert fields(compare(answer(body), answer(other), RULES)) == ["body"]
    one_string = b'{"a":"' + b"x" * size + b'"}'
    (d,) = diff(answer(one_string), answer(one_string.replace(b"x", b"y", 1)))
    assert d.field == "/a"


# --- status and headers -----------------------------------------------------------------


def test_status_content_type_headers_then_body_in_that_order() -> None:
    primary = Response(
        200, [(b"Content-Type", b"text/plain"), (b"X-B", b"1"), (b"X-A", b"1")], b"one"
    )
    shadow = Response(500, [(b"content-type", b"text/html"), (b"x-a", b"2")], b"two")
    assert diff(primary, shadow) == [
        Difference("status", "status", "200", "500"),
        Difference("header:content-type", "header:content-type", "text/plain", "text/html"),
        Difference("header:x-a", "header:x-a", "1", "2"),
        Difference("header:x-b", "header:x-b", "1", ABSENT),
        Difference("body", "body", "one", "two"),
    ]


def test_content_type_is_compared_normalised() -> None:
    a = Response(200, [(b"content-type", b'Text/HTML; Charset="UTF-8"')], b"")
    b = Response(200, [(b"content-type", b"text/html;charset=utf-8")], b"")
    assert compare(a, b, RULES).result == SAME
    c = Response(200, [(b"content-type", b"text/html; charset=latin-1")], b"")
    assert fields(compare(a, c, RULES)) == ["header:content-type"]


def test_content_type_is_compared_even_when_told_to_ignore_it() -> None:
    rules = Rules(ignore_headers=frozenset({"Content-Type"}))
    a = Response(200, [(b"content-type", b"text/plain")], b"")
    b = Response(200, [(b"content-type", b"text/csv")], b"")
    assert fields(compare(a, b, rules)) == ["header:content-type"]


def test_header_names_are_case_insensitive_and_values_trimmed() -> None:
    a = Response(200, [(b"X-Version", b" 1 "), ("Vary", "accept")], b"")
    b = Response(200, [("x-version", "1"), (b"VARY", b"accept")], b"")
    assert compare(a, b, RULES).result == SAME


def test_a_multi_valued_header_is_an_ordered_list() -> None:
    a = Response(200, [(b"link", b"<a>"), (b"link", b"<b>")], b"")
    b = Response(200, [(b"link", b"<b>"), (b"link", b"<a>")], b"")
    assert diff(a, b) == [
        Difference("header:link", "header:link", '["<a>", "<b>"]', '["<b>", "<a>"]')
    ]
    assert compare(a, a, RULES).result == SAME


def test_the_default_ignored_headers_and_an_empty_list() -> None:
    a = Response(200, [(b"date", b"Mon"), (b"etag", b'"1"'), (b"server", b"a")], b"")
    b = Response(200, [(b"date", b"Tue"), (b"etag", b'"2"')], b"")
    assert compare(a, b, RULES).result == SAME
    everything = Rules(ignore_headers=frozenset())
    assert fields(compare(a, b, everything)) == ["header:date", "header:etag", "header:server"]


def test_framing_headers_are_never_compared() -> None:
    a = Response(200, [(b"content-length", b"3"), (b"connection", b"close")], b"abc")
    b = Response(200, [(b"transfer-encoding", b"chunked"), (b"keep-alive", b"timeout=5")], b"abc")
    assert compare(a, b, Rules(ignore_headers=frozenset())).result == SAME


def test_secret_headers_are_compared_but_never_shown() -> None:
    rules = Rules(ignore_headers=frozenset())
    a = Response(200, [(b"Set-Cookie", b"session=s3cret"), (b"Authorization", b"Bearer t0ken")])
    b = Response(200, [(b"set-cookie", b"session=other"), (b"cookie", b"c00kie")])
    assert diff(a, b, rules) == [
        Difference("header:authorization", "header:authorization", HIDDEN, ABSENT),
        Difference("header:cookie", "header:cookie", ABSENT, HIDDEN),
        Difference("header:set-cookie", "header:set-cookie", HIDDEN, HIDDEN),
    ]


# --- what is shown ----------------------------------------------------------------------


def test_a_byte_body_is_shown_from_just_before_its_first_difference() -> None:
    a = Response(200, [], b"x" * 1000 + b"A" + b"y" * 1000)
    b = Response(200, [], b"x" * 1000 + b"B" + b"y" * 1000)
    (d,) = diff(a, b)
    assert d.primary.startswith("…" + "x" * 20 + "A")
    assert d.shadow.startswith("…" + "x" * 20 + "B")
    assert len(d.primary) == len(d.shadow) == MAX_SHOWN
    assert d.primary.endswith("…")
    # a short body in full; binary bytes escaped; a body that is a prefix of the other
    (d,) = diff(Response(200, [], b"\xffab"), Response(200, [], b"\xffabc"))
    assert (d.primary, d.shadow) == ("\\xffab", "\\xffabc")


def test_values_and_fields_are_cut_to_200_characters() -> None:
    long_key = "k" * 500
    (d,) = diff(answer({long_key: "a" * 500}), answer({long_key: "b" * 500}))
    assert len(d.field) == len(d.group) == len(d.primary) == len(d.shadow) == MAX_SHOWN
    assert d.field.endswith("…") and d.primary == cut('"' + "a" * 500 + '"')
    assert cut("x" * MAX_SHOWN) == "x" * MAX_SHOWN


def test_at_most_20_differences_are_listed() -> None:
    c = compare(
        answer({str(i): i for i in range(30)}), answer({str(i): -i - 1 for i in range(30)}), RULES
    )
    assert c.result == DIFFER and len(c.differences) == MAX_DIFFERENCES and c.more
    c = compare(answer(list(range(MAX_DIFFERENCES))), answer([-1] * MAX_DIFFERENCES), RULES)
    assert len(c.differences) == MAX_DIFFERENCES and not c.more


# --- noise ------------------------------------------------------------------------------


def test_a_field_where_primary_and_reference_differ_is_noise() -> None:
    primary = answer({"token": "p", "price": 10, "request": {"id": 1}})
    reference = answer({"token": "r", "price": 10, "request": {"id": 2}})
    shadow = answer({"token": "s", "price": 10, "request": {"id": 3}})
    assert compare(primary, shadow, RULES, reference) == Comparison(NOISE, 200, 200)
    shadow = answer({"token": "s", "price": 11, "request": {"id": 3}})
    assert diff(primary, shadow, RULES, reference) == [Difference("/price", "/price", "10", "11")]


def test_noise_below_a_place_where_the_reference_differs_in_kind() -> None:
    primary = answer({"a": {"x": 1}})
    reference = answer({"a": 5})
    shadow = answer({"a": {"x": 2}})
    assert compare(primary, shadow, RULES, reference).result == NOISE


def test_status_and_headers_can_be_noise() -> None:
    primary = Response(200, [(b"x-node", b"a"), (b"x-v", b"1")], b"")
    reference = Response(203, [(b"x-node", b"b"), (b"x-v", b"1")], b"")
    shadow = Response(204, [(b"x-node", b"c"), (b"x-v", b"1")], b"")
    assert compare(primary, shadow, RULES, reference).result == NOISE
    shadow = Response(204, [(b"x-node", b"c"), (b"x-v", b"2")], b"")
    assert fields(compare(primary, shadow, RULES, reference)) == ["header:x-v"]


def test_a_reference_that_is_not_json_makes_the_body_noise_unless_its_bytes_agree() -> None:
    primary, shadow = answer({"a": 1}), answer({"a": 2})
    text = Response(200, [(b"content-type", b"text/plain")], b"error")
    assert compare(primary, shadow, RULES, text).result == NOISE
    same_bytes = Response(200, [(b"content-type", b"text/plain")], b'{"a": 1}')
    assert fields(compare(primary, shadow, RULES, same_bytes)) == ["/a"]


def test_a_byte_body_difference_is_not_noise_when_the_reference_is_the_same_json() -> None:
    primary = answer(b'{"a":1,"b":2}')
    shadow = Response(200, [(b"content-type", b"application/json")], b"<html>")
    reference = answer(b'{"b":2,"a":1}')  # other bytes, the same document
    assert fields(compare(primary, shadow, RULES, reference)) == ["body"]


# --- skipped ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", [0, 1, 2])
def test_a_body_over_max_body_on_any_side_is_skipped(side: int) -> None:
    answers = [answer({"a": 1}), answer({"a": 2}), answer({"a": 3})]
    answers[side] = Response(200, JSON_TYPE, None)
    c = compare(answers[0], answers[1], RULES, answers[2])
    assert c == Comparison(SKIPPED, 200, 200, reason=SKIP_MAX_BODY)


def test_a_protocol_switch_is_skipped() -> None:
    c = compare(Response(101, [(b"upgrade", b"websocket")]), Response(400, []), RULES)
    assert c == Comparison(SKIPPED, 101, 400, reason=SKIP_UPGRADE)


def test_rules_of_a_config() -> None:
    shadow = Shadow(pool="canary", share=1, ignore_headers=("x-trace",), ignore_json=("/t",))
    rules = Rules.of(shadow)
    a = Response(200, [*JSON_TYPE, (b"x-trace", b"1"), (b"date", b"Mon")], b'{"t": 1}')
    b = Response(200, [*JSON_TYPE, (b"x-trace", b"2"), (b"date", b"Tue")], b'{"t": 2}')
    assert fields(compare(a, b, rules)) == ["header:date"]
    with pytest.raises(ValueError):
        Rules(ignore_json=("no-slash",))


# --- properties -------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)
header_names = st.sampled_from(["x-a", "x-b", "vary", "date", "cache-control", "link"])
headers = st.lists(
    st.tuples(
        header_names, st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=5)
    ),
    max_size=5,
)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    status = draw(st.sampled_from([200, 201, 404, 500]))
    extra: list[Header] = [(n.encode(), v.encode()) for n, v in draw(headers)]
    if draw(st.booleans()):
        return Response(status, [*JSON_TYPE, *extra], json.dumps(draw(json_values)).encode())
    return Response(status, extra, draw(st.binary(max_size=30)))


def reordered(value: Any) -> Any:
    """The same JSON value written otherwise: keys reversed, exact integers as floats."""
    if isinstance(value, dict):
        return {k: reordered(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    if type(value) is int and abs(value) < 2**53:
        return float(value)
    return value


@given(responses(), st.booleans())
def test_an_answer_is_the_same_as_itself(response: Response, with_reference: bool) -> None:
    reference = response if with_reference else None
    c = compare(response, response, RULES, reference)
    assert c == Comparison(SAME, response.status, response.status)


@given(json_values)
def test_json_written_otherwise_is_the_same(value: Any) -> None:
    c = compare(answer(value), answer(reordered(value)), RULES)
    assert c.result == SAME


@given(responses(), responses())
def test_comparison_is_symmetric(a: Response, b: Response) -> None:
    ab, ba = compare(a, b, RULES), compare(b, a, RULES)
    assert ab.result == ba.result
    assert {(d.field, d.primary, d.shadow) for d in ab.differences} == {
        (d.field, d.shadow, d.primary) for d in ba.differences
    }


def paths(
    value: Any, path: tuple[tuple[str, bool], ...] = ()
) -> list[tuple[tuple[str, bool], ...]]:
    """Every place in a JSON value: (token, is an index) from the root."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*path, (k, False)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*path, (str(i), True)))
    return out


def replaced(value: Any, path: tuple[tuple[str, bool], ...], new: Any) -> Any:
    if not path:
        return new
    (token, is_index), rest = path[0], path[1:]
    if is_index:
        return [replaced(v, rest, new) if str(i) == token else v for i, v in enumerate(value)]
    return {k: replaced(v, rest, new) if k == token else v for k, v in value.items()}


def pointer(path: tuple[tuple[str, bool], ...], wild: list[bool] | None = None) -> str:
    if not path:
        return "body"
    tokens = [
        "*" if wild and wild[i] else t.replace("~", "~0").replace("/", "~1")
        for i, (t, _) in enumerate(path)
    ]
    return "/" + "/".join(tokens)


@given(json_values, st.data())
def test_a_change_at_one_place_is_found_there(value: Any, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(paths(value)))
    here: Any = value
    for token, is_index in path:
        here = here[int(token)] if is_index else here[token]
    # of another kind than what was there: the difference is at that place, not below
    changed = replaced(value, path, ["changed", here] if isinstance(here, dict) else {"c": here})
    (d,) = diff(answer(value), answer(changed))
    assert d.field == cut(pointer(path))
    assert d.group == cut(pointer(path, [is_index for _, is_index in path]))
    # and ignored when a pointer names it, with any of its tokens as "*"
    if path:
        wild = data.draw(st.lists(st.booleans(), min_size=len(path), max_size=len(path)))
        rules = Rules(ignore_json=(pointer(path, wild),))
        assert compare(answer(value), answer(changed), rules).result == SAME


@given(responses(), responses())
def test_a_reference_like_the_shadow_leaves_only_noise(primary: Response, shadow: Response) -> None:
    c = compare(primary, shadow, RULES, reference=shadow)
    assert c.result in (SAME, NOISE)
    assert (c.result == SAME) == (compare(primary, shadow, RULES).result == SAME)


@given(responses(), responses())
def test_a_reference_like_the_primary_changes_nothing(primary: Response, shadow: Response) -> None:
    assert compare(primary, shadow, RULES, reference=primary) == compare(primary, shadow, RULES)


@given(responses(), responses(), responses())
def test_what_counts_with_a_reference_is_found_without_one(
    primary: Response, shadow: Response, reference: Response
) -> None:
    with_reference = compare(primary, shadow, RULES, reference)
    alone = compare(primary, shadow, RULES)
    if not alone.more:
        assert set(with_reference.differences) <= set(alone.differences)
    assert (with_reference.result == SAME) == (alone.result == SAME)


SECRETS = ("Bearer s3cret-t0ken", "session=s3cret-c00kie")


@given(
    responses(),
    responses(),
    st.sampled_from(["authorization", "Cookie", "SET-COOKIE", "proxy-authorization"]),
    st.sampled_from(SECRETS),
)
@settings(max_examples=50)
def test_secret_header_values_never_appear(
    a: Response, b: Response, name: str, secret: str
) -> None:
    a = Response(a.status, [*a.headers, (name, secret)], a.body)
    c = compare(a, b, Rules(ignore_headers=frozenset()))
    shown = json.dumps([(d.field, d.primary, d.shadow) for d in c.differences])
    assert secret not in shown


@given(json_values, json_values)
def test_what_is_shown_is_bounded(a: Any, b: Any) -> None:
    c = compare(answer(a), answer(b), RULES)
    assert len(c.differences) <= MAX_DIFFERENCES
    for d in c.differences:
        assert max(len(d.field), len(d.group), len(d.primary), len(d.shadow)) <= MAX_SHOWN


def test_a_key_named_star_under_wildcards_is_matched_once() -> None:
    """A key named "*" matches both a pointer's "*" and its literal token: the pointers
    matched stay one per pointer, not twice as many at each level (2**64 at the deepest)."""
    rules = Rules(ignore_json=("/*" * 30 + "/x", "/*/y"))
    states = rules._root
    for _ in range(30):
        states, ignored = _step(states, "*")
        assert len(states) <= 2 and not ignored
    states, ignored = _step(states, "x")
    assert len(states) == 1 and ignored
    # and through compare: only /y's difference counts, below 30 keys named "*"
    a, b = nested_in_keys(30, {"x": 1, "y": 1}), nested_in_keys(30, {"x": 2, "y": 2})
    assert fields(compare(answer(a), answer(b), rules)) == ["/*" * 30 + "/y"]


def nested_in_keys(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"*": leaf}
    return leaf

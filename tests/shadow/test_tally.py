"""The running tally of a shadow (shadow.tally): counts, the fields that differ most, the
last differences as the admin API shows them, and the sum of several processes' tallies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitter.shadow.compare import (
    DIFFER,
    MAX_SHOWN,
    NOISE,
    RESULTS,
    SAME,
    SKIP_MAX_BODY,
    SKIPPED,
    Comparison,
    Difference,
    Response,
    Rules,
    compare,
)
from splitter.shadow.tally import MAX_FIELDS, OTHER, RECENT, Tally, shown_path

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def differ(*groups: str, primary: int = 200, shadow: int = 200) -> Comparison:
    """A `differ` comparison whose differences have these groups (and fields)."""
    differences = tuple(Difference(g.replace("*", "0"), g, "p", "s") for g in groups)
    return Comparison(DIFFER, primary, shadow, differences)


def add(tally: Tally, comparison: Comparison, at: float = T0, target: str = "/a") -> None:
    tally.add(comparison, at=at, method="GET", target=target)


def test_an_empty_tally() -> None:
    assert Tally().to_json() == {
        "compared": 0,
        "same": 0,
        "differ": 0,
        "noise": 0,
        "skipped": 0,
        "errors": 0,
        "diff_rate": 0.0,
        "fields": [],
        "recent": [],
    }


def test_counts_and_the_difference_rate() -> None:
    tally = Tally()
    for _ in range(6):
        add(tally, Comparison(SAME, 200, 200))
    add(tally, Comparison(NOISE, 200, 200))
    add(tally, differ("status", primary=200, shadow=500))
    add(tally, Comparison(SKIPPED, 200, 200, reason=SKIP_MAX_BODY))
    tally.add_skipped()
    tally.add_error()
    body = tally.to_json()
    assert {k: body[k] for k in ("compared", "same", "differ", "noise", "skipped", "errors")} == {
        "compared": 8,
        "same": 6,
        "differ": 1,
        "noise": 1,
        "skipped": 2,
        "errors": 1,
    }
    assert body["diff_rate"] == 1 / 8


def test_fields_count_requests_by_group_most_first() -> None:
    tally = Tally()
    add(tally, differ("/items/*/name", "/items/*/name", "/price"))  # two indices, one request
    add(tally, differ("/price"))
    add(tally, differ("header:etag"))
    add(tally, differ("/b"))
    assert tally.to_json()["fields"] == [
        {"field": "/price", "differ": 2},
        {"field": "/b", "differ": 1},
        {"field": "/items/*/name", "differ": 1},
        {"field": "header:etag", "differ": 1},
    ]


def test_at_most_100_fields_then_other() -> None:
    tally = Tally()
    for i in range(MAX_FIELDS + 5):
        add(tally, differ(f"/f{i}"))
    add(tally, differ("/f0", "/late1", "/late2"))
    fields = tally.to_json()["fields"]
    assert len(fields) == MAX_FIELDS + 1
    assert fields[0] == {"field": "/f0", "differ": 2}
    assert fields[-1] == {"field": OTHER, "differ": 5 + 2}
    assert {f["field"] for f in fields} >= {f"/f{i}" for i in range(MAX_FIELDS)}


def test_recent_holds_the_last_20_differing_requests_with_their_first_field() -> None:
    tally = Tally()
    for i in range(RECENT + 5):
        add(tally, differ("status", "/x", primary=200, shadow=500 + i), at=T0 + i, target=f"/r{i}")
        add(tally, Comparison(SAME, 200, 200), at=T0 + i)
    recent = tally.to_json()["recent"]
    assert len(recent) == RECENT
    assert [r["path"] for r in recent] == [f"/r{i}" for i in range(5, RECENT + 5)]
    assert recent[-1] == {
        "at": "2026-09-21T14:13:44.000Z",
        "method": "GET",
        "path": f"/r{RECENT + 4}",
        "primary_status": 200,
        "shadow_status": 500 + RECENT + 4,
        "field": "status",
        "primary": "p",
        "shadow": "s",
    }


def test_at_is_rfc3339_in_utc_to_the_millisecond() -> None:
    tally = Tally()
    add(tally, differ("/a"), at=0.25)
    add(tally, differ("/a"), at=T0 + 0.9999)
    assert [r["at"] for r in tally.to_json()["recent"]] == [
        "1970-01-01T00:00:00.250Z",
        "2026-09-21T14:13:20.999Z",
    ]


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("/a/b", "/a/b"),
        ("/search?q=secret", "/search?q="),
        ("/search?q=s&page=2&debug", "/search?q=&page=&debug"),
        ("/reset?token=abc=def&&x=", "/reset?token=&&x="),
        ("/?", "/?"),
        (b"/bytes?k=v\xff", "/bytes?k="),
        ("http://shop.example.com/p?id=7", "http://shop.example.com/p?id="),
    ],
)
def test_the_path_is_shown_without_the_querys_values(target: str | bytes, shown: str) -> None:
    assert shown_path(target) == shown


def test_a_long_path_is_cut() -> None:
    assert len(shown_path("/" + "a" * 1000)) == MAX_SHOWN


names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=5)


@given(st.lists(st.tuples(names, st.uuids()), max_size=5))
def test_no_query_value_is_ever_shown(params: list[tuple[str, Any]]) -> None:
    target = "/p?" + "&".join(f"{name}={value}" for name, value in params)
    shown = shown_path(target)
    assert all(str(value) not in shown for _, value in params)
    assert shown == "/p?" + "&".join(f"{name}=" for name, _ in params)


def test_secrets_never_reach_the_tally() -> None:
    secret = "s3cret-session-value"
    primary = Response(200, [(b"set-cookie", secret.encode()), (b"authorization", b"x")], b"")
    shadow = Response(200, [(b"set-cookie", b"other"), (b"cookie", secret.encode())], b"")
    tally = Tally()
    tally.add(
        compare(primary, shadow, Rules(ignore_headers=frozenset())),
        at=T0,
        method="GET",
        target=f"/login?session={secret}",
    )
    shown = json.dumps(tally.to_json())
    assert "header:authorization" in shown  # the difference is there
    assert secret not in shown


def test_the_body_is_json() -> None:
    tally = Tally()
    add(tally, differ("/a"))
    assert json.loads(json.dumps(tally.to_json())) == tally.to_json()


# --- several processes ------------------------------------------------------------------

comparisons = st.one_of(
    st.sampled_from([Comparison(r, 200, 200) for r in RESULTS if r != DIFFER]),
    st.lists(st.sampled_from(["status", "/a", "/b/*/c", "header:x"]), min_size=1, max_size=3).map(
        lambda groups: differ(*groups)
    ),
)


@given(st.lists(st.tuples(comparisons, st.integers(0, 3), st.booleans()), max_size=60))
def test_merged_snapshots_are_one_tally_of_everything(
    events: list[tuple[Comparison, int, bool]],
) -> None:
    one, parts = Tally(), [Tally() for _ in range(4)]
    for i, (comparison, part, error) in enumerate(events):
        for tally in (one, parts[part]):
            if error:
                tally.add_error()
            else:
                add(tally, comparison, at=T0 + i, target=f"/r{i}")
    merged = Tally.merge(p.snapshot() for p in parts)
    assert merged.to_json() == one.to_json()


def test_merging_keeps_the_most_counted_fields() -> None:
    a, b = Tally(), Tally()
    for i in range(MAX_FIELDS):
        add(a, differ(f"/a{i}"))
        add(b, differ(f"/b{i}"))
    add(b, differ("/b0"))
    merged = Tally.merge([a.snapshot(), b.snapshot()]).to_json()["fields"]
    assert len(merged) == MAX_FIELDS + 1
    assert merged[0] == {"field": "/b0", "differ": 2}
    assert merged[-1] == {"field": OTHER, "differ": 2 * MAX_FIELDS - MAX_FIELDS}

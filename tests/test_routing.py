"""Routing policy: sticky cookies, pool choice by weighted rendezvous hashing, backend WRR."""

from __future__ import annotations

import base64
import hmac
import random
from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from splitter.routing import (
    BackendBalancer,
    ClientIds,
    PoolChooser,
    choose_pool,
    cookie_from_header,
)

SECRET = b"test-secret-0123456789"


def _ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [base64.urlsafe_b64encode(rng.randbytes(16)).rstrip(b"=").decode() for _ in range(count)]


IDS_20K = _ids(20_000, seed=1)
IDS_2K = IDS_20K[:2_000]

POOL_NAMES = ["blue", "green", "canary", "dark"]

# 2-4 pools with weights in [0, 100], at least one positive.
weight_vectors = (
    st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=0.5, max_value=100.0)),
        min_size=2,
        max_size=4,
    )
    .filter(lambda ws: sum(ws) > 0)
    .map(lambda ws: list(zip(POOL_NAMES, ws, strict=False)))
)


def _assignments(
    ids: list[str], weights: list[tuple[str, float]], live: set[str] | None = None
) -> list[str | None]:
    return [choose_pool(client_id, weights, live) for client_id in ids]


# --- client ids and the sticky cookie -------------------------------------------------------


def test_new_id_is_22_chars_of_base64url_and_random() -> None:
    ids = ClientIds(SECRET)
    made = {ids.new_id() for _ in range(1000)}
    assert len(made) == 1000
    for client_id in made:
        assert len(client_id) == 22
        assert base64.urlsafe_b64decode(client_id + "==") and "=" not in client_id


@given(secret=st.binary(min_size=1, max_size=64))
def test_cookie_round_trip_gives_back_the_client_id(secret: bytes) -> None:
    ids = ClientIds(secret)
    client_id = ids.new_id()
    value = ids.cookie_value(client_id)
    assert value.startswith(client_id + ".")
    assert ids.verify(value) == client_id


@pytest.mark.parametrize("key_len", [0, 1, 32, 63, 64, 65, 200])
def test_signature_is_hmac_sha256_of_the_id(key_len: int) -> None:
    """The precomputed-pad signer agrees with the stdlib's HMAC for every key length."""
    secret = bytes(range(256))[:key_len] if key_len <= 256 else b""
    ids = ClientIds(secret)
    for _ in range(20):
        client_id = ids.new_id()
        digest = hmac.digest(secret, client_id.encode(), "sha256")
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert ids.cookie_value(client_id) == f"{client_id}.{expected}"


def test_new_ids_are_distinct_22_char_base64url() -> None:
    ids = ClientIds(b"k" * 32)
    made = [ids.new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert all(len(i) == 22 and set(i) <= alphabet for i in made)


@given(data=st.data())
def test_tampered_id_or_signature_is_rejected(data: st.DataObject) -> None:
    ids = ClientIds(SECRET)
    value = ids.cookie_value(ids.new_id())
    position = data.draw(st.integers(0, len(value) - 1))
    assume(value[position] != ".")
    replacement = data.draw(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    )
    assume(replacement != value[position])
    tampered = value[:position] + replacement + value[position + 1 :]
    assert ids.verify(tampered) is None


def test_cookie_signed_with_another_secret_is_rejected() -> None:
    mine, theirs = ClientIds(SECRET), ClientIds(b"another secret")
    assert mine.verify(theirs.cookie_value(theirs.new_id())) is None


def test_id_swapped_under_a_valid_signature_is_rejected() -> None:
    ids = ClientIds(SECRET)
    first, second = ids.cookie_value(ids.new_id()), ids.cookie_value(ids.new_id())
    spliced = first.split(".")[0] + "." + second.split(".")[1]
    assert ids.verify(spliced) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "nodot",
        "abc.",
        ".c2lnbmF0dXJl",
        "a" * 10_000,
        "a" * 150 + "." + "b" * 150,
        "clïent.signature",
        "client.sïgnature",
        "\x00.\x00",
        "🍪.🍪",
    ],
)
def test_malformed_cookie_values_are_rejected(value: str) -> None:
    assert ClientIds(SECRET).verify(value) is None


def test_valid_cookie_with_non_ascii_or_padding_appended_is_rejected() -> None:
    ids = ClientIds(SECRET)
    value = ids.cookie_value(ids.new_id())
    assert ids.verify(value + "é") is None
    assert ids.verify(value + "=" * 200) is None
    assert ids.verify(value + " ") is None


@given(value=st.text(max_size=300))
def test_verify_never_raises_on_arbitrary_text(value: str) -> None:
    assert ClientIds(SECRET).verify(value) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("splitter=xyz", "xyz"),
        ("a=1; splitter=xyz; b=2", "xyz"),
        ("a=1;splitter=xyz;b=2", "xyz"),
        ("  a=1 ;   splitter = xyz  ; b=2", "xyz"),
        ("splitter=first; splitter=second", "first"),
        ('splitter="quoted"', "quoted"),
        ("splitter=", ""),
        ("splitter=a=b", "a=b"),
        ("xsplitter=no; splitterx=no", None),
        ("a=1; b=2", None),
        ("", None),
        ("splitter", None),
        ("a=splitter", None),
        (";;; splitter=ok ;;", "ok"),
    ],
)
def test_cookie_from_header_finds_the_named_cookie(header: str, expected: str | None) -> None:
    assert cookie_from_header(header, "splitter") == expected


# --- pool choice ----------------------------------------------------------------------------


def test_choose_pool_is_deterministic_and_order_independent() -> None:
    weights = [("blue", 50.0), ("green", 30.0), ("canary", 20.0)]
    first = _assignments(IDS_2K, weights)
    assert _assignments(IDS_2K, weights) == first
    assert _assignments(IDS_2K, list(reversed(weights))) == first


def test_choose_pool_returns_none_without_a_candidate() -> None:
    assert choose_pool("x", []) is None
    assert choose_pool("x", [("blue", 0.0), ("green", 0.0)]) is None
    assert choose_pool("x", [("blue", 1.0)], live=set()) is None
    assert choose_pool("x", [("blue", float("nan"))]) is None


def test_each_route_chooses_on_its_own_and_default_as_without_routes() -> None:
    """One cookie serves every route; a client's pool on one route says nothing of its pool
    on another with the same pools and weights (docs/configuration.md#segments)."""
    weights = [("blue", 50.0), ("green", 50.0)]
    shop, api = PoolChooser(weights, route="shop"), PoolChooser(weights, route="api")
    pairs = Counter((shop.for_client(i), api.for_client(i)) for i in IDS_2K)
    assert len(pairs) == 4 and all(abs(n / len(IDS_2K) - 0.25) < 0.04 for n in pairs.values())
    shares = Counter(shop.for_client(i) for i in IDS_20K)
    assert abs(shares["blue"] / len(IDS_20K) - 0.5) < 0.02  # the weights hold within a route
    default = PoolChooser(weights, route="default")
    assert [default.for_client(i) for i in IDS_2K] == _assignments(IDS_2K, weights)
    again = PoolChooser(list(reversed(weights)), live={"blue", "green"}, route="shop")
    assert [again.for_client(i) for i in IDS_2K] == [shop.for_client(i) for i in IDS_2K]


@settings(max_examples=20, deadline=None)
@given(weights=weight_vectors)
def test_shares_match_weights(weights: list[tuple[str, float]]) -> None:
    counts = Counter(_assignments(IDS_20K, weights))
    total = sum(w for _, w in weights)
    for name, w in weights:
        assert abs(counts[name] / len(IDS_20K) - w / total) < 0.02, (name, counts)


@settings(max_examples=50, deadline=None)
@given(weights=weight_vectors, data=st.data())
def test_weight_rise_only_moves_clients_into_the_pool(
    weights: list[tuple[str, float]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(weights) - 1))
    name, old = weights[index]
    new = data.draw(st.floats(min_value=old, max_value=200.0).filter(lambda w: w > old))
    raised = list(weights)
    raised[index] = (name, new)
    for before, after in zip(
        _assignments(IDS_2K, weights), _assignments(IDS_2K, raised), strict=True
    ):
        if before != after:
            assert after == name


@settings(max_examples=50, deadline=None)
@given(weights=weight_vectors, data=st.data())
def test_weight_fall_only_moves_clients_out_of_the_pool(
    weights: list[tuple[str, float]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(weights) - 1))
    name, old = weights[index]
    assume(old > 0)
    new = data.draw(st.floats(min_value=0.0, max_value=old).filter(lambda w: w < old))
    lowered = list(weights)
    lowered[index] = (name, new)
    for before, after in zip(
        _assignments(IDS_2K, weights), _assignments(IDS_2K, lowered), strict=True
    ):
        if before != after:
            assert before == name


def test_zero_weight_pool_gets_nobody() -> None:
    weights = [("blue", 90.0), ("green", 0.0), ("canary", 10.0)]
    assignments = _assignments(IDS_20K, weights)
    assert "green" not in assignments
    assert None not in assignments


def test_blue_green_switch_moves_everyone() -> None:
    assert set(_assignments(IDS_2K, [("blue", 100.0), ("green", 0.0)])) == {"blue"}
    assert set(_assignments(IDS_2K, [("blue", 0.0), ("green", 100.0)])) == {"green"}


def test_canary_ramp_keeps_canary_clients_in_the_canary() -> None:
    ramp = [1.0, 5.0, 25.0, 50.0, 100.0]
    in_canary: set[str] = set()
    for canary_weight in ramp:
        weights = [("stable", 100.0), ("canary", canary_weight)]
        now = {
            cid
            for cid, pool in zip(IDS_2K, _assignments(IDS_2K, weights), strict=True)
            if pool == "canary"
        }
        assert in_canary <= now
        in_canary = now


@settings(max_examples=30, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=0.5, max_value=100.0), min_size=2, max_size=4).map(
        lambda ws: list(zip(POOL_NAMES, ws, strict=False))
    ),
    data=st.data(),
)
def test_dead_pool_clients_spread_over_others_and_return(
    weights: list[tuple[str, float]], data: st.DataObject
) -> None:
    names = [name for name, _ in weights]
    dead = data.draw(st.sampled_from(names))
    live = set(names) - {dead}
    healthy = _assignments(IDS_2K, weights)
    degraded = _assignments(IDS_2K, weights, live)
    for before, during in zip(healthy, degraded, strict=True):
        if before == dead:
            assert during in live
        else:
            assert during == before
    if len(live) > 1 and healthy.count(dead) >= 200:
        # The dead pool's clients are not all dumped on one survivor.
        refugees = {d for h, d in zip(healthy, degraded, strict=True) if h == dead}
        assert len(refugees) > 1
    assert _assignments(IDS_2K, weights, set(names)) == healthy
    assert _assignments(IDS_2K, weights) == healthy


# --- backend choice -------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[5, 3, 2], [1, 1, 1, 1], [1], [10, 0, 10], [3.0, 1.0, 1.0]])
def test_backend_counts_over_1000_picks_match_weights_exactly(weights: list[float]) -> None:
    balancer = BackendBalancer(weights)
    counts = Counter(balancer.pick() for _ in range(1000))
    total = sum(weights)
    assert counts == {i: 1000 * w / total for i, w in enumerate(weights) if w > 0}


@given(weights=st.lists(st.integers(0, 10), min_size=1, max_size=8), cycles=st.integers(1, 3))
def test_backend_counts_over_full_cycles_equal_integer_weights(
    weights: list[int], cycles: int
) -> None:
    assume(sum(weights) > 0)
    balancer = BackendBalancer([float(w) for w in weights])
    counts = Counter(balancer.pick() for _ in range(cycles * sum(weights)))
    assert counts == {i: cycles * w for i, w in enumerate(weights) if w > 0}


def test_backend_picks_are_interleaved_like_nginx() -> None:
    balancer = BackendBalancer([5, 1, 1])
    assert [balancer.pick() for _ in range(7)] == [0, 0, 1, 0, 2, 0, 0]


@given(
    weights=st.lists(st.integers(1, 10), min_size=2, max_size=8),
    data=st.data(),
)
def test_backend_pick_skips_down_backends(weights: list[int], data: st.DataObject) -> None:
    up = data.draw(st.lists(st.booleans(), min_size=len(weights), max_size=len(weights)))
    assume(any(up))
    balancer = BackendBalancer(weights)
    cycle = sum(w for w, is_up in zip(weights, up, strict=True) if is_up)
    counts = Counter(balancer.pick(up) for _ in range(2 * cycle))
    assert counts == {
        i: 2 * w for i, (w, is_up) in enumerate(zip(weights, up, strict=True)) if is_up
    }


def test_backend_pick_returns_none_when_all_down_or_zero() -> None:
    assert BackendBalancer([1, 2, 3]).pick([False, False, False]) is None
    assert BackendBalancer([0, 0]).pick() is None
    assert BackendBalancer([0, 1]).pick([True, False]) is None
    assert BackendBalancer([]).pick() is None


def test_backend_pick_rejects_bad_weights_and_mismatched_up_flags() -> None:
    for bad in ([-1.0], [float("nan")], [float("inf")]):
        with pytest.raises(ValueError):
            BackendBalancer(bad)
    with pytest.raises(ValueError):
        BackendBalancer([1, 1]).pick([True])


@given(
    weights=st.lists(st.integers(0, 10), min_size=2, max_size=8),
    data=st.data(),
)
def test_pick_other_never_returns_exclude_when_another_is_up(
    weights: list[int], data: st.DataObject
) -> None:
    up = data.draw(st.lists(st.booleans(), min_size=len(weights), max_size=len(weights)))
    exclude = data.draw(st.integers(0, len(weights) - 1))
    others = [
        i
        for i, (w, is_up) in enumerate(zip(weights, up, strict=True))
        if is_up and w > 0 and i != exclude
    ]
    assume(others)
    balancer = BackendBalancer(weights)
    for _ in range(50):
        assert balancer.pick_other(exclude, up) in others


def test_pick_other_falls_back_to_exclude_when_it_is_the_only_candidate() -> None:
    assert BackendBalancer([1, 1]).pick_other(0, [True, False]) == 0
    assert BackendBalancer([1, 0]).pick_other(0) == 0
    assert BackendBalancer([1]).pick_other(0) == 0
    assert BackendBalancer([1, 1]).pick_other(0, [False, False]) is None
    assert BackendBalancer([0, 1]).pick_other(0, [True, False]) is None

"""Dashboard sessions and the limit on wrong tokens (splitter/admin/sessions.py), on a fake
clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.admin.sessions import SESSION_TTL, Guesses, Sessions
from tests.support import FakeClock


def test_a_session_lives_twelve_hours() -> None:
    clock = FakeClock()
    sessions = Sessions(clock)
    sid = sessions.create()
    assert SESSION_TTL == 12 * 3600
    assert sessions.valid(sid)
    clock.now += SESSION_TTL - 1
    assert sessions.valid(sid) and sessions.remaining(sid) == 1
    clock.now += 1
    assert not sessions.valid(sid)
    assert len(sessions) == 0  # an expired session is forgotten


def test_ids_are_random_and_unguessable() -> None:
    sessions = Sessions(FakeClock())
    ids = {sessions.create() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) >= 43 for i in ids)  # 32 random bytes
    assert not sessions.valid("")
    assert not sessions.valid("x" * 43)
    assert not sessions.valid("\udcff")  # a cookie that is not UTF-8 does not fail


def test_ending_a_session() -> None:
    sessions = Sessions(FakeClock())
    sid, other = sessions.create(), sessions.create()
    assert sessions.end(sid)
    assert not sessions.valid(sid) and sessions.valid(other)
    assert not sessions.end(sid)


def test_sessions_are_bounded() -> None:
    clock = FakeClock()
    sessions = Sessions(clock, limit=3)
    first = sessions.create()
    clock.now += 1
    later = [sessions.create() for _ in range(3)]
    assert len(sessions) == 3
    assert not sessions.valid(first)  # the one closest to expiry made room
    assert all(sessions.valid(s) for s in later)


def test_ten_wrong_tokens_in_a_minute_lock_that_address_out_for_a_minute() -> None:
    clock = FakeClock()
    guesses = Guesses(clock)
    for _ in range(9):
        assert guesses.retry_after("a") == 0
        assert not guesses.failed("a")
        clock.now += 6  # the ninth is 48 s after the first
    assert guesses.retry_after("a") == 0
    assert guesses.failed("a")  # the tenth within a minute
    assert guesses.retry_after("a") == 60
    assert guesses.retry_after("b") == 0  # another address is never held up
    clock.now += 59.5
    assert guesses.retry_after("a") == 0.5
    clock.now += 0.5
    assert guesses.retry_after("a") == 0
    assert not guesses.failed("a")  # a fresh start after the lockout


def test_wrong_tokens_spread_over_more_than_a_minute_never_lock_out() -> None:
    clock = FakeClock()
    guesses = Guesses(clock)
    for _ in range(100):
        assert not guesses.failed("a")
        assert guesses.retry_after("a") == 0
        clock.now += 6.7  # ten of them take more than a minute


def test_many_addresses_never_lock_out_another() -> None:
    """35 wrong sign-ins from 7 addresses at once locked out everyone, the right token
    included, for a minute; now only an address with 10 is held up."""
    clock = FakeClock()
    guesses = Guesses(clock)
    for i in range(7):
        for _ in range(5):
            guesses.failed(f"10.0.0.{i}")
    for _ in range(10):
        guesses.failed("10.0.1.1")
    assert all(guesses.retry_after(f"10.0.0.{i}") == 0 for i in range(7))
    assert guesses.retry_after("10.0.1.1") == 60
    assert guesses.retry_after("127.0.0.1") == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.floats(0, 5)), max_size=300))
def test_the_table_of_addresses_is_bounded(failures: list[tuple[int, float]]) -> None:
    clock = FakeClock()
    guesses = Guesses(clock, limit=2, max_clients=8)
    for address, wait in failures:
        guesses.failed(f"a{address}")
        clock.now += wait
        assert len(guesses._failures) <= 8 and len(guesses._locked) <= 8
    assert len(guesses) <= 16


def test_an_address_flood_keeps_memory_bounded_and_the_newest_lockouts() -> None:
    clock = FakeClock()
    guesses = Guesses(clock, max_clients=100)
    for i in range(10_000):
        guesses.failed(f"10.{i // 256}.{i % 256}.1")
    assert len(guesses) <= 100
    for _ in range(10):
        guesses.failed("192.0.2.1")
    assert guesses.retry_after("192.0.2.1") == 60

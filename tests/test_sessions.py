"""Dashboard sessions and the limit on wrong tokens (splitter/sessions.py), on a fake
clock."""

from __future__ import annotations

from splitter.sessions import SESSION_TTL, Guesses, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_twelve_hours() -> None:
    clock = Clock()
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
    sessions = Sessions(Clock())
    ids = {sessions.create() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) >= 43 for i in ids)  # 32 random bytes
    assert not sessions.valid("")
    assert not sessions.valid("x" * 43)
    assert not sessions.valid("\udcff")  # a cookie that is not UTF-8 does not fail


def test_ending_a_session() -> None:
    sessions = Sessions(Clock())
    sid, other = sessions.create(), sessions.create()
    assert sessions.end(sid)
    assert not sessions.valid(sid) and sessions.valid(other)
    assert not sessions.end(sid)


def test_sessions_are_bounded() -> None:
    clock = Clock()
    sessions = Sessions(clock, limit=3)
    first = sessions.create()
    clock.now += 1
    later = [sessions.create() for _ in range(3)]
    assert len(sessions) == 3
    assert not sessions.valid(first)  # the one closest to expiry made room
    assert all(sessions.valid(s) for s in later)


def test_wrong_tokens_from_one_client_are_limited() -> None:
    clock = Clock()
    guesses = Guesses(clock, per_client=5, overall=30, period=60)
    for _ in range(5):
        assert guesses.retry_after("a") == 0
        guesses.failed("a")
        clock.now += 1
    assert guesses.retry_after("a") == 60 - 5  # the first failure is 5 s old
    assert guesses.retry_after("b") == 0  # another client is not held up
    clock.now += 55
    assert guesses.retry_after("a") == 0


def test_wrong_tokens_from_everyone_are_limited_too() -> None:
    clock = Clock()
    guesses = Guesses(clock, per_client=5, overall=10, period=60)
    for i in range(10):
        guesses.failed(f"client-{i}")
    assert guesses.retry_after("someone-new") == 60
    clock.now += 60
    assert guesses.retry_after("someone-new") == 0
    assert not guesses._by_client  # forgotten after the period

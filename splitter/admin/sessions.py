"""Dashboard sessions: the admin token traded once for a cookie (docs/admin-api.md and
docs/admin-api.md#live-statistics-and-the-stream).

    POST /api/v1/session {"token": ...}  -> Sessions.create() -> cookie splitter_admin=<id>
    any /api/ call with that cookie      -> Sessions.valid(id)
    DELETE /api/v1/session               -> Sessions.end(id)

Rules:

- A session id is 32 random bytes (URL-safe base64), never derived from the token. Only
  its SHA-256 is kept, so a lookup compares digests, not the secret itself.
- Sessions live in memory for `SESSION_TTL` (12 h) from their creation; a restart ends
  them all. At most `MAX_SESSIONS` are kept: beyond that the one closest to expiry goes.
- Wrong tokens, in a bearer header or a sign-in, are counted per client address (the
  connection's peer; `Guesses`): the `LIMIT`-th (10) within `PERIOD` (a minute) locks
  that address out for `LOCKOUT` (a minute): its token checks answer 429 unchecked. No
  address is ever held up by another's failures (a count over every address would let
  one attacker lock the operator out), and the table is bounded (`MAX_CLIENTS`
  addresses, the oldest dropped first). With a token of 16 characters or more,
  guessing at 10 tries a minute per address is hopeless.
- The clock is injected (monotonic seconds), so tests can move time; no I/O here.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["Guesses", "Sessions"]

SESSION_TTL: Final = 12 * 3600.0
MAX_SESSIONS: Final = 1000
LIMIT: Final = 10  # wrong tokens from one address within PERIOD that lock it out
PERIOD: Final = 60.0
LOCKOUT: Final = 60.0
MAX_CLIENTS: Final = 4096  # addresses remembered (each table)

Clock = Callable[[], float]


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()


class Sessions:
    """Session ids and their expiry, in memory."""

    def __init__(
        self, clock: Clock = time.monotonic, ttl: float = SESSION_TTL, limit: int = MAX_SESSIONS
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.limit = limit
        self._expiry: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def create(self) -> str:
        now = self.clock()
        self._sweep(now)
        while len(self._expiry) >= self.limit:
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
        session_id = secrets.token_urlsafe(32)
        self._expiry[_digest(session_id)] = now + self.ttl
        return session_id

    def remaining(self, session_id: str) -> float | None:
        """Seconds the session has left, None when it is unknown, ended or expired."""
        key = _digest(session_id)
        expiry = self._expiry.get(key)
        if expiry is None:
            return None
        left = expiry - self.clock()
        if left <= 0:
            del self._expiry[key]
            return None
        return left

    def valid(self, session_id: str) -> bool:
        return self.remaining(session_id) is not None

    def end(self, session_id: str) -> bool:
        """End a session; whether it was live."""
        return self._expiry.pop(_digest(session_id), None) is not None

    def _sweep(self, now: float) -> None:
        for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]


class Guesses:
    """Wrong tokens by client address, to refuse guessing (see the module docstring).

    Per address: the times of its last `limit` wrong tokens; the `limit`-th within
    `period` locks it out for `lockout` seconds, after which it starts afresh. The table
    holds at most `max_clients` addresses: the one whose last wrong token is the oldest
    goes first (the others' lockouts stand), so many addresses cannot grow it."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        limit: int = LIMIT,
        period: float = PERIOD,
        lockout: float = LOCKOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.period = period
        self.lockout = lockout
        self.max_clients = max_clients
        # address -> its recent wrong tokens (at most `limit`), oldest address first
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}  # address -> end of its lockout

    def __len__(self) -> int:
        return len(self._failures.keys() | self._locked.keys())

    def retry_after(self, client: str) -> float:
        """0 when `client` may try a token now, else the seconds until it may."""
        until = self._locked.get(client)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left > 0:
            return left
        del self._locked[client]
        return 0.0

    def failed(self, client: str) -> bool:
        """A wrong token from `client`: counted, and at the limit, a lockout (True)."""
        now = self.clock()
        times = self._failures.pop(client, None)  # re-inserted last: the newest
        if times is None:
            times = deque(maxlen=self.limit)
        times.append(now)
        locked = len(times) >= self.limit and now - times[0] < self.period
        if locked:
            self._locked[client] = now + self.lockout
        else:
            self._failures[client] = times
        self._bound(now)
        return locked

    def _bound(self, now: float) -> None:
        """At most `max_clients` addresses in each table: the expired go, then the oldest."""
        if len(self._failures) > self.max_clients:
            horizon = now - self.period
            for client in [c for c, t in self._failures.items() if t[-1] <= horizon]:
                del self._failures[client]
            while len(self._failures) > self.max_clients:
                del self._failures[next(iter(self._failures))]
        if len(self._locked) > self.max_clients:
            for client in [c for c, until in self._locked.items() if until <= now]:
                del self._locked[client]
            while len(self._locked) > self.max_clients:
                del self._locked[next(iter(self._locked))]

"""Dashboard sessions: the admin token traded once for a cookie (contract sections 5 and 9).

    POST /api/v1/session {"token": ...}  -> Sessions.create() -> cookie splitter_admin=<id>
    any /api/ call with that cookie      -> Sessions.valid(id)
    DELETE /api/v1/session               -> Sessions.end(id)

Rules:

- A session id is 32 random bytes (URL-safe base64), never derived from the token. Only
  its SHA-256 is kept, so a lookup compares digests, not the secret itself.
- Sessions live in memory for `SESSION_TTL` (12 h) from their creation; a restart ends
  them all. At most `MAX_SESSIONS` are kept: beyond that the one closest to expiry goes.
- Wrong tokens are counted (`Guesses`): more than `PER_CLIENT` from one address, or
  `OVERALL` from all of them, within `PERIOD` seconds, and further attempts are refused
  (429) without being checked until the oldest failure is `PERIOD` old. Guessing a
  token of any length at 30 tries a minute is hopeless; the bearer token keeps working
  meanwhile, so `splitter ctl` cannot be locked out.
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
PER_CLIENT: Final = 5
OVERALL: Final = 30
PERIOD: Final = 60.0

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
    """Wrong tokens by client address, to refuse guessing (see the module docstring)."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        per_client: int = PER_CLIENT,
        overall: int = OVERALL,
        period: float = PERIOD,
    ) -> None:
        self.clock = clock
        self.per_client = per_client
        self.overall = overall
        self.period = period
        self._all: deque[float] = deque()
        self._by_client: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """0 when `client` may try a token now, else the seconds until it may."""
        now = self.clock()
        self._forget(now)
        waits = []
        mine = self._by_client.get(client)
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[-self.per_client] + self.period - now)
        if len(self._all) >= self.overall:
            waits.append(self._all[-self.overall] + self.period - now)
        return max(waits, default=0.0)

    def failed(self, client: str) -> None:
        now = self.clock()
        self._all.append(now)
        self._by_client.setdefault(client, deque()).append(now)

    def _forget(self, now: float) -> None:
        horizon = now - self.period
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for client in list(self._by_client):
            times = self._by_client[client]
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                del self._by_client[client]

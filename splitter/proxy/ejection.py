"""Passive health (outlier ejection): backends that fail requests in a row are taken out.

Rules (docs/configuration.md#health-checks-and-failover):

- A gateway failure (connect refused or timed out, a reset before the answer on a fresh
  connection, a read timeout, an invalid response, or a 502, 503 or 504 answer) counts one
  failure against its backend; any other answer resets the count. Another 5xx (a 500) is
  the application's own error: it is the rollout judge's to weigh, and counting it would
  let any client eject a backend by asking for a page that fails (docs/rollouts.md).
- EJECT_AFTER failures in a row eject the backend for EJECT_BASE seconds, doubled at each
  ejection in a row, up to EJECT_MAX; the count of ejections is forgotten once the backend
  has gone EJECT_MAX seconds without one.
- Panic threshold: the last live backend of the whole route (every pool with a weight > 0)
  is never ejected; a warning says so.
- Ejection is per process: each worker judges what it sees, like the active checks do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from splitter.state import BackendHealth, BackendState, Live

__all__ = ["Ejector"]

log = logging.getLogger("splitter.proxy")

EJECT_AFTER: Final = 5
EJECT_BASE: Final = 2.0
EJECT_MAX: Final = 60.0


class Ejector:
    def __init__(self, clock: Callable[[], float], on_change: Callable[[], None]) -> None:
        self.clock = clock  # the loop's monotonic time
        self.on_change = on_change  # a backend went out or came back: refresh the views
        self.ejected: dict[BackendHealth, str] = {}  # -> its URL, for the log

    def failed(self, backend: BackendState, live: Live | None) -> None:
        health = backend.health
        health.failures += 1
        if health.failures >= EJECT_AFTER and health.up and live is not None:
            self._eject(backend, live)

    def _eject(self, backend: BackendState, live: Live) -> None:
        health = backend.health
        health.failures = 0
        if not live.route_has_other_live(health):
            log.warning("backend %s keeps failing, but it is the last one live: kept", backend.url)
            return
        now = self.clock()
        health.ejections += 1
        seconds = min(EJECT_MAX, EJECT_BASE * 2 ** (health.ejections - 1))
        health.ejected_until = now + seconds
        health.update(now)
        self.ejected[health] = backend.url
        self.on_change()
        log.warning(
            "backend %s ejected for %gs after %d failures in a row",
            backend.url,
            seconds,
            EJECT_AFTER,
        )

    def sweep(self, now: float, backends: list[BackendState]) -> None:
        """Bring back the backends whose ejection is over; forget old ejection counts."""
        for backend in backends:
            health = backend.health
            if health.ejections and now - health.ejected_until > EJECT_MAX:
                health.ejections = 0
        if not self.ejected:
            return
        back = [h for h in self.ejected if now >= h.ejected_until]
        for health in back:
            url = self.ejected.pop(health)
            health.update(now)
            log.info("backend %s back from ejection", url)
        if back:
            self.on_change()

"""The proxy listener's shared side: the live state, the connection set, the sweep, the log.

`ProxyServer` is what every `ClientConn` points at. It holds the one `Live` snapshot the
request path reads (`swap` replaces it), the settings copied out of the config for speed,
and a periodic sweep that enforces connection deadlines, closes idle backend connections
and flushes the access log. One sweep for all connections costs far less than a timer
per request. The sweep also notices the end of a burst of connections and gives the
memory it took back to the system (`splitter.memory`).

Every exchange ends in `finished`, exactly once: that is where the access log line is
written (and where the metrics will count it).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from splitter import memory
from splitter.proxy import ClientConn

if TYPE_CHECKING:
    from splitter.config import Config, Shutdown
    from splitter.counters import Counters
    from splitter.proxy import Exchange
    from splitter.state import BackendState, Live
    from splitter.upstream import BackendConnections

log = logging.getLogger("splitter.proxy")

LOG_FLUSH_BYTES = 64 * 1024

# Passive ejection (outlier detection): after EJECT_AFTER failed exchanges in a row
# (connect failure, reset before an answer, 5xx, timeout) a backend is taken out for
# EJECT_BASE seconds, doubled at each ejection in a row, up to EJECT_MAX; the count of
# ejections is forgotten once the backend has served EJECT_MAX seconds without one.
EJECT_AFTER = 5
EJECT_BASE = 2.0
EJECT_MAX = 60.0


class ProxyServer:
    def __init__(
        self,
        live: Live,
        connections: dict[str, BackendConnections],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.loop = loop
        self.connections = connections
        self.conns: set[ClientConn] = set()
        self.draining = False
        self.servers: list[asyncio.AbstractServer] = []
        self._log_buffer: list[bytes] = []
        self._log_size = 0
        self._refusals_logged: dict[str, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.metrics: Counters | None = None
        self.ejected: set[BackendConnections] = set()
        self.burst = memory.BurstWatch()
        self.swap(live)
        self.clock = loop.time() + self.sweep_interval

    # -- state --------------------------------------------------------------------------

    def swap(self, live: Live) -> None:
        """Put a new snapshot in force; requests already started keep theirs."""
        config: Config = live.config
        self.live = live
        self.limits = config.limits
        self.read_timeout = config.timeouts.read
        self.connect_timeout = config.timeouts.connect
        self.upstream_idle_timeout = config.limits.upstream_idle_timeout
        self.override_header = live.override_header
        self.access_log = config.access_log
        shortest = min(
            config.limits.header_timeout,
            config.limits.body_idle_timeout,
            config.limits.keepalive_timeout,
            config.timeouts.read,
            config.limits.upstream_idle_timeout,
        )
        self.sweep_interval = min(0.5, max(0.02, shortest / 10))

    # -- listening ----------------------------------------------------------------------

    async def listen(self, sock: Any) -> None:
        server = await self.loop.create_server(lambda: ClientConn(self), sock=sock, backlog=1024)
        self.servers.append(server)
        self._schedule_sweep()

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    def drain(self) -> None:
        """Shutdown: idle connections close now, busy ones after their exchange."""
        self.draining = True
        for conn in list(self.conns):
            conn.drain()

    async def graceful_stop(self, shutdown: Shutdown) -> None:
        """Contract 4b: accept grace, stop accepting, drain, cut what outlives the grace."""
        if shutdown.accept_grace > 0:
            self.draining = True  # keep-alive clients get Connection: close from now on
            await asyncio.sleep(shutdown.accept_grace)
        self.stop_accepting()
        self.drain()
        deadline = self.loop.time() + shutdown.grace
        while self.conns and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.conns:
            log.warning("shutdown grace over: closing %d connections", len(self.conns))
        self.abort_all()
        self.close()

    def abort_all(self) -> None:
        for conn in list(self.conns):
            conn.abort()
        for conns in self.connections.values():
            conns.close_all()

    # -- the sweep ----------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        # Deadlines are set from this clock; one interval ahead, none fires early.
        self.clock = now + self.sweep_interval
        for conn in list(self.conns):
            if conn.deadline <= now:
                try:
                    conn.check_deadline(now)
                except Exception:
                    log.exception("error while enforcing a deadline")
                    conn.abort()
        cutoff = now - self.upstream_idle_timeout
        open_conns = len(self.conns)
        for conns in self.connections.values():
            if conns.idle:
                conns.close_idle_before(cutoff)
                open_conns += len(conns.idle)
            if conns.ejections and now - conns.ejected_until > EJECT_MAX:
                conns.ejections = 0
        if self.ejected:
            self._return_ejected(now)
        self.burst.check(open_conns)  # after a burst, give the memory back
        self.flush_log()
        self._schedule_sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.flush_log()

    # -- events -------------------------------------------------------------------------

    def finished(self, conn: ClientConn, ex: Exchange) -> None:
        """Every exchange ends here exactly once."""
        now = time.time()
        pool = ex.pool
        if self.metrics is not None:
            self.metrics.count_request(pool.name if pool else None, ex.status, now - ex.started)
        if self.access_log:
            backend = ex.backend
            line = orjson.dumps(
                {
                    "time": _iso_time(now),
                    "client": conn.peer.decode("latin-1"),
                    "method": ex.method.decode("latin-1"),
                    "target": ex.target.decode("latin-1"),
                    "status": ex.status,
                    "pool": pool.name if pool is not None else None,
                    "backend": backend.url if backend is not None else None,
                    "duration": now - ex.started,
                    "bytes": ex.response_bytes,
                    "request_id": ex.request_id.decode("latin-1") if ex.request_id else None,
                }
            )
            self._log_buffer.append(line)
            self._log_size += len(line) + 1
            if self._log_size > LOG_FLUSH_BYTES:
                self.flush_log()

    def flush_log(self) -> None:
        if not self._log_buffer:
            return
        data = b"\n".join(self._log_buffer) + b"\n"
        self._log_buffer = []
        self._log_size = 0
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError):
            pass

    # -- passive ejection ---------------------------------------------------------------

    def backend_failed(self, backend: BackendState) -> None:
        conns = backend.conns
        conns.failures += 1
        if conns.failures >= EJECT_AFTER and conns.up:
            self._eject(backend)

    def _eject(self, backend: BackendState) -> None:
        conns = backend.conns
        live = self.live
        # Panic threshold: never take out the last live backend of the whole route.
        others_live = any(
            b.up and b.conns is not conns
            for name, weight in live.weights
            if weight > 0
            for b in live.pools[name].backends
        )
        if not others_live:
            log.warning("backend %s keeps failing, but it is the last one live: kept", backend.url)
            conns.failures = 0
            return
        now = self.loop.time()
        conns.ejections += 1
        seconds = min(EJECT_MAX, EJECT_BASE * 2 ** (conns.ejections - 1))
        conns.ejected_until = now + seconds
        conns.failures = 0
        conns.update_up(now)
        conns.close_all()
        self.ejected.add(conns)
        live.refresh_health()
        log.warning(
            "backend %s ejected for %gs after %d failures in a row",
            backend.url,
            seconds,
            EJECT_AFTER,
        )

    def _return_ejected(self, now: float) -> None:
        back = [c for c in self.ejected if now >= c.ejected_until]
        for conns in back:
            self.ejected.discard(conns)
            conns.update_up(now)
            log.info("backend %s back from ejection", conns.backend.url)
        if back:
            self.live.refresh_health()

    def note_refusal(self, status: int, reason: str, peer: bytes) -> None:
        """One log line per reason per second at most: a flood must not flood the log."""
        now = time.monotonic()
        key = f"{status} {reason}"
        last = self._refusals_logged.get(key, 0.0)
        if now - last >= 1.0:
            self._refusals_logged[key] = now
            log.warning(
                "refused a request with %d: %s (from %s)", status, reason, peer.decode("latin-1")
            )

    def note_upstream_error(self, ex: Exchange, reason: str, what: object) -> None:
        if self.metrics is not None:
            self.metrics.count_upstream_error(ex.pool.name if ex.pool else None, reason)
        backend = ex.backend.url if ex.backend is not None else "-"
        key = f"upstream {reason} {backend}"
        now = time.monotonic()
        if now - self._refusals_logged.get(key, 0.0) >= 1.0:
            self._refusals_logged[key] = now
            log.warning("backend %s: %s (%s)", backend, reason, what)


_last_ms = 0
_last_text = ""


def _iso_time(now: float) -> str:
    """RFC 3339 UTC with milliseconds, formatted once per millisecond at most."""
    global _last_ms, _last_text
    ms = int(now * 1000)
    if ms != _last_ms:
        _last_ms = ms
        second, millis = divmod(ms, 1000)
        _last_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{millis:03d}Z"
    return _last_text

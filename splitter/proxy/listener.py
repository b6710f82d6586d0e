"""The proxy listener: accepting, the sweep, draining, and what every exchange shares.

`ProxyListener` is the `Context` of every exchange and the `Listener` of every client
connection. It holds the one `Live` snapshot the request path reads (`swap` replaces it;
a request finishes on the snapshot it started with), the keep-alive pools of the backends
by URL (kept across snapshots, so a weight change never drops a connection), the policy,
and the observers every finished exchange is handed to: the Prometheus counters, the
per-pool statistics recorder and the access log.

One periodic sweep serves every connection: it enforces their deadlines (a timestamp
check each, far cheaper than a timer per request), closes idle backend connections,
brings ejected backends back, flushes the access log, and gives memory back to the
system once a burst of connections is over (`splitter.memory`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final, cast

from splitter import memory
from splitter.config import Shutdown
from splitter.errors import UpstreamConnectError
from splitter.http1.request import ReadSettings
from splitter.observe.counters import Counters
from splitter.observe.stats import Recorder
from splitter.proxy.accesslog import AccessLog
from splitter.proxy.clientaddr import TrustedProxies
from splitter.proxy.downstream import ClientConn, Listener
from splitter.proxy.ejection import Ejector
from splitter.proxy.exchange import DONE, Exchange, ShadowTap
from splitter.proxy.policy import Policy
from splitter.proxy.shadowing import Shadowing
from splitter.proxy.upstream import BackendConnections, open_connection
from splitter.state import Live, ShadowPlan
from splitter.tls.certs import CertStore
from splitter.tls.transport import TLSTransport

__all__ = ["ProxyListener"]

log = logging.getLogger("splitter.proxy")

_LOG_EVERY: Final = 1.0


class ProxyListener(Listener):
    def __init__(
        self,
        live: Live,
        loop: asyncio.AbstractEventLoop,
        counters: Counters | None = None,
        recorder: Recorder | None = None,
        connector: Callable[[Exchange, BackendConnections], None] | None = None,
        watch: Callable[[Exchange], None] | None = None,
        certs: CertStore | None = None,
    ) -> None:
        self.ejector = Ejector(loop.time, self._health_changed)
        super().__init__(live, Policy(self.ejector, counters))
        self.loop = loop
        # How backend connections are opened: the event loop's, or a test's.
        self.connector = connector
        self.watch = watch  # one more observer of every finished exchange (tests)
        self.certs = certs  # the listener speaks TLS with these certificates
        self.conns: set[ClientConn] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.counters = counters
        self.recorder = recorder
        self.access = AccessLog()
        self.burst = memory.BurstWatch()
        self._refusals_logged: dict[str, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.read_settings = ReadSettings(live.config.limits, live.override_header)
        self.trusted = TrustedProxies()
        # The shadow copies (proxy.shadowing), connected like the exchanges' backends.
        self.shadowing = Shadowing(loop, live.config.limits, connector)
        self.swap(live)
        self.clock = loop.time() + self.sweep_interval

    # -- the live state -----------------------------------------------------------------

    def swap(self, live: Live) -> None:
        """Put a new snapshot in force; requests already started keep theirs."""
        config = live.config
        self.live = live
        self.limits = limits = config.limits
        self.read_timeout = config.timeouts.read
        self.connect_timeout = config.timeouts.connect
        self.upstream_idle_timeout = limits.upstream_idle_timeout
        self.access_log = config.access_log
        self.read_settings.limits = limits
        self.read_settings.override = live.override_header
        self.read_settings.segment_headers = live.segment_headers
        # Both apply to connections accepted from now on; open ones keep what they read.
        self.proxy_protocol = config.proxy_protocol
        self.http2 = config.http2
        if self.trusted.cidrs != config.trusted_proxies:
            self.trusted = TrustedProxies(config.trusted_proxies)
        pools = self.pools
        urls = set()
        h2c: set[str] = set()  # the backends of `protocol: h2c` pools
        for r in live.routes:
            for ps in r.pools.values():
                if ps.pool.protocol == "h2c":
                    h2c.update(b.url for b in ps.backends)
        for backend in live.backends():
            urls.add(backend.url)
            pool = pools.get(backend.url)
            h2 = backend.url in h2c
            if pool is None or (
                pool.max_field_bytes, pool.max_fields, pool.max_line, pool.max_idle, pool.tls,
                pool.h2 is not None,
            ) != (
                limits.max_header_bytes, limits.max_header_count, limits.max_request_line,
                limits.upstream_max_idle, backend.backend.tls, h2,
            ):  # fmt: skip
                if pool is not None:
                    pool.close_all()
                pool = pools[backend.url] = BackendConnections(backend.backend, limits)
                if h2 or backend.backend.tls is not None:
                    from splitter.proxy.h2upstream import H2Backend  # the h2 library

                    pool.h2_factory = functools.partial(H2Backend, limits=limits, loop=self.loop)
                    if h2:
                        pool.h2 = pool.h2_factory(pool)
        for url in [u for u in pools if u not in urls]:
            pools.pop(url).close_all()  # in-flight exchanges keep their own connection
        self.shadowing.swap(live)
        shortest = min(
            limits.header_timeout,
            limits.body_idle_timeout,
            limits.keepalive_timeout,
            config.timeouts.read,
            config.timeouts.connect,
            limits.upstream_idle_timeout,
        )
        self.sweep_interval = min(0.5, max(0.02, shortest / 10))

    def backend_down(self, url: str) -> None:
        """A backend failed its health checks: drop its idle connections."""
        pool = self.pools.get(url)
        if pool is not None:
            pool.close_all()

    def _health_changed(self) -> None:
        self.live.refresh_health()

    # -- what exchanges and connections ask of it ---------------------------------------

    def connect(self, ex: Exchange, pool: BackendConnections) -> None:
        if self.connector is not None:
            self.connector(ex, pool)
            return
        ex.connect_task = self.loop.create_task(self._connect(ex, pool))

    async def _connect(self, ex: Exchange, pool: BackendConnections) -> None:
        try:
            await open_connection(self.loop, pool, ex)
        except UpstreamConnectError as error:
            ex.connect_task = None
            ex.connect_failed(error)

    def shadow_begin(
        self, plan: ShadowPlan, ex: Exchange, pending: list[bytes] | None, pending_bytes: int
    ) -> ShadowTap | None:
        shadowing = self.shadowing
        shadowing.clock = self.clock
        copy = shadowing.begin(plan, ex.req, ex.conn.source, ex.client_addr)
        if copy is not None:
            copy.start(pending, pending_bytes, ex.body_complete)
        return copy

    def finished(self, ex: Exchange) -> None:
        """Every exchange ends here exactly once."""
        tap = ex.shadow
        if tap is not None:
            ex.shadow = None
            tap.primary_finished(ex.state == DONE, ex.status, ex.error not in ("", "refused"))
        if self.counters is not None:
            self.counters.observe(ex)
        if self.recorder is not None:
            self.recorder.observe(ex)
        if self.access_log:
            self.access.observe(ex)
        if self.watch is not None:
            self.watch(ex)

    def connection_opened(self, conn: ClientConn) -> None:
        conns = self.conns
        conns.add(conn)
        burst = self.burst
        if len(conns) > burst.peak:  # the sweep gives memory back once a burst is over
            burst.peak = len(conns)

    def connection_closed(self, conn: ClientConn) -> None:
        self.conns.discard(conn)

    def http2_session(self, conn: ClientConn) -> Any:
        from splitter.proxy.h2session import Session  # the h2 library, when it is used

        return Session(conn, self)

    def note_refusal(self, status: int, reason: str, peer: bytes) -> None:
        """One log line per reason per second at most: a flood must not flood the log."""
        now = time.monotonic()
        key = f"{status} {reason}"
        if now - self._refusals_logged.get(key, 0.0) >= _LOG_EVERY:
            self._refusals_logged[key] = now
            log.warning(
                "refused a request with %d: %s (from %s)", status, reason, peer.decode("latin-1")
            )

    def note_refused_connection(self, reason: str, peer: bytes) -> None:
        """A connection closed before any request (no valid PROXY header): one log line
        per reason per second at most."""
        now = time.monotonic()
        key = f"connection {reason}"
        if now - self._refusals_logged.get(key, 0.0) >= _LOG_EVERY:
            self._refusals_logged[key] = now
            log.warning("refused a connection: %s (from %s)", reason, peer.decode("latin-1"))

    # -- listening ----------------------------------------------------------------------

    async def listen(self, sock: Any) -> None:
        # The protocols are plain classes (asyncio calls them by their method names).
        certs = self.certs
        if certs is None:
            factory = cast("Callable[[], asyncio.Protocol]", lambda: ClientConn(self))
        else:  # the front context of the moment: a reload may change the TLS settings
            factory = cast(
                "Callable[[], asyncio.Protocol]",
                lambda: TLSTransport(ClientConn(self), certs.front),
            )
        server = await self.loop.create_server(factory, sock=sock, backlog=1024)
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
        """docs/operations.md#shutdown: accept grace, stop accepting, drain, cut what outlives the
        grace."""
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
        for pool in self.pools.values():
            pool.close_all()
        self.shadowing.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.access.flush()

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
            if (
                conn.head_deadline <= now
                or conn.body_deadline <= now
                or conn.upstream_deadline <= now
                or conn.send_deadline <= now
                or conn.idle_deadline <= now
            ):
                try:
                    conn.check_deadlines(now)
                except Exception:
                    log.exception("error while enforcing a deadline")
                    conn.abort()
        cutoff = now - self.upstream_idle_timeout
        open_conns = len(self.conns)
        for pool in self.pools.values():
            if pool.idle:
                pool.close_idle_before(cutoff)
                open_conns += len(pool.idle)
            if pool.h2 is not None:
                pool.h2.close_idle_before(self.loop.time() - self.upstream_idle_timeout)
                open_conns += pool.h2.open_links
        shadowing = self.shadowing
        shadowing.clock = self.clock
        if shadowing.legs:
            shadowing.sweep(now)
        for pool in shadowing.pools.values():
            if pool.idle:
                pool.close_idle_before(cutoff)
        self.ejector.sweep(now, self.live.backends())
        self.burst.check(open_conns)  # after a burst, give the memory back
        self.access.flush()
        self._schedule_sweep()

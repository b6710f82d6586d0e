"""Wiring: one splitter, from a loaded config to a clean exit.

    bind the listeners: proxy, admin, and metrics when configured (a busy port is a
    StartupError, before anything runs)
    -> state file (cookie key, runtime weights) -> Live snapshot
    -> the request path: a ProxyListener in this process, or `workers` processes
    -> admin aiohttp app on the admin socket (and the metrics app on its own)
    -> "splitter: listening on ..." on stderr
    -> wait for a signal: SIGHUP reloads; SIGTERM/SIGINT shut down (docs/operations.md#shutdown)

This process is the only one that changes state: the controller (weights, events, the
state file, the shared store), the config watcher and the health checks live here; with
workers, each change is sent to them (see `workers.py`). With `store:`, this process also
owns the connection to the store and keeps this replica in step with the fleet
(`fleet.py`): it connects (and takes up the fleet's cookie secret) before the proxy
serves, or starts from its state file when the store cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from splitter import config as config_mod
from splitter import memory
from splitter.admin.listener import KEEPALIVE_TIMEOUT, AdminListener, head_received
from splitter.admin.routes import make_admin_app, make_metrics_app
from splitter.admin.stream import Feed
from splitter.config import Config, Shadow
from splitter.control.controller import Controller, EventLog, bound_once
from splitter.control.fleet import Fleet
from splitter.control.health import HealthChecker
from splitter.control.reload import ConfigWatcher
from splitter.control.route import RouteControl
from splitter.errors import ConfigError, ConfigProblem, StartupError, StoreError
from splitter.observe.counters import Counters
from splitter.observe.metrics import Metrics
from splitter.observe.stats import Drained, Recorder, Window, by_route, per_process
from splitter.proxy.listener import ProxyListener
from splitter.rollout import RolloutEngine
from splitter.runtime import bind, configure_logging, new_event_loop, url_of
from splitter.shadow import Tally
from splitter.state import HealthTable, Live, StateFile, build_live
from splitter.tls import check_changed_files
from splitter.tls.certs import CertificateError, CertStore, watch_certificates
from splitter.tls.settings import groups_offered

if TYPE_CHECKING:  # multiprocessing is imported only when `workers` > 1
    from splitter.workers import WorkerPool

log = logging.getLogger("splitter")

STATS_EVERY = 0.25  # seconds between two drains of the statistics recorder
ROLLOUT_EVERY = 0.25  # seconds between two looks of the rollout judge
STORE_CONNECT = 3.0  # seconds a start waits for the store before going on without it
SETTLED_ALONE = 2  # seconds after which a second's statistics are complete: this process
SETTLED_SHARED = 4  # ... every replica (they share them every second)


def replica_id() -> str:
    """This replica's name in the store: its host name (a pod's name), made unique."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Splitter:
    """One running splitter: proxy listener, admin listener, state, lifecycle."""

    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config_path = config_path
        # With workers, each binds its own listening socket (SO_REUSEPORT); this one only
        # holds the port, so a busy port is still an error here, before anything starts.
        many = config.workers > 1
        self.proxy_sock = bind(config.listen, "proxy", listen=not many, reuse_port=many)
        try:
            self.admin_sock = bind(config.admin.listen, "admin")
        except StartupError:
            self.proxy_sock.close()
            raise
        self.metrics_sock = self._bind_metrics(config)
        self.state_file = StateFile(config.state_file)
        store = None
        if config.store is not None:
            from splitter.store.redisstore import RedisStore  # redis only when it is used

            store = RedisStore(config.store, replica_id())
        self.store = store
        self._config = config
        self.events = EventLog(store.replica if store is not None else "", store is not None)
        self.fleet = Fleet(store, self) if store is not None else None
        self.workers: WorkerPool | None = None
        self.metrics = Metrics(
            self._metrics_view,
            self._counters_view,
            self._rollout_view,
            self._store_view if store is not None else None,
            self._tls_view if config.tls is not None else None,
            self._shadow_view,
        )
        self.ready = False
        self.stopping = False
        self.health_table = HealthTable()  # backend health by URL, for this process's snapshots
        self.recorder = Recorder()
        self.feed = Feed()  # the dashboard's stream: stats, weights, events, rollouts
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._listeners: list[AdminListener] = []  # the admin and metrics listeners
        self._stats_task: asyncio.Task[None] | None = None
        self.server: ProxyListener | None = None  # the request path, when in this process
        # The proxy listener's certificates (startup fails here when one does not load); with
        # workers, each worker loads and watches its own, and these give the metrics.
        try:
            self.certs = CertStore(config.tls, config.http2) if config.tls is not None else None
        except CertificateError as exc:
            self.proxy_sock.close()
            self.admin_sock.close()
            if self.metrics_sock is not None:
                self.metrics_sock.close()
            raise StartupError(f"tls: {exc}") from None
        self._certs_task: asyncio.Task[None] | None = None
        self.live: Live | None = None
        self.health = HealthChecker(self._health_changed)
        self.watcher: ConfigWatcher | None = None
        self._settled = SETTLED_SHARED if store is not None else SETTLED_ALONE
        # One control per route, in config order (control/route.py).
        self.routes: dict[str, RouteControl] = {}
        for route in config.routes:
            self.routes[route.name] = self._new_route(route.name)
        self._rollout_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None  # webhooks and gates
        self._tasks: set[asyncio.Task[None]] = set()
        self._cookie_secret = b""
        self._reloading = False  # a reload puts every route's weights in force at once

    def _new_route(self, name: str) -> RouteControl:
        controller = Controller(
            self._config, self.state_file, self._install, self.store, route=name,
            events=self.events,
        )  # fmt: skip
        return RouteControl(self, controller, self._post, self._settled)

    @property
    def config(self) -> Config:
        return self._config

    def route_controls(self) -> list[RouteControl]:
        return list(self.routes.values())

    def route_control(self, name: str) -> RouteControl | None:
        return self.routes.get(name)

    @property
    def main(self) -> RouteControl | None:
        """The route the calls without a route act on (`Config.main_route`)."""
        main = self._config.main_route
        return self.routes.get(main.name) if main is not None else None

    @property
    def controller(self) -> Controller:
        """The main route's controller (the first route's, when there is no main route)."""
        main = self.main or next(iter(self.routes.values()))
        return main.controller

    @property
    def rollouts(self) -> RolloutEngine:
        main = self.main or next(iter(self.routes.values()))
        return main.rollouts

    @property
    def window(self) -> Window:
        main = self.main or next(iter(self.routes.values()))
        return main.window

    def _bind_metrics(self, config: Config) -> socket.socket | None:
        """The optional `metrics.listen` socket; on failure the other two are closed."""
        if config.metrics.listen is None:
            return None
        try:
            return bind(config.metrics.listen, "metrics")
        except StartupError:
            self.proxy_sock.close()
            self.admin_sock.close()
            raise

    @property
    def proxy_url(self) -> str:
        return url_of(self.proxy_sock, "https" if self._config.tls is not None else "http")

    @property
    def admin_url(self) -> str:
        return url_of(self.admin_sock)

    @property
    def metrics_url(self) -> str | None:
        return None if self.metrics_sock is None else url_of(self.metrics_sock)

    @property
    def replicas(self) -> int:
        """Live replicas sharing the store (this one included); 1 without a store."""
        return self.fleet.replicas if self.fleet is not None else 1

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.state_file.load()
        try:  # both may write the state file: it must be writable from the start
            self._cookie_secret = self.state_file.cookie_secret()
        except OSError as exc:
            where = os.path.abspath(self.state_file.path)
            raise StartupError(
                f"cannot write the state file {where} ({exc.strerror or exc}): "
                "state_file must be in a writable directory"
            ) from None
        if self.fleet is not None:
            await self.fleet.connect(STORE_CONNECT)  # the fleet's secret, before serving
        for route in self.route_controls():
            await route.controller.start()
        self.live = self._build_live(self._config)
        if self._config.workers > 1:
            from splitter.workers import WorkerPool

            self.workers = WorkerPool(self._config.workers, self._cookie_secret, self._add_stats)
            self._check_health_of(self._config)
            await self.workers.start(self._config, self._route_weights(), self._route_shadows())
        else:
            self.server = ProxyListener(
                self.live, loop, self.metrics.counters, self.recorder, certs=self.certs
            )
            self._check_health_of(self._config)
            await self.server.listen(self.proxy_sock)
            self._stats_task = loop.create_task(self._collect_stats(), name="stats")
        for route in self.route_controls():
            active = route.rollouts.active
            if active is not None and active.plan.pool not in route.controller.weights:
                # a state of elsewhere
                await route.cancel_rollout(f"pool {active.plan.pool} is not in the config")
        if self.fleet is None:
            for route in self.route_controls():
                await route.rollouts.take_over()  # the only process: it leads
        else:
            self.fleet.start()
        self._rollout_task = loop.create_task(self._run_rollouts(), name="rollouts")
        if self.certs is not None:
            log.info("TLS: %s; groups %s", "; ".join(self.certs.describe()), groups_offered())
            self._certs_task = loop.create_task(watch_certificates(self.certs), name="tls")
        admin_app = make_admin_app(self)  # the API, the statistics, the stream, the page
        self._runner = await self._serve_app(admin_app, self.admin_sock, "admin")
        if self.metrics_sock is not None:
            metrics_app = make_metrics_app(self)
            self._metrics_runner = await self._serve_app(metrics_app, self.metrics_sock, "metrics")
        self.ready = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload, "signal")
        if self.config_path is not None:
            self.watcher = ConfigWatcher(self.config_path, lambda: self.reload("file"))
            self.watcher.start()

    async def _serve_app(
        self, app: web.Application, sock: socket.socket, name: str
    ) -> web.AppRunner:
        """Serve an aiohttp app on `sock` within the admin listener's own limits (10 s for
        a head, 60 s idle keep-alive, at most 256 connections: adminlistener.py)."""
        app.middlewares.insert(0, head_received)  # before any other: the head is in
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_TIMEOUT
        )
        await runner.setup()
        assert runner.server is not None
        listener = AdminListener(sock, runner.server, name)
        listener.start()
        self._listeners.append(listener)
        return runner

    # -- the live state -----------------------------------------------------------------

    def _route_weights(self) -> dict[str, dict[str, float]]:
        """The weights in force, per route."""
        return {name: dict(route.controller.weights) for name, route in self.routes.items()}

    def _route_shadows(self) -> dict[str, Shadow | None]:
        """The shadow in force, per route (docs/shadow.md)."""
        return {name: route.shadow_in_force() for name, route in self.routes.items()}

    def shadow_tally(self, key: str) -> Tally:
        """The copies' tally of "route/pool": this process's, or its workers' summed."""
        if self.workers is not None:
            return self.workers.shadow_tally(key)
        if self.server is not None:
            tally = self.server.shadowing.tallies.get(key)
            if tally is not None:
                return tally
        return Tally()

    def _shadow_view(self) -> list[tuple[str, str, dict[str, int]]]:
        """Every "route/pool" with a shadow in force or that got copies in this replica,
        with its counts (zero from the start, as every metric)."""
        if self.workers is not None:
            seen = self.workers.shadow_keys()
        elif self.server is not None:
            seen = set(self.server.shadowing.tallies)
        else:
            seen = set()
        for name, control in self.routes.items():
            shadow = control.shadow_in_force()
            if shadow is not None:
                seen.add(f"{name}/{shadow.pool}")
        keys = sorted(seen)
        views = []
        for key in keys:
            route, _, pool = key.partition("/")
            counts = self.shadow_tally(key).counts
            views.append((route, pool, {**counts, "error": counts["errors"]}))
        return views

    def _build_live(self, config: Config) -> Live:
        self.recorder.max_per_address = per_process(
            config.rollouts.analysis.max_per_address, config.workers
        )
        return build_live(
            config,
            self._route_weights(),
            self._cookie_secret,
            self.health_table,
            self._route_shadows(),
        )

    async def _collect_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY)
            self._add_stats(self.recorder.drain())

    def _add_stats(self, drained: Drained) -> None:
        """Statistics of this process or of a worker: in the window, and for the fleet."""
        self.add_window(drained)
        if self.fleet is not None and drained:
            self.fleet.note_stats(drained)

    def add_window(self, drained: Drained) -> None:
        """Statistics (this replica's or another's) into each route's window; a request
        refused before a route was chosen shows with the main route."""
        main = self.main or next(iter(self.routes.values()))
        for name, part in by_route(drained, main.name).items():
            route = self.routes.get(name)
            if route is not None and part:
                route.window.add(part)

    @property
    def cookie_secret(self) -> bytes:
        return self._cookie_secret

    def set_cookie_secret(self, secret: bytes) -> None:
        """The fleet's generated cookie secret (the store's wins): kept, and in force
        (unless `sticky.secret` is set: that one wins)."""
        log.info("the fleet's generated cookie secret is taken up from the store")
        self._cookie_secret = secret
        self.state_file.data["cookie_secret"] = secret.hex()
        self.state_file.save()
        if self.workers is not None:
            self.workers.set_secret(secret)
        if self.live is not None:
            self.live = None  # rebuilt with the new secret
            self.live = self._build_live(self._config)
            if self.server is not None:
                self.server.swap(self.live)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rollouts (the engine's host) ---------------------------------------------------

    async def _run_rollouts(self) -> None:
        shown: dict[str, Any] = {}  # per route: the analysis last sent to the dashboard
        next_show: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ROLLOUT_EVERY)
            for name, route in list(self.routes.items()):
                try:
                    await route.rollouts.tick()
                except Exception:  # a bug must not stop the engine's clock: log it, go on
                    log.exception("error while judging the rollout of route %s", name)
                active = route.rollouts.active
                if active is not None and loop.time() >= next_show.get(name, 0.0):
                    # At most once a second while its analysis moves (transitions are
                    # published as they happen, by the engine's events).
                    body = active.to_json()
                    moving = (body["analysis"], body["reason"])
                    if moving != shown.get(name):
                        shown[name] = moving
                        next_show[name] = loop.time() + 1.0
                        self.feed.publish("rollout", route.rollout_json(body))

    @property
    def leader(self) -> bool:
        return self.fleet.leader if self.fleet is not None else True

    async def _post(self, url: str, body: dict[str, Any], timeout: float) -> int:
        """POST JSON to a webhook or gate (never through a proxy from the environment)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
            )
        async with self._http.post(url, json=body, allow_redirects=False) as response:
            return response.status

    def _tls_view(self) -> tuple[dict[str, int], list[tuple[str, float]]]:
        certs = self.certs
        return ({}, []) if certs is None else (certs.reloads, certs.expiry())

    def _store_view(self) -> tuple[bool, int]:
        store = self.store
        assert store is not None
        return store.up, int(getattr(store, "errors", 0))

    def _rollout_view(self) -> list[tuple[str, str, int, str, dict[tuple[str, str], int]]]:
        out = []
        for name, route in self.routes.items():
            r = route.rollouts.current
            if r is not None:
                step = r.step if r.active else -1
                out.append((name, r.plan.pool, step, r.status, route.rollouts.verdicts))
        return out

    # -- the live state, continued ------------------------------------------------------

    def _install(self, config: Config | None = None, weights: object = None) -> None:
        """Put the config and every route's weights in force: one reference swapped on the
        request path. (A controller calls it with its config and weights: the snapshot is
        made of every route's.)"""
        if self.live is None or self._reloading:
            return  # not started yet (start() builds the first snapshot), or in a reload
        config = self._config
        self.live = self._build_live(config)
        if self.server is not None:
            self.server.swap(self.live)
        if self.workers is not None:
            self.workers.install(config, self._route_weights(), self._route_shadows())
        self._check_health_of(config)

    def _check_health_of(self, config: Config) -> None:
        pools = [p for r in config.routes for p in r.pools]
        backends = {b.url: b for p in pools for b in p.backends}
        grpc = {b.url for p in pools if p.protocol == "h2c" for b in p.backends}
        self.health.update(backends, config.health_check, grpc)
        if self.live is not None:
            now = asyncio.get_running_loop().time()
            for url in backends:
                self.health_table.set_checked(url, self.health.is_up(url), now)
            self.live.refresh_health()

    def _health_changed(self, url: str, up: bool, what: str) -> None:
        if self.workers is not None:
            self.workers.set_health(url, up)
        if self.live is None or url not in self.health_table.by_url:
            return
        self.health_table.set_checked(url, up, asyncio.get_running_loop().time())
        if not up and self.server is not None:
            self.server.backend_down(url)
        self.live.refresh_health()
        log.warning("backend %s is %s (%s)", url, "up" if up else "down", what)

    def _metrics_view(
        self,
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, str, bool]]]:
        live = self.live
        routes = live.routes if live is not None else ()
        weights = [(r.name, pool, w) for r in routes for pool, w in r.weights]
        backends = [
            (r.name, p.name, b.url, self.backend_up(b.url))
            for r in routes
            for p in r.pools.values()
            for b in p.backends
        ]
        return weights, backends

    def _counters_view(self) -> Counters:
        return self.workers.counters() if self.workers is not None else self.metrics.counters

    def backend_up(self, url: str) -> bool:
        """Health checks and passive ejection together: what routing uses."""
        if self.workers is None:
            health = self.health_table.by_url.get(url)
            if health is not None:
                return health.up
        return self.health.is_up(url)

    def is_ready(self) -> bool:
        """A route has a pool with weight > 0 and a live backend, and we are not shutting
        down (one service down must not take the others out of a load balancer)."""
        live = self.live
        if not self.ready or live is None:
            return False
        return any(
            w > 0 and r.pools[name].has_live_backend() for r in live.routes for name, w in r.weights
        )

    # -- reload -------------------------------------------------------------------------

    def catch_up_with_file(self) -> None:
        """Apply an edit of the config file the watcher has not polled yet, so a runtime
        change made after the edit is recorded against the file as it is now."""
        if self.watcher is not None:
            self.watcher.check()

    def reload(self, source: str) -> ConfigError | None:
        """Re-read the config file; an invalid one changes nothing and is returned."""
        if self.config_path is None or self.live is None:
            return None
        if self.watcher is not None:
            self.watcher.mark_current()
        try:
            new = config_mod.load(self.config_path, files=check_changed_files(self._config))
            http2 = new.http2
            if (
                new.tls is not None
                and self.certs is not None
                and (new.tls != self._config.tls or http2 != self.certs.http2)
            ):
                self.certs.configure(new.tls, http2)
        except CertificateError as exc:  # the files changed since they were checked
            new_error = ConfigError([ConfigProblem("tls.certificates", str(exc))])
            self.metrics.count_reload(False)
            log.error("reload (%s) failed, the old config stays: %s", source, exc)
            return new_error
        except ConfigError as exc:
            self.metrics.count_reload(False)
            for line in exc.lines():
                log.error("reload (%s) failed, the old config stays: %s", source, line)
            return exc
        config = bound_once(self._config, new)
        self._config = config
        self._reloading = True
        try:
            for name in [n for n in self.routes if config.route(n) is None]:
                self._spawn(self._retire(self.routes.pop(name)))
            for route in config.routes:
                control = self.routes.get(route.name)
                if control is None:  # started like a route at startup, from the document
                    control = self.routes[route.name] = self._new_route(route.name)
                    self._spawn(self._start_route(control))
                    continue
                shadow_before = control.runtime_shadow()
                file_won = control.controller.apply_config(config, source, install=False)
                control.shadow_reloaded(shadow_before, source)
                if control.controller.pending_file is not None:
                    self._spawn(self._write_file_load(control))  # with a cancel of the rollout
                active = control.rollouts.active
                pool = active.plan.pool if active is not None else None
                if pool is not None and not file_won and pool not in control.controller.weights:
                    why = f"pool {pool} is no longer in the config"
                    self._spawn(control.cancel_rollout(why))
            self.routes = {r.name: self.routes[r.name] for r in config.routes}  # config order
        finally:
            self._reloading = False
        self._install()
        self.metrics.count_reload(True)
        return None

    async def _retire(self, route: RouteControl) -> None:
        """A route a reload removed: its active rollout ends cancelled (with an event)."""
        route.rollouts.shutdown()
        if route.rollouts.active is not None:
            await route.cancel_rollout(f"route {route.name} is no longer in the config")
        log.warning("route %s is no longer in the config", route.name)

    async def _start_route(self, route: RouteControl) -> None:
        """A route a reload added: its part of the shared document, and its rollout."""
        try:
            await route.controller.start()
            if self.leader:
                await route.rollouts.take_over()
        except StoreError:
            pass  # the store is down: the fleet's loop writes it once the store is back
        except Exception:
            log.exception("error while starting route %s", route.name)
        self._install()

    async def _write_file_load(self, route: RouteControl) -> None:
        try:
            await route.controller.catch_up()
        except StoreError:
            pass  # the store is down: written once it is back (fleet.py)
        except Exception:
            log.exception("error while writing the file's weights")

    # -- shutdown -----------------------------------------------------------------------

    def request_stop(self) -> None:
        if not self.stopping:
            log.info("shutting down: readiness off, draining connections")
        self.stopping = True
        self.ready = False
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.server is not None:
            await self.server.graceful_stop(self.config.shutdown)
        if self.workers is not None:
            await self.workers.stop()
        self.health.stop()
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self._rollout_task is not None:
            self._rollout_task.cancel()
        if self._certs_task is not None:
            self._certs_task.cancel()
        for route in self.route_controls():
            route.rollouts.shutdown()
        if self.fleet is not None:
            await self.fleet.stop()
        if self._http is not None:
            await self._http.close()
        for listener in self._listeners:
            listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        self.proxy_sock.close()
        log.info("stopped")


async def serve(splitter: Splitter, on_ready: Any = None) -> None:
    await splitter.start()
    memory.release(freeze=True)  # what parsing the config and starting up left behind
    metrics = f", metrics on {splitter.metrics_url}" if splitter.metrics_url else ""
    print(
        f"splitter: listening on {splitter.proxy_url}, admin on {splitter.admin_url}{metrics}",
        file=sys.stderr,
        flush=True,
    )
    if on_ready is not None:
        await on_ready(splitter)
    await splitter.wait_stopped()


def run(config: Config, config_path: str | None, on_ready: Any = None) -> None:
    """Run until a signal stops the process. Raises StartupError before serving."""
    configure_logging()
    splitter = Splitter(config, config_path)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(splitter, on_ready))

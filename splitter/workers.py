"""Worker processes: `workers: N` copies of the request path sharing the proxy port.

    primary (splitter run)                       worker 1..N (spawned, no aiohttp)
    config, weights, state file, events,  --->   ("live", config, weights, shadows)
    admin API, health checks, the watcher, --->  ("health", url, up)
    the shared store                       --->  ("secret", key): the fleet's cookie key
                                           --->  ("stop",)
    /metrics sums the workers' counters    <---  ("ready",), ("counters", snapshot, stats,
    and their per-pool statistics,                shadow tallies)
    and their shadow tallies

Rules:

- Each worker binds its own listening socket with SO_REUSEPORT; the kernel spreads new
  connections over them. The primary holds the port bound but not listening, so no other
  program takes it while a worker restarts.
- A change (admin call, reload, health) is sent to every worker as it happens: it is in
  force everywhere within a round trip on a local pipe.
- Only the primary writes the state file. A worker keeps nothing a restart could lose.
- Counters are cumulative per worker; a worker that dies leaves its last snapshot to the
  sum, so counters never go back.
- A worker that dies is started again (after a second, when it dies young). On SIGTERM the
  primary tells every worker to drain (docs/operations.md#shutdown) and waits for them.
- Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the primary alone
  decides how to stop. A worker whose primary is gone drains and exits.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from splitter import memory
from splitter.config import TLS, Config
from splitter.errors import StartupError
from splitter.observe.counters import Counters
from splitter.observe.stats import Drained, Recorder, per_process
from splitter.proxy.listener import ProxyListener
from splitter.runtime import bind, configure_logging, new_event_loop
from splitter.shadow import Tally
from splitter.state import HealthTable, Live, RouteShadows, build_live
from splitter.tls.certs import CertificateError, CertStore, watch_certificates

log = logging.getLogger("splitter.workers")

COUNTERS_EVERY = 0.25  # seconds between a worker's counter snapshots (and statistics)
READY_TIMEOUT = 20.0
YOUNG = 5.0  # a worker that dies younger than this is restarted after a pause

Conn = multiprocessing.connection.Connection


# -- the worker side ----------------------------------------------------------------------


def worker_main(
    index: int,
    config: Config,
    weights: dict[str, dict[str, float]],
    shadows: RouteShadows,
    secret: bytes,
    health: dict[str, bool],
    conn: Conn,
) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(f"[worker {index}]")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        code = runner.run(_serve(config, weights, shadows, secret, health, conn))
    sys.exit(code)


async def _serve(
    config: Config,
    weights: dict[str, dict[str, float]],
    shadows: RouteShadows,
    secret: bytes,
    health: dict[str, bool],
    conn: Conn,
) -> int:
    loop = asyncio.get_running_loop()
    try:
        sock = bind(config.listen, "proxy", reuse_port=True)
    except StartupError as exc:
        conn.send(("error", str(exc)))
        return 2
    table = HealthTable()
    current: list[Any] = [config, weights, shadows]
    secret_box = [secret]

    recorder = Recorder()

    def build() -> Live:
        cfg: Config = current[0]
        recorder.max_per_address = per_process(cfg.rollouts.analysis.max_per_address, cfg.workers)
        live = build_live(cfg, current[1], secret_box[0], table, current[2])
        now = loop.time()
        for url in table.by_url:
            table.set_checked(url, health.get(url, True), now)
        live.refresh_health()
        return live

    try:  # each worker loads and watches the certificates itself
        http2 = config.http2
        certs = CertStore(config.tls, http2) if config.tls is not None else None
    except CertificateError as exc:
        conn.send(("error", f"tls: {exc}"))
        return 2
    # The tls section and http2 (ALPN) the certificates follow.
    applied: list[tuple[TLS | None, bool]] = [(config.tls, http2)]
    counters = Counters()
    server = ProxyListener(build(), loop, counters, recorder, certs=certs)
    await server.listen(sock)
    watcher = loop.create_task(watch_certificates(certs)) if certs is not None else None
    stop = asyncio.Event()

    def on_message() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                kind = message[0]
                if kind == "live":
                    current[:] = message[1:4]
                    tls = current[0].tls
                    offer = (tls, current[0].http2)
                    if certs is not None and tls is not None and offer != applied[0]:
                        try:  # a change of the config's tls (the files are the watcher's)
                            certs.configure(tls, offer[1])
                            applied[0] = offer
                        except CertificateError as exc:  # the primary loaded them a moment ago
                            log.error("TLS: the certificates in force stay: %s", exc)
                    server.swap(build())
                elif kind == "secret":
                    secret_box[0] = message[1]
                    server.swap(build())
                elif kind == "health":
                    _, url, up = message
                    health[url] = up
                    if url in table.by_url:
                        table.set_checked(url, up, loop.time())
                        if not up:
                            server.backend_down(url)
                        server.live.refresh_health()
                elif kind == "stop":
                    stop.set()
        except (EOFError, OSError):  # the primary is gone
            loop.remove_reader(conn.fileno())
            stop.set()

    loop.add_reader(conn.fileno(), on_message)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    memory.release(freeze=True)
    conn.send(("ready",))

    async def report() -> None:
        while True:
            await asyncio.sleep(COUNTERS_EVERY)
            _send(conn, ("counters", counters.snapshot(), recorder.drain(), shadows_of()))

    def shadows_of() -> dict[str, Any]:
        return server.shadowing.snapshot()

    reporter = loop.create_task(report())
    await stop.wait()
    await server.graceful_stop(current[0].shutdown)
    reporter.cancel()
    if watcher is not None:
        watcher.cancel()
    _send(conn, ("counters", counters.snapshot(), recorder.drain(), shadows_of()))
    return 0


def _send(conn: Conn, message: tuple[Any, ...]) -> None:
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass


# -- the primary side ---------------------------------------------------------------------


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.conn: Conn | None = None
        self.started = 0.0
        self.ready: asyncio.Future[None] | None = None
        self.counters: dict[str, Any] | None = None
        self.shadow: dict[str, dict[str, Any]] | None = None  # its tallies, by "route/pool"


class WorkerPool:
    """The primary's view of its workers."""

    def __init__(self, count: int, secret: bytes, on_stats: Callable[[Drained], None]) -> None:
        self.count = count
        self.secret = secret
        self.on_stats = on_stats  # the workers' statistics, as they arrive
        self.context = multiprocessing.get_context("spawn")
        self.workers = [_Worker(i + 1) for i in range(count)]
        self.retired: list[dict[str, Any]] = []  # last counters of workers that died
        self.retired_shadow: list[dict[str, dict[str, Any]]] = []  # ... and their tallies
        self.shadows: RouteShadows = {}
        self.config: Config | None = None
        self.weights: dict[str, dict[str, float]] = {}
        self.health: dict[str, bool] = {}
        self.stopping = False
        self.restarts = 0

    async def start(
        self, config: Config, weights: dict[str, dict[str, float]], shadows: RouteShadows
    ) -> None:
        self.config, self.weights, self.shadows = config, weights, shadows
        for worker in self.workers:
            self._spawn(worker)
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await asyncio.gather(*(w.ready for w in self.workers if w.ready))
        except TimeoutError:
            await self.stop(grace_override=1.0)
            raise StartupError("workers did not start in time") from None
        except StartupError:
            await self.stop(grace_override=1.0)
            raise

    def _spawn(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker_main,
            args=(
                worker.index,
                self.config,
                self.weights,
                dict(self.shadows),
                self.secret,
                dict(self.health),
                child,
            ),
            name=f"splitter worker {worker.index}",
            daemon=False,
        )
        process.start()
        child.close()
        worker.process, worker.conn, worker.started = process, parent, time.monotonic()
        worker.ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_message, worker)
        loop.add_reader(process.sentinel, self._on_exit, worker)

    def _on_message(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while conn is not None and conn.poll():
                message = conn.recv()
                if message[0] == "counters":
                    worker.counters = message[1]
                    worker.shadow = message[3]
                    self.on_stats(message[2])
                elif message[0] == "ready" and worker.ready and not worker.ready.done():
                    worker.ready.set_result(None)
                elif message[0] == "error" and worker.ready and not worker.ready.done():
                    worker.ready.set_exception(StartupError(message[1]))
        except (EOFError, OSError):
            if conn is not None:
                asyncio.get_running_loop().remove_reader(conn.fileno())

    def _on_exit(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        process = worker.process
        loop.remove_reader(process.sentinel)
        self._on_message(worker)  # its last counters
        if worker.conn is not None:
            loop.remove_reader(worker.conn.fileno())
            worker.conn.close()
            worker.conn = None
        if worker.counters is not None:
            self.retired.append(worker.counters)
            worker.counters = None
        if worker.shadow is not None:
            self.retired_shadow.append(worker.shadow)
            worker.shadow = None
        process.join(0)
        if self.stopping:
            return
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(StartupError(f"worker {worker.index} exited at start"))
            return
        self.restarts += 1
        young = time.monotonic() - worker.started < YOUNG
        log.error(
            "worker %d (pid %d) exited with %s; starting it again",
            worker.index,
            process.pid,
            process.exitcode,
        )
        loop.call_later(1.0 if young else 0.0, self._respawn, worker)

    def _respawn(self, worker: _Worker) -> None:
        if not self.stopping:
            self._spawn(worker)

    def _broadcast(self, message: tuple[Any, ...]) -> None:
        for worker in self.workers:
            if worker.conn is not None:
                _send(worker.conn, message)

    def install(
        self, config: Config, weights: dict[str, dict[str, float]], shadows: RouteShadows
    ) -> None:
        self.config, self.weights, self.shadows = config, weights, shadows
        self._broadcast(("live", config, weights, dict(shadows)))

    def set_secret(self, secret: bytes) -> None:
        self.secret = secret
        self._broadcast(("secret", secret))

    def set_health(self, url: str, up: bool) -> None:
        self.health[url] = up
        self._broadcast(("health", url, up))

    def counters(self) -> Counters:
        current = [w.counters for w in self.workers if w.counters is not None]
        return Counters.merge([*self.retired, *current])

    def shadow_tally(self, key: str) -> Tally:
        """The tally of "route/pool", every worker's (and the retired ones') summed."""
        current = [w.shadow for w in self.workers if w.shadow is not None]
        snapshots = [t[key] for t in [*self.retired_shadow, *current] if key in t]
        return Tally.merge(snapshots)

    def shadow_keys(self) -> set[str]:
        current = [w.shadow for w in self.workers if w.shadow is not None]
        return {key for t in [*self.retired_shadow, *current] for key in t}

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None]

    async def stop(self, grace_override: float | None = None) -> None:
        """Drain every worker (docs/operations.md#shutdown) and wait for them; kill what outlives
        it."""
        self.stopping = True
        self._broadcast(("stop",))
        config = self.config
        assert config is not None
        limit = grace_override
        if limit is None:
            limit = config.shutdown.accept_grace + config.shutdown.grace + 5.0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(
            w.process is not None and w.process.is_alive() for w in self.workers
        ):
            await asyncio.sleep(0.05)
        for worker in self.workers:
            process = worker.process
            if process is not None and process.is_alive():
                log.warning("worker %d did not stop in time: killed", worker.index)
                os.kill(process.pid, signal.SIGKILL)
                process.join(1)
            if worker.conn is not None:
                self._on_message(worker)

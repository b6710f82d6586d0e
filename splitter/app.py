"""Wiring: one splitter process, from a loaded config to a clean exit.

    bind both listeners (a busy port is a StartupError, before anything runs)
    -> state file (cookie key) -> Live snapshot -> ProxyServer on the proxy socket
    -> admin aiohttp app on the admin socket -> "splitter: listening on ..." on stderr
    -> wait for a signal: SIGHUP reloads; SIGTERM/SIGINT shut down (contract 4b)

Shutdown: `/readyz` turns 503 at once; the proxy keeps accepting for
`shutdown.accept_grace`, then stops; idle keep-alive connections close, busy ones close
after their exchange (answered with `Connection: close`); whatever is still open after
`shutdown.grace` is cut; the process exits 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from typing import Any

from aiohttp import web

from splitter import config as config_mod
from splitter.admin import make_admin_app
from splitter.config import Address, Config
from splitter.control import Controller
from splitter.errors import ConfigError, StartupError
from splitter.health import HealthChecker
from splitter.metrics import Metrics
from splitter.reload import ConfigWatcher
from splitter.server import ProxyServer
from splitter.state import Live, StateFile, build_live
from splitter.upstream import BackendConnections

log = logging.getLogger("splitter")


def bind(address: Address, what: str) -> socket.socket:
    """A listening socket, or a StartupError naming the address and the reason."""
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {address} ({what}): {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(f"cannot listen on {address} ({what}): {reason}") from None
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Splitter:
    """One running splitter: proxy listener, admin listener, state, lifecycle."""

    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config_path = config_path
        self.proxy_sock = bind(config.listen, "proxy")
        try:
            self.admin_sock = bind(config.admin.listen, "admin")
        except StartupError:
            self.proxy_sock.close()
            raise
        self.state_file = StateFile(config.state_file)
        self.controller = Controller(config, self.state_file, self._install)
        self.metrics = Metrics(self._metrics_view)
        self.ready = False
        self.stopping = False
        self.connections: dict[str, BackendConnections] = {}
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.server: ProxyServer | None = None
        self.health = HealthChecker(self._health_changed)
        self.watcher: ConfigWatcher | None = None

    @property
    def config(self) -> Config:
        return self.controller.config

    @property
    def proxy_url(self) -> str:
        return _url(self.proxy_sock)

    @property
    def admin_url(self) -> str:
        return _url(self.admin_sock)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.state_file.load()
        self._cookie_secret = self.state_file.cookie_secret()
        weights = self.controller.start()
        self.server = ProxyServer(self._build_live(self.config, weights), self.connections, loop)
        self.server.metrics = self.metrics
        self._check_health_of(self.config)
        await self.server.listen(self.proxy_sock)
        self._runner = web.AppRunner(make_admin_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self.admin_sock).start()
        self.ready = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload, "signal")
        if self.config_path is not None:
            self.watcher = ConfigWatcher(self.config_path, lambda: self.reload("file"))
            self.watcher.start()

    # -- the live state -----------------------------------------------------------------

    def _build_live(self, config: Config, weights: dict[str, float]) -> Live:
        return build_live(
            config, weights, self._cookie_secret, self.connections, asyncio.get_running_loop()
        )

    def _install(self, config: Config, weights: dict[str, float]) -> None:
        """Put a config and weights in force: one reference swapped on the request path."""
        if self.server is None:
            return
        self.server.swap(self._build_live(config, weights))
        self._check_health_of(config)
        urls = {b.url for p in config.pools for b in p.backends}
        for url in [u for u in self.connections if u not in urls]:
            self.connections.pop(url).close_all()  # in-flight exchanges keep their own

    def _check_health_of(self, config: Config) -> None:
        backends = {b.url: (b.host, b.port) for p in config.pools for b in p.backends}
        self.health.update(backends, config.health_check)
        if self.server is not None:
            now = asyncio.get_running_loop().time()
            for url, conns in self.connections.items():
                conns.health_up = self.health.is_up(url)
                conns.update_up(now)
            self.server.live.refresh_health()

    def _health_changed(self, url: str, up: bool, what: str) -> None:
        conns = self.connections.get(url)
        if conns is None or self.server is None:
            return
        conns.health_up = up
        conns.update_up(asyncio.get_running_loop().time())
        if not up:
            conns.close_all()
        self.server.live.refresh_health()
        log.warning("backend %s is %s (%s)", url, "up" if up else "down", what)

    def _metrics_view(self) -> tuple[dict[str, float], list[tuple[str, str, bool]]]:
        config = self.controller.config
        backends = [
            (p.name, b.url, self.backend_up(b.url)) for p in config.pools for b in p.backends
        ]
        return dict(self.controller.weights), backends

    def backend_up(self, url: str) -> bool:
        """Health checks and passive ejection together: what routing uses."""
        conns = self.connections.get(url)
        return conns.up if conns is not None else self.health.is_up(url)

    def is_ready(self) -> bool:
        """A pool with weight > 0 has a live backend, and we are not shutting down."""
        if not self.ready or self.server is None:
            return False
        live = self.server.live
        return any(w > 0 and live.pools[name].has_live_backend() for name, w in live.weights)

    # -- reload -------------------------------------------------------------------------

    def reload(self, source: str) -> ConfigError | None:
        """Re-read the config file; an invalid one changes nothing and is returned."""
        if self.config_path is None or self.server is None:
            return None
        if self.watcher is not None:
            self.watcher.mark_current()
        try:
            new = config_mod.load(self.config_path)
        except ConfigError as exc:
            self.metrics.count_reload(False)
            for line in exc.lines():
                log.error("reload (%s) failed, the old config stays: %s", source, line)
            return exc
        self.controller.apply_config(new, source)
        self.metrics.count_reload(True)
        return None

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
        server = self.server
        assert server is not None
        if self.watcher is not None:
            self.watcher.stop()
        grace = self.config.shutdown
        if grace.accept_grace > 0:
            server.draining = True  # keep-alive clients get Connection: close from now on
            await asyncio.sleep(grace.accept_grace)
        server.stop_accepting()
        server.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace.grace
        while server.conns and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if server.conns:
            log.warning("shutdown grace over: closing %d connections", len(server.conns))
        self.health.stop()
        server.abort_all()
        server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("stopped")


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we run
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def serve(splitter: Splitter, on_ready: Any = None) -> None:
    await splitter.start()
    print(
        f"splitter: listening on {splitter.proxy_url}, admin on {splitter.admin_url}",
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

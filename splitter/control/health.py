"""Active health checks: a pure rise/fall rule per backend, and the loop that probes.

Rules (docs/configuration.md#health-checks-and-failover):

- A backend starts healthy and is probed at once, then every `interval`.
- A probe is `GET <path>` on a new connection with `Connection: close`; an answer with a
  status from 200 to 399 within `timeout` is a success, anything else a failure.
- A backend of an `h2c` pool is probed with gRPC's health check instead
  (`http2.probe.probe_grpc`: `grpc.health.v1.Health/Check` over a new HTTP/2 connection):
  SERVING within `timeout` is a success, anything else a failure.
- `unhealthy_threshold` failures in a row take a healthy backend down;
  `healthy_threshold` successes in a row bring a down backend back.
- Health belongs to the backend URL, not to a config snapshot, so a reload keeps it.
- What a probe saw names the probe and, for a failure the config can cause, the key to
  change: it is the one line an operator reads when every request gets 503, logged once
  per transition (the caller logs `on_change`), never once per probe.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass

from splitter.config import Backend, BackendTLS, HealthCheck
from splitter.http2.probe import probe_grpc
from splitter.tls.backends import CAFileError, client_context

log = logging.getLogger("splitter.health")

# OpenSSL's verification results that a pool's `tls.ca` answers: no issuer known, or a
# self-signed certificate (X509_V_ERR_*: 2, 18, 19, 20, 21).
_UNKNOWN_ISSUER = frozenset((2, 18, 19, 20, 21))


@dataclass(slots=True)
class RiseFall:
    """The health of one backend as a function of its probe results."""

    up: bool = True
    successes: int = 0
    failures: int = 0

    def record(self, ok: bool, rule: HealthCheck) -> bool:
        """Count one probe result; True when `up` changed."""
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.up and self.successes >= rule.healthy_threshold:
                self.up = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.up and self.failures >= rule.unhealthy_threshold:
                self.up = False
                return True
        return False


async def probe(
    host: str, port: int, path: str, timeout: float, tls: BackendTLS | None = None
) -> tuple[bool, str]:
    """One health probe: (ok, what happened), e.g. "GET /healthz answered 404; set
    health_check.path to a path your backend answers with 200". An https:// backend is
    probed over TLS, verified as its requests are."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            if tls is None:
                reader, writer = await asyncio.open_connection(host, port)
            else:
                try:
                    context = client_context(tls)
                except CAFileError as exc:
                    return False, f"GET {path}: {exc}"
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host
                )
            hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: splitter-health\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
    except TimeoutError:
        return False, f"GET {path}: no answer within {timeout:g}s (health_check.timeout)"
    except ssl.SSLCertVerificationError as exc:
        what = f"GET {path}: TLS: {exc.verify_message}"
        if exc.verify_code in _UNKNOWN_ISSUER:
            what += "; set the pool's tls.ca"
        return False, what
    except ssl.SSLError as exc:
        return False, f"GET {path}: TLS: {exc.reason or exc}"
    except OSError as exc:
        return False, f"GET {path}: {exc.strerror or type(exc).__name__}"
    finally:
        if writer is not None:
            writer.close()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False, f"GET {path}: not an HTTP answer"
    status = int(parts[1])
    what = f"GET {path} answered {status}"
    if 400 <= status < 500:  # most often a path the backend does not serve
        what += "; set health_check.path to a path your backend answers with 200"
    return 200 <= status < 400, what


class HealthChecker:
    """Probes every backend of the current config; tells `on_change` when one flips."""

    def __init__(self, on_change: Callable[[str, bool, str], None]) -> None:
        self.on_change = on_change
        self.states: dict[str, RiseFall] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.rule = HealthCheck()
        # How each probe loop probes: the backend's TLS settings, and whether it is gRPC's.
        self.probed: dict[str, tuple[BackendTLS | None, bool]] = {}

    def is_up(self, url: str) -> bool:
        state = self.states.get(url)
        return True if state is None else state.up

    def update(
        self, backends: dict[str, Backend], rule: HealthCheck, grpc: Collection[str] = ()
    ) -> None:
        """Probe exactly these backends (by URL) from now on; those in `grpc` (the
        backends of an h2c pool) with gRPC's health check."""
        restart = rule != self.rule
        self.rule = rule
        for url in list(self.tasks):
            if url not in backends or restart:
                self.tasks.pop(url).cancel()
                if url not in backends:
                    self.states.pop(url, None)
                    self.probed.pop(url, None)
        for url, backend in backends.items():
            how = (backend.tls, url in grpc)
            if url in self.tasks and self.probed.get(url) != how:
                self.tasks.pop(url).cancel()  # its TLS settings or its protocol changed
            if url not in self.tasks:
                self.states.setdefault(url, RiseFall())
                self.probed[url] = how
                self.tasks[url] = asyncio.get_running_loop().create_task(
                    self._loop(url, backend.host, backend.port, *how), name=f"health {url}"
                )

    async def _loop(
        self, url: str, host: str, port: int, tls: BackendTLS | None, grpc: bool
    ) -> None:
        rule = self.rule
        state = self.states[url]
        while True:
            if grpc:
                ok, what = await probe_grpc(host, port, rule.timeout)
            else:
                ok, what = await probe(host, port, rule.path, rule.timeout, tls)
            if state.record(ok, rule):
                self.on_change(url, state.up, what)
            await asyncio.sleep(rule.interval)

    def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

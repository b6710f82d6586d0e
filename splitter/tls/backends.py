"""Client contexts for https:// backends (docs/configuration.md#https-backends).

Verified against the system's CAs, or the pool's `tls.ca` file alone; `verify: false`
turns verification off only where the config says so. SNI and the name checked are the
backend URL's host (an IP address is checked against the certificate's IP addresses and
sends no SNI, as RFC 6066 asks). TLS 1.2 or newer; ALPN http/1.1.

A context is built once per (settings, CA file as it is on disk) and shared by every
connection and health probe of those backends: loading the system's CAs takes tens of
milliseconds, far too long for each connection.
"""

from __future__ import annotations

import errno
import os
import ssl
import stat

from splitter.config import DEFAULT_ROUTE, BackendTLS, Config, ConfigProblem

__all__ = ["check_backend_files", "client_context"]

_contexts: dict[tuple[BackendTLS, tuple[int, int, int] | None], ssl.SSLContext] = {}


def _ca_signature(tls: BackendTLS) -> tuple[int, int, int] | None:
    if tls.ca is None:
        return None
    try:
        st = os.stat(tls.ca)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def client_context(tls: BackendTLS) -> ssl.SSLContext:
    """The context for backends with these settings; OSError or ssl.SSLError when the CA
    file does not load (checked with the config: `check_backend_files`)."""
    key = (tls, _ca_signature(tls))
    context = _contexts.get(key)
    if context is None:
        if tls.verify:
            if tls.ca is not None:
                _regular_file(tls.ca)
            context = ssl.create_default_context(cafile=tls.ca)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        if len(_contexts) > 64:  # settings come from the config: a few at most
            _contexts.clear()
        _contexts[key] = context
    return context


def _regular_file(path: str) -> None:
    """OSError unless `path` is a regular file, found out without blocking: a FIFO put in
    the CA file's place would hold the event loop in OpenSSL's open (health probes look at
    the file every time)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    finally:
        os.close(fd)


def check_backend_files(config: Config) -> list[ConfigProblem]:
    """A pool's `tls.ca` that does not load, at its YAML path."""
    problems = []
    seen: set[str] = set()
    top_level = len(config.routes) == 1 and config.routes[0].name == DEFAULT_ROUTE
    for i, route in enumerate(config.routes):
        for pool in route.pools:
            for backend in pool.backends:
                tls = backend.tls
                if tls is None or tls.ca is None or tls.ca in seen:
                    continue
                seen.add(tls.ca)
                where = "pools" if top_level else f"routes[{i}].pools"
                try:
                    client_context(tls)
                except OSError as exc:
                    problems.append(
                        ConfigProblem(
                            f"{where}.{pool.name}.tls.ca",
                            f"cannot read {tls.ca}: {exc.strerror or exc}",
                        )
                    )
                except ssl.SSLError as exc:
                    problems.append(
                        ConfigProblem(
                            f"{where}.{pool.name}.tls.ca",
                            f"{tls.ca} holds no CA certificate ({exc.reason or exc})",
                        )
                    )
    return problems

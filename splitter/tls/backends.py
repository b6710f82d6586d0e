"""Client contexts for https:// backends (docs/configuration.md#https-backends).

Verified against the system's CAs, or the pool's `tls.ca` file alone; `verify: false`
turns verification off only where the config says so. SNI and the name checked are the
backend URL's host (an IP address is checked against the certificate's IP addresses and
sends no SNI, as RFC 6066 asks). TLS 1.2 or newer. ALPN: `h2` then `http/1.1` for the
request path's connections (a backend that picks `h2` gets HTTP/2 streams:
`splitter.proxy.h2upstream`), `http/1.1` alone for health probes (a `GET`).

A context is built once per (settings, CA file as it is on disk: its inode, size and
modification time) and shared by every connection and health probe of those backends:
loading the system's CAs takes tens of milliseconds, far too long for each connection,
while a stat of the CA file is not. So a rotated CA file reaches the next connection and
the next probe alike; a CA file that stops loading (gone, half written, not PEM) leaves
the last context that loaded in use, with one warning, until it loads again.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
import stat
from collections.abc import Collection

from splitter.config import DEFAULT_ROUTE, BackendTLS, Config, ConfigProblem

__all__ = ["CAFileError", "check_backend_files", "client_context"]

log = logging.getLogger("splitter.tls")

_contexts: dict[tuple[BackendTLS, tuple[int, int, int] | None, bool], ssl.SSLContext] = {}
_last_good: dict[tuple[BackendTLS, bool], ssl.SSLContext] = {}


class CAFileError(Exception):
    """A pool's `tls.ca` that does not load, and none loaded before; the message names it."""


def _ca_signature(tls: BackendTLS) -> tuple[int, int, int] | None:
    if tls.ca is None:
        return None
    try:
        st = os.stat(tls.ca)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def client_context(tls: BackendTLS, h2: bool = False) -> ssl.SSLContext:
    """The context for backends with these settings (the module docstring); `h2`: ALPN
    offers h2 first. CAFileError when the CA file does not load and never did
    (`check_backend_files` checks it with the config)."""
    key = (tls, _ca_signature(tls), h2)
    context = _contexts.get(key)
    if context is not None:
        return context
    try:
        context = _build(tls, h2)
    except (OSError, ssl.SSLError) as exc:
        why = _why(tls, exc)
        last = _last_good.get((tls, h2))
        if last is None:
            raise CAFileError(why) from None
        log.warning("%s: the CA certificates loaded before stay in use", why)
        context = last  # and not tried again until the file changes
    else:
        _last_good[(tls, h2)] = context
    if len(_contexts) > 64:  # settings come from the config: a few at most
        _contexts.clear()
    _contexts[key] = context
    return context


def _build(tls: BackendTLS, h2: bool = False) -> ssl.SSLContext:
    if tls.verify:
        if tls.ca is not None:
            _regular_file(tls.ca)
        context = ssl.create_default_context(cafile=tls.ca)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2", "http/1.1"] if h2 else ["http/1.1"])
    return context


def _why(tls: BackendTLS, exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"tls.ca {tls.ca} holds no CA certificate ({exc.reason or exc})"
    return f"cannot read tls.ca {tls.ca}: {exc.strerror or exc}"


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


def check_backend_files(
    config: Config, skip: Collection[BackendTLS | None] = ()
) -> list[ConfigProblem]:
    """A pool's `tls.ca` that does not load, at its YAML path (but for settings in `skip`)."""
    problems = []
    seen: set[str] = set()
    top_level = len(config.routes) == 1 and config.routes[0].name == DEFAULT_ROUTE
    for i, route in enumerate(config.routes):
        for pool in route.pools:
            for backend in pool.backends:
                tls = backend.tls
                if tls is None or tls.ca is None or tls.ca in seen or tls in skip:
                    continue
                seen.add(tls.ca)
                where = "pools" if top_level else f"routes[{i}].pools"
                try:
                    _build(tls)  # as it is now, not the last one that loaded
                except (OSError, ssl.SSLError) as exc:
                    problems.append(ConfigProblem(f"{where}.{pool.name}.tls.ca", _why(tls, exc)))
    return problems

"""The proxy listener's certificates: loaded, chosen by SNI, reloaded when their files change.

Theory of operation
-------------------
Each `tls.certificates` entry is loaded into a server context of its own (`settings`). The
listener starts every handshake on the *front* context of the moment (`front`, read at each
accept), and a connection keeps the context it was handed, so open connections go on.

With several entries, the front context lives as long as the TLS settings: its SNI callback
picks the entry for the client's server name and moves the handshake onto that entry's
current context. OpenSSL calls it for every ClientHello, with or without SNI, so the
callback is also how a reloaded certificate reaches new handshakes. Session tickets are
sealed with the front context's keys, so a reload does not end them.

With one entry (the common case), its own context is the front: no callback and no move,
about a tenth of a handshake's Python time saved. A reload of it puts the new context in
front; tickets sealed by the old one then get a full handshake, once.

The choice (docs/configuration.md#tls): a DNS name of the certificate's subjectAltName
equal to the server name (case-insensitive, a trailing dot ignored), else a `*.` name
covering exactly its first label; the first entry with such a name wins; no SNI or no
match: the first entry.

Reload: every 0.5 s (`watch_certificates`, the file work in a thread) each entry's two
files are stat'ed, following symbolic links, so an in-place write, a rename over the file
and a Kubernetes Secret's `..data` link swap all change what it sees. An entry is loaded
again once its files are unchanged over one look (a file half written is not read), so
within about 1 s of the last write. A pair that does not load keeps the entry's old
context: one warning naming the file and the reason, one `error` reload counted; the same
files are not tried again until they change. A config reload loads what its `tls` changed
(all or nothing); the watcher's result for entries a reload replaced meanwhile is dropped.

Validation is the same at startup, on a config reload and in `splitter check`:
`load_pair` reads the files (a missing, unreadable or non-PEM file, an encrypted key, a key
that is not the certificate's) and raises `CertificateError` with the path and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from splitter.config import TLS, CertificatePair, ConfigProblem
from splitter.tls.settings import server_context

__all__ = [
    "CertStore", "CertificateError", "Loaded", "check_files", "date_of", "load_pair",
    "watch_certificates",
]  # fmt: skip

log = logging.getLogger("splitter.tls")

POLL_EVERY: Final = 0.5  # seconds between two looks at the files
MAX_PEM: Final = 1 << 20  # bytes: a certificate chain or key file larger than this is refused

Signature = tuple[tuple[int, int, int, int, int] | str, tuple[int, int, int, int, int] | str]


class CertificateError(Exception):
    """A certificate pair that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """One certificate pair, loaded."""

    pair: CertificatePair
    context: ssl.SSLContext
    names: tuple[str, ...]  # the DNS names of its subjectAltName, lower case
    not_after: float  # unix seconds
    signature: Signature

    @property
    def name(self) -> str:
        """Its first DNS name (the metrics label), or the certificate's file name."""
        return self.names[0] if self.names else os.path.basename(self.pair.cert)


def _stat(path: str) -> tuple[int, int, int, int, int] | str:
    try:
        st = os.stat(path)  # follows links: a swapped `..data` changes the inode
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def signature(pair: CertificatePair) -> Signature:
    return (_stat(pair.cert), _stat(pair.key))


def _read(path: str, what: str) -> bytes:
    try:
        # Not blocking: a FIFO put in a file's place would hold the event loop in open().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise CertificateError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CertificateError(f"{what} {path} is not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_PEM + 1)
    except OSError as exc:
        raise CertificateError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PEM:
        raise CertificateError(f"{what} {path} is larger than 1 MiB")
    return data


def _decode(path: str) -> dict[str, Any]:
    # The one reader of a certificate file's fields in the standard library.
    decode: Callable[[str], dict[str, Any]] = ssl._ssl._test_decode_cert  # type: ignore[attr-defined]
    return decode(path)


def load_pair(pair: CertificatePair, min_version: str = "1.2", http2: bool = True) -> Loaded:
    """Load one pair into a context of its own; CertificateError says what is wrong."""
    before = signature(pair)
    cert = _read(pair.cert, "certificate")
    key = _read(pair.key, "key")
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise CertificateError(f"certificate {pair.cert} is not a PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise CertificateError(f"key {pair.key} is not a PEM private key")
    if b"ENCRYPTED" in key:
        raise CertificateError(
            f"key {pair.key} is encrypted: splitter needs it unencrypted (protect the file "
            "with its permissions)"
        )
    context = server_context(min_version, http2)
    try:
        context.load_cert_chain(pair.cert, pair.key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise CertificateError(
                f"key {pair.key} does not match certificate {pair.cert}"
            ) from None
        raise CertificateError(
            f"cannot load {pair.cert} with {pair.key}: {exc.reason or exc}"
        ) from None
    except OSError as exc:  # the files went away between the reads and the load
        raise CertificateError(f"cannot read {pair.cert}: {exc.strerror or exc}") from None
    try:
        fields = _decode(pair.cert)
        not_after = ssl.cert_time_to_seconds(fields["notAfter"])
    except (ssl.SSLError, OSError, KeyError, ValueError) as exc:
        raise CertificateError(f"cannot read certificate {pair.cert}: {exc}") from None
    names = tuple(
        str(value).lower().rstrip(".")
        for kind, value in fields.get("subjectAltName", ())
        if kind == "DNS"
    )
    return Loaded(pair, context, names, float(not_after), before)


def _no_password() -> bytes:
    raise CertificateError("the key is encrypted: splitter needs it unencrypted")


def check_files(
    tls: TLS | None, expired: bool = False, now: float | None = None
) -> list[ConfigProblem]:
    """The problems of the config's certificate files, each at its YAML path: those that
    refuse a start or a reload, and with `expired` an expired certificate too (`splitter
    check`; a running splitter warns of it)."""
    if tls is None:
        return []
    now = time.time() if now is None else now
    problems = []
    for i, pair in enumerate(tls.certificates):
        path = f"tls.certificates[{i}]"
        try:
            loaded = load_pair(pair, tls.min_version)
        except CertificateError as exc:
            problems.append(ConfigProblem(path, str(exc)))
            continue
        if expired and loaded.not_after <= now:
            problems.append(
                ConfigProblem(
                    path, f"certificate {pair.cert} expired on {date_of(loaded.not_after)}"
                )
            )
    return problems


def date_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


class CertStore:
    """The certificates in force, the front context, and the reload counts."""

    def __init__(self, tls: TLS, http2: bool = True) -> None:
        """Load every pair; CertificateError (naming the first bad file) when one fails.
        `http2`: ALPN offers h2 (config `http2`)."""
        self.reloads = {"success": 0, "error": 0}
        self.min_version = tls.min_version
        self.http2 = http2
        self._sni = self._front(tls.min_version, http2)  # the front with several certificates
        self.front = self._sni
        self.entries: list[Loaded] = []
        self._pending: list[Signature | None] = []
        self._failed: list[Signature | None] = []
        self.configure(tls)

    def _front(self, min_version: str, http2: bool) -> ssl.SSLContext:
        front = server_context(min_version, http2)
        front.sni_callback = self._choose
        quiet_server_names()
        return front

    def configure(self, tls: TLS, http2: bool | None = None) -> None:
        """Put the config's certificates in force (startup, a config reload): all of them
        or, when one does not load, none (CertificateError)."""
        if http2 is None:
            http2 = self.http2
        same = tls.min_version == self.min_version and http2 == self.http2
        by_pair = {entry.pair: entry for entry in self.entries}
        entries = []
        for pair in tls.certificates:
            old = by_pair.get(pair)
            if old is not None and same:
                if old.signature == signature(pair):
                    entries.append(old)
                    continue
            entries.append(load_pair(pair, tls.min_version, http2))
        if not same:
            self._sni = self._front(tls.min_version, http2)
            self.min_version = tls.min_version
            self.http2 = http2
        self._install(entries)
        self._pending = [None] * len(entries)
        self._failed = [None] * len(entries)
        for entry in entries:
            if entry.not_after <= time.time():
                log.warning(
                    "TLS: certificate %s (%s) expired on %s",
                    entry.pair.cert, entry.name, date_of(entry.not_after),
                )  # fmt: skip

    def _install(self, entries: list[Loaded]) -> None:
        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        for entry in entries:
            for name in entry.names:
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], entry.context)
                else:
                    exact.setdefault(name, entry.context)
        # One assignment each: a handshake in between sees the old table or the new one.
        self.entries = entries
        self._exact = exact
        self._wildcard = wildcard
        self._default = entries[0].context
        self.front = entries[0].context if len(entries) == 1 else self._sni

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        """The context for a ClientHello's server name (the module docstring)."""
        if server_name:
            name = server_name.lower().rstrip(".")
            context = self._exact.get(name)
            if context is not None:
                return context
            label, dot, parent = name.partition(".")
            if dot and label:  # an empty label is no label for `*.` to cover
                context = self._wildcard.get(parent)
                if context is not None:
                    return context
        return self._default

    def _choose(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        context = self.context_for(server_name)
        if conn.context is not context:
            conn.context = context

    # -- reloading ----------------------------------------------------------------------

    def poll(self) -> None:
        """Load again each pair whose files changed and have stayed so over one poll
        (`watch_certificates` does the same with the file work off the event loop)."""
        entries = self.entries
        due = self.due([signature(e.pair) for e in entries])
        version, http2 = self.min_version, self.http2
        self.apply(entries, [(i, sig, try_load(entries[i].pair, version, http2)) for i, sig in due])

    def due(self, signatures: list[Signature]) -> list[tuple[int, Signature]]:
        """Which entries to load again, given their files' signatures now (in the order
        of `entries`): those changed since the last look and unchanged since."""
        due = []
        for i, (entry, now) in enumerate(zip(self.entries, signatures, strict=True)):
            if now == entry.signature or now == self._failed[i]:
                self._pending[i] = None
            elif now != self._pending[i]:
                self._pending[i] = now  # changed: load it once it holds still
            else:
                self._pending[i] = None
                due.append((i, now))
        return due

    def apply(
        self, looked_at: list[Loaded], results: list[tuple[int, Signature, Loaded | str]]
    ) -> None:
        """Put in force what loaded; count and log each result. Nothing when the entries
        changed meanwhile (a config reload: it loaded its own)."""
        if looked_at is not self.entries or not results:
            return
        entries = list(looked_at)
        changed = False
        for i, sig, loaded in results:
            if isinstance(loaded, str):
                self._failed[i] = sig
                self.reloads["error"] += 1
                log.warning("TLS: keeping the certificate in force: %s", loaded)
                continue
            self._failed[i] = None
            self.reloads["success"] += 1
            entries[i] = loaded
            changed = True
            log.info(
                "TLS: reloaded %s (%s), valid until %s",
                loaded.pair.cert, ", ".join(loaded.names) or "no DNS names",
                date_of(loaded.not_after),
            )  # fmt: skip
            if loaded.not_after <= time.time():
                log.warning(
                    "TLS: certificate %s (%s) expired on %s",
                    loaded.pair.cert, loaded.name, date_of(loaded.not_after),
                )  # fmt: skip
        if changed:
            self._install(entries)

    def expiry(self) -> list[tuple[str, float]]:
        """(name, notAfter) of each certificate in force."""
        seen: dict[str, float] = {}
        for entry in self.entries:  # two with the same name: the one that ends first
            seen[entry.name] = min(seen.get(entry.name, entry.not_after), entry.not_after)
        return list(seen.items())

    def describe(self) -> Sequence[str]:
        return [f"{e.name} ({e.pair.cert}, until {date_of(e.not_after)})" for e in self.entries]


_previous_hook: Callable[[Any], object] | None = None


def _drop_server_name_errors(unraisable: Any) -> None:
    exc = unraisable.exc_value
    if (
        isinstance(exc, UnicodeDecodeError)
        and exc.encoding == "ascii"
        and isinstance(unraisable.object, bytes)
    ):
        return  # a server name that is not ASCII (quiet_server_names)
    (_previous_hook or sys.__unraisablehook__)(unraisable)


def quiet_server_names() -> None:
    """Python's SNI callback cannot decode a server name that is not ASCII (RFC 6066 names
    are; OpenSSL passes any byte but NUL on): the handshake fails, which the TLS shell notes
    as a refused connection (rate-limited), and CPython reports the UnicodeDecodeError, with
    the name's bytes, to `sys.unraisablehook`: a traceback on stderr for every such
    ClientHello, which a client could send by the thousand. Those reports are dropped;
    anything else goes to the hook that was in place."""
    global _previous_hook
    if sys.unraisablehook is not _drop_server_name_errors:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _drop_server_name_errors


def try_load(pair: CertificatePair, min_version: str, http2: bool = True) -> Loaded | str:
    """`load_pair`, its error as text."""
    try:
        return load_pair(pair, min_version, http2)
    except CertificateError as exc:
        return str(exc)


def _signatures(pairs: list[CertificatePair]) -> list[Signature]:
    return [signature(p) for p in pairs]


def _load_due(
    pairs: list[CertificatePair],
    due: list[tuple[int, Signature]],
    min_version: str,
    http2: bool = True,
) -> list[tuple[int, Signature, Loaded | str]]:
    return [(i, sig, try_load(pairs[i], min_version, http2)) for i, sig in due]


async def watch_certificates(store: CertStore) -> None:
    """Look at the files every POLL_EVERY seconds, for as long as the listener runs. The
    stats and loads run in a thread: a file system that stops answering (a hard NFS
    mount) holds this loop, never the event loop; the decisions are made on the loop."""
    while True:
        await asyncio.sleep(POLL_EVERY)
        try:
            entries = store.entries
            pairs = [e.pair for e in entries]
            signatures = await asyncio.to_thread(_signatures, pairs)
            if entries is not store.entries:
                continue  # a config reload came in between
            due = store.due(signatures)
            if due:
                results = await asyncio.to_thread(
                    _load_due, pairs, due, store.min_version, store.http2
                )
                store.apply(entries, results)
        except Exception:  # a bug here must not end the reloads
            log.exception("TLS: error while looking at the certificate files")

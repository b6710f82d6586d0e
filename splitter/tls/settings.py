"""The TLS settings of every server context: Mozilla's "intermediate" profile.

- TLS 1.2 and 1.3 (or 1.3 only). TLS 1.2 suites: ECDHE key exchange with an AEAD cipher
  (AES-GCM, ChaCha20-Poly1305) only: forward secret, no CBC, no RSA key exchange, no DHE
  (finite-field groups need parameters of their own and add nothing an ECDHE client lacks).
  TLS 1.3 suites: OpenSSL's three, all AEAD.
- The client's preference among the suites (Mozilla's "intermediate": all are strong).
- No compression (CRIME), no renegotiation (a client-driven CPU sink and an old source of
  bugs); session resumption on: TLS 1.3 tickets and TLS 1.2 tickets and session ids.
- Key-exchange groups: exactly X25519, P-256 and P-384, Mozilla's list. Python's `ssl`
  (before 3.15) can set only one ECDH curve (`set_ecdh_curve`), and OpenSSL's default list
  adds X448, P-521 and finite-field groups. `set_groups` calls OpenSSL's
  `SSL_CTX_set1_groups_list` on the context's `SSL_CTX` through ctypes: the pointer is the
  first field after the object header of CPython's `PySSLContext`, and it is used only once
  a read through it gives back the context's own options. Where that cannot be done (another
  Python implementation, an `ssl` built without a shared libssl), OpenSSL's defaults stay,
  and `groups_offered` says so; the log names the groups at startup.
- ALPN: `h2` then `http/1.1` with `http2: true` (the default; the server's order wins, so a
  client that offers both speaks HTTP/2), `http/1.1` alone with `http2: false` (a client
  that offers only h2 then gets no ALPN answer, and knows to speak HTTP/1.1 or give up).
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
from typing import Final

__all__ = ["GROUPS", "TLS12_CIPHERS", "groups_offered", "server_context", "set_groups"]

log = logging.getLogger("splitter.tls")

TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
GROUPS: Final = "X25519:P-256:P-384"
ALPN: Final = ["h2", "http/1.1"]
ALPN_HTTP1: Final = ["http/1.1"]
VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

_SSL_CTRL_SET_GROUPS_LIST: Final = 92  # OpenSSL's ssl.h: SSL_CTX_set1_groups_list is this ctrl


class _OpenSSL:
    """The libssl that Python's `ssl` uses, and the SSL_CTX pointer of a context."""

    def __init__(self) -> None:
        self.ctrl = None
        self.get_options = None
        path = getattr(getattr(ssl, "_ssl", None), "__file__", None)
        if sys.implementation.name != "cpython" or not path:
            return
        try:
            lib = ctypes.CDLL(path)  # its dependencies (libssl) are searched too
            ctrl = lib.SSL_CTX_ctrl
            get_options = lib.SSL_CTX_get_options
        except (OSError, AttributeError):
            return
        ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        ctrl.restype = ctypes.c_long
        get_options.argtypes = [ctypes.c_void_p]
        get_options.restype = ctypes.c_uint64
        self.ctrl = ctrl
        self.get_options = get_options

    def pointer(self, context: ssl.SSLContext) -> int | None:
        """The context's SSL_CTX*, checked: None when it does not read back as this context."""
        if self.get_options is None:
            return None
        # PySSLContext: PyObject_HEAD, then SSL_CTX *ctx.
        address = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if not address or int(self.get_options(address)) != int(context.options):
            return None
        return int(address)


_openssl: _OpenSSL | None = None


def set_groups(context: ssl.SSLContext, groups: str = GROUPS) -> bool:
    """Offer exactly `groups` for the key exchange; False when it cannot be done here."""
    native = getattr(context, "set_groups", None)  # Python 3.15
    if native is not None:
        try:
            native(groups)
        except (ssl.SSLError, ValueError):
            return False
        return True
    if sys.version_info >= (3, 15):  # PySSLContext's layout is only known up to 3.14
        return False
    global _openssl
    if _openssl is None:
        _openssl = _OpenSSL()
    pointer = _openssl.pointer(context)
    if pointer is None or _openssl.ctrl is None:
        return False
    return int(_openssl.ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode())) == 1


_groups_set: bool | None = None


def groups_offered() -> str:
    """What the server contexts offer, for the startup log."""
    if _groups_set is None or _groups_set:
        return GROUPS.replace(":", ", ")
    return "OpenSSL's default groups (this Python's ssl gives no way to choose them)"


def server_context(min_version: str = "1.2", http2: bool = True) -> ssl.SSLContext:
    """A server context with splitter's settings (the module docstring) and no certificate."""
    global _groups_set
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS.get(min_version, ssl.TLSVersion.TLSv1_2)
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options &= ~ssl.OP_NO_TICKET
    # The client's order of suites (Mozilla's profile; CPython sets the server's): every
    # suite offered is strong, and a client without AES instructions puts ChaCha20 first.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(ALPN if http2 else ALPN_HTTP1)
    ok = set_groups(context)
    if _groups_set is None:
        _groups_set = ok
        if not ok:
            log.warning("TLS: cannot choose the key-exchange groups; %s", groups_offered())
    return context

"""Routing policy: who a client is, which pool serves it, which backend in that pool.

Pure: data in, data out, stdlib only, no I/O. Everything here sits on the request path, so
each call costs a few hashes and a loop over the pools or backends, and allocates little.

Rules (docs/configuration.md#choosing-a-pool):

- **Client ids.** A client id is 16 random bytes, base64url without padding (22 chars).
  The sticky cookie holds ``<id>.<sig>`` with ``sig`` = base64url-nopad(HMAC-SHA256(secret,
  id)). `ClientIds.verify` returns the id only for a cookie we signed with this secret; a
  tampered, truncated, oversized (> 200 chars) or non-ASCII value is treated as absent
  (``None``), never as an error. Signatures are compared in constant time.
- **Cookie header.** `cookie_from_header` splits ``a=1; name=v; b=2`` by hand (http.cookies
  is slow and rejects what browsers send); the first cookie of that name wins.
- **Pool choice.** `choose_pool(client_id, weights)` is a pure function of the id and the
  weights, identical in every worker, replica and after a restart:

  * each pool's share of clients equals its share of the total weight;
  * raising one pool's weight only moves clients *into* it; lowering it only moves clients
    *out of* it; a blue/green switch (100/0 -> 0/100) moves everyone;
  * a pool at weight 0 gets nobody;
  * given ``live``, pools not in it are skipped: their clients spread over the remaining
    pools in proportion to weight, everyone else stays put, and when the pool comes back
    exactly its own clients return.

- **Backend choice.** `BackendBalancer` is nginx's smooth weighted round-robin over the
  backend indices of one pool, restricted to the ones marked up; weight 0 is never picked.

Theory of operation (pool choice): weighted rendezvous hashing. For each candidate pool,
hash ``"<client id>\\0<pool name>"`` with BLAKE2b (8-byte digest, read big-endian) into
``h``, map it to ``u = (h + 0.5) / 2**64`` in (0, 1), and score it ``-w / ln(u)``; the pool
with the highest score wins (ties: the alphabetically first name). Because ``u`` is uniform,
``-ln(u) / w`` is exponential with rate ``w``, and the smallest of independent exponentials
is pool ``i`` with probability ``w_i / sum(w)``: shares follow weights. Each pool's score
depends only on the client and that pool, so changing one pool's weight scales only that
pool's score: up, it can only overtake others (clients move in); down, others can only
overtake it (clients move out). Removing a pool from ``live`` removes one score; the next
best decides, and differs per client, so the dead pool's clients spread by weight.

Theory of operation (backend choice): each pick adds every candidate's weight to its
``current`` counter, takes the highest counter, and subtracts the candidates' total from
it. Over a cycle of ``sum(weights)`` picks (integer weights) each backend is picked exactly
``weight`` times, interleaved rather than in bursts.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import math
import random
from bisect import bisect_right as _bisect_right
from collections.abc import Container, Sequence

__all__ = [
    "BackendBalancer",
    "ClientIds",
    "PoolChooser",
    "choose_pool",
    "cookie_from_header",
]

# A valid cookie is 22 (id) + 1 + 43 (sig) chars; anything longer than this is junk that is
# not worth hashing.
_MAX_COOKIE_LEN = 200

# Bound once: these run for every request.
_b2a_base64 = binascii.b2a_base64
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_compare_digest = hmac.compare_digest
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_log = math.log
_sha256 = hashlib.sha256
# Client ids need to be unique, not secret: the signature is what a client cannot forge.
# A generator seeded from os.urandom costs a third of a getrandom() call per id. Each
# process (workers are spawned, not forked) seeds its own.
_random_bits = random.Random().getrandbits

_TWO_TO_64 = float(2**64)
# (h + 0.5) / 2**64 rounds to exactly 1.0 for h within ~2**10 of 2**64, and ln(1.0) == 0
# would divide by zero; such u are taken as the largest float below 1 (score stays finite
# and the highest possible, which is where they belong).
_BELOW_ONE = math.nextafter(1.0, 0.0)


def _b64url(raw: bytes) -> str:
    return _b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


class ClientIds:
    """Makes client ids and signs/verifies the sticky cookie that carries them."""

    __slots__ = ("_inner", "_outer", "_verified")

    def __init__(self, secret: bytes) -> None:
        # HMAC-SHA256 (RFC 2104) with the keyed pads hashed once: each signature then
        # copies two hash states instead of setting up an HMAC (0.6 us instead of 1.7).
        key = secret if len(secret) <= 64 else _sha256(secret).digest()
        key = key.ljust(64, b"\0")
        self._inner = _sha256(bytes(b ^ 0x36 for b in key))
        self._outer = _sha256(bytes(b ^ 0x5C for b in key))
        # Cookies already verified -> their client id. A returning client costs a dict
        # lookup instead of an HMAC; only values that passed verification get in.
        self._verified: dict[str, str] = {}

    def new_id(self) -> str:
        """A fresh random client id: 16 random bytes, base64url without padding."""
        return _b64url(_random_bits(128).to_bytes(16, "little"))

    def _sign(self, client_id: str) -> str:
        inner = self._inner.copy()
        inner.update(client_id.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return _b64url(outer.digest())

    def cookie_value(self, client_id: str) -> str:
        """The sticky cookie's value for `client_id`: ``<id>.<signature>``."""
        return f"{client_id}.{self._sign(client_id)}"

    def verify(self, cookie_value: str) -> str | None:
        """The client id in `cookie_value` if we signed it with this secret, else None."""
        known = self._verified.get(cookie_value)
        if known is not None:
            return known
        client_id = self._verify(cookie_value)
        if client_id is not None:
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()
            self._verified[cookie_value] = client_id
        return client_id

    def _verify(self, cookie_value: str) -> str | None:
        if len(cookie_value) > _MAX_COOKIE_LEN or not cookie_value.isascii():
            return None
        client_id, dot, sig = cookie_value.rpartition(".")
        if not dot or not client_id or not sig:
            return None
        # Both sides are ASCII here, which compare_digest requires of str arguments.
        if _compare_digest(sig, self._sign(client_id)):
            return client_id
        return None


def cookie_from_header(cookie_header: str, name: str) -> str | None:
    """The value of cookie `name` in a Cookie request header, or None if it is absent.

    ``"a=1; splitter=xyz; b=2"`` -> ``"xyz"`` for ``name="splitter"``. Spaces around names
    and values are ignored, a value in double quotes loses them, the first match wins.
    """
    if name not in cookie_header:  # the common miss costs one substring scan
        return None
    for part in cookie_header.split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def choose_pool(
    client_id: str,
    weights: Sequence[tuple[str, float]],
    live: Container[str] | None = None,
) -> str | None:
    """The pool that serves `client_id`, by weighted rendezvous hashing.

    `weights` lists ``(pool name, weight)``; pools with weight <= 0, and pools not in
    `live` when it is given, are never chosen. None when no pool qualifies.
    """
    prefix = client_id.encode() + b"\0"
    best_name: str | None = None
    best_score = 0.0
    for name, weight in weights:
        if not weight > 0.0:  # also skips NaN
            continue
        if live is not None and name not in live:
            continue
        h = _from_bytes(_blake2b(prefix + name.encode(), digest_size=8).digest(), "big")
        u = (h + 0.5) / _TWO_TO_64
        if u >= 1.0:
            u = _BELOW_ONE
        score = -weight / _log(u)
        if best_name is None or score > best_score or (score == best_score and name < best_name):
            best_name = name
            best_score = score
    return best_name


class PoolChooser:
    """`choose_pool` for one set of weights and live pools, with the fixed work done once.

    - One candidate pool: it is the answer for everyone, no hashing.
    - `for_client` caches each client's pool (bounded); a new chooser is built whenever
      the weights or the live pools change, so the cache never outlives its inputs.
    - `at_random(u)` serves requests without a client id (stickiness off): a fresh random
      id hashed by rendezvous lands in pool i with probability w_i / sum(w), which is
      exactly what a draw on the cumulative weights gives, for less work.
    - `route`: the route whose pools these are. One cookie serves every route, and each
      route's choice is its own (docs/configuration.md#segments): a route other than
      `default` hashes the client id with its name, so that a client's pools on two routes
      are independent; the route `default` hashes the id alone (the choice of a config
      without routes is unchanged).
    """

    __slots__ = ("_cache", "_cumulative", "_names", "_salt", "candidates", "only")

    def __init__(
        self,
        weights: Sequence[tuple[str, float]],
        live: Container[str] | None = None,
        route: str = "default",
    ) -> None:
        self._salt = "" if route == "default" else "\0" + route
        self.candidates = tuple(
            (name, w) for name, w in weights if w > 0.0 and (live is None or name in live)
        )
        self.only = self.candidates[0][0] if len(self.candidates) == 1 else None
        self._names = tuple(name for name, _ in self.candidates)
        total = 0.0
        cumulative = []
        for _, w in self.candidates:
            total += w
            cumulative.append(total)
        self._cumulative = tuple(c / total for c in cumulative) if total > 0 else ()
        self._cache: dict[str, str | None] = {}

    def for_client(self, client_id: str) -> str | None:
        if self.only is not None or not self.candidates:
            return self.only
        pool = self._cache.get(client_id, _MISSING)
        if pool is _MISSING:
            pool = choose_pool(client_id + self._salt, self.candidates)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[client_id] = pool
        return pool

    def at_random(self, u: float) -> str | None:
        """The pool for a draw `u` uniform in [0, 1)."""
        if self.only is not None or not self.candidates:
            return self.only
        index = _bisect_right(self._cumulative, u)
        return self._names[min(index, len(self._names) - 1)]


_MISSING = "\0missing"
CACHE_SIZE = 65536


class BackendBalancer:
    """Smooth weighted round-robin (nginx's algorithm) over the backends of one pool.

    Backends are indices into `weights`. `up`, when given, must have one flag per backend;
    only backends flagged True are candidates. Each pick is O(n) and allocates nothing.
    Not thread-safe; one instance serves one event loop.
    """

    __slots__ = ("_current", "_n", "_weights")

    def __init__(self, weights: Sequence[float]) -> None:
        for w in weights:
            if not (w >= 0.0 and math.isfinite(w)):
                raise ValueError(f"backend weights must be finite and >= 0, got {w!r}")
        self._weights: list[float] = [float(w) for w in weights]
        self._current: list[float] = [0.0] * len(self._weights)
        self._n = len(self._weights)

    def pick(self, up: Sequence[bool] | None = None) -> int | None:
        """The next backend among those up with weight > 0, or None if there is none."""
        return self._pick(up, -1)

    def pick_other(self, exclude: int, up: Sequence[bool] | None = None) -> int | None:
        """Like `pick`, but never `exclude` unless it is the only candidate.

        Used to retry a failed request elsewhere; when nothing else is available the caller
        retries `exclude` itself on a fresh connection.
        """
        chosen = self._pick(up, exclude)
        if chosen is None and 0 <= exclude < self._n and self._weights[exclude] > 0.0:
            if up is None or up[exclude]:
                return exclude
        return chosen

    def _pick(self, up: Sequence[bool] | None, exclude: int) -> int | None:
        if up is not None and len(up) != self._n:
            raise ValueError(f"expected {self._n} up flags, got {len(up)}")
        weights = self._weights
        current = self._current
        total = 0.0
        best = -1
        best_current = 0.0
        for i in range(self._n):
            w = weights[i]
            if w <= 0.0 or i == exclude or (up is not None and not up[i]):
                continue
            c = current[i] + w
            current[i] = c
            total += w
            if best < 0 or c > best_current:
                best = i
                best_current = c
        if best < 0:
            return None
        current[best] = best_current - total
        return best

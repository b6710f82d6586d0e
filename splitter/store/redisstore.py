"""The shared store in Redis (redis-py's asyncio client), for several replicas.

The keys are listed in the package's docstring. What each operation does in Redis:

- `save`: one Lua script (`_CAS`): when `fence` is given and the lease is not held by it,
  NotLeader; when the document's revision is not the expected one, StoreConflict; else
  the document is written with the next revision (a new store starts from its clock in
  microseconds) and the revision is published on PREFIX:changed.
- `acquire_lease`: one script (`_LEASE`): take the lease when nobody holds it (SET PX),
  extend it when this replica holds it (PEXPIRE), else no.
- `cookie_secret`: the store's secret, or this replica's when it has none (`_SECRET`).
- `merge_events`: the events this replica knows that the stream lacks (by event id), in
  one script (`_MERGE`). The stream has an epoch (PREFIX:events:epoch), set by the first
  merge into a new stream; a replica merges once per epoch: after a flush (or a restart
  of a Redis without persistence) every replica adds what it knows, nothing twice.
- `register`: this replica's registration, expiring `ttl` seconds from Redis's clock; the
  expired ones are dropped and the live ones counted (`_REGISTER`).

Every error of redis-py (a refused or lost connection, a timeout, a Redis that answers an
error) becomes StoreUnavailable, here and nowhere else: `up` turns False and `errors`
counts it; the pool's connections are dropped so that the next attempt connects afresh.
Only `connect` turns `up` back on. No operation is retried by the client: a write is never
sent twice (the callers retry, on a fresh read).

The password is never in a log line or an error: the URL is shown redacted, and an error
text is stripped of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from splitter.config import Store as StoreConfig
from splitter.errors import NotLeader, StoreConflict, StoreUnavailable
from splitter.observe.stats import LATENCY_BOUNDS, MAX_CLASSES, SLOTS, Drained, Evidence
from splitter.store import Document

log = logging.getLogger("splitter.store")

EVENTS_MAX = 200  # events kept in the stream (about: MAXLEN ~)
STATS_MAX = 1000  # statistics entries kept in the stream (about)
STATS_BACK = 300  # seconds of statistics a replica reads when it connects
TIMEOUT = 2.0  # seconds: one operation (connect: half of it)

_CAS = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return {2, 0}
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then
  return {1, rev}
end
local new = rev + 1
if rev == 0 then
  local t = redis.call('TIME')
  new = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local text = string.format('%d', new)
redis.call('HSET', KEYS[1], 'rev', text, 'doc', ARGV[2])
redis.call('PUBLISH', ARGV[3], text)
return {0, new}
"""

_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_SECRET = """
local secret = redis.call('GET', KEYS[1])
if secret then
  return secret
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

_MERGE = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
end
local have = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then
      have[fields[i + 1]] = true
    end
  end
end
for i = 3, #ARGV, 3 do
  if not have[ARGV[i]] then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'id', ARGV[i], 'r', ARGV[i + 1], 'e', ARGV[i + 2])
  end
end
return epoch
"""

_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
return redis.call('ZCARD', KEYS[1])
"""


class RedisStore:
    """The document, the lease and the fleet's shared data in one Redis (see above)."""

    shared = True

    def __init__(self, config: StoreConfig, replica: str) -> None:
        self.config = config
        self.replica = replica
        self.up = False  # until `connect` succeeds
        self.errors = 0  # failed operations (splitter_store_errors_total)
        p = config.prefix
        self.k_doc, self.k_changed, self.k_secret = f"{p}:doc", f"{p}:changed", f"{p}:secret"
        self.k_events, self.k_stats = f"{p}:events", f"{p}:stats"
        self.k_epoch = f"{p}:events:epoch"
        self.k_leader, self.k_replicas = f"{p}:leader", f"{p}:replicas"
        self.client = aioredis.Redis(
            host=config.host,
            port=config.port,
            db=config.db,
            username=config.username,
            password=config.password,
            ssl=config.tls,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT / 2,
            retry=Retry(NoBackoff(), 0),
            client_name=f"splitter-{replica}",
        )
        self._cas = self.client.register_script(_CAS)
        self._lease = self.client.register_script(_LEASE)
        self._release = self.client.register_script(_RELEASE)
        self._secret = self.client.register_script(_SECRET)
        self._merge = self.client.register_script(_MERGE)
        self._register = self.client.register_script(_REGISTER)
        self._pubsub: PubSub | None = None
        self._events_from = "0"  # the last event entry read
        self._stats_from = "0"

    def __repr__(self) -> str:
        return f"<RedisStore {self.config.redacted} as {self.replica}>"

    # -- failures -----------------------------------------------------------------------

    def _failed(self, exc: BaseException, what: str) -> StoreUnavailable:
        self.errors += 1
        was_up = self.up
        self.up = False
        text = f"{type(exc).__name__}: {exc}"
        if self.config.password:
            text = text.replace(self.config.password, "***")
        if was_up:
            log.error("store %s unavailable (%s: %s)", self.config.redacted, what, text)
        else:
            log.debug("store %s still unavailable (%s: %s)", self.config.redacted, what, text)
        return StoreUnavailable()

    async def _drop_connections(self) -> None:
        try:
            await self.client.connection_pool.disconnect()
        except Exception:  # they are going away anyway
            pass
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                # Through a typed name: redis types aclose() in some releases, not others.
                close: Callable[[], Awaitable[object]] = pubsub.aclose
                await close()
            except Exception:
                pass

    async def _fail(self, exc: BaseException, what: str) -> StoreUnavailable:
        error = self._failed(exc, what)
        await self._drop_connections()
        return error

    # -- connection ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach Redis and subscribe to the revisions; `up` from then on."""
        try:
            await self.client.ping()
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(self.k_changed)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "connect") from None
        self._pubsub = pubsub
        if not self.up:
            log.info("store %s connected (replica %s)", self.config.redacted, self.replica)
        self.up = True

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "ping") from None

    async def close(self) -> None:
        await self._drop_connections()
        try:
            await self.client.aclose()
        except Exception:
            pass

    # -- the document -------------------------------------------------------------------

    async def load(self) -> tuple[int, Document]:
        if not self.up:
            raise StoreUnavailable()
        try:
            rev, raw = await self.client.hmget(self.k_doc, ["rev", "doc"])
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "load") from None
        if rev is None or raw is None:
            return 0, Document()
        try:
            return int(rev), Document.from_json(orjson.loads(raw))
        except ValueError:
            log.error("store %s: the document is not valid JSON; it is taken as empty",
                      self.config.redacted)  # fmt: skip
            return int(rev), Document()

    async def save(self, doc: Document, revision: int, fence: str | None = None) -> int:
        if not self.up:
            raise StoreUnavailable()
        payload = orjson.dumps(doc.to_json())
        args: list[Any] = [revision, payload, self.k_changed, fence or ""]
        try:
            status, value = await self._cas(keys=[self.k_doc, self.k_leader], args=args)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "save") from None
        if status == 1:
            raise StoreConflict(f"revision {revision} is not {value}")
        if status == 2:
            raise NotLeader("the rollout lease is held by another replica")
        return int(value)

    async def revision(self) -> int:
        """The document's revision (0: none)."""
        try:
            rev = await self.client.hget(self.k_doc, "rev")
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "load") from None
        return 0 if rev is None else int(rev)

    async def wait_changed(self, timeout: float) -> int | None:
        pubsub = self._pubsub
        if pubsub is None:  # not subscribed: connect again
            self.up = False
            raise StoreUnavailable()
        try:
            message = await pubsub.get_message(timeout=timeout)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "watch") from None
        if message is None or message.get("type") != "message":
            return None
        try:
            return int(message["data"])
        except (TypeError, ValueError):
            return None

    # -- the cookie secret, the lease, the registry ---------------------------------------

    async def cookie_secret(self, mine: bytes) -> bytes:
        try:
            value = await self._secret(keys=[self.k_secret], args=[mine.hex()])
            return bytes.fromhex(value.decode() if isinstance(value, bytes) else str(value))
        except ValueError:
            log.error("store %s: the cookie secret is not hex; this replica keeps its own",
                      self.config.redacted)  # fmt: skip
            return mine
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "cookie secret") from None

    async def acquire_lease(self, ttl: float) -> bool:
        try:
            got = await self._lease(keys=[self.k_leader], args=[self.replica, int(ttl * 1000)])
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "lease") from None
        return bool(got)

    async def release_lease(self) -> None:
        try:
            await self._release(keys=[self.k_leader], args=[self.replica])
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "lease") from None

    async def lease_holder(self) -> str | None:
        try:
            value = await self.client.get(self.k_leader)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "lease") from None
        if isinstance(value, bytes):
            return value.decode()
        return value

    async def register(self, ttl: float) -> int:
        try:
            count = await self._register(keys=[self.k_replicas], args=[self.replica,
                                                                      int(ttl * 1000)])  # fmt: skip
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "register") from None
        return int(count)

    # -- events ---------------------------------------------------------------------------

    async def add_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for event_id, entry in events:
                    fields: Any = {"id": event_id, "r": self.replica, "e": orjson.dumps(entry)}
                    pipe.xadd(self.k_events, fields, maxlen=EVENTS_MAX, approximate=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "events") from None

    async def events_epoch(self) -> str | None:
        """The events stream's epoch (None: a new or flushed stream)."""
        try:
            value = await self.client.get(self.k_epoch)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "events") from None
        return value.decode() if isinstance(value, bytes) else value

    async def merge_events(self, events: list[tuple[str, dict[str, Any]]], epoch: str) -> str:
        """Add the events the stream lacks; the stream's epoch (`epoch` if it had none)."""
        args: list[Any] = [EVENTS_MAX, epoch]
        for event_id, entry in events:
            args += [event_id, self.replica, orjson.dumps(entry)]
        try:
            value = await self._merge(keys=[self.k_events, self.k_epoch], args=args)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "events") from None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def read_events(self) -> list[tuple[str, str, dict[str, Any]]]:
        entries: Any
        try:
            if self._events_from == "0":
                entries = await self.client.xrange(self.k_events, "-", "+")
            else:
                found: Any = await self.client.xread({self.k_events: self._events_from},
                                                     count=1000)  # fmt: skip
                entries = found[0][1] if found else []
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "events") from None
        out = []
        for entry_id, fields in entries:
            self._events_from = entry_id.decode()
            try:
                entry = orjson.loads(fields[b"e"])
                out.append((fields[b"id"].decode(), fields[b"r"].decode(), entry))
            except (KeyError, ValueError, AttributeError):
                continue
        return out

    # -- statistics -----------------------------------------------------------------------

    async def add_stats(self, drained: Drained) -> None:
        rows = [
            [second, pool, counts, _pairs(judged), _pairs(other), _classes(classes)]
            for second, pools in drained.items()
            for pool, (counts, judged, other, classes) in pools.items()
        ]
        if not rows:
            return
        fields: Any = {"r": self.replica, "d": orjson.dumps(rows)}
        try:
            await self.client.xadd(self.k_stats, fields, maxlen=STATS_MAX, approximate=True)
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "stats") from None

    async def read_stats(self) -> list[Drained]:
        entries: Any
        try:
            if self._stats_from == "0":
                since = int((time.time() - STATS_BACK) * 1000)
                entries = await self.client.xrange(self.k_stats, f"{since}-0", "+")
            else:
                found: Any = await self.client.xread({self.k_stats: self._stats_from},
                                                     count=5000)  # fmt: skip
                entries = found[0][1] if found else []
        except (RedisError, OSError) as exc:
            raise await self._fail(exc, "stats") from None
        out: list[Drained] = []
        mine = self.replica.encode()
        for entry_id, fields in entries:
            self._stats_from = entry_id.decode()
            if fields.get(b"r") == mine:
                continue  # this replica's own: already in its window
            try:
                out.append(_drained(orjson.loads(fields[b"d"])))
            except (KeyError, ValueError, TypeError, IndexError):
                continue
        return out

    def reset_reads(self) -> None:
        """Read the streams from their start again (after a flush, the ids start over)."""
        self._events_from = self._stats_from = "0"


def _pairs(histogram: dict[int, int]) -> list[int]:
    return [x for bucket, n in histogram.items() for x in (bucket, n)]


def _classes(classes: dict[str, Evidence]) -> dict[str, list[Any]]:
    return {k: [counts[0], counts[1], _pairs(latency)] for k, (counts, latency) in classes.items()}


def _histogram(flat: Any) -> dict[int, int]:
    if not isinstance(flat, list) or len(flat) > 2 * (len(LATENCY_BOUNDS) + 1):
        raise ValueError("not a latency histogram")
    return {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _drained(rows: Any) -> Drained:
    """Statistics read back from the store, checked like any input (ValueError, TypeError,
    IndexError when they are not what a replica writes)."""
    out: Drained = {}
    for row in rows:
        second, pool, counts, judged, other = row[:5]
        if not isinstance(counts, list) or len(counts) != SLOTS:
            raise ValueError("not the counts of a pool")
        classes: dict[str, Evidence] = {}
        if len(row) > 5:  # replicas of earlier versions send no evidence
            if not isinstance(row[5], dict) or len(row[5]) > 2 * MAX_CLASSES + 2:
                raise ValueError("not request classes")
            for klass, (n, bad, latency) in row[5].items():
                classes[str(klass)] = ([int(n), int(bad)], _histogram(latency))
        out.setdefault(int(second), {})[str(pool)] = (
            [int(c) for c in counts],
            _histogram(judged),
            _histogram(other),
            classes,
        )
    return out

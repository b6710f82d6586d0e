"""The live feed: messages for every client of `GET /api/v1/stream` (server-sent events).

    producers (event loop thread)            Feed                     stream clients
    dashboard.py: "stats", "series",    ->   publish(kind, data) ->   one bounded queue each
      "shadow" every 1 s                     encoded once, as SSE     -> the handler writes it
    the controller: "weights", "event"
    the rollout engine: "rollout"

Anything that has news for the dashboard calls `feed.publish(kind, data)`, where `data` is
anything orjson serialises (the rollout engine: `feed.publish("rollout", rollout_object)`
on every transition, and at most once a second while its analysis moves). `publish`
never blocks and never fails: it is a plain call, made from the event loop's thread.

Rules:

- A message is encoded once (`event: KIND` and one `data:` line of JSON), and only when a
  client wants its kind.
- Each client has a queue of at most `max_queued` messages. A client that reads too
  slowly to keep its queue below that (its socket buffers full, its queue full) is
  dropped: its queue is emptied, `on_drop` is called (the handler aborts the connection)
  and its next `Subscriber.next` raises `Dropped`. Nothing is ever buffered without bound.
- `close()` (at shutdown) ends every client's stream, so a stopping server does not wait
  for them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from typing import Final

import orjson

__all__ = ["Dropped", "Feed", "Subscriber", "encode"]

MAX_QUEUED: Final = 256  # messages waiting for one client before it is dropped


class Dropped(Exception):
    """The client was too slow (or the feed closed): its stream ends."""


def encode(kind: str, data: object) -> bytes:
    """One server-sent event. orjson writes no raw newline, so one `data:` line holds it."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Subscriber:
    """One client's queue of encoded messages."""

    def __init__(
        self, kinds: Collection[str] | None, max_queued: int, on_drop: Callable[[], None] | None
    ) -> None:
        self.kinds = None if kinds is None else frozenset(kinds)
        self.max_queued = max_queued
        self.on_drop = on_drop
        self.queue: deque[bytes] = deque()
        self.dropped = False
        self._wake = asyncio.Event()

    def wants(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def put(self, message: bytes) -> None:
        if self.dropped:
            return
        if len(self.queue) >= self.max_queued:
            self.drop()
            return
        self.queue.append(message)
        self._wake.set()

    def drop(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        self.queue.clear()
        self._wake.set()
        if self.on_drop is not None:
            self.on_drop()

    async def next(self, timeout: float) -> list[bytes]:
        """The messages queued so far, waiting up to `timeout` seconds for one; [] when
        none came (time for a heartbeat). Raises Dropped once the client was dropped."""
        if not self.queue and not self.dropped:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        if self.dropped:
            raise Dropped
        batch = list(self.queue)
        self.queue.clear()
        return batch


class Feed:
    """Publish once, deliver to every subscribed stream client (see the module docstring)."""

    def __init__(self, max_queued: int = MAX_QUEUED) -> None:
        self.max_queued = max_queued
        self.subscribers: set[Subscriber] = set()
        self.dropped = 0  # clients dropped for reading too slowly, since start

    def wants(self, kind: str) -> bool:
        """Whether any client would receive a message of this kind (skip the work if not)."""
        return any(s.wants(kind) for s in self.subscribers)

    def publish(self, kind: str, data: object) -> None:
        message: bytes | None = None
        for subscriber in list(self.subscribers):
            if subscriber.wants(kind):
                if message is None:
                    message = encode(kind, data)
                subscriber.put(message)
                if subscriber.dropped:
                    self.dropped += 1
                    self.subscribers.discard(subscriber)

    def subscribe(
        self,
        kinds: Collection[str] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> Subscriber:
        """A new client, receiving the kinds named (all when None) from now on."""
        subscriber = Subscriber(kinds, self.max_queued, on_drop)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def close(self) -> None:
        """End every client's stream now (shutdown): a stopping server waits for none."""
        for subscriber in list(self.subscribers):
            subscriber.drop()
        self.subscribers.clear()

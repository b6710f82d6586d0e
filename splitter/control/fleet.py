"""This replica's side of a shared store (docs/operations.md#several-replicas): one task
that keeps it in step with the fleet.

    connect:   the store's cookie secret (this replica's when the store has none), then
               everything below at once
    at once:   a revision published on PREFIX:changed -> the document read and in force
    0.5 s:     the revision compared (a missed message is repaired); an empty store filled;
               a reload made while the store was down written; events sent and read (and
               all this replica knows merged into a new stream: after a flush)
    1 s:       this replica's statistics sent, the others' read into its window; its
               registration renewed (the count of live replicas); the lease tried for
    3 s:       the leader extends its lease (10 s)

Rules:

- Nothing here is on the request path: the proxy reads the `Live` snapshot the controller
  installs, and never waits on the store.
- The store down: every operation fails at once (`StoreUnavailable`); this loop tries to
  connect again after 0.1 s, doubling up to 1 s, and on success does all of the above at
  once, so every replica is in sync within about a second of the store's return.
- The lease (`PREFIX:leader`, 10 s) names the replica that drives the rollout. The leader
  extends it every 3 s; the others try to take it every second, so a dead leader is
  replaced within about 11 s. A replica counts itself the leader only until its last
  extension plus the lease time minus a margin, by its own clock: a replica paused past
  its lease (a stopped container, a long GC) stops leading before it is told, and its
  writes are fenced by the lease anyway. A new leader takes over the rollout at its step,
  the step's judging started again.
- Statistics: every second, what this replica's recorders drained (with workers, all of
  theirs) since the last second goes to PREFIX:stats; every replica adds the others'
  entries to its window (its own are in it already), so the judge and `/api/v1/stats` see
  the whole fleet.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Protocol

from splitter.control.controller import EventLog
from splitter.control.route import RouteControl
from splitter.errors import NotLeader, StoreUnavailable
from splitter.observe.stats import Drained, merge_evidence
from splitter.store import SharedStore

log = logging.getLogger("splitter.fleet")

SYNC_EVERY = 0.5  # seconds: revision check, events
SHARE_EVERY = 1.0  # seconds: statistics, registration, a try for the lease
LEASE_TTL = 10.0  # seconds
LEASE_RENEW = 3.0  # seconds between two extensions by the leader
LEASE_MARGIN = 1.0  # seconds before its lease ends that a leader stops counting on it
REGISTRATION_TTL = 5.0  # seconds a replica stays counted without renewing
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0  # seconds between two tries to reconnect
STOP_TIMEOUT = 5.0  # seconds the loop is given to end at shutdown


async def _end_task(task: asyncio.Task[None], timeout: float) -> None:
    """Cancel `task` and wait until it ends, at most `timeout` seconds. A cancellation can
    be lost: on Python 3.11, asyncio.wait_for (redis-py sends each command through it)
    returns the result of an operation that completed as it was cancelled, and the task
    goes on. So it is cancelled again until it ends (`Fleet._run` also ends at its next
    turn once stopping)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not task.done():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.warning("the store's loop did not end within %.0f s: left behind", timeout)
            return
        task.cancel()
        await asyncio.wait((task,), timeout=min(0.1, left))


class FleetHost(Protocol):
    """What the loop needs of the running splitter (`app.Splitter` is one)."""

    @property
    def events(self) -> EventLog: ...
    def route_controls(self) -> list[RouteControl]: ...
    def add_window(self, drained: Drained) -> None: ...
    @property
    def cookie_secret(self) -> bytes: ...

    def set_cookie_secret(self, secret: bytes) -> None: ...


def merge_drained(into: Drained, drained: Drained) -> None:
    """Add `drained` to `into` (a recorder's data, summed)."""
    for second, pools in drained.items():
        mine = into.setdefault(second, {})
        for pool, (counts, judged, other, classes) in pools.items():
            entry = mine.get(pool)
            if entry is None:
                entry = mine[pool] = ([0] * len(counts), {}, {}, {})
            for i, n in enumerate(counts):
                entry[0][i] += n
            for hist, into_hist in ((judged, entry[1]), (other, entry[2])):
                for bucket, n in hist.items():
                    into_hist[bucket] = into_hist.get(bucket, 0) + n
            merge_evidence(entry[3], classes)


class Fleet:
    """The loop (see the module's docstring) and what it knows: the lease, the count of
    live replicas."""

    def __init__(self, store: SharedStore, host: FleetHost) -> None:
        self.store = store
        self.host = host
        self.replicas = 1  # live replicas, this one included (the last count read)
        self._leading = False
        self._lease_until = 0.0  # monotonic: this replica leads until then
        self._renewed = 0.0
        self._unshared: Drained = {}  # statistics not sent yet
        self._task: asyncio.Task[None] | None = None
        self._next_sync = self._next_share = 0.0
        self._epoch: str | None = None  # the events stream this replica merged into
        self._stopping = False

    @property
    def leader(self) -> bool:
        return self._leading and time.monotonic() < self._lease_until

    def note_stats(self, drained: Drained) -> None:
        """Statistics drained here (they are in this replica's window already)."""
        merge_drained(self._unshared, drained)

    # -- connecting ---------------------------------------------------------------------

    async def connect(self, timeout: float) -> bool:
        """At start: reach the store within `timeout`, take up its cookie secret."""
        try:
            async with asyncio.timeout(timeout):
                await self._connect()
        except (StoreUnavailable, TimeoutError):
            log.warning("store %s cannot be reached: starting without it, trying again",
                        self.store)  # fmt: skip
            return False
        return True

    async def _connect(self) -> None:
        await self.store.connect()
        secret = await self.store.cookie_secret(self.host.cookie_secret)
        if secret != self.host.cookie_secret:
            self.host.set_cookie_secret(secret)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await _end_task(self._task, STOP_TIMEOUT)
        if self._leading and self.store.up:
            try:
                await self.store.release_lease()
            except StoreUnavailable:
                pass
        await self.store.close()

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stopping:
            try:
                if not self.store.up:
                    await self._connect()
                    self._next_sync = self._next_share = 0.0  # everything, at once
                    delay = BACKOFF_FIRST
                await self._step()
            except StoreUnavailable:
                # A leader stays one until its lease would have ended (`leader`): a short
                # outage does not restart the judging of the step it holds.
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            except Exception:  # a bug must not stop the loop: log it, go on
                log.exception("error in the store's loop")
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        now = time.monotonic()
        wait = max(0.0, min(self._next_sync, self._next_share) - now)
        revision = await self.store.wait_changed(wait)
        for route in self.host.route_controls():
            controller = route.controller
            if revision is not None and revision != controller.revision:
                await controller.refresh()
        now = time.monotonic()
        if now >= self._next_sync:
            self._next_sync = now + SYNC_EVERY
            await self._sync()
        if now >= self._next_share:
            self._next_share = now + SHARE_EVERY
            await self._share()

    async def _sync(self) -> None:
        revision = await self.store.revision()
        if revision == 0:  # a new or flushed store: fill it
            log.info("store %s is empty: filling it from this replica's state", self.store)
            secret = await self.store.cookie_secret(self.host.cookie_secret)
            if secret != self.host.cookie_secret:
                self.host.set_cookie_secret(secret)
        for route in self.host.route_controls():  # each writes its part of the document
            controller = route.controller
            if revision != controller.revision:
                await controller.refresh()
            if controller.revision == 0 or controller.pending_file is not None \
                    or controller.needs_write:  # fmt: skip
                await controller.catch_up()
        events = self.host.events
        epoch = await self.store.events_epoch()
        if epoch is None or epoch != self._epoch:  # a stream this replica has not filled
            known = events.known_events()
            self._epoch = await self.store.merge_events(known, epoch or secrets.token_hex(8))
            del events.unsent[: len(events.unsent)]  # all of them are in `known`
        if events.unsent:
            unsent = list(events.unsent)
            await self.store.add_events(unsent)
            del events.unsent[: len(unsent)]
        events.take_events(await self.store.read_events())

    async def _share(self) -> None:
        drained, self._unshared = self._unshared, {}
        try:
            await self.store.add_stats(drained)
        except StoreUnavailable:
            merge_drained(self._unshared, drained)  # sent with the next
            raise
        for other in await self.store.read_stats():
            self.host.add_window(other)
        self.replicas = max(1, await self.store.register(REGISTRATION_TTL))
        await self._lease()

    async def _lease(self) -> None:
        now = time.monotonic()
        if self._leading and now - self._renewed < LEASE_RENEW and self.leader:
            return
        was = self.leader
        held = await self.store.acquire_lease(LEASE_TTL)
        if not held:
            if self._leading:
                log.warning("replica %s no longer leads the rollouts", self.store.replica)
            self._leading = False
            for route in self.host.route_controls():
                route.rollouts.lead_changed()  # no more asking the gates here
            return
        self._renewed = now
        self._lease_until = now + LEASE_TTL - LEASE_MARGIN
        self._leading = True
        if not was:
            log.info("replica %s leads the rollouts", self.store.replica)
            try:
                for route in self.host.route_controls():
                    await route.rollouts.take_over()
            except NotLeader:
                self._leading = False

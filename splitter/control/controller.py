"""Changes to the running state: weights from the admin API, config reloads, their history.

Every change goes through `Controller`, which owns the config in force, the weights in
force, the event history and the shared document (`store.Document`: the runtime weights,
the file's weights they were set against, the rollout), and puts each result in force by
handing a new `Live` snapshot to `install` (the proxy swaps one reference).

Rules (docs/admin-api.md and docs/operations.md#hot-reload and docs/operations.md#several-replicas):

- A weight change is validated first, then written to the store (the state file alone,
  atomically; or Redis, shared by every replica), then put in force, then answered: what
  the API confirmed survives a crash.
- Every write is a compare-and-set (`commit`): the change is computed on the latest
  document and written only if the store is still at that revision; when another replica
  wrote first, the newer document is read, put in force, and the change computed again on
  it. So `PUT /api/v1/weights` changes only the pools it names, and a lost race is retried,
  never answered 409. The store down: `StoreUnavailable` (503), nothing changed.
- A newer document written by another replica (`take`) is put in force at once, the
  rollout engine takes up its rollout (`RolloutPart.take`), and no event is made for it:
  the replica that wrote it made the event, and events are shared.
- Runtime weights are kept with the file's weights as they were when the change was
  made. This replica remembers the file's weights it last loaded (`loaded_file_weights`
  in its state file). A load of a *changed* file (start, reload) writes the file's weights
  to the store unless the store has them already: the runtime weights are dropped (an
  event says so) and an active rollout is cancelled. A load of an unchanged file keeps the
  shared weights, even when another replica's file has other weights. A reload is in force
  here at once; its write waits for the store when the store is down, and is dropped when
  someone else changed the file's weights in between.
- An empty store (new, or flushed) is filled from the document in force here; a store
  that holds a document is never overwritten that way (the write expects revision 0).
- A config that fails to load changes nothing. A reload never changes `listen`,
  `admin.listen`, `admin.token` or `metrics.listen`: it logs that they need a restart
  and keeps them.
- Every change becomes an event `{time, source, what, old, new}` (sources: api, file,
  signal, startup), kept in a bounded history and logged as one JSON line.
- A weight is a finite number from 0 to `MAX_WEIGHT`, wherever it comes from: the API
  (`weight_value`), the config file (`config.parse`) or the state file (saved runtime
  weights that are not valid are ignored with a log line; the config's weights apply).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from splitter.config import DEFAULT_ROUTE, MAX_WEIGHT, Config, Route
from splitter.errors import StoreConflict, StoreUnavailable, WeightError
from splitter.state import StateFile
from splitter.store import (
    Compute,
    Document,
    Edit,
    RouteStore,
    Store,
    state_document,
    state_section,
    write_state_document,
)
from splitter.store.filestore import FileStore

log = logging.getLogger("splitter.events")

EVENTS_KEPT = 200
COMMIT_TRIES = 20  # compare-and-set attempts of one change before it is given up (503)

Weights = dict[str, float]


def plain(weights: Mapping[str, float]) -> dict[str, float | int]:
    """Weights for JSON: whole numbers as ints (`90`, not `90.0`); only within the weights'
    range, so that nothing becomes an int that JSON (orjson: 64 bits) cannot hold."""
    return {
        name: int(w) if float(w).is_integer() and abs(w) <= MAX_WEIGHT else w
        for name, w in weights.items()
    }


def is_weight(value: Any) -> bool:
    """A finite number from 0 to MAX_WEIGHT (a bool is not a number here)."""
    # Compared before any float(): a huge int is refused without an OverflowError.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and 0 <= value <= MAX_WEIGHT


def weight_value(name: str, value: Any) -> float:
    """A weight from the API as a float, or WeightError(400)."""
    if not is_weight(value):
        raise WeightError(400, f"weight of {name!r} must be a finite number from 0 to {MAX_WEIGHT}")
    return float(value) + 0.0  # -0.0 becomes 0.0


def saved_weights(value: Any, allow_zero: bool = False) -> Weights | None:
    """Runtime weights read back from a store, or None when they are not a map of pool
    names to weights with one > 0 (what the API can never have set; with `allow_zero`,
    a map of weights: a file's, in a state file, may have been checked by an older
    release)."""
    if not isinstance(value, dict) or not all(is_weight(w) for w in value.values()):
        return None
    weights = {str(name): float(w) + 0.0 for name, w in value.items()}
    return weights if allow_zero or any(w > 0 for w in weights.values()) else None


def iso_time(t: float) -> str:
    """RFC 3339 in UTC, to the millisecond."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def iso_now() -> str:
    return iso_time(time.time())


class RolloutPart(Protocol):
    """The rollout engine's part of the document (`rollout.RolloutEngine` is one)."""

    def take(self, doc: Document) -> None:
        """A newer document is in force: take up its rollout."""
        ...

    def cancel_in(self, edit: Edit, why: str) -> Edit:
        """`edit` plus the active rollout cancelled (a file edit of the weights wins)."""
        ...

    def set_aside(self, doc: Document) -> tuple[Document, str | None]:
        """`doc` with a rollout that does not validate replaced by a cancelled one, and
        why (None when it validates)."""
        ...


class Controller:
    """The weights and the document of one route (`route_name`); every route of a config
    has its own, sharing the store (each writes its part of the one document, see
    `RouteStore`), the state file and the event log."""

    def __init__(
        self,
        config: Config,
        state_file: StateFile,
        install: Callable[[Config, Weights], None],
        store: Store | None = None,
        route: str = DEFAULT_ROUTE,
        events: EventLog | None = None,
    ) -> None:
        self.config = config
        self.route_name = route
        self.state_file = state_file
        self.install = install
        inner: Store = store if store is not None else FileStore(state_file)
        self.store = RouteStore(inner, route)
        self.replica = self.store.replica
        self.log = events if events is not None else EventLog(self.replica, inner.shared)
        self.weights: Weights = self.file_weights()
        self.file_won = False  # the last load of the file dropped runtime weights
        self.doc = Document()  # the latest document known, at `revision`
        self.revision = -1  # -1: not read from the store yet
        self.lock = asyncio.Lock()  # one change at a time: commits and takes
        self.rollouts: RolloutPart | None = None
        # A load of a changed file not written yet: (its weights, the document's file
        # weights when it was loaded).
        self.pending_file: tuple[Weights, Any] | None = None
        self._rewrite = False  # the document in memory must be written as it is
        self._pending_source = ""  # what loaded the file of `pending_file`

    @property
    def route(self) -> Route | None:
        """This route in the config in force (None: a reload removed it)."""
        return self.config.route(self.route_name)

    def file_weights(self) -> Weights:
        """The config file's weights of this route's pools."""
        route = self.route
        return route.weights() if route is not None else {}

    @property
    def events(self) -> deque[dict[str, Any]]:
        return self.log.events

    @property
    def section(self) -> dict[str, Any]:
        """Where the state file keeps what this route's controller remembers."""
        return state_section(self.state_file.data, self.route_name)

    # -- start --------------------------------------------------------------------------

    async def start(self) -> Weights:
        """The weights to start with: the document's (the store's, or the state file's when
        the store cannot be reached), reconciled with the file (see the rules)."""
        local = self._cached()
        try:
            revision, doc = await self.store.load()
        except StoreUnavailable:
            revision, doc = -1, local
        if revision == 0 and self.store.shared and doc.empty:
            doc = local  # an empty store is filled from what this replica had
        async with self.lock:
            doc = self._check_rollout(doc, "startup")
            self.doc, self.revision = doc, revision
            if self.rollouts is not None:
                self.rollouts.take(doc)
            self.weights = self._load_file("startup")
            if revision < 0:
                log.warning("the store cannot be reached: starting from the state file; "
                            "it is tried again until it answers")  # fmt: skip
                return self.weights
            try:
                await self._catch_up()
            except StoreUnavailable:
                pass  # the fleet's loop writes it once the store is back
        return self.weights

    async def catch_up(self) -> None:
        """Write what this replica owes the store: a changed file's weights (a reload
        made while the store was down), an empty store's document."""
        async with self.lock:
            await self._catch_up()

    async def _catch_up(self) -> None:
        def compute(doc: Document) -> Edit | None:
            if (self.revision == 0 and self.store.shared) or self._rewrite:
                return Edit(doc)  # an empty shared store is filled; a fixed document
            return None

        await self._commit(compute, fence=False)
        self._rewrite = False

    def _cached(self) -> Document:
        """The document the state file keeps."""
        return state_document(self.state_file.data).route(self.route_name)

    def _load_file(self, source: str) -> Weights:
        """A load of the file (start, reload): note a changed file's weights for the
        store, and answer the weights to put in force here."""
        file_weights = self.file_weights()
        loaded = self._loaded()
        doc = self.doc
        self.file_won = False
        self._check_saved(doc, file_weights)
        doc = self.doc
        changed = loaded is None or loaded != file_weights
        known = saved_weights(doc.file_weights)
        if loaded is None and known is not None:
            changed = False  # a new replica joining a fleet whose store holds state
        if changed and known != file_weights:
            self.pending_file = (file_weights, doc.file_weights)
            self._pending_source = source
            self.file_won = doc.weights is not None or doc.rollout_active is not None
        elif self.pending_file is not None and self.pending_file[0] != file_weights:
            self.pending_file = None  # back to a file the store knows
        self._remember_loaded(file_weights)
        if self.pending_file is None and source == "startup" and doc.weights is not None:
            restored = self.shared_weights(doc)
            self.event("startup", "runtime weights restored", file_weights, restored)
        return self.in_force()

    def _loaded(self) -> Weights | None:
        data = self.section
        loaded = saved_weights(data.get("loaded_file_weights"), allow_zero=True)
        if loaded is None:  # state files of before: the runtime weights' file weights
            runtime = data.get("runtime")
            if isinstance(runtime, dict):
                loaded = saved_weights(runtime.get("file_weights"), allow_zero=True)
            if loaded is None:
                loaded = saved_weights(data.get("file_weights"), allow_zero=True)
        return loaded

    def _remember_loaded(self, file_weights: Weights) -> None:
        data = self.section
        if data.get("loaded_file_weights") != file_weights:
            data["loaded_file_weights"] = file_weights
            self.state_file.save()

    @property
    def needs_write(self) -> bool:
        """The document in force was fixed here (state set aside) and must be written."""
        return self._rewrite

    def _check_rollout(self, doc: Document, source: str) -> Document:
        """A saved rollout that does not validate is set aside (a log line and an event):
        it ends cancelled, the weights in force stay, and the fixed document is written
        (`catch_up`), so that no call and no replica trips on it again."""
        if self.rollouts is None:
            return doc
        fixed, why = self.rollouts.set_aside(doc)
        if why is None:
            return doc
        where = "the shared store" if self.store.shared else f"state file {self.state_file.path}"
        log.error("%s: the saved rollout is not valid (%s); set aside: it ends cancelled, "
                  "the weights in force stay", where, why)  # fmt: skip
        weights = self.shared_weights(doc)
        self.event(source, f"rollout set aside: not valid in {where} ({why}); it ends "
                   "cancelled, the weights in force stay", weights, weights)  # fmt: skip
        self._rewrite = True
        return fixed

    def _check_saved(self, doc: Document, file_weights: Weights) -> None:
        """Runtime weights that are not valid are dropped (with a log line and an event)."""
        if doc.weights is None or saved_weights(doc.file_weights, allow_zero=True) != file_weights:
            return  # none, or set against other file weights: a changed file drops them
        saved = saved_weights(doc.weights)
        if saved is not None and set(saved) == set(file_weights):
            return
        log.warning(
            "state file %s: the saved runtime weights are not valid (one weight per pool, "
            "each from 0 to %d, one > 0); they are ignored and the config's weights apply",
            self.state_file.path,
            MAX_WEIGHT,
        )
        self.event("startup", "runtime weights dropped: not valid in the state file",
                   saved or {}, file_weights)  # fmt: skip
        self.doc = doc.replace(weights=None)
        self._rewrite = True

    def shared_weights(self, doc: Document) -> Weights:
        """The document's weights for this replica's pools (a pool it does not name: 0);
        the file's when it has none, or none of this replica's pools has a weight in it."""
        file_weights = self.file_weights()
        shared = saved_weights(doc.weights)
        if shared is None:
            shared = saved_weights(doc.file_weights)
        if shared is None:
            return file_weights
        weights = {name: shared.get(name, 0.0) for name in file_weights}
        if not any(w > 0 for w in weights.values()):
            log.warning("the shared weights give none of this replica's pools a weight > 0 "
                        "(its config file differs): it keeps its file's weights")  # fmt: skip
            return file_weights
        return weights

    def in_force(self) -> Weights:
        """What this replica serves with: the document's weights, or the file's while a
        load of a changed file has not reached the store."""
        if self.pending_file is not None:
            return self.file_weights()
        return self.shared_weights(self.doc)

    # -- commits ------------------------------------------------------------------------

    async def commit(self, compute: Compute, fence: bool = False) -> Edit | None:
        """Write the change `compute` makes of the latest document, with compare-and-set:
        on a conflict, read the newer document, put it in force, compute again. `fence`:
        a write of the rollout's leader, taken only while it holds the lease.
        StoreUnavailable (503) when the store cannot be reached; nothing is changed."""
        async with self.lock:
            return await self._commit(compute, fence)

    async def _commit(self, compute: Compute, fence: bool) -> Edit | None:
        for _ in range(COMMIT_TRIES):
            if not self.store.up or self.revision < 0:
                raise StoreUnavailable()
            # A changed file's weights not written yet go first, in the same write.
            first = self._file_edit(self.doc) if self.pending_file is not None else None
            try:
                edit = compute(first.doc if first is not None else self.doc)
            except BaseException:
                if first is not None:
                    first.undo()
                raise
            if first is not None:
                edit = first.then(edit)
            if edit is None:
                return None
            try:
                revision = await self.store.save(
                    edit.doc, self.revision, self.replica if fence and self.replica else None
                )
            except StoreConflict:
                edit.undo()
                await self._refresh()
                continue
            except BaseException:
                edit.undo()
                raise
            if self._file_written(edit.doc):
                self.pending_file = None
            self._put(edit.doc, revision)
            edit.done()
            return edit
        raise StoreUnavailable("the shared state kept changing: the change was not made")

    def _file_written(self, doc: Document) -> bool:
        pending = self.pending_file
        return pending is not None and saved_weights(doc.file_weights) == pending[0]

    async def refresh(self) -> None:
        """Read the store's document and put it in force when it is not the one known."""
        async with self.lock:
            await self._refresh()

    async def _refresh(self) -> None:
        revision, doc = await self.store.load()
        if revision != self.revision:
            self._take(doc, revision)

    def _take(self, doc: Document, revision: int) -> None:
        """A document another replica wrote (or an empty one: a flushed store)."""
        if revision == 0 and doc.empty:
            self.revision = 0  # to be filled (`catch_up`): what is in force here stays
            return
        self._put(self._check_rollout(doc, "store"), revision)
        if self.rollouts is not None:
            self.rollouts.take(self.doc)

    def _put(self, doc: Document, revision: int) -> None:
        """`doc` at `revision` is the document: cached in the state file, in force."""
        shadow_changed = doc.shadow != self.doc.shadow
        self.doc, self.revision = doc, revision
        if self.store.shared:
            write_state_document(self.section, doc, routes=False)
            self.state_file.save()
        weights = self.in_force()
        if weights != self.weights or shadow_changed:
            self.weights = weights
            self.install(self.config, weights)

    def _file_edit(self, doc: Document) -> Edit | None:
        pending = self.pending_file
        if pending is None:
            return None
        file_weights, based_on = pending
        known = saved_weights(doc.file_weights)
        if known == file_weights:
            self.pending_file = None  # the store has them already
            self._put(doc, self.revision)
            return None
        if doc.file_weights != based_on and self.store.shared:
            log.warning(
                "this replica's file weights are not written to the store: another replica "
                "changed the file's weights since; the shared ones apply"
            )
            self.pending_file = None
            self._put(doc, self.revision)
            return None
        new = self._file_edit_doc(doc, file_weights)
        old = self.shared_weights(doc)
        dropped = doc.weights is not None
        # A reload has its own event ("config reloaded"); a start of a replica of a fleet
        # with a changed file says that it changed the fleet's weights.
        started = self.store.shared and self._pending_source == "startup"

        def done() -> None:
            if dropped:
                what = "runtime weights dropped: the file's weights changed since they were set"
                self.event("file", what, saved_weights(doc.weights) or old, self.weights)
            elif started and old != self.weights:
                what = "the config file's weights, changed since this replica last loaded it"
                self.event("file", what, old, self.weights)

        edit = Edit(new, done)
        if doc.rollout_active is not None and self.rollouts is not None:
            why = "the config file's weights changed: the file's weights stand"
            edit = self.rollouts.cancel_in(edit, why)
        return edit

    def _file_edit_doc(self, doc: Document, file_weights: Weights) -> Document:
        return doc.replace(weights=None, file_weights=file_weights, time=iso_now())

    # -- weights from the API -----------------------------------------------------------

    async def set_weights(self, changes: Mapping[str, Any], source: str = "api") -> Weights:
        """Set some pools' weights; WeightError (400/404/409) and StoreUnavailable (503)
        change nothing."""
        for name, value in changes.items():
            weight_value(name, value)
            if name not in self.weights:
                raise WeightError(404, f"unknown pool: {name}")

        def compute(doc: Document) -> Edit:
            old = self.shared_weights(doc)
            new = dict(old)
            for name, value in changes.items():
                new[name] = weight_value(name, value)
            return self._weights_edit(doc, old, new, source, "weights set")

        edit = await self.commit(compute)
        assert edit is not None
        return self.weights

    async def switch(self, pool: Any, source: str = "api") -> tuple[Weights, Weights]:
        """Blue/green flip: `pool` 100, all others 0. Returns (new, previous)."""
        if not isinstance(pool, str):
            raise WeightError(400, "'pool' must be a pool name")
        if pool not in self.weights:
            raise WeightError(404, f"unknown pool: {pool}")
        previous: list[Weights] = []

        def compute(doc: Document) -> Edit:
            old = self.shared_weights(doc)
            previous[:] = [old]
            new = {name: (100.0 if name == pool else 0.0) for name in old}
            return self._weights_edit(doc, old, new, source, f"switch to {pool}")

        await self.commit(compute)
        return self.weights, previous[0]

    def _weights_edit(
        self, doc: Document, old: Weights, new: Weights, source: str, what: str
    ) -> Edit:
        if not any(w > 0 for w in new.values()):
            raise WeightError(409, "at least one pool must keep a weight > 0")
        active = doc.rollout_active
        if active is not None:
            raise WeightError(
                409,
                f"a rollout of {active} is active: abort it first (or let it finish); its "
                "weights change by themselves",
            )
        return Edit(
            self.weights_doc(doc, new),
            done=lambda: self.event(source, what, old, new),
        )

    def weights_doc(self, doc: Document, weights: Mapping[str, float]) -> Document:
        """`doc` with `weights` as its runtime weights (for the pools this replica has),
        set against the file's weights the document has (this replica's when it has none)."""
        shared = saved_weights(doc.weights) or saved_weights(doc.file_weights) or {}
        merged = {**shared, **weights}
        file_weights = doc.file_weights
        if saved_weights(file_weights, allow_zero=True) is None:
            file_weights = self.file_weights()
        return doc.replace(weights=merged, file_weights=file_weights, time=iso_now())

    # -- config loads -------------------------------------------------------------------

    def apply_config(self, config: Config, source: str, install: bool = True) -> bool:
        """Put a freshly loaded config (already through `bound_once`) in force for this
        route. A changed file's weights are in force here at once; `catch_up` takes them to
        the store. Whether the file's weights won over runtime weights."""
        old_weights = self.weights
        self.config = config
        self.weights = self._load_file(source)
        if install:
            self.install(config, self.weights)
        self.event(source, "config reloaded", old_weights, self.weights)
        return self.file_won

    # -- events -------------------------------------------------------------------------

    def event(
        self, source: str, what: str, old: Mapping[str, float], new: Mapping[str, float]
    ) -> None:
        """An event of this route (every event names its route)."""
        self.log.event(source, what, old, new, self.route_name)


def bound_once(old_config: Config, config: Config) -> Config:
    """`config` with what a reload cannot change taken from `old_config` (with a log line
    each): `listen`, `admin` and `metrics.listen` (the listeners are bound once, and the
    admin API keeps the token it was started with: a reload must not open it, nor lock out
    its operator), `store`, and whether the proxy listener speaks TLS (its certificates
    and `min_version` do change)."""
    if config.listen != old_config.listen:
        log.warning("listen changed to %s: it takes effect at the next restart", config.listen)
    if config.store != old_config.store:  # never the URL: it may hold a password
        log.warning("store changed: it takes effect at the next restart")
    changed = []
    if config.admin.listen != old_config.admin.listen:
        changed.append(f"admin.listen changed to {config.admin.listen}")
    if config.admin.token != old_config.admin.token:
        changed.append("admin.token changed")  # never the token itself
    if changed:
        log.warning(
            "%s: not applied, the admin API keeps its listener and token until the next restart",
            ", ".join(changed),
        )
    config = dataclasses.replace(
        config, listen=old_config.listen, admin=old_config.admin, store=old_config.store
    )
    if (config.tls is None) != (old_config.tls is None):  # the listener's kind
        log.warning(
            "tls %s: it takes effect at the next restart",
            "added" if config.tls is not None else "removed",
        )
        config = dataclasses.replace(config, tls=old_config.tls)
    if config.metrics != old_config.metrics:  # bound once, like the other two listeners
        log.warning(
            "metrics.listen changed to %s: it takes effect at the next restart",
            config.metrics.listen or "(none)",
        )
        config = dataclasses.replace(config, metrics=old_config.metrics)
    return config


class EventLog:
    """The events of every route, in one bounded history (newest last), with the listeners
    that see each one as it is made and, with a shared store, the ones not sent yet."""

    def __init__(self, replica: str = "", shared: bool = False) -> None:
        self.events: deque[dict[str, Any]] = deque()  # at most EVENTS_KEPT
        # Called with each new event, as it is made (the dashboard's stream).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.replica = replica
        self.shared = shared
        # Shared stores: this replica's events not in the store yet, and the ids seen.
        self.unsent: list[tuple[str, dict[str, Any]]] = []
        self._ids: dict[int, str] = {}  # id() of an event kept -> its id
        self._seen: set[str] = set()  # the ids of the events kept

    def event(
        self,
        source: str,
        what: str,
        old: Mapping[str, float],
        new: Mapping[str, float],
        route: str = DEFAULT_ROUTE,
    ) -> None:
        entry = {
            "time": iso_now(),
            "source": source,
            "route": route,
            "what": what,
            "old": plain(old),
            "new": plain(new),
        }
        event_id = secrets.token_hex(8)
        self._keep(event_id, entry, len(self.events))
        log.info("%s", orjson.dumps({"event": entry}).decode())
        if self.shared:
            self.unsent.append((event_id, entry))
            del self.unsent[:-EVENTS_KEPT]

    def take_events(self, entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Other replicas' events, read from the store, each in its place by time."""
        for event_id, replica, entry in entries:
            if replica == self.replica or event_id in self._seen:
                continue
            self._seen.add(event_id)
            events = self.events
            at = len(events)
            when = str(entry.get("time", ""))
            while at > 0 and str(events[at - 1].get("time", "")) > when:
                at -= 1
            if at == 0 and len(events) == EVENTS_KEPT:
                continue  # older than everything kept
            self._keep(event_id, entry, at)

    def _keep(self, event_id: str, entry: dict[str, Any], at: int) -> None:
        events = self.events
        if len(events) == EVENTS_KEPT:
            dropped = events.popleft()
            self._seen.discard(self._ids.pop(id(dropped), ""))
            at -= 1
        events.insert(at, entry)
        self._ids[id(entry)] = event_id
        self._seen.add(event_id)
        for listener in self.listeners:  # another replica's event: the dashboard shows it
            listener(entry)

    def known_events(self) -> list[tuple[str, dict[str, Any]]]:
        """The events kept here, with their ids (to fill an empty store's stream)."""
        return [(self._ids.get(id(entry), ""), entry) for entry in self.events]

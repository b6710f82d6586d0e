"""The runtime state that outlives a change: one document, kept in a store.

    Store (interface)           load() -> (revision, Document)
                                save(document, revision, fence) -> new revision
      FileStore                 the state file: one process (no `store:` in the config)
      RedisStore (SharedStore)  Redis: every replica with the same `store.prefix`
                                (+ watch, lease, cookie secret, events, statistics,
                                the replica registry)

The document (`Document`) is what every replica must agree on: the runtime weights and
the file's weights they were set against, the rollout (its `Rollout.state()`) and the
rollouts before it, and the shadow traffic set at runtime. It is written as a whole,
with a revision number:

- Compare-and-set: `save(doc, revision)` writes only when the store's revision is still
  `revision`, and answers the new one; otherwise `StoreConflict`. A change is computed on
  the latest document and written back; on a conflict it is computed again on the newer
  document (the controller's loop: `control.Controller.commit`). A lost race is retried,
  never answered 409.
- Fencing: a write made by the rollout's leader names it (`fence`); the store takes it
  only while that replica still holds the lease (`NotLeader` otherwise), so a leader that
  was paused past its lease cannot overwrite what its successor wrote.
- Revisions never repeat: a new (or flushed) Redis store starts counting from its clock
  in microseconds, so a replica compares revisions for equality, never for order.
- The store down: `StoreUnavailable`, from the first failed operation; `up` says so. The
  request path never waits on a store: nothing on it awaits one.

In Redis (`redisstore.py`), every key is under `store.prefix`:

    PREFIX:doc        hash {rev, doc}: the document (JSON) and its revision
    PREFIX:changed    channel: each new revision is published on it
    PREFIX:secret     the generated cookie secret (SET NX: the first one stays)
    PREFIX:events     stream (MAXLEN ~200): every replica's events
    PREFIX:events:epoch  names the stream; a replica that has not merged its events into
                      this one yet (a new, flushed or restarted Redis) does so
    PREFIX:stats      stream (MAXLEN ~1000): every replica's per-second statistics
    PREFIX:leader     the rollout lease: a replica id (SET NX PX, extended by its holder)
    PREFIX:replicas   sorted set: replica id -> the time its registration expires

The state file keeps the same document in its own keys (`runtime`, `file_weights`,
`rollout`, `rollouts`, `shadow`; see `state_document`), so a replica whose Redis is unreachable
starts from the last document it knew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from splitter.config import DEFAULT_ROUTE
from splitter.errors import NotLeader, StoreConflict, StoreError, StoreUnavailable
from splitter.observe.stats import Drained

__all__ = [
    "Compute",
    "Document",
    "Edit",
    "NotLeader",
    "SharedStore",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "state_document",
    "state_section",
    "write_state_document",
]

FINAL = ("promoted", "rolled_back", "cancelled")  # a rollout in one of these is over


@dataclass(frozen=True, slots=True)
class Document:
    """The shared runtime state. Values are plain JSON data, checked by their readers
    (`control` checks the weights, `rollout` the rollout)."""

    weights: Any = None  # runtime weights in force; None: the file's weights
    file_weights: Any = None  # the file's weights the weights were set against
    time: str = ""  # when the weights were set
    rollout: Any = None  # Rollout.state() of the active or last rollout
    rollouts: Any = field(default_factory=list)  # the finished ones before it, newest first
    # The shadow set at runtime (PUT/DELETE /api/v1/shadow): {"file": the file's section it
    # was set against (config.shadow.shadow_data, or None), "shadow": the section in force
    # (None: stopped), "time"}; None: the file's section is in force.
    shadow: Any = None
    # The routes other than `default` (docs/configuration.md#routes-and-segments): route name
    # -> its own document (`to_json`); the route `default` is the fields above, so that a
    # document of a config with the top-level pools is what it always was.
    routes: Any = field(default_factory=dict)

    def replace(self, **changes: Any) -> Document:
        return replace(self, **changes)

    @property
    def empty(self) -> bool:
        return (
            self.weights is None
            and self.file_weights is None
            and self.rollout is None
            and self.shadow is None
            and not self.routes
        )

    def route(self, name: str) -> Document:
        """The document of route `name`: its weights, file weights, rollouts."""
        if name == DEFAULT_ROUTE:
            return replace(self, routes={})
        routes = self.routes if isinstance(self.routes, dict) else {}
        return Document.from_json(routes.get(name))

    def with_route(self, name: str, doc: Document) -> Document:
        """This document with route `name`'s part replaced by `doc`."""
        if name == DEFAULT_ROUTE:
            return replace(doc, routes=self.routes)
        routes = dict(self.routes) if isinstance(self.routes, dict) else {}
        part = doc.to_json()
        del part["routes"]
        if Document.from_json(part).empty:
            routes.pop(name, None)
        else:
            routes[name] = part
        return replace(self, routes=routes)

    @property
    def rollout_active(self) -> str | None:
        """The candidate of the active rollout, or None."""
        r = self.rollout
        if not isinstance(r, dict):
            return None
        obj = r.get("object")
        if not isinstance(obj, dict) or obj.get("status") in FINAL:
            return None
        return str(obj.get("pool"))

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "file_weights": self.file_weights,
            "time": self.time,
            "rollout": self.rollout,
            "rollouts": self.rollouts,
            "shadow": self.shadow,
            "routes": self.routes,
        }

    @classmethod
    def from_json(cls, data: Any) -> Document:
        if not isinstance(data, dict):
            return cls()
        rollouts = data.get("rollouts")
        routes = data.get("routes")
        return cls(
            weights=data.get("weights"),
            file_weights=data.get("file_weights"),
            time=str(data.get("time") or ""),
            rollout=data.get("rollout"),
            rollouts=rollouts if isinstance(rollouts, list) else [],
            shadow=data.get("shadow") if isinstance(data.get("shadow"), dict) else None,
            routes={str(k): v for k, v in routes.items() if isinstance(v, dict)}
            if isinstance(routes, dict)
            else {},
        )


def _noop() -> None:
    pass


@dataclass
class Edit:
    """A change computed on a document: the document to write, what to do once it is
    written (`done`: events, webhooks), and how to put back what computing it changed in
    memory when it is not written (`undo`)."""

    doc: Document
    done: Callable[[], None] = _noop
    undo: Callable[[], None] = _noop

    def then(self, after: Edit | None) -> Edit:
        """This edit, then `after` (computed on this one's document), as one."""
        if after is None:
            return self

        def done() -> None:
            self.done()
            after.done()

        def undo() -> None:
            after.undo()
            self.undo()

        return Edit(after.doc, done, undo)


Compute = Callable[[Document], Edit | None]  # a change of the latest document; None: none


def state_document(data: dict[str, Any]) -> Document:
    """The document as the state file keeps it: `runtime` ({weights, file_weights, time},
    only while runtime weights are in force), `file_weights` (the file's weights of the
    document), `rollout` and `rollouts`."""
    runtime = data.get("runtime")
    weights = file_weights = None
    when = ""
    if isinstance(runtime, dict):
        weights = runtime.get("weights")
        file_weights = runtime.get("file_weights")
        when = str(runtime.get("time") or "")
    if file_weights is None:
        file_weights = data.get("file_weights")
    rollouts = data.get("rollouts")
    routes = data.get("routes")
    parts = {}
    if isinstance(routes, dict):
        for name, section in routes.items():
            if isinstance(section, dict):
                part = state_document(section).to_json()
                del part["routes"]
                parts[str(name)] = part
    return Document(
        weights=weights,
        file_weights=file_weights,
        time=when,
        rollout=data.get("rollout"),
        rollouts=rollouts if isinstance(rollouts, list) else [],
        shadow=data.get("shadow") if isinstance(data.get("shadow"), dict) else None,
        routes=parts,
    )


def write_state_document(data: dict[str, Any], doc: Document, routes: bool = True) -> None:
    """Put `doc` in the state file's data (the caller saves it); with `routes`, the other
    routes' parts too (`doc` is the whole document), else `doc` is one route's part."""
    if doc.weights is None:
        data.pop("runtime", None)
    else:
        data["runtime"] = {"weights": doc.weights, "file_weights": doc.file_weights,
                           "time": doc.time}  # fmt: skip
    if doc.file_weights is None:
        data.pop("file_weights", None)
    else:
        data["file_weights"] = doc.file_weights
    if doc.rollout is None:
        data.pop("rollout", None)
    else:
        data["rollout"] = doc.rollout
    data["rollouts"] = doc.rollouts
    if doc.shadow is None:
        data.pop("shadow", None)
    else:
        data["shadow"] = doc.shadow
    if routes and isinstance(doc.routes, dict) and (doc.routes or "routes" in data):
        sections = data.get("routes")
        if not isinstance(sections, dict):
            sections = data["routes"] = {}
        for name in [n for n in sections if n not in doc.routes]:
            section = sections[name]
            if isinstance(section, dict):  # keep what the controller keeps there
                for key in ("runtime", "file_weights", "rollout", "rollouts", "shadow"):
                    section.pop(key, None)
        for name, part in doc.routes.items():
            section = sections.get(name)
            if not isinstance(section, dict):
                section = sections[name] = {}
            write_state_document(section, Document.from_json(part))


def state_section(data: dict[str, Any], route: str) -> dict[str, Any]:
    """Where the state file keeps route `route`'s document: the top level for `default`,
    `routes.NAME` for the others."""
    if route == DEFAULT_ROUTE:
        return data
    sections = data.get("routes")
    if not isinstance(sections, dict):
        sections = data["routes"] = {}
    section = sections.get(route)
    if not isinstance(section, dict):
        section = sections[route] = {}
    return section


class Store(Protocol):
    """Where the document is kept. `shared` is False for the state file alone."""

    @property
    def shared(self) -> bool: ...
    @property
    def up(self) -> bool: ...

    async def load(self) -> tuple[int, Document]:
        """The document and its revision (an empty document at revision 0 when there is
        none); StoreUnavailable."""
        ...

    async def save(self, doc: Document, revision: int, fence: str | None = None) -> int:
        """Write `doc` if the store is still at `revision`; the new revision.
        StoreConflict, NotLeader (`fence` no longer holds the lease), StoreUnavailable."""
        ...


class SharedStore(Store, Protocol):
    """A store several replicas share (Redis): all but `load` and `save` serve the
    replicas' side loop (`splitter.control.fleet`)."""

    replica: str  # this replica's id

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def revision(self) -> int:
        """The document's revision (0: there is none)."""
        ...

    async def cookie_secret(self, mine: bytes) -> bytes:
        """The fleet's generated cookie secret: the store's, or `mine` when it had none."""
        ...

    async def wait_changed(self, timeout: float) -> int | None:
        """The next revision published (None after `timeout`)."""
        ...

    async def acquire_lease(self, ttl: float) -> bool: ...
    async def release_lease(self) -> None: ...
    async def lease_holder(self) -> str | None: ...

    async def add_events(self, events: list[tuple[str, dict[str, Any]]]) -> None: ...
    async def events_epoch(self) -> str | None: ...
    async def merge_events(self, events: list[tuple[str, dict[str, Any]]], epoch: str) -> str:
        """Add the events the stream lacks; the stream's epoch (`epoch`: a new one)."""
        ...

    async def read_events(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Events since the last read: (event id, replica, event)."""
        ...

    async def add_stats(self, drained: Drained) -> None: ...
    async def read_stats(self) -> list[Drained]:
        """Other replicas' statistics since the last read."""
        ...

    async def register(self, ttl: float) -> int:
        """Register this replica for `ttl` seconds; the number of live replicas."""
        ...


class RouteStore:
    """One route's part of the document, kept in `inner` (the whole document, written by
    compare-and-set like any change): a write of one route's part is a write of the whole
    document at the revision last read, so that a change another route (or replica) made
    meanwhile is a conflict, computed again on the newer document, never overwritten."""

    def __init__(self, inner: Store, route: str) -> None:
        self.inner = inner
        self.route = route
        self.replica = str(getattr(inner, "replica", ""))
        self._doc = Document()  # the whole document at `_revision`
        self._revision = -1

    @property
    def shared(self) -> bool:
        return self.inner.shared

    @property
    def up(self) -> bool:
        return self.inner.up

    @property
    def errors(self) -> int:
        return int(getattr(self.inner, "errors", 0))

    async def load(self) -> tuple[int, Document]:
        revision, doc = await self.inner.load()
        self._doc, self._revision = doc, revision
        return revision, doc.route(self.route)

    async def save(self, doc: Document, revision: int, fence: str | None = None) -> int:
        if revision != self._revision:
            raise StoreConflict(f"revision {revision} is not {self._revision}")
        whole = self._doc.with_route(self.route, doc)
        new = await self.inner.save(whole, revision, fence)
        self._doc, self._revision = whole, new
        return new

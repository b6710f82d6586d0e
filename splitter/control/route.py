"""One route's control plane: its controller, rollout engine and statistics.

    Splitter (app.py)
      routes: {name: RouteControl}          one per route of the config, in config order
        controller   Controller             the route's weights and its part of the document
        rollouts     RolloutEngine          the route's rollout (one active per route)
        window       stats.Window           the route's per-pool statistics, by second
      shared: the store, the state file, the event log, the fleet (one lease: the leader
      drives every route's rollout), the Live snapshot, the feed

Rules (docs/configuration.md#routes-and-segments):

- Everything that concerns pools is per route: weights and their runtime state, the
  rollout and its judge, statistics, events (each names its route), the stream's
  messages. A route's rollout is judged on its own traffic only.
- A config with the top-level `pools` has one route, `default`; its part of the shared
  document is the document's own fields, so state of before routes reads as it was.
- A reload may add routes (a new `RouteControl`, started from the document), change them
  (each controller takes the new config) or remove them (the route's active rollout ends
  `cancelled`, with an event; its part of the document stays for a config that brings the
  route back).

`RouteControl` is also the host its engine sees (`rollout.engine.RolloutHost`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from splitter.config import Shadow
from splitter.control.controller import Controller
from splitter.control.shadow import FILE, ShadowControl, runtime_shadow, shadow_in_force
from splitter.errors import StoreError
from splitter.observe.stats import Window
from splitter.rollout import RolloutEngine, ShadowCounts
from splitter.rollout import shadow_in_force as rollout_shadow
from splitter.shadow import Tally
from splitter.state import Live, RouteState
from splitter.store import Compute, Document, Edit

log = logging.getLogger("splitter")

Post = Callable[[str, dict[str, Any], float], Awaitable[int]]


class Feed(Protocol):
    def publish(self, kind: str, data: Any) -> None: ...


class Host(Protocol):
    """What a route's control needs of the running splitter (`app.Splitter` is one)."""

    @property
    def live(self) -> Live | None: ...
    @property
    def leader(self) -> bool: ...
    @property
    def feed(self) -> Feed: ...
    def shadow_tally(self, key: str) -> Tally:
        """The copies' tally of "route/pool", summed over this replica's processes."""
        ...


class RouteControl:
    """One route: its controller, rollout engine and statistics window."""

    def __init__(self, host: Host, controller: Controller, post: Post, settled: int) -> None:
        self.host = host
        self.name = controller.route_name
        self.controller = controller
        self.window = Window()
        self.rollouts = RolloutEngine(self, post, settled=settled)
        controller.rollouts = self.rollouts
        self.shadow = ShadowControl(controller)

    # -- shadow traffic (docs/shadow.md) ------------------------------------------------

    def shadow_in_force(self) -> Shadow | None:
        """The route's shadow in force: a rollout's test step, the runtime one, the file's."""
        route = self.controller.route
        if route is None:
            return None
        return shadow_in_force(self.controller.doc, route, self.shadow_step())

    def runtime_shadow(self) -> Shadow | str | None:
        """The shadow set at runtime (None: stopped), or FILE: the file's section applies."""
        route = self.controller.route
        return FILE if route is None else runtime_shadow(self.controller.doc, route)

    def shadow_reloaded(self, before: Shadow | str | None, source: str) -> None:
        """After a load of the file: an event when it set aside the runtime shadow."""
        if before == FILE or self.runtime_shadow() != FILE:
            return
        route = self.controller.route
        file = route.shadow if route is not None else None
        old = {before.pool: before.share} if isinstance(before, Shadow) else {}
        new = {file.pool: file.share} if file is not None else {}
        what = "runtime shadow set aside: the file's shadow section changed since it was set"
        self.controller.event(source, what, old, new)

    def shadow_step(self) -> tuple[str, float] | None:
        """(candidate, share) while a rollout's test step shadows the route."""
        return rollout_shadow(self.rollouts.current)

    def shadow_tally(self, pool: str) -> Tally:
        return self.host.shadow_tally(f"{self.name}/{pool}")

    # -- the engine's host --------------------------------------------------------------

    @property
    def leader(self) -> bool:
        return self.host.leader

    def shared_weights(self, doc: Document) -> dict[str, float]:
        return self.controller.shared_weights(doc)

    def weights_doc(self, doc: Document, weights: dict[str, float]) -> Document:
        return self.controller.weights_doc(doc, weights)

    async def commit(self, compute: Compute, fence: bool) -> Edit | None:
        return await self.controller.commit(compute, fence)

    def _state(self) -> RouteState | None:
        live = self.host.live
        return live.route(self.name) if live is not None else None

    def pool_live(self, pool: str) -> bool:
        route = self._state()
        state = route.pools.get(pool) if route is not None else None
        return state is not None and state.has_live_backend()

    def pool_checked_up(self, pool: str) -> bool:
        route = self._state()
        state = route.pools.get(pool) if route is not None else None
        return state is not None and state.has_checked_backend()

    def rollout_event(
        self,
        event: str,
        rollout: dict[str, Any],
        old_weights: dict[str, float],
        new_weights: dict[str, float],
    ) -> None:
        history = rollout["history"]
        detail = history[-1]["detail"] if history else rollout["reason"]
        what = f"rollout of {rollout['pool']} {event}: {detail}"
        self.controller.event("rollout", what, old_weights, new_weights)
        self.host.feed.publish("rollout", rollout)

    def rollout_json(self, rollout: dict[str, Any]) -> dict[str, Any]:
        """A rollout object as the API and the stream show it: with its route."""
        return {**rollout, "route": self.name}

    def shadow_counts(self, pool: str) -> ShadowCounts:
        """The copies sent to `pool` so far in this replica (its workers' summed, a dead
        worker's last counts kept: they never go down but at a restart)."""
        c = self.shadow_tally(pool).counts
        return ShadowCounts(
            compared=c["same"] + c["differ"] + c["noise"],
            differ=c["differ"],
            pairs=c["pairs"],
            shadow_bad=c["shadow_bad"],
            primary_bad=c["primary_bad"],
        )

    def shadow_changed(self) -> None:
        """A rollout's test step began or ended: the snapshot is made again with the
        shadow now in force."""
        controller = self.controller
        controller.install(controller.config, controller.weights)

    # -- what the app asks of it --------------------------------------------------------

    async def cancel_rollout(self, why: str) -> None:
        try:
            await self.rollouts.cancel(why)
        except StoreError:
            log.warning("the rollout could not be cancelled (%s): the store is unavailable", why)

"""What the rollout engine (`engine.RolloutEngine`) needs of the running splitter: the
host protocol. `control.route.RouteControl` is the host of each route's engine.

For a canary's shadow test step (docs/rollouts.md), the host counts the copies sent to a
pool (`shadow_counts`, cumulative: `shadowstep.ShadowCounts`) and builds its snapshot
again when `shadow_changed` is called; what the snapshot puts in force of shadow traffic
is `record.shadow_in_force(rollout)`, derived from the rollout alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from splitter.observe.stats import Window
from splitter.rollout.shadowstep import ShadowCounts
from splitter.store import Compute, Document, Edit

__all__ = ["Poster", "RolloutHost"]


class RolloutHost(Protocol):
    """What the engine needs of the running splitter (`control.route.RouteControl` is one)."""

    @property
    def window(self) -> Window: ...
    @property
    def leader(self) -> bool:
        """This replica drives the rollout (ticks, gates)."""
        ...

    def shared_weights(self, doc: Document) -> dict[str, float]:
        """The weights `doc` puts in force here."""
        ...

    def weights_doc(self, doc: Document, weights: dict[str, float]) -> Document:
        """`doc` with `weights` as its runtime weights."""
        ...

    async def commit(self, compute: Compute, fence: bool) -> Edit | None:
        """Write `compute`'s change of the latest document (compare-and-set, computed again
        on a conflict); StoreUnavailable, NotLeader (`fence`: the lease is lost)."""
        ...

    def pool_checked_up(self, pool: str) -> bool:
        """A backend of `pool` passes its active health checks (ejection aside)."""
        ...

    def pool_live(self, pool: str) -> bool:
        """Routing sends requests to `pool` (a backend is up, not ejected)."""
        ...

    def rollout_event(
        self,
        event: str,
        rollout: dict[str, Any],
        old_weights: dict[str, float],
        new_weights: dict[str, float],
    ) -> None: ...

    def rollout_json(self, rollout: dict[str, Any]) -> dict[str, Any]:
        """A rollout object as the API, the stream, webhooks and gates show it (with its
        route)."""
        ...

    def shadow_counts(self, pool: str) -> ShadowCounts:
        """The copies sent to `pool` so far and how their answers went: cumulative (since
        the counting started; a count that goes down is a restart of the counting)."""
        ...

    def shadow_changed(self) -> None:
        """What `record.shadow_in_force` answers for the current rollout changed (a shadow
        test step began or ended): build the snapshot again."""
        ...


# POST a JSON body; the answer's status, or an exception (a timeout, a refused connection).
Poster = Callable[[str, dict[str, Any], float], Awaitable[int]]

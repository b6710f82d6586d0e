"""One route's shadow traffic at runtime: what PUT and DELETE /api/v1/shadow change, and
which shadow is in force (docs/shadow.md).

    in force = a rollout's test step, when one is on  (the candidate, the step's share)
             | the runtime shadow, when it was set against the file's section as it is now
             | the file's `shadow` section

Rules:

- A change is runtime state like a weight: validated (the config's own checks, through
  `config.shadow.shadow_change`), written to the store with compare-and-set, put in force,
  then answered; it survives a restart and is shared by every replica.
- It is kept with the file's section it was set against (`file`). A file whose section
  changed since wins: the runtime shadow is no longer in force (the file says what the
  operator wants now), without a write; the next change replaces it.
- During a rollout's test step the rollout decides the shadow: a change is refused (409),
  as a weight change is during a rollout.
- What the document holds is read back like any input (`config.shadow.saved_shadow`): a
  section that is not valid for the route's pools of the moment is ignored, with a log
  line, and the file's applies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from splitter.config import Route, Shadow
from splitter.config.shadow import saved_shadow, shadow_change, shadow_data
from splitter.control.controller import Controller, iso_now
from splitter.errors import ApiError, ConfigError
from splitter.store import Document, Edit

log = logging.getLogger("splitter.events")

FILE: Final = "file"  # `in_force`: the file's section applies

# route -> the runtime section last reported as not valid for its pools (read at every
# GET /api/v1/shadow and each second by the dashboard's ticker: logged once)
_reported: dict[str, str] = {}


def _weights(route: Route) -> dict[str, float | None]:
    return {p.name: p.weight for p in route.pools}


def runtime_shadow(doc: Document, route: Route) -> Shadow | str | None:
    """The shadow the document sets for `route` (None: stopped), or FILE when the file's
    section applies (no runtime shadow, or one set against another file section)."""
    value = doc.shadow
    if not isinstance(value, dict):
        return FILE
    file_now = shadow_data(route.shadow) if route.shadow is not None else None
    if value.get("file") != file_now:
        return FILE
    section = value.get("shadow")
    if section is None:
        return None
    shadow = saved_shadow(section, _weights(route))
    if shadow is None:
        said = repr(section)
        if _reported.get(route.name) != said:  # once, not at every read (each second)
            _reported[route.name] = said
            log.warning(
                "route %s: the shadow set at runtime is not valid for its pools: "
                "the file's applies",
                route.name,
            )
        return FILE
    return shadow


def shadow_in_force(doc: Document, route: Route, step: tuple[str, float] | None) -> Shadow | None:
    """The shadow in force for `route`: the rollout's test step (`step`: the candidate
    and its share), else the runtime one, else the file's."""
    runtime = runtime_shadow(doc, route)
    base = route.shadow if runtime == FILE else runtime
    assert not isinstance(base, str)
    if step is not None:
        pool, share = step
        if base is None:
            return Shadow(pool=pool, share=share)
        reference = base.reference if base.pool == pool else None
        return replace(base, pool=pool, share=share, reference=reference)
    return base


def last_pool(doc: Document, route: Route) -> str | None:
    """The pool whose results are shown while nothing is shadowed: the one last stopped,
    else the file's section's."""
    value = doc.shadow
    last = value.get("last") if isinstance(value, dict) else None
    if isinstance(last, str) and route.pool(last) is not None:
        return last
    return route.shadow.pool if route.shadow is not None else None


class ShadowControl:
    """PUT and DELETE /api/v1/shadow for one route (its controller's document)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def _route(self) -> Route:
        route = self.controller.route
        if route is None:
            raise ApiError(404, f"route {self.controller.route_name} is gone")
        return route

    async def set(
        self, change: Mapping[str, Any], base: Shadow | None, source: str = "api"
    ) -> None:
        """Change the shadow in force (`base`) with `change` ({"share", "pool",
        "reference"}); ApiError 400 naming the problem, StoreUnavailable; nothing changed.
        With none in force (stopped), the change names the pool, and the keys it does not
        name are the file's section's (its rules are kept), else the defaults."""
        route = self._route()
        for key in ("pool", "reference"):
            name = change.get(key)
            if isinstance(name, str) and route.pool(name) is None:
                known = ", ".join(p.name for p in route.pools)
                raise ApiError(404, f"{key}: unknown pool {name[:64]!r} (the pools are {known})")
        if base is None and "pool" not in change:
            raise ApiError(
                400, "no shadow is set for this route: name the pool that gets the copies"
            )
        try:
            shadow = shadow_change(
                base if base is not None else route.shadow, change, _weights(route)
            )
        except ConfigError as exc:
            problem = exc.problems[0]
            raise ApiError(400, f"{problem.path}: {problem.message}") from None
        old = base

        def compute(doc: Document) -> Edit:
            return self._edit(doc, route, shadow, old, source, "shadow set")

        await self.controller.commit(compute)

    async def stop(self, base: Shadow | None, source: str = "api") -> None:
        """Stop shadowing (until a change or a file with another section)."""
        route = self._route()

        def compute(doc: Document) -> Edit:
            return self._edit(doc, route, None, base, source, "shadow stopped")

        await self.controller.commit(compute)

    def _edit(
        self,
        doc: Document,
        route: Route,
        shadow: Shadow | None,
        old: Shadow | None,
        source: str,
        what: str,
    ) -> Edit:
        value = {
            "file": shadow_data(route.shadow) if route.shadow is not None else None,
            "shadow": shadow_data(shadow) if shadow is not None else None,
            "time": iso_now(),
        }
        if shadow is None and old is not None:
            value["last"] = old.pool  # whose results the API still shows once stopped
        before = {old.pool: old.share} if old is not None else {}
        after = {shadow.pool: shadow.share} if shadow is not None else {}
        return Edit(
            doc.replace(shadow=value),
            done=lambda: self.controller.event(source, what, before, after),
        )

"""Changes to the running state: weights from the admin API, config reloads, their history.

Every change goes through `Controller`, which owns the config in force, the weights in
force, the event history and the state file, and puts each result in force by handing a
new `Live` snapshot to `install` (the proxy swaps one reference).

Rules (contract sections 5 and 6):

- A weight change is validated first, then written to the state file (atomically),
  then put in force, then answered: what the API confirmed survives a crash.
- Runtime weights are kept with the file's weights as they were when the change was
  made. On a later load of the file (start, reload) they stay in force while the file's
  weights are unchanged; once the file's weights differ, the file wins, the runtime
  weights are dropped, and an event says so.
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

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from splitter.config import MAX_WEIGHT, Config
from splitter.state import StateFile

log = logging.getLogger("splitter.events")

EVENTS_KEPT = 200

Weights = dict[str, float]


class WeightError(ValueError):
    """A weight change that cannot be applied; `status` is the admin API's answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


def saved_weights(value: Any) -> Weights | None:
    """Runtime weights read back from the state file, or None when they are not a map of
    pool names to weights with one > 0 (what the API can never have set)."""
    if not isinstance(value, dict) or not all(is_weight(w) for w in value.values()):
        return None
    weights = {str(name): float(w) + 0.0 for name, w in value.items()}
    return weights if any(w > 0 for w in weights.values()) else None


def iso_time(t: float) -> str:
    """RFC 3339 in UTC, to the millisecond."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def iso_now() -> str:
    return iso_time(time.time())


class Controller:
    def __init__(
        self,
        config: Config,
        state_file: StateFile,
        install: Callable[[Config, Weights], None],
    ) -> None:
        self.config = config
        self.state_file = state_file
        self.install = install
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.weights: Weights = config.weights()
        self.file_won = False  # the last load of the file dropped runtime weights
        # Called with each new event, as it is made (the dashboard's stream).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    # -- start --------------------------------------------------------------------------

    def start(self) -> Weights:
        """The weights to start with: the config's, or saved runtime ones that still apply."""
        file_weights = self.config.weights()
        weights = self._reconcile(file_weights, "startup")
        self.weights = weights
        return weights

    # -- weights from the API -----------------------------------------------------------

    def set_weights(self, changes: Mapping[str, Any], source: str = "api") -> Weights:
        """Set some pools' weights; WeightError (400/404/409) changes nothing."""
        new = dict(self.weights)
        for name, value in changes.items():
            if name not in new:
                raise WeightError(404, f"unknown pool: {name}")
            new[name] = weight_value(name, value)
        return self._apply(new, source, "weights set")

    def switch(self, pool: Any, source: str = "api") -> tuple[Weights, Weights]:
        """Blue/green flip: `pool` 100, all others 0. Returns (new, previous)."""
        if not isinstance(pool, str):
            raise WeightError(400, "'pool' must be a pool name")
        if pool not in self.weights:
            raise WeightError(404, f"unknown pool: {pool}")
        previous = dict(self.weights)
        new = {name: (100.0 if name == pool else 0.0) for name in self.weights}
        return self._apply(new, source, f"switch to {pool}"), previous

    def apply_weights(self, new: Mapping[str, float], source: str, what: str) -> Weights:
        """Put a whole map of weights in force (a rollout's step): validated, saved, in
        force; the event is the caller's (it knows the transition it belongs to)."""
        weights = dict(self.weights)
        for name, value in new.items():
            if name not in weights:
                raise WeightError(404, f"unknown pool: {name}")
            weights[name] = weight_value(name, value)
        return self._apply(weights, source, what, record=False)

    def save_rollouts(self, current: dict[str, Any] | None, history: list[dict[str, Any]]) -> None:
        """The rollout in progress (or the last one) and those before it, kept with the
        runtime state (atomically, before the API answers)."""
        data = self.state_file.data
        if current is None:
            data.pop("rollout", None)
        else:
            data["rollout"] = current
        data["rollouts"] = history
        self.state_file.save()

    def _apply(self, new: Weights, source: str, what: str, record: bool = True) -> Weights:
        if not any(w > 0 for w in new.values()):
            raise WeightError(409, "at least one pool must keep a weight > 0")
        old = self.weights
        # Saved before it is in force: once the API answers, a crash cannot lose it.
        self.state_file.data["runtime"] = {
            "weights": new,
            "file_weights": self.config.weights(),
            "time": iso_now(),
        }
        self.state_file.save()
        self.weights = new
        self.install(self.config, new)
        if record:
            self.event(source, what, old, new)
        return new

    # -- config loads -------------------------------------------------------------------

    def apply_config(self, config: Config, source: str) -> bool:
        """Put a freshly loaded (valid) config in force, but for `listen` and `admin`: the
        listeners are bound once, and the admin API keeps the token it was started with
        (a reload must not open it, nor lock out its operator)."""
        old_weights = self.weights
        old_config = self.config
        if config.listen != old_config.listen:
            log.warning("listen changed to %s: it takes effect at the next restart", config.listen)
        changed = []
        if config.admin.listen != old_config.admin.listen:
            changed.append(f"admin.listen changed to {config.admin.listen}")
        if config.admin.token != old_config.admin.token:
            changed.append("admin.token changed")  # never the token itself
        if changed:
            log.warning(
                "%s: not applied, the admin API keeps its listener and token until the next "
                "restart",
                ", ".join(changed),
            )
        config = dataclasses.replace(config, listen=old_config.listen, admin=old_config.admin)
        if config.metrics != old_config.metrics:  # bound once, like the other two listeners
            log.warning(
                "metrics.listen changed to %s: it takes effect at the next restart",
                config.metrics.listen or "(none)",
            )
            config = dataclasses.replace(config, metrics=old_config.metrics)
        self.config = config
        self.weights = self._reconcile(config.weights(), source)
        self.install(config, self.weights)
        self.event(source, "config reloaded", old_weights, self.weights)
        return self.file_won

    def _reconcile(self, file_weights: Weights, source: str) -> Weights:
        """The file's weights, or the saved runtime weights while the file's are unchanged."""
        self.file_won = False
        runtime = self.state_file.data.get("runtime")
        if not isinstance(runtime, dict):
            return file_weights
        saved = saved_weights(runtime.get("weights"))
        if runtime.get("file_weights") == file_weights:  # the file is as it was then
            if saved is not None and set(saved) == set(file_weights):
                weights = {name: saved[name] for name in file_weights}
                if source == "startup":
                    self.event("startup", "runtime weights restored", file_weights, weights)
                return weights
            log.warning(
                "state file %s: the saved runtime weights are not valid (one weight per pool, "
                "each from 0 to %d, one > 0); they are ignored and the config's weights apply",
                self.state_file.path,
                MAX_WEIGHT,
            )
            what = "runtime weights dropped: not valid in the state file"
        else:
            what = "runtime weights dropped: the file's weights changed since they were set"
            source = "file" if source == "startup" else source
            self.file_won = True
        del self.state_file.data["runtime"]
        self.state_file.save()
        self.event(source, what, saved or {}, file_weights)
        return file_weights

    # -- events -------------------------------------------------------------------------

    def event(
        self, source: str, what: str, old: Mapping[str, float], new: Mapping[str, float]
    ) -> None:
        entry = {
            "time": iso_now(),
            "source": source,
            "what": what,
            "old": plain(old),
            "new": plain(new),
        }
        self.events.append(entry)
        log.info("%s", orjson.dumps({"event": entry}).decode())
        for listener in self.listeners:
            listener(entry)

"""A rollout read back from the state file or the shared store, validated like any input.

What `Rollout.state()` wrote can come back changed: an older or newer release, a hand
edit, another replica's bug, a crafted store. docs/admin-api.md: state that does not validate
is set aside, never a 500 or a crash; a rollout that cannot be read is ended
`cancelled` and the weights in force are kept.

- `read(data)`: the Rollout, or ValueError saying what is wrong. The plan is checked
  with the rules of `POST /api/v1/rollout` (`rollout.plan.parse_rollout`: weights, durations
  of at most 30 days, analysis ranges, URLs), and the rest for what the engine and the
  rollout object need: known statuses, phases and verdicts, weights from 0 to
  1,000,000, times that are dates, counts that are whole numbers >= 0, a step that
  exists.
- `cancelled(data, why, weights, now)`: the state of the cancelled rollout that takes
  the place of one that cannot be read (its id and pool kept when they are readable).
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Final

from splitter.config import MAX_DURATION, MAX_WEIGHT, ConfigError, Rollouts
from splitter.rollout.plan import parse_rollout
from splitter.rollout.record import FINAL, Rollout, iso

__all__ = ["cancelled", "read"]

STATUSES: Final = ("progressing", "paused", *FINAL)
PHASES: Final = (
    "", "judging", "gate", "operator", "sample_ratio", "awaiting_promotion", "manual",
    "inconclusive",
)  # fmt: skip
VERDICTS: Final = ("pending", "pass", "fail", "inconclusive")
LAST_TIME: Final = 253402300799.0  # 9999-12-31T23:59:59Z: what a rollout object can show
MAX_COUNT: Final = 2**62
_ANALYSIS = ("confidence", "max_error_ratio", "min_error_rate", "max_slow_ratio",
             "latency_floor", "warmup")  # fmt: skip


def read(data: Any) -> Rollout:
    """The saved rollout `data` (a `Rollout.state()`), or ValueError naming the problem."""
    try:
        _check(data)
        return Rollout.from_state(data)
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}"[:200]) from None


def cancelled(data: Any, why: str, weights: dict[str, float], now: float) -> dict[str, Any]:
    """The state of a cancelled rollout standing for `data`, which cannot be read: the
    weights in force stay, its id and pool are kept when they are short strings."""
    obj = data.get("object") if isinstance(data, dict) else None
    obj = obj if isinstance(obj, dict) else {}
    rollout_id = _short(obj.get("id")) or secrets.token_hex(8)
    pool = _short(obj.get("pool")) or "?"
    reason = f"the saved rollout could not be read ({why}); set aside"
    state: dict[str, Any] = {
        "object": {
            "id": rollout_id,
            "pool": pool,
            "status": "cancelled",
            "reason": reason,
            "step": 0,
            "weights": dict(weights),
            "analysis": {"verdict": "pending"},
            "history": [{"at": iso(now), "what": "cancelled", "detail": reason}],
        },
        "phase": "",
        "plan": {
            "pool": pool,
            "strategy": "canary",
            "steps": [],
            "analysis": [getattr(Rollouts().analysis, f) for f in _ANALYSIS],
            "on_inconclusive": "pause",
            "webhooks": [],
            "gates": [],
            "auto_promote": False,
            "keep": 0.0,
        },
        "start_weights": dict(weights),
        "started_at": now,
        "step_started_at": now,
        "updated_at": now,
    }
    return state


def _short(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 100 else None


def _check(data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError("not an object")
    obj, plan = _object(data, "object"), _object(data, "plan")
    status = obj["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r:.40}")
    if data.get("phase", "judging") not in PHASES:
        raise ValueError("unknown phase")
    if _object(obj, "analysis")["verdict"] not in VERDICTS:
        raise ValueError("unknown verdict")
    if not isinstance(obj["id"], str) or not isinstance(obj.get("reason", ""), str):
        raise ValueError("id and reason must be strings")
    if not isinstance(obj.get("history", []), list):
        raise ValueError("history must be a list")
    steps = plan["steps"]
    if not isinstance(steps, list) or not all(_step_shape(s) for s in steps):
        raise ValueError("plan.steps must be a list of [weight, hold, max] (a shadow test "
                         "step: [0, hold, max, {share, max_diff_rate}])")  # fmt: skip
    if steps or status not in FINAL:  # a set-aside rollout has no steps: nothing to run
        _check_plan(plan)
    active = status not in FINAL
    _count(obj, "step", len(steps) - 1 if active else max(len(steps), 0))
    _count(data, "gate_step", len(steps), required=False)
    for key in ("weights",):
        _weights(obj, key)
    for key in ("start_weights", "before_switch"):
        _weights(data, key, required=key == "start_weights")
    for key in ("started_at", "switched_at", "step_started_at", "updated_at"):
        _time(data, key, required=key == "started_at")
    reference_p95 = data.get("reference_p95", 0.0)
    if not _number(reference_p95) or not 0 <= reference_p95 <= LAST_TIME:
        raise ValueError("reference_p95 must be a number of seconds")
    for key, size in (("reference", 3), ("candidate", 3), ("baseline", 3), ("shadow", 5)):
        counts = data.get(key)
        if counts is not None and (
            not isinstance(counts, list)
            or len(counts) != size
            or not all(_whole(c, MAX_COUNT) for c in counts)
        ):
            raise ValueError(f"{key} must be {size} counts")
    if data.get("needed") is not None and not _whole(data["needed"], MAX_COUNT):
        raise ValueError("needed must be a count")


def _check_plan(plan: dict[str, Any]) -> None:
    """The plan, by the rules of a rollout request (the API's own parser)."""
    analysis = plan["analysis"]
    if not isinstance(analysis, list) or len(analysis) != len(_ANALYSIS):
        raise ValueError("plan.analysis must be a list of 6 numbers")
    hooks, gates = plan["webhooks"], plan["gates"]
    if not isinstance(hooks, list) or not isinstance(gates, list):
        raise ValueError("plan.webhooks and plan.gates must be lists")
    body: dict[str, Any] = {
        "pool": plan["pool"],
        "strategy": plan["strategy"],
        "analysis": dict(zip(_ANALYSIS, analysis, strict=True)),
        "on_inconclusive": plan["on_inconclusive"],
        "webhooks": [_hook(h) for h in hooks],
        "gates": [{"url": g} for g in gates],
    }
    steps = plan["steps"]
    if plan["strategy"] == "bluegreen":
        if len(steps) != 2 or steps[0][0] != 0 or steps[1][0] != 100:
            raise ValueError("plan.steps of a blue-green rollout must be [preview, keep]")
        body["preview"] = {"hold": steps[0][1], "max": steps[0][2]}
        body["keep"] = plan["keep"]
        body["auto_promote"] = plan["auto_promote"]
    else:
        body["steps"] = [_step_body(s) for s in steps]
    keep = plan["keep"]
    if any(isinstance(v, str) for s in steps for v in s[1:]) or not _number(keep):
        raise ValueError("durations must be numbers of seconds")
    if not 0 <= keep <= MAX_DURATION:
        raise ValueError("plan.keep: must be at most 30 days (720h)")
    try:
        parse_rollout(body, Rollouts())
    except ConfigError as exc:
        raise ValueError(f"plan.{exc.problems[0]}" if exc.problems else "plan") from None


def _step_shape(s: Any) -> bool:
    """[weight, hold, max], or a shadow test step's [0, hold, max, {share, max_diff_rate}]."""
    if not isinstance(s, list):
        return False
    if len(s) == 4:
        test = s[3]
        return (
            s[0] == 0
            and isinstance(test, dict)
            and set(test) == {"share", "max_diff_rate"}
            and all(_number(v) for v in test.values())
        )
    return len(s) == 3


def _step_body(s: list[Any]) -> dict[str, Any]:
    """A saved step as a request names it (checked by the request's own parser)."""
    weight, hold, longest = s[:3]
    if len(s) == 4:
        return {"shadow": {**s[3], "hold": hold, "max": longest}}
    if weight is None:
        return {"pause": True}
    return {"weight": weight, "hold": hold, "max": longest}


def _hook(saved: Any) -> Any:
    """A saved webhook ([url, events]) as a request names it."""
    if isinstance(saved, list) and len(saved) == 2:
        return {"url": saved[0], "events": saved[1]}
    return saved


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return value


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _whole(value: Any, most: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= most


def _count(data: dict[str, Any], key: str, most: int, required: bool = True) -> None:
    if key not in data and not required:
        return
    if not _whole(data[key], max(most, 0)):
        raise ValueError(f"{key} must be a whole number from 0 to {max(most, 0)}")


def _weights(data: dict[str, Any], key: str, required: bool = True) -> None:
    if key not in data and not required:
        return
    value = data[key]
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _number(w) and 0 <= w <= MAX_WEIGHT for k, w in value.items()
    ):
        raise ValueError(f"{key} must map pools to weights from 0 to {MAX_WEIGHT}")


def _time(data: dict[str, Any], key: str, required: bool) -> None:
    if key not in data and not required:
        return
    value = data[key]
    if not _number(value) or not 0 <= value <= LAST_TIME:
        raise ValueError(f"{key} must be a time")

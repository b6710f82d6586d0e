"""A rollout's plan: the body of `POST /api/v1/rollout` parsed with the config's checks
(the same keys and bounds as the config's `rollouts` section; docs/rollouts.md).

A canary's steps may begin with one test step on shadow traffic, `{"shadow": {"share":
0.1, "hold": "2m", "max": "10m", "max_diff_rate": 0.01}}` (each key optional: share
0.1, max_diff_rate 0.01, hold and max as a weight step's): the candidate stays at weight
0 and gets copies of `share` of the requests. It is a `Step` of weight 0 with its
`shadow` part; it is not a weight (a plan still needs one), and only the first step may
be one."""

from __future__ import annotations

from typing import Any

from splitter.config.convert import (
    DURATION_GE0,
    DURATION_GT0,
    Checker,
    Invalid,
    to_float,
    to_hook_url,
    to_inconclusive,
)
from splitter.config.model import (
    RolloutPlan,
    Rollouts,
    ShadowTest,
    Step,
)
from splitter.config.parse import analysis_section, webhooks_section
from splitter.errors import ConfigError

DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
_PLAN_KEYS = (
    "pool", "strategy", "steps", "analysis", "on_inconclusive", "webhooks", "gates",
    "preview", "auto_promote", "keep",
)  # fmt: skip
_SHADOW_KEYS = ("share", "hold", "max", "max_diff_rate")


def parse_rollout(data: Any, defaults: Rollouts) -> RolloutPlan:
    """A rollout's request body (docs/rollouts.md) as a plan, or ConfigError naming the
    field of every problem (`steps[2].weight: must be above the step before`). Whether the
    pool exists is the caller's business (404, not 400)."""
    ck = Checker(None)
    if not isinstance(data, dict):
        ck.add("", "must be a JSON object")
        raise ConfigError(ck.problems)
    ck.mapping(data, "", _PLAN_KEYS)
    pool = data.get("pool")
    if not isinstance(pool, str) or not pool:
        ck.add("pool", "is required: the name of the candidate pool")
        pool = ""
    strategy = data.get("strategy", "canary")
    if strategy not in ("canary", "bluegreen"):
        ck.add("strategy", "must be canary or bluegreen")
        strategy = "canary"
    analysis = analysis_section(ck, data.get("analysis"), "analysis", defaults.analysis, False)
    on_inconclusive = ck.get(data, "", "on_inconclusive", defaults.on_inconclusive, to_inconclusive)
    webhooks = defaults.webhooks
    if "webhooks" in data:
        webhooks = webhooks_section(ck, data["webhooks"], "webhooks")
    gates = _gates(ck, data.get("gates"))
    if strategy == "canary":
        for key in ("preview", "auto_promote", "keep"):
            if key in data:
                ck.add(key, "is for strategy bluegreen")
        steps = _steps(ck, data.get("steps"), defaults)
        plan = RolloutPlan(pool, "canary", steps, analysis, on_inconclusive, webhooks, gates)
    else:
        if _has_shadow_step(data.get("steps")):
            ck.add("steps", "is for strategy canary, and so is the shadow test step (a "
                            "blue-green candidate is judged in its preview)")  # fmt: skip
        elif "steps" in data:
            ck.add("steps", "is for strategy canary (bluegreen has preview and keep)")
        preview = data.get("preview")
        m = {} if preview is None else (ck.mapping(preview, "preview", ("hold", "max")) or {})
        hold = ck.get(m, "preview", "hold", defaults.hold, DURATION_GE0)
        longest = ck.get(m, "preview", "max", max(defaults.max, hold), DURATION_GT0)
        if longest < hold:
            ck.add("preview.max", "must be at least hold")
        keep = ck.get(data, "", "keep", 600.0, DURATION_GE0)
        auto = ck.get(data, "", "auto_promote", False, to_json_bool)
        steps = (Step(0.0, hold, longest), Step(100.0, keep, keep))
        plan = RolloutPlan(
            pool, "bluegreen", steps, analysis, on_inconclusive, webhooks, gates, auto, keep
        )
    if ck.problems:
        raise ConfigError(ck.problems)
    return plan


def to_json_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def _gates(ck: Checker, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.add("gates", "must be a list of {url}")
        return ()
    urls = []
    for i, item in enumerate(value):
        m = ck.mapping(item, f"gates[{i}]", ("url",))
        if m is None:
            continue
        if m.get("url") is None:
            ck.add(f"gates[{i}].url", "is required")
            continue
        url = ck.get(m, f"gates[{i}]", "url", "", to_hook_url)
        if url:
            urls.append(url)
    return tuple(urls)


def _steps(ck: Checker, value: Any, defaults: Rollouts) -> tuple[Step, ...]:
    raw: list[Any] = list(DEFAULT_STEPS) if value is None else value
    if not isinstance(raw, list) or not raw:
        ck.add("steps", "must be a list of weights, {weight, hold, max} or {pause: true}")
        return ()
    steps: list[Step] = []
    last = 0.0
    for i, item in enumerate(raw):
        path = f"steps[{i}]"
        hold, longest = defaults.hold, defaults.max
        if isinstance(item, dict) and "shadow" in item:
            ck.mapping(item, path, ("shadow",))
            if i > 0:
                ck.add(f"{path}.shadow", "only the first step may be the shadow test step")
                continue
            shadow = _shadow_step(ck, item["shadow"], f"{path}.shadow", defaults)
            if shadow is not None:
                steps.append(shadow)
            continue
        if isinstance(item, dict):
            if item.get("pause") is not None or "pause" in item:
                m = ck.mapping(item, path, ("pause",)) or {}
                if m.get("pause") is not True:
                    ck.add(f"{path}.pause", "must be true")
                steps.append(Step(None, 0.0, 0.0))
                continue
            m = ck.mapping(item, path, ("weight", "hold", "max")) or {}
            if m.get("weight") is None:
                ck.add(f"{path}.weight", "is required")
                continue
            weight = ck.get(m, path, "weight", -1.0, to_step_weight)
            hold = ck.get(m, path, "hold", defaults.hold, DURATION_GE0)
            longest = ck.get(m, path, "max", max(defaults.max, hold), DURATION_GT0)
            if longest < hold:
                ck.add(f"{path}.max", "must be at least hold")
            weight_path = f"{path}.weight"
        else:
            try:
                weight = to_step_weight(item)
            except Invalid as exc:
                ck.add(path, str(exc))
                continue
            longest = max(longest, hold)
            weight_path = path
        if weight < 0:
            continue
        if weight <= last:
            ck.add(weight_path, "must be above the weight of the step before (steps rise)")
        last = max(last, weight)
        steps.append(Step(weight, hold, longest))
    if steps and all(s.weight is None or s.shadow is not None for s in steps):
        tail = " after the shadow test step" if steps[0].shadow is not None else ""
        ck.add("steps", f"must have at least one weight{tail}")
    return tuple(steps)


def _has_shadow_step(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(s, dict) and "shadow" in s for s in value)


def _shadow_step(ck: Checker, value: Any, path: str, defaults: Rollouts) -> Step | None:
    """The shadow test step `{"shadow": {share, hold, max, max_diff_rate}}` (`value` is
    the inner mapping; every key optional)."""
    m = ck.mapping(value, path, _SHADOW_KEYS)
    if m is None:
        return None
    share = ck.get(m, path, "share", ShadowTest().share, to_shadow_share)
    limit = ck.get(m, path, "max_diff_rate", ShadowTest().max_diff_rate, to_diff_rate)
    hold = ck.get(m, path, "hold", defaults.hold, DURATION_GE0)
    longest = ck.get(m, path, "max", max(defaults.max, hold), DURATION_GT0)
    if longest < hold:
        ck.add(f"{path}.max", "must be at least hold")
    return Step(0.0, hold, longest, ShadowTest(share, limit))


def to_shadow_share(value: Any) -> float:
    """A shadow test step's share of the requests copied: above 0, at most 1."""
    if isinstance(value, str):  # JSON: a number is a number ("10%" is ctl's to write)
        raise Invalid("must be a number above 0, at most 1 (0.1: 10% of the requests)")
    number = to_float(value, "a number above 0, at most 1 (0.1: 10% of the requests)")
    if not 0 < number <= 1:
        raise Invalid("must be above 0 and at most 1 (0.1: 10% of the requests)")
    return number


def to_diff_rate(value: Any) -> float:
    """The difference rate a shadow test step allows: at least 0, below 1."""
    if isinstance(value, str):
        raise Invalid("must be a number from 0 to below 1 (0.01: 1% of the copies)")
    number = to_float(value, "a number from 0 to below 1 (0.01: 1% of the copies)")
    if not 0 <= number < 1:
        raise Invalid("must be at least 0 and below 1 (0.01: 1% of the copies)")
    return number + 0.0  # -0.0 is 0.0


def to_step_weight(value: Any) -> float:
    if isinstance(value, str):  # steps come from JSON: a number is a number
        raise Invalid("must be a number above 0, at most 100")
    number = to_float(value, "a number above 0, at most 100")
    if not 0 < number <= 100:
        raise Invalid("must be above 0 and at most 100")
    return number

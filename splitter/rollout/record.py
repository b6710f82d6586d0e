"""A rollout as splitter keeps it: the plan, where it is, the evidence, and its JSON (the
rollout object of docs/rollouts.md, and what the state file keeps to go on after a
restart)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from splitter.config import Analysis, RolloutPlan, ShadowTest, Step, Webhook
from splitter.rollout.judge import Counts, Limits
from splitter.rollout.shadowstep import ShadowCounts, diff_rate

FINAL = ("promoted", "rolled_back", "cancelled")


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def duration_text(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _plain(weights: Mapping[str, float]) -> dict[str, float | int]:
    return {k: int(v) if float(v).is_integer() else round(v, 6) for k, v in weights.items()}


@dataclass(frozen=True, slots=True)
class Rollout:
    """One rollout: its plan, where it is, and the evidence. A value: the machine
    (`rollout.machine`) makes a new one at each transition."""

    id: str
    plan: RolloutPlan
    start_weights: dict[str, float]
    started_at: float
    status: str = "progressing"
    phase: str = "judging"
    reason: str = ""
    step: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    updated_at: float = 0.0
    step_started_at: float = 0.0
    history: tuple[dict[str, Any], ...] = ()
    verdict: str = "pending"
    candidate: Counts = field(default_factory=Counts)
    baseline: Counts = field(default_factory=Counts)
    needed: int | None = None
    # Blue-green: the weights before the switch, the baseline's rates over `keep` before it.
    switched_at: float = 0.0
    before_switch: dict[str, float] = field(default_factory=dict)
    reference: Counts = field(default_factory=Counts)
    reference_p95: float = 0.0
    gate_step: int = 0  # what the gates are asked about: a step, or len(steps): promotion
    warmup_until: float = 0.0  # the step's requests count from then (0: they count now)
    # A shadow test step's evidence (the copies of the step so far); None at other steps.
    shadow: ShadowCounts | None = None

    @property
    def active(self) -> bool:
        return self.status not in FINAL

    @property
    def baseline_pools(self) -> list[str]:
        return [p for p, w in self.start_weights.items() if w > 0 and p != self.plan.pool]

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        steps: list[dict[str, Any]] = []
        if plan.strategy == "canary":
            for s in plan.steps:
                if s.shadow is not None:
                    steps.append({"shadow": {"share": s.shadow.share, "hold": duration_text(s.hold),
                                             "max": duration_text(s.max),
                                             "max_diff_rate": s.shadow.max_diff_rate}})  # fmt: skip
                    continue
                if s.weight is None:
                    steps.append({"pause": True})
                    continue
                weight = int(s.weight) if s.weight.is_integer() else s.weight
                steps.append(
                    {"weight": weight, "hold": duration_text(s.hold), "max": duration_text(s.max)}
                )
        else:
            preview = {"hold": duration_text(plan.steps[0].hold),
                       "max": duration_text(plan.steps[0].max)}  # fmt: skip
            steps = [{"preview": preview}, {"keep": duration_text(plan.keep)}]
        out: dict[str, Any] = {
            "id": self.id,
            "pool": plan.pool,
            "strategy": plan.strategy,
            "status": self.status,
            "reason": self.reason,
            "step": self.step,
            "steps": steps,
            "weights": _plain(self.weights),
            "start_weights": _plain(self.start_weights),
            "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at or self.started_at),
            "step_started_at": iso(self.step_started_at or self.started_at),
            "analysis": {
                "verdict": self.verdict,
                "candidate": _counts(self.candidate),
                "baseline": _counts(self.baseline),
                "needed_requests": self.needed,
                **({"warmup_until": iso(self.warmup_until)} if self.warmup_until else {}),
                **(_shadow_json(self.shadow, self.needed) if self.shadow is not None else {}),
            },
            "history": list(self.history),
        }
        if plan.strategy == "bluegreen":
            out["auto_promote"] = plan.auto_promote
            out["keep"] = duration_text(plan.keep)
        return out

    def state(self) -> dict[str, Any]:
        """What the state file keeps to go on after a restart: the object and the plan."""
        plan = self.plan
        return {
            "object": self.to_json(),
            "phase": self.phase,
            "plan": {
                "pool": plan.pool,
                "strategy": plan.strategy,
                "steps": [_step_state(s) for s in plan.steps],
                "analysis": [getattr(plan.analysis, f) for f in _ANALYSIS_FIELDS],
                "on_inconclusive": plan.on_inconclusive,
                "webhooks": [[h.url, list(h.events)] for h in plan.webhooks],
                "gates": list(plan.gates),
                "auto_promote": plan.auto_promote,
                "keep": plan.keep,
            },
            "start_weights": self.start_weights,
            "started_at": self.started_at,
            "switched_at": self.switched_at,
            "before_switch": self.before_switch,
            "reference": [self.reference.requests, self.reference.bad, self.reference.slow],
            "reference_p95": self.reference_p95,
            "gate_step": self.gate_step,
            # What the object shows, for the replicas that read it from a shared store.
            "step_started_at": self.step_started_at,
            "updated_at": self.updated_at,
            "candidate": _counts_list(self.candidate),
            "baseline": _counts_list(self.baseline),
            "needed": self.needed,
            "shadow": None if self.shadow is None else list(self.shadow.values()),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Rollout:
        obj, p = data["object"], data["plan"]
        plan = RolloutPlan(
            pool=str(p["pool"]),
            strategy=str(p["strategy"]),
            steps=tuple(_step_of(s) for s in p["steps"]),
            analysis=_analysis_of(p["analysis"]),
            on_inconclusive=str(p["on_inconclusive"]),
            webhooks=tuple(Webhook(str(u), tuple(str(e) for e in ev)) for u, ev in p["webhooks"]),
            gates=tuple(str(g) for g in p["gates"]),
            auto_promote=bool(p["auto_promote"]),
            keep=float(p["keep"]),
        )
        ref = data.get("reference", [0, 0, 0])
        needed = data.get("needed")
        status = str(obj["status"])
        step = int(obj["step"])
        return cls(
            id=str(obj["id"]),
            plan=plan,
            start_weights={k: float(v) for k, v in data["start_weights"].items()},
            started_at=float(data["started_at"]),
            status=status,
            phase=str(data.get("phase", "judging")),
            reason=str(obj.get("reason", "")),
            step=step,
            weights={k: float(v) for k, v in obj["weights"].items()},
            history=tuple(obj.get("history", [])),
            verdict=str(obj["analysis"]["verdict"]),
            switched_at=float(data.get("switched_at", 0.0)),
            before_switch={k: float(v) for k, v in data.get("before_switch", {}).items()},
            reference=Counts(int(ref[0]), int(ref[1]), int(ref[2])),
            reference_p95=float(data.get("reference_p95", 0.0)),
            gate_step=int(data.get("gate_step", step)),
            step_started_at=float(data.get("step_started_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
            candidate=_counts_of(data.get("candidate")),
            baseline=_counts_of(data.get("baseline")),
            needed=None if needed is None else int(needed),
            shadow=_shadow_of(data.get("shadow")),
        )


def is_shadow_step(r: Rollout) -> bool:
    """The rollout is at a canary's test step on shadow traffic."""
    steps = r.plan.steps
    return r.plan.strategy == "canary" and 0 <= r.step < len(steps) and bool(steps[r.step].shadow)


def judged_from(r: Rollout) -> float:
    """Requests count from the step's start plus the warmup (none for a preview or a shadow
    test step: warmup is for a weight change; their requests reach a pool at weight 0)."""
    if is_preview(r) or is_shadow_step(r):
        return r.step_started_at
    return r.step_started_at + r.plan.analysis.warmup


def is_preview(r: Rollout) -> bool:
    return r.plan.strategy == "bluegreen" and r.step == 0


def is_keep(r: Rollout) -> bool:
    return r.plan.strategy == "bluegreen" and r.step == 1


def progress_reason(r: Rollout) -> str:
    plan = r.plan
    if plan.strategy == "bluegreen":
        head = "preview" if r.step == 0 else "keep"
    else:
        head = f"step {r.step + 1} of {len(plan.steps)}"
    if r.warmup_until:
        until = time.strftime("%H:%M:%S", time.gmtime(r.warmup_until))
        return f"{head}: warming up until {until}Z (requests count from then)"
    if is_shadow_step(r):
        done = r.shadow.compared if r.shadow is not None else 0
        if r.needed:
            return f"{head}: shadow test, {done} of about {done + r.needed} copies compared"
        return f"{head}: shadow test, {done} copies compared so far"
    done = r.candidate.requests
    if r.needed:
        return f"{head}: judging, {done} of about {done + r.needed} candidate requests"
    return f"{head}: judging, {done} candidate requests so far"


def shadow_in_force(rollout: Rollout | None) -> tuple[str, float] | None:
    """What a rollout puts in force of shadow traffic: (the candidate pool, the share of
    the requests copied to it) while the rollout is active (progressing or paused, the
    gates' wait included) at its shadow test step; else None.

    Derived from the rollout alone, so every replica derives the same from the shared
    document. The data path copies `share` of the requests that the route's weighted
    choice sends elsewhere (the candidate's weight is 0 during the step)."""
    if rollout is None or not rollout.active or not is_shadow_step(rollout):
        return None
    test = rollout.plan.steps[rollout.step].shadow
    assert test is not None
    return rollout.plan.pool, test.share


def _step_state(s: Step) -> list[Any]:
    """A step as the state keeps it: [weight, hold, max], and for a shadow test step
    [0, hold, max, {"share", "max_diff_rate"}] (so the state of before reads as it was)."""
    if s.shadow is None:
        return [s.weight, s.hold, s.max]
    return [0.0, s.hold, s.max, {"share": s.shadow.share, "max_diff_rate": s.shadow.max_diff_rate}]


def _step_of(saved: list[Any]) -> Step:
    weight, hold, longest = saved[:3]
    if len(saved) > 3:
        test = saved[3]
        shadow = ShadowTest(float(test["share"]), float(test["max_diff_rate"]))
        return Step(0.0, float(hold), float(longest), shadow)
    return Step(None if weight is None else float(weight), float(hold), float(longest))


def _shadow_of(value: Any) -> ShadowCounts | None:
    if isinstance(value, list) and len(value) == 5:
        return ShadowCounts(*(int(v) for v in value))
    return None


def _shadow_json(c: ShadowCounts, needed: int | None) -> dict[str, Any]:
    """A shadow test step's evidence in the rollout object's `analysis`."""
    return {
        "kind": "shadow",
        "shadow": {
            "compared": c.compared,
            "differ": c.differ,
            "diff_rate": round(diff_rate(c), 6),
            "pairs": c.pairs,
            "shadow_bad": c.shadow_bad,
            "primary_bad": c.primary_bad,
            "needed": needed,
        },
    }


_ANALYSIS_FIELDS = (
    "confidence", "max_error_ratio", "min_error_rate", "max_slow_ratio", "latency_floor", "warmup"
)  # fmt: skip


def _analysis_of(values: Any) -> Analysis:
    confidence, error_ratio, error_rate, slow_ratio, floor, warmup = (float(v) for v in values)
    return Analysis(confidence, error_ratio, error_rate, slow_ratio, floor, warmup)


def _counts_list(c: Counts) -> list[int]:
    return [c.requests, c.bad, c.slow]


def _counts_of(value: Any) -> Counts:
    if isinstance(value, list) and len(value) == 3:
        return Counts(int(value[0]), int(value[1]), int(value[2]))
    return Counts()


def _counts(c: Counts) -> dict[str, int]:
    return {"requests": c.requests, "bad": c.bad, "slow": c.slow}


def limits_of(analysis: Analysis) -> Limits:
    return Limits(
        confidence=analysis.confidence,
        max_error_ratio=analysis.max_error_ratio,
        min_error_rate=analysis.min_error_rate,
        max_slow_ratio=analysis.max_slow_ratio,
    )

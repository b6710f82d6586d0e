"""The rollout as a pure state machine: (rollout, context, command) -> (rollout, effects).

Pure: no I/O, no clock, no judge of its own. The shell (`engine.RolloutEngine`) gives it the
time and the weights in force (`Context`), and for a look at the step the judge's reading
(`Evidence`); it gets back the new rollout (frozen: the one it gave is never changed) and
what the transition makes happen once it is written (`effects`): weights to put in force,
events and webhooks, judging to start again, verdicts to count. A command that cannot be
done raises `RolloutError` (409: not now; 404: no such pool) and changes nothing.

States: `status`, and `phase` within it.

    state                       what it waits for
    --------------------------  ------------------------------------------------------
    progressing/judging         a step in force; the judge looks at it
    progressing/gate            the gates, asked before a weight increase or the switch
    paused/manual               a {"pause": true} step: resume or promote
    paused/gate                 a gate said no or did not answer: asked again
    paused/inconclusive         `max` passed with no verdict (on_inconclusive: pause)
    paused/awaiting_promotion   a passed blue-green preview (auto_promote off)
    paused/operator             pause was called: resume
    paused/sample_ratio         the realised split departs from the weights
    promoted, rolled_back, cancelled   final (phase "")

Commands, and what each does in each state (`TABLE` is this table as data; a command a
state does not list is refused with 409 when an operator sent it, and is a no-op when the
shell did: `Look`, `GatesAnswered`, `Cancel`, `TakeOver`):

    command          states               goes to
    ---------------  -------------------  ---------------------------------------------
    Start            none or final        canary: step 0 (through the gates when it has
                                          any; a shadow test step needs none: no weight
                                          rises); blue-green: the preview
    Look             progressing/judging  fail -> rolled_back; sample-ratio alarm ->
                                          paused/sample_ratio; pass after hold -> the next
                                          step (through the gates) or promoted; max over
                                          -> on_inconclusive; the candidate's active checks
                                          failing for max(warmup, 5 s) -> rolled_back; keep
                                          over -> promoted
    GatesAnswered    */gate               yes -> what they were asked about; no ->
                                          paused/gate with the reason
    Pause            progressing/*        paused/operator (already paused: as it is)
    Resume           paused/*             manual: the next step; gate: ask again;
                                          awaiting_promotion: as it is; else judge the
                                          step again for another max
    Promote          any active           the step ends as passed (no gates: the operator
                                          is the gate); full: promoted
    Abort            any active           rolled_back ("aborted")
    Cancel           any active           cancelled, the weights in force kept
    TakeOver         any active           the step goes on, its judging started again

Rules: a step's weights are the candidate at its weight and the baseline pools (those with
a weight when the rollout started) sharing the rest as they did; a shadow test step (a
canary's first step only) keeps the weights the rollout started with, the candidate at 0,
and what it puts in force of shadow traffic is derived from the rollout
(`record.shadow_in_force`), not an effect; it is judged on the copies
(`shadowstep.ShadowJudge`), from its start (no warmup: no weight rises); a rollback gives the
baseline back the weights it started with (blue-green after the switch: the weights from
before the switch); promotion is the candidate at 100, every other pool at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

from splitter.config import RolloutPlan
from splitter.errors import RolloutError
from splitter.rollout.commands import (
    Abort,
    Cancel,
    Command,
    Context,
    CountVerdict,
    Effect,
    Emit,
    Evidence,
    GatesAnswered,
    Judge,
    Look,
    Outcome,
    Pause,
    Promote,
    Reference,
    Resume,
    SetWeights,
    Start,
    TakeOver,
)
from splitter.rollout.judge import FAIL, PASS, Counts
from splitter.rollout.record import (
    Rollout,
    duration_text,
    is_keep,
    is_preview,
    is_shadow_step,
    iso,
    judged_from,
    progress_reason,
)
from splitter.rollout.shadowstep import ShadowCounts

__all__ = [
    "TABLE",
    "Abort",
    "Cancel",
    "Command",
    "Context",
    "CountVerdict",
    "Emit",
    "Evidence",
    "GatesAnswered",
    "Judge",
    "Look",
    "Outcome",
    "Pause",
    "Promote",
    "Reference",
    "Resume",
    "SetWeights",
    "Start",
    "TakeOver",
    "step",
]

MIN_DOWN: Final = 5.0  # a candidate with no live backend this long (at least) fails
# The way out a start refused for an active rollout names; the admin API names the route's
# own ways when the call named one.
ABORT_WAY: Final = "splitter ctl rollout abort, or POST /api/v1/rollout/abort"

# --- the machine -------------------------------------------------------------------------------


class _Run:
    """One transition being computed: the rollout so far, the weights it has set, the
    effects so far. Local to `step`; the rollout values themselves are never changed."""

    __slots__ = ("ctx", "effects", "r", "staged", "weights_before")

    def __init__(self, r: Rollout, ctx: Context) -> None:
        self.r = r
        self.ctx = ctx
        self.staged: dict[str, float] = {}
        self.effects: list[Effect] = []
        self.weights_before: dict[str, float] | None = None

    @property
    def now(self) -> float:
        return self.ctx.now

    def weights(self) -> dict[str, float]:
        """The weights in force once this transition is written."""
        return {**self.ctx.weights, **self.staged}

    def set(self, **changes: object) -> None:
        self.r = replace(self.r, **changes)  # type: ignore[arg-type]

    def record(self, what: str, detail: str) -> None:
        entry = {"at": iso(self.now), "what": what, "detail": detail}
        self.set(history=(*self.r.history, entry), updated_at=self.now)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        if self.weights_before is None:
            self.weights_before = dict(self.r.weights)
        self.staged.update(weights)
        self.set(weights=self.weights(), updated_at=self.now)

    def emit(self, event: str) -> None:
        old = self.weights_before if self.weights_before is not None else dict(self.r.weights)
        self.weights_before = None
        self.effects.append(Emit(event, self.r, old, self.weights()))

    def count(self, verdict: str) -> None:
        self.effects.append(CountVerdict(verdict))

    def outcome(self) -> Outcome:
        effects = list(self.effects)
        if self.staged:
            effects.insert(0, SetWeights(dict(self.staged)))
        return Outcome(self.r, tuple(effects))


Handler = Callable[[_Run, Command], None]


def step(r: Rollout | None, ctx: Context, command: Command) -> Outcome | None:
    """The transition `command` makes from `r` (None: nothing to write)."""
    if isinstance(command, Start):
        if r is not None and r.active:
            raise RolloutError(409, f"a rollout of {r.plan.pool} is already {r.status} "
                                    f"(id {r.id}); abort it first: {ABORT_WAY}")  # fmt: skip
        return _start(ctx, command)
    name = _NAMES[type(command)]
    if r is None or not r.active:
        if name in _FROM_OPERATOR:
            raise RolloutError(409, "no rollout is active")
        return None
    handler = TABLE[state_of(r)].get(name)
    if handler is None:
        if name == "resume":
            raise RolloutError(409, "the rollout is not paused")
        if name in _FROM_OPERATOR:
            raise RolloutError(409, f"the rollout is {state_of(r)}: {name} does not apply")
        return None
    run = _Run(r, ctx)
    handler(run, command)
    if run.r is r:
        return None
    out = run.outcome()
    if isinstance(command, Look) and not out.effects and _only_counts(r, run.r):
        return replace(out, moved=False)
    return out


def state_of(r: Rollout) -> str:
    return f"{r.status}/{r.phase}" if r.phase else r.status


def _only_counts(before: Rollout, after: Rollout) -> bool:
    moving = ("candidate", "baseline", "needed", "reason", "updated_at", "warmup_until", "shadow")
    return replace(after, **{k: getattr(before, k) for k in moving}) == before


# --- starting and the operator's commands -------------------------------------------------------


def _start(ctx: Context, command: Start) -> Outcome:
    plan = command.plan
    weights = dict(ctx.weights)
    if plan.pool not in weights:
        raise RolloutError(404, f"unknown pool: {plan.pool}")
    if not any(w > 0 for p, w in weights.items() if p != plan.pool):
        raise RolloutError(409, f"{plan.pool} is the only pool with a weight > 0: "
                                "there is nothing to compare it with")  # fmt: skip
    r = Rollout(command.id, plan, weights, ctx.now, weights=dict(weights), updated_at=ctx.now)
    run = _Run(r, ctx)
    run.record("started", f"{plan.strategy} strategy")  # the event names the pool
    run.emit("started")
    if plan.strategy == "bluegreen":
        _enter_step(run, 0)
    else:
        _go_to(run, 0, gate=True)
    return run.outcome()


def _pause(run: _Run, command: Command) -> None:
    _set_paused(run, "operator", "paused by an operator")


def _already_paused(run: _Run, command: Command) -> None:
    pass


def _resume(run: _Run, command: Command) -> None:
    r = run.r
    phase = r.phase
    run.record("resumed", phase)
    run.emit("resumed")
    if phase == "manual":
        _go_to(run, r.step + 1, gate=True)
    elif phase == "gate":
        _go_to(run, r.gate_step, gate=True)
    elif phase == "awaiting_promotion":
        run.set(reason="awaiting promotion: preview passed (promote to switch)")
    else:  # operator, inconclusive, sample ratio: judge the step again, for another max
        _restart_judging(run)


def _promote(run: _Run, command: Command) -> None:
    assert isinstance(command, Promote)
    r = run.r
    run.record("promote", "to the end" if command.full else f"step {r.step + 1} ends as passed")
    if command.full:
        _finish_promoted(run)
    elif is_preview(r):
        _switch(run)
    else:
        _advance(run, gate=False)


def _abort(run: _Run, command: Command) -> None:
    _roll_back(run, "aborted")


def _cancel(run: _Run, command: Command) -> None:
    assert isinstance(command, Cancel)
    run.set(status="cancelled", reason=command.why, weights=run.weights())
    run.record("cancelled", command.why)
    run.emit("cancelled")
    _finished(run)


def _take_over(run: _Run, command: Command) -> None:
    r = run.r
    run.record("restarted", f"step {r.step + 1}: judging started again")
    if r.phase == "gate":
        _go_to(run, r.gate_step, gate=True)
    elif r.phase == "judging":
        _restart_judging(run)


def _gates_answered(run: _Run, command: Command) -> None:
    assert isinstance(command, GatesAnswered)
    r = run.r
    if r.id != command.rollout_id:
        return
    if command.refused is None:
        run.record("gate", f"the gates agreed to {gate_what(r)}")
        _after_gates(run)
    elif r.status != "paused":
        _set_paused(run, "gate", command.refused)
    elif r.reason != command.refused:
        run.set(reason=command.refused)


# --- looking at the step -------------------------------------------------------------------------


def _look(run: _Run, command: Command) -> None:
    assert isinstance(command, Look)
    ev = command.evidence
    r = run.r
    plan = r.plan
    now = run.now
    if ev.down_for > max(plan.analysis.warmup, MIN_DOWN):
        _fail(run, f"{plan.pool} has had no live backend for over "
                   f"{max(plan.analysis.warmup, MIN_DOWN):g}s")  # fmt: skip
        return
    if r.warmup_until and now >= r.warmup_until:
        run.set(warmup_until=0.0)
    verdict = ev.verdict
    _note(run, ev)
    elapsed = now - r.step_started_at
    if is_keep(r):
        if verdict.verdict == FAIL:
            _fail(run, verdict.reason)
        elif elapsed >= plan.keep:
            _finish_promoted(run)
        else:
            run.set(reason=f"switched: keeping watch, {int(plan.keep - elapsed)}s left")
        return
    current = plan.steps[r.step]
    if verdict.verdict == FAIL:
        _fail(run, verdict.reason)
    elif ev.ratio_mismatch is not None:
        _set_paused(run, "sample_ratio", ev.ratio_mismatch)
    elif verdict.verdict == PASS:
        run.count("pass")
        run.record("passed", f"step {r.step + 1}: {verdict.reason}")
        if plan.strategy == "bluegreen":
            if plan.auto_promote:
                _go_to(run, 1, gate=True)
            else:
                why = "awaiting promotion: preview passed (promote to switch)"
                _set_paused(run, "awaiting_promotion", why)
        else:
            _advance(run, gate=True)
    elif elapsed >= current.max:
        _inconclusive(run, ev)
    else:
        run.set(reason=progress_reason(run.r))


def _note(run: _Run, ev: Evidence) -> None:
    changes: dict[str, object] = {
        "candidate": ev.candidate,
        "baseline": ev.baseline,
        "needed": ev.verdict.needed_requests,
    }
    if is_shadow_step(run.r) and ev.shadow is not None:
        changes["shadow"] = ev.shadow
    if ev.verdict.verdict != "pending":
        changes["verdict"] = ev.verdict.verdict
    run.set(**changes)


def _inconclusive(run: _Run, ev: Evidence) -> None:
    r = run.r
    plan = r.plan
    run.count("inconclusive")
    needed = r.needed
    if needed is None and r.candidate.requests == 0:
        needed = ev.needed_without_traffic
    run.set(verdict="inconclusive", needed=needed)
    unit = "copies" if is_shadow_step(r) else "candidate requests"
    more = f"about {needed} more {unit}" if needed else f"more {unit.split()[-1]}"
    why = (f"step {r.step + 1}: no verdict after {duration_text(plan.steps[r.step].max)}; "
           f"a verdict needs {more}")  # fmt: skip
    run.record("inconclusive", why)
    if plan.on_inconclusive == "rollback":
        _roll_back(run, why)
    elif plan.on_inconclusive == "promote":
        _advance(run, gate=True)
    else:
        _set_paused(run, "inconclusive", why)


# --- moving between steps ------------------------------------------------------------------------


def _advance(run: _Run, gate: bool) -> None:
    """The current step passed: on to the next one (through the gates when `gate`)."""
    r = run.r
    if r.plan.strategy == "bluegreen":
        if r.step == 0:
            _go_to(run, 1, gate=gate)
        else:
            _finish_promoted(run)
        return
    _go_to(run, r.step + 1, gate=gate)


def _is_last(plan: RolloutPlan, index: int) -> bool:
    steps = plan.steps
    return index >= len(steps) or (index == len(steps) - 1 and (steps[index].weight or 0.0) >= 100)


def _go_to(run: _Run, index: int, gate: bool) -> None:
    """Step `index`: a manual gate waits; a weight is put in force (after the gates, when
    it rises and the rollout moves by itself); past the last step, or at a last step of
    100, the rollout is promoted (through the gates too)."""
    r = run.r
    plan = r.plan
    if plan.strategy == "bluegreen":
        if index == 1:
            if gate and plan.gates:
                _ask_gates(run, 1, "the switch")
            else:
                _switch(run)
        else:
            _enter_step(run, index)
        return
    if _is_last(plan, index):
        if gate and plan.gates and r.weights.get(plan.pool, 0.0) < 100:
            _ask_gates(run, len(plan.steps), "promotion")
        else:
            _finish_promoted(run)
        return
    weight = plan.steps[index].weight
    if weight is None:
        run.set(step=index)
        _set_paused(run, "manual", f"step {index + 1} of {len(plan.steps)}: "
                                   "manual gate, waiting for resume or promote")  # fmt: skip
        return
    if gate and plan.gates and weight > r.weights.get(plan.pool, 0.0):
        _ask_gates(run, index, f"step {index + 1}")
        return
    _apply_step(run, index)


def _after_gates(run: _Run) -> None:
    """The gates agreed: do what they were asked about."""
    r = run.r
    if r.plan.strategy == "bluegreen":
        _switch(run)
    elif _is_last(r.plan, r.gate_step):
        _finish_promoted(run)
    else:
        _apply_step(run, r.gate_step)


def _apply_step(run: _Run, index: int) -> None:
    plan = run.r.plan
    step = plan.steps[index]
    weight = step.weight
    assert weight is not None
    run.set(step=index)
    where = f"step {index + 1} of {len(plan.steps)}: {plan.pool}"
    if step.shadow is not None:  # the weights it started with, the candidate at 0
        run.set_weights({**run.r.start_weights, plan.pool: 0.0})
        run.record("step", f"{where} at 0%, shadow test on copies of "
                           f"{step.shadow.share * 100:g}% of the requests")  # fmt: skip
    else:
        run.set_weights(step_weights(run.r, weight))
        run.record("step", f"{where} at {weight:g}%")
    _enter_step(run, index)
    run.emit("step")


def step_weights(r: Rollout, weight: float) -> dict[str, float]:
    """The candidate at `weight` percent; the baseline pools share the rest as they shared
    the traffic when the rollout started; every other pool 0."""
    baseline = r.baseline_pools
    total = sum(r.start_weights[p] for p in baseline)
    weights = {p: 0.0 for p in r.start_weights}
    weights[r.plan.pool] = weight
    for p in baseline:
        weights[p] = (100.0 - weight) * r.start_weights[p] / total
    return weights


def _enter_step(run: _Run, index: int) -> None:
    """Judge step `index` from now."""
    run.set(step=index)
    _restart_judging(run)


def _restart_judging(run: _Run) -> None:
    now = run.now
    run.set(phase="judging", status="progressing", step_started_at=now, updated_at=now,
            verdict="pending", candidate=Counts(), baseline=Counts(), needed=None,
            shadow=ShadowCounts() if is_shadow_step(run.r) else None)  # fmt: skip
    start = judged_from(run.r)
    run.set(warmup_until=start if start > now else 0.0)  # shown while it lasts
    run.set(reason=progress_reason(run.r))
    run.effects.append(Judge())


def _switch(run: _Run) -> None:
    """Blue-green: everyone to the candidate at once; keep watch for `keep`."""
    r = run.r
    plan = r.plan
    ref = run.ctx.reference
    run.set(before_switch=run.weights(), reference=ref.counts, reference_p95=ref.p95,
            switched_at=run.now, step=1)  # fmt: skip
    weights = {p: 0.0 for p in r.start_weights}
    weights[plan.pool] = 100.0
    run.set_weights(weights)
    run.record("step", f"switched to {plan.pool}: keeping watch for {duration_text(plan.keep)}")
    _enter_step(run, 1)
    run.emit("step")


def _ask_gates(run: _Run, index: int, what: str) -> None:
    run.set(status="progressing", phase="gate", gate_step=index,
            reason=f"asking the gates before {what}", updated_at=run.now)  # fmt: skip


def gate_what(r: Rollout) -> str:
    """What the gates are asked about."""
    if r.plan.strategy == "bluegreen":
        return "the switch"
    if _is_last(r.plan, r.gate_step):
        return "promotion"
    return f"step {r.gate_step + 1}"


# --- ending ------------------------------------------------------------------------------


def _fail(run: _Run, why: str) -> None:
    run.count("fail")
    run.set(verdict="fail")
    _roll_back(run, why)


def _roll_back(run: _Run, why: str) -> None:
    r = run.r
    if is_keep(r) and r.before_switch:
        weights = dict(r.before_switch)
    else:
        weights = dict(r.start_weights)
    weights[r.plan.pool] = 0.0
    if not any(w > 0 for w in weights.values()):
        weights = dict(r.start_weights)
    run.set_weights(weights)
    run.set(status="rolled_back", reason=why)
    run.record("rolled_back", why)
    run.emit("rolled_back")
    _finished(run)


def _finish_promoted(run: _Run) -> None:
    r = run.r
    plan = r.plan
    weights = {p: 0.0 for p in r.start_weights}
    weights[plan.pool] = 100.0
    run.set_weights(weights)
    if plan.strategy == "canary":
        run.set(step=len(plan.steps) - 1)
    run.set(status="promoted", reason=f"{plan.pool} has all the traffic")
    if run.r.verdict == "pending":
        run.set(verdict="pass")
    run.record("promoted", run.r.reason)
    run.emit("promoted")
    _finished(run)


def _finished(run: _Run) -> None:
    run.set(phase="", updated_at=run.now, warmup_until=0.0)


def _set_paused(run: _Run, phase: str, why: str) -> None:
    run.set(status="paused", phase=phase, reason=why, updated_at=run.now)
    run.record("paused", why)
    run.emit("paused")


# --- the table ---------------------------------------------------------------------------

_NAMES: dict[type, str] = {
    Pause: "pause",
    Resume: "resume",
    Promote: "promote",
    Abort: "abort",
    Cancel: "cancel",
    TakeOver: "take_over",
    Look: "look",
    GatesAnswered: "gates",
}
_FROM_OPERATOR = frozenset(["pause", "resume", "promote", "abort"])

_ACTIVE: dict[str, Handler] = {
    "promote": _promote,
    "abort": _abort,
    "cancel": _cancel,
    "take_over": _take_over,
}
_PAUSED: dict[str, Handler] = {**_ACTIVE, "pause": _already_paused, "resume": _resume}

TABLE: Final[dict[str, dict[str, Handler]]] = {
    "progressing/judging": {**_ACTIVE, "pause": _pause, "look": _look},
    "progressing/gate": {**_ACTIVE, "pause": _pause, "gates": _gates_answered},
    "paused/manual": _PAUSED,
    "paused/gate": {**_PAUSED, "gates": _gates_answered},
    "paused/inconclusive": _PAUSED,
    "paused/awaiting_promotion": _PAUSED,
    "paused/operator": _PAUSED,
    "paused/sample_ratio": _PAUSED,
    "promoted": {},
    "rolled_back": {},
    "cancelled": {},
}

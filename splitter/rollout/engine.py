"""The rollout engine: a state machine over the judge (see the package's docstring).

Each transition is an in-memory change of the rollout (`_start`, `_pause`, ..., `_tick`)
committed to the store as one write of the document: the rollout, the rollouts before
it and the weights the transition set (`_commit`). The transition is computed on the
latest document; when the write does not happen (a conflict, the store down, a lost
lease), what it changed in memory is put back from a snapshot taken before it, and on a
conflict it is computed again on the newer document. What a transition makes happen
outside (events, webhooks, asking the gates) waits for the write.

One replica drives the rollout: the leader (`host.leader`; always, with the state file
alone). It judges every second (`tick`) and asks the gates, and its writes are fenced by
the lease. Every replica takes calls of the API (start, pause, resume, promote, abort) and
commits them the same way; each takes up the rollout of a newer document (`take`). A
replica that becomes the leader goes on with the rollout at its step, that step's judging
started again (`take_over`).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol, TypeVar

from splitter.config import RolloutPlan
from splitter.errors import NotLeader, RolloutError, StoreUnavailable
from splitter.observe.stats import ASSIGNED, Window
from splitter.rollout import saved
from splitter.rollout.evidence import (
    BASELINE_WINDOW,
    add_classes,
    baseline_view,
    judged,
    needed_without_traffic,
    slow_threshold,
)
from splitter.rollout.judge import (
    FAIL,
    PASS,
    CanaryJudge,
    Counts,
    KeepJudge,
    PreviewJudge,
    SampleRatio,
    Verdict,
)
from splitter.rollout.record import Rollout, duration_text, iso, limits_of
from splitter.store import Compute, Document, Edit

log = logging.getLogger("splitter.rollout")

HISTORY_KEPT: Final = 20
GATE_RETRY: Final = 10.0  # seconds between two askings of a gate that said no
HOOK_TIMEOUT: Final = 5.0
HOOK_TRIES: Final = 3
SETTLED: Final = 2  # a second is read this long after it ended (every process reported)
MIN_DOWN: Final = 5.0  # a candidate with no live backend this long (at least) fails

T = TypeVar("T")
_NOTHING: Any = object()  # a transition that changed nothing: nothing to write


class RolloutHost(Protocol):
    """What the engine needs of the running splitter (`app.Splitter` is one)."""

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


# POST a JSON body; the answer's status, or an exception (a timeout, a refused connection).
Poster = Callable[[str, dict[str, Any], float], Awaitable[int]]


class RolloutEngine:
    """The rollout state machine (see the module docstring). Call `tick` every second."""

    def __init__(
        self,
        host: RolloutHost,
        post: Poster,
        clock: Callable[[], float] = time.time,
        settled: int = SETTLED,
    ) -> None:
        self.host = host
        self.post = post
        self.clock = clock
        self.settled = settled  # a second is read this long after it ended
        self.current: Rollout | None = None  # the active rollout, or the last one
        self.history: list[dict[str, Any]] = []  # finished rollouts, newest first
        self.verdicts: dict[tuple[str, str], int] = {}
        self._judge: CanaryJudge | PreviewJudge | KeepJudge | None = None
        self._ratio: SampleRatio | None = None
        self._cursor = 0  # the next second to read
        self._down_since = 0.0
        self._next_write = 0.0  # a look that only moved the counts is written from then
        self._keep_reference: dict[str, Counts] = {}  # the baseline's classes before a switch
        self._failover_seconds: set[int] = set()  # seconds the candidate was out of routing
        self._gate_task: asyncio.Task[None] | None = None
        self._gate_asked = 0  # asks of the gates made; the task runs the last one
        self._gate_running = 0  # the ask the gate task runs
        self._tasks: set[asyncio.Task[None]] = set()
        # While a transition is computed: the document it is computed on, the weights it
        # sets, and what it makes happen once written.
        self._doc = Document()
        self._staged: dict[str, float] | None = None
        self._effects: list[Callable[[], None]] = []

    @property
    def active(self) -> Rollout | None:
        r = self.current
        return r if r is not None and r.active else None

    # -- the API ------------------------------------------------------------------------

    async def start(self, plan: RolloutPlan) -> Rollout:
        return await self._commit(lambda: self._start(plan))

    async def pause(self) -> Rollout:
        return await self._commit(self._pause)

    async def resume(self) -> Rollout:
        return await self._commit(self._resume)

    async def promote(self, full: bool = False) -> Rollout:
        return await self._commit(lambda: self._promote(full))

    async def abort(self) -> Rollout:
        return await self._commit(self._abort)

    async def cancel(self, why: str) -> None:
        """A rollout that cannot go on (its pool left the config) ends as cancelled."""
        await self._commit(lambda: self._cancel(why))

    def _start(self, plan: RolloutPlan) -> Rollout:
        if self.active is not None:
            r = self.active
            raise RolloutError(409, f"a rollout of {r.plan.pool} is already {r.status} "
                                    f"(id {r.id}); abort it first: splitter ctl rollout abort, "
                                    "or POST /api/v1/rollout/abort")  # fmt: skip
        weights = self._current_weights()
        if plan.pool not in weights:
            raise RolloutError(404, f"unknown pool: {plan.pool}")
        if not any(w > 0 for p, w in weights.items() if p != plan.pool):
            raise RolloutError(409, f"{plan.pool} is the only pool with a weight > 0: "
                                    "there is nothing to compare it with")  # fmt: skip
        now = self.clock()
        r = Rollout(secrets.token_hex(8), plan, dict(weights), now, weights=dict(weights))
        r.updated_at = now
        if self.current is not None:
            self._archive(self.current)
        self.current = r
        self._record(r, "started", f"{plan.strategy} strategy")  # the event names the pool
        self._emit(r, "started")
        if plan.strategy == "bluegreen":
            self._enter_step(r, 0)
        else:
            self._go_to(r, 0, gate=True)
        return r

    def _pause(self) -> Rollout:
        r = self._require_active()
        if r.status == "paused":
            return r
        self._cancel_gate()
        self._set_paused(r, "operator", "paused by an operator")
        return r

    def _resume(self) -> Rollout:
        r = self._require_active()
        if r.status != "paused":
            raise RolloutError(409, "the rollout is not paused")
        phase = r.phase
        self._record(r, "resumed", phase)
        self._emit(r, "resumed")
        if phase == "manual":
            self._go_to(r, r.step + 1, gate=True)
        elif phase == "gate":
            self._go_to(r, r.gate_step, gate=True)
        elif phase == "awaiting_promotion":
            r.reason = "awaiting promotion: preview passed (promote to switch)"
        else:  # operator, inconclusive, sample ratio: judge the step again, for another max
            r.status = "progressing"
            self._restart_judging(r)
        return r

    def _promote(self, full: bool) -> Rollout:
        r = self._require_active()
        self._cancel_gate()
        self._record(r, "promote", "to the end" if full else f"step {r.step + 1} ends as passed")
        if full:
            self._finish_promoted(r)
        elif r.plan.strategy == "bluegreen" and r.step == 0:
            self._switch(r)
        else:
            self._advance(r, gate=False)
        return r

    def _abort(self) -> Rollout:
        r = self._require_active()
        self._cancel_gate()
        self._roll_back(r, "aborted")
        return r

    def _cancel(self, why: str) -> Any:
        """A file edit of the weights wins: the rollout ends, the file's weights stand."""
        r = self.active
        if r is None:
            return _NOTHING
        self._cancel_gate()
        r.status = "cancelled"
        r.reason = why
        r.weights = self._current_weights()
        self._record(r, "cancelled", why)
        self._emit(r, "cancelled")
        self._finished(r)
        return None

    def cancel_in(self, edit: Edit, why: str) -> Edit:
        """`edit` (a file edit of the weights) with the active rollout cancelled, as one
        write."""
        snapshot = self._snapshot()
        self._begin(edit.doc)
        try:
            if self._cancel(why) is _NOTHING:
                return edit
            mine = self._edit_of(edit.doc, snapshot)
        except BaseException:
            self._restore(snapshot)
            raise
        return edit.then(mine)

    def get(self) -> Rollout | None:
        return self.current

    def listing(self) -> list[dict[str, Any]]:
        out = []
        if self.current is not None:
            out.append(self.current.to_json())
        out.extend(self.history)
        return out[:HISTORY_KEPT]

    def take(self, doc: Document) -> None:
        """A newer document is in force: take up its rollout (and the ones before it).
        The leader judges a step it did not judge yet from the step's start."""
        history = doc.rollouts if isinstance(doc.rollouts, list) else []
        self.history = [h for h in history if isinstance(h, dict)][:HISTORY_KEPT]
        before = self.current
        r = None
        if isinstance(doc.rollout, dict):
            try:
                r = saved.read(doc.rollout)
            except ValueError as exc:  # set_aside keeps such a document from coming here
                log.error("the saved rollout cannot be read (%s): it is dropped", exc)
        self.current = r
        if r is not None and r.active and (before is None or _where(before) != _where(r)):
            self._new_judge(r)
        self._sync_gate()

    def set_aside(self, doc: Document) -> tuple[Document, str | None]:
        """`doc` with a saved rollout that does not validate (`saved.read`) replaced by
        a cancelled one, the weights in force kept; and why (None: `doc` as it is)."""
        if doc.rollout is None:
            return doc, None
        try:
            saved.read(doc.rollout)
        except ValueError as exc:
            weights = self.host.shared_weights(doc)
            state = saved.cancelled(doc.rollout, str(exc), weights, self.clock())
            return doc.replace(rollout=state), str(exc)
        return doc, None

    async def take_over(self) -> None:
        """This replica drives the rollout from now (it started, or became the leader):
        the step goes on, its judging started again."""
        r = self.active
        if r is None:
            self._sync_gate()
            return
        await self._commit(self._take_over, fence=True)

    def _take_over(self) -> Any:
        r = self.active
        if r is None:
            return _NOTHING
        self._record(r, "restarted", f"step {r.step + 1}: judging started again")
        if r.phase == "gate":
            self._go_to(r, r.gate_step, gate=True)
        elif r.phase == "judging":
            self._restart_judging(r)
        log.info("rollout %s of %s goes on at step %d", r.id, r.plan.pool, r.step + 1)
        return None

    def lead_changed(self) -> None:
        """This replica stopped leading (or started): the gates follow."""
        self._sync_gate()

    def shutdown(self) -> None:
        self._cancel_gate_task()
        for task in list(self._tasks):
            task.cancel()

    # -- committing ---------------------------------------------------------------------

    async def _commit(self, transition: Callable[[], T], fence: bool = False) -> T:
        """Compute `transition` on the latest document and write it (see the module's
        docstring). RolloutError, StoreUnavailable, NotLeader."""
        result: list[T] = []

        def compute(doc: Document) -> Edit | None:
            snapshot = self._snapshot()
            self._begin(doc)
            try:
                outcome = transition()
                if outcome is _NOTHING:
                    self._restore(snapshot)
                    result[:] = [outcome]
                    return None
                edit = self._edit_of(doc, snapshot)
            except BaseException:
                self._restore(snapshot)
                raise
            result[:] = [outcome]
            return edit

        await self.host.commit(compute, fence)
        return result[0] if result else _NOTHING

    def _begin(self, doc: Document) -> None:
        self._doc = doc
        self._staged = None
        self._effects = []

    def _edit_of(self, doc: Document, snapshot: Any) -> Edit:
        r = self.current
        new = doc.replace(rollout=None if r is None else r.state(), rollouts=list(self.history))
        if self._staged is not None:
            new = self.host.weights_doc(new, self._staged)
        effects = self._effects
        self._effects = []

        def done() -> None:
            for effect in effects:
                effect()
            self._sync_gate()

        return Edit(new, done, lambda: self._restore(snapshot))

    def _snapshot(self) -> Any:
        return (
            copy.deepcopy((self.current, self.verdicts, self._judge, self._ratio)),
            list(self.history),
            self._cursor,
            self._down_since,
            self._gate_asked,
        )

    def _restore(self, snapshot: Any) -> None:
        kept, self.history, self._cursor, self._down_since, self._gate_asked = snapshot
        self.current, self.verdicts, self._judge, self._ratio = copy.deepcopy(kept)
        self._staged = None
        self._effects = []

    def _current_weights(self) -> dict[str, float]:
        weights = self.host.shared_weights(self._doc)
        if self._staged is not None:
            weights.update(self._staged)
        return weights

    # -- ticking ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Judge the step (the leader, every second)."""
        r = self.active
        if r is None or r.status != "progressing" or r.phase != "judging" or not self.host.leader:
            return
        try:
            await self._commit(self._tick, fence=True)
        except (StoreUnavailable, NotLeader):
            pass  # the rollout holds where it is

    def _tick(self) -> Any:
        r = self.active
        if r is None or r.status != "progressing" or r.phase != "judging":
            return _NOTHING
        if self._judge is None:
            self._new_judge(r)
        now = self.clock()
        plan = r.plan
        step = plan.steps[r.step]
        if self._candidate_down(r, now):
            self._fail(r, f"{plan.pool} has had no live backend for over "
                          f"{max(plan.analysis.warmup, MIN_DOWN):g}s")  # fmt: skip
            return None
        if r.warmup_until and now >= r.warmup_until:
            r.warmup_until = 0.0
        if not self.host.pool_live(plan.pool):
            # Its new clients go to other pools meanwhile: not a sample-ratio mismatch.
            self._failover_seconds.update((int(now) - 1, int(now), int(now) + 1))
        early = self._read(r, now)  # a fail in the seconds still filling
        judge = self._judge
        assert judge is not None
        elapsed = now - r.step_started_at
        if plan.strategy == "bluegreen" and r.step == 1:
            verdict = early or judge.verdict(False)
            self._note(r, verdict)
            if verdict.verdict == FAIL:
                self._fail(r, verdict.reason)
            elif elapsed >= plan.keep:
                self._finish_promoted(r)
            else:
                r.reason = f"switched: keeping watch, {int(plan.keep - elapsed)}s left"
                return self._quiet(now)
            return None
        verdict = early or judge.verdict(elapsed >= step.hold)
        self._note(r, verdict)
        if verdict.verdict == FAIL:
            self._fail(r, verdict.reason)
        elif self._ratio is not None and self._ratio.mismatch():
            self._set_paused(r, "sample_ratio", self._ratio_reason(r))
        elif verdict.verdict == PASS:
            self._count(r, "pass")
            self._record(r, "passed", f"step {r.step + 1}: {verdict.reason}")
            if plan.strategy == "bluegreen":
                if plan.auto_promote:
                    self._go_to(r, 1, gate=True)
                else:
                    why = "awaiting promotion: preview passed (promote to switch)"
                    self._set_paused(r, "awaiting_promotion", why)
            else:
                self._advance(r, gate=True)
        elif elapsed >= step.max:
            self._inconclusive(r)
        else:
            r.reason = self._progress_reason(r)
            return self._quiet(now)
        return None

    def _quiet(self, now: float) -> Any:
        """A look that only moved the counts: written at most once a second (the judge
        looks four times a second; between writes, the next look reads the same seconds
        again, so nothing is lost)."""
        if now < self._next_write:
            return _NOTHING
        self._next_write = now + 1.0
        return None

    def _read(self, r: Rollout, now: float) -> Verdict | None:
        """Feed the judge the seconds that are complete (every process and replica has
        reported them) and past the warmup; answer the fail that the seconds still filling
        would bring, if any: the judge acts on evidence as soon as it is there."""
        plan = r.plan
        upto = int(now) - self.settled
        first = max(self._cursor, int(self._judged_from(r)) + 1)
        if first > int(now):
            return None
        keep = plan.strategy == "bluegreen" and r.step == 1
        threshold, classes = baseline_view(
            self.host.window, r.baseline_pools, plan.analysis.latency_floor, now
        )
        if keep:
            threshold = r.reference_p95
        if first <= upto:
            self._cursor = upto + 1
            for second in range(first, upto + 1):
                self._feed(r, [second], threshold, classes, commit=True)
        return self._feed(r, range(max(first, upto + 1), int(now) + 1), threshold, classes,
                          commit=False)  # fmt: skip

    def _judged_from(self, r: Rollout) -> float:
        """Requests count from the step's start plus the warmup (none for a preview:
        warmup is for a weight change; a preview's requests reach a pool at weight 0)."""
        if r.plan.strategy == "bluegreen" and r.step == 0:
            return r.step_started_at
        return r.step_started_at + r.plan.analysis.warmup

    def _feed(
        self,
        r: Rollout,
        seconds: Iterable[int],
        threshold: float,
        baseline_classes: dict[str, Counts],
        commit: bool,
    ) -> Verdict | None:
        """One batch of the judge's evidence (`commit`: added; else only looked at)."""
        plan = r.plan
        preview = plan.strategy == "bluegreen" and r.step == 0
        keep = plan.strategy == "bluegreen" and r.step == 1
        window = self.host.window
        baseline_pools = r.baseline_pools
        cand: dict[str, Counts] = {}
        base: dict[str, Counts] = {}
        assigned = assigned_other = 0
        for second in seconds:
            pools = window.seconds.get(second)
            if not pools:
                continue
            totals = pools.get(plan.pool)
            if totals is not None:
                add_classes(cand, totals.classes, threshold, override=preview)
                assigned += totals.counts[ASSIGNED]
            if preview or keep:
                continue
            for name in baseline_pools:
                totals = pools.get(name)
                if totals is not None:
                    add_classes(base, totals.classes, threshold, override=False)
                    assigned_other += totals.counts[ASSIGNED]
        judge = self._judge
        if preview or keep:
            assert isinstance(judge, PreviewJudge | KeepJudge)
            reference = self._keep_reference if keep else baseline_classes
            if not commit and judge.peek(cand, reference) is None:
                return None
            judge.observe_classes(cand, reference)  # a fail ends the step: keep its evidence
            return None if commit else judge.verdict(False)
        assert isinstance(judge, CanaryJudge)
        weight = r.weights.get(plan.pool, 0.0)
        total = sum(r.weights.get(p, 0.0) for p in [plan.pool, *baseline_pools])
        share = weight / total if total > 0 else None
        if not commit:
            if judge.peek(cand, base, share, baseline_classes) is None:
                return None
            judge.observe_classes(cand, base, share, baseline_classes)  # the fail's evidence
            return judge.verdict(False)
        judge.observe_classes(cand, base, share, baseline_classes)
        if self._ratio is not None and share is not None and 0 < share < 1:
            failover = self._failover_seconds
            if not failover.intersection(seconds):
                self._ratio.observe(assigned, assigned_other, share)
            elif len(failover) > 600:
                failover.difference_update([s for s in failover if s < min(seconds)])
        return None

    def _slow_threshold(self, r: Rollout, now: float) -> float:
        return slow_threshold(
            self.host.window, r.baseline_pools, r.plan.analysis.latency_floor, now
        )

    def _candidate_down(self, r: Rollout, now: float) -> bool:
        if self.host.pool_checked_up(r.plan.pool):
            self._down_since = 0.0
            return False
        if not self._down_since:
            self._down_since = now
        return now - self._down_since > max(r.plan.analysis.warmup, MIN_DOWN)

    # -- moving between steps -----------------------------------------------------------

    def _advance(self, r: Rollout, gate: bool) -> None:
        """The current step passed: on to the next one (through the gates when `gate`)."""
        if r.plan.strategy == "bluegreen":
            if r.step == 0:
                self._go_to(r, 1, gate=gate)
            else:
                self._finish_promoted(r)
            return
        self._go_to(r, r.step + 1, gate=gate)

    def _go_to(self, r: Rollout, index: int, gate: bool) -> None:
        """Step `index`: a manual gate waits; a weight is put in force (after the gates,
        when it rises and the rollout moves by itself); past the last step, or at a last
        step of 100, the rollout is promoted (through the gates too)."""
        plan = r.plan
        steps = plan.steps
        if plan.strategy == "bluegreen":
            if index == 1:
                if gate and plan.gates:
                    self._ask_gates(r, 1, "the switch")
                else:
                    self._switch(r)
            else:
                self._enter_step(r, index)
            return
        last = index >= len(steps) or (
            index == len(steps) - 1 and (steps[index].weight or 0.0) >= 100
        )
        if last:
            if gate and plan.gates and r.weights.get(plan.pool, 0.0) < 100:
                self._ask_gates(r, len(steps), "promotion")
            else:
                self._finish_promoted(r)
            return
        weight = steps[index].weight
        if weight is None:
            r.step = index
            self._set_paused(r, "manual", f"step {index + 1} of {len(steps)}: "
                                          "manual gate, waiting for resume or promote")  # fmt: skip
            return
        if gate and plan.gates and weight > r.weights.get(plan.pool, 0.0):
            self._ask_gates(r, index, f"step {index + 1}")
            return
        self._apply_step(r, index)

    def _after_gates(self, r: Rollout) -> None:
        """The gates agreed: do what they were asked about."""
        index = r.gate_step
        if r.plan.strategy == "bluegreen":
            self._switch(r)
        elif index >= len(r.plan.steps) or (
            index == len(r.plan.steps) - 1 and ((r.plan.steps[index].weight or 0.0) >= 100)
        ):
            self._finish_promoted(r)
        else:
            self._apply_step(r, index)

    def _apply_step(self, r: Rollout, index: int) -> None:
        plan = r.plan
        step = plan.steps[index]
        assert step.weight is not None
        weights = self._step_weights(r, step.weight)
        r.step = index
        self._set_weights(r, weights, f"rollout of {plan.pool}: step {index + 1}, "
                                      f"{step.weight:g}%")  # fmt: skip
        self._record(r, "step", f"step {index + 1} of {len(plan.steps)}: {plan.pool} at "
                                f"{step.weight:g}%")  # fmt: skip
        self._enter_step(r, index)
        self._emit(r, "step")

    def _step_weights(self, r: Rollout, weight: float) -> dict[str, float]:
        """The candidate at `weight` percent; the baseline pools share the rest as they
        shared the traffic when the rollout started; every other pool 0."""
        baseline = r.baseline_pools
        total = sum(r.start_weights[p] for p in baseline)
        weights = {p: 0.0 for p in r.start_weights}
        weights[r.plan.pool] = weight
        for p in baseline:
            weights[p] = (100.0 - weight) * r.start_weights[p] / total
        return weights

    def _enter_step(self, r: Rollout, index: int) -> None:
        """Judge step `index` from now."""
        r.step = index
        r.status = "progressing"
        r.phase = "judging"
        self._restart_judging(r)

    def _restart_judging(self, r: Rollout) -> None:
        now = self.clock()
        r.phase = "judging"
        r.status = "progressing"
        r.step_started_at = now
        r.updated_at = now
        judged_from = self._judged_from(r)
        r.warmup_until = judged_from if judged_from > now else 0.0  # shown while it lasts
        r.verdict = "pending"
        r.candidate = r.baseline = Counts()
        r.needed = None
        self._new_judge(r)
        r.reason = self._progress_reason(r)

    def _new_judge(self, r: Rollout) -> None:
        """A judge for the step `r` is at, judging from its start."""
        plan = r.plan
        self._cursor = 0
        self._down_since = 0.0
        limits = limits_of(plan.analysis)
        self._ratio = None
        if plan.strategy == "bluegreen":
            if r.step == 0:
                self._judge = PreviewJudge(limits)
            else:
                self._judge = KeepJudge(limits, r.reference)
        else:
            self._judge = CanaryJudge(limits)
            self._ratio = SampleRatio(plan.analysis.confidence)

    def _switch(self, r: Rollout) -> None:
        """Blue-green: everyone to the candidate at once; keep watch for `keep`."""
        plan = r.plan
        now = self.clock()
        r.before_switch = self._current_weights()
        # The reference: what the baseline did over `keep` before the switch (as much of
        # it as the statistics hold).
        totals = self.host.window.totals(now - max(plan.keep, BASELINE_WINDOW), now)
        threshold = self._slow_threshold(r, now)
        ref = Counts()
        self._keep_reference = {}
        for name in r.baseline_pools:
            t = totals.get(name)
            if t is not None:
                ref = ref + judged(t, threshold)
                add_classes(self._keep_reference, t.classes, threshold, override=False)
        r.reference = ref
        r.reference_p95 = threshold
        r.switched_at = now
        weights = {p: 0.0 for p in r.start_weights}
        weights[plan.pool] = 100.0
        r.step = 1
        self._set_weights(r, weights, f"rollout of {plan.pool}: switch")
        self._record(r, "step", f"switched to {plan.pool}: keeping watch for "
                                f"{duration_text(plan.keep)}")  # fmt: skip
        self._enter_step(r, 1)
        self._emit(r, "step")

    # -- ending -------------------------------------------------------------------------

    def _fail(self, r: Rollout, why: str) -> None:
        self._count(r, "fail")
        r.verdict = "fail"
        self._roll_back(r, why)

    def _roll_back(self, r: Rollout, why: str) -> None:
        plan = r.plan
        if plan.strategy == "bluegreen" and r.step == 1 and r.before_switch:
            weights = dict(r.before_switch)
        else:
            weights = dict(r.start_weights)
        weights[plan.pool] = 0.0
        if not any(w > 0 for w in weights.values()):
            weights = dict(r.start_weights)
        self._set_weights(r, weights, f"rollout of {plan.pool}: rolled back ({why})")
        r.status = "rolled_back"
        r.reason = why
        self._record(r, "rolled_back", why)
        self._emit(r, "rolled_back")
        self._finished(r)

    def _finish_promoted(self, r: Rollout) -> None:
        plan = r.plan
        weights = {p: 0.0 for p in r.start_weights}
        weights[plan.pool] = 100.0
        self._set_weights(r, weights, f"rollout of {plan.pool}: promoted")
        if plan.strategy == "canary":
            r.step = len(plan.steps) - 1
        r.status = "promoted"
        r.reason = f"{plan.pool} has all the traffic"
        if r.verdict == "pending":
            r.verdict = "pass"
        self._record(r, "promoted", r.reason)
        self._emit(r, "promoted")
        self._finished(r)

    def _inconclusive(self, r: Rollout) -> None:
        plan = r.plan
        self._count(r, "inconclusive")
        r.verdict = "inconclusive"
        step = plan.steps[r.step]
        needed = self._judge.needed_requests() if self._judge is not None else None
        if needed is None and r.candidate.requests == 0:
            needed = needed_without_traffic(plan.analysis, plan.strategy == "bluegreen")
        r.needed = needed
        more = f"about {needed} more candidate requests" if needed else "more requests"
        why = (f"step {r.step + 1}: no verdict after {duration_text(step.max)}; "
               f"a verdict needs {more}")  # fmt: skip
        self._record(r, "inconclusive", why)
        if plan.on_inconclusive == "rollback":
            self._roll_back(r, why)
        elif plan.on_inconclusive == "promote":
            self._advance(r, gate=True)
        else:
            self._set_paused(r, "inconclusive", why)

    def _finished(self, r: Rollout) -> None:
        r.phase = ""
        r.updated_at = self.clock()
        self._judge = None
        self._ratio = None

    def _archive(self, r: Rollout) -> None:
        self.history.insert(0, r.to_json())
        del self.history[HISTORY_KEPT - 1 :]

    # -- bookkeeping --------------------------------------------------------------------

    def _require_active(self) -> Rollout:
        r = self.active
        if r is None:
            raise RolloutError(409, "no rollout is active")
        return r

    def _set_paused(self, r: Rollout, phase: str, why: str) -> None:
        r.status = "paused"
        r.phase = phase
        r.reason = why
        r.updated_at = self.clock()
        self._record(r, "paused", why)
        self._emit(r, "paused")

    def _set_weights(self, r: Rollout, weights: dict[str, float], what: str) -> None:
        """The weights the transition puts in force (`what` says why, in the log)."""
        if r.weights_before is None:
            r.weights_before = dict(r.weights)
        self._staged = {**(self._staged or {}), **weights}
        r.weights = self._current_weights()
        r.updated_at = self.clock()
        log.debug("%s: %s", what, r.weights)

    def _note(self, r: Rollout, verdict: Verdict) -> None:
        judge = self._judge
        assert judge is not None
        r.candidate = judge.candidate
        r.baseline = judge.baseline if isinstance(judge, CanaryJudge) else r.reference
        r.needed = verdict.needed_requests
        if verdict.verdict != "pending":
            r.verdict = verdict.verdict
        r.updated_at = self.clock()

    def _progress_reason(self, r: Rollout) -> str:
        plan = r.plan
        if plan.strategy == "bluegreen":
            head = "preview" if r.step == 0 else "keep"
        else:
            head = f"step {r.step + 1} of {len(plan.steps)}"
        if r.warmup_until:
            until = time.strftime("%H:%M:%S", time.gmtime(r.warmup_until))
            return f"{head}: warming up until {until}Z (requests count from then)"
        done = r.candidate.requests
        if r.needed:
            return f"{head}: judging, {done} of about {done + r.needed} candidate requests"
        return f"{head}: judging, {done} candidate requests so far"

    def _ratio_reason(self, r: Rollout) -> str:
        ratio = self._ratio
        assert ratio is not None
        got = ratio.candidate / max(1, ratio.candidate + ratio.other)
        weight = r.weights.get(r.plan.pool, 0.0) / max(
            1e-9, sum(r.weights.get(p, 0.0) for p in [r.plan.pool, *r.baseline_pools])
        )
        return (f"sample ratio mismatch: {r.plan.pool} got {got:.1%} of the new clients, its "
                f"weight says {weight:.1%}: the comparison would be biased")  # fmt: skip

    def _count(self, r: Rollout, verdict: str) -> None:
        key = (r.plan.pool, verdict)
        self.verdicts[key] = self.verdicts.get(key, 0) + 1

    def _record(self, r: Rollout, what: str, detail: str) -> None:
        r.history.append({"at": iso(self.clock()), "what": what, "detail": detail})
        r.updated_at = self.clock()
        log.info("rollout %s of %s: %s: %s", r.id, r.plan.pool, what, detail)

    def _emit(self, r: Rollout, event: str) -> None:
        """The event and the webhooks of a transition, once it is written."""
        body = r.to_json()
        old = r.weights_before if r.weights_before is not None else r.weights
        r.weights_before = None
        new = self._current_weights()

        def effect() -> None:
            self.host.rollout_event(event, body, old, new)
            for hook in r.plan.webhooks:
                if event in hook.events:
                    self._spawn(self._send_hook(hook.url, {"event": event, "rollout": body}))

        self._effects.append(effect)

    # -- gates and webhooks -------------------------------------------------------------

    def _ask_gates(self, r: Rollout, index: int, what: str) -> None:
        r.status = "progressing"
        r.phase = "gate"
        r.gate_step = index
        r.reason = f"asking the gates before {what}"
        r.updated_at = self.clock()
        self._gate_asked += 1  # once written, the leader asks them (`_sync_gate`)

    def _gate_what(self, r: Rollout) -> str:
        steps = r.plan.steps
        index = r.gate_step
        if r.plan.strategy == "bluegreen":
            return "the switch"
        if index >= len(steps) or (index == len(steps) - 1 and (steps[index].weight or 0) >= 100):
            return "promotion"
        return f"step {index + 1}"

    def _sync_gate(self) -> None:
        """The gates are asked while this replica leads a rollout that waits for them."""
        r = self.active
        if r is None or r.phase != "gate" or not self.host.leader:
            self._cancel_gate_task()
            return
        task = self._gate_task
        if task is not None and not task.done() and self._gate_running == self._gate_asked:
            return
        self._cancel_gate_task()
        self._gate_running = self._gate_asked
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._gate_task = loop.create_task(self._gates(r.id))

    async def _gates(self, rollout_id: str) -> None:
        while True:
            r = self.active
            if r is None or r.id != rollout_id or r.phase != "gate":
                return
            what = self._gate_what(r)
            refused = None
            body = r.to_json()
            for url in r.plan.gates:
                try:
                    status = await asyncio.wait_for(self.post(url, body, HOOK_TIMEOUT),
                                                    HOOK_TIMEOUT)  # fmt: skip
                except (TimeoutError, OSError, ValueError) as exc:
                    refused = f"waiting for gate {url}: {type(exc).__name__ or exc}"
                    break
                except Exception as exc:
                    refused = f"waiting for gate {url}: {exc}"
                    break
                if not 200 <= status < 300:
                    refused = f"waiting for gate {url}: it answered {status}"
                    break
            try:
                answer = functools.partial(self._gates_answered, rollout_id, what, refused)
                outcome = await self._commit(answer, fence=True)
            except (StoreUnavailable, NotLeader):
                outcome = _NOTHING  # asked again later
            if refused is None and outcome is not _NOTHING:
                return
            await asyncio.sleep(GATE_RETRY)

    def _gates_answered(self, rollout_id: str, what: str, refused: str | None) -> Any:
        r = self.active
        if r is None or r.id != rollout_id or r.phase != "gate":
            return _NOTHING
        if refused is None:
            self._record(r, "gate", f"the gates agreed to {what}")
            self._after_gates(r)
        elif r.status != "paused":
            self._set_paused(r, "gate", refused)
            r.phase = "gate"
        elif r.reason != refused:
            r.reason = refused
        else:
            return _NOTHING
        return None

    def _cancel_gate(self) -> None:
        """A transition away from the gates: the task stops once it is written."""

    def _cancel_gate_task(self) -> None:
        task = self._gate_task
        self._gate_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _send_hook(self, url: str, body: dict[str, Any]) -> None:
        for attempt in range(HOOK_TRIES):
            try:
                status = await asyncio.wait_for(self.post(url, body, HOOK_TIMEOUT), HOOK_TIMEOUT)
                if 200 <= status < 300:
                    return
                why = f"answered {status}"
            except Exception as exc:
                why = type(exc).__name__
            if attempt + 1 < HOOK_TRIES:
                await asyncio.sleep(2**attempt)
        log.warning("webhook %s for %s not delivered after %d tries (%s)",
                    url, body.get("event"), HOOK_TRIES, why)  # fmt: skip

    def _spawn(self, coro: Awaitable[None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task: asyncio.Task[None] = loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _where(r: Rollout) -> tuple[Any, ...]:
    """Where a rollout is: a change of any of these starts a new judging."""
    return (r.id, r.status, r.phase, r.step, r.step_started_at, r.gate_step)

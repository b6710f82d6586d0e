"""The rollout engine: the thin async shell around the rollout machine (`machine`).

The machine is pure: (rollout, context, command) -> (rollout, effects). This shell gives it
the time and the weights in force, reads the judge's evidence for it (the statistics of
every process and replica, `stats.Window`, fed to the judge of the step), writes what it
returns, and once written makes the effects happen: the weights (in the same write), the
events and webhooks, a new judge when a step's judging starts, the verdicts' metrics. It
asks the gates and sends the webhooks in tasks of its own.

Writes: each command is computed on the latest document and written by compare-and-set
(`host.commit`); on a conflict it is computed again on the newer document (the machine is
pure, so computing it again is safe); nothing in memory changes until the write is done.
A look at the step that only moved the counts is written at most once a second.

A canary's shadow test step is judged on the host's cumulative counts of the copies sent
to the candidate (`host.shadow_counts`), read at each look (`shadowstep.ShadowJudge`).
When a written transition or a newer document changes what `record.shadow_in_force`
answers, the engine calls `host.shadow_changed()`: the host builds its snapshot again.

One replica drives the rollout: the leader (`host.leader`; always, with the state file
alone). It looks at the step four times a second (`tick`) and asks the gates, and its
writes are fenced by the lease. Every replica takes calls of the API (start, pause,
resume, promote, abort) and commits them the same way; each takes up the rollout of a
newer document (`take`). A replica that becomes the leader goes on with the rollout at its
step, that step's judging started again (`take_over`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from splitter.config import RolloutPlan
from splitter.errors import NotLeader, StoreUnavailable
from splitter.observe.stats import ASSIGNED
from splitter.rollout import saved
from splitter.rollout.evidence import (
    BASELINE_WINDOW,
    add_classes,
    baseline_view,
    judged,
    needed_without_traffic,
)
from splitter.rollout.host import Poster, RolloutHost
from splitter.rollout.judge import (
    CanaryJudge,
    Counts,
    KeepJudge,
    PreviewJudge,
    SampleRatio,
    Verdict,
)
from splitter.rollout.machine import (
    Abort,
    Cancel,
    Command,
    Context,
    CountVerdict,
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
    step,
)
from splitter.rollout.record import (
    Rollout,
    is_keep,
    is_preview,
    is_shadow_step,
    judged_from,
    limits_of,
    shadow_in_force,
)
from splitter.rollout.shadowstep import ShadowJudge
from splitter.store import Document, Edit

log = logging.getLogger("splitter.rollout")

HISTORY_KEPT: Final = 20
GATE_RETRY: Final = 10.0  # seconds between two askings of a gate that said no
HOOK_TIMEOUT: Final = 5.0
HOOK_TRIES: Final = 3
SETTLED: Final = 2  # a second is read this long after it ended (every process reported)


class RolloutEngine:
    """The shell around the rollout machine (see the module docstring). Call `tick` four
    times a second."""

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
        # The judging of the current step (the leader's): the judge and what it has read.
        self._judge: CanaryJudge | PreviewJudge | KeepJudge | ShadowJudge | None = None
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

    @property
    def active(self) -> Rollout | None:
        r = self.current
        return r if r is not None and r.active else None

    # -- the API ------------------------------------------------------------------------

    async def start(self, plan: RolloutPlan) -> Rollout:
        return await self._call(Start(plan, secrets.token_hex(8)))

    async def pause(self) -> Rollout:
        return await self._call(Pause())

    async def resume(self) -> Rollout:
        return await self._call(Resume())

    async def promote(self, full: bool = False) -> Rollout:
        return await self._call(Promote(full))

    async def abort(self) -> Rollout:
        return await self._call(Abort())

    async def cancel(self, why: str) -> None:
        """A rollout that cannot go on (its pool left the config) ends as cancelled."""
        await self._run(Cancel(why))

    async def _call(self, command: Command) -> Rollout:
        await self._run(command)
        r = self.current
        assert r is not None  # the machine refused the command otherwise
        return r

    def cancel_in(self, edit: Edit, why: str) -> Edit:
        """`edit` (a file edit of the weights) with the active rollout cancelled, as one
        write."""
        mine = self._compute(edit.doc, Cancel(why))
        return edit if mine is None else edit.then(mine)

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
        if shadow_in_force(before) != shadow_in_force(r):
            self.host.shadow_changed()

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
        await self._run(TakeOver(), fence=True)
        r = self.active
        if r is not None:
            log.info("rollout %s of %s goes on at step %d", r.id, r.plan.pool, r.step + 1)

    def lead_changed(self) -> None:
        """This replica stopped leading (or started): the gates follow."""
        self._sync_gate()

    def shutdown(self) -> None:
        self._cancel_gate_task()
        for task in list(self._tasks):
            task.cancel()

    # -- committing ---------------------------------------------------------------------

    async def _run(self, command: Command, fence: bool = False) -> bool:
        """Compute `command` on the latest document and write it; True when something was
        written. RolloutError (nothing written), StoreUnavailable, NotLeader."""
        written: list[bool] = []

        def compute(doc: Document) -> Edit | None:
            edit = self._compute(doc, command)
            if edit is not None:
                written[:] = [True]
            return edit

        await self.host.commit(compute, fence)
        return bool(written)

    def _compute(self, doc: Document, command: Command) -> Edit | None:
        """The edit `command` makes of `doc` (None: nothing to write)."""
        now = self.clock()
        r = self.current
        reference = self._reference(r, now) if _may_switch(r, command) else Reference()
        ctx = Context(now, self.host.shared_weights(doc), reference)
        out = step(r, ctx, command)
        if out is None:
            return None
        if not out.moved:
            if now < self._next_write:
                return None
            self._next_write = now + 1.0
        history = list(self.history)
        if isinstance(command, Start) and r is not None:
            history = [r.to_json(), *history][: HISTORY_KEPT - 1]
        new = doc.replace(rollout=out.rollout.state(), rollouts=history)
        for effect in out.effects:
            if isinstance(effect, SetWeights):
                new = self.host.weights_doc(new, dict(effect.weights))
        return Edit(new, lambda: self._written(r, out, history))

    def _written(self, before: Rollout | None, out: Outcome, history: list[dict[str, Any]]) -> None:
        """The transition is written: it is in force here, and its effects happen."""
        r = out.rollout
        self.current = r
        self.history = history
        seen = len(before.history) if before is not None and before.id == r.id else 0
        for entry in r.history[seen:]:
            log.info("rollout %s of %s: %s: %s", r.id, r.plan.pool, entry["what"], entry["detail"])
        for effect in out.effects:
            if isinstance(effect, Emit):
                self._emit(effect)
            elif isinstance(effect, Judge):
                self._new_judge(r)
            elif isinstance(effect, CountVerdict):
                key = (r.plan.pool, effect.verdict)
                self.verdicts[key] = self.verdicts.get(key, 0) + 1
        if not r.active:
            self._judge = None
            self._ratio = None
        if r.phase == "gate" and _asks_gates(before, r):
            self._gate_asked += 1  # the leader's gate task asks them (`_sync_gate`)
        self._sync_gate()
        if shadow_in_force(before) != shadow_in_force(r):
            self.host.shadow_changed()

    def _emit(self, effect: Emit) -> None:
        body = self.host.rollout_json(effect.rollout.to_json())
        self.host.rollout_event(effect.event, body, dict(effect.old), dict(effect.new))
        for hook in effect.rollout.plan.webhooks:
            if effect.event in hook.events:
                self._spawn(self._send_hook(hook.url, {"event": effect.event, "rollout": body}))

    def _reference(self, r: Rollout | None, now: float) -> Reference:
        """What the baseline did over `keep` before now: the reference of a switch."""
        if r is None:
            return Reference()
        plan = r.plan
        totals = self.host.window.totals(now - max(plan.keep, BASELINE_WINDOW), now)
        threshold, _ = baseline_view(self.host.window, r.baseline_pools,
                                     plan.analysis.latency_floor, now)  # fmt: skip
        ref = Counts()
        for name in r.baseline_pools:
            t = totals.get(name)
            if t is not None:
                ref = ref + judged(t, threshold)
        return Reference(ref, threshold)

    # -- looking at the step ------------------------------------------------------------

    async def tick(self) -> None:
        """Look at the step (the leader, four times a second)."""
        r = self.active
        if r is None or r.status != "progressing" or r.phase != "judging" or not self.host.leader:
            return
        if self._judge is None:
            self._new_judge(r)
        try:
            await self._run(Look(self._evidence(r, self.clock())), fence=True)
        except (StoreUnavailable, NotLeader):
            pass  # the rollout holds where it is

    def _evidence(self, r: Rollout, now: float) -> Evidence:
        """The judge's reading of the step now (it reads what came since the last look)."""
        plan = r.plan
        if self.host.pool_checked_up(plan.pool):
            self._down_since = 0.0
        elif not self._down_since:
            self._down_since = now
        down_for = now - self._down_since if self._down_since else 0.0
        if not self.host.pool_live(plan.pool):
            # Its new clients go to other pools meanwhile: not a sample-ratio mismatch.
            self._failover_seconds.update((int(now) - 1, int(now), int(now) + 1))
        if isinstance(self._judge, ShadowJudge):
            return self._shadow_evidence(r, self._judge, now, down_for)
        early = self._read(r, now)  # a fail in the seconds still filling
        judge = self._judge
        assert judge is not None and not isinstance(judge, ShadowJudge)
        if is_keep(r):
            verdict = early or judge.verdict(False)
        else:
            verdict = early or judge.verdict(now - r.step_started_at >= plan.steps[r.step].hold)
        ratio = self._ratio
        mismatch = self._ratio_reason(r) if ratio is not None and ratio.mismatch() else None
        needed = None
        if judge.candidate.requests == 0 and not is_keep(r):
            needed = needed_without_traffic(plan.analysis, plan.strategy == "bluegreen")
        baseline = judge.baseline if isinstance(judge, CanaryJudge) else r.reference
        return Evidence(verdict, judge.candidate, baseline, down_for, mismatch, needed)

    def _shadow_evidence(
        self, r: Rollout, judge: ShadowJudge, now: float, down_for: float
    ) -> Evidence:
        """A shadow test step's reading: the copies counted since the last look."""
        judge.read(self.host.shadow_counts(r.plan.pool))
        verdict = judge.verdict(now - r.step_started_at >= r.plan.steps[r.step].hold)
        c = judge.counts
        pairs = Counts(c.pairs, c.shadow_bad, 0), Counts(c.pairs, c.primary_bad, 0)
        return Evidence(verdict, *pairs, down_for=down_for, shadow=c)

    def _read(self, r: Rollout, now: float) -> Verdict | None:
        """Feed the judge the seconds that are complete (every process and replica has
        reported them) and past the warmup; answer the fail that the seconds still filling
        would bring, if any: the judge acts on evidence as soon as it is there."""
        plan = r.plan
        upto = int(now) - self.settled
        first = max(self._cursor, int(judged_from(r)) + 1)
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
        assert not isinstance(judge, ShadowJudge)
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

    def _new_judge(self, r: Rollout) -> None:
        """A judge for the step `r` is at, judging from its start."""
        plan = r.plan
        self._cursor = 0
        self._down_since = 0.0
        self._next_write = 0.0
        limits = limits_of(plan.analysis)
        self._ratio = None
        if is_preview(r):
            self._judge = PreviewJudge(limits)
        elif is_shadow_step(r):  # from the copies counted until now
            test = plan.steps[r.step].shadow
            assert test is not None
            start = self.host.shadow_counts(plan.pool)
            self._judge = ShadowJudge(limits, test.max_diff_rate, start)
        elif is_keep(r):
            self._judge = KeepJudge(limits, r.reference)
            self._keep_reference = self._keep_classes(r)
        else:
            self._judge = CanaryJudge(limits)
            self._ratio = SampleRatio(plan.analysis.confidence)

    def _keep_classes(self, r: Rollout) -> dict[str, Counts]:
        """The baseline's classes over `keep` before the switch, as far as the window
        reaches (after a restart, nothing: every class counts)."""
        at = r.switched_at
        totals = self.host.window.totals(at - max(r.plan.keep, BASELINE_WINDOW), at)
        out: dict[str, Counts] = {}
        for name in r.baseline_pools:
            t = totals.get(name)
            if t is not None:
                add_classes(out, t.classes, r.reference_p95, override=False)
        return out

    def _ratio_reason(self, r: Rollout) -> str:
        ratio = self._ratio
        assert ratio is not None
        got = ratio.candidate / max(1, ratio.candidate + ratio.other)
        weight = r.weights.get(r.plan.pool, 0.0) / max(
            1e-9, sum(r.weights.get(p, 0.0) for p in [r.plan.pool, *r.baseline_pools])
        )
        return (f"sample ratio mismatch: {r.plan.pool} got {got:.1%} of the new clients, its "
                f"weight says {weight:.1%}: the comparison would be biased")  # fmt: skip

    # -- gates and webhooks -------------------------------------------------------------

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
            refused = None
            body = self.host.rollout_json(r.to_json())
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
                written = await self._run(GatesAnswered(rollout_id, refused), fence=True)
            except (StoreUnavailable, NotLeader):
                written = False  # asked again later
            if refused is None and written:
                return
            await asyncio.sleep(GATE_RETRY)

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


def _asks_gates(before: Rollout | None, r: Rollout) -> bool:
    """The transition to `r` asks the gates (anew): it came to them, or was resumed there
    (a refusal keeps the ask going: the gate task asks again by itself)."""
    if before is None or before.id != r.id or before.phase != "gate":
        return True
    return before.gate_step != r.gate_step or (before.status, r.status) == ("paused", "progressing")


def _may_switch(r: Rollout | None, command: Command) -> bool:
    """A blue-green preview that this command may end with the switch (which keeps what
    the baseline did before it)."""
    switching = Look | Promote | Resume | GatesAnswered
    return r is not None and is_preview(r) and isinstance(command, switching)


def _where(r: Rollout) -> tuple[Any, ...]:
    """Where a rollout is: a change of any of these starts a new judging."""
    return (r.id, r.status, r.phase, r.step, r.step_started_at, r.gate_step)

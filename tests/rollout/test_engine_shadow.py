"""The rollout engine at a shadow test step, in process: the real engine, machine and
judge around a fake host (a document in memory, counts of copies the test sets, a fake
clock), so that the reading of the host's cumulative counts, the verdicts they bring and
the host's `shadow_changed` calls are seen look by look."""

from __future__ import annotations

import asyncio
from typing import Any

from splitter.config import Rollouts
from splitter.observe.stats import Window
from splitter.rollout import RolloutEngine, ShadowCounts, saved, shadow_in_force
from splitter.rollout.plan import parse_rollout
from splitter.store import Compute, Document, Edit
from tests.support import FakeClock

T0 = 1_800_000_000.0
WEIGHTS = {"blue": 100.0, "canary": 0.0}


class Host:
    """What the engine needs of a running splitter (`rollout.engine.RolloutHost`)."""

    def __init__(self) -> None:
        self.window = Window()
        self.leader = True
        self.doc = Document()
        self.counts: dict[str, ShadowCounts] = {}
        self.reads: list[str] = []
        self.changed: list[Any] = []  # what shadow_in_force said at each shadow_changed
        self.events: list[str] = []
        self.engine: RolloutEngine | None = None

    def shared_weights(self, doc: Document) -> dict[str, float]:
        return dict(doc.weights) if isinstance(doc.weights, dict) else dict(WEIGHTS)

    def weights_doc(self, doc: Document, weights: dict[str, float]) -> Document:
        return doc.replace(weights={**self.shared_weights(doc), **weights})

    async def commit(self, compute: Compute, fence: bool) -> Edit | None:
        edit = compute(self.doc)
        if edit is not None:
            self.doc = edit.doc
            edit.done()
        return edit

    def pool_checked_up(self, pool: str) -> bool:
        return True

    def pool_live(self, pool: str) -> bool:
        return True

    def rollout_event(self, event: str, rollout: dict[str, Any], old: Any, new: Any) -> None:
        self.events.append(event)

    def rollout_json(self, rollout: dict[str, Any]) -> dict[str, Any]:
        return {**rollout, "route": "default"}

    def shadow_counts(self, pool: str) -> ShadowCounts:
        self.reads.append(pool)
        return self.counts.get(pool, ShadowCounts())

    def shadow_changed(self) -> None:
        assert self.engine is not None
        # Called once the transition is in force: the engine's rollout is the new one.
        self.changed.append(shadow_in_force(self.engine.current))


async def _post(url: str, body: dict[str, Any], timeout: float) -> int:
    raise AssertionError("no webhook or gate here")


def engine_with(host: Host, clock: FakeClock) -> RolloutEngine:
    engine = RolloutEngine(host, _post, clock=clock)  # type: ignore[arg-type]
    host.engine = engine
    return engine


def start(body: dict[str, Any]) -> tuple[Host, RolloutEngine, FakeClock]:
    host, clock = Host(), FakeClock(T0)
    host.counts["canary"] = ShadowCounts(5000, 400, 5000, 300, 0)  # before the step: ignored
    engine = engine_with(host, clock)
    asyncio.run(engine.start(parse_rollout(body, Rollouts(hold=60.0, max=600.0))))
    return host, engine, clock


BODY = {"pool": "canary", "steps": [{"shadow": {"share": 0.1, "hold": "1m"}}, 50, 100]}


def grow(host: Host, compared: int, differ: int = 0, shadow_bad: int = 0) -> None:
    c = host.counts["canary"]
    host.counts["canary"] = ShadowCounts(
        c.compared + compared, c.differ + differ, c.pairs + compared,
        c.shadow_bad + shadow_bad, c.primary_bad,
    )  # fmt: skip


def look(engine: RolloutEngine, clock: FakeClock, after: float = 1.0) -> None:
    clock.advance(after)
    asyncio.run(engine.tick())


def test_the_step_s_start_and_end_tell_the_host_and_counts_grow_over_looks() -> None:
    host, engine, clock = start(BODY)
    r = engine.current
    assert r is not None and r.step == 0 and host.doc.weights == WEIGHTS
    assert host.changed == [("canary", 0.1)]  # once, after the start was written
    assert host.reads == ["canary"]  # the counts the step starts from
    for _ in range(10):
        grow(host, 40)
        look(engine, clock)
    r = engine.current
    assert r is not None and r.shadow == ShadowCounts(400, 0, 400, 0, 0)  # none from before
    assert r.status == "progressing" and r.step == 0  # the hold is not over
    assert "shadow test, 400 of about" in r.reason
    state = saved.read(host.doc.rollout)
    assert state.shadow == r.shadow  # written to the document, for every replica
    for _ in range(60):
        grow(host, 40)
        look(engine, clock)
        if engine.current is not None and engine.current.step == 1:
            break
    r = engine.current
    assert r is not None and r.step == 1 and r.verdict == "pending"
    assert host.doc.weights == {"blue": 50.0, "canary": 50.0}
    assert host.changed == [("canary", 0.1), None]  # the step ended: rebuilt once more
    assert any(h["what"] == "passed" and h["detail"].startswith("step 1: differs from the "
               "primary on 0% of copies") for h in r.history)  # fmt: skip


def test_copies_that_differ_roll_back_within_a_look() -> None:
    host, engine, clock = start(BODY)
    grow(host, 40)
    look(engine, clock)
    grow(host, 200, differ=60)
    look(engine, clock, after=0.25)
    r = engine.current
    assert r is not None and r.status == "rolled_back" and r.verdict == "fail"
    assert r.reason.startswith("differs from the primary on 25.0% of copies (60 of 240)")
    assert host.doc.weights == WEIGHTS and host.changed == [("canary", 0.1), None]
    assert host.events[-1] == "rolled_back" and engine.verdicts == {("canary", "fail"): 1}


def test_bad_copies_roll_back_with_the_bad_rate_reason() -> None:
    host, engine, clock = start(BODY)
    grow(host, 100, shadow_bad=40)
    look(engine, clock)
    r = engine.current
    assert r is not None and r.status == "rolled_back"
    assert r.reason.startswith("bad rate on copies 40.0% vs the primary's 0%")


def test_counts_that_go_down_after_a_restart_count_on_from_there() -> None:
    host, engine, clock = start(BODY)
    grow(host, 300)
    look(engine, clock)
    assert engine.current is not None and engine.current.shadow == ShadowCounts(300, 0, 300)
    host.counts["canary"] = ShadowCounts(20, 0, 20, 0, 0)  # the counting process restarted
    look(engine, clock)
    r = engine.current
    assert r is not None and r.status == "progressing"
    assert r.shadow == ShadowCounts(300, 0, 300)  # nothing negative, nothing twice
    grow(host, 50, differ=1)
    look(engine, clock)
    assert engine.current is not None and engine.current.shadow == ShadowCounts(350, 1, 350)


def test_max_over_without_copies_is_inconclusive_and_says_what_a_verdict_needs() -> None:
    host, engine, clock = start(BODY)
    look(engine, clock, after=601)
    r = engine.current
    assert r is not None and r.status == "paused" and r.phase == "inconclusive"
    assert r.verdict == "inconclusive" and r.needed is not None and r.needed > 1000
    assert "a verdict needs about" in r.reason and r.reason.endswith("more copies")
    assert host.changed == [("canary", 0.1)]  # paused at the step: copies go on
    asyncio.run(engine.abort())
    assert host.changed == [("canary", 0.1), None]


def test_a_replica_that_takes_up_the_document_tells_its_host() -> None:
    host, engine, clock = start(BODY)
    other = Host()
    other_engine = engine_with(other, clock)
    other.counts["canary"] = ShadowCounts(9, 0, 9, 0, 0)
    other_engine.take(host.doc)
    assert other.changed == [("canary", 0.1)]
    other_engine.take(host.doc)  # the same: nothing changed
    assert other.changed == [("canary", 0.1)]
    asyncio.run(engine.promote())
    other_engine.take(host.doc)
    assert other.changed == [("canary", 0.1), None]


def test_a_follower_does_not_read_or_judge() -> None:
    host, engine, clock = start(BODY)
    host.leader = False
    grow(host, 400, differ=200)
    look(engine, clock)
    assert host.reads == ["canary"] and engine.current is not None
    assert engine.current.status == "progressing"


def test_a_canary_without_a_test_step_never_asks_for_copies() -> None:
    host, engine, clock = start({"pool": "canary", "steps": [50, 100]})
    look(engine, clock)
    asyncio.run(engine.abort())
    assert host.reads == [] and host.changed == []

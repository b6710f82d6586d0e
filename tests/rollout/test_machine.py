"""The rollout machine in process: every transition, with a fake clock and fake evidence
(no sockets, no judge, no store), in milliseconds. The end-to-end rollout tests drive the
same machine through a real process."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import Analysis, RolloutPlan, Step
from splitter.errors import RolloutError
from splitter.rollout import machine
from splitter.rollout.judge import Counts, Verdict
from splitter.rollout.machine import (
    TABLE,
    Abort,
    Cancel,
    Context,
    CountVerdict,
    Emit,
    Evidence,
    GatesAnswered,
    Look,
    Outcome,
    Pause,
    Promote,
    Reference,
    Resume,
    SetWeights,
    Start,
    TakeOver,
    state_of,
)
from splitter.rollout.record import Rollout

T0 = 1_800_000_000.0
WEIGHTS = {"blue": 100.0, "green": 0.0, "canary": 0.0}
ANALYSIS = Analysis(warmup=10.0)


def plan(**kw: Any) -> RolloutPlan:
    steps = kw.pop("steps", (5, 25, 50, 100))
    kw.setdefault("pool", "canary")
    kw.setdefault("strategy", "canary")
    kw.setdefault("analysis", ANALYSIS)
    kw.setdefault("on_inconclusive", "pause")
    kw.setdefault("webhooks", ())
    kw.setdefault("gates", ())
    return RolloutPlan(
        steps=tuple(
            Step(None, 60.0, 600.0) if s is None else Step(float(s), 60.0, 600.0) for s in steps
        ),
        **kw,
    )


def bluegreen(**kw: Any) -> RolloutPlan:
    kw.setdefault("keep", 300.0)
    return plan(pool="green", strategy="bluegreen", steps=(0, 100), **kw)


class World:
    """The shell, as the tests play it: the weights in force and the clock."""

    def __init__(self) -> None:
        self.now = T0
        self.weights = dict(WEIGHTS)
        self.r: Rollout | None = None
        self.effects: list[Any] = []

    def ctx(self) -> Context:
        return Context(self.now, self.weights, Reference(Counts(1000, 5, 50), 0.2))

    def send(self, command: machine.Command) -> Outcome | None:
        before = self.r
        snapshot = dataclasses.replace(before) if before is not None else None
        out = machine.step(before, self.ctx(), command)
        assert before == snapshot  # the rollout given is never changed
        if out is not None:
            self.r = out.rollout
            self.effects = list(out.effects)
            for effect in out.effects:
                if isinstance(effect, SetWeights):
                    self.weights.update(effect.weights)
            assert self.r.weights == self.weights
        return out

    def look(self, verdict: str = "pending", after: float = 1.0, **kw: Any) -> Outcome | None:
        self.now += after
        reason = kw.pop("reason", f"judged {verdict}")
        ev = Evidence(
            Verdict(verdict, reason, kw.pop("needed", 100)),
            kw.pop("candidate", Counts(50, 0, 2)),
            kw.pop("baseline", Counts(950, 1, 40)),
            **kw,
        )
        return self.send(Look(ev))

    @property
    def state(self) -> str:
        assert self.r is not None
        return state_of(self.r)

    def kinds(self) -> list[str]:
        return [type(e).__name__ + (f":{e.event}" if isinstance(e, Emit) else "")
                for e in self.effects]  # fmt: skip


def started(p: RolloutPlan | None = None) -> World:
    w = World()
    w.send(Start(p or plan(), "r1"))
    return w


def test_a_canary_starts_at_its_first_step() -> None:
    w = started()
    assert w.state == "progressing/judging"
    assert w.weights == {"blue": 95.0, "green": 0.0, "canary": 5.0}
    assert w.kinds() == ["SetWeights", "Emit:started", "Judge", "Emit:step"]
    assert w.r is not None and w.r.warmup_until == T0 + 10.0
    assert "warming up until" in w.r.reason
    assert [h["what"] for h in w.r.history] == ["started", "step"]


@pytest.mark.parametrize(
    ("weights", "status", "message"),
    [
        ({"blue": 100.0}, 404, "unknown pool: canary"),
        ({"blue": 0.0, "canary": 100.0}, 409, "canary is the only pool with a weight > 0"),
    ],
)
def test_a_start_that_cannot_be_done_changes_nothing(
    weights: dict[str, float], status: int, message: str
) -> None:
    with pytest.raises(RolloutError) as err:
        machine.step(None, Context(T0, weights), Start(plan(), "r1"))
    assert err.value.status == status and message in str(err.value)


def test_one_rollout_at_a_time_and_the_409_names_the_way_out() -> None:
    w = started()
    with pytest.raises(RolloutError) as err:
        w.send(Start(plan(), "r2"))
    assert err.value.status == 409 and "rollout abort" in str(err.value)


def test_looks_that_only_move_the_counts_say_so() -> None:
    w = started()
    out = w.look("pending", candidate=Counts(12, 0, 0))
    assert out is not None and not out.moved and out.effects == ()
    assert w.r is not None and w.r.candidate == Counts(12, 0, 0)
    w.now = T0 + 11  # the warmup is over: said once, as a move
    out = w.look("pending", after=0)
    assert out is not None and out.moved is False
    assert w.r is not None and w.r.warmup_until == 0.0 and "judging" in w.r.reason


def test_a_pass_moves_to_the_next_step_and_the_last_step_of_100_promotes() -> None:
    w = started()
    w.look("pass", after=61)
    assert w.weights["canary"] == 25.0 and w.state == "progressing/judging"
    assert w.kinds() == ["SetWeights", "CountVerdict", "Judge", "Emit:step"]
    w.look("pass", after=61)
    assert w.weights["canary"] == 50.0
    w.look("pass", after=61)
    assert w.r is not None and w.r.status == "promoted" and w.r.phase == ""
    assert w.weights == {"blue": 0.0, "green": 0.0, "canary": 100.0}
    assert w.r.verdict == "pass" and w.r.step == 3
    assert w.look("pass") is None  # a final rollout takes no look


def test_a_fail_rolls_back_at_once() -> None:
    w = started()
    w.look("pass", after=61)
    w.look("fail", reason="bad rate 40% vs baseline 0%")
    assert w.r is not None and w.r.status == "rolled_back" and w.r.verdict == "fail"
    assert w.weights == WEIGHTS
    assert w.r.reason == "bad rate 40% vs baseline 0%"
    assert CountVerdict("fail") in w.effects
    assert w.kinds()[-1] == "Emit:rolled_back"


def test_no_live_backend_by_the_active_checks_fails_after_the_warmup() -> None:
    w = started()
    assert w.look("pending", down_for=9.0) is not None
    assert w.state == "progressing/judging"  # not yet: max(warmup 10 s, 5 s)
    w.look("pending", down_for=10.5)
    assert w.r is not None and w.r.status == "rolled_back"
    assert "no live backend for over 10s" in w.r.reason


@pytest.mark.parametrize(
    ("choice", "state", "canary"),
    [
        ("pause", "paused/inconclusive", 5.0),
        ("promote", "progressing/judging", 25.0),
        ("rollback", "rolled_back", 0.0),
    ],
)
def test_inconclusive_follows_on_inconclusive(choice: str, state: str, canary: float) -> None:
    w = started(plan(on_inconclusive=choice))
    w.look("pending", after=601, needed=345)
    assert w.state == state and w.weights["canary"] == canary
    assert CountVerdict("inconclusive") in w.effects
    assert w.r is not None
    assert any("about 345 more candidate requests" in h["detail"] for h in w.r.history)


def test_inconclusive_without_traffic_says_what_a_verdict_needs() -> None:
    w = started()
    w.look("pending", after=601, needed=None, candidate=Counts(), needed_without_traffic=1253)
    assert w.r is not None and "about 1253 more" in w.r.reason


def test_a_sample_ratio_alarm_pauses_and_resume_judges_again() -> None:
    w = started()
    w.look("pending", ratio_mismatch="sample ratio mismatch: canary got 1%")
    assert w.state == "paused/sample_ratio"
    w.send(Resume())
    assert w.state == "progressing/judging" and "Judge" in w.kinds()


def test_a_manual_gate_waits_for_resume_or_promote() -> None:
    w = started(plan(steps=(10, None, 50, 100)))
    w.look("pass", after=61)
    assert w.state == "paused/manual" and w.weights["canary"] == 10.0
    w.send(Resume())
    assert w.state == "progressing/judging" and w.weights["canary"] == 50.0
    w2 = started(plan(steps=(10, None, 50, 100)))
    w2.look("pass", after=61)
    w2.send(Promote())
    assert w2.weights["canary"] == 50.0


def test_gates_are_asked_before_a_rise_and_a_no_pauses() -> None:
    w = started(plan(gates=("http://127.0.0.1:9/gate",)))
    assert w.state == "progressing/gate" and w.weights["canary"] == 0.0
    assert w.r is not None and w.r.reason == "asking the gates before step 1"
    assert w.send(GatesAnswered("another", None)) is None
    w.send(GatesAnswered("r1", "waiting for gate http://127.0.0.1:9/gate: it answered 503"))
    assert w.state == "paused/gate"
    refused = "waiting for gate http://127.0.0.1:9/gate: it answered 503"
    assert w.send(GatesAnswered("r1", refused)) is None
    w.send(GatesAnswered("r1", None))
    assert w.state == "progressing/judging" and w.weights["canary"] == 5.0
    assert w.r is not None and w.r.history[-2]["detail"] == "the gates agreed to step 1"


def test_pause_resume_promote_abort_cancel() -> None:
    w = started()
    w.send(Pause())
    assert w.state == "paused/operator"
    assert w.send(Pause()) is None  # already paused: as it is
    w.send(Resume())
    assert w.state == "progressing/judging"
    with pytest.raises(RolloutError, match="not paused"):
        w.send(Resume())
    w.send(Promote(full=True))
    assert w.r is not None and w.r.status == "promoted" and w.weights["canary"] == 100.0
    for command in (Pause(), Resume(), Promote(), Abort()):
        with pytest.raises(RolloutError, match="no rollout is active"):
            w.send(command)
    assert w.send(Cancel("edited")) is None and w.send(TakeOver()) is None

    w = started()
    w.send(Abort())
    assert w.r is not None and w.r.status == "rolled_back" and w.r.reason == "aborted"
    assert w.weights == WEIGHTS

    w = started()
    w.weights = {"blue": 70.0, "green": 0.0, "canary": 30.0}  # the file's weights
    w.send(Cancel("the config file's weights changed"))
    assert w.r is not None and w.r.status == "cancelled"
    assert w.r.weights == {"blue": 70.0, "green": 0.0, "canary": 30.0}


def test_take_over_starts_the_steps_judging_again() -> None:
    w = started()
    w.look("pending", after=30)
    w.now += 5
    w.send(TakeOver())
    assert w.r is not None and w.r.step_started_at == w.now and "Judge" in w.kinds()
    assert w.r.history[-1]["what"] == "restarted"


def test_blue_green_preview_switch_keep_promoted() -> None:
    w = started(bluegreen(auto_promote=True))
    assert w.state == "progressing/judging" and w.r is not None
    assert w.r.warmup_until == 0.0  # a preview counts from its start
    assert w.weights["green"] == 0.0
    w.look("pass", after=61)
    assert w.r.step == 1 and w.weights == {"blue": 0.0, "green": 100.0, "canary": 0.0}
    assert w.r.reference == Counts(1000, 5, 50) and w.r.before_switch["blue"] == 100.0
    w.look("pending", after=100)
    assert w.r.reason == "switched: keeping watch, 200s left"
    w.look("pending", after=200)
    assert w.r.status == "promoted"


def test_blue_green_keep_fail_switches_back_to_the_weights_before() -> None:
    w = started(bluegreen(auto_promote=True))
    w.look("pass", after=61)
    w.look("fail", reason="bad rate 9%")
    assert w.r is not None and w.r.status == "rolled_back"
    assert w.weights == WEIGHTS


def test_blue_green_awaits_promotion_without_auto_promote() -> None:
    w = started(bluegreen())
    w.look("pass", after=61)
    assert w.state == "paused/awaiting_promotion"
    w.send(Resume())
    assert w.state == "paused/awaiting_promotion"
    w.send(Promote())
    assert w.r is not None and w.r.step == 1 and w.weights["green"] == 100.0


def test_the_table_covers_every_state_and_the_docstring_draws_it() -> None:
    doc = machine.__doc__ or ""
    for state in TABLE:
        assert state in doc, state
    assert set(TABLE["progressing/judging"]) >= {"look", "pause", "promote", "abort", "cancel"}
    assert all(TABLE[final] == {} for final in ("promoted", "rolled_back", "cancelled"))


COMMANDS = st.one_of(
    st.just(Pause()), st.just(Resume()), st.booleans().map(Promote), st.just(Abort()),
    st.just(Cancel("edited")), st.just(TakeOver()),
    st.sampled_from(["r1", "other"]).flatmap(
        lambda i: st.sampled_from([None, "no"]).map(lambda why: GatesAnswered(i, why))),
    st.tuples(st.sampled_from(["pending", "pass", "fail"]), st.floats(0, 700),
              st.sampled_from([0.0, 20.0]), st.sampled_from([None, "skew"])),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["canary", "gates", "manual", "bluegreen", "bluegreen-auto"]),
    st.lists(COMMANDS, max_size=25),
)
def test_any_sequence_keeps_the_rules(kind: str, commands: list[Any]) -> None:
    """Whatever comes, in any order: only RolloutError is raised, the state is one of the
    table's, the weights in force are the rollout's, a final rollout stays final."""
    p = {
        "canary": plan(),
        "gates": plan(gates=("http://127.0.0.1:9/",)),
        "manual": plan(steps=(10, None, 100)),
        "bluegreen": bluegreen(),
        "bluegreen-auto": bluegreen(auto_promote=True),
    }[kind]
    w = started(p)
    for command in commands:
        final = w.r is not None and not w.r.active
        try:
            if isinstance(command, tuple):
                verdict, after, down, skew = command
                w.look(verdict, after=after, down_for=down, ratio_mismatch=skew)
            else:
                w.send(command)
        except RolloutError as exc:
            assert exc.status == 409
        assert w.state in TABLE
        assert w.r is not None
        if final:
            assert not w.r.active
        candidate = w.weights[p.pool]
        assert 0.0 <= candidate <= 100.0
        if w.r.status == "promoted":
            assert candidate == 100.0
        if w.r.status == "rolled_back":
            assert candidate == 0.0

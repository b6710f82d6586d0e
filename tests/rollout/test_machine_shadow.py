"""The rollout machine at a canary's shadow test step, in process (the World of
test_machine.py: a fake clock and fake evidence): entering it, its verdicts, the
operator's commands there, and what `shadow_in_force` derives at each state."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.config import RolloutPlan, ShadowTest, Step
from splitter.errors import RolloutError
from splitter.rollout import shadow_in_force
from splitter.rollout.judge import Counts
from splitter.rollout.machine import (
    TABLE,
    Abort,
    Cancel,
    CountVerdict,
    GatesAnswered,
    Pause,
    Promote,
    Resume,
    Start,
    TakeOver,
)
from splitter.rollout.shadowstep import ShadowCounts
from tests.rollout.test_machine import T0, WEIGHTS, World, plan, started

SHADOW = Step(0.0, 120.0, 600.0, ShadowTest(0.2, 0.01))


def shadow_plan(**kw: Any) -> RolloutPlan:
    p = plan(**kw)
    return RolloutPlan(
        p.pool, p.strategy, (SHADOW, *p.steps), p.analysis, p.on_inconclusive, p.webhooks,
        p.gates,
    )  # fmt: skip


def copies(w: World, verdict: str = "pending", after: float = 1.0, **kw: Any) -> None:
    counts = kw.pop("shadow", ShadowCounts(300, 2, 310, 1, 0))
    w.look(
        verdict,
        after=after,
        candidate=Counts(counts.pairs, counts.shadow_bad, 0),
        baseline=Counts(counts.pairs, counts.primary_bad, 0),
        shadow=counts,
        **kw,
    )


def test_a_rollout_with_a_test_step_starts_there_at_weight_0() -> None:
    w = started(shadow_plan())
    assert w.state == "progressing/judging" and w.r is not None
    assert w.r.step == 0 and w.weights == WEIGHTS  # the baseline keeps its weights
    assert w.kinds() == ["SetWeights", "Emit:started", "Judge", "Emit:step"]
    assert w.r.warmup_until == 0.0  # copies count from the start: no weight rose
    assert w.r.shadow == ShadowCounts()
    assert w.r.history[-1]["detail"] == (
        "step 1 of 5: canary at 0%, shadow test on copies of 20% of the requests"
    )
    assert w.r.reason == "step 1 of 5: shadow test, 0 copies compared so far"
    assert shadow_in_force(w.r) == ("canary", 0.2)


def test_a_candidate_with_a_weight_goes_to_0_and_the_rest_keep_theirs() -> None:
    w = World()
    w.weights = {"blue": 60.0, "green": 30.0, "canary": 10.0}
    w.send(Start(shadow_plan(), "r1"))
    assert w.weights == {"blue": 60.0, "green": 30.0, "canary": 0.0}


def test_the_test_step_needs_no_gate_but_the_first_weight_does() -> None:
    w = started(shadow_plan(gates=("http://127.0.0.1:9/gate",)))
    assert w.state == "progressing/judging" and shadow_in_force(w.r) is not None
    copies(w, "pass", after=121)
    assert w.state == "progressing/gate" and w.r is not None
    assert w.r.reason == "asking the gates before step 2"
    assert shadow_in_force(w.r) == ("canary", 0.2)  # copies go on while the gates answer
    w.send(GatesAnswered("r1", None))
    assert w.weights["canary"] == 5.0 and shadow_in_force(w.r) is None


def test_looks_show_the_copies_and_a_pass_moves_to_the_first_weight() -> None:
    w = started(shadow_plan())
    copies(w, needed=900)
    assert w.r is not None and w.r.shadow == ShadowCounts(300, 2, 310, 1, 0)
    assert w.r.reason == "step 1 of 5: shadow test, 300 of about 1200 copies compared"
    analysis = w.r.to_json()["analysis"]
    assert analysis["kind"] == "shadow" and analysis["shadow"]["compared"] == 300
    assert analysis["candidate"] == {"requests": 310, "bad": 1, "slow": 0}
    copies(w, "pass", after=121, reason="differs ... within")
    assert w.state == "progressing/judging" and w.r.step == 1
    assert w.weights == {"blue": 95.0, "green": 0.0, "canary": 5.0}
    assert w.r.shadow is None and shadow_in_force(w.r) is None
    assert "shadow" not in w.r.to_json()["analysis"]
    assert any(h["detail"] == "step 1: differs ... within" for h in w.r.history)
    assert w.r.warmup_until == T0 + 122 + 10  # the weight rose: warmup


def test_a_fail_in_the_test_step_rolls_back_with_the_judge_s_reason() -> None:
    w = started(shadow_plan())
    why = "differs from the primary on 3.1% of copies (31 of 1000): over 1.0% (99% confident)"
    copies(w, "fail", reason=why, shadow=ShadowCounts(1000, 31, 1000, 0, 0))
    assert w.r is not None and w.r.status == "rolled_back" and w.r.reason == why
    assert w.weights == WEIGHTS and CountVerdict("fail") in w.effects
    assert w.r.shadow == ShadowCounts(1000, 31, 1000, 0, 0)  # the evidence stays shown
    assert shadow_in_force(w.r) is None


@pytest.mark.parametrize(
    ("choice", "state", "canary"),
    [
        ("pause", "paused/inconclusive", 0.0),
        ("promote", "progressing/judging", 5.0),
        ("rollback", "rolled_back", 0.0),
    ],
)
def test_max_over_with_no_verdict_follows_on_inconclusive(
    choice: str, state: str, canary: float
) -> None:
    w = started(shadow_plan(on_inconclusive=choice))
    copies(w, after=601, needed=480)
    assert w.state == state and w.weights["canary"] == canary
    assert w.r is not None
    assert any("a verdict needs about 480 more copies" in h["detail"] for h in w.r.history)
    in_force = shadow_in_force(w.r)
    assert in_force == (("canary", 0.2) if choice == "pause" else None)


def test_pause_resume_promote_abort_at_the_test_step() -> None:
    w = started(shadow_plan())
    w.send(Pause())
    assert w.state == "paused/operator" and shadow_in_force(w.r) == ("canary", 0.2)
    w.now += 30
    w.send(Resume())
    assert w.state == "progressing/judging" and "Judge" in w.kinds()
    assert w.r is not None and w.r.step_started_at == w.now and w.r.shadow == ShadowCounts()
    with pytest.raises(RolloutError, match="not paused"):
        w.send(Resume())
    w.send(Promote())  # the test step ends as passed: the first weight
    assert w.r.step == 1 and w.weights["canary"] == 5.0 and shadow_in_force(w.r) is None

    w = started(shadow_plan())
    w.send(Promote(full=True))
    assert w.r is not None and w.r.status == "promoted" and w.weights["canary"] == 100.0
    assert shadow_in_force(w.r) is None

    w = started(shadow_plan())
    w.send(Abort())
    assert w.r is not None and w.r.status == "rolled_back" and w.r.reason == "aborted"
    assert w.weights == WEIGHTS and shadow_in_force(w.r) is None

    w = started(shadow_plan())
    w.send(Cancel("the config file's weights changed"))
    assert w.r is not None and w.r.status == "cancelled" and shadow_in_force(w.r) is None

    w = started(shadow_plan())
    copies(w, after=50)
    w.send(TakeOver())
    assert w.r is not None and w.r.shadow == ShadowCounts() and "Judge" in w.kinds()
    assert shadow_in_force(w.r) == ("canary", 0.2)


def test_no_live_backend_fails_the_test_step_too() -> None:
    w = started(shadow_plan())
    copies(w, down_for=10.5)
    assert w.r is not None and w.r.status == "rolled_back"


def test_shadow_in_force_is_none_without_a_test_step() -> None:
    assert shadow_in_force(None) is None
    w = started()
    assert shadow_in_force(w.r) is None
    w.send(Pause())
    assert shadow_in_force(w.r) is None


COMMANDS = st.one_of(
    st.sampled_from([Pause(), Resume(), Promote(), Promote(True), Abort(), TakeOver(),
                     GatesAnswered("r1", None), GatesAnswered("r1", "no")]),
    st.tuples(st.sampled_from(["pending", "pass", "fail"]), st.floats(0, 700)),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.lists(COMMANDS, max_size=20))
def test_shadow_in_force_is_exactly_an_active_rollout_at_its_test_step(
    gates: bool, commands: list[Any]
) -> None:
    """Whatever comes: copies are in force exactly while the rollout is active at step 0,
    and then the candidate's weight is 0."""
    w = started(shadow_plan(gates=("http://127.0.0.1:9/",) if gates else ()))
    for command in commands:
        try:
            if isinstance(command, tuple):
                copies(w, command[0], after=command[1])
            else:
                w.send(command)
        except RolloutError as exc:
            assert exc.status == 409
        assert w.r is not None and w.state in TABLE
        in_force = shadow_in_force(w.r)
        assert (in_force is not None) == (w.r.active and w.r.step == 0)
        if in_force is not None:
            assert in_force == ("canary", 0.2) and w.weights["canary"] == 0.0
            assert w.r.shadow is not None

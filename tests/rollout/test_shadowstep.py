"""The shadow test step's judge (splitter/rollout/shadowstep.py): seeded simulations of
copies look by look, as the engine reads them, and the reading of the host's cumulative
counts (batches, restarts).

Simulation: each look (four a second) adds `rate / 4` copies; each copy is compared and
paired, differs with probability `differ`, and is bad on the shadow and on the primary
independently with the given rates (or on both at once, `both`). Defaults: confidence
0.99, max_error_ratio 1.5, min_error_rate 0.005, max_diff_rate 0.01.

Measured (this file's simulator, as seeded, 40 copies/s):

- 3% of copies differ (3x the limit), 200 seeds: all fail, after a median of 550 copies
  compared (max 2,240).
- 20% bad on the copies against a clean primary, 200 seeds: fail after a median of 70
  copies (max 120).
- Identical: passes after 1,251 copies (the bad-rate test's clean pass, as a canary
  step's 1,253), or at the end of the hold when more came by then.
- At the limits (1% differ, 1.5% bad against 1%), 400 steps of 150 s: 2 false fails, 0
  false passes.
- A tenth of the requests bad on both sides at once, 100 seeds: 0 fails, 100 passes.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.rollout.judge import FAIL, PASS, PENDING, Limits
from splitter.rollout.shadowstep import ShadowCounts, ShadowJudge, diff_rate

LIMITS = Limits()


@dataclass(frozen=True)
class Copies:
    rate: float = 40.0  # copies per second
    differ: float = 0.0
    shadow_bad: float = 0.0
    primary_bad: float = 0.0
    both: float = 0.0  # bad on both sides at once (a request that breaks every version)


@dataclass(frozen=True)
class Outcome:
    verdict: str
    reason: str
    copies: int  # compared when the verdict came (or at the end)
    seconds: float


def roll(c: Copies, seed: int, seconds: float = 600, hold: float = 60, limit: float = 0.01,
         limits: Limits = LIMITS) -> Outcome:  # fmt: skip
    """One step, judged four times a second; at most `seconds` long."""
    rng = random.Random(seed)
    judge = ShadowJudge(limits, limit, ShadowCounts(7, 1, 7, 0, 0))  # counted before: ignored
    total = ShadowCounts(7, 1, 7, 0, 0)
    per_look = c.rate / 4
    v = judge.verdict(False)
    for look in range(int(seconds * 4)):
        n = int(per_look) + (rng.random() < per_look % 1)
        differ = shadow = primary = 0
        for _ in range(n):
            differ += rng.random() < c.differ
            if rng.random() < c.both:
                shadow += 1
                primary += 1
                continue
            shadow += rng.random() < c.shadow_bad
            primary += rng.random() < c.primary_bad
        total = total + ShadowCounts(n, differ, n, shadow, primary)
        judge.read(total)
        at = (look + 1) / 4
        v = judge.verdict(at >= hold)
        if v.verdict != PENDING:
            return Outcome(v.verdict, v.reason, judge.counts.compared, at)
    return Outcome(v.verdict, v.reason, judge.counts.compared, seconds)


def test_three_times_the_allowed_difference_rate_fails_quickly() -> None:
    outcomes = [roll(Copies(differ=0.03), seed, seconds=300) for seed in range(30)]
    assert all(o.verdict == FAIL for o in outcomes), [o for o in outcomes if o.verdict != FAIL]
    copies = [o.copies for o in outcomes]
    assert statistics.median(copies) < 1000 and max(copies) < 2500, copies
    assert outcomes[0].reason.startswith("differs from the primary on ")
    assert outcomes[0].reason.endswith(": over 1.0% (99% confident)")


def test_an_identical_candidate_passes_after_enough_copies_and_the_hold() -> None:
    outcomes = [roll(Copies(), seed) for seed in range(5)]
    for o in outcomes:
        assert o.verdict == PASS and o.seconds == 60.0  # at the end of the hold
        assert "within 1.0% and max(1.5x the primary's, 0.5%) (99% confident)" in o.reason
    # Not before about 1,250 copies (the bad-rate test's clean pass, as a canary step's).
    slow = roll(Copies(rate=4.0), 1, seconds=900)
    assert slow.verdict == PASS and 1200 <= slow.copies <= 1300, slow


def test_an_identical_candidate_with_the_primary_s_own_errors_passes() -> None:
    o = roll(Copies(primary_bad=0.01, shadow_bad=0.01, differ=0.002), 3, seconds=900)
    assert o.verdict == PASS, o


def test_bad_answers_on_the_copies_fail() -> None:
    outcomes = [roll(Copies(shadow_bad=0.2), seed, seconds=60) for seed in range(20)]
    assert all(o.verdict == FAIL for o in outcomes)
    assert max(o.copies for o in outcomes) < 200
    reason = outcomes[0].reason
    assert reason.startswith("bad rate on copies ") and "vs the primary's 0%" in reason
    assert reason.endswith("on the same requests: over max(1.5x the primary's, 0.5%) "
                           "(99% confident)")  # fmt: skip


def test_requests_that_break_both_versions_are_no_finding() -> None:
    """A tenth of the requests fail on the primary and on the shadow alike (same requests):
    the paired test sees equal rates, no fail; and a pass once the evidence is there."""
    outcomes = [roll(Copies(both=0.1), seed, seconds=300) for seed in range(10)]
    assert not any(o.verdict == FAIL for o in outcomes), outcomes
    assert sum(o.verdict == PASS for o in outcomes) >= 8


def test_a_hanging_shadow_fails_at_once() -> None:
    o = roll(Copies(shadow_bad=1.0), 1, seconds=30)
    assert o.verdict == FAIL and o.copies <= 20


def test_max_diff_rate_0_allows_no_difference() -> None:
    assert roll(Copies(), 1, limit=0.0).verdict == PASS
    o = roll(Copies(differ=0.002), 1, limit=0.0)
    assert o.verdict == FAIL and o.reason.endswith(": no difference is allowed")


@pytest.mark.slow
@pytest.mark.timeout(300)  # a bounded simulation of 400 steps
def test_at_the_limits_it_rarely_fails_or_passes() -> None:
    """Exactly at max_diff_rate and at max(1.5x, 0.5%) of a 1% primary: each verdict is a
    false one; at most alpha = 1% each (+3 standard errors over 400 runs: 2.5%)."""
    runs = 400
    at = Copies(rate=40, differ=0.01, primary_bad=0.01, shadow_bad=0.015)
    outcomes = [roll(at, seed, seconds=150) for seed in range(runs)]
    fails = sum(o.verdict == FAIL for o in outcomes)
    passes = sum(o.verdict == PASS for o in outcomes)
    assert fails <= 0.025 * runs and passes <= 0.025 * runs, (fails, passes)


# -- reading the host's counts ------------------------------------------------------------------


def test_the_batches_are_the_growth_since_the_last_reading() -> None:
    judge = ShadowJudge(LIMITS, 0.01, ShadowCounts(100, 5, 100, 1, 1))
    assert judge.read(ShadowCounts(130, 6, 131, 1, 2)) == ShadowCounts(30, 1, 31, 0, 1)
    assert judge.read(ShadowCounts(130, 6, 131, 1, 2)) == ShadowCounts()
    assert judge.read(ShadowCounts(150, 6, 151, 3, 2)) == ShadowCounts(20, 0, 20, 2, 0)
    assert judge.counts == ShadowCounts(50, 1, 51, 2, 1)


def test_a_count_that_goes_down_is_a_restart_never_a_negative_batch() -> None:
    judge = ShadowJudge(LIMITS, 0.01, ShadowCounts(1000, 10, 1000, 0, 0))
    judge.read(ShadowCounts(1200, 12, 1200, 0, 0))
    # The counting restarted: nothing is added for this look (the 40 are not counted twice
    # as "new", nor as a negative batch)...
    assert judge.read(ShadowCounts(40, 0, 40, 0, 0)) == ShadowCounts()
    # ...and it goes on from there.
    assert judge.read(ShadowCounts(90, 1, 95, 1, 0)) == ShadowCounts(50, 1, 55, 1, 0)
    assert judge.counts == ShadowCounts(250, 3, 255, 1, 0)
    # One count down alone is a restart too.
    assert judge.read(ShadowCounts(100, 1, 96, 0, 0)) == ShadowCounts()
    assert judge.counts == ShadowCounts(250, 3, 255, 1, 0)


def test_a_part_not_yet_consistent_waits_for_its_copies() -> None:
    """More differences than copies compared in a reading (counts not taken at one
    instant): the excess is counted once the compared copies catch up, never lost."""
    judge = ShadowJudge(LIMITS, 0.01)
    assert judge.read(ShadowCounts(10, 12, 10, 14, 11)) == ShadowCounts(10, 10, 10, 10, 10)
    assert judge.read(ShadowCounts(20, 12, 20, 14, 11)) == ShadowCounts(10, 2, 10, 4, 1)
    assert judge.counts == ShadowCounts(20, 12, 20, 14, 11)


def test_values_that_are_not_counts_count_as_zero() -> None:
    judge = ShadowJudge(LIMITS, 0.01)
    weird = ShadowCounts(float("nan"), -3, True, 2.0, float("inf"))  # type: ignore[arg-type]
    assert judge.read(weird) == ShadowCounts(0, 0, 0, 0, 0)


READINGS = st.lists(st.tuples(*(st.integers(0, 50) for _ in range(5)), st.booleans()), max_size=40)


@settings(max_examples=200, deadline=None)
@given(READINGS)
def test_the_judge_never_counts_more_than_the_host_did(readings: list[tuple[int, ...]]) -> None:
    """Growing counts with restarts anywhere: every batch is consistent and not negative,
    and the judge's totals are at most what the host counted (with restarts, summed)."""
    judge = ShadowJudge(LIMITS, 0.01)
    host = ShadowCounts()
    counted = ShadowCounts()  # what the host counted since the judge started, all restarts
    for compared, differ, pairs, shadow, primary, restart in readings:
        grown = ShadowCounts(compared, min(differ, compared), pairs, min(shadow, pairs),
                             min(primary, pairs))  # fmt: skip
        host = grown if restart else host + grown
        counted = counted + grown
        batch = judge.read(host)
        assert min(batch.values()) >= 0
        assert batch.differ <= batch.compared
        assert batch.shadow_bad <= batch.pairs and batch.primary_bad <= batch.pairs
        assert all(j <= h for j, h in zip(judge.counts.values(), counted.values(), strict=True))
    if not any(r[-1] for r in readings):
        assert judge.counts == host  # without a restart, everything counted


def test_needed_copies_count_down_and_are_none_when_it_looks_over() -> None:
    judge = ShadowJudge(LIMITS, 0.01)
    first = judge.needed_requests()
    assert first is not None and 1200 <= first <= 1300  # the clean pass, before any copy
    judge.read(ShadowCounts(500, 0, 500, 0, 0))
    later = judge.needed_requests()
    assert later is not None and later < first
    judge.read(ShadowCounts(600, 20, 600, 0, 0))  # 3.3% differ: no pass in sight
    assert judge.needed_requests() is None
    assert judge.verdict(False).verdict in (PENDING, FAIL)


def test_a_fail_is_for_good_and_a_pass_holds() -> None:
    judge = ShadowJudge(LIMITS, 0.01)
    judge.read(ShadowCounts(50, 50, 50, 0, 0))
    failed = judge.verdict(True)
    assert failed.verdict == FAIL
    judge.read(ShadowCounts(100_000, 50, 100_000, 0, 0))
    assert judge.verdict(True) == failed and judge.counts.compared == 50

    judge = ShadowJudge(LIMITS, 0.01)
    judge.read(ShadowCounts(3000, 0, 3000, 0, 0))
    held = judge.verdict(False)
    assert held.verdict == PENDING and held.reason.endswith("; holding")
    assert judge.verdict(True).verdict == PASS


def test_evidence_is_json_safe() -> None:
    judge = ShadowJudge(LIMITS, 0.01)
    judge.read(ShadowCounts(300, 2, 300, 1, 1))
    evidence = judge.evidence()
    assert set(evidence) == {
        "diff_over_limit", "diff_within_limit", "bad_over_ratio", "bad_over_floor",
        "bad_within_limit", "fail_at", "pass_at",
    }  # fmt: skip
    assert all(isinstance(v, float) for v in evidence.values())
    assert diff_rate(judge.counts) == pytest.approx(2 / 300)

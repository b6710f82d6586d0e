"""The judge on client-seconds by request class, looking at each second as it fills.

Seeded simulations, in-process: honest traffic spread over several classes is judged as
well as one class was (false fails, detection speed), and the attacks on the evidence
(a flood of one cheap endpoint, errors aimed at one pool, an endpoint failing on every
version) cannot move the verdict.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

import pytest

from splitter.rollout.judge import CanaryJudge, Counts, Limits, PreviewJudge
from tests.rollout.test_judge import ALPHA, LIMITS, binomial, poisson, upper_bound

# An application's request mix: four classes, shares of the traffic.
MIX = {"GET /": 0.5, "GET /api": 0.25, "POST /cart": 0.15, "GET /static": 0.10}
LOOKS = 4  # looks per second: three at the second as it fills, one when it is complete


@dataclass(frozen=True)
class ClassTraffic:
    """One simulated step over `MIX`: the candidate's share and each side's rates (the
    candidate's may differ by class)."""

    rps: float
    share: float
    base_bad: float
    cand_bad: dict[str, float]
    base_slow: float = 0.05
    cand_slow: float = 0.05

    def parts(self, rng: random.Random) -> list[tuple[dict[str, Counts], dict[str, Counts]]]:
        """One second in `LOOKS` parts (each a Poisson thinning of the second)."""
        out = []
        for _ in range(LOOKS):
            cand: dict[str, Counts] = {}
            base: dict[str, Counts] = {}
            for klass, part in MIX.items():
                rate = self.rps * part / LOOKS
                nc = poisson(rng, rate * self.share)
                nb = poisson(rng, rate * (1.0 - self.share))
                bad = self.cand_bad.get(klass, self.base_bad)
                cand[klass] = Counts(nc, binomial(rng, nc, bad), binomial(rng, nc, self.cand_slow))
                base[klass] = Counts(
                    nb, binomial(rng, nb, self.base_bad), binomial(rng, nb, self.base_slow)
                )
            out.append((cand, base))
        return out


def _sum(parts: list[dict[str, Counts]]) -> dict[str, Counts]:
    total: dict[str, Counts] = {}
    for part in parts:
        for klass, counts in part.items():
            total[klass] = total.get(klass, Counts()) + counts
    return total


@dataclass
class Outcome:
    passed_at: int | None = None
    failed_at: int | None = None
    failed_early: bool = False  # the fail came from a look at a second still filling
    reason: str = ""


def roll(traffic: ClassTraffic, seed: int, seconds: int, hold: int = 60,
         to_the_end: bool = False, extra: dict[str, Counts] | None = None) -> Outcome:  # fmt: skip
    """Judge one step as the engine does: three looks at the filling second (`peek`), then
    the complete second added. `extra`: what an attacker adds to the candidate each second."""
    rng = random.Random(seed)
    judge = CanaryJudge(LIMITS)
    served = set(MIX)
    outcome = Outcome()
    for second in range(seconds):
        parts = traffic.parts(rng)
        cands = [p[0] for p in parts]
        bases = [p[1] for p in parts]
        if extra:
            cands.append(extra)
        for look in range(1, LOOKS):
            early = judge.peek(_sum(cands[:look]), _sum(bases[:look]), traffic.share, served)
            if early is not None:
                outcome.failed_at = judge.candidate.requests
                outcome.failed_early = True
                outcome.reason = early.reason
                return outcome
        judge.observe_classes(_sum(cands), _sum(bases), traffic.share, served)
        verdict = judge.verdict(may_pass=second + 1 >= hold)
        if verdict.verdict == "fail":
            outcome.failed_at = judge.candidate.requests
            outcome.reason = verdict.reason
            return outcome
        if verdict.verdict == "pass" and outcome.passed_at is None:
            outcome.passed_at = judge.candidate.requests
            if not to_the_end:
                return outcome
    return outcome


def test_one_class_or_several_give_the_same_evidence_when_the_mix_is_the_same() -> None:
    one = CanaryJudge(LIMITS)
    split = CanaryJudge(LIMITS)
    for _ in range(30):
        one.observe(Counts(10, 1, 0), Counts(190, 2, 10))
        # the same batch split over two classes with the same candidate share (1/20)
        split.observe_classes(
            {"GET /": Counts(5, 1, 0), "GET /api": Counts(5, 0, 0)},
            {"GET /": Counts(95, 1, 5), "GET /api": Counts(95, 1, 5)},
            share=0.05,
            served={"GET /", "GET /api"},
        )
    assert one.candidate == split.candidate
    for key, value in one.evidence().items():
        assert split.evidence()[key] == pytest.approx(value, abs=0.2), key


def test_a_class_only_the_candidate_serves_gives_no_evidence() -> None:
    judge = CanaryJudge(LIMITS)
    for _ in range(100):
        judge.observe_classes(
            {"GET /err": Counts(50, 50, 50), "GET /": Counts(5, 0, 0)},
            {"GET /": Counts(95, 0, 5)},
            share=0.05,
            served={"GET /"},
        )
    evidence = judge.evidence()
    assert evidence["bad_over_ratio"] <= 0.0
    assert evidence["bad_over_floor"] <= 0.0
    assert judge.verdict(may_pass=False).verdict != "fail"
    assert judge.candidate.requests == 500  # the `GET /err` client-seconds are not counted


def test_an_endpoint_failing_on_every_version_gives_no_fail() -> None:
    judge = CanaryJudge(LIMITS)
    for _ in range(300):
        judge.observe_classes(
            {"GET /err": Counts(5, 5, 0), "GET /": Counts(5, 0, 0)},
            {"GET /err": Counts(95, 95, 0), "GET /": Counts(95, 0, 5)},
            share=0.05,
            served={"GET /", "GET /err"},
        )
    # The floor test sees a bad rate of 50%, the ratio test a ratio of 1: both must say
    # "over" for a fail.
    assert judge.evidence()["bad_over_ratio"] < 0.0
    assert judge.verdict(may_pass=True).verdict != "fail"


def test_a_flood_of_one_cheap_endpoint_cannot_carry_a_broken_candidate() -> None:
    """The candidate fails 10% of `GET /`; an attacker adds 100 good client-seconds a
    second (its address's whole allowance) to `GET /cheap`, a class the baseline serves
    too, at 1 a second."""
    traffic = ClassTraffic(40.0, 0.05, 0.0, {"GET /": 0.10}, cand_slow=0.05)
    flood = {"GET /cheap": Counts(100, 0, 0)}
    outcomes = []
    for seed in range(40):
        rng = random.Random(seed)
        judge = CanaryJudge(LIMITS)
        outcome = Outcome()
        for second in range(600):
            cand, base = (_sum(x) for x in zip(*traffic.parts(rng), strict=True))
            cand = {**cand, **flood}
            base = {**base, "GET /cheap": Counts(1, 0, 0)}
            judge.observe_classes(cand, base, 0.05, {*MIX, "GET /cheap"})
            verdict = judge.verdict(may_pass=second >= 60)
            if verdict.verdict != "pending":
                outcome.passed_at = judge.candidate.requests if verdict.verdict == "pass" else None
                outcome.failed_at = judge.candidate.requests if verdict.verdict == "fail" else None
                break
        outcomes.append(outcome)
    passes = sum(o.passed_at is not None for o in outcomes)
    fails = [o.failed_at for o in outcomes if o.failed_at is not None]
    assert passes == 0, f"{passes} of 40 broken candidates carried to a pass"
    assert len(fails) >= 38, f"only {len(fails)} of 40 failed within 10 minutes"


def test_without_the_class_limit_the_same_flood_would_carry_it() -> None:
    """The control of the test above: the same flood counted at full weight (no share
    given) makes the floor test pass the broken candidate, so the limit is what holds."""
    traffic = ClassTraffic(40.0, 0.05, 0.0, {"GET /": 0.10})
    rng = random.Random(1)
    judge = CanaryJudge(LIMITS)
    verdict = None
    for second in range(600):
        cand, base = (_sum(x) for x in zip(*traffic.parts(rng), strict=True))
        cand = {**cand, "GET /cheap": Counts(100, 0, 0)}
        base = {**base, "GET /cheap": Counts(1, 0, 0)}
        judge.observe_classes(cand, base, None, {*MIX, "GET /cheap"})
        verdict = judge.verdict(may_pass=second >= 60)
        if verdict.verdict != "pending":
            break
    assert verdict is not None and verdict.verdict == "pass"


def test_the_preview_holds_a_flood_to_the_baselines_mix() -> None:
    limits = Limits()
    reference = {"GET /": Counts(6000, 0, 0), "GET /cheap": Counts(60, 0, 0)}
    judge = PreviewJudge(limits)
    for _ in range(300):
        # a tester's override requests: 10% of `GET /` fail; an attacker floods /cheap
        judge.observe_classes({"GET /": Counts(10, 1, 0), "GET /cheap": Counts(100, 0, 0)},
                              reference)  # fmt: skip
        if judge.verdict(may_pass=True).verdict != "pending":
            break
    assert judge.verdict(may_pass=True).verdict == "fail"
    # An endpoint failing on the baseline too (its bad rate over the limit) is no evidence.
    judge = PreviewJudge(limits)
    reference = {"GET /": Counts(6000, 0, 0), "GET /err": Counts(60, 60, 0)}
    for _ in range(300):
        judge.observe_classes({"GET /err": Counts(20, 20, 0), "GET /": Counts(1, 0, 0)},
                              reference)  # fmt: skip
    assert judge.verdict(may_pass=False).verdict != "fail"


def test_peek_adds_nothing() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(10, 0, 0), Counts(190, 0, 10))
    before = (judge.candidate, judge.baseline, judge.evidence())
    early = judge.peek({"": Counts(10, 10, 0)}, {"": Counts(190, 0, 10)}, 0.05, {""})
    assert early is not None and early.verdict == "fail"
    assert (judge.candidate, judge.baseline, judge.evidence()) == before
    assert judge.verdict(may_pass=False).verdict == "pending"


# --- honest traffic: as good as before ---------------------------------------------------------

RUNS = 1000
SHARES = (0.05, 0.20)
BASES = (0.01, 0.0)


def _honest(cand_bad: float | None, cand_slow: float, base: float, share: float) -> ClassTraffic:
    bad = base if cand_bad is None else cand_bad
    return ClassTraffic(200.0, share, base, dict.fromkeys(MIX, bad), cand_slow=cand_slow)


@pytest.mark.slow
@pytest.mark.timeout(360)  # a bounded simulation of 1000 rollouts: slow on a busy machine
def test_no_difference_over_several_classes_rarely_fails() -> None:
    traffics = [_honest(None, 0.05, b, s) for s in SHARES for b in BASES]
    outcomes = [roll(traffics[i % 4], 50_000 + i, 150, to_the_end=True) for i in range(RUNS)]
    fails = [o for o in outcomes if o.failed_at is not None]
    early = sum(o.failed_early for o in fails)
    assert len(fails) / RUNS <= upper_bound(ALPHA, RUNS), (
        f"{len(fails)} false fails in {RUNS} ({early} from a look at a filling second)"
    )


def test_a_crash_over_several_classes_fails_within_a_handful_of_requests() -> None:
    needed = []
    for seed in range(100):
        traffic = ClassTraffic(20.0, 0.05, 0.01 if seed % 2 else 0.0, dict.fromkeys(MIX, 1.0))
        outcome = roll(traffic, seed, 600)
        assert outcome.failed_at is not None
        needed.append(outcome.failed_at)
    # As with one class (tests/rollout/test_judge.py: at most 12), give or take the class split.
    assert max(needed) <= 14, f"median {statistics.median(needed)}, max {max(needed)}"


def test_five_times_the_errors_over_several_classes_fails_within_a_few_hundred() -> None:
    for share in SHARES:
        needed = []
        for seed in range(60):
            outcome = roll(ClassTraffic(50.0, share, 0.01, dict.fromkeys(MIX, 0.05)), seed, 1200)
            assert outcome.failed_at is not None, (share, seed)
            needed.append(outcome.failed_at)
        assert statistics.median(needed) <= 600, (share, statistics.median(needed))


def test_a_clean_candidate_over_several_classes_passes_as_with_one() -> None:
    for share in SHARES:
        outcome = roll(_honest(0.0, 0.0, 0.0, share), 1, 3600, hold=0)
        assert outcome.passed_at is not None
        assert 1000 <= outcome.passed_at <= 1500, (share, outcome.passed_at)


def test_a_failing_class_alone_is_found() -> None:
    """Only `POST /cart` (15% of the traffic) fails, all of it: found fast."""
    needed = []
    for seed in range(50):
        traffic = ClassTraffic(50.0, 0.05, 0.0, {"POST /cart": 1.0})
        outcome = roll(traffic, seed, 600)
        assert outcome.failed_at is not None
        needed.append(outcome.failed_at)
    assert statistics.median(needed) <= 60, statistics.median(needed)


def test_peek_of_a_judge_alone_adds_nothing() -> None:
    judge = PreviewJudge(LIMITS)
    judge.observe(Counts(200, 0, 0))
    before = (judge.candidate, judge.evidence())
    early = judge.peek({"": Counts(40, 40, 0)})
    assert early is not None and early.verdict == "fail"
    assert (judge.candidate, judge.evidence()) == before
    assert judge.verdict(may_pass=False).verdict == "pending"

"""The rollout judge: error rates and speed on simulated rollouts, and robustness.

Rollouts are simulated second by second with a seeded `random.Random`: requests per second
are Poisson, each request is the candidate's with its share, bad and slow independently
with each side's rates; the judge sees each second's batch and is asked for a verdict after
it, as the engine does. Defaults: confidence 0.99, max_error_ratio 1.5, min_error_rate
0.005, max_slow_ratio 1.25.

Measured (this file, as seeded):

- False fails, 2,000 rollouts each: 2.5 minutes at 200 requests/s judged every second, a
  one-minute hold; shares 5% and 20% x baseline bad rates 1%, 0.1% and 0, in turn; the
  baseline's slow share 5%. Asserted: at most 1% + 3 standard errors = 1.67%.
  * no difference: 0 fails (0 slow). 1,188 rollouts passed (all clean ones).
  * at the margin (bad rate max(1.5x baseline, 0.5%), slow share 1.25 x 5%): 4 fails
    (3 slow), and 1 pass, a false pass too (0 bad in 1,249 requests at 0.5%).
- False passes at twice the allowed bad rate, 2,000 rollouts of 5 minutes: 0 (1,612
  failed, the rest still pending).
- A crash (100% bad) at a 5% share, 20 requests/s: fails after a median of 4 candidate
  requests, at most 9 against a 1% baseline and 10 against a clean one (1,000 seeds
  each; asserted <= 12 over 200). At a 20% share: median 8, max 17; at 50%: 19 and 37.
- 5x the errors of a 1% baseline (200 seeds): fails after a median of 300 candidate
  requests at a 5% share (90th percentile 539), 425 at 20% (732).
- Clean candidate, clean baseline: passes after 1,253 candidate requests (5% share) and
  1,257 (20%), whatever the seed; no test could pass before 920.
- Candidate like its baseline, 100 requests/s, 40 seeds: at 1% bad, passes after a median
  of 5,559 candidate requests (5% share) and 9,410 (20%); at 0.1%, 2,462 and 2,232.
- Slow share 30% against 5%: fails after a median of 36 candidate requests (max 100).
- Preview: clean passes after 1,106 requests; a crash fails after a median of 5 (max 12);
  30% slow after 29; at its limits (0.5% bad, 6.25% slow), 1,000 previews of 5 minutes
  at 20 requests/s: 4 false fails, 6 false passes.
- Keep, against 1% bad and 5% slow before the switch: 5% bad fails after a median of 274
  requests; 0.5% passes after 1,189; at its limits (1.5%, 6.25%), 1,000 windows of 5
  minutes at 50 requests/s: 4 false fails, 5 false passes.
- Sample ratio: 3 false alarms in 1,000 runs of 300 s at 10 new clients/s; 5% instead of
  20% found after a median of 70 new clients (max 174, 200 seeds), 15% after 843.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitter.rollout.judge import (
    CanaryJudge,
    Counts,
    KeepJudge,
    Limits,
    PreviewJudge,
    SampleRatio,
    Verdict,
)

LIMITS = Limits()
ALPHA = 1.0 - LIMITS.confidence


# --- a seeded traffic simulator -------------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    """Poisson(mean): inversion below 30, a rounded normal above (error well under 1%)."""
    if mean <= 0.0:
        return 0
    if mean < 30.0:
        threshold = math.exp(-mean)
        k = 0
        product = rng.random()
        while product > threshold:
            product *= rng.random()
            k += 1
        return k
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Binomial(n, p): inversion while n min(p, 1 - p) < 30, else a rounded normal."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p >= 30.0:
        draw = round(rng.gauss(n * p, math.sqrt(n * p * (1.0 - p))))
        return min(n, max(0, draw))
    u = rng.random()
    k = 0
    pmf = math.exp(n * math.log1p(-p))
    cdf = pmf
    odds = p / (1.0 - p)
    while u > cdf and k < n:
        pmf *= (n - k) / (k + 1) * odds
        k += 1
        cdf += pmf
    return k


@dataclass(frozen=True)
class Traffic:
    """One simulated step: requests per second, the candidate's share, each side's rates."""

    rps: float
    share: float
    base_bad: float
    cand_bad: float
    base_slow: float = 0.05
    cand_slow: float = 0.05

    def batch(self, rng: random.Random) -> tuple[Counts, Counts]:
        # Poisson thinning: the two sides' request counts are independent Poissons.
        nc = poisson(rng, self.rps * self.share)
        nb = poisson(rng, self.rps * (1.0 - self.share))
        candidate = Counts(nc, binomial(rng, nc, self.cand_bad), binomial(rng, nc, self.cand_slow))
        baseline = Counts(nb, binomial(rng, nb, self.base_bad), binomial(rng, nb, self.base_slow))
        return candidate, baseline


@dataclass
class Outcome:
    passed_at: int | None = None  # candidate requests at the first pass
    failed_at: int | None = None  # candidate requests at the fail
    fail_reason: str = ""


def roll(
    traffic: Traffic, seed: int, seconds: int, hold: int = 60, to_the_end: bool = False
) -> Outcome:
    """Judges one simulated step. Stops at the first verdict, unless `to_the_end`: then a
    pass is noted and judging goes on until the horizon, to catch any later fail."""
    rng = random.Random(seed)
    judge = CanaryJudge(LIMITS)
    outcome = Outcome()
    for second in range(seconds):
        judge.observe(*traffic.batch(rng))
        verdict = judge.verdict(may_pass=second + 1 >= hold)
        if verdict.verdict == "fail":
            outcome.failed_at = judge.candidate.requests
            outcome.fail_reason = verdict.reason
            return outcome
        if verdict.verdict == "pass" and outcome.passed_at is None:
            outcome.passed_at = judge.candidate.requests
            if not to_the_end:
                return outcome
    return outcome


def upper_bound(rate: float, runs: int) -> float:
    """`rate` plus 3 standard errors of a binomial share over `runs` runs."""
    return rate + 3.0 * math.sqrt(rate * (1.0 - rate) / runs)


SHARES = (0.05, 0.20)
BASELINE_BAD = (0.01, 0.001, 0.0)


def allowed(base_bad: float) -> float:
    return max(LIMITS.max_error_ratio * base_bad, LIMITS.min_error_rate)


def mixes(candidate_bad: Callable[[float], float], cand_slow: float) -> list[Traffic]:
    """Each share with each baseline bad rate, at 200 requests per second."""
    return [
        Traffic(200.0, share, base, candidate_bad(base), cand_slow=cand_slow)
        for share in SHARES
        for base in BASELINE_BAD
    ]


def many(
    traffics: list[Traffic], runs: int, seconds: int, to_the_end: bool, seed0: int
) -> list[Outcome]:
    return [
        roll(traffics[i % len(traffics)], seed0 + i, seconds, to_the_end=to_the_end)
        for i in range(runs)
    ]


# --- false fails and false passes ------------------------------------------------------------

RUNS = 2000
SECONDS = 150  # judged every second for 2.5 minutes, may pass after a one-minute hold


@pytest.mark.slow
@pytest.mark.timeout(360)  # a bounded simulation of 1000 rollouts: slow on a busy machine
def test_no_difference_rarely_fails() -> None:
    """Candidate as bad and as slow as the baseline: a fail is a false fail."""
    outcomes = many(mixes(lambda base: base, 0.05), RUNS, SECONDS, to_the_end=True, seed0=0)
    fails = [o for o in outcomes if o.failed_at is not None]
    slow_fails = [o for o in fails if o.fail_reason.startswith("slow")]
    passes = sum(o.passed_at is not None for o in outcomes)
    rate = len(fails) / RUNS
    assert rate <= upper_bound(ALPHA, RUNS), (
        f"{len(fails)} false fails in {RUNS} rollouts ({len(slow_fails)} slow); "
        f"{passes} passed within {SECONDS} s"
    )


@pytest.mark.slow
@pytest.mark.timeout(360)  # a bounded simulation of 1000 rollouts: slow on a busy machine
def test_at_the_margin_rarely_fails_or_passes() -> None:
    """Candidate exactly at its limits (bad rate max(1.5x, 0.5%), slow share 1.25 x 5%):
    a fail is a false fail, and a pass a false pass (the null of the pass is "at or over")."""
    outcomes = many(mixes(allowed, 0.0625), RUNS, SECONDS, to_the_end=True, seed0=10_000)
    fails = [o for o in outcomes if o.failed_at is not None]
    slow_fails = [o for o in fails if o.fail_reason.startswith("slow")]
    passes = sum(o.passed_at is not None for o in outcomes)
    figures = (
        f"{len(fails)} false fails ({len(slow_fails)} slow) and {passes} false passes "
        f"in {RUNS} rollouts"
    )
    assert len(fails) / RUNS <= upper_bound(ALPHA, RUNS), figures
    assert passes / RUNS <= upper_bound(ALPHA, RUNS), figures


@pytest.mark.slow
@pytest.mark.timeout(360)  # a bounded simulation of 1000 rollouts: slow on a busy machine
def test_twice_the_allowed_rate_rarely_passes() -> None:
    """Candidate at 2x its allowed bad rate, judged until the first verdict (5 minutes)."""
    outcomes = many(
        mixes(lambda base: 2.0 * allowed(base), 0.05), RUNS, 300, to_the_end=False, seed0=20_000
    )
    passes = sum(o.passed_at is not None for o in outcomes)
    fails = [o.failed_at for o in outcomes if o.failed_at is not None]
    assert passes / RUNS <= upper_bound(ALPHA, RUNS), (
        f"{passes} false passes in {RUNS} rollouts; {len(fails)} failed, median after "
        f"{statistics.median(fails) if fails else None} candidate requests"
    )


# --- how fast -----------------------------------------------------------------------------------


def test_a_crash_fails_within_a_handful_of_candidate_requests() -> None:
    """100% bad at a 5% share, against a baseline at 1% or clean."""
    needed = []
    for seed in range(200):
        traffic = Traffic(20.0, 0.05, 0.01 if seed % 2 else 0.0, 1.0)
        outcome = roll(traffic, seed, 600)
        assert outcome.failed_at is not None
        needed.append(outcome.failed_at)
    assert max(needed) <= 12, f"median {statistics.median(needed)}, max {max(needed)}"


def test_a_crash_fails_fast_at_larger_shares() -> None:
    for share, bound in ((0.25, 20), (0.5, 40)):
        needed = []
        for seed in range(50):
            outcome = roll(Traffic(20.0, share, 0.01, 1.0), seed, 600)
            assert outcome.failed_at is not None
            needed.append(outcome.failed_at)
        assert max(needed) <= bound, (share, statistics.median(needed), max(needed))


def test_five_times_the_errors_fails_within_a_few_hundred_requests() -> None:
    for share in SHARES:
        needed = []
        for seed in range(100):
            outcome = roll(Traffic(50.0, share, 0.01, 0.05), seed, 1200)
            assert outcome.failed_at is not None, (share, seed)
            needed.append(outcome.failed_at)
        median = statistics.median(needed)
        assert median <= 600, f"share {share}: median {median}, max {max(needed)}"


def test_a_clean_candidate_against_a_clean_baseline_passes_after_about_1250_requests() -> None:
    # No test can pass before (1 - f)^n <= 1 - confidence, n = 919; the average of the two
    # pass e-values and the grid's prior cost the rest (module docstring, 4).
    for share in SHARES:
        outcome = roll(Traffic(50.0, share, 0.0, 0.0), 1, 3600, hold=0)
        assert outcome.passed_at is not None
        assert 1000 <= outcome.passed_at <= 1500, (share, outcome.passed_at)


def test_a_candidate_like_a_one_percent_baseline_passes_eventually() -> None:
    needed = []
    for seed in range(20):
        outcome = roll(Traffic(100.0, 0.2, 0.01, 0.01), seed, 3600)
        if outcome.passed_at is not None:
            needed.append(outcome.passed_at)
    assert len(needed) >= 18, needed
    assert statistics.median(needed) <= 20_000, statistics.median(needed)


def test_a_slow_candidate_fails() -> None:
    needed = []
    for seed in range(100):
        outcome = roll(Traffic(50.0, 0.05, 0.01, 0.01, cand_slow=0.30), seed, 600)
        assert outcome.failed_at is not None
        assert outcome.fail_reason.startswith("slow share"), outcome.fail_reason
        needed.append(outcome.failed_at)
    assert statistics.median(needed) <= 100, (statistics.median(needed), max(needed))


def test_needed_requests_estimates_the_clean_pass() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(10, 0, 0), Counts(190, 0, 10))
    estimate = judge.verdict(may_pass=True).needed_requests
    assert estimate is not None
    requests = 10
    while judge.verdict(may_pass=True).verdict == "pending":
        judge.observe(Counts(10, 0, 0), Counts(190, 0, 10))
        requests += 10
    assert abs((requests - 10) - estimate) <= 20, (requests, estimate)


def test_needed_requests_is_none_for_a_harmful_looking_candidate() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(100, 3, 5), Counts(2000, 20, 100))
    verdict = judge.verdict(may_pass=True)
    assert verdict.verdict == "pending"
    assert verdict.needed_requests is None
    assert judge.needed_requests() is None


def test_needed_requests_counts_down() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(100, 0, 5), Counts(2000, 20, 100))
    first = judge.needed_requests()
    judge.observe(Counts(100, 0, 5), Counts(2000, 20, 100))
    second = judge.needed_requests()
    assert first is not None and second is not None
    assert second < first


# --- the rules of the verdict ----------------------------------------------------------------


def test_no_pass_before_the_hold_or_the_minimum_sample() -> None:
    judge = CanaryJudge(LIMITS, min_requests=2000)
    for _ in range(150):
        judge.observe(Counts(10, 0, 0), Counts(190, 0, 10))
    held = judge.verdict(may_pass=False)
    assert held.verdict == "pending"
    short = judge.verdict(may_pass=True)
    assert short.verdict == "pending" and short.needed_requests == 500
    assert "waiting for 2000 candidate requests" in short.reason
    for _ in range(50):
        judge.observe(Counts(10, 0, 0), Counts(190, 0, 10))
    assert judge.verdict(may_pass=False).reason.endswith("holding")
    assert judge.verdict(may_pass=True).verdict == "pass"


def test_a_pass_stays_unless_a_fail_comes() -> None:
    judge = CanaryJudge(LIMITS)
    for _ in range(150):
        judge.observe(Counts(10, 0, 0), Counts(190, 0, 10))
    assert judge.verdict(may_pass=True).verdict == "pass"
    assert judge.verdict(may_pass=False).verdict == "pass"
    for _ in range(5):
        judge.observe(Counts(10, 10, 0), Counts(190, 0, 10))
    failed = judge.verdict(may_pass=True)
    assert failed.verdict == "fail"
    judge.observe(Counts(100_000, 0, 0), Counts(100_000, 0, 0))
    assert judge.verdict(may_pass=True) == failed


def test_the_reason_says_what_was_found() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(10, 10, 0), Counts(190, 2, 10))
    verdict = judge.verdict(may_pass=True)
    assert verdict == Verdict(
        "fail",
        "bad rate 100.0% vs baseline 1.1%: over max(1.5x baseline, 0.5%) (99% confident)",
        None,
    )


def test_an_empty_batch_changes_nothing() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(10, 1, 1), Counts(100, 1, 5))
    before = (judge.evidence(), judge.candidate, judge.baseline, judge.needed_requests())
    judge.observe(Counts(), Counts())
    assert (judge.evidence(), judge.candidate, judge.baseline, judge.needed_requests()) == before


def test_one_side_alone_only_moves_the_floor_tests() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(100, 50, 0), Counts())
    evidence = judge.evidence()
    assert evidence["bad_over_ratio"] == 0.0
    assert evidence["bad_over_floor"] > evidence["fail_at"]
    assert judge.verdict(may_pass=True).verdict == "pending"  # both must reject to fail


def test_evidence_is_json_safe_and_names_the_thresholds() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(10**9, 10**9, 0), Counts(1, 0, 1))
    evidence = judge.evidence()
    json.dumps(evidence, allow_nan=False)
    assert evidence["fail_at"] == round(math.log10(2 / ALPHA), 3)
    assert evidence["pass_at"] == round(math.log10(1 / ALPHA), 3)


def test_limits_are_checked() -> None:
    for bad in (
        {"confidence": 1.0},
        {"confidence": 0.0},
        {"max_error_ratio": 0.0},
        {"max_slow_ratio": math.inf},
        {"min_error_rate": -0.1},
        {"min_error_rate": 1.0},
    ):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_impossible_counts_are_clamped() -> None:
    judge = CanaryJudge(LIMITS)
    judge.observe(Counts(5, 9, -3), Counts(-1, 2, 2))
    assert judge.candidate == Counts(5, 5, 0)
    assert judge.baseline == Counts()


# --- blue-green: preview and keep --------------------------------------------------------------


def alone(
    judge: PreviewJudge | KeepJudge,
    rate: float,
    slow: float,
    seed: int,
    rps: float,
    seconds: int,
    to_the_end: bool = False,
) -> Outcome:
    rng = random.Random(seed)
    outcome = Outcome()
    for _ in range(seconds):
        n = poisson(rng, rps)
        judge.observe(Counts(n, binomial(rng, n, rate), binomial(rng, n, slow)))
        verdict = judge.verdict(may_pass=True)
        if verdict.verdict == "fail":
            outcome.failed_at = judge.candidate.requests
            outcome.fail_reason = verdict.reason
            return outcome
        if verdict.verdict == "pass" and outcome.passed_at is None:
            outcome.passed_at = judge.candidate.requests
            if not to_the_end:
                return outcome
    return outcome


def test_preview_passes_a_clean_candidate_and_fails_a_crash() -> None:
    clean = alone(PreviewJudge(LIMITS), 0.0, 0.05, 1, 5.0, 3600)
    assert clean.passed_at is not None and 900 <= clean.passed_at <= 1300, clean
    crash = alone(PreviewJudge(LIMITS), 1.0, 0.05, 1, 5.0, 60)
    assert crash.failed_at is not None and crash.failed_at <= 5, crash
    assert crash.fail_reason == "bad rate 100.0%: over 0.5% (99% confident)"


def test_preview_fails_a_slow_candidate() -> None:
    slow = alone(PreviewJudge(LIMITS), 0.0, 0.30, 1, 5.0, 600)
    assert slow.failed_at is not None and slow.failed_at <= 100, slow
    assert slow.fail_reason.startswith("slow share"), slow


@pytest.mark.slow
@pytest.mark.timeout(360)  # a bounded simulation of 1000 rollouts: slow on a busy machine
def test_preview_at_its_limits_rarely_fails_or_passes() -> None:
    runs = 1000
    outcomes = [
        alone(PreviewJudge(LIMITS), 0.005, 0.0625, seed, 20.0, 300, to_the_end=True)
        for seed in range(runs)
    ]
    fails = sum(o.failed_at is not None for o in outcomes)
    passes = sum(o.passed_at is not None for o in outcomes)
    figures = f"{fails} false fails and {passes} false passes in {runs} previews"
    assert fails / runs <= upper_bound(ALPHA, runs), figures
    assert passes / runs <= upper_bound(ALPHA, runs), figures


def test_keep_judges_against_the_rates_before_the_switch() -> None:
    reference = Counts(100_000, 1_000, 5_000)  # 1% bad: limit 1.5%; 5% slow: limit 6.25%
    fails = [alone(KeepJudge(LIMITS, reference), 0.05, 0.05, s, 50.0, 600) for s in range(50)]
    assert all(o.failed_at is not None for o in fails)
    assert statistics.median(o.failed_at or 0 for o in fails) <= 400
    assert "(1.0% before the switch)" in fails[0].fail_reason
    good = [alone(KeepJudge(LIMITS, reference), 0.005, 0.05, s, 50.0, 600) for s in range(20)]
    assert all(o.failed_at is None for o in good)
    assert sum(o.passed_at is not None for o in good) >= 18


def test_keep_with_a_clean_reference_uses_the_floor() -> None:
    judge = KeepJudge(LIMITS, Counts(50_000, 0, 2_500))
    judge.observe(Counts(1_000, 20, 50))
    verdict = judge.verdict(may_pass=True)
    assert verdict.verdict == "fail"
    assert verdict.reason.startswith("bad rate 2.0%: over 0.5% (0% before the switch)")


@pytest.mark.slow
@pytest.mark.timeout(360)  # a bounded simulation of 1000 rollouts: slow on a busy machine
def test_keep_at_its_limits_rarely_fails() -> None:
    runs = 1000
    reference = Counts(100_000, 1_000, 5_000)
    outcomes = [
        alone(KeepJudge(LIMITS, reference), 0.015, 0.0625, seed, 50.0, 300, to_the_end=True)
        for seed in range(runs)
    ]
    fails = sum(o.failed_at is not None for o in outcomes)
    passes = sum(o.passed_at is not None for o in outcomes)
    figures = f"{fails} false fails and {passes} false passes in {runs} keep windows"
    assert fails / runs <= upper_bound(ALPHA, runs), figures
    assert passes / runs <= upper_bound(ALPHA, runs), figures


# --- sample ratio -------------------------------------------------------------------------------


def test_sample_ratio_rarely_alarms_under_the_expected_share() -> None:
    runs = 1000
    alarms = 0
    for seed in range(runs):
        rng = random.Random(seed)
        check = SampleRatio(LIMITS.confidence)
        share = 0.05 if seed % 2 else 0.2
        for _ in range(300):
            n = poisson(rng, 10.0)
            x = binomial(rng, n, share)
            check.observe(x, n - x, share)
        alarms += check.mismatch()
    assert alarms / runs <= upper_bound(ALPHA, runs), f"{alarms} false alarms in {runs} runs"


def test_sample_ratio_follows_a_changing_share() -> None:
    rng = random.Random(7)
    check = SampleRatio(LIMITS.confidence)
    for share in (0.05, 0.25, 0.5):
        for _ in range(300):
            n = poisson(rng, 20.0)
            x = binomial(rng, n, share)
            check.observe(x, n - x, share)
    assert not check.mismatch(), check.evidence()


def test_sample_ratio_detects_five_percent_instead_of_twenty() -> None:
    needed = []
    for seed in range(100):
        rng = random.Random(seed)
        check = SampleRatio(LIMITS.confidence)
        clients = 0
        while not check.mismatch():
            n = poisson(rng, 10.0)
            x = binomial(rng, n, 0.05)
            check.observe(x, n - x, 0.2)
            clients += n
        needed.append(clients)
    assert statistics.median(needed) <= 150, (statistics.median(needed), max(needed))
    assert max(needed) <= 400, max(needed)


def test_sample_ratio_edges() -> None:
    check = SampleRatio()
    check.observe(0, 0, 0.2)
    check.observe(5, 5, math.nan)
    assert check.candidate == 0 and check.other == 0
    check.observe(3, 0, 0.0)  # clients for a pool at weight 0
    assert check.mismatch()
    json.dumps(check.evidence(), allow_nan=False)


# --- robustness ---------------------------------------------------------------------------------

counts = st.builds(
    Counts,
    st.one_of(st.integers(0, 20), st.integers(0, 10**9), st.integers(-5, 5)),
    st.one_of(st.integers(0, 20), st.integers(0, 10**9), st.integers(-5, 5)),
    st.one_of(st.integers(0, 20), st.integers(0, 10**9), st.integers(-5, 5)),
)
limits = st.builds(
    Limits,
    st.floats(0.5, 0.9999),
    st.floats(0.1, 10.0),
    st.floats(0.0, 0.5),
    st.floats(0.1, 10.0),
)
VERDICTS = {"pending", "pass", "fail"}


def check_judgement(verdicts: list[Verdict], evidence: dict[str, float]) -> None:
    for value in evidence.values():
        assert math.isfinite(value)
    json.dumps(evidence, allow_nan=False)
    seen_pass = seen_fail = False
    for verdict in verdicts:
        assert verdict.verdict in VERDICTS
        assert verdict.needed_requests is None or verdict.needed_requests >= 0
        if seen_fail:
            assert verdict.verdict == "fail"
        if seen_pass:
            assert verdict.verdict != "pending"
        seen_fail = seen_fail or verdict.verdict == "fail"
        seen_pass = seen_pass or verdict.verdict == "pass"


@settings(max_examples=300, deadline=None)
@given(limits, st.lists(st.tuples(counts, counts, st.booleans()), max_size=30))
def test_canary_judge_takes_any_batches(
    limits: Limits, batches: list[tuple[Counts, Counts, bool]]
) -> None:
    judge = CanaryJudge(limits, min_requests=10)
    verdicts = []
    for candidate, baseline, may_pass in batches:
        judge.observe(candidate, baseline)
        verdicts.append(judge.verdict(may_pass))
        needed = judge.needed_requests()
        assert needed is None or needed >= 0
    check_judgement(verdicts, judge.evidence())


@settings(max_examples=200, deadline=None)
@given(limits, counts, st.lists(st.tuples(counts, st.booleans()), max_size=30))
def test_preview_and_keep_judges_take_any_batches(
    limits: Limits, reference: Counts, batches: list[tuple[Counts, bool]]
) -> None:
    for judge in (PreviewJudge(limits, min_requests=10), KeepJudge(limits, reference, 10)):
        verdicts = []
        for candidate, may_pass in batches:
            judge.observe(candidate)
            verdicts.append(judge.verdict(may_pass))
        check_judgement(verdicts, judge.evidence())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(-3, 50), st.integers(0, 10**9)),
            st.one_of(st.integers(-3, 50), st.integers(0, 10**9)),
            st.one_of(st.floats(0.0, 1.0), st.just(math.nan)),
        ),
        max_size=30,
    )
)
def test_sample_ratio_takes_any_batches(batches: list[tuple[int, int, float]]) -> None:
    check = SampleRatio()
    alarmed = False
    for candidate, other, share in batches:
        check.observe(candidate, other, share)
        if alarmed:
            assert check.mismatch()
        alarmed = check.mismatch()
    for value in check.evidence().values():
        assert math.isfinite(value)

"""The rollout judge: counts in, verdict out (docs/rollouts.md, "The judge").

Pure: no clock, no I/O, no randomness, stdlib only. The rollout engine calls `observe` about
once a second with the counts of the last batch for each side and asks for a `verdict`;
whatever the judge knows is in the running totals it was given.

Rules:

- **fail** when the judge is confident, at ``limits.confidence``, that the candidate's bad
  rate exceeds max(``max_error_ratio`` x the baseline's, ``min_error_rate``), or that its
  slow share exceeds max(``max_slow_ratio`` x the baseline's, ``min_error_rate``). A fail
  may come at any moment and is absorbing.
- **pass** when the caller says the hold is over (``may_pass``), the candidate has at least
  ``min_requests`` requests, no fail was found, and the judge is confident at the same level
  that the candidate's bad rate is *within* its limit. Slowness can only fail: passing does
  not wait for proof that the candidate is not slow (proving a 5% share is under 1.25 x 5%
  takes thousands of requests). A pass does not go back to pending; a fail found later
  still overrides it, safety first.
- Otherwise **pending**; when to give up ("inconclusive") is the caller's business.
  `needed_requests` says about how many more candidate requests a pass would need.
- `SampleRatio` checks that the candidate gets the share of new clients its weight says.
- `PreviewJudge` (blue-green preview, weight 0, override-header requests) and `KeepJudge`
  (blue-green, after the switch, against the baseline's rates from before it) judge the
  candidate alone against fixed limits.

Theory of operation. Every statement is an *e-process*: a nonnegative process E_t with
E_0 = 1 that is a supermartingale under the null hypothesis. By Ville's inequality,
P(sup_t E_t >= 1/a) <= a, so rejecting the null the first time E_t >= 1/a is wrong with
probability at most a however often, and for however long, anyone looks. That is what
"99% confident" means here: anytime-valid, with optional stopping.

1. *Ratio test*, after Lindon & Malek ("Anytime-valid inference for multinomial count data",
   NeurIPS 2022; the counting-process test Netflix runs on canaries). Model each side's bad
   events in a batch as a Poisson count with mean (requests x rate). Given the batch's
   total B of bad events, the candidate's count b_c is Binomial(B, theta) with

       theta(delta) = rho e^delta / (1 - rho + rho e^delta),

   rho the candidate's share of the batch's requests and e^delta = candidate rate / baseline
   rate. Traffic volume and the baseline's own rate (however they move) cancel out: only
   delta is left. The likelihood ratio of one batch for delta against delta0 is

       LR = (theta(delta) / theta(delta0))^b_c ((1 - theta(delta)) / (1 - theta(delta0)))^b_b
          = exp(b_c (delta - delta0) - B [ln(1 - rho + rho e^delta)
                                            - ln(1 - rho + rho e^delta0)])

   (ln rho and ln(1 - rho) cancel, so rho = 0 or 1 needs no special case). With
   delta0 = ln(ratio), the *harm* e-process is a mixture with equal weights, over a grid of
   delta above delta0, of the products of these ratios; the *safe* e-process the same over
   a grid below. Why the harm mixture is valid for the composite null "rate <= ratio x
   baseline", not just for delta = delta0: for delta > delta0, LR grows with b_c; under any
   delta' <= delta0, theta(delta') <= theta(delta0), so b_c is stochastically smaller than
   under delta0, and E[LR] <= E_delta0[LR] = 1. So each product, and the mixture, is a
   supermartingale under every point of the null, even if delta' changes from batch to
   batch. The safe side is the mirror image (LR falls with b_c; the null pushes b_c up).

   Requests are Bernoulli, not Poisson: given B, b_c is then Fisher's noncentral
   hypergeometric with odds ratio psi = [p_c / (1 - p_c)] / [p_b / (1 - p_b)]. At the
   margin p_c = k p_b, psi / k = (1 - p_b) / (1 - k p_b): 1.005 at a 1% baseline and 1.5x,
   1.013 for slow requests (5%, 1.25x), against the harm test; the hypergeometric is less
   spread than the binomial, which works for it. The simulations in the tests measure the
   false-fail rate on Bernoulli requests at the margin.

2. *Rate test* on the candidate alone, for the floor ``min_error_rate`` and for fixed
   limits: requests are Bernoulli(p); for H0 "p <= p0" the harm e-process mixes, over a
   grid of p above p0, the likelihood ratios (p / p0)^x ((1 - p) / (1 - p0))^(n - x); the
   safe one, for H0 "p >= p0", over p below p0. Validity by the same monotonicity (here
   the model is exact, and p may change from request to request as long as it stays in
   the null). The mixing prior is discrete where a beta-binomial mixture takes a beta:
   equal weights on the grid in log-odds around p0, which reaches both a crash (p near 1)
   and a clean candidate (p near 0), and a one-sided mixture needs no incomplete beta
   function. The totals n and x are sufficient, so observing costs O(1).

3. *Combining.* Let alpha = 1 - confidence and C the number of harm checks the judge runs
   (bad and slow: C = 2). Fail on bad requests means "p_c > max(k p_b, f)", i.e. both
   "p_c > k p_b" and "p_c > f". The judge fails only when the ratio-harm AND the rate-harm
   e-values both reach C / alpha. If in truth p_c <= max(k p_b, f) (throughout the step:
   the same one of the two binds), one of the two nulls holds, and the e-value of that
   one reaches C / alpha with probability <= alpha / C; so a false fail on bad requests
   has probability <= alpha / C, and with slow requests likewise, a false fail of any
   kind <= alpha (Bonferroni). Nothing is spent on the pass: a false fail and a false
   pass are errors under different truths, each bounded by alpha.

   Pass means "p_c < max(k p_b, f)": the null is "p_c >= k p_b AND p_c >= f". Under it
   *both* safe e-processes are supermartingales on the same batches, so their average is
   one too, and the judge passes when (ratio-safe + rate-safe) / 2 >= 1 / alpha: a false
   pass has probability <= alpha. (Passing when *either* reached 1 / alpha would be the
   maximum of two e-values, which is not one: up to 2 alpha.) In practice one of the two
   does the work: the ratio test when k x baseline is above the floor, the rate test when
   the baseline is clean; the average costs a factor 2 in evidence, ln 2 nats.

   The blue-green judges test the candidate alone against one fixed limit per check, so a
   fail is one rate-harm e-value at C / alpha and a pass the rate-safe one at 1 / alpha.

4. *Grid.* One grid of 12 offsets ``GRID`` (log rate ratio for the ratio test, log-odds
   for the rate tests) from 0.1 to 10, nearly geometric, equal weights. The large offsets
   make a crash fail within a few requests: with a 5% share, a clean baseline and the
   defaults, each bad candidate request multiplies the top ratio-harm terms by about
   1 / theta(delta0) = 13.7 and the top rate-harm terms by about 0.99 / 0.005 = 198, so 3
   bad requests in a row reach 200 x 12 (the tests measure 3 to 10 at a 5% share, with
   a 1% or a clean baseline). The small offsets catch a candidate just over its limit,
   given enough requests. A clean candidate against a clean baseline passes after 1,253
   requests at the defaults: the 4 grid points at offsets >= 3 grow at nearly the full
   rate -ln(1 - f) per request, and need ln(2 x 100 x 12 / 4) / 0.005 = 1,280 alone; no
   test can do it in fewer than ln(100) / 0.005 = 920 (the chance of 920 clean requests
   at the limit is 1%).

5. *Needed requests* (a power calculation, about): at the observed rates (and shares), each
   term of the pass mixture grows by an expected g_j nats per candidate request (the drift
   of its log likelihood ratio: for a rate test p ln(p_j / p0) + (1 - p) ln((1 - p_j) /
   (1 - p0)); for a ratio test the same per event, times the events that come with each
   candidate request). The estimate is the n at which the mixture of the terms, each moved
   by n g_j, reaches the threshold (its log is convex in n: a few Newton steps), and at
   least the requests still missing to ``min_requests``. None when no term grows, i.e. the
   candidate looks at or over its limit, or when it would take more than 10^9.

Request classes (docs/rollouts.md#evidence-no-client-can-steer). The caller counts
*client-seconds* (a client at most once per second, pool and class) and hands them over
class by class: the method and the first path segment. The ratio tests take each class's
batch on its own, with the class's own candidate share rho: the conditional argument of 1
holds within each class (each class's bad events are Poisson given its exposure, whatever
the rates of other classes), so the product over classes is an e-process too, and a class
that only one side served contributes a likelihood ratio of exactly 1 (rho = 0 or 1).
Traffic aimed at one pool, or an endpoint failing everywhere (the same rate on both sides,
a ratio of 1), cannot move them. The floor tests (on the candidate alone) see only classes
the baseline served too, each up to twice what the weights would give the candidate beside
the baseline's requests of that class (plus 2 per batch); past that, the class's requests
count at a weight w < 1: a likelihood ratio raised to w has E[LR^w] <= E[LR]^w <= 1 under
the null (Jensen), so the weighted product stays an e-process, and a flood of one cheap
endpoint cannot outweigh the traffic's own mix. The blue-green judges hold the candidate's
classes to the baseline's mix the same way (`_AloneJudge.observe_classes`).

Judging the second as it fills: `peek` asks whether a batch not yet complete would bring a
fail, without adding it. Within a batch the events arrive one by one, and the product of
their conditional likelihood ratios (each with the exposure share up to it) is itself a
martingale; the batch's ratio at the time of a look approximates it closely, and the
simulations in the tests measure the false-fail rate with looks four times a second.

"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from splitter.rollout.sequential import (
    LN2,
    MAX_NEEDED,
    RateTest,
    RatioTest,
    SampleRatio,
    log10,
    logsumexp,
)
from splitter.rollout.sequential import needed as needed_for

__all__ = [
    "FAIL",
    "PASS",
    "PENDING",
    "CanaryJudge",
    "Counts",
    "KeepJudge",
    "Limits",
    "PreviewJudge",
    "SampleRatio",
    "Verdict",
]

# A healthy service's slow share is its share above the baseline's p95 (docs/rollouts.md).
BASELINE_SLOW_SHARE = 0.05

_exp = math.exp
_log = math.log
_log1p = math.log1p

PENDING = "pending"
PASS = "pass"
FAIL = "fail"

# Offsets from the null: log rate ratio (ratio tests) or log-odds (rate tests, sample ratio).


@dataclass(frozen=True, slots=True)
class Limits:
    """What the judge holds the candidate to: the config's ``rollouts.analysis``."""

    confidence: float = 0.99
    max_error_ratio: float = 1.5
    min_error_rate: float = 0.005
    max_slow_ratio: float = 1.25

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence!r}")
        for name in ("max_error_ratio", "max_slow_ratio"):
            value = getattr(self, name)
            if not (value > 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0.0 <= self.min_error_rate < 1.0:
            raise ValueError(f"min_error_rate must be in [0, 1), got {self.min_error_rate!r}")


@dataclass(frozen=True, slots=True)
class Counts:
    """Requests judged on one side, and how many of them were bad and slow."""

    requests: int = 0
    bad: int = 0
    slow: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.requests + other.requests, self.bad + other.bad, self.slow + other.slow)

    def bad_rate(self) -> float:
        return self.bad / self.requests if self.requests > 0 else 0.0

    def slow_share(self) -> float:
        return self.slow / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's answer: ``pending``, ``pass`` or ``fail``, with a line for people."""

    verdict: str
    reason: str
    needed_requests: int | None


_NONE = Counts()


def _clean(counts: Counts) -> Counts:
    """The batch with impossible values clamped: no negatives, no more bad than requests."""
    n = max(0, int(counts.requests))
    bad = min(max(0, int(counts.bad)), n)
    slow = min(max(0, int(counts.slow)), n)
    if n == counts.requests and bad == counts.bad and slow == counts.slow:
        return counts
    return Counts(n, bad, slow)


def _weighted(c: Counts, weight: float) -> Counts:
    """The counts as they weigh, rounded (for people: the tests take the exact ones)."""
    if weight == 1.0:
        return c
    return Counts(round(c.requests * weight), round(c.bad * weight), round(c.slow * weight))


# --- formatting --------------------------------------------------------------------------------


def _pct(p: float) -> str:
    if p == 0.0:
        return "0%"
    if p >= 0.001:
        return f"{p * 100:.1f}%"
    return f"{p * 100:.2g}%"


def _confident(limits: Limits) -> str:
    return f"({limits.confidence * 100:g}% confident)"


# A harm check: what is judged, its rate in Counts, the allowed ratio (or the limit's text)
# and the tests that must all reject.
_CanaryHarm = tuple[str, Callable[[Counts], float], float, RatioTest, RateTest]
_AloneHarm = tuple[str, Callable[[Counts], float], str, RateTest]

# --- the judges ----------------------------------------------------------------------------------


def _safe(within: str, requests: int, least: int, may_pass: bool, what: str) -> Verdict:
    """The verdict once the evidence says "within the limit": a pass, unless the sample is
    still under `least` or the hold is not over."""
    if requests < least:
        return Verdict(PENDING, f"{within}; waiting for {least} {what}", least - requests)
    if not may_pass:
        return Verdict(PENDING, f"{within}; holding", 0)
    return Verdict(PASS, within, 0)


class CanaryJudge:
    """Candidate against baseline, batch by batch (docs/rollouts.md, "The judge").

    Harm checks: bad requests (ratio test AND floor test) and slow requests (same, with
    ``max_slow_ratio``). Pass: the average of the ratio-safe and floor-safe e-values for
    bad requests. See the module docstring for why each is valid.
    """

    def __init__(self, limits: Limits, min_requests: int = 100) -> None:
        self.limits = limits
        self.min_requests = max(0, min_requests)
        self.candidate = Counts()
        self.baseline = Counts()
        alpha = 1.0 - limits.confidence
        self._bad_over_ratio = RatioTest(limits.max_error_ratio, harm=True)
        self._bad_over_floor = RateTest(limits.min_error_rate, harm=True)
        self._bad_under_ratio = RatioTest(limits.max_error_ratio, harm=False)
        self._bad_under_floor = RateTest(limits.min_error_rate, harm=False)
        self._slow_over_ratio = RatioTest(limits.max_slow_ratio, harm=True)
        self._slow_over_floor = RateTest(limits.min_error_rate, harm=True)
        # The harm checks: each fails when both of its tests reject. Bonferroni over them.
        self._harm: tuple[_CanaryHarm, ...] = (
            (
                "bad rate",
                Counts.bad_rate,
                limits.max_error_ratio,
                self._bad_over_ratio,
                self._bad_over_floor,
            ),
            (
                "slow share",
                Counts.slow_share,
                limits.max_slow_ratio,
                self._slow_over_ratio,
                self._slow_over_floor,
            ),
        )
        self._log_fail_at = _log(len(self._harm) / alpha)
        self._log_pass_at = _log(1.0 / alpha)
        self._final: Verdict | None = None  # a fail, for good
        self._passed: Verdict | None = None

    def observe(self, candidate: Counts, baseline: Counts) -> None:
        """Adds one batch of a single request class that both sides serve."""
        self.observe_classes({"": candidate}, {"": baseline}, served=("",))

    def observe_classes(
        self,
        candidate: Mapping[str, Counts],
        baseline: Mapping[str, Counts],
        share: float | None = None,
        served: Container[str] = (),
    ) -> None:
        """Adds one batch, class by class (see "Request classes" in the module docstring).

        `share` is the candidate's weight share while the batch was recorded (None: no
        limit on its requests per class); `served` names the classes the baseline served
        lately, beside those it served in this batch.
        """
        ratio = math.inf if share is None or share >= 1.0 else max(share, 0.0) / (1.0 - share)
        for klass in {*candidate, *baseline}:
            c = _clean(candidate.get(klass, _NONE))
            b = _clean(baseline.get(klass, _NONE))
            if c.requests == 0 and b.requests == 0:
                continue
            # Within the class, each event's candidate share is the class's own: a class
            # only one side served gives no evidence (every likelihood ratio is 1).
            self._bad_over_ratio.add(c.requests, c.bad, b.requests, b.bad)
            self._bad_under_ratio.add(c.requests, c.bad, b.requests, b.bad)
            self._slow_over_ratio.add(c.requests, c.slow, b.requests, b.slow)
            self.baseline = self.baseline + b
            if c.requests == 0 or (b.requests == 0 and klass not in served):
                continue  # the candidate alone: no evidence for the floor either
            # The floor tests see the candidate's requests of a class up to twice what the
            # weights would give it beside the baseline's (plus 2), at a weight below 1
            # past that: a flood of one endpoint cannot outweigh the traffic's own mix.
            limit = math.inf if ratio == math.inf else 2.0 * ratio * b.requests + 2.0
            weight = 1.0 if c.requests <= limit else limit / c.requests
            n = c.requests * weight
            self._bad_over_floor.add(n, c.bad * weight)
            self._bad_under_floor.add(n, c.bad * weight)
            self._slow_over_floor.add(n, c.slow * weight)
            self.candidate = self.candidate + _weighted(c, weight)

    def peek(
        self,
        candidate: Mapping[str, Counts],
        baseline: Mapping[str, Counts],
        share: float | None = None,
        served: Container[str] = (),
    ) -> Verdict | None:
        """The fail that a batch not yet complete (the current second, as it fills) would
        bring, without adding it: the judge acts on evidence as soon as it is there."""
        if self._final is not None:
            return self._final
        trial = self._trial()
        trial.observe_classes(candidate, baseline, share, served)
        return trial._failure()

    def _trial(self) -> CanaryJudge:
        """A copy to try a batch on (a deep copy would cost 100 times as much)."""
        trial = copy.copy(self)
        trial._bad_over_ratio = self._bad_over_ratio.copy()
        trial._bad_over_floor = self._bad_over_floor.copy()
        trial._bad_under_ratio = self._bad_under_ratio.copy()
        trial._bad_under_floor = self._bad_under_floor.copy()
        trial._slow_over_ratio = self._slow_over_ratio.copy()
        trial._slow_over_floor = self._slow_over_floor.copy()
        trial._harm = (
            (*self._harm[0][:3], trial._bad_over_ratio, trial._bad_over_floor),
            (*self._harm[1][:3], trial._slow_over_ratio, trial._slow_over_floor),
        )
        return trial

    def _log_safe(self) -> float:
        """Log of (ratio-safe + floor-safe) / 2, the pass e-value."""
        return logsumexp((self._bad_under_ratio.log_e(), self._bad_under_floor.log_e())) - LN2

    def _failure(self) -> Verdict | None:
        at = self._log_fail_at
        floor = _pct(self.limits.min_error_rate)
        for what, rate, ratio, over_ratio, over_floor in self._harm:
            # The cached ratio test first: it moves only in batches with events.
            if over_ratio.log_e() >= at and over_floor.log_e() >= at:
                return Verdict(
                    FAIL,
                    f"{what} {_pct(rate(self.candidate))} vs baseline "
                    f"{_pct(rate(self.baseline))}: over max({ratio:g}x baseline, {floor}) "
                    f"{_confident(self.limits)}",
                    None,
                )
        return None

    def verdict(self, may_pass: bool) -> Verdict:
        """The verdict now; `may_pass` says the hold is over. A fail is for good."""
        if self._final is not None:
            return self._final
        failure = self._failure()
        if failure is not None:
            self._final = failure
            return failure
        if self._passed is not None:
            return self._passed
        c, b = self.candidate, self.baseline
        limits = self.limits
        within = (
            f"bad rate {_pct(c.bad_rate())} vs baseline {_pct(b.bad_rate())}: within "
            f"max({limits.max_error_ratio:g}x baseline, {_pct(limits.min_error_rate)}) "
            f"{_confident(limits)}"
        )
        if self._log_safe() >= self._log_pass_at:
            verdict = _safe(within, c.requests, self.min_requests, may_pass, "candidate requests")
            if verdict.verdict == PASS:
                self._passed = verdict
            return verdict
        return Verdict(
            PENDING,
            f"bad rate {_pct(c.bad_rate())} vs baseline {_pct(b.bad_rate())} over "
            f"{c.requests} candidate requests: not conclusive yet",
            self.needed_requests(),
        )

    def needed_requests(self) -> int | None:
        """About how many more candidate requests a pass would need at the observed rates.

        0 once the evidence is there; None after a fail, before any candidate request, or
        when the candidate looks at or over its limit.
        """
        if self._final is not None:
            return None
        c, b = self.candidate, self.baseline
        missing = max(0, self.min_requests - c.requests)
        if self._log_safe() >= self._log_pass_at:
            return missing
        if c.requests == 0:
            return None
        rate_b = b.bad_rate()
        rate_c = c.bad_rate()
        rho = c.requests / (c.requests + b.requests)
        # The pass e-value is the average of the two mixtures: all their terms, halved.
        terms = [t - LN2 for t in self._bad_under_ratio.terms() + self._bad_under_floor.terms()]
        growths = self._bad_under_ratio.growths(rate_c, rate_b, rho)
        growths += self._bad_under_floor.growths(rate_c)
        needed = needed_for(terms, growths, self._log_pass_at)
        if needed > MAX_NEEDED:
            return None
        return max(missing, math.ceil(needed))

    def evidence(self) -> dict[str, float]:
        """log10 of each e-value and of the thresholds, for the rollout object (JSON-safe)."""
        return {
            "bad_over_ratio": log10(self._bad_over_ratio.log_e()),
            "bad_over_floor": log10(self._bad_over_floor.log_e()),
            "bad_within_limit": log10(self._log_safe()),
            "slow_over_ratio": log10(self._slow_over_ratio.log_e()),
            "slow_over_floor": log10(self._slow_over_floor.log_e()),
            "fail_at": log10(self._log_fail_at),
            "pass_at": log10(self._log_pass_at),
        }


class _AloneJudge:
    """The candidate alone against a fixed bad-rate limit and a fixed slow-share limit.

    Fail: the rate-harm e-value of bad or of slow requests reaches 2 / alpha (two checks,
    Bonferroni). Pass: the rate-safe e-value of bad requests reaches 1 / alpha.
    """

    def __init__(
        self,
        limits: Limits,
        bad_limit: float,
        slow_limit: float,
        min_requests: int,
        bad_limit_text: str,
        slow_limit_text: str,
    ) -> None:
        self.limits = limits
        self.min_requests = max(0, min_requests)
        self.candidate = Counts()
        self.bad_limit = bad_limit
        alpha = 1.0 - limits.confidence
        self._bad_over = RateTest(bad_limit, harm=True)
        self._bad_under = RateTest(bad_limit, harm=False)
        self._slow_over = RateTest(slow_limit, harm=True)
        # The harm checks, Bonferroni over them.
        self._harm: tuple[_AloneHarm, ...] = (
            ("bad rate", Counts.bad_rate, bad_limit_text, self._bad_over),
            ("slow share", Counts.slow_share, slow_limit_text, self._slow_over),
        )
        self._log_fail_at = _log(len(self._harm) / alpha)
        self._log_pass_at = _log(1.0 / alpha)
        self._bad_text = bad_limit_text
        self._final: Verdict | None = None
        self._passed: Verdict | None = None

    def observe(self, candidate: Counts) -> None:
        """Adds one batch of the candidate's requests, of a single class."""
        self.observe_classes({"": candidate})

    def observe_classes(
        self, candidate: Mapping[str, Counts], reference: Mapping[str, Counts] | None = None
    ) -> None:
        """Adds one batch, class by class, held to the baseline's mix of classes in
        `reference` (what the baseline served; None or empty: every class counts).

        A class the baseline did not serve gives no evidence; nor does one whose bad rate
        on the baseline is already over the limit (an endpoint that fails on every
        version); a class counts up to twice its share of the reference (plus 2), at a
        weight below 1 past that, so that a flood of one endpoint cannot outweigh it.
        """
        ref_total = sum(r.requests for r in reference.values()) if reference else 0
        total = sum(max(0, c.requests) for c in candidate.values())
        for klass, counts in candidate.items():
            c = _clean(counts)
            if c.requests == 0:
                continue
            weight = 1.0
            if reference and ref_total > 0:
                ref = reference.get(klass)
                if ref is None or ref.requests <= 0 or ref.bad_rate() > self.bad_limit:
                    continue
                limit = 2.0 * ref.requests / ref_total * total + 2.0
                if c.requests > limit:
                    weight = limit / c.requests
            n = c.requests * weight
            self._bad_over.add(n, c.bad * weight)
            self._bad_under.add(n, c.bad * weight)
            self._slow_over.add(n, c.slow * weight)
            self.candidate = self.candidate + _weighted(c, weight)

    def peek(
        self, candidate: Mapping[str, Counts], reference: Mapping[str, Counts] | None = None
    ) -> Verdict | None:
        """The fail a batch not yet complete would bring, without adding it."""
        if self._final is not None:
            return self._final
        trial = copy.copy(self)  # as in CanaryJudge._trial
        trial._bad_over = self._bad_over.copy()
        trial._bad_under = self._bad_under.copy()
        trial._slow_over = self._slow_over.copy()
        trial._harm = (
            (*self._harm[0][:3], trial._bad_over),
            (*self._harm[1][:3], trial._slow_over),
        )
        trial.observe_classes(candidate, reference)
        verdict = trial.verdict(False)
        return verdict if verdict.verdict == FAIL else None

    def verdict(self, may_pass: bool) -> Verdict:
        """The verdict now; `may_pass` says the hold is over. A fail is for good."""
        if self._final is not None:
            return self._final
        c = self.candidate
        confident = _confident(self.limits)
        for what, rate, limit_text, over in self._harm:
            if over.log_e() >= self._log_fail_at:
                self._final = Verdict(
                    FAIL, f"{what} {_pct(rate(c))}: over {limit_text} {confident}", None
                )
                return self._final
        if self._passed is not None:
            return self._passed
        within = f"bad rate {_pct(c.bad_rate())}: within {self._bad_text} {confident}"
        if self._bad_under.log_e() >= self._log_pass_at:
            verdict = _safe(within, c.requests, self.min_requests, may_pass, "requests")
            if verdict.verdict == PASS:
                self._passed = verdict
            return verdict
        return Verdict(
            PENDING,
            f"bad rate {_pct(c.bad_rate())} over {c.requests} requests: not conclusive yet",
            self.needed_requests(),
        )

    def needed_requests(self) -> int | None:
        """About how many more candidate requests a pass would need at the observed rate."""
        if self._final is not None:
            return None
        c = self.candidate
        missing = max(0, self.min_requests - c.requests)
        if self._bad_under.log_e() >= self._log_pass_at:
            return missing
        needed = needed_for(
            self._bad_under.terms(), self._bad_under.growths(c.bad_rate()), self._log_pass_at
        )
        if needed > MAX_NEEDED:
            return None
        return max(missing, math.ceil(needed))

    def evidence(self) -> dict[str, float]:
        """log10 of each e-value and of the thresholds (JSON-safe)."""
        return {
            "bad_over_limit": log10(self._bad_over.log_e()),
            "bad_within_limit": log10(self._bad_under.log_e()),
            "slow_over_limit": log10(self._slow_over.log_e()),
            "fail_at": log10(self._log_fail_at),
            "pass_at": log10(self._log_pass_at),
        }


class PreviewJudge(_AloneJudge):
    """Blue-green preview: the idle candidate on override-header requests, absolute limits.

    Bad rate at most ``min_error_rate``; slow share at most ``max_slow_ratio`` x 5% (the
    baseline's own share above its p95).
    """

    def __init__(self, limits: Limits, min_requests: int = 100) -> None:
        slow_limit = limits.max_slow_ratio * BASELINE_SLOW_SHARE
        super().__init__(
            limits,
            bad_limit=limits.min_error_rate,
            slow_limit=slow_limit,
            min_requests=min_requests,
            bad_limit_text=_pct(limits.min_error_rate),
            slow_limit_text=_pct(slow_limit),
        )


class KeepJudge(_AloneJudge):
    """Blue-green keep window: the candidate against the baseline's rates before the switch.

    `reference` is what the baseline did in the `keep` before the switch; its rates are
    taken as known. Limits: max(``max_error_ratio`` x its bad rate, ``min_error_rate``)
    and max(``max_slow_ratio`` x its slow share, ``min_error_rate``).
    """

    def __init__(self, limits: Limits, reference: Counts, min_requests: int = 100) -> None:
        ref = _clean(reference)
        self.reference = ref
        bad_limit = max(limits.max_error_ratio * ref.bad_rate(), limits.min_error_rate)
        slow_limit = max(limits.max_slow_ratio * ref.slow_share(), limits.min_error_rate)
        super().__init__(
            limits,
            bad_limit=bad_limit,
            slow_limit=slow_limit,
            min_requests=min_requests,
            bad_limit_text=f"{_pct(bad_limit)} ({_pct(ref.bad_rate())} before the switch)",
            slow_limit_text=f"{_pct(slow_limit)} ({_pct(ref.slow_share())} before the switch)",
        )

"""Anytime-valid sequential tests for the rollout judge (`judge`): e-processes on counts.

Pure: no clock, no I/O, no randomness, stdlib only.

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


Sample ratio. New clients are assigned independently with the candidate's weight share p0
(which may change between batches), so the candidate's count in a batch is Binomial(n, p0).
The alternative is a constant shift of the log-odds, logit(p) = logit(p0) + d, with d on the
grid on both sides of 0 (a discrete beta-binomial mixture that follows p0 when the weights
change); the e-process is the mixture of the likelihood ratios, and a mismatch is declared
at 1 / alpha.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["EPS", "GRID", "LN2", "LN10", "MAX_NEEDED", "RateTest", "RatioTest", "SampleRatio",
           "clamp", "log10", "logistic", "logit", "logsumexp", "needed"]  # fmt: skip

GRID = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.5, 7.0, 10.0)
# Probabilities are kept this far from 0 and 1 so every logarithm is finite.
EPS = 1e-9
# Beyond this, "about how many more requests" is "not in any useful time".
MAX_NEEDED = 10**9
LN10 = math.log(10.0)
LN2 = math.log(2.0)

_exp = math.exp
_log = math.log
_log1p = math.log1p


def log10(log_e: float) -> float:
    """An e-value's log, in log10 rounded to 3 places (for the rollout object)."""
    return round(log_e / LN10, 3)


def clamp(p: float) -> float:
    if not p > EPS:  # also NaN
        return EPS
    return min(p, 1.0 - EPS)


def logit(p: float) -> float:
    return _log(p) - _log1p(-p)


def logistic(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + _exp(-x))
    e = _exp(x)
    return e / (1.0 + e)


def logsumexp(terms: Iterable[float]) -> float:
    values = list(terms)
    top = max(values)
    if top == -math.inf:
        return top
    return top + _log(sum([_exp(v - top) for v in values]))


def needed(terms: list[float], growths: list[float], target: float) -> float:
    """About how many requests until the mixture of `terms` (logs), each growing by its
    `growths` nats per request, reaches `target`; inf if never.

    Terms that do not grow are left out (the estimate errs long by what they hold now).
    The log of the rest is convex in the number of requests and below `target` at 0, so
    it crosses it once, rising: Newton's method from the right of the crossing (the
    requests the best term would need alone) comes down to it without overshooting.
    """
    growing = [(t, g) for t, g in zip(terms, growths, strict=True) if g > 0.0]
    if not growing:
        return math.inf
    n = max(0.0, min((target - t) / g for t, g in growing))
    for _ in range(50):
        logs = [t + n * g for t, g in growing]
        top = max(logs)
        weights = [_exp(v - top) for v in logs]
        total = sum(weights)
        excess = top + _log(total) - target
        slope = sum([w * g for w, (_, g) in zip(weights, growing, strict=True)]) / total
        if excess <= 0.0:
            break
        step = excess / slope
        n = max(0.0, n - step)
        if step < 0.25:
            break
    return n


# --- the two kinds of test -------------------------------------------------------------------


class RateTest:
    """One-sided test of a Bernoulli rate p against `limit`, on the candidate alone.

    ``harm=True``: H0 "p <= limit", mixture over p above the limit. ``harm=False``: H0
    "p >= limit", mixture over p below. The totals (n, x) are sufficient: O(1) to observe.
    """

    __slots__ = ("_hit", "_log_w", "_miss", "_points", "limit", "n", "x")

    def __init__(self, limit: float, harm: bool) -> None:
        self.limit = clamp(limit)
        sign = 1.0 if harm else -1.0
        center = logit(self.limit)
        self._points = [clamp(logistic(center + sign * d)) for d in GRID]
        # Per request, the log likelihood ratio of each grid point: a bad one, a good one.
        self._hit = [_log(p) - _log(self.limit) for p in self._points]
        self._miss = [_log1p(-p) - _log1p(-self.limit) for p in self._points]
        self._log_w = -_log(len(GRID))
        self.n = 0.0
        self.x = 0.0

    def copy(self) -> RateTest:
        """An independent copy (the grid is shared: it never changes)."""
        other = RateTest.__new__(RateTest)
        other.limit = self.limit
        other._points = self._points
        other._hit = self._hit
        other._miss = self._miss
        other._log_w = self._log_w
        other.n = self.n
        other.x = self.x
        return other

    def add(self, n: float, x: float) -> None:
        """`n` requests, `x` of them hits; fractions are requests counted at a weight
        below 1 (their likelihood ratio raised to it: still an e-value, by Jensen)."""
        self.n += n
        self.x += x

    def terms(self) -> list[float]:
        """The log of each weighted term of the mixture."""
        x = self.x
        y = self.n - x
        w = self._log_w
        return [w + x * h + y * m for h, m in zip(self._hit, self._miss, strict=True)]

    def log_e(self) -> float:
        return logsumexp(self.terms())

    def growths(self, rate: float) -> list[float]:
        """Expected log growth of each term per request when the true rate is `rate`."""
        return [rate * h + (1.0 - rate) * m for h, m in zip(self._hit, self._miss, strict=True)]


class RatioTest:
    """One-sided test of the candidate's rate against ``ratio`` x the baseline's.

    Conditional on each batch's total of events (see the module docstring, 1). Only
    batches with events change it, and each costs O(grid).
    """

    __slots__ = ("_acc", "_d0", "_em1", "_em1_0", "_log_e", "_log_w", "_offsets", "events")

    def __init__(self, ratio: float, harm: bool) -> None:
        sign = 1.0 if harm else -1.0
        self._d0 = _log(ratio)
        self._offsets = [sign * d for d in GRID]  # delta - delta0
        self._em1 = [math.expm1(self._d0 + o) for o in self._offsets]
        self._em1_0 = math.expm1(self._d0)
        self._log_w = -_log(len(GRID))
        # Per grid point: sum over batches of B [ln(1 - rho + rho e^delta) - same at delta0].
        self._acc = [0.0] * len(GRID)
        self.events = 0  # the candidate's events so far: the b_c (delta - delta0) part
        self._log_e: float | None = 0.0

    def copy(self) -> RatioTest:
        """An independent copy: `add` replaces `_acc`, never changes it in place."""
        other = RatioTest.__new__(RatioTest)
        other._d0 = self._d0
        other._offsets = self._offsets
        other._em1 = self._em1
        other._em1_0 = self._em1_0
        other._log_w = self._log_w
        other._acc = self._acc
        other.events = self.events
        other._log_e = self._log_e
        return other

    def add(self, n_c: int, x_c: int, n_b: int, x_b: int) -> None:
        total = x_c + x_b
        if total <= 0 or n_c + n_b <= 0:
            return  # no events: every likelihood ratio is 1
        rho = n_c / (n_c + n_b)
        base = _log1p(rho * self._em1_0)
        self._acc = [
            a + total * (_log1p(rho * e) - base) for a, e in zip(self._acc, self._em1, strict=True)
        ]
        self.events += x_c
        self._log_e = None

    def terms(self) -> list[float]:
        c = self.events
        w = self._log_w
        return [w + c * o - a for o, a in zip(self._offsets, self._acc, strict=True)]

    def log_e(self) -> float:
        if self._log_e is None:
            self._log_e = logsumexp(self.terms())
        return self._log_e

    def growths(self, rate_c: float, rate_b: float, rho: float) -> list[float]:
        """Expected log growth of each term per candidate request.

        At candidate share `rho` of the requests, each candidate request comes with
        ``rate_c`` candidate events and ``rate_b (1 - rho) / rho`` baseline ones.
        """
        if not 0.0 < rho < 1.0 or rate_c + rate_b <= 0.0:
            return [0.0] * len(GRID)
        baseline_events = rate_b * (1.0 - rho) / rho
        share0 = rho * (1.0 + self._em1_0)
        share0 = share0 / (1.0 + rho * self._em1_0)
        out = []
        for em1 in self._em1:
            share = rho * (1.0 + em1) / (1.0 + rho * em1)
            out.append(
                rate_c * (_log(max(share, 1e-300)) - _log(share0))
                + baseline_events * (_log1p(-min(share, 1.0 - 1e-16)) - _log1p(-share0))
            )
        return out


class SampleRatio:
    """Does the candidate get the share of new clients its weight says?

    `observe(candidate, other, expected_share)`: new clients assigned to the candidate and
    to the other pools in one batch, and the candidate's weight share then. `mismatch()`
    is True, for good, once the e-value reaches 1 / (1 - confidence).
    """

    def __init__(self, confidence: float = 0.99) -> None:
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
        self._log_alarm_at = _log(1.0 / (1.0 - confidence))
        self._offsets = [-d for d in reversed(GRID)] + list(GRID)
        self._log_w = -_log(len(self._offsets))
        self._acc = [0.0] * len(self._offsets)
        self._log_e = 0.0
        self._mismatch = False
        self._share = -1.0
        self._hit: list[float] = []
        self._miss: list[float] = []
        self.candidate = 0
        self.other = 0

    def observe(self, candidate: int, other: int, expected_share: float) -> None:
        """Adds one batch of new clients: how many went to the candidate, how many elsewhere."""
        x = max(0, int(candidate))
        y = max(0, int(other))
        if x + y == 0 or math.isnan(expected_share):
            return
        self.candidate += x
        self.other += y
        p0 = clamp(expected_share)
        if p0 != self._share:  # the per-client log likelihood ratios, kept while p0 holds
            self._share = p0
            center = logit(p0)
            points = [clamp(logistic(center + offset)) for offset in self._offsets]
            self._hit = [_log(p) - _log(p0) for p in points]
            self._miss = [_log1p(-p) - _log1p(-p0) for p in points]
        self._acc = [
            a + x * h + y * m for a, h, m in zip(self._acc, self._hit, self._miss, strict=True)
        ]
        w = self._log_w
        self._log_e = logsumexp(w + a for a in self._acc)
        if self._log_e >= self._log_alarm_at:
            self._mismatch = True

    def mismatch(self) -> bool:
        return self._mismatch

    def evidence(self) -> dict[str, float]:
        return {
            "sample_ratio_mismatch": log10(self._log_e),
            "alarm_at": log10(self._log_alarm_at),
        }

"""The canary's test step on shadow traffic: its counts and its judge (docs/rollouts.md,
"The test step: shadow traffic").

Pure: no clock, no I/O, stdlib only. During the step the candidate stays at weight 0 and
gets copies of real requests; the host counts, for the copies sent to a pool, how their
answers compared with the primary's (`ShadowCounts`, cumulative). At each look the engine
hands the judge the host's counts as they are (`ShadowJudge.read`); the judge takes the
batch since its last reading and asks for a verdict.

Rules:

- **fail** as soon as it is confident, at ``limits.confidence``, that the candidate's
  difference rate (differences beyond noise, of the copies compared) exceeds
  ``max_diff_rate``, or that its bad rate on copies exceeds section 8's limit against the
  primary's on the same requests: max(``max_error_ratio`` x the primary's,
  ``min_error_rate``). A fail is for good.
- **pass** when the hold is over (``may_pass``), at least ``min_requests`` copies were
  compared and paired, and it is confident, at the same level, of both limits: the
  difference rate within ``max_diff_rate`` and the bad rate within its limit. With
  ``max_diff_rate: 0`` no difference is allowed: the first one fails (a difference seen
  is proof that the rate is above 0), and the difference test counts as passed while
  none was seen (no test can be confident of a rate of exactly 0).
- Otherwise **pending**; `needed_requests` says about how many more copies a pass needs.
- There is no sample-ratio check (the candidate is at weight 0: the weighted choice
  assigns it nobody) and no slowness check (copies are sent beside the primary's request,
  later and with a bound on those in flight: their durations are not the candidate's).

Theory of operation (the module docstrings of `judge` and `sequential` say what an
e-process is, and why rejecting at 1 / a is wrong with probability at most a however
often anyone looks).

1. *Difference test.* Each compared copy differs (beyond noise) with probability q; a
   `sequential.RateTest` at ``max_diff_rate`` on (n = compared, x = differ), its harm
   side for the fail and its safe side for the pass. Sufficient statistics: only the
   totals matter, so batches may be cut anywhere.

2. *Bad-rate test on pairs.* A *pair* is one copied request: the primary's answer and the
   shadow's, both from the same request (a shadow that gave no answer is a pair, and bad:
   a candidate that hangs is not excused). `CanaryJudge` judges candidate =
   (pairs, shadow_bad) against baseline = (pairs, primary_bad). Why this is valid, and
   conservative, although the two sides are the same requests rather than independent
   samples: with equal counts on both sides the ratio test's share is rho = 1/2 in every
   batch, so its likelihood ratio is a product over the pairs of a factor A for each bad
   shadow answer and a factor B for each bad primary one, where, with u = e^delta and
   k = e^delta0 = ``max_error_ratio``, A = (u / k)(1 + k) / (1 + u) and
   B = (1 + k) / (1 + u). One pair's expected factor is

       E = 1 + (A - 1) p_s + (B - 1) p_p + (A - 1)(B - 1) P(both bad),

   p_s and p_p the shadow's and the primary's bad rates on the request. At the margin
   p_s = k p_p the first three terms make exactly 1; into the harm null (p_s < k p_p,
   delta > delta0: A > 1 > B) and the safe null (p_s > k p_p, delta < delta0: A < 1 < B)
   they make less. The last term is <= 0 on both sides, since A - 1 and B - 1 have
   opposite signs: requests that break both versions (a malformed request, an endpoint
   down for everyone) only lower the expectation. So each pair's factor has expectation
   at most 1 under the null, given everything before it, and the product is an
   e-process; no Poisson approximation is needed (the approximation the unpaired test
   makes, `judge` 1, falls away). The floor test (the shadow's bad rate against
   ``min_error_rate``) is on the shadow's answers alone: Bernoulli, exact. Which copies
   are pairs does not depend on how their answers turn out, except that a shadow that
   gave no answer is kept, as bad.

3. *Combining.* Fail: the difference harm e-value reaches 2 / alpha (alpha = 1 -
   confidence), or the bad-rate check fails in `CanaryJudge`, which fails bad requests at
   2 / alpha too (its slowness check sees no slow request, so it never fires); a false
   fail of either kind has probability <= alpha / 2 + alpha / 2 = alpha (Bonferroni).
   Pass: the difference safe e-value reaches 1 / alpha AND `CanaryJudge` passes (its pass
   e-value at 1 / alpha): when the candidate is over either limit, the test of that limit
   passes it with probability at most alpha, so a false pass has probability <= alpha.

Reading the host's counts: they are cumulative (since the process that keeps them
started) and only grow. The batch of a look is the growth since the judge's last reading,
of a consistent part only (at most as many differences as copies compared, at most as many
bad answers as pairs: the rest is counted at a later look, once the copies it belongs to
are counted). A count that went down means the counting restarted (a process, or one of
several whose counts are summed, restarted): the judge starts again from the counts as
they are, adding nothing for that look, never a negative batch, and never counting twice
a copy that was counted before (what came since the restart, in the look's interval, is
lost: that costs a little time, never validity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from splitter.rollout.judge import FAIL, PASS, PENDING, CanaryJudge, Counts, Limits, Verdict
from splitter.rollout.judge import _confident as confident_text
from splitter.rollout.judge import _pct as pct
from splitter.rollout.sequential import MAX_NEEDED, RateTest, log10, needed

__all__ = ["ShadowCounts", "ShadowJudge", "diff_rate"]


@dataclass(frozen=True, slots=True)
class ShadowCounts:
    """Copies sent to a pool, and how their answers went (docs/rollouts.md).

    - `compared`: copies whose answers were compared with the primary's (same + differ +
      noise); `differ`: of them, those that differ beyond noise.
    - `pairs`: copies whose shadow and primary answers both came, or whose shadow gave
      none (what the bad-rate test counts); `shadow_bad`: of the pairs, those whose shadow
      answered 5xx or gave no answer; `primary_bad`: of the pairs, those whose primary
      answered 5xx or failed.

    From the host: cumulative since its counting started. In a rollout: the step's."""

    compared: int = 0
    differ: int = 0
    pairs: int = 0
    shadow_bad: int = 0
    primary_bad: int = 0

    def __add__(self, other: ShadowCounts) -> ShadowCounts:
        return ShadowCounts(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[int, int, int, int, int]:
        return (self.compared, self.differ, self.pairs, self.shadow_bad, self.primary_bad)


def diff_rate(c: ShadowCounts) -> float:
    return c.differ / c.compared if c.compared > 0 else 0.0


def _whole(value: object) -> int:
    """A count as the host gave it, as a whole number >= 0 (anything else: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value):
        return 0
    return max(0, int(value))


class ShadowJudge:
    """The shadow test step's judge (see the module docstring). `read` the host's
    cumulative counts at each look, then ask for the `verdict`."""

    def __init__(
        self,
        limits: Limits,
        max_diff_rate: float,
        start: ShadowCounts | None = None,
        min_requests: int = 100,
    ) -> None:
        self.limits = limits
        self.max_diff_rate = max(0.0, max_diff_rate)
        self.min_requests = max(0, min_requests)
        self.counts = ShadowCounts()  # judged so far
        alpha = 1.0 - limits.confidence
        self._log_fail_at = math.log(2.0 / alpha)
        self._log_pass_at = math.log(1.0 / alpha)
        self._diff_over = RateTest(self.max_diff_rate, harm=True)
        self._diff_under = RateTest(self.max_diff_rate, harm=False)
        self._bad = CanaryJudge(limits, self.min_requests)
        first = tuple(_whole(v) for v in (start or ShadowCounts()).values())
        self._seen: tuple[int, ...] = first  # the host's last reading, as it was
        self._taken: tuple[int, ...] = first  # what of it the judge has counted
        self._final: Verdict | None = None
        self._passed: Verdict | None = None

    # -- reading ------------------------------------------------------------------------

    def read(self, cumulative: ShadowCounts) -> ShadowCounts:
        """Take the host's cumulative counts now; return the batch it added (nothing when
        a count went down: the counting restarted, and goes on from here)."""
        now = tuple(_whole(v) for v in cumulative.values())
        seen, self._seen = self._seen, now
        if any(n < s for n, s in zip(now, seen, strict=True)):
            self._taken = now
            return ShadowCounts()
        d = [n - t for n, t in zip(now, self._taken, strict=True)]
        compared, pairs = max(0, d[0]), max(0, d[2])
        batch = ShadowCounts(compared, min(max(0, d[1]), compared), pairs,
                             min(max(0, d[3]), pairs), min(max(0, d[4]), pairs))  # fmt: skip
        self._taken = tuple(t + b for t, b in zip(self._taken, batch.values(), strict=True))
        self.observe(batch)
        return batch

    def observe(self, batch: ShadowCounts) -> None:
        """Adds one batch (a consistent one: differ <= compared, bad <= pairs)."""
        if self._final is not None:
            return
        c = ShadowCounts(*(_whole(v) for v in batch.values()))
        if c.compared > 0 or c.differ > 0:
            self._diff_over.add(c.compared, c.differ)
            self._diff_under.add(c.compared, c.differ)
        if c.pairs > 0:
            self._bad.observe(Counts(c.pairs, c.shadow_bad, 0), Counts(c.pairs, c.primary_bad, 0))
        self.counts = self.counts + c

    # -- the verdict --------------------------------------------------------------------

    def _diff_fails(self) -> bool:
        if self.max_diff_rate == 0.0:
            return self.counts.differ > 0
        return self._diff_over.log_e() >= self._log_fail_at

    def _diff_safe(self) -> bool:
        if self.max_diff_rate == 0.0:
            return self.counts.differ == 0
        return self._diff_under.log_e() >= self._log_pass_at

    def _texts(self) -> tuple[str, str]:
        c = self.counts
        shadow = pct(c.shadow_bad / c.pairs) if c.pairs else "0%"
        primary = pct(c.primary_bad / c.pairs) if c.pairs else "0%"
        differs = f"differs from the primary on {pct(diff_rate(c))} of copies"
        bad = f"bad rate on copies {shadow} vs the primary's {primary} on the same requests"
        return differs, bad

    def verdict(self, may_pass: bool) -> Verdict:
        """The verdict now; `may_pass` says the hold is over. A fail is for good."""
        if self._final is not None:
            return self._final
        c = self.counts
        limits = self.limits
        sure = confident_text(limits)
        differs, bad = self._texts()
        limit = pct(self.max_diff_rate)
        bad_limit = f"max({limits.max_error_ratio:g}x the primary's, {pct(limits.min_error_rate)})"
        if self._diff_fails():
            over = "no difference is allowed" if self.max_diff_rate == 0 else f"over {limit} {sure}"
            self._final = Verdict(FAIL, f"{differs} ({c.differ} of {c.compared}): {over}", None)
            return self._final
        judged = self._bad.verdict(True)
        if judged.verdict == FAIL:
            self._final = Verdict(FAIL, f"{bad}: over {bad_limit} {sure}", None)
            return self._final
        if self._passed is not None:
            return self._passed
        diff_safe = self._diff_safe()
        if diff_safe and judged.verdict == PASS and c.compared >= self.min_requests:
            within = f"{differs}, {bad}: within {limit} and {bad_limit} {sure}"
            if not may_pass:
                return Verdict(PENDING, f"{within}; holding", 0)
            self._passed = Verdict(PASS, within, 0)
            return self._passed
        return Verdict(
            PENDING,
            f"{differs} over {c.compared} compared, {bad} over {c.pairs}: not conclusive yet",
            self.needed_requests(),
        )

    def needed_requests(self) -> int | None:
        """About how many more copies a pass would need at the observed rates: 0 once the
        evidence is there; None after a fail, or when the candidate looks at or over a
        limit."""
        if self._final is not None:
            return None
        c = self.counts
        missing = max(0, self.min_requests - c.compared)
        if self._diff_safe():
            diff: int | None = missing
        elif self.max_diff_rate == 0.0:
            diff = None
        else:
            more = needed(self._diff_under.terms(), self._diff_under.growths(diff_rate(c)),
                          self._log_pass_at)  # fmt: skip
            diff = None if more > MAX_NEEDED else max(missing, math.ceil(more))
        if c.pairs == 0:
            probe = CanaryJudge(self.limits, self.min_requests)  # what a clean pair needs
            probe.observe(Counts(1, 0, 0), Counts(1, 0, 0))
            bad = probe.needed_requests()
        else:
            bad = self._bad.needed_requests()
        if diff is None or bad is None:
            return None
        return max(diff, bad)

    def evidence(self) -> dict[str, float]:
        """log10 of each e-value and of the thresholds (JSON-safe)."""
        inner = self._bad.evidence()
        return {
            "diff_over_limit": log10(self._diff_over.log_e()),
            "diff_within_limit": log10(self._diff_under.log_e()),
            "bad_over_ratio": inner["bad_over_ratio"],
            "bad_over_floor": inner["bad_over_floor"],
            "bad_within_limit": inner["bad_within_limit"],
            "fail_at": log10(self._log_fail_at),
            "pass_at": log10(self._log_pass_at),
        }

"""What the judge is given: the per-pool statistics of a second (`stats.Window`) turned
into the judge's counts (client-seconds by request class), the slow threshold, the
baseline's classes, and what a verdict needs without traffic."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from splitter.config import Analysis
from splitter.observe.stats import (
    JUDGED,
    JUDGED_BAD,
    OVERRIDE_MARK,
    Evidence,
    PoolTotals,
    Window,
    count_above,
    quantile,
)
from splitter.rollout.judge import CanaryJudge, Counts, PreviewJudge
from splitter.rollout.record import limits_of

BASELINE_WINDOW: Final = 60  # seconds of baseline behind its p95


def slow_threshold(window: Window, baseline: list[str], floor: float, now: float) -> float:
    """max(the baseline's p95 over the last minute, `floor`), in seconds."""
    totals = window.totals(now - BASELINE_WINDOW, now)
    histogram: dict[int, int] = {}
    for name in baseline:
        t = totals.get(name)
        if t is not None:
            for bucket, n in t.judged_latency.items():
                histogram[bucket] = histogram.get(bucket, 0) + n
    p95 = quantile(histogram, 0.95) or 0.0
    return max(p95, floor)


def needed_without_traffic(analysis: Analysis, alone: bool) -> int | None:
    """With no candidate request yet, what a clean candidate would need to pass."""
    limits = limits_of(analysis)
    if alone:
        preview = PreviewJudge(limits)
        preview.observe(Counts(1, 0, 0))
        return preview.needed_requests()
    judge = CanaryJudge(limits)
    judge.observe(Counts(1, 0, 0), Counts(1, 0, 0))
    return judge.needed_requests()


def judged(totals: PoolTotals | None, threshold: float) -> Counts:
    if totals is None:
        return Counts()
    counts = totals.counts
    return Counts(counts[JUDGED], counts[JUDGED_BAD], count_above(totals.judged_latency, threshold))


def add_classes(
    into: dict[str, Counts], classes: dict[str, Evidence], threshold: float, override: bool
) -> None:
    """Add a pool's client-seconds of one kind (the weights' or the override header's) to
    `into`, by class (override classes without their mark), slow above `threshold`."""
    for klass, (counts, latency) in classes.items():
        if klass.startswith(OVERRIDE_MARK) != override:
            continue
        name = klass[len(OVERRIDE_MARK) :] if override else klass
        seen = Counts(counts[0], counts[1], count_above(latency, threshold))
        mine = into.get(name)
        into[name] = seen if mine is None else mine + seen


def baseline_view(
    window: Window, baseline: Iterable[str], floor: float, now: float
) -> tuple[float, dict[str, Counts]]:
    """Over the last minute: the slow threshold (max(the baseline's p95, `floor`)) and the
    baseline's client-seconds by class (what the candidate's classes are held to)."""
    totals = window.totals(now - BASELINE_WINDOW, now)
    histogram: dict[int, int] = {}
    names = list(baseline)
    for name in names:
        t = totals.get(name)
        if t is not None:
            for bucket, n in t.judged_latency.items():
                histogram[bucket] = histogram.get(bucket, 0) + n
    threshold = max(quantile(histogram, 0.95) or 0.0, floor)
    classes: dict[str, Counts] = {}
    for name in names:
        t = totals.get(name)
        if t is not None:
            add_classes(classes, t.classes, threshold, override=False)
    return threshold, classes

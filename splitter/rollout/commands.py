"""What the rollout machine (`machine`) takes and gives: its commands, the evidence and
the context the shell hands it, and the effects of a transition. Frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from splitter.config import RolloutPlan
from splitter.rollout.judge import Counts, Verdict
from splitter.rollout.record import Rollout
from splitter.rollout.shadowstep import ShadowCounts

# --- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    plan: RolloutPlan
    id: str


@dataclass(frozen=True, slots=True)
class Pause:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    pass


@dataclass(frozen=True, slots=True)
class Promote:
    full: bool = False


@dataclass(frozen=True, slots=True)
class Abort:
    pass


@dataclass(frozen=True, slots=True)
class Cancel:
    """A file edit of the weights wins (or the rollout's pool left the config)."""

    why: str


@dataclass(frozen=True, slots=True)
class TakeOver:
    """This replica drives the rollout from now (it started, or became the leader)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """The judge's reading of the step, as the shell made it."""

    verdict: Verdict
    candidate: Counts
    baseline: Counts
    down_for: float = 0.0  # seconds the candidate's active checks have found no live backend
    ratio_mismatch: str | None = None  # why, when the sample-ratio check alarms
    needed_without_traffic: int | None = None  # what a verdict needs when nothing came yet
    shadow: ShadowCounts | None = None  # a shadow test step: its copies so far


@dataclass(frozen=True, slots=True)
class Look:
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class GatesAnswered:
    rollout_id: str
    refused: str | None  # None: every gate agreed


Command = Start | Pause | Resume | Promote | Abort | Cancel | TakeOver | Look | GatesAnswered


@dataclass(frozen=True, slots=True)
class Reference:
    """What the baseline did before a blue-green switch (over `keep`, as far as the
    statistics reach): the keep window's judge holds the candidate to it."""

    counts: Counts = field(default_factory=Counts)
    p95: float = 0.0


@dataclass(frozen=True, slots=True)
class Context:
    """What the shell knows when it computes a transition."""

    now: float
    weights: Mapping[str, float]  # the weights in force, in the document it computes on
    reference: Reference = field(default_factory=Reference)  # for a switch


# --- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetWeights:
    """These pools' weights are put in force with the rollout (others keep theirs)."""

    weights: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Emit:
    """An event (source rollout) and the webhooks that asked for it."""

    event: str
    rollout: Rollout  # as it was at the event
    old: Mapping[str, float]
    new: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Judge:
    """The step's judging starts from now (a new judge)."""


@dataclass(frozen=True, slots=True)
class CountVerdict:
    verdict: str  # pass, fail, inconclusive (the metric)


Effect = SetWeights | Emit | Judge | CountVerdict


@dataclass(frozen=True, slots=True)
class Outcome:
    """The rollout after the command, and what the transition makes happen. `moved` is
    False when a look changed nothing but the counts (the shell writes those at most once
    a second)."""

    rollout: Rollout
    effects: tuple[Effect, ...] = ()
    moved: bool = True

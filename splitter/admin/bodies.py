"""The admin API's bodies, declared once as types (docs/admin-api.md, docs/rollouts.md).

Each request and response body is a `TypedDict` (or an alias of one): the handlers
build and read them, `admin.schema` turns them into the OpenAPI document's schemas, and
the tests check the server's answers against those schemas. Bounds are the constants the
validation uses (`config.model`, `config.convert`), never numbers copied here.

A body the API takes is closed (unknown keys are a 400, as in the config file); an
optional key of one may also be null, which means its default, as in the config file.
"""

from typing import Annotated, Final, Literal, NotRequired, TypedDict

from splitter.admin.schema import Meta
from splitter.config.convert import (
    DURATION_PATTERN,
    MAX_RATIO,
    MIN_CONFIDENCE,
    ON_INCONCLUSIVE,
)
from splitter.config.model import MAX_DURATION, MAX_WEIGHT, ROLLOUT_EVENTS

# The statistics' windows (stats?window=, stats/series?seconds=): whole seconds up to this.
MAX_WINDOW: Final = 300
# What a stream client may ask for (stream?kinds=).
KINDS: Final = frozenset({"stats", "series", "weights", "event", "rollout", "shadow"})
# A rollout step's weight is the candidate's percent of the traffic (rollout.plan).
PERCENT: Final = 100

# -- values -----------------------------------------------------------------------------

Weight = Annotated[float, Meta(minimum=0, maximum=MAX_WEIGHT)]
Weights = dict[str, Weight]
Count = Annotated[int, Meta(minimum=0)]
Time = Annotated[str, Meta(format="date-time")]
Seconds = Annotated[int, Meta(minimum=1, maximum=MAX_WINDOW)]
NullableNumber = float | None

_DURATION_TEXT = Annotated[
    str,
    Meta(
        pattern=rf"^\s*{DURATION_PATTERN}\s*$",
        description="A number with a unit: 250ms, 2s, 1m, 1h (bare seconds without one).",
    ),
]
# A duration from 0 (hold, keep, warmup, latency_floor) or above 0 (max): text or seconds,
# at most MAX_DURATION.
Hold = _DURATION_TEXT | Annotated[float, Meta(minimum=0, maximum=MAX_DURATION)]
Longest = (
    _DURATION_TEXT | Annotated[float, Meta(minimum=0, exclusive_minimum=True, maximum=MAX_DURATION)]
)
HookUrl = Annotated[
    str,
    Meta(pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[\x21-\x7e]+$", description="http(s), printable ASCII"),
]
StepWeight = Annotated[float, Meta(minimum=0, exclusive_minimum=True, maximum=PERCENT)]
Strategy = Literal["canary", "bluegreen"]
Status = Literal["progressing", "paused", "promoted", "rolled_back", "cancelled"]
Verdict = Literal["pending", "pass", "fail", "inconclusive"]
Inconclusive = Annotated[str, Meta(enum=ON_INCONCLUSIVE)]
RolloutEvent = Annotated[str, Meta(enum=ROLLOUT_EVENTS)]

# -- errors -----------------------------------------------------------------------------


class Error(TypedDict):
    """Every refusal: 4xx (or 503) and nothing changed."""

    error: str
    errors: NotRequired[Annotated[list[str], Meta(description="422: every problem found")]]


# -- weights, pools, reload, events (docs/admin-api.md) ----------------------------------------

WeightsChange = Annotated[Weights, Meta(min_properties=1)]


class SwitchRequest(TypedDict):
    pool: str


class Switched(TypedDict):
    """The new and the previous weights."""

    weights: Weights
    previous: Weights


class BackendInfo(TypedDict):
    url: str
    weight: Weight
    up: bool


class PoolInfo(TypedDict):
    weight: Weight
    backends: list[BackendInfo]


Pools = dict[str, PoolInfo]


class SegmentMatch(TypedDict):
    name: str
    value: NotRequired[str]  # absent: present with any value


class SegmentInfo(TypedDict):
    """One segment as configured: its pool and one of header, cookie, query or source."""

    pool: str
    header: NotRequired[SegmentMatch]
    cookie: NotRequired[SegmentMatch]
    query: NotRequired[SegmentMatch]
    source: NotRequired[list[str]]


class Reloaded(TypedDict):
    status: str
    weights: Weights


class Event(TypedDict):
    time: str
    source: Literal["api", "file", "signal", "startup", "rollout", "store"]
    route: NotRequired[str]  # events of before routes have none
    what: str
    old: Weights
    new: Weights


class Events(TypedDict):
    events: list[Event]


class Health(TypedDict):
    status: str


class Readiness(TypedDict):
    status: str
    reason: NotRequired[str]


OpenApiDocument = dict[str, object]

# -- rollouts (docs/rollouts.md): the start request --------------------------------------------


class AnalysisOverride(TypedDict, total=False):
    """Overrides of the config's rollouts.analysis (max_per_address is config only)."""

    confidence: (
        Annotated[float, Meta(minimum=MIN_CONFIDENCE, maximum=1, exclusive_maximum=True)] | None
    )
    max_error_ratio: Annotated[float, Meta(minimum=1, maximum=MAX_RATIO)] | None
    min_error_rate: (
        Annotated[float, Meta(minimum=0, exclusive_minimum=True, maximum=1, exclusive_maximum=True)]
        | None
    )
    max_slow_ratio: Annotated[float, Meta(minimum=1, maximum=MAX_RATIO)] | None
    latency_floor: Hold | None
    warmup: Hold | None


class WeightStep(TypedDict):
    """A step: the candidate's weight in percent (rising), held at least `hold`, judged at
    most `max` (at least hold; both default to the config's rollouts.hold and max)."""

    weight: StepWeight
    hold: NotRequired[Hold | None]
    max: NotRequired[Longest | None]


class PauseStep(TypedDict):
    """A manual gate: the rollout waits here for resume or promote."""

    pause: Literal[True]


Share = Annotated[float, Meta(minimum=0, exclusive_minimum=True, maximum=1)]
DiffRate = Annotated[float, Meta(minimum=0, maximum=1, exclusive_maximum=True)]


class ShadowTestRequest(TypedDict, total=False):
    """The shadow test step's settings: `share` of the requests copied (default 0.1),
    `max_diff_rate` of the copies that may differ (default 0.01), hold and max as a
    weight step's."""

    share: Share | None
    hold: Hold | None
    max: Longest | None
    max_diff_rate: DiffRate | None


class ShadowStep(TypedDict):
    """A test step on shadow traffic (the first step only): the candidate stays at weight
    0 and gets copies of real requests, judged against the primary's answers."""

    shadow: ShadowTestRequest


Step = StepWeight | WeightStep | PauseStep | ShadowStep


class WebhookRequest(TypedDict):
    url: HookUrl
    events: NotRequired[Annotated[list[RolloutEvent], Meta(min_items=1)] | None]


class GateRequest(TypedDict):
    url: HookUrl


class PreviewRequest(TypedDict, total=False):
    hold: Hold | None
    max: Longest | None


_Pool = Annotated[str, Meta(min_length=1, description="The candidate pool")]


class CanaryStart(TypedDict):
    """A canary: `steps` (default [5, 25, 50, 100]) rising, each a weight, {weight, hold,
    max} or {pause: true}; the first may be a shadow test step, {shadow: {...}}."""

    pool: _Pool
    strategy: NotRequired[Literal["canary"]]
    steps: NotRequired[Annotated[list[Step], Meta(min_items=1)] | None]
    analysis: NotRequired[AnalysisOverride | None]
    on_inconclusive: NotRequired[Inconclusive | None]
    webhooks: NotRequired[list[WebhookRequest] | None]
    gates: NotRequired[list[GateRequest] | None]


class BlueGreenStart(TypedDict):
    """A blue-green release: a preview through the override header, a switch, `keep`."""

    pool: _Pool
    strategy: Literal["bluegreen"]
    preview: NotRequired[PreviewRequest | None]
    auto_promote: NotRequired[bool | None]
    keep: NotRequired[Hold | None]
    analysis: NotRequired[AnalysisOverride | None]
    on_inconclusive: NotRequired[Inconclusive | None]
    webhooks: NotRequired[list[WebhookRequest] | None]
    gates: NotRequired[list[GateRequest] | None]


RolloutStart = CanaryStart | BlueGreenStart


class NoOptions(TypedDict):
    """No key at all (the body may be left out)."""


class PromoteOptions(TypedDict, total=False):
    full: bool


# -- rollouts: the rollout object --------------------------------------------------------


class Counts(TypedDict):
    requests: Count
    bad: Count
    slow: Count


class ShadowEvidence(TypedDict):
    """A shadow test step's copies: compared (differ of them, beyond noise) and paired
    (shadow_bad and primary_bad of them); needed: about how many more copies a pass needs."""

    compared: Count
    differ: Count
    diff_rate: Annotated[float, Meta(minimum=0, maximum=1)]
    pairs: Count
    shadow_bad: Count
    primary_bad: Count
    needed: Annotated[int, Meta(minimum=0)] | None


class Analysis(TypedDict):
    verdict: Verdict
    candidate: Counts
    baseline: Counts
    needed_requests: Annotated[int, Meta(minimum=0)] | None
    warmup_until: NotRequired[str]
    kind: NotRequired[Literal["shadow"]]  # a shadow test step (candidate: the copies)
    shadow: NotRequired[ShadowEvidence]


class PlannedStep(TypedDict):
    weight: Annotated[float, Meta(minimum=0, exclusive_minimum=True, maximum=PERCENT)]
    hold: str
    max: str


class PlannedPause(TypedDict):
    pause: Literal[True]


class PreviewWindow(TypedDict):
    hold: str
    max: str


class PlannedPreview(TypedDict):
    preview: PreviewWindow


class PlannedKeep(TypedDict):
    keep: str


class PlannedShadowTest(TypedDict):
    share: Share
    hold: str
    max: str
    max_diff_rate: DiffRate


class PlannedShadow(TypedDict):
    shadow: PlannedShadowTest


class HistoryEntry(TypedDict):
    at: str
    what: str
    detail: str


class Rollout(TypedDict):
    """A rollout, active or past: its plan, where it is, and the judge's evidence."""

    id: str
    route: str
    pool: str
    strategy: Strategy
    status: Status
    reason: str
    step: Count
    steps: list[PlannedStep | PlannedPause | PlannedPreview | PlannedKeep | PlannedShadow]
    weights: Weights
    start_weights: Weights
    started_at: str
    updated_at: str
    step_started_at: str
    analysis: Analysis
    history: list[HistoryEntry]
    auto_promote: NotRequired[bool]
    keep: NotRequired[str]


class Rollouts(TypedDict):
    rollouts: list[Rollout]


class RouteInfo(TypedDict):
    hosts: list[str]
    path_prefix: str
    weights: Weights
    segments: list[SegmentInfo]
    rollout: Rollout | None


Routes = dict[str, RouteInfo]


# -- live statistics and the dashboard's session (docs/admin-api.md) -------------------------------


class StatsQuery(TypedDict, total=False):
    window: Seconds


class SeriesQuery(TypedDict, total=False):
    seconds: Seconds


class StreamQuery(TypedDict, total=False):
    kinds: Annotated[str, Meta(description=f"Comma-separated, of: {', '.join(sorted(KINDS))}")]


class PoolStats(TypedDict):
    """A pool's numbers over the window ("none", the requests refused before a pool was
    chosen, has no weight, share nor backends)."""

    weight: NotRequired[Weight]
    share: NotRequired[NullableNumber]
    requests: Count
    rps: Annotated[float, Meta(minimum=0)]
    error_rate: NullableNumber
    p50_ms: NullableNumber
    p95_ms: NullableNumber
    p99_ms: NullableNumber
    backends_up: NotRequired[Count]
    backends: NotRequired[Count]


class Stats(TypedDict):
    """`share` is the pool's part of the requests answered by a pool (null when there were
    none); `rps` divides by the window, or by the uptime when the process is younger."""

    at: Time
    route: str
    window: int
    pools: dict[str, PoolStats]
    replicas: NotRequired[
        Annotated[int, Meta(minimum=1, description="With a store: the replicas counted.")]
    ]


class SeriesPool(TypedDict):
    requests: list[int]
    errors: list[int]


class Series(TypedDict):
    at: Time
    route: str
    start: Annotated[int, Meta(description="Unix time of the first second.")]
    seconds: int
    pools: dict[str, SeriesPool]


# -- shadow traffic (docs/shadow.md) -----------------------------------------------------

ShadowShare = Annotated[float, Meta(minimum=0, maximum=1)]


class ShadowField(TypedDict):
    field: Annotated[str, Meta(description='"status", "header:NAME", a JSON pointer, "body"')]
    differ: Count


class ShadowDifference(TypedDict):
    """One differing request: its first field that differs (values cut to 200 characters;
    Authorization, Cookie and Set-Cookie never shown; the query's values left out)."""

    at: Time
    method: str
    path: str
    primary_status: int
    shadow_status: int
    field: str
    primary: str
    shadow: str


class Shadow(TypedDict):
    """The route's shadow: the pool that gets copies (null: none) and the share, then what
    this replica compared since it started (`compared` = same + differ + noise;
    `diff_rate` = differ / compared)."""

    pool: str | None
    share: ShadowShare
    reference: str | None
    compared: Count
    same: Count
    differ: Count
    noise: Count
    skipped: Count
    errors: Count
    diff_rate: Annotated[float, Meta(minimum=0, maximum=1)]
    fields: list[ShadowField]
    recent: Annotated[list[ShadowDifference], Meta(description="The last 20, oldest first.")]


class ShadowChange(TypedDict):
    """Change the share (and the pool, or the reference: null for none) of the route's
    shadow; the pool is needed when the route has none."""

    share: NotRequired[ShadowShare]
    pool: NotRequired[str]
    reference: NotRequired[str | None]


class SessionRequest(TypedDict):
    token: str


class Session(TypedDict):
    token_required: bool
    session: bool
    expires_at: Time | None

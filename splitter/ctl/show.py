"""How `splitter ctl` shows the admin API's answers at a terminal: tables of weights,
pools, events and routes, the rollout with its progress bar and warmup, the history."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

PROG = "splitter ctl"


class Failure(Exception):
    """The request failed: `lines` go to stderr, exit status 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines


def one_line(text: str) -> str:
    return " ".join(text.split())


def number(value: Any) -> str:
    """90.0 -> "90", 12.5 -> "12.5"; anything else as JSON."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    return json.dumps(value) if not isinstance(value, str) else value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compact(value: Any) -> str:
    """A weight map as "blue=90 canary=10"; None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return " ".join(f"{k}={number(v)}" for k, v in value.items())
    if isinstance(value, str):
        return value
    return json.dumps(value)


def columns(rows: Sequence[Sequence[str]], right: AbstractSet[int] = frozenset()) -> list[str]:
    """Rows as aligned lines, columns two spaces apart; columns in `right` right-aligned."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths.get(i, 0), len(cell))
    return [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: AbstractSet[int]) -> str:
    return "\n".join(columns([headers, *rows], right))


def arrow_sign() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "→".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"


def weights_map(payload: Any, what: str = "weights") -> dict[str, int | float]:
    if not isinstance(payload, dict) or not all(is_number(v) for v in payload.values()):
        raise Failure(f"{PROG}: unexpected answer from the admin API: {what} is not a map")
    return payload


def weights_table(weights: Mapping[str, int | float]) -> str:
    if not weights:
        return "no pools"
    total = sum(weights.values())
    rows = []
    for pool, weight in weights.items():
        share = f"{number(round(weight * 100 / total, 1))}%" if total > 0 else "-"
        rows.append([pool, number(weight), share])
    return table(["POOL", "WEIGHT", "SHARE"], rows, right={1, 2})


def show_weights(payload: Any) -> str:
    return weights_table(weights_map(payload))


def show_switch(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise Failure(f"{PROG}: unexpected answer from the admin API: not a JSON object")
    new = weights_map(payload.get("weights"), "weights")
    old = weights_map(payload.get("previous") or {}, "previous")
    arrow = arrow_sign()
    pools = list(new) + [p for p in old if p not in new]
    rows = [
        [pool, number(old[pool]) if pool in old else "-", arrow, number(new.get(pool, "-"))]
        for pool in pools
    ]
    return table(["POOL", "PREVIOUS", "", "NEW"], rows, right={1, 3})


def show_reload(payload: Any) -> str:
    weights = payload.get("weights") if isinstance(payload, dict) else None
    if weights is None:
        return "config reloaded"
    return "config reloaded\n" + weights_table(weights_map(weights))


def show_events(payload: Any, routes: bool = False) -> str:
    """The events as a table; with `routes` (the config has several), each one's route."""
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise Failure(f"{PROG}: unexpected answer from the admin API: no list of events")
    if not events:
        return "no events"
    arrow = arrow_sign()
    rows = []
    for event in events:
        if not isinstance(event, dict):
            continue
        change = ""
        if "old" in event or "new" in event:
            change = f"{compact(event.get('old'))} {arrow} {compact(event.get('new'))}"
        row = [
            one_line(str(event.get("time", ""))),
            one_line(str(event.get("source", ""))),
            one_line(str(event.get("what", ""))),
            change,
        ]
        if routes:
            row.insert(2, one_line(str(event.get("route") or "-")))
        rows.append(row)
    headers = ["TIME", "SOURCE", "ROUTE", "WHAT", "CHANGE"] if routes else [
        "TIME", "SOURCE", "WHAT", "CHANGE"]  # fmt: skip
    return table(headers, rows, right=set())


def show_routes(payload: Any) -> str:
    """GET /routes: one line per route, in config order."""
    if not isinstance(payload, dict):
        raise Failure(f"{PROG}: unexpected answer from the admin API: not a JSON object")
    if not payload:
        return "no routes"
    rows = []
    for name, info in payload.items():
        if not isinstance(info, dict):
            info = {}
        hosts = info.get("hosts")
        segments = info.get("segments")
        rollout = info.get("rollout")
        rows.append(
            [
                name,
                ",".join(str(h) for h in hosts) if isinstance(hosts, list) and hosts else "*",
                one_line(str(info.get("path_prefix", "/"))),
                compact(info.get("weights")),
                str(len(segments)) if isinstance(segments, list) else "0",
                f"{rollout.get('pool')} {rollout.get('status')}"
                if isinstance(rollout, dict)
                else "-",
            ]
        )
    return table(["ROUTE", "HOSTS", "PATH", "WEIGHTS", "SEGMENTS", "ROLLOUT"], rows, right={4})


def show_pools(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise Failure(f"{PROG}: unexpected answer from the admin API: not a JSON object")
    if not payload:
        return "no pools"
    heads: list[list[str]] = []
    groups: list[list[list[str]]] = []
    for pool, info in payload.items():
        if not isinstance(info, dict):
            info = {}
        listed = info.get("backends")
        backends = [b for b in listed if isinstance(b, dict)] if isinstance(listed, list) else []
        up = sum(1 for b in backends if b.get("up") is True)
        weight = number(info.get("weight", "?"))
        heads.append([pool, f"weight {weight}", f"{up}/{len(backends)} up"])
        groups.append(
            [
                [
                    "  " + str(b.get("url", "?")),
                    f"weight {number(b.get('weight', '?'))}",
                    "up" if b.get("up") is True else "DOWN",
                ]
                for b in backends
            ]
        )
    # the pool lines are aligned together, and so are all the backend lines
    backend_lines = iter(columns([row for group in groups for row in group]))
    out: list[str] = []
    for head, group in zip(columns(heads), groups, strict=True):
        out.append(head)
        out.extend(next(backend_lines) for _ in group)
        if not group:
            out.append("  (no backends)")
    return "\n".join(out)


def show_rollout(payload: Any) -> str:
    if not isinstance(payload, dict) or "pool" not in payload:
        raise Failure(f"{PROG}: unexpected answer from the admin API: not a rollout")
    steps = payload.get("steps") or []
    step = payload.get("step", 0)
    analysis = payload.get("analysis") or {}
    cand = analysis.get("candidate") or {}
    base = analysis.get("baseline") or {}
    if payload.get("strategy") == "bluegreen":
        where = "preview" if step == 0 else "after the switch"
    else:
        where = f"step {step + 1} of {len(steps)}"
    lines = [
        f"rollout {payload.get('id')} of {payload.get('pool')}: {payload.get('strategy')} "
        f"strategy, {payload.get('status')} ({where})",
        f"  {one_line(str(payload.get('reason', '')))}",
        *warmup_lines(analysis.get("warmup_until")),
        f"  weights  {compact(payload.get('weights'))}   "
        f"(from {compact(payload.get('start_weights'))})",
        f"  verdict  {analysis.get('verdict')}: candidate {cand.get('requests', 0)} requests, "
        f"{cand.get('bad', 0)} bad, {cand.get('slow', 0)} slow; baseline "
        f"{base.get('requests', 0)}, {base.get('bad', 0)} bad, {base.get('slow', 0)} slow",
    ]
    shadow = analysis.get("shadow")
    done = cand.get("requests", 0)
    if isinstance(shadow, dict):  # a shadow test step: its evidence is the copies
        lines[-1] = shadow_line(analysis.get("verdict"), shadow)
        done = shadow.get("compared", 0)
    needed = analysis.get("needed_requests")
    if needed and payload.get("status") in ("progressing", "paused"):
        lines.append(f"  judged   {bar(done, done + needed)} {done} of about {done + needed}")
    history = payload.get("history") or []
    for entry in history[-5:]:
        if isinstance(entry, dict):
            lines.append(f"  {entry.get('at', '')}  {entry.get('what', '')}: "
                         f"{one_line(str(entry.get('detail', '')))}")  # fmt: skip
    return "\n".join(lines)


def shadow_line(verdict: Any, shadow: dict[str, Any]) -> str:
    """A shadow test step's verdict and evidence: copies compared and paired."""
    rate = shadow.get("diff_rate", 0)
    rate = rate if is_number(rate) else 0
    return (
        f"  verdict  {verdict}: {shadow.get('compared', 0)} copies compared, "
        f"{shadow.get('differ', 0)} differ ({rate * 100:.1f}%); {shadow.get('pairs', 0)} "
        f"pairs, {shadow.get('shadow_bad', 0)} bad on the copies, "
        f"{shadow.get('primary_bad', 0)} on the primary"
    )


def warmup_lines(until: Any) -> list[str]:
    """`analysis.warmup_until` (present while the step's requests are not yet judged):
    "warming up until 16:00:30 (12s left)", in local time as a clock on the wall shows."""
    if not isinstance(until, str) or not until:
        return []
    try:
        end = datetime.fromisoformat(until)
    except ValueError:
        return [f"  warming up until {one_line(until)}"]
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    left = max(0, math.ceil(end.timestamp() - time.time()))
    return [f"  warming up until {end.astimezone():%H:%M:%S} ({left}s left)"]


def bar(done: int, total: int, width: int = 24) -> str:
    filled = min(width, int(width * done / total)) if total > 0 else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def show_history(payload: Any) -> str:
    rollouts = payload.get("rollouts") if isinstance(payload, dict) else None
    if not isinstance(rollouts, list):
        raise Failure(f"{PROG}: unexpected answer from the admin API: no list of rollouts")
    if not rollouts:
        return "no rollouts"
    rows = [
        [str(r.get("started_at", "")), str(r.get("id", "")), str(r.get("pool", "")),
         str(r.get("strategy", "")), str(r.get("status", "")),
         one_line(str(r.get("reason", "")))]
        for r in rollouts if isinstance(r, dict)
    ]  # fmt: skip
    return table(["STARTED", "ID", "POOL", "STRATEGY", "STATUS", "REASON"], rows, right=set())


# --------------------------------------------------------------------------- shadow

SHADOW_COUNTS = ("compared", "same", "differ", "noise", "skipped", "errors")
TOP_FIELDS = 10  # the fields that differ most
LAST_DIFFERENCES = 10  # of the API's last 20
VALUE_WIDTH = 40  # a value shown beyond this is cut, with "…"


def printable(value: Any, width: int | None = None) -> str:
    """Untrusted text (a request's path, an answer's value) safe for a terminal: control
    characters (escape sequences among them) and other non-printable ones written as
    Python escapes, on one line, cut to `width` characters with "…"."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def percent(ratio: Any) -> str:
    """0.1667 -> "16.7%", 0.0123 -> "1.23%", 0 -> "0%", 0.00001 -> "<0.01%"."""
    if not is_number(ratio) or not math.isfinite(ratio):
        return "-"
    value = ratio * 100
    if value == 0:
        return "0%"
    if value < 0.01:
        return "<0.01%"
    return f"{number(round(value, 1 if value >= 10 else 2))}%"


def local_clock(at: Any) -> str:
    """An RFC 3339 time as a wall clock shows it here ("16:02:11"); as is if unreadable."""
    if not isinstance(at, str):
        return "-"
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return printable(at, 30)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.astimezone():%H:%M:%S}"


def show_shadow(payload: Any) -> str:
    """GET /shadow (and the answers of PUT and DELETE): the shadow in force, the counts
    with the diff rate, the fields that differ most, the last differences (newest last)."""
    if not isinstance(payload, dict) or "pool" not in payload:
        raise Failure(f"{PROG}: unexpected answer from the admin API: not a shadow")
    pool = payload.get("pool")
    counts = [payload.get(key, 0) for key in SHADOW_COUNTS]
    anything = any(is_number(n) and n > 0 for n in counts)
    if pool is None:
        if not anything:
            return "no shadow traffic on this route"
        lines = ["no shadow traffic on this route now (stopped); what its copies compared to:"]
    else:
        share: Any = payload.get("share")
        share_text = f"{number(round(share * 100, 4))}%" if is_number(share) else "?"
        reference = payload.get("reference")
        lines = [
            f"shadow: {printable(pool)} gets copies of {share_text} of the requests"
            + (f", reference {printable(reference)}" if reference else ", no reference")
        ]
    lines.append("")
    lines.append(
        table(
            ["COMPARED", "SAME", "DIFFER", "NOISE", "SKIPPED", "ERRORS", "DIFF RATE"],
            [[number(n) for n in counts] + [percent(payload.get("diff_rate"))]],
            right=set(range(7)),
        )
    )
    listed = payload.get("fields")
    fields = [f for f in listed if isinstance(f, dict)] if isinstance(listed, list) else []
    if fields:
        rows = [
            [printable(f.get("field", "?"), 60), number(f.get("differ", "?"))]
            for f in fields[:TOP_FIELDS]
        ]
        lines += ["", table(["FIELD", "DIFFER"], rows, right={1})]
        if len(fields) > TOP_FIELDS:
            lines.append(f"(and {len(fields) - TOP_FIELDS} more fields)")
    listed = payload.get("recent")
    recent = [r for r in listed if isinstance(r, dict)] if isinstance(listed, list) else []
    if recent:
        arrow = arrow_sign()
        rows = []
        for item in recent[-LAST_DIFFERENCES:]:
            primary, shadow = item.get("primary_status"), item.get("shadow_status")
            status = (
                number(primary)
                if primary == shadow
                else f"{number(primary)} {arrow} {number(shadow)}"
            )
            rows.append(
                [
                    local_clock(item.get("at")),
                    printable(item.get("method", "?"), 10),
                    printable(item.get("path", "?"), VALUE_WIDTH),
                    status,
                    printable(item.get("field", "?"), VALUE_WIDTH),
                    f"{printable(item.get('primary', ''), VALUE_WIDTH)} {arrow} "
                    f"{printable(item.get('shadow', ''), VALUE_WIDTH)}",
                ]
            )
        lines += [
            "",
            table(
                ["TIME", "METHOD", "PATH", "STATUS", "FIELD", f"PRIMARY {arrow} SHADOW"],
                rows,
                right=set(),
            ),
        ]
    return "\n".join(lines)

"""The running tally of one route's shadow: what the admin API shows of it and the judge
counts (GET /api/v1/shadow, beside the pool and share, which are runtime state and not
the tally's).

    tally.add(comparison, at=..., method=..., target=...)   one compared (or skipped) copy
    tally.add_skipped()                                      a copy not made (max_in_flight)
    tally.add_error()                                        a copy that got no answer
    tally.add_pair(shadow_bad, primary_bad)                  a copy's and its primary's
                                                             outcome, for the bad-rate test
    tally.to_json()   {"compared", "same", "differ", "noise", "skipped", "errors",
                       "diff_rate", "fields": [{"field", "differ"}, ...],
                       "recent": [{"at", "method", "path", "primary_status",
                                   "shadow_status", "field", "primary", "shadow"}, ...]}

Rules:

- `compared` = same + differ + noise: the copies whose answers were compared. `skipped`
  counts copies not compared (a body over max_body, a 101 answer, or not made: beyond
  max_in_flight); `errors` copies whose shadow gave no usable answer (the data path
  decides). `diff_rate` = differ / compared (noise is not a difference), 0 when nothing
  was compared (`compared` says so).
- `pairs` (with `shadow_bad` and `primary_bad`): the copies whose shadow and primary
  outcomes are both known (an answer's status, or no answer), what the rollout's test
  step weighs the copies' bad rate on against the primary's on the same requests. They
  are kept in `counts` (and so summed by `merge`) but not shown by `to_json`.
- `fields` counts, per field, the requests in which it differed and counted (not the
  noise): by the field's `group` (array indices as "*": "/items/*/name"), once per
  request however many indices differ, from the differences a comparison lists (at most
  20 per request). At most `MAX_FIELDS` distinct fields are kept, the first ones seen;
  the counts of any later ones are summed as "other" (at the end of the list; a request
  in which two of them differed adds 2). Listed by count, highest first, then by name.
- `recent`: the last `RECENT` differing requests, oldest first, one item each, for the
  first field that differed and counted (status, then content-type, headers, body).
  `at` is RFC 3339 UTC to the millisecond. The values are the comparison's: cut to 200
  characters, `authorization`, `proxy-authorization`, `cookie` and `set-cookie` never shown.
- The path shown is the request target without the query's values: "/search?q=&page="
  (a query may carry a token or an e-mail address; its names tell what kind of request
  it was), cut to 200 characters. The path itself is shown as sent.
- Several processes (workers) each keep a tally; `snapshot()` is a plain picklable copy
  and `Tally.merge(snapshots)` their sum: counts added, fields added (the `MAX_FIELDS`
  most counted kept, the rest to "other"), recent items merged by time, the last
  `RECENT` kept.

A tally is a small mutable accumulator (like observe.counters) rather than a frozen
value: it is added to for every copy, and each addition is a few integer increments.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from splitter.shadow.compare import DIFFER, NOISE, SAME, SKIPPED, Comparison, cut

__all__ = ["MAX_FIELDS", "OTHER", "RECENT", "Tally", "shown_path"]

MAX_FIELDS: Final = 100
RECENT: Final = 20
OTHER: Final = "other"  # never a field's name: fields are "status", "header:...", "/..." or "body"


def shown_path(target: str | bytes) -> str:
    """A request target as the tally shows it: the query's values left out
    ("/a?token=s3cret&x" -> "/a?token=&x"), cut to 200 characters."""
    text = target.decode("latin-1") if isinstance(target, bytes) else target
    path, question, query = text.partition("?")
    if question:
        names = (item.partition("=")[0] + ("=" if "=" in item else "") for item in query.split("&"))
        path = f"{path}?{'&'.join(names)}"
    return cut(path)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class Tally:
    __slots__ = ("counts", "fields", "other", "recent")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {
            SAME: 0, DIFFER: 0, NOISE: 0, SKIPPED: 0, "errors": 0,
            "pairs": 0, "shadow_bad": 0, "primary_bad": 0,
        }  # fmt: skip
        self.fields: dict[str, int] = {}  # group -> requests in which it differed
        self.other = 0  # the counts of the fields beyond MAX_FIELDS, summed
        # (at, method, path, primary_status, shadow_status, field, primary, shadow)
        self.recent: deque[tuple[float, str, str, int, int, str, str, str]] = deque(maxlen=RECENT)

    def add(
        self, comparison: Comparison, *, at: float, method: str | bytes, target: str | bytes
    ) -> None:
        """One copy's comparison; `at` (wall-clock seconds), `method` and `target` (the
        request target as sent, with its query) describe the request."""
        self.counts[comparison.result] += 1
        if comparison.result != DIFFER or not comparison.differences:
            return
        groups = dict.fromkeys(d.group for d in comparison.differences)
        fields = self.fields
        for group in groups:
            if group in fields:
                fields[group] += 1
            elif len(fields) < MAX_FIELDS:
                fields[group] = 1
            else:
                self.other += 1
        first = comparison.differences[0]
        if isinstance(method, bytes):
            method = method.decode("latin-1")
        self.recent.append(
            (
                at,
                cut(method),
                shown_path(target),
                comparison.primary_status,
                comparison.shadow_status,
                first.field,
                first.primary,
                first.shadow,
            )
        )

    def add_skipped(self) -> None:
        """A copy not made or not compared for a reason of the data path (max_in_flight)."""
        self.counts[SKIPPED] += 1

    def add_error(self) -> None:
        """A copy whose shadow (or reference) gave no answer to compare."""
        self.counts["errors"] += 1

    def add_pair(self, shadow_bad: bool, primary_bad: bool) -> None:
        """One request whose copy's outcome and primary's outcome are both known."""
        c = self.counts
        c["pairs"] += 1
        if shadow_bad:
            c["shadow_bad"] += 1
        if primary_bad:
            c["primary_bad"] += 1

    @property
    def compared(self) -> int:
        c = self.counts
        return c[SAME] + c[DIFFER] + c[NOISE]

    @property
    def diff_rate(self) -> float:
        compared = self.compared
        return self.counts[DIFFER] / compared if compared else 0.0

    def to_json(self) -> dict[str, Any]:
        c = self.counts
        ranked = sorted(self.fields.items(), key=lambda kv: (-kv[1], kv[0]))
        fields = [{"field": name, "differ": n} for name, n in ranked]
        if self.other:
            fields.append({"field": OTHER, "differ": self.other})
        keys = ("at", "method", "path", "primary_status", "shadow_status")
        recent = [
            {**dict(zip(keys, (_iso(item[0]), *item[1:5]), strict=True)),
             "field": item[5], "primary": item[6], "shadow": item[7]}
            for item in self.recent
        ]  # fmt: skip
        return {
            "compared": self.compared,
            "same": c[SAME],
            "differ": c[DIFFER],
            "noise": c[NOISE],
            "skipped": c[SKIPPED],
            "errors": c["errors"],
            "diff_rate": self.diff_rate,
            "fields": fields,
            "recent": recent,
        }

    def snapshot(self) -> dict[str, Any]:
        """A plain, picklable copy (for a worker to ship)."""
        return {
            "counts": dict(self.counts),
            "fields": dict(self.fields),
            "other": self.other,
            "recent": list(self.recent),
        }

    @classmethod
    def merge(cls, snapshots: Iterable[dict[str, Any]]) -> Tally:
        """The sum of several processes' snapshots (see the module's docstring)."""
        total = cls()
        fields: dict[str, int] = {}
        recent = []
        for snap in snapshots:
            for key, n in snap["counts"].items():
                if key in total.counts:
                    total.counts[key] += n
            for group, n in snap["fields"].items():
                fields[group] = fields.get(group, 0) + n
            total.other += snap["other"]
            recent.extend(snap["recent"])
        ranked = sorted(fields.items(), key=lambda kv: (-kv[1], kv[0]))
        total.fields = dict(ranked[:MAX_FIELDS])
        total.other += sum(n for _, n in ranked[MAX_FIELDS:])
        recent.sort(key=lambda item: item[0])  # stable: equal times keep snapshot order
        total.recent.extend(recent[-RECENT:])
        return total

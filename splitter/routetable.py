"""Placeholder route table (replaced by the compiled one)."""

from __future__ import annotations

from collections.abc import Sequence

from splitter.config import Route, Segment


class RouteTable:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def match(self, host: bytes | None, target: bytes) -> int:
        h = None if host is None else host.decode("latin-1").lower().rsplit(":", 1)[0]
        path = target.split(b"?", 1)[0].decode("latin-1")
        best = (-1, -1, -1)
        for i, r in enumerate(self.routes):
            p = r.path_prefix
            if not (p == "/" or path == p or path.startswith(p + "/")):
                continue
            rank = 0
            if r.hosts:
                if h is None:
                    continue
                if h in r.hosts:
                    rank = 2
                elif any(x.startswith("*.") and h.endswith(x[1:]) for x in r.hosts):
                    rank = 1
                else:
                    continue
            if (rank, len(p)) > best[:2]:
                best = (rank, len(p), i)
        return best[2]


class SegmentMatcher:
    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = tuple(segments)
        self.header_names = frozenset(
            s.name.lower().encode() for s in segments if s.kind == "header"
        )

    def match(
        self, headers: dict[bytes, bytes] | None, cookie: bytes | None, target: bytes, client: str
    ) -> str | None:
        return None

"""One observation per finished request, handed to whoever counts: the metrics, the access
log and the per-pool statistics (`stats`) that the rollout judge and the dashboard read.

An exchange *is* its observation (`proxy.exchange.Exchange` extends `Observation`): the
fields below are filled in as the request goes, and the observers read them when it ends,
so observing costs no allocation and no copy. Observers must not keep a reference to it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Observation", "Observer"]


class Observation:
    """A request as it ended."""

    def __init__(self, started: float) -> None:
        self.started = started  # wall-clock time of the first byte of its head
        self.finished = 0.0  # wall-clock time it ended
        self.route_name: str | None = None  # None: refused before a route was chosen
        self.pool_name: str | None = None  # None: refused before a pool was chosen
        # The statistics' key: "route/pool" ("route/none": the route had no live pool);
        # "none" when refused before a route was chosen.
        self.pool_key = "none"
        self.backend_url: str | None = None
        self.status = 0  # the status answered (499: the client left before the answer)
        self.body_bytes = 0  # response body bytes sent to the client
        self.error = ""  # "" or the reason of a failure: connect, timeout, protocol, refused
        # The override header or a segment chose the pool, not the weights: counted with
        # the pool, never judged in a canary step (docs/rollouts.md).
        self.by_override = False
        self.by_segment = False  # a segment chose it
        self.client_id: str | None = None  # the sticky client, when there is one
        self.assigned = False  # the weighted choice placed a client without a cookie
        self.method = b""  # the request's method and target, as sent
        self.target = b""
        # The client's address in canonical text ("203.0.113.7", "2001:db8::7"): the
        # connection's peer, the PROXY header's source, or, from a trusted proxy, the
        # rightmost X-Forwarded-For address that is not one (`proxy.clientaddr`). No
        # client can choose it; the judge caps what one address contributes.
        self.client_addr = ""
        # A gRPC answer's grpc-status (in its trailers, or a trailers-only answer's head);
        # -1: none. 2, 4, 12, 13, 14 and 15 make the exchange bad (section 14).
        self.grpc_status = -1

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def bad(self) -> bool:
        """A 5xx (from the backend or splitter) or an upstream error (docs/rollouts.md)."""
        if self.status >= 500 or (self.error != "" and self.error != "refused"):
            return True
        code = self.grpc_status
        return code == 14 or code == 13 or code == 4 or code == 2 or code == 12 or code == 15


class Observer(Protocol):
    def observe(self, obs: Observation) -> None: ...

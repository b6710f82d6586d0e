"""One exception tree for splitter.

    SplitterError
    ├── ConfigError            a config file or mapping that cannot be used; carries every
    │                          problem found, each with its YAML path and line
    ├── StartupError           the process cannot start (port in use, unsafe admin listener)
    ├── StoreError             the shared store (section 10) did not take a change
    │   ├── StoreUnavailable   503: the store cannot be reached; nothing was changed
    │   ├── StoreConflict      the document changed since it was read: read it again,
    │   │                      compute the change again, write again (never an answer)
    │   └── NotLeader          a rollout leader's write after its lease was lost: dropped
    ├── AdminError             an admin API call refused (docs/admin-api.md): knows its
    │   │                      status, answered as {"error": message}; never retried as is
    │   ├── ApiError           400/404/409/413/422/503...: the request itself (its body, a
    │   │                      query parameter, the state it asks about)
    │   ├── WeightError        400/404/409: a weight change that cannot be applied
    │   └── RolloutError       404/409: a rollout call that cannot be done now
    └── ProxyError             a request that cannot be served: knows its HTTP status, the
        │                      reason label of the metrics, and whether it may be retried
        ├── RequestRefused     400/408/413/414/417/431/501/505: the client's request is
        │                      refused before (or instead of) reaching a backend; never retried
        ├── NoHealthyBackend   503: nothing live to send the request to
        ├── UpstreamConnectError   502: connect refused or timed out; always retryable
        ├── UpstreamLost       502: the backend connection closed or reset before a complete
        │                      response; retryable when the request may be sent twice
        ├── UpstreamProtocolError  502: the backend answered something that is not valid
        │                      HTTP (or not allowed: a head over the limits, a 101 unasked)
        └── UpstreamTimeout    504: no answer within timeouts.read; never retried

Where they come from and where they end:

- Library exceptions are translated at one boundary each: YAML and OSError in
  `config.load`; OSError and TimeoutError of a backend connect in `proxy.upstream`; llhttp's
  parser errors in `http1.request`; redis-py's errors in `store.redisstore` (as
  `StoreUnavailable`). The response reader (`http1.response`) raises
  `UpstreamProtocolError` itself.
- An `AdminError` or a `StoreError` raised below an admin handler is answered by one
  middleware (`admin.api.errors_as_json`), which also turns aiohttp's own 404/405/413
  into the same `{"error": ...}` body.
- On the request path a `ProxyError` is never raised through the event loop: the exchange
  takes it as a value (`Exchange.fail`), which applies the retry rule once (`retry`) and then
  answers `status` as JSON, or cuts the client connection when part of a response was sent.
- Nothing below the command line calls `sys.exit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


class SplitterError(Exception):
    """Base of every error splitter raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a config: where (YAML path and line) and what."""

    path: str  # e.g. "pools.canary.weight"; "" for the document itself
    message: str  # e.g. "must be >= 0"
    line: int | None = None  # 1-based line in the YAML file, when known

    def __str__(self) -> str:
        where = self.path or "(document)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(SplitterError):
    """A config that cannot be used. `problems` lists everything found, in file order."""

    def __init__(self, problems: list[ConfigProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.one_line())

    def one_line(self) -> str:
        first = str(self.problems[0]) if self.problems else "invalid config"
        more = len(self.problems) - 1
        prefix = f"{self.source}: " if self.source else ""
        suffix = f" (and {more} more; run 'splitter check')" if more > 0 else ""
        return f"{prefix}{first}{suffix}"

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{p}" for p in self.problems]


class StartupError(SplitterError):
    """The process cannot start; the message is one line for the operator."""


class StoreError(SplitterError):
    """The shared store did not take a change; nothing was changed."""

    status = 503


class StoreUnavailable(StoreError):
    """The store cannot be reached (the admin API answers 503 "store unavailable")."""

    def __init__(self, message: str = "store unavailable") -> None:
        super().__init__(message)


class StoreConflict(StoreError):
    """A compare-and-set lost: the document has another revision than the one read."""

    status = 409


class NotLeader(StoreError):
    """A write fenced by the rollout lease, made by a replica that no longer holds it."""

    status = 409


class AdminError(SplitterError):
    """An admin API call refused with `status` and a one-line message for the client.

    `extra` holds more keys of the JSON answer (the problems of an invalid config)."""

    status = 400

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class ApiError(AdminError):
    """The request cannot be taken: a bad body or query, or a state it cannot apply to."""


class WeightError(AdminError):
    """A weight change that cannot be applied (unknown pool, every weight 0, a rollout)."""


class RolloutError(AdminError):
    """A rollout call that cannot be done (unknown pool, none active, one already active)."""


# When a failed attempt may be sent again (docs/configuration.md#proxying, "Retries").
RETRY_NEVER: Final = 0
RETRY_ALWAYS: Final = 1  # nothing reached the backend: connect refused or timed out
RETRY_IDEMPOTENT: Final = 2  # an idempotent method, or no byte of the request was written


class ProxyError(SplitterError):
    """A request that cannot be served.

    `status` is the answer, `reason` the label of `splitter_upstream_errors_total` (and of
    the JSON error body), `retry` when another attempt is allowed. The message says what
    happened, for the log; it never goes to the client.
    """

    status = 502
    reason = "bad_gateway"
    retry = RETRY_NEVER


class RequestRefused(ProxyError):
    """The client's request is refused; `status` is given per instance (400, 408, ...)."""

    reason = "refused"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NoHealthyBackend(ProxyError):
    status = 503
    reason = "no_healthy_backend"


class UpstreamConnectError(ProxyError):
    status = 502
    reason = "connect"
    retry = RETRY_ALWAYS


class UpstreamLost(ProxyError):
    status = 502
    reason = "connect"  # the metrics count a lost connection with the connect failures
    retry = RETRY_IDEMPOTENT


class UpstreamProtocolError(ProxyError):
    status = 502
    reason = "protocol"


class UpstreamTimeout(ProxyError):
    status = 504
    reason = "timeout"

"""One exception tree for splitter.

    SplitterError
    ├── ConfigError            a config file or mapping that cannot be used; carries every
    │                          problem found, each with its YAML path and line
    ├── StartupError           the process cannot start (port in use, unsafe admin listener)
    └── ProxyError             a request that cannot be served; knows its HTTP status
        ├── NoHealthyBackend   503: nothing live to send the request to
        ├── UpstreamConnectError   502: connect refused, reset or timed out
        ├── UpstreamProtocolError  502: the backend answered something that is not HTTP
        └── UpstreamTimeout        504: no answer within timeouts.read

Library exceptions (OSError, asyncio.TimeoutError, httptools' parser errors) are turned
into these at one boundary each: config loading in `config.load`, backend I/O in
`upstream`. Nothing below the command line calls `sys.exit`.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class ProxyError(SplitterError):
    """A request that cannot be served. `status` is the HTTP answer, `reason` a short code."""

    status = 502
    reason = "bad_gateway"


class NoHealthyBackend(ProxyError):
    status = 503
    reason = "no_healthy_backend"


class UpstreamConnectError(ProxyError):
    status = 502
    reason = "connect"


class UpstreamProtocolError(ProxyError):
    status = 502
    reason = "protocol"


class UpstreamTimeout(ProxyError):
    status = 504
    reason = "timeout"

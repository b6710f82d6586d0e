"""The config file: YAML in, frozen dataclasses out.

Rules (contract section 2):

- `load(path)` reads the file and calls `parse`; `parse` is pure (mapping in, `Config` out)
  and collects *every* problem before raising one `ConfigError`, each problem naming its
  YAML path (`pools.canary.weight`) and, when the mapping came from a file, its line.
- `${VAR}` and `${VAR:-default}` are replaced in scalar values after YAML parsing, so a
  value holding `:` or `#` is safe; `${VAR}` with VAR unset and no default is an error.
- Durations are a number with a unit (`250ms`, `1.5s`, `2m`, `1h`) or bare seconds; they
  become float seconds.
- Unknown keys are errors. Every key but `listen` and `pools` has a default.

Nothing here imports asyncio or aiohttp: the request path and the admin API only ever see
the dataclasses below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from splitter.errors import ConfigError, ConfigProblem

__all__ = [
    "Admin",
    "Backend",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "HealthCheck",
    "Limits",
    "Override",
    "Pool",
    "Shutdown",
    "Sticky",
    "Timeouts",
    "load",
    "parse",
    "is_loopback_host",
]


@dataclass(frozen=True, slots=True)
class Address:
    """A host:port to listen on. `host` has no brackets ("::1", "0.0.0.0")."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Backend:
    url: str  # exactly as written in the config (the metrics label)
    host: str  # from the URL, no brackets
    port: int  # from the URL; 80 when absent
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    weight: float
    backends: tuple[Backend, ...]


@dataclass(frozen=True, slots=True)
class Admin:
    listen: Address = Address("127.0.0.1", 9901)
    token: str = ""


@dataclass(frozen=True, slots=True)
class Sticky:
    cookie: str = "splitter"
    max_age: int = 86400
    secret: str = ""  # empty: generated once and kept in the state file


@dataclass(frozen=True, slots=True)
class Override:
    header: str = "X-Splitter-Pool"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str = "/healthz"
    interval: float = 2.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    read: float = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int | None = None  # bytes; None is unlimited
    header_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_request_line: int = 8192
    max_header_bytes: int = 65536
    max_header_count: int = 100
    upstream_idle_timeout: float = 4.0  # close idle backend connections before they do


@dataclass(frozen=True, slots=True)
class Shutdown:
    accept_grace: float = 0.0
    grace: float = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    listen: Address
    pools: tuple[Pool, ...]
    admin: Admin = field(default_factory=Admin)
    sticky: Sticky | None = None
    override: Override | None = None
    health_check: HealthCheck = field(default_factory=HealthCheck)
    timeouts: Timeouts = field(default_factory=Timeouts)
    state_file: str = "./splitter-state.json"
    limits: Limits = field(default_factory=Limits)
    shutdown: Shutdown = field(default_factory=Shutdown)
    access_log: bool = True

    def weights(self) -> dict[str, float]:
        return {p.name: p.weight for p in self.pools}

    def pool(self, name: str) -> Pool | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost are loopback; everything else is not."""
    raise NotImplementedError


def parse(data: Any, lines: dict[str, int] | None = None, env: dict[str, str] | None = None) -> Config:
    """Validate a parsed YAML document into a Config or raise ConfigError listing every problem.

    `lines` maps a YAML path ("pools.canary.weight") to its 1-based line; `env` defaults to
    os.environ.
    """
    raise NotImplementedError


def load(path: str, env: dict[str, str] | None = None) -> Config:
    """Read and parse a config file. OSError and YAML syntax errors become ConfigError."""
    raise NotImplementedError

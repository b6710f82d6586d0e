"""TLS: the proxy listener's certificates (`certs`), the TLS shell of a client connection
(`transport`) and the contexts for https:// backends (`backends`).

docs/configuration.md#tls and #https-backends describe what users see.
"""

from __future__ import annotations

from collections.abc import Callable

from splitter.config import Config, ConfigProblem
from splitter.tls.backends import check_backend_files
from splitter.tls.certs import check_files


def check_config_files(config: Config, expired: bool = False) -> list[ConfigProblem]:
    """Every file of the config's TLS that does not load, at its YAML path; an expired
    certificate too when `expired` (`splitter check`; a running splitter warns of it)."""
    problems = check_files(config.tls, expired=expired)
    return problems + check_backend_files(config)


def check_files_expired_too(config: Config) -> list[ConfigProblem]:
    return check_config_files(config, expired=True)


def check_changed_files(old: Config) -> Callable[[Config], list[ConfigProblem]]:
    """For a config reload: the files of what changed since `old`, checked as at startup.
    Unchanged certificates are the watcher's to reload (a pair caught between its two
    writes must not refuse a reload that changes only weights), unchanged CA files the
    backends' (splitter.tls.backends keeps the last that loaded)."""
    known = {b.tls for r in old.routes for p in r.pools for b in p.backends}

    def check(new: Config) -> list[ConfigProblem]:
        problems = check_files(new.tls) if new.tls != old.tls else []
        return problems + check_backend_files(new, skip=known)

    return check

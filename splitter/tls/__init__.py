"""TLS: the proxy listener's certificates (`certs`), the TLS shell of a client connection
(`transport`) and the contexts for https:// backends (`backends`).

docs/configuration.md#tls and #https-backends describe what users see.
"""

from __future__ import annotations

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

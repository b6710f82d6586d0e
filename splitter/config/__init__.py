"""The config file: YAML in, frozen dataclasses out.

Rules (docs/configuration.md#the-config-file):

- `load(path)` reads the file and calls `parse`; `parse` is pure (mapping in, `Config` out)
  and collects *every* problem before raising one `ConfigError`, each problem naming its
  YAML path (`pools.canary.weight`) and, when the mapping came from a file, its line.
- `${VAR}` and `${VAR:-default}` are replaced in scalar values after YAML parsing, so a
  value holding `:` or `#` is safe; `${VAR}` with VAR unset and no default is an error.
- Durations are a number with a unit (`250ms`, `1.5s`, `2m`, `1h`) or bare seconds; they
  become float seconds.
- Unknown keys and duplicate keys are errors. Every key but `listen` and `pools` (or
  `routes`, never both) has a default; an explicit null means the default too (for
  `sticky` and `override`: off).
- A config with the top-level `pools` (and `segments`) has one route, `default`, that
  takes every request; `routes` lists several, which no request may match with the same
  precedence (docs/configuration.md#routes-and-segments).
- Numeric fields also take numeric strings, so `weight: "${CANARY_WEIGHT:-0}"` works.
- `load` bounds its work before it builds anything: a file of at most 1 MiB, at most
  100,000 YAML nodes once aliases are expanded (an alias bomb is refused, not expanded),
  no integer of more than 100 characters.

Nothing here imports asyncio or aiohttp: the request path and the admin API only ever see
the dataclasses below.
"""

from __future__ import annotations

from splitter.config.load import load
from splitter.config.model import *  # noqa: F403
from splitter.config.model import __all__ as _model
from splitter.config.parse import parse
from splitter.errors import ConfigError, ConfigProblem

__all__ = [*_model, "ConfigError", "ConfigProblem", "load", "parse"]

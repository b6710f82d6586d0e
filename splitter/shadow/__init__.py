"""Shadow traffic: a share of real requests copied to a candidate pool, its answers
compared with the primary's, never sent to a client.

This package holds the pure parts, data in and data out, without I/O:

- `compare`: one request's answers (the primary's, the shadow's, and optionally the
  reference's: a second copy of the primary's version) -> a `Comparison` (same, differ,
  noise or skipped, and the fields that differ);
- `tally`: the running counts of one route's shadow, the fields that differ most and the
  last differences, as the admin API shows them.

It imports the config (the `shadow` section, `config.shadow`) and nothing of the data
path: the data path will call it.
"""

from __future__ import annotations

from splitter.shadow.compare import (
    DIFFER,
    NOISE,
    SAME,
    SKIPPED,
    Comparison,
    Difference,
    Response,
    Rules,
    compare,
)
from splitter.shadow.tally import Tally, shown_path

__all__ = [
    "DIFFER",
    "NOISE",
    "SAME",
    "SKIPPED",
    "Comparison",
    "Difference",
    "Response",
    "Rules",
    "Tally",
    "compare",
    "shown_path",
]

"""splitter/control/shadow.py: which shadow is in force when the one set at runtime does
not fit the route's pools any more."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from splitter.config import load
from splitter.control.shadow import shadow_in_force
from splitter.store import Document


def test_a_runtime_shadow_for_a_pool_that_is_gone_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read at every GET /api/v1/shadow and each second by the dashboard's ticker: the
    file's section applies, and the log says why once, not at every read."""
    path = tmp_path / "splitter.yaml"
    path.write_text(
        """
listen: 127.0.0.1:1
admin: {listen: 127.0.0.1:2}
pools:
  blue: {weight: 100, backends: [http://127.0.0.1:3]}
  canary: {weight: 0, backends: [http://127.0.0.1:5]}
"""
    )
    route = load(str(path)).main_route
    section = {"pool": "gone", "share": 0.5}
    doc = Document(shadow={"file": None, "shadow": section, "time": ""})
    with caplog.at_level(logging.WARNING, "splitter.events"):
        for _ in range(5):
            assert shadow_in_force(doc, route, None) is None  # the file has none
        assert len(caplog.records) == 1
        assert "not valid for its pools" in caplog.records[0].getMessage()
        # another section that does not fit either: said again, once
        other = doc.replace(shadow={"file": None, "shadow": {**section, "pool": "gone2"}})
        for _ in range(3):
            assert shadow_in_force(other, route, None) is None
        assert len(caplog.records) == 2
        # one that fits is in force
        fits = doc.replace(shadow={"file": None, "shadow": {"pool": "canary", "share": 0.5}})
        shadow = shadow_in_force(fits, route, None)
        assert shadow is not None and (shadow.pool, shadow.share) == ("canary", 0.5)

"""splitter.control.shadow in-process (docs/shadow.md#changing-it-at-run-time): a runtime
change of a route's shadow, on a real controller and a state file, and which shadow is in
force when the one set at runtime does not fit the route's pools any more (the API and the
data path end to end are in tests/e2e/test_shadow.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from splitter.config import Shadow, load, parse
from splitter.control.controller import Controller
from splitter.control.shadow import ShadowControl, shadow_in_force
from splitter.errors import ApiError
from splitter.state import StateFile
from splitter.store import Document

CONFIG = {
    "listen": "127.0.0.1:8080",
    "pools": {
        "blue": {"weight": 100, "backends": ["http://127.0.0.1:5001"]},
        "green": {"weight": 0, "backends": ["http://127.0.0.1:5002"]},
        "canary": {"weight": 0, "backends": ["http://127.0.0.1:5003"]},
    },
    "shadow": {
        "pool": "canary",
        "share": 0.5,
        "reference": "green",
        "methods": ["GET", "POST"],
        "max_body": "1KiB",
        "ignore_headers": ["date"],
        "ignore_json": ["/generated_at"],
    },
}


def test_a_shadow_set_again_after_a_stop_keeps_the_files_rules(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "state.json"))
    controller = Controller(parse(CONFIG, env={}), state, lambda config, weights: None)
    control = ShadowControl(controller)
    route = controller.route
    assert route is not None and route.shadow is not None

    def in_force() -> Shadow | None:
        return shadow_in_force(controller.doc, route, None)

    async def run() -> None:
        await controller.start()
        assert in_force() == route.shadow
        await control.stop(route.shadow)
        assert in_force() is None
        with pytest.raises(ApiError) as refused:  # stopped: the pool must be named
            await control.set({"share": 0.1}, None)
        assert refused.value.status == 400
        await control.set({"pool": "canary", "share": 0.1}, None)

    asyncio.run(run())
    # The file's section with the new share: its reference and comparison rules are
    # kept, not replaced by the defaults.
    assert in_force() == replace(route.shadow, share=0.1)
    assert [e["what"] for e in controller.events] == ["shadow stopped", "shadow set"]


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

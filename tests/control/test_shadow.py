"""splitter.control.shadow in-process (docs/shadow.md#changing-it-at-run-time): a runtime
change of a route's shadow, on a real controller and a state file (the API and the data
path end to end are in tests/e2e/test_shadow.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from splitter.config import Shadow, parse
from splitter.control.controller import Controller
from splitter.control.shadow import ShadowControl, shadow_in_force
from splitter.errors import ApiError
from splitter.state import StateFile

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

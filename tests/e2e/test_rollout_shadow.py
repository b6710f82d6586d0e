"""End to end: a rollout with a shadow test step through a real `splitter run` (the
admin API, the state file, a restart): what the step puts in force and shows. Copies of
requests and their judging are the data path's (tests/rollout/ judge the step in
process, on counts of copies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import SplitterProc, admin_api, pools_config, run_cli

pytestmark = pytest.mark.slow

TEST_STEP = {"shadow": {"share": 0.25, "hold": "1h", "max": "2h", "max_diff_rate": 0.02}}


def test_a_test_step_keeps_the_weights_shows_itself_and_survives_a_restart(
    raw_backend: Callable[..., Any], splitter_factory: Callable[..., SplitterProc]
) -> None:
    config = pools_config(
        {"blue": raw_backend(), "green": raw_backend(), "canary": raw_backend()},
        {"blue": 60, "green": 30, "canary": 10},
    )
    sp = splitter_factory(config)
    body = {"pool": "canary", "steps": [TEST_STEP, 50, 100]}
    status, started = admin_api(sp, "POST", "/api/v1/rollout", body)
    assert status == 201, started
    assert started["steps"][0] == {
        "shadow": {"share": 0.25, "hold": "1h", "max": "2h", "max_diff_rate": 0.02}
    }
    assert started["weights"] == {"blue": 60, "green": 30, "canary": 0}  # the rest keep theirs
    assert started["reason"] == "step 1 of 3: shadow test, 0 copies compared so far"
    assert started["analysis"]["kind"] == "shadow"
    assert started["analysis"]["shadow"]["compared"] == 0
    assert started["history"][-1]["detail"] == (
        "step 1 of 3: canary at 0%, shadow test on copies of 25% of the requests"
    )
    _, weights = admin_api(sp, "GET", "/api/v1/weights")
    assert weights == {"blue": 60, "green": 30, "canary": 0}
    shown = run_cli("ctl", "--admin", sp.admin_url, "rollout", "status")
    assert "copies compared" in shown.stdout, shown.stdout

    sp.kill()
    again = splitter_factory(sp.config_path)
    status, after = admin_api(again, "GET", "/api/v1/rollout")
    assert status == 200 and (after["id"], after["step"]) == (started["id"], 0)
    assert after["steps"] == started["steps"] and after["analysis"]["kind"] == "shadow"
    assert after["history"][-1]["what"] == "restarted"

    status, promoted = admin_api(again, "POST", "/api/v1/rollout/promote")
    assert status == 200 and promoted["step"] == 1
    assert promoted["weights"] == {"blue": 33.333333, "green": 16.666667, "canary": 50}
    assert "shadow" not in promoted["analysis"]


def test_a_test_step_out_of_place_is_a_400_naming_it(
    raw_backend: Callable[..., Any], splitter_factory: Callable[..., SplitterProc]
) -> None:
    sp = splitter_factory(
        pools_config({"blue": raw_backend(), "canary": raw_backend()}, {"blue": 100})
    )
    for body, error in [
        ({"pool": "canary", "steps": [5, TEST_STEP]}, "steps[1].shadow: only the first step"),
        ({"pool": "canary", "strategy": "bluegreen", "steps": [TEST_STEP]},
         "steps: is for strategy canary, and so is the shadow test step"),
        ({"pool": "canary", "steps": [{"shadow": {"share": 0}}, 5]}, "steps[0].shadow.share"),
    ]:  # fmt: skip
        status, answer = admin_api(sp, "POST", "/api/v1/rollout", body)
        assert status == 400 and error in answer["error"], answer
    assert admin_api(sp, "GET", "/api/v1/rollout")[0] == 404
    started = run_cli("ctl", "--admin", sp.admin_url, "--json", "rollout", "start", "canary",
                      "--shadow", "10%")  # fmt: skip
    assert started.returncode == 0, started.stderr
    status, rollout = admin_api(sp, "GET", "/api/v1/rollout")
    assert rollout["steps"][0]["shadow"]["share"] == 0.1 and len(rollout["steps"]) == 5

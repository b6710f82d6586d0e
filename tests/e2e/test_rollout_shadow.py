"""End to end: a rollout with a shadow test step through a real `splitter run` (the
admin API, the state file, a restart): what the step puts in force and shows, and its
verdict on real copies: a candidate that differs fails, an identical one passes (the
judge itself is tested in process, tests/rollout/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import (
    SplitterProc,
    admin_api,
    http_request,
    pools_config,
    run_cli,
    start_shadow_backend,
)

TEST_STEP = {"shadow": {"share": 0.25, "hold": "1h", "max": "2h", "max_diff_rate": 0.02}}


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- judged on real copies ---------------------------------------------------------------

IGNORED = ["date", "x-request-id", "set-cookie", "server", "etag", "last-modified", "x-pool"]
QUICK = {  # a candidate proven clean within a few hundred copies
    "hold": "1s",
    "max": "60s",
    "analysis": {"warmup": "0s", "min_error_rate": 0.05, "max_per_address": 100000},
}


def judged_rollout(
    splitter_factory: Callable[..., SplitterProc], canary_price: int
) -> tuple[SplitterProc, dict[str, Any]]:
    """A rollout of a `shadow_app` canary (blue answers price 10) that begins with a test
    step on copies of every request, under a bounded load; the rollout once its test step
    ended (or the load ran out)."""
    blue = start_shadow_backend("blue", price=10)
    canary = start_shadow_backend("canary", price=canary_price)
    try:
        config = pools_config(
            {"blue": blue, "canary": canary}, {"blue": 100},
            shadow={"pool": "canary", "share": 0, "ignore_headers": IGNORED,
                    "ignore_json": ["/generated_at"]},
            rollouts=QUICK,
        )  # fmt: skip
        sp = splitter_factory(config)
        step = {"shadow": {"share": 1.0, "hold": "1s", "max": "60s", "max_diff_rate": 0.05}}
        status, started = admin_api(sp, "POST", "/api/v1/rollout",
                                    {"pool": "canary", "steps": [step, 50]})  # fmt: skip
        assert status == 201, started
        rollout = started
        for i in range(3000):  # bounded: a verdict comes long before
            http_request(f"{sp.proxy_url}/item/{i % 40}")
            if i % 25 == 0:
                rollout = admin_api(sp, "GET", "/api/v1/rollout")[1]
                if rollout["step"] > 0 or rollout["status"] != "progressing":
                    break
        return sp, rollout
    finally:
        blue.stop()
        canary.stop()


def test_a_candidate_that_differs_fails_its_test_step_and_no_user_met_it(
    splitter_factory: Callable[..., SplitterProc],
) -> None:
    sp, rollout = judged_rollout(splitter_factory, canary_price=11)
    assert rollout["status"] == "rolled_back", rollout
    assert "differ" in rollout["reason"], rollout["reason"]
    assert rollout["weights"] == {"blue": 100, "canary": 0}
    evidence = rollout["analysis"]["shadow"]
    assert evidence["differ"] == evidence["compared"] > 0
    assert [e["pool"] for e in sp.access_log() if e.get("pool") == "canary"] == []
    shadow = admin_api(sp, "GET", "/api/v1/shadow")[1]
    assert shadow["pool"] == "canary" and shadow["share"] == 0  # the file's section again
    assert shadow["fields"][0]["field"] == "/price"


def test_an_identical_candidate_passes_its_test_step(
    splitter_factory: Callable[..., SplitterProc],
) -> None:
    sp, rollout = judged_rollout(splitter_factory, canary_price=10)
    assert rollout["status"] == "progressing" and rollout["step"] == 1, rollout
    assert rollout["weights"]["canary"] == 50
    passed = [h for h in rollout["history"] if h["what"] == "passed"]
    assert passed and "differs from the primary on 0%" in passed[0]["detail"], passed
    shadow = admin_api(sp, "GET", "/api/v1/shadow")[1]
    assert shadow["differ"] == 0 and shadow["compared"] >= 100

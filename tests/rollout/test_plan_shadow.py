"""The shadow test step in a rollout's plan: the request body parsed (every bad path with
its error), the rollout object that shows it, and the saved state that keeps it (old
states still read; a bad one is refused)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from splitter.config import Rollouts, ShadowTest, Step
from splitter.errors import ConfigError
from splitter.rollout import saved
from splitter.rollout.plan import parse_rollout
from splitter.rollout.record import Rollout
from splitter.rollout.shadowstep import ShadowCounts

DEFAULTS = Rollouts(hold=30.0, max=300.0)


def steps_of(body: dict[str, Any]) -> tuple[Step, ...]:
    return parse_rollout({"pool": "canary", **body}, DEFAULTS).steps


def problems(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_rollout(body, DEFAULTS)
    return [str(p) for p in err.value.problems]


def test_the_contract_s_test_step_then_the_weights() -> None:
    test = {"share": 0.1, "hold": "2m", "max": "10m", "max_diff_rate": 0.01}
    steps = steps_of({"steps": [{"shadow": test}, 5, 25, 100]})
    assert steps[0] == Step(0.0, 120.0, 600.0, ShadowTest(0.1, 0.01))
    assert [s.weight for s in steps[1:]] == [5.0, 25.0, 100.0]
    assert all(s.shadow is None for s in steps[1:])
    assert steps[1].hold == 30.0  # the weight steps keep their own defaults


def test_every_key_of_the_test_step_has_a_default() -> None:
    (test, *_) = steps_of({"steps": [{"shadow": {}}, 50, 100]})
    assert test == Step(0.0, 30.0, 300.0, ShadowTest(0.1, 0.01))
    (test, *_) = steps_of({"steps": [{"shadow": {"share": None, "hold": "10m"}}, 50]})
    assert (test.hold, test.max) == (600.0, 600.0)  # max is at least hold, as for a weight
    (test, *_) = steps_of({"steps": [{"shadow": {"share": 1, "max_diff_rate": 0}}, 50]})
    assert test.shadow == ShadowTest(1.0, 0.0)


def test_weight_steps_are_as_they_were() -> None:
    assert steps_of({"steps": [5, {"pause": True}, {"weight": 50, "hold": "1m"}]}) == (
        Step(5.0, 30.0, 300.0),
        Step(None, 0.0, 0.0),
        Step(50.0, 60.0, 300.0),
    )


BAD: list[tuple[dict[str, Any], list[str]]] = [
    ({"steps": [{"shadow": {"share": 0}}, 5]},
     ["steps[0].shadow.share: must be above 0 and at most 1 (0.1: 10% of the requests)"]),
    ({"steps": [{"shadow": {"share": 1.5}}, 5]},
     ["steps[0].shadow.share: must be above 0 and at most 1 (0.1: 10% of the requests)"]),
    ({"steps": [{"shadow": {"share": -0.1}}, 5]},
     ["steps[0].shadow.share: must be above 0 and at most 1 (0.1: 10% of the requests)"]),
    ({"steps": [{"shadow": {"share": "10%"}}, 5]},
     ["steps[0].shadow.share: must be a number above 0, at most 1 (0.1: 10% of the requests)"]),
    ({"steps": [{"shadow": {"share": True}}, 5]},
     ["steps[0].shadow.share: must be a number above 0, at most 1 (0.1: 10% of the requests)"]),
    ({"steps": [{"shadow": {"max_diff_rate": 1}}, 5]},
     ["steps[0].shadow.max_diff_rate: must be at least 0 and below 1 (0.01: 1% of the copies)"]),
    ({"steps": [{"shadow": {"max_diff_rate": -0.01}}, 5]},
     ["steps[0].shadow.max_diff_rate: must be at least 0 and below 1 (0.01: 1% of the copies)"]),
    ({"steps": [{"shadow": {"max_diff_rate": "1%"}}, 5]},
     ["steps[0].shadow.max_diff_rate: must be a number from 0 to below 1 "
      "(0.01: 1% of the copies)"]),
    ({"steps": [{"shadow": {"hold": "soon"}}, 5]},
     ["steps[0].shadow.hold: must be a duration such as 250ms, 2s or 1m"]),
    ({"steps": [{"shadow": {"max": 0}}, 5]}, ["steps[0].shadow.max: must be > 0"]),
    ({"steps": [{"shadow": {"hold": "5m", "max": "1m"}}, 5]},
     ["steps[0].shadow.max: must be at least hold"]),
    ({"steps": [{"shadow": {"share": 0.1, "weight": 5}}, 5]},
     ["steps[0].shadow.weight: unknown key"]),
    ({"steps": [{"shadow": {}, "weight": 5}, 10]}, ["steps[0].weight: unknown key"]),
    ({"steps": [{"shadow": None}, 5]}, ["steps[0].shadow: must be a mapping"]),
    ({"steps": [{"shadow": 0.1}, 5]}, ["steps[0].shadow: must be a mapping"]),
    ({"steps": [5, {"shadow": {}}, 25]},
     ["steps[1].shadow: only the first step may be the shadow test step"]),
    ({"steps": [{"shadow": {}}, {"shadow": {}}, 25]},
     ["steps[1].shadow: only the first step may be the shadow test step"]),
    ({"steps": [{"shadow": {}}]},
     ["steps: must have at least one weight after the shadow test step"]),
    ({"steps": [{"shadow": {}}, {"pause": True}]},
     ["steps: must have at least one weight after the shadow test step"]),
    ({"strategy": "bluegreen", "steps": [{"shadow": {}}]},
     ["steps: is for strategy canary, and so is the shadow test step (a blue-green "
      "candidate is judged in its preview)"]),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), BAD)
def test_a_bad_test_step_names_its_path(body: dict[str, Any], expected: list[str]) -> None:
    assert problems({"pool": "canary", **body}) == expected


def test_several_problems_are_all_named() -> None:
    found = problems(
        {"pool": "canary", "steps": [{"shadow": {"share": 0, "max_diff_rate": 2, "x": 1}}, 0]}
    )
    assert [p.split(":")[0] for p in found] == [
        "steps[0].shadow.x", "steps[0].shadow.share", "steps[0].shadow.max_diff_rate",
        "steps[1]", "steps",
    ]  # fmt: skip


# -- the rollout object and the saved state ---------------------------------------------------

T0 = 1_800_000_000.0
START = {"blue": 100.0, "canary": 0.0}


def shadow_rollout(**kw: Any) -> Rollout:
    plan = parse_rollout(
        {"pool": "canary",
         "steps": [{"shadow": {"share": 0.25, "hold": "2m", "max_diff_rate": 0}}, 50, 100]},
        DEFAULTS,
    )  # fmt: skip
    kw.setdefault("weights", dict(START))
    return Rollout("s1", plan, dict(START), T0, step_started_at=T0, **kw)


def test_the_rollout_object_shows_the_test_step_and_its_evidence() -> None:
    r = shadow_rollout(shadow=ShadowCounts(400, 3, 410, 2, 1), needed=250)
    body = r.to_json()
    assert body["steps"][0] == {
        "shadow": {"share": 0.25, "hold": "2m", "max": "5m", "max_diff_rate": 0.0}
    }
    assert body["steps"][1] == {"weight": 50, "hold": "30s", "max": "5m"}
    analysis = body["analysis"]
    assert analysis["kind"] == "shadow"
    assert analysis["shadow"] == {
        "compared": 400, "differ": 3, "diff_rate": 0.0075, "pairs": 410, "shadow_bad": 2,
        "primary_bad": 1, "needed": 250,
    }  # fmt: skip
    plain = shadow_rollout(step=1).to_json()["analysis"]
    assert "shadow" not in plain and "kind" not in plain


def test_a_rollout_at_its_test_step_goes_through_the_state_and_back() -> None:
    r = shadow_rollout(shadow=ShadowCounts(400, 3, 410, 2, 1), needed=250, updated_at=T0 + 5)
    state = r.state()
    assert state["plan"]["steps"][0] == [0.0, 120.0, 300.0, {"share": 0.25, "max_diff_rate": 0.0}]
    assert state["plan"]["steps"][1] == [50.0, 30.0, 300.0]
    back = saved.read(state)
    assert back.plan == r.plan
    assert back.shadow == ShadowCounts(400, 3, 410, 2, 1)
    assert back.to_json() == r.to_json()


def test_the_state_of_an_old_rollout_still_reads() -> None:
    """A state written before test steps existed: three-item steps, no "shadow" key."""
    old = parse_rollout({"pool": "canary", "steps": [5, {"pause": True}, 100]}, DEFAULTS)
    state = Rollout("o1", old, dict(START), T0, weights=dict(START)).state()
    del state["shadow"]
    assert all(len(s) == 3 for s in state["plan"]["steps"])
    back = saved.read(state)
    assert back.plan == old and back.shadow is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda s: s["plan"]["steps"][0].__setitem__(0, 5), "plan.steps must be a list"),
        (lambda s: s["plan"]["steps"][0].__setitem__(3, {"share": 0.1}), "plan.steps must be"),
        (lambda s: s["plan"]["steps"][0][3].__setitem__("share", 0), "plan.steps[0].shadow.share"),
        (lambda s: s["plan"]["steps"][0][3].__setitem__("share", "x"), "plan.steps must be"),
        (lambda s: s["plan"]["steps"][1].__setitem__(
            slice(None), [0, 30, 300, {"share": 0.1, "max_diff_rate": 0}]),
         "plan.steps[1].shadow: only the first step"),
        (lambda s: s.__setitem__("shadow", [1, 2, 3]), "shadow must be 5 counts"),
        (lambda s: s.__setitem__("shadow", [1, 2, 3, 4, -5]), "shadow must be 5 counts"),
    ],
)  # fmt: skip
def test_a_bad_saved_test_step_is_refused(change: Any, why: str) -> None:
    state = copy.deepcopy(shadow_rollout(shadow=ShadowCounts()).state())
    change(state)
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        saved.read(state)
